"""Ranks and exceedance (scripts/ranks.py) against the exact answers: independent Betas under
no pooling (one-dimensional integrals), quadrature over (alpha, beta) under the
hierarchical model, and ties under full pooling."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import exact
import mcmc_stats
import ranks
from common import read_prepared, read_variables, thinning

Z = 4.0
GROUPS = ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]


@pytest.fixture(scope="module")
def hierarchical_exact(spacex):
    """Pr(best), Pr(worst) and mean ranks of the hierarchical model, by quadrature (seconds)."""
    return exact.hierarchical_rank_probabilities(*spacex)


@pytest.fixture(scope="module")
def spacex(spacex_prepared):
    table = read_prepared(spacex_prepared)
    return table["trials"].to_numpy(), table["successes"].to_numpy()


def iid_no_pooling(trials, successes, draws, seed=0):
    """Exact posterior draws of no pooling (conjugate): draws x groups."""
    rng = np.random.default_rng(seed)
    return rng.beta(0.5 + successes, 0.5 + trials - successes, size=(draws, len(trials)))


def iid_hierarchical(trials, successes, draws, seed=0):
    """Exact posterior draws of the hierarchical model: (alpha, beta) from the grid's
    posterior weights, then every theta_j from its Beta conditional."""
    rng = np.random.default_rng(seed)
    alpha, beta, weights = exact.hierarchical_grid(trials, successes, points=200)
    chosen = rng.choice(weights.size, size=draws, p=weights.reshape(-1))
    a, b = alpha.reshape(-1)[chosen, None], beta.reshape(-1)[chosen, None]
    return rng.beta(a + successes, b + trials - successes)


def test_a_fixed_order_gives_certain_ranks():
    draws = np.tile([0.9, 0.5, 0.1], (50, 1))
    table = ranks.rank_table(draws, ["a", "b", "c"], higher_is_better=True, top=1, ci_prob=0.9)
    assert table["rank_mean"].tolist() == [1, 2, 3] and table["rank_lb"].tolist() == [1, 2, 3]
    assert table["p_best"].tolist() == [1, 0, 0] and table["p_worst"].tolist() == [0, 0, 1]
    assert table["sucra"].tolist() == [1, 0.5, 0] and table["p_top"].tolist() == [1, 0, 0]
    lower = ranks.rank_table(draws, ["a", "b", "c"], higher_is_better=False, top=2, ci_prob=0.9)
    assert lower["rank_mean"].tolist() == [3, 2, 1] and lower["p_top"].tolist() == [0, 1, 1]


def test_a_fully_pooled_theta_ties_every_group():
    """One theta for all: each group is best with probability 1/J, its rank uniform on 1..J."""
    theta = np.random.default_rng(1).beta(5, 2, size=(2, 300))
    draws = ranks.as_draws(theta, 4)
    table = ranks.rank_table(draws, GROUPS, higher_is_better=True, top=1, ci_prob=0.94)
    np.testing.assert_allclose(table["p_best"], 0.25)
    np.testing.assert_allclose(table["p_worst"], 0.25)
    np.testing.assert_allclose(table["p_top"], 0.25)
    np.testing.assert_allclose(table["rank_mean"], 2.5)
    np.testing.assert_allclose(table["sucra"], 0.5)
    # Each rank from 1 to 4 is as likely: the interval spans them all.
    assert table["rank_lb"].tolist() == [1] * 4 and table["rank_ub"].tolist() == [4] * 4
    exceed = ranks.exceedance_table(draws, GROUPS, [0.7])
    share = (theta > 0.7).mean()
    np.testing.assert_allclose(exceed["p_above"], share)  # the groups, max and min alike


def binomial_se(p, draws):
    return np.sqrt(np.maximum(p * (1 - p), 1 / draws) / draws)


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_no_pooling_ranks_match_the_integrals_of_independent_betas(spacex, higher_is_better):
    trials, successes = spacex
    draws = iid_no_pooling(trials, successes, 100_000)
    table = ranks.rank_table(draws, GROUPS, higher_is_better=higher_is_better, top=1, ci_prob=0.94)
    p_best, p_worst, mean_rank = exact.beta_rank_probabilities(0.5 + successes, 0.5 + trials - successes, higher_is_better)
    np.testing.assert_allclose(p_best.sum(), 1, atol=1e-6)  # the integrals themselves are right
    assert np.all(np.abs(table["p_best"] - p_best) <= Z * binomial_se(p_best, len(draws)))
    assert np.all(np.abs(table["p_worst"] - p_worst) <= Z * binomial_se(p_worst, len(draws)))
    rank_sd = (4 - 1) / 2  # a bound on the sd of a rank in 1..4
    assert np.all(np.abs(table["rank_mean"] - mean_rank) <= Z * rank_sd / np.sqrt(len(draws)))
    np.testing.assert_allclose(table["p_top"], table["p_best"])  # top = 1
    np.testing.assert_allclose(table["sucra"], (4 - table["rank_mean"]) / 3)


def test_hierarchical_ranks_match_quadrature_over_alpha_beta(spacex, hierarchical_exact):
    trials, successes = spacex
    draws = iid_hierarchical(trials, successes, 100_000)
    table = ranks.rank_table(draws, GROUPS, higher_is_better=True, top=1, ci_prob=0.94)
    p_best, p_worst, mean_rank = hierarchical_exact
    np.testing.assert_allclose(p_best.sum(), 1, atol=1e-5)
    assert np.all(np.abs(table["p_best"] - p_best) <= Z * binomial_se(p_best, len(draws)))
    assert np.all(np.abs(table["p_worst"] - p_worst) <= Z * binomial_se(p_worst, len(draws)))
    assert np.all(np.abs(table["rank_mean"] - mean_rank) <= Z * 4 / np.sqrt(len(draws)))


@pytest.mark.parametrize("benchmark", [0.5, 0.9, 0.97])
def test_exceedance_matches_the_exact_probabilities(spacex, benchmark):
    trials, successes = spacex
    for draws, reference in (
        (iid_no_pooling(trials, successes, 100_000), exact.beta_exceedance(0.5 + successes, 0.5 + trials - successes, benchmark)),
        (iid_hierarchical(trials, successes, 100_000), exact.hierarchical_exceedance(trials, successes, benchmark)),
    ):
        table = ranks.exceedance_table(draws, GROUPS, [benchmark]).set_index("group")
        above, largest, smallest = reference
        observed = table.loc[GROUPS, "p_above"].to_numpy()
        assert np.all(np.abs(observed - above) <= Z * binomial_se(above, len(draws)))
        assert abs(table.loc["max", "p_above"] - largest) <= Z * binomial_se(largest, len(draws))
        assert abs(table.loc["min", "p_below"] - smallest) <= Z * binomial_se(smallest, len(draws))
        np.testing.assert_allclose(table["p_above"] + table["p_below"], 1)  # continuous: no ties at t


def test_many_groups_use_an_evenly_spaced_subset_of_draws_and_say_so(tmp_path):
    import xarray as xr

    from common import write_datatree

    assert thinning(20_000, 10_000, max_values=20_000_000, min_draws=1000) == 10
    assert thinning(20_000, 4, max_values=20_000_000, min_draws=1000) == 1
    assert thinning(20_000, 10**6, max_values=20_000_000, min_draws=1000) == 20
    groups = [f"g{i}" for i in range(3000)]
    theta = np.random.default_rng(2).random((2, 1000, len(groups)))
    trace = tmp_path / "trace.nc"
    write_datatree(xr.DataTree.from_dict({"/posterior": xr.Dataset({"theta": (("chain", "draw", "group"), theta)},
                                                                   coords={"group": groups})}), trace)
    data = tmp_path / "data.csv"
    pd.DataFrame({"group": groups, "trials": 10, "successes": 5}).to_csv(data, index=False)
    ranks.main(str(data), str(trace), str(tmp_path / "ranks.csv"), str(tmp_path / "exceed.csv"), ci_prob=0.9,
               higher_is_better=True, top=None, benchmarks=[0.5], max_values=1_000_000, min_draws=100)
    table = pd.read_csv(tmp_path / "ranks.csv")
    assert (table["draws"] == 143 * 2).all() and (table["top"] == 300).all()  # every 7th draw of each chain: 286 <= 333
    thinned = ranks.as_draws(theta[:, ::7], len(groups))
    np.testing.assert_allclose(table["p_best"], ranks.rank_table(thinned, groups, higher_is_better=True, top=300,
                                                                 ci_prob=0.9)["p_best"], atol=1e-6)
    assert ranks.top_count(None, 10_000) == 1000 and ranks.top_count(None, 4) == 1 and ranks.top_count(3, 4) == 3


def indicator_mcse(indicator):
    """MCSE of a mean over (chain, draw) of an MCMC series, with its effective sample size."""
    values = indicator.astype(float)
    if values.std() == 0:
        return 0.0
    ess = mcmc_stats.ess_basic(mcmc_stats.split_chains(values[None]))[0]
    return float(values.std(ddof=1) / np.sqrt(ess))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["no_pooling", "hierarchical"])
def test_ranks_of_the_fitted_spacex_models_match_the_exact_answers(spacex_traces, spacex_prepared, spacex, hierarchical_exact,
                                                                   tmp_path, model):
    """Through the step on the sampler's draws, within 4 Monte Carlo standard errors."""
    trials, successes = spacex
    ranks.main(str(spacex_prepared), str(spacex_traces[model]), str(tmp_path / "ranks.csv"), str(tmp_path / "exceed.csv"),
               ci_prob=0.94, higher_is_better=True, top=None, benchmarks=[0.9], max_values=20_000_000, min_draws=1000)
    table = pd.read_csv(tmp_path / "ranks.csv").set_index("group").loc[GROUPS]
    if model == "no_pooling":
        p_best, _, _ = exact.beta_rank_probabilities(0.5 + successes, 0.5 + trials - successes)
        above, _, _ = exact.beta_exceedance(0.5 + successes, 0.5 + trials - successes, 0.9)
    else:
        p_best, _, _ = hierarchical_exact
        above, _, _ = exact.hierarchical_exceedance(trials, successes, 0.9)
    theta = read_variables(spacex_traces[model], "posterior", ["theta"])["theta"].transpose("chain", "draw", "group").values
    best = theta == theta.max(axis=-1, keepdims=True)
    exceed = pd.read_csv(tmp_path / "exceed.csv").set_index("group").loc[GROUPS]
    for j in range(4):
        assert table["p_best"].iloc[j] == pytest.approx(best[..., j].mean())
        assert abs(table["p_best"].iloc[j] - p_best[j]) <= Z * indicator_mcse(best[..., j]) + 1e-3, (j, p_best[j])
        assert abs(exceed["p_above"].iloc[j] - above[j]) <= Z * indicator_mcse(theta[..., j] > 0.9) + 1e-3
    assert (table["draws"] == theta.shape[0] * theta.shape[1]).all()
    # Pr(best) of the SpaceX launchers under this model, for the record (docs/questions.md).
    print(model, dict(zip(GROUPS, table["p_best"].round(3), strict=True)))


