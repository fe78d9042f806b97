"""Posterior predictive check plot: per group, the replicated success rates (y_rep / n)
as 50% and `ci_prob` intervals, and the observed rate. Rates rather than counts put
groups of 5 and of 300 trials on one scale."""

import numpy as np

from common import read_datatree, save_figure


def main(replicated: str, figure: str, *, ci_prob: float) -> None:
    output = figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tree = read_datatree(replicated, rule_hint="ppc")
    observed = tree["observed_data"]
    groups = [str(g) for g in observed["group"].values]
    trials = tree["constant_data"]["n"].values
    y_rep = tree["posterior_predictive"]["y"].values.reshape(-1, len(groups))
    rates = y_rep / trials
    observed_rate = observed["y"].values / trials
    tail = (1 - ci_prob) / 2
    outer = np.quantile(rates, [tail, 1 - tail], axis=0)
    inner = np.quantile(rates, [0.25, 0.75], axis=0)
    position = np.arange(len(groups))[::-1]
    figure, axis = plt.subplots(figsize=(6.5, 1.2 + 0.35 * len(groups)))
    axis.hlines(position, outer[0], outer[1], color="tab:blue", linewidth=1.5, label=f"replicated, {ci_prob:.0%}")
    axis.hlines(position, inner[0], inner[1], color="tab:blue", linewidth=5, label="replicated, 50%")
    axis.scatter(observed_rate, position, color="black", zorder=3, label="observed")
    axis.set_yticks(position, groups)
    axis.set_xlabel("success rate (successes / trials)")
    axis.set_xlim(-0.02, 1.02)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 - 0.6 / len(groups)), ncol=3, fontsize=8, frameon=False)
    save_figure(figure, output, dpi=100)
    plt.close(figure)
