"""Shrinkage: each group's own estimate (raw rate, reported estimate, empirical log odds
ratio) against each model's posterior mean of its theta.

On the diagonal a model leaves a group to its own data (no pooling); on the horizontal
line it gives every group the pooled value (full pooling); in between, partial pooling
pulls a group toward the population, the more so the less it knows on its own.
"""

import numpy as np

from common import read_prepared, read_variables, save_figure, trace_groups
from shapes import SHAPES, observed_values, shape_of, standard_errors

LABELLED_GROUPS = 20  # above this many groups, labels would only clutter


def posterior_means(path, groups) -> np.ndarray:
    """Each group's posterior mean of theta: the trace's Rao-Blackwellised one where it has
    it (a collapsed model: from every draw, and without reading theta's draws), else the
    mean of theta's draws."""
    if "rao_blackwellised" in trace_groups(path, rule_hint="sample"):
        means = read_variables(path, "rao_blackwellised", ["theta"], rule_hint="sample", select={"summary": "mean"})["theta"]
    else:
        means = read_variables(path, "posterior", ["theta"], rule_hint="sample")["theta"].mean(("chain", "draw"))
    if "group" not in means.dims:
        return np.full(len(groups), float(means))
    return means.sel(group=list(groups)).values


def main(data: str, traces: list[str], figure: str, *, models: list[str]) -> None:
    trace_paths, model_names, output = traces, models, figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_prepared(data)
    shape = shape_of(table)
    raw = observed_values(table)
    precision = 1 / standard_errors(table) ** 2
    pooled = table["successes"].sum() / table["trials"].sum() if shape == "binomial" else (precision * raw).sum() / precision.sum()
    sizes = 20 + 180 * np.sqrt(precision / precision.max())
    low, high = (0.0, 1.0) if shape == "binomial" else (raw.min() - 0.1 * np.ptp(raw), raw.max() + 0.1 * np.ptp(raw))
    figure, axis = plt.subplots(figsize=(6.5, 6))
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="own data only")
    axis.axhline(pooled, color="black", linestyle=":", linewidth=1, label=f"pooled {pooled:.3f}")
    for name, path in zip(model_names, trace_paths, strict=True):
        means = posterior_means(path, table["group"])
        axis.scatter(raw, means, s=sizes, alpha=0.7, label=name)
    if len(table) <= LABELLED_GROUPS:
        for label, x in zip(table["group"], raw, strict=True):
            axis.annotate(label, (x, x), textcoords="offset points", xytext=(4, -10), fontsize=8, color="grey")
    value = SHAPES[shape].value
    axis.set_xlabel(f"each group's own estimate of its {value}")
    axis.set_ylabel(f"posterior mean of theta ({value})")
    margin = 0.02 * (high - low)
    axis.set_xlim(low - margin, high + margin)
    axis.set_ylim(low - margin, high + margin)
    axis.set_title("Shrinkage toward the population (marker size: precision of the group's own estimate)", fontsize=9)
    axis.legend(loc="upper left", fontsize=8)
    save_figure(figure, output, dpi=100)
    plt.close(figure)
