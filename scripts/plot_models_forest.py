"""One forest plot comparing every model's success probability per group.

A fully pooled theta has no group dimension; it is repeated over the groups so that every
model gets a line at every group, which is the comparison the reader wants to see.
"""


from common import read_datatree, save_plot_collection


def theta_by_group(trace, groups):
    import xarray as xr

    theta = trace["posterior"]["theta"]
    if "group" not in theta.dims:
        theta = theta.expand_dims(group=groups)
    return xr.DataTree.from_dict({"/posterior": theta.to_dataset()})


def main(traces: list[str], figure: str, *, models: list[str], ci_prob: float) -> None:
    trace_paths, model_names, output = traces, models, figure
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    traces = [read_datatree(path, rule_hint="sample") for path in trace_paths]
    groups = traces[0]["observed_data"]["group"].values
    per_model = {name: theta_by_group(trace, groups) for name, trace in zip(model_names, traces)}
    collection = az.plot_forest(per_model, var_names=["theta"], combined=True, ci_probs=[0.5, ci_prob])
    collection.add_legend("model")
    save_plot_collection(collection, output)