def test_the_exact_helpers_agree_with_scipy_for_two_groups():
    """Pr(theta_1 > theta_2) of two Betas, against scipy's own integration."""
    from scipy import integrate

    a, b = np.array([3.0, 5.0]), np.array([4.0, 2.0])
    p_best, _, _ = exact.beta_rank_probabilities(a, b)
    direct, _ = integrate.quad(lambda x: stats.beta.pdf(x, a[0], b[0]) * stats.beta.cdf(x, a[1], b[1]), 0, 1)
    assert p_best[0] == pytest.approx(direct, abs=1e-7)


@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "tied"])
def test_ranked_in_blocks_of_draws_the_table_is_the_same(monkeypatch, tied):
    """At many groups the draws are ranked a block at a time: the same table (to rounding
    of the sums), ties broken by the same stream."""
    rng = np.random.default_rng(4)
    draws = np.repeat(rng.beta(2, 5, (300, 1)), 7, axis=1) if tied else rng.beta(2, 5, (300, 7))
    labels = list("abcdefg")
    whole = ranks.rank_table(draws, labels, higher_is_better=True, top=2, ci_prob=0.9, seed=3)
    monkeypatch.setattr(ranks, "BLOCK_VALUES", 7 * 40)  # blocks of 40 draws, then of 1 group
    blocks = ranks.rank_table(draws, labels, higher_is_better=True, top=2, ci_prob=0.9, seed=3)
    pd.testing.assert_frame_equal(whole, blocks, check_exact=False, rtol=1e-12)
    if tied:
        assert whole["rank_lb"].min() == 1 and whole["rank_ub"].max() == 7


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_tie_counts_are_scipys_ranks(higher_is_better):
    """Runs of equal values found from one sort give what scipy's rankdata gives (min and max
    ranks), with many ties, none, and all."""
    rng = np.random.default_rng(8)
    for draws in (rng.integers(0, 5, (50, 30)).astype(float), rng.random((50, 30)), np.full((3, 6), 0.5)):
        better, tied = ranks.tie_counts(draws, higher_is_better)
        ordered = -draws if higher_is_better else draws
        lowest, highest = stats.rankdata(ordered, "min", axis=1), stats.rankdata(ordered, "max", axis=1)
        np.testing.assert_array_equal(better, lowest - 1)
        np.testing.assert_array_equal(tied, highest - lowest + 1)
