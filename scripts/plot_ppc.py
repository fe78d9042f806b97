"""Posterior predictive check plot.

Up to `max_groups` rows (a group, or a group's arm): the replicated values as 50% and
`ci_prob` intervals, and the observed one. Counts are drawn as rates (y_rep / n): groups of
5 and of 300 trials on one scale. Beyond: the distribution over the rows of the p-value
P(y_rep <= y), flat if the model reproduces the data as often as it should, and the
intervals of the rows it reproduces worst.
"""

import numpy as np

from common import read_variables, save_figure

WORST = 10  # groups shown in detail beyond max_groups


def draw_intervals(axis, labels, values, observed, ci_prob: float, *, rates: bool) -> None:
    tail = (1 - ci_prob) / 2
    outer = np.quantile(values, [tail, 1 - tail], axis=0)
    inner = np.quantile(values, [0.25, 0.75], axis=0)
    position = np.arange(len(labels))[::-1]
    axis.hlines(position, outer[0], outer[1], color="tab:blue", linewidth=1.5, label=f"replicated, {ci_prob:.0%}")
    axis.hlines(position, inner[0], inner[1], color="tab:blue", linewidth=5, label="replicated, 50%")
    axis.scatter(observed, position, color="black", zorder=3, label="observed")
    axis.set_yticks(position, labels)
    if rates:
        axis.set_xlabel("rate (events / trials)")
        axis.set_xlim(-0.02, 1.02)
    else:
        axis.set_xlabel("estimate")


def main(replicated: str, pvalues: str, figure: str, *, ci_prob: float, max_groups: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(pvalues, dtype={"group": str, "variable": str}, keep_default_na=False, na_values={"denominator": [""]})
    if len(table) <= max_groups:
        shown = table
        fig, axis = plt.subplots(figsize=(6.5, 1.2 + 0.35 * len(shown)))
        detail = axis
    else:
        worst = np.minimum(table["p_greater_equal"], table["p_less_equal"]).to_numpy().argsort(kind="stable")[:WORST]
        shown = table.iloc[np.sort(worst)]
        fig, (overview, detail) = plt.subplots(1, 2, figsize=(12, 1.6 + 0.35 * len(shown)))
        fig.subplots_adjust(wspace=0.45)
        overview.hist(table["p_less_equal"], bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
        overview.axhline(len(table) / 20, color="black", linestyle="--", linewidth=1, label="expected if reproduced")
        overview.set_xlabel("P(y_rep <= y) per group")
        overview.set_ylabel("groups")
        several = table["variable"].nunique() > 1
        overview.set_title(f"{len(table):,} " + ("groups and variables" if several else "groups"), fontsize=10)
        overview.legend(fontsize=8)
        detail.set_title(f"the {len(shown)} groups reproduced worst", fontsize=10)
    several = table["variable"].nunique() > 1
    columns, labels = [], []
    for _, row in shown.iterrows():
        values = read_variables(replicated, "posterior_predictive", [row["variable"]], rule_hint="ppc",
                                select={"group": [row["group"]]})[row["variable"]].values.ravel()
        columns.append(values / row["denominator"] if np.isfinite(row["denominator"]) else values)
        labels.append(f"{row['group']} ({row['variable']})" if several else row["group"])
    rates = np.isfinite(shown["denominator"]).all()
    denominators = shown["denominator"].to_numpy() if rates else 1.0
    draw_intervals(detail, labels, np.stack(columns, axis=1), shown["observed"].to_numpy() / denominators, ci_prob,
                   rates=bool(rates))
    detail.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 - 0.6 / len(shown)), ncol=3, fontsize=8, frameon=False)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
