"""Trace plot of one model: marginal densities and sampled values per chain."""


from common import read_datatree, save_plot_collection


def main(trace: str, figure: str) -> None:
    trace_path, output = trace, figure
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    trace = read_datatree(trace_path, rule_hint="sample")
    save_plot_collection(az.plot_trace_dist(trace), output)
