"""Trace plot of one model: marginal densities and sampled values per chain."""


from common import read_datatree, save_plot_collection


def main(trace_path: str, output: str) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    trace = read_datatree(trace_path, rule_hint="sample")
    save_plot_collection(az.plot_trace_dist(trace), output)


if "snakemake" in globals():
    from common import run_from_snakemake

    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run_from_snakemake(main, sm, trace_path=sm.input.trace, output=sm.output[0])
