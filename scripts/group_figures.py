"""Figures of many groups: which groups to show, and the caterpillar plot.

Up to `plots.max_groups` groups, every figure draws every group as the article does.
Beyond, a row or a panel per group is neither readable nor quick (at 10,000 groups the
article's trace plot took 333 s), so figures summarise: all groups at once as a
caterpillar (sorted by posterior mean, one thin interval each, drawn as a raster), and the
few most extreme groups in detail.
"""

import numpy as np

EXTREMES = 3  # groups shown in detail at each end


def extreme_groups(means, labels, count: int = EXTREMES) -> list:
    """Labels of the `count` lowest and highest posterior means, lowest first."""
    order = np.argsort(means, kind="stable")
    chosen = order if len(order) <= 2 * count else np.concatenate([order[:count], order[-count:]])
    return [labels[i] for i in chosen]


def interval_summary(values, ci_prob: float):
    """Posterior mean and equal-tailed interval per group of (chain, draw, group) draws."""
    flat = np.asarray(values).reshape(-1, values.shape[-1])
    tail = (1 - ci_prob) / 2
    low, high = np.quantile(flat, [tail, 1 - tail], axis=0)
    return flat.mean(axis=0), low, high


def caterpillar(axis, means, low, high, *, color="C0", label=None, order=None):
    """Every group as a vertical interval and a dot, sorted by `order` (default: its mean)."""
    order = np.argsort(means, kind="stable") if order is None else order
    position = np.arange(len(means))
    axis.vlines(position, low[order], high[order], color=color, alpha=0.35, linewidth=0.6, rasterized=True)
    axis.scatter(position, means[order], s=2, color=color, label=label, rasterized=True, zorder=3)
    axis.set_xlim(-0.01 * len(means), 1.01 * len(means))
    axis.set_xlabel("groups, sorted by posterior mean")
    return order
