"""The vectorised summary equals ArviZ's `az.summary`, parameter by parameter."""

import numpy as np
import pytest
import xarray as xr

import mcmc_stats


def ar1(rng, chains, draws, phi):
    x = np.zeros((chains, draws))
    noise = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def posterior(chains, draws, seed=1):
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "mixing_slowly": (("chain", "draw"), ar1(rng, chains, draws, 0.95)),
            "chains_apart": (("chain", "draw"), rng.normal(size=(chains, draws)) + np.arange(chains)[:, None]),
            "theta": (("chain", "draw", "group"),
                      np.stack([ar1(rng, chains, draws, phi) for phi in (0.0, 0.5, 0.99, -0.6)], axis=-1)),
            "random_walk": (("chain", "draw"), np.cumsum(rng.normal(size=(chains, draws)), axis=1)),
            "tied": (("chain", "draw"), rng.integers(0, 3, (chains, draws)).astype(float)),
            "constant": (("chain", "draw"), np.ones((chains, draws))),
        },
        coords={"group": ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]},
    )


@pytest.mark.parametrize("fft_values", [mcmc_stats.FFT_VALUES, 0], ids=["by FFT", "lag by lag"])
@pytest.mark.parametrize("chains,draws", [(4, 1000), (4, 257), (2, 100), (1, 400)])
def test_summary_equals_arviz(chains, draws, fft_values, monkeypatch):
    import arviz as az

    monkeypatch.setattr(mcmc_stats, "FFT_VALUES", fft_values)
    draws_ = posterior(chains, draws)
    expected = az.summary(xr.DataTree.from_dict({"/posterior": draws_}), ci_prob=0.94, round_to="none")
    got = mcmc_stats.summary(draws_, 0.94)
    assert list(got.index) == list(expected.index) and list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(dtype=float), rtol=1e-10, atol=1e-12, equal_nan=True)


def test_few_values_take_the_fft_and_many_the_compiled_kernel(monkeypatch):
    """Decided once for a whole table from its total number of values, not block by block
    (blocks are small: a million groups would all go by FFT)."""
    calls = []
    monkeypatch.setattr(mcmc_stats, "_ess_short", lambda x, lags: calls.append(x.size) or np.full(len(x), 1.0))
    small = np.random.default_rng(2).normal(size=(3, 4, 100))
    mcmc_stats.ess_basic(small)
    assert calls == []
    monkeypatch.setattr(mcmc_stats, "FFT_VALUES", small.size - 1)
    mcmc_stats.ess_basic(small)
    assert calls == [small.size]
    calls.clear()
    draws_ = posterior(4, 300)
    total = sum(values.size for values in draws_.data_vars.values())
    monkeypatch.setattr(mcmc_stats, "CHUNK", 1)  # blocks far below the threshold
    monkeypatch.setattr(mcmc_stats, "FFT_VALUES", total - 1)
    mcmc_stats.summary(draws_, 0.9)
    assert len(calls) > len(draws_.data_vars)  # every block went lag by lag
    calls.clear()
    monkeypatch.setattr(mcmc_stats, "FFT_VALUES", total)
    mcmc_stats.summary(draws_, 0.9)
    mcmc_stats.relative_ess(draws_)
    assert calls == []


def test_threads_and_blocks_change_nothing(monkeypatch):
    draws_ = posterior(4, 300)
    one = mcmc_stats.summary(draws_, 0.9)
    monkeypatch.setattr(mcmc_stats, "CHUNK", 1)  # one parameter per block
    assert mcmc_stats.summary(draws_, 0.9, threads=2).equals(one)


def test_short_and_fft_autocorrelations_agree():
    """Lag by lag where the sequence stops early, all lags by FFT otherwise: same ESS."""
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(200, 4, 500))
    walks = np.cumsum(rng.normal(size=(20, 4, 500)), axis=-1)  # needs more than LAGS lags
    for x in (independent, walks):
        np.testing.assert_allclose(mcmc_stats.ess_lag_by_lag(x), mcmc_stats.ess_fft(x), rtol=1e-10)


def test_relative_ess_equals_arviz_r_eff():
    """ArviZ's loo uses the mean ESS (method "mean") of all posterior values over the draws."""
    import arviz as az

    draws_ = posterior(4, 300).drop_vars(["constant", "tied"])
    ess = az.ess(xr.DataTree.from_dict({"/posterior": draws_}), method="mean")
    expected = np.concatenate([ess[name].values.reshape(-1) for name in draws_.data_vars]).mean() / (4 * 300)
    assert mcmc_stats.relative_ess(draws_) == pytest.approx(expected, rel=1e-10)
