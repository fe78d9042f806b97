"""Histogram of the success probability of a new group (the article's new launcher)."""


from common import read_datatree, save_plot_collection


def main(prediction: str, figure: str, *, ci_prob: float) -> None:
    prediction_path, output = prediction, figure
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    prediction = read_datatree(prediction_path, rule_hint="predict")
    collection = az.plot_dist(
        prediction, group="posterior_predictive", var_names=["theta_new"], kind="hist", ci_prob=ci_prob
    )
    save_plot_collection(collection, output)
