"""Posterior predictive check plot.

Up to `max_groups` groups: per group, the replicated success rates (y_rep / n) as 50% and
`ci_prob` intervals, and the observed rate. Rates rather than counts put groups of 5 and
of 300 trials on one scale. Beyond: the distribution over groups of the p-value
P(y_rep <= y), flat if the model reproduces the groups as often as it should, and the
intervals of the groups it reproduces worst.
"""

import numpy as np

from common import read_variables, save_figure

WORST = 10  # groups shown in detail beyond max_groups


def draw_intervals(axis, groups, rates, observed_rate, ci_prob: float) -> None:
    tail = (1 - ci_prob) / 2
    outer = np.quantile(rates, [tail, 1 - tail], axis=0)
    inner = np.quantile(rates, [0.25, 0.75], axis=0)
    position = np.arange(len(groups))[::-1]
    axis.hlines(position, outer[0], outer[1], color="tab:blue", linewidth=1.5, label=f"replicated, {ci_prob:.0%}")
    axis.hlines(position, inner[0], inner[1], color="tab:blue", linewidth=5, label="replicated, 50%")
    axis.scatter(observed_rate, position, color="black", zorder=3, label="observed")
    axis.set_yticks(position, groups)
    axis.set_xlabel("success rate (successes / trials)")
    axis.set_xlim(-0.02, 1.02)


def main(replicated: str, pvalues: str, figure: str, *, ci_prob: float, max_groups: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(pvalues, dtype={"group": str}, keep_default_na=False)
    if len(table) <= max_groups:
        shown = table
        fig, axis = plt.subplots(figsize=(6.5, 1.2 + 0.35 * len(shown)))
        detail = axis
    else:
        worst = np.minimum(table["p_greater_equal"], table["p_less_equal"]).to_numpy().argsort(kind="stable")[:WORST]
        shown = table.iloc[np.sort(worst)]
        fig, (overview, detail) = plt.subplots(1, 2, figsize=(12, 1.6 + 0.35 * len(shown)))
        overview.hist(table["p_less_equal"], bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
        overview.axhline(len(table) / 20, color="black", linestyle="--", linewidth=1, label="expected if reproduced")
        overview.set_xlabel("P(y_rep <= y) per group")
        overview.set_ylabel("groups")
        overview.set_title(f"{len(table):,} groups", fontsize=10)
        overview.legend(fontsize=8)
        detail.set_title(f"the {len(shown)} groups reproduced worst", fontsize=10)
    y_rep = read_variables(replicated, "posterior_predictive", ["y"], rule_hint="ppc", select={"group": shown["group"].tolist()})["y"]
    trials = shown["trials"].to_numpy()
    rates = y_rep.transpose("chain", "draw", "group").values.reshape(-1, len(shown)) / trials
    draw_intervals(detail, shown["group"].tolist(), rates, shown["observed"].to_numpy() / trials, ci_prob)
    detail.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 - 0.6 / len(shown)), ncol=3, fontsize=8, frameon=False)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
