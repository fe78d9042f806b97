"""The funnel plot's limits (scripts/funnel.py) against binomial and mixture quantiles."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import funnel
from test_plots import assert_png


def continuous_quantile(cdf, pmf, probability, trials):
    """Spiegelhalter's interpolated limit from a count distribution given in full (kept
    within [0, 1]: a rate cannot leave it)."""
    r = int(np.argmax(cdf >= probability - 1e-12))
    return min(max((r - (cdf[r] - probability) / pmf[r]) / trials, 0.0), 1.0)


@pytest.mark.parametrize("trials", [1, 4, 17, 50, 333, 5000])
def test_classic_limits_are_the_interpolated_binomial_quantiles(trials):
    rate = 0.83
    limits = funnel.binomial_limits([trials], rate)[0]
    counts = np.arange(trials + 1)
    pmf = stats.binom.pmf(counts, trials, rate)
    for probability, limit in zip(funnel.PROBABILITIES, limits, strict=True):
        assert limit == pytest.approx(continuous_quantile(np.cumsum(pmf), pmf, probability, trials), abs=1e-9)
        # Between the binomial quantile and the count below it.
        r = stats.binom.ppf(probability, trials, rate)
        assert (r - 1) / trials <= limit <= r / trials


@pytest.mark.parametrize("trials", [3, 40, 800, 20_000])
@pytest.mark.parametrize("draws", ["beta", "isolated"])
def test_limits_with_spread_are_the_quantiles_of_the_binomial_mixture(trials, draws):
    """Also when one far-off draw holds a tail quantile outside the first search window."""
    theta = np.random.default_rng(3).beta(30, 4, size=1000)
    if draws == "isolated":
        theta = np.concatenate([np.random.default_rng(4).beta(30, 4, size=399), [0.05]])
    limits = funnel.predictive_limits([trials], theta)[0]
    counts = np.arange(trials + 1)
    pmf = stats.binom.pmf(counts[:, None], trials, theta).mean(axis=1)
    for probability, limit in zip(funnel.PROBABILITIES, limits, strict=True):
        assert limit == pytest.approx(continuous_quantile(np.cumsum(pmf), pmf, probability, trials), abs=1e-9)


def test_tail_probabilities_decide_who_is_outside_exactly():
    """Flags come from P(Y >= y) and P(Y <= y) of a group of that size, not from the drawn
    (interpolated) curves: all successes in 9 trials is not 'above 99.8%' when nine in nine
    is common for a group like the others."""
    theta = np.random.default_rng(7).beta(30, 1.5, size=1000)
    successes, trials = np.array([9, 2, 150, 80]), np.array([9, 9, 160, 160])
    low, high = funnel.predictive_tails(successes, trials, theta)
    direct_low = stats.binom.cdf(successes[:, None], trials[:, None], theta).mean(axis=1)
    direct_high = stats.binom.sf(successes[:, None] - 1, trials[:, None], theta).mean(axis=1)
    computed = np.isfinite(low)
    np.testing.assert_allclose(low[computed], direct_low[computed], atol=1e-12)
    np.testing.assert_allclose(high[computed], direct_high[computed], atol=1e-12)
    # Not computed only where both tails exceed 0.025 (the bound the function relies on).
    assert np.all(np.minimum(direct_low, direct_high)[~computed] > 0.025)
    flags = funnel.where_it_falls(low, high)
    assert flags[0] == "" and direct_high[0] > 0.1
    assert flags[1] == "below 99.8%" and direct_low[1] <= 0.001
    _, classic_high = funnel.binomial_tails(successes, trials, 0.95)
    np.testing.assert_allclose(classic_high, stats.binom.sf(successes - 1, trials, 0.95))


def groups_with_an_outlier(count, seed=4):
    rng = np.random.default_rng(seed)
    trials = rng.integers(20, 3000, count)
    successes = rng.binomial(trials, rng.beta(40, 8, count))
    successes[0] = trials[0] // 3  # far below every other group
    return pd.DataFrame({"group": [f"g{i}" for i in range(count)], "trials": trials, "successes": successes})


def test_groups_are_flagged_where_they_fall_and_spread_widens_the_funnel():
    table = groups_with_an_outlier(500)
    theta_new = np.random.default_rng(5).beta(40, 8, size=1000)
    result, curves = funnel.funnel_table(table, theta_new)
    assert result.loc[0, "classic"] == "below 99.8%" and result.loc[0, "with_spread"] == "below 99.8%"
    # Between-group spread makes the limits wider, so fewer groups fall outside them.
    assert (result["with_spread"] != "").sum() < (result["classic"] != "").sum()
    assert np.all(curves["spread"][:, 3] - curves["spread"][:, 0] >= curves["classic"][:, 3] - curves["classic"][:, 0] - 1e-9)
    # Off the curve's grid, limits are interpolated in log trials: close to the exact ones.
    exact = funnel.binomial_limits(result["trials"], result["target"].iloc[0])
    np.testing.assert_allclose(result[["low_998", "low_95", "high_95", "high_998"]], exact, atol=2e-3)


@pytest.mark.parametrize("count", [4, 10_000])
def test_the_figure_is_drawn_at_few_and_many_groups(tmp_path, spacex_prepared, count):
    import xarray as xr

    from common import read_prepared, write_datatree

    table = read_prepared(spacex_prepared) if count == 4 else groups_with_an_outlier(count)
    data = tmp_path / "data.csv"
    table[["group", "trials", "successes"]].to_csv(data, index=False)
    theta_new = np.random.default_rng(6).beta(20, 3, size=(2, 500))
    prediction = tmp_path / "new_group.nc"
    write_datatree(xr.DataTree.from_dict({"/posterior_predictive": xr.Dataset({"theta_new": (("chain", "draw"), theta_new)})}), prediction)
    funnel.main(str(data), str(tmp_path / "funnel.csv"), str(tmp_path / "funnel.png"), prediction=str(prediction),
                spread_model="hierarchical")
    written = pd.read_csv(tmp_path / "funnel.csv", keep_default_na=False)
    assert len(written) == count and {"classic", "with_spread", "spread_high_998"} <= set(written.columns)
    assert_png(tmp_path / "funnel.png")
    # Without a model of the spread, the classic funnel alone.
    funnel.main(str(data), str(tmp_path / "plain.csv"), str(tmp_path / "plain.png"))
    assert "with_spread" not in pd.read_csv(tmp_path / "plain.csv").columns
