"""Posterior of the population's mean (success probability, effect, log odds ratio), with
its MAP marked.

The MAP is the mode of the marginal posterior of mu, found as in the article from a
histogram: the midpoint of the fullest of `bins` equal-width bins over [0, 1] (a
probability), or over the range of its draws (an effect).
"""


import numpy as np

from common import read_variables, save_plot_collection


def histogram_mode(values, bins: int = 100, bounded: bool = True) -> float:
    values = np.ravel(values)
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0) if bounded else (values.min(), values.max()))
    fullest = int(np.argmax(counts))  # the first of equally full bins, deterministically
    return float((edges[fullest] + edges[fullest + 1]) / 2)


def main(trace: str, figure: str, *, variable: str, ci_prob: float, bins: int = 100, bounded: bool = True) -> None:
    trace_path, output = trace, figure
    import arviz as az
    import matplotlib
    import xarray as xr

    matplotlib.use("Agg")
    # The one variable, not the whole trace (at 10,000 groups, 600 MB).
    posterior = read_variables(trace_path, "posterior", [variable], rule_hint="sample")
    mode = histogram_mode(posterior[variable].values, bins, bounded)
    collection = az.plot_dist(xr.DataTree.from_dict({"/posterior": posterior}), var_names=[variable], ci_prob=ci_prob)
    axes = collection.viz["plot"][variable].item()
    axes.axvline(mode, color="C3", linestyle="--")
    axes.annotate(f"MAP: {mode:.3f}", xy=(mode, 0.9), xycoords=("data", "axes fraction"), ha="right",
                  xytext=(-6, 0), textcoords="offset points", color="C3", fontsize=12)
    save_plot_collection(collection, output)
