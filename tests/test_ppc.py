"""Posterior predictive checks: replicated data with the right distribution, p-values that
flag what a model cannot reproduce."""

import numpy as np
import pandas as pd
import pytest

import plot_ppc
import ppc
from common import read_datatree, read_prepared
from conftest import ROOT
from test_plots import assert_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checks(spacex_traces, spacex_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ppc")
    results = {}
    for name, trace in spacex_traces.items():
        replicated, pvalues = out / f"{name}.nc", out / f"{name}.csv"
        model_file = ROOT / "scripts" / "models" / f"{name}.py"
        ppc.main(str(spacex_prepared), str(model_file), str(trace), str(replicated), str(pvalues), seed=3, ci_prob=0.94)
        results[name] = (replicated, pd.read_csv(pvalues))
    return results


def test_replicated_successes_have_the_posterior_predictive_mean(checks, spacex_traces, spacex_prepared):
    table = read_prepared(spacex_prepared)
    n = table["trials"].to_numpy()
    for name, (replicated, _) in checks.items():
        y_rep = read_datatree(replicated)["posterior_predictive"]["y"]
        assert y_rep.dims == ("chain", "draw", "group") and list(y_rep["group"].values) == list(table["group"])
        assert (y_rep.values >= 0).all() and (y_rep.values <= n).all()
        # E[y_rep_j] = n_j E[theta_j | y], estimated from the same draws' theta.
        theta = read_datatree(spacex_traces[name])["posterior"]["theta"].values
        theta = np.broadcast_to(theta[..., None] if theta.ndim == 2 else theta, y_rep.shape)
        sd = np.sqrt(n * theta * (1 - theta)).mean(axis=(0, 1)) / np.sqrt(theta.shape[0] * theta.shape[1])
        np.testing.assert_array_less(np.abs(y_rep.values.mean(axis=(0, 1)) - (n * theta).mean(axis=(0, 1))), 5 * sd + 1e-9)


def test_full_pooling_cannot_reproduce_the_small_launchers(checks):
    _, pvalues = checks["full_pooling"]
    row = pvalues.set_index("group")
    for launcher in ("Falcon 1", "Starship"):
        assert row.loc[launcher, "p_less_equal"] < 0.01
    # The models that let launchers differ reproduce every one.
    for name in ("no_pooling", "hierarchical", "hierarchical_logit"):
        _, pvalues = checks[name]
        assert (pvalues[["p_greater_equal", "p_less_equal"]] > 0.05).all().all(), name


def test_pvalues_table(checks, spacex_prepared):
    table = read_prepared(spacex_prepared)
    _, pvalues = checks["hierarchical"]
    assert list(pvalues["group"]) == list(table["group"]) and list(pvalues["observed"]) == list(table["successes"])
    assert (pvalues["replicated_low"] <= pvalues["replicated_high"]).all()
    # P(y_rep >= y) + P(y_rep <= y) = 1 + P(y_rep = y).
    assert ((pvalues["p_greater_equal"] + pvalues["p_less_equal"]) >= 1).all()


def test_ppc_plot(checks, tmp_path):
    output = tmp_path / "ppc.png"
    replicated = checks["full_pooling"][0]
    plot_ppc.main(str(replicated), str(replicated.with_suffix(".csv")), str(output), ci_prob=0.94, max_groups=30)
    assert_png(output)


OVERDISPERSED = ROOT / "tests" / "models" / "overdispersed.py"


@pytest.fixture(scope="module")
def overdispersed(spacex_prepared, tmp_path_factory):
    """A model whose likelihood is Beta-Binomial, fitted and checked: (trace, y_rep, p-values)."""
    import sample

    out = tmp_path_factory.mktemp("overdispersed")
    trace, replicated, pvalues = out / "trace.nc", out / "ppc.nc", out / "ppc.csv"
    sample.main(
        str(spacex_prepared), str(OVERDISPERSED), str(trace), dataset="spacex", model="overdispersed",
        sampling={"sampler": "nutpie", "draws": 1000, "tune": 500, "chains": 2, "seed": 1},
        settings={"target_accept": 0.9}, seed=7,
    )
    ppc.main(str(spacex_prepared), str(OVERDISPERSED), str(trace), str(replicated), str(pvalues), seed=3, ci_prob=0.94)
    y_rep = read_datatree(replicated)["posterior_predictive"]["y"].values.reshape(-1, 4)
    return trace, y_rep, pd.read_csv(pvalues).set_index("group")


def test_replicates_follow_the_models_own_likelihood(overdispersed, spacex_prepared):
    """Var(y_rep_j) over the draws is the Beta-Binomial's, not the (far smaller) Binomial's."""
    trace, y_rep, _ = overdispersed
    posterior = read_datatree(trace)["posterior"]
    n = read_prepared(spacex_prepared)["trials"].to_numpy()
    theta = posterior["theta"].values.reshape(-1, 1)
    kappa = posterior["kappa"].values.reshape(-1, 1)
    # Total variance = mean of the conditional variances + variance of the conditional means.
    binomial = (n * theta * (1 - theta)).mean(axis=0) + (n * theta).var(axis=0)
    beta_binomial = (n * theta * (1 - theta) * (n + kappa) / (1 + kappa)).mean(axis=0) + (n * theta).var(axis=0)
    np.testing.assert_allclose(y_rep.var(axis=0), beta_binomial, rtol=0.15)
    assert (beta_binomial > 1.4 * binomial).all()  # so a Binomial replicate would fail the line above


def test_an_overdispersed_full_pooling_reproduces_the_small_launchers(overdispersed, checks):
    """Where the Binomial full pooling fails (test above), its over-dispersed form does not."""
    *_, pvalues = overdispersed
    for launcher in ("Falcon 1", "Starship"):
        assert pvalues.loc[launcher, "p_less_equal"] > 0.05
        assert checks["full_pooling"][1].set_index("group").loc[launcher, "p_less_equal"] < 0.01


def test_a_model_whose_observed_variable_is_not_over_groups_is_refused():
    import pymc as pm

    with pm.Model(coords={"group": ["a", "b"]}) as model:
        theta = pm.Beta("theta", 1, 1)
        pm.Binomial("successes", n=[3, 4], p=theta, observed=[1, 2])
    with pytest.raises(ValueError, match=r"observed variables must each be over group; this one has \['successes'\]"):
        ppc.observed_variables(model)


def test_prediction_uses_the_models_new_group(overdispersed, spacex_prepared, tmp_path):
    """predict.py draws the y_new that the model file's new_group() defines."""
    import predict

    trace, *_ = overdispersed
    predict.main(str(spacex_prepared), str(OVERDISPERSED), str(trace), str(tmp_path / "new.nc"), new_trials=10, seed=2)
    drawn = read_datatree(tmp_path / "new.nc")["posterior_predictive"]
    theta_new, y_new = drawn["theta_new"].values.ravel(), drawn["y_new"].values.ravel()
    assert ((y_new >= 0) & (y_new <= 10)).all() and ((theta_new > 0) & (theta_new < 1)).all()
    # theta_new scatters about theta as kappa says, so it is not theta itself.
    theta = read_datatree(trace)["posterior"]["theta"].values.ravel()
    assert not np.allclose(theta_new, theta)
    assert abs(y_new.mean() - 10 * theta_new.mean()) < 5 * y_new.std() / np.sqrt(y_new.size)


def test_pvalues_in_blocks_equal_the_whole(checks, spacex_prepared):
    """Blocks of groups only bound the memory: the table is the same for any block size."""
    table = read_prepared(spacex_prepared)
    y_rep = read_datatree(checks["hierarchical"][0])["posterior_predictive"].to_dataset()
    observed = {"y": table["successes"].to_numpy()}
    whole = ppc.p_values(y_rep, table, observed, 0.94)
    assert list(whole["denominator"]) == list(table["trials"])
    for block in (1, 3):
        pd.testing.assert_frame_equal(ppc.p_values(y_rep, table, observed, 0.94, block=block), whole)


def test_replicates_drawn_in_blocks_are_independent_reproducible_int32(spacex_prepared, monkeypatch):
    """At many groups the draws are replicated a block at a time, each block from its own
    stream: with the same theta in every draw, blocks differ (a repeated seed would copy
    them) yet follow Binomial(n, theta), a second run gives the same values, and counts are
    stored as int32."""
    import xarray as xr

    table = read_prepared(spacex_prepared)
    model = ppc.load_module(ROOT / "scripts" / "models" / "no_pooling.py").build(table)
    theta = np.array([0.3, 0.9, 0.5, 0.6])
    posterior = xr.Dataset({"theta": (("chain", "draw", "group"), np.broadcast_to(theta, (2, 600, 4)).copy())},
                           coords={"chain": [0, 1], "draw": np.arange(600), "group": table["group"].to_numpy()})
    monkeypatch.setattr(ppc, "BLOCK_VALUES", 2 * 4 * 200)  # three blocks of 200 draws
    y_rep = ppc.replicate(model, table, posterior, seed=9)["y"]
    assert y_rep.dtype == np.int32 and y_rep.shape == (2, 600, 4)
    np.testing.assert_array_equal(y_rep.values, ppc.replicate(model, table, posterior, seed=9)["y"].values)
    blocks = y_rep.values.reshape(2, 3, 200, 4)
    assert not np.array_equal(blocks[:, 0], blocks[:, 1]) and not np.array_equal(blocks[:, 1], blocks[:, 2])
    n = table["trials"].to_numpy()
    sd = np.sqrt(n * theta * (1 - theta) / 1200)
    np.testing.assert_array_less(np.abs(y_rep.values.mean(axis=(0, 1)) - n * theta), 5 * sd)


def test_at_many_values_every_kth_draw_is_replicated(spacex_traces, spacex_prepared, tmp_path):
    """Over ppc.max_values draws x groups, the check replicates every k-th draw of each chain
    (at least min_draws in all), and its p-values are those of exactly those draws."""
    trace = read_datatree(spacex_traces["no_pooling"])
    chains, draws = trace["posterior"].sizes["chain"], trace["posterior"].sizes["draw"]
    replicated, pvalues = tmp_path / "ppc.nc", tmp_path / "ppc.csv"
    # 4 groups: 4,000 values are 1,000 draws (over min_draws), one in ceil(draws / 1,000).
    ppc.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / "no_pooling.py"), str(spacex_traces["no_pooling"]),
             str(replicated), str(pvalues), seed=3, ci_prob=0.94, max_values=4000, min_draws=500)
    group = read_datatree(replicated)["posterior_predictive"]
    y_rep = group["y"]
    every = -(-chains * draws // 1000)
    assert group.attrs["kept_every"] == every and y_rep.sizes["draw"] == len(range(0, draws, every))
    np.testing.assert_array_equal(y_rep["draw"].values, trace["posterior"]["draw"].values[::every])
    table = read_prepared(spacex_prepared)
    again = ppc.p_values(y_rep.to_dataset(), table, {"y": table["successes"].to_numpy()}, 0.94)
    pd.testing.assert_frame_equal(pd.read_csv(pvalues), again, check_dtype=False)
