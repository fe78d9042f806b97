"""Would pooling have predicted what happened next? Each model scored on later data.

A data set may name later columns (`datasets.NAME.holdout`: the rest of a season, next
year's counts); prepare_holdout writes them as later.csv, one row per group that has later
data. Each model's posterior, fitted to the earlier data, then predicts them, as in Efron
and Morris's classic demonstration of shrinkage:

- `lpd`: sum over groups of log E_posterior[p(later_j | group j's parameters)], the later
  data's likelihood under the model's own likelihood (its observed variable, built for the
  later trials), averaged over the posterior draws;
- `squared_error`: sum over groups of (posterior mean of theta_j - later rate_j)^2;
- `coverage_50`, `coverage_90`: the share of groups whose later successes fall inside the
  central 50% and 90% posterior predictive intervals (later successes replicated once per
  draw, as the posterior predictive check does).

Writes holdout.csv (one row per model) and holdout.png.
"""

import logging

import numpy as np

from common import atomic_path, load_module, read_prepared, read_variables, save_figure

log = logging.getLogger("pipeline.holdout")

COVERAGES = (0.5, 0.9)


def on_groups(posterior, groups):
    """The posterior of the groups with later data (variables over `group` selected)."""
    if "group" not in posterior.dims:
        return posterior
    return posterior.sel(group=list(groups))


def pointwise_log_likelihood(model, posterior):
    """log p(later y_j | draw) over (chain, draw, group), from the model's own likelihood."""
    import pymc as pm
    import xarray as xr

    tree = xr.DataTree.from_dict({"/posterior": posterior})
    result = pm.compute_log_likelihood(tree, model=model, extend_inferencedata=False, progressbar=False)
    values = result["y"]  # the log_likelihood group itself
    return values.transpose("chain", "draw", "group").values


def score(module, posterior, later, *, seed: int) -> dict:
    """One model's scores on the later data (a table of group, trials, successes)."""
    from scipy.special import logsumexp

    import ppc

    posterior = on_groups(posterior, later["group"])
    model = module.build(later)
    loglik = pointwise_log_likelihood(model, posterior).reshape(-1, len(later))
    lpd = logsumexp(loglik, axis=0) - np.log(loglik.shape[0])
    theta = posterior["theta"]
    means = np.broadcast_to(theta.mean(("chain", "draw")).values, (len(later),))
    rate = later["successes"].to_numpy() / later["trials"].to_numpy()
    replicated = ppc.replicate(model, later, posterior, seed=seed)["y"].values.reshape(-1, len(later))
    observed = later["successes"].to_numpy()
    result = {"lpd": float(lpd.sum()), "squared_error": float(((means - rate) ** 2).sum())}
    for probability in COVERAGES:
        tail = (1 - probability) / 2
        low, high = np.quantile(replicated, [tail, 1 - tail], axis=0, method="inverted_cdf")
        result[f"coverage_{round(probability * 100)}"] = float(((observed >= low) & (observed <= high)).mean())
    result["draws"] = loglik.shape[0]
    return result


def draw(table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(11, 0.6 * len(table) + 1.8), sharey=True)
    position = np.arange(len(table))
    # Dots, not bars: what matters is how far apart the models are, not the distance to 0.
    axes[0].scatter(table["lpd"], position, color="C0", s=40)
    axes[0].set_xlabel("log predictive density of the later data\n(higher is better)")
    axes[1].scatter(table["squared_error"], position, color="C1", s=40)
    axes[1].set_xlabel("squared error of the estimated rates\n(lower is better)")
    for axis in axes[:2]:
        axis.grid(axis="x", alpha=0.3)
    for offset, (probability, marker) in enumerate(zip(COVERAGES, ("o", "s"), strict=True)):
        column = f"coverage_{round(probability * 100)}"
        axes[2].scatter(table[column], position + 0.15 * (offset - 0.5), marker=marker, label=f"{probability:.0%} interval")
        axes[2].axvline(probability, color="grey", linestyle=":", linewidth=1)
    axes[2].set_xlim(-0.02, 1.02)
    axes[2].set_xlabel("share of groups inside the predictive interval\n(nominal: dotted)")
    axes[2].legend(fontsize=7, loc="lower left")
    axes[0].set_yticks(position, table["model"])
    axes[0].invert_yaxis()
    figure.suptitle(f"Predicting the later data of {int(table['groups'].iloc[0])} groups", fontsize=10)
    figure.tight_layout()
    return figure


def main(data: str, later: str, traces: list[str], model_files: list[str], table: str, figure: str, *,
         models: list[str], seed: int) -> None:
    import matplotlib.pyplot as plt
    import pandas as pd

    groups = read_prepared(later)
    skipped = len(read_prepared(data)) - len(groups)
    rows = []
    for name, trace, model_file in zip(models, traces, model_files, strict=True):
        posterior = read_variables(trace, "posterior", rule_hint="sample")
        rows.append({"model": name, **score(load_module(model_file), posterior, groups, seed=seed),
                     "groups": len(groups), "skipped": skipped})
        log.info("%s: lpd %.2f on %d groups", name, rows[-1]["lpd"], len(groups))
    result = pd.DataFrame(rows)
    with atomic_path(table) as tmp:
        result.to_csv(tmp, index=False, float_format="%.6g")
    fig = draw(result)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
