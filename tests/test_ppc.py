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
        ppc.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{name}.py"), str(trace), str(replicated), str(pvalues), seed=3, ci_prob=0.94)
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
