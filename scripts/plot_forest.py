"""Forest plot of one model: credible intervals of every group's success probability.

Up to `max_groups` groups, ArviZ's forest plot, as in the article; beyond, a caterpillar
plot of all groups sorted by posterior mean (scripts/group_figures.py).
"""

from common import read_variables, save_figure, save_plot_collection
from group_figures import caterpillar, interval_summary


def main(trace: str, figure: str, *, ci_prob: float, max_groups: int) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    theta = read_variables(trace, "posterior", ["theta"], rule_hint="sample")
    if theta.sizes.get("group", 0) <= max_groups:
        tree = xr.DataTree.from_dict({"/posterior": theta})
        save_plot_collection(az.plot_forest(tree, var_names=["theta"], combined=True, ci_probs=[0.5, ci_prob]), figure)
        return
    means, low, high = interval_summary(theta["theta"].transpose("chain", "draw", "group").values, ci_prob)
    fig, axis = plt.subplots(figsize=(8, 4.5))
    caterpillar(axis, means, low, high)
    axis.set_ylabel(f"theta: posterior mean and {ci_prob:.0%} interval")
    axis.set_title(f"{len(means):,} groups")
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
