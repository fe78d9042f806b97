"""Histogram of the success probability of a new group (the article's new launcher)."""


from common import read_datatree, save_plot_collection


def main(prediction_path: str, output: str, *, ci_prob: float) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    prediction = read_datatree(prediction_path, rule_hint="predict")
    collection = az.plot_dist(
        prediction, group="posterior_predictive", var_names=["theta_new"], kind="hist", ci_prob=ci_prob
    )
    save_plot_collection(collection, output)


if "snakemake" in globals():
    from common import run_from_snakemake

    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run_from_snakemake(main, sm, prediction_path=sm.input.prediction, output=sm.output[0], ci_prob=sm.params.ci_prob)
