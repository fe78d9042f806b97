"""Forest plot of one model: credible intervals of every group's success probability."""


from common import read_datatree, save_plot_collection


def main(trace: str, figure: str, *, ci_prob: float) -> None:
    trace_path, output = trace, figure
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    trace = read_datatree(trace_path, rule_hint="sample")
    collection = az.plot_forest(trace, var_names=["theta"], combined=True, ci_probs=[0.5, ci_prob])
    save_plot_collection(collection, output)
