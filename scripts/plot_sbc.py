"""Rank histograms of simulation-based calibration, one panel per parameter, with the
band a uniform histogram stays in 99% of the time."""

import math

import numpy as np

from common import save_figure


def main(ranks: str, uniformity: str, figure: str) -> None:
    ranks_path, uniformity_path, output = ranks, uniformity, figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from scipy import stats

    ranks = pd.read_csv(ranks_path, index_col="simulation")
    tests = pd.read_csv(uniformity_path).set_index("parameter")
    bins, max_rank = int(tests["bins"].iloc[0]), int(tests["max_rank"].iloc[0])
    columns = min(4, len(ranks.columns))
    rows = math.ceil(len(ranks.columns) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.4 * rows), squeeze=False)
    edges = np.linspace(0, max_rank + 1, bins + 1)
    low, high = stats.binom.interval(0.99, len(ranks), 1 / bins)
    # More axes than parameters: the grid is filled row by row.
    for axis, name in zip(axes.flat, ranks.columns, strict=False):
        axis.axhspan(low, high, color="grey", alpha=0.25, linewidth=0)
        axis.hist(ranks[name], bins=edges, color="tab:blue")
        axis.set_title(f"{name}\np = {tests.loc[name, 'p_value']:.2f}", fontsize=8)
        axis.set_yticks([])
    for axis in list(axes.flat)[len(ranks.columns):]:
        axis.set_visible(False)
    figure.suptitle(f"SBC rank histograms ({len(ranks)} simulations; grey: 99% band of a uniform)", fontsize=9)
    figure.tight_layout()
    save_figure(figure, output, dpi=100)
    plt.close(figure)
