"""Prior predictive check: do the model's priors, before seeing the data, give data like the
observed? (The first check of the Bayesian workflow, Gelman et al. 2020.)

Successes are simulated from the prior for the data set's own groups and trials, under the
model's own likelihood. The figure puts the simulated data beside the observed in two
ways: the rates themselves (successes / trials, every group of every simulated data set,
against each observed rate), and the spread of the rates between groups (their standard
deviation in each simulated data set, against the observed one), which is what the
pooling models disagree on. Priors that make the observed data implausible, or that put
most simulated data where nothing plausible is, show at a glance. (ArviZ's predictive
plots show counts, or one interval per observation; rates of groups of different sizes,
at thousands of groups, need this figure of their own.)
"""

import numpy as np

from common import load_module, read_prepared, save_figure


def prior_rates(model, table, *, draws: int, seed: int):
    """Rates simulated from the prior predictive: array (draw, group)."""
    import pymc as pm

    prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=["y"], random_seed=seed)
    successes = prior["prior_predictive"]["y"].transpose("chain", "draw", "group").values.reshape(draws, len(table))
    return successes / table["trials"].to_numpy()


def main(data: str, model_file: str, figure: str, *, draws: int, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_prepared(data)
    simulated = prior_rates(load_module(model_file).build(table), table, draws=draws, seed=seed)
    observed = table["successes"].to_numpy() / table["trials"].to_numpy()
    fig, (rates, spread) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.linspace(0, 1, 41)
    rates.hist(simulated.ravel(), bins=bins, density=True, color="C0", alpha=0.5, label=f"simulated from the prior ({draws} data sets)")
    if len(observed) <= 200:
        for value in observed:
            rates.axvline(value, color="black", linewidth=1, alpha=0.8)
        rates.plot([], [], color="black", linewidth=1, label="observed, one line per group")
    else:
        rates.hist(observed, bins=bins, density=True, histtype="step", color="black", linewidth=1.5, label="observed")
    rates.set_xlabel("rate (successes / trials)")
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
    spread.set_xlabel("standard deviation of the rates across groups")
    spread.set_yticks([])
    fig.suptitle("Prior predictive check", fontsize=11)
    fig.tight_layout()
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
