"""Forest plot of one model: credible intervals of every group's success probability."""


from common import read_datatree, save_plot_collection


def main(trace_path: str, output: str, *, ci_prob: float) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    trace = read_datatree(trace_path, rule_hint="sample")
    collection = az.plot_forest(trace, var_names=["theta"], combined=True, ci_probs=[0.5, ci_prob])
    save_plot_collection(collection, output)


if "snakemake" in globals():
    from common import run_from_snakemake

    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run_from_snakemake(main, sm, trace_path=sm.input.trace, output=sm.output[0], ci_prob=sm.params.ci_prob)
