"""Posterior predictive for a group that is not in the data (the article's new launcher).

Writes `theta_new`, the new group's success probability, and `y_new`, its successes in
the next `new_trials` trials, drawn once per posterior draw. What a "new group" means is
each model's own answer (its `new_group()`), so this script is the same for every model.
"""


from common import load_module, read_datatree, read_prepared, write_datatree


def predict(model, module, trace, *, new_trials: int, seed: int):
    import pymc as pm

    with model:
        theta_new = module.new_group(model)
        pm.Binomial("y_new", n=new_trials, p=theta_new)
        return pm.sample_posterior_predictive(
            trace, var_names=["theta_new", "y_new"], random_seed=seed, progressbar=False
        )


def main(data: str, model_file: str, trace_path: str, output: str, *, new_trials: int, seed: int) -> None:
    trace = read_datatree(trace_path, rule_hint="sample")
    module = load_module(model_file)
    model = module.build(read_prepared(data))
    draws = predict(model, module, trace, new_trials=new_trials, seed=seed)
    result = draws["posterior_predictive"].to_dataset()
    result.attrs.update({"new_trials": new_trials, "seed": seed, "trace_model": trace.attrs.get("pipeline_model", "")})
    write_datatree(_as_tree(result), output)


def _as_tree(dataset):
    import xarray as xr

    return xr.DataTree.from_dict({"/posterior_predictive": dataset})


if "snakemake" in globals():
    from common import run_from_snakemake

    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run_from_snakemake(
        main,
        sm,
        data=sm.input.data,
        model_file=sm.input.model,
        trace_path=sm.input.trace,
        output=sm.output[0],
        new_trials=sm.params.new_trials,
        seed=sm.params.seed,
    )
