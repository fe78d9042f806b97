"""Prior predictive check: do the model's priors, before seeing the data, give data like the
observed? (The first check of the Bayesian workflow, Gelman et al. 2020.)

Data are simulated from the prior for the data set's own groups and design (trials,
standard errors), under the model's own likelihood. The figure puts the simulated data
beside the observed in two ways: each group's own estimate (its rate, its reported
estimate, its empirical log odds ratio: every group of every simulated data set, against
each observed one), and the spread of those between groups (their standard deviation in
each simulated data set, against the observed one), which is what the pooling models
disagree on. Priors that make the observed data implausible, or that put most simulated
data where nothing plausible is, show at a glance. (ArviZ's predictive plots show counts,
or one interval per observation; rates of groups of different sizes, at thousands of
groups, need this figure of their own.)
"""

import numpy as np

from common import load_module, read_prepared, save_figure
from shapes import SHAPES, observed_values, shape_of, with_observed

# Simulated values (data sets x groups) at most: beyond, a random subset of the groups is
# simulated, observed and compared (groups are exchangeable under every model's prior, so
# the subset's prior predictive is the full one's margin).
MAX_VALUES = 10_000_000


def groups_shown(table, draws: int, seed: int):
    """The table, or a seeded random subset of its groups (in their order) when simulating
    every group `draws` times would exceed MAX_VALUES values."""
    keep = max(2, MAX_VALUES // max(draws, 1))
    if len(table) <= keep:
        return table
    chosen = np.sort(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).choice(len(table), keep, replace=False))
    return table.iloc[chosen].reset_index(drop=True)


def prior_values(model, table, *, draws: int, seed: int):
    """Each group's own estimate in data simulated from the prior predictive: (draw, group)."""
    import pymc as pm

    observed = SHAPES[shape_of(table)].observed
    prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=list(observed), random_seed=seed)
    simulated = {name: prior["prior_predictive"][name].transpose("chain", "draw", "group").values.reshape(draws, len(table))
                 for name in observed}
    return np.stack([observed_values(with_observed(table, {name: values[index] for name, values in simulated.items()}))
                     for index in range(draws)])


def main(data: str, model_file: str, figure: str, *, draws: int, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = read_prepared(data)
    table = groups_shown(everything, draws, seed)
    shape = SHAPES[shape_of(table)]
    simulated = prior_values(load_module(model_file).build(table), table, draws=draws, seed=seed)
    observed = observed_values(table)
    fig, (rates, spread) = plt.subplots(1, 2, figsize=(10, 3.8))
    if shape.name == "binomial":
        bins = np.linspace(0, 1, 41)
    else:  # vague priors simulate far beyond the data: show the middle 99% and the data
        low, high = np.quantile(simulated, [0.005, 0.995])
        bins = np.linspace(min(low, observed.min()), max(high, observed.max()), 41)
    rates.hist(simulated.ravel(), bins=bins, density=True, color="C0", alpha=0.5, label=f"simulated from the prior ({draws} data sets)")
    if len(observed) <= 200:
        for value in observed:
            rates.axvline(value, color="black", linewidth=1, alpha=0.8)
        rates.plot([], [], color="black", linewidth=1, label="observed, one line per group")
    else:
        rates.hist(observed, bins=bins, density=True, histtype="step", color="black", linewidth=1.5, label="observed")
    rates.set_xlabel("rate (successes / trials)" if shape.name == "binomial" else f"each group's own estimate ({shape.value})")
    rates.set_yticks([])
    rates.legend(fontsize=7, loc="upper center")
    rates.set_title("Rates of the groups", fontsize=10)
    if len(observed) > 1:
        spreads = simulated.std(axis=1)
        spread.hist(spreads, bins=40, density=True, color="C0", alpha=0.5, label="simulated from the prior")
        spread.axvline(observed.std(), color="black", linewidth=2, label=f"observed {observed.std():.3f}")
        share = (spreads >= observed.std()).mean()
        spread.set_title(f"Spread between groups: {share:.0%} of the simulated ones are larger", fontsize=10)
        spread.legend(fontsize=7)
    spread.set_xlabel("standard deviation across groups")
    spread.set_yticks([])
    subset = f" (a random {len(table):,} of the {len(everything):,} groups)" if len(table) < len(everything) else ""
    fig.suptitle(f"Prior predictive check{subset}", fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
