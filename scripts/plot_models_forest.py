"""Every model's success probability per group, in one figure.

Up to `max_groups` groups, one ArviZ forest plot with a line per model at every group (a
fully pooled theta, which has no group dimension, is repeated over the groups). Beyond,
one caterpillar panel per model, groups in the same order in every panel (by their raw
success rate), so that pooling shows as the spread shrinking. Each model's trace is read,
summarised and let go before the next: memory stays that of one model's theta.
"""

import numpy as np

from common import read_prepared, read_variables, save_figure, save_plot_collection
from group_figures import caterpillar, interval_summary
from shapes import observed_values, shape_of


def theta_by_group(theta, groups):
    if "group" not in theta.dims:
        theta = theta.expand_dims(group=groups)
    return theta


def main(data: str, traces: list[str], figure: str, *, models: list[str], ci_prob: float, max_groups: int) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    table = read_prepared(data)
    groups = table["group"].tolist()
    if len(groups) <= max_groups:
        def posterior(path):
            theta = theta_by_group(read_variables(path, "posterior", ["theta"])["theta"], groups)
            return xr.DataTree.from_dict({"/posterior": theta.to_dataset()})

        per_model = {name: posterior(path) for name, path in zip(models, traces, strict=True)}
        collection = az.plot_forest(per_model, var_names=["theta"], combined=True, ci_probs=[0.5, ci_prob])
        collection.add_legend("model")
        save_plot_collection(collection, figure)
        return
    order = np.argsort(observed_values(table), kind="stable")
    bounded = shape_of(table) == "binomial"
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 2.2 * len(models)), sharex=True, sharey=True, squeeze=False)
    for index, (name, path) in enumerate(zip(models, traces, strict=True)):
        theta = theta_by_group(read_variables(path, "posterior", ["theta"])["theta"], groups).transpose("chain", "draw", "group")
        means, low, high = interval_summary(theta.values, ci_prob)
        del theta
        axis = axes[index, 0]
        caterpillar(axis, means, low, high, color=f"C{index}", order=order)
        axis.set_ylabel(name, fontsize=8)
        if bounded:
            axis.set_ylim(-0.02, 1.02)
    axes[-1, 0].set_xlabel("groups, sorted by their own estimate")
    fig.suptitle(f"theta per group ({len(groups):,} groups): posterior mean and {ci_prob:.0%} interval", fontsize=10)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
