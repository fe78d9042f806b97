"""Shrinkage: each group's raw success rate against each model's posterior mean.

On the diagonal a model leaves a group to its own data (no pooling); on the horizontal
line it gives every group the pooled rate (full pooling); in between, partial pooling
pulls a group toward the population, the more so the fewer its trials.
"""

import numpy as np

from common import read_prepared, read_variables, save_figure

LABELLED_GROUPS = 20  # above this many groups, labels would only clutter


def posterior_means(theta, groups) -> np.ndarray:
    means = theta.mean(("chain", "draw"))
    if "group" not in means.dims:
        return np.full(len(groups), float(means))
    return means.sel(group=list(groups)).values


def main(data: str, traces: list[str], figure: str, *, models: list[str]) -> None:
    trace_paths, model_names, output = traces, models, figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_prepared(data)
    raw = table["successes"] / table["trials"]
    pooled = table["successes"].sum() / table["trials"].sum()
    sizes = 20 + 180 * np.sqrt(table["trials"] / table["trials"].max())
    figure, axis = plt.subplots(figsize=(6.5, 6))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="own data only (raw rate)")
    axis.axhline(pooled, color="black", linestyle=":", linewidth=1, label=f"pooled rate {pooled:.3f}")
    for name, path in zip(model_names, trace_paths, strict=True):
        theta = read_variables(path, "posterior", ["theta"], rule_hint="sample")["theta"]
        means = posterior_means(theta, table["group"])
        axis.scatter(raw, means, s=sizes, alpha=0.7, label=name)
    if len(table) <= LABELLED_GROUPS:
        for label, x in zip(table["group"], raw, strict=True):
            axis.annotate(label, (x, x), textcoords="offset points", xytext=(4, -10), fontsize=8, color="grey")
    axis.set_xlabel("raw success rate (successes / trials)")
    axis.set_ylabel("posterior mean of theta")
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    axis.set_title("Shrinkage toward the population (marker size: trials)")
    axis.legend(loc="upper left", fontsize=8)
    save_figure(figure, output, dpi=100)
    plt.close(figure)
