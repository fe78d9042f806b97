"""Every group's rank under every model, with its interval: how sure a league table is.

Up to `max_groups` groups, one row per group (best on top, by its mean rank averaged over
the models) with each model's rank interval and mean rank side by side; beyond, one
caterpillar panel per model, groups in the same order in every panel.
"""

import numpy as np

from common import save_figure
from group_figures import caterpillar


def main(ranks: list[str], figure: str, *, models: list[str], ci_prob: float, max_groups: int) -> None:
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {name: pd.read_csv(path, dtype={"group": str}, keep_default_na=False).set_index("group")
              for name, path in zip(models, ranks, strict=True)}
    groups = next(iter(tables.values())).index
    order = pd.concat([t["rank_mean"] for t in tables.values()], axis=1).mean(axis=1).sort_values(kind="stable").index
    count = len(groups)
    if count <= max_groups:
        fig, axis = plt.subplots(figsize=(7, 0.45 * count * max(1, len(models) / 3) + 1.5))
        step = 0.7 / max(len(models), 1)
        for index, (name, table) in enumerate(tables.items()):
            rows = table.loc[order]
            position = np.arange(count) + (index - (len(models) - 1) / 2) * step
            axis.hlines(position, rows["rank_lb"], rows["rank_ub"], color=f"C{index}", linewidth=2, label=name)
            axis.scatter(rows["rank_mean"], position, color=f"C{index}", s=18, zorder=3)
        axis.set_yticks(np.arange(count), order)
        axis.invert_yaxis()
        axis.set_xlim(0.5, count + 0.5)
        axis.set_xlabel(f"rank (1 = best): mean and {ci_prob:.0%} interval")
        axis.legend(fontsize=8, loc="best")
    else:
        fig, axes = plt.subplots(len(models), 1, figsize=(8, 2.2 * len(models)), sharex=True, sharey=True, squeeze=False)
        positions = pd.Series(np.arange(count), index=order)
        for index, (name, table) in enumerate(tables.items()):
            rows = table.loc[order]
            axis = axes[index, 0]
            caterpillar(axis, rows["rank_mean"].to_numpy(), rows["rank_lb"].to_numpy(), rows["rank_ub"].to_numpy(),
                        color=f"C{index}", order=positions.loc[order].to_numpy())
            axis.set_ylabel(name, fontsize=8)
            axis.invert_yaxis()
        axes[-1, 0].set_xlabel("groups, sorted by their mean rank over the models")
    fig.suptitle(f"Ranks of {count:,} groups (1 = best) under each model", fontsize=10)
    fig.tight_layout()
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
