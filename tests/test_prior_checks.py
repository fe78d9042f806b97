"""Prior checks: the trace's log_prior, the power-scaling sensitivity table (arviz-stats)
and the prior predictive figure; and the overview the report's first page shows."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import overview
import prior_predictive
import sensitivity
from common import load_module, read_prepared, read_variables
from conftest import ROOT
from test_plots import assert_png


@pytest.mark.slow
def test_the_trace_holds_the_log_density_of_the_model_own_priors(spacex_traces):
    """Exactly the hyperpriors' log densities at each draw (HalfNormal(10) for alpha and
    beta), not the population term theta | alpha, beta; every prior of the pooling models."""
    hierarchical = read_variables(spacex_traces["hierarchical"], "log_prior")
    posterior = read_variables(spacex_traces["hierarchical"], "posterior", ["alpha", "beta"])
    assert set(hierarchical.data_vars) == {"alpha", "beta"}
    # PyMC's and SciPy's normalising constants differ in the eighth digit.
    for name in ("alpha", "beta"):
        expected = stats.halfnorm(scale=10).logpdf(posterior[name].values)
        np.testing.assert_allclose(hierarchical[name].values, expected, rtol=0, atol=1e-6)
    no_pooling = read_variables(spacex_traces["no_pooling"], "log_prior")
    theta = read_variables(spacex_traces["no_pooling"], "posterior", ["theta"])["theta"]
    np.testing.assert_allclose(no_pooling["theta"].values, stats.beta(0.5, 0.5).logpdf(theta.values), rtol=0, atol=1e-6)
    assert set(read_variables(spacex_traces["hierarchical_logit"], "log_prior").data_vars) == {"m", "s"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hierarchical", "no_pooling"])
def test_sensitivity_is_arviz_stats_psense_of_the_priors_and_likelihood(spacex_traces, spacex_prepared, tmp_path, model):
    from arviz_stats import psense_summary

    from common import read_datatree

    out = tmp_path / "sensitivity.csv"
    sensitivity.main(str(spacex_prepared), str(spacex_traces[model]), str(out), max_groups=2)
    table = pd.read_csv(out, index_col="parameter", keep_default_na=False)
    tree = read_datatree(spacex_traces[model])
    if model == "hierarchical":
        assert list(table.index) == ["alpha", "beta", "mu"]
        reference = psense_summary(tree, var_names=["alpha", "beta", "mu"], round_to=6)
    else:  # no scalar parameter: the theta of the groups with the fewest trials
        assert list(table.index) == ["theta[Falcon 1]", "theta[Falcon Heavy]"]  # the fewest trials
        reference = psense_summary(tree, var_names=["theta"], coords={"group": ["Falcon 1", "Falcon Heavy"]}, round_to=6)
    np.testing.assert_allclose(table[["prior", "likelihood"]].to_numpy(), reference[["prior", "likelihood"]].to_numpy(), atol=2e-6)
    assert set(table["diagnosis"]) <= {"", "potential prior-data conflict", "potential strong prior / weak likelihood"}


def test_problems_name_each_warning():
    table = pd.DataFrame({"prior": [0.2, 0.01, 0.08], "likelihood": [0.01, 0.1, 0.2],
                          "diagnosis": ["potential strong prior / weak likelihood", "", "potential prior-data conflict"]},
                         index=pd.Index(["alpha", "beta", "mu"], name="parameter"))
    assert sensitivity.problems(table) == [
        "prior sensitivity of alpha: strong prior / weak likelihood (prior 0.200, likelihood 0.010)",
        "prior sensitivity of mu: prior-data conflict (prior 0.080, likelihood 0.200)",
    ]


@pytest.mark.parametrize("model", ["no_pooling", "hierarchical"])
def test_prior_predictive_rates_have_the_prior_mean(spacex_prepared, model):
    """Both priors are symmetric about 1/2 (Beta(1/2, 1/2); alpha and beta alike), so the
    simulated rates average 1/2."""
    table = read_prepared(spacex_prepared)
    rates = prior_predictive.prior_values(load_module(ROOT / "scripts" / "models" / f"{model}.py").build(table), table,
                                         draws=4000, seed=3)
    assert rates.shape == (4000, 4) and (rates >= 0).all() and (rates <= 1).all()
    assert abs(rates.mean() - 0.5) < 4 * rates.std() / np.sqrt(rates.size / 4)


def test_prior_predictive_figure(spacex_prepared, tmp_path):
    prior_predictive.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / "hierarchical.py"),
                          str(tmp_path / "prior.png"), draws=200, seed=1)
    assert_png(tmp_path / "prior.png")


def test_at_many_groups_a_seeded_random_subset_is_simulated(monkeypatch):
    """Above MAX_VALUES simulated values, a random subset of the groups (the same for the same
    seed, in the data's order, a different one for another seed) stands for them all."""
    table = pd.DataFrame({"group": [f"g{i}" for i in range(1000)], "trials": 10, "successes": 3})
    assert prior_predictive.groups_shown(table, draws=100, seed=1) is table
    monkeypatch.setattr(prior_predictive, "MAX_VALUES", 100 * 50)
    shown = prior_predictive.groups_shown(table, draws=100, seed=1)
    assert len(shown) == 50 and shown["group"].is_unique
    assert list(shown["group"]) == sorted(shown["group"], key=lambda name: int(name[1:]))
    pd.testing.assert_frame_equal(shown, prior_predictive.groups_shown(table, draws=100, seed=1))
    assert set(shown["group"]) != set(prior_predictive.groups_shown(table, draws=100, seed=2)["group"])


def ranks_of(groups, p_best):
    rank_mean = 1 + np.argsort(np.argsort(-np.asarray(p_best)))
    return pd.DataFrame({"group": groups, "rank_mean": rank_mean, "rank_lb": 1, "rank_ub": len(groups),
                         "p_best": p_best, "p_worst": p_best[::-1]})


def test_the_overview_ranks_under_the_best_model_that_tells_groups_apart():
    groups = ["a", "b", "c", "d", "e", "f", "g"]
    comparison = pd.DataFrame(index=pd.Index(["full_pooling", "hierarchical"], name="model"))
    ranks = {"full_pooling": ranks_of(groups, [1 / 7] * 7),
             "hierarchical": ranks_of(groups, [0.05, 0.4, 0.1, 0.2, 0.15, 0.06, 0.04])}
    calm = pd.DataFrame({"diagnosis": [""]}, index=["theta"])
    warned = pd.DataFrame({"diagnosis": ["potential prior-data conflict", ""]}, index=["alpha", "mu"])
    found = overview.summary(comparison, ranks, {"full_pooling": calm, "hierarchical": warned})
    assert found["best_model"] == "full_pooling" and found["ranked_by"] == "hierarchical"
    assert [row["group"] for row in found["best"]] == ["b", "d", "e"]
    assert [row["group"] for row in found["worst"]] == ["g", "a", "f"]
    assert found["sensitivity"] == {"hierarchical": ["alpha: prior-data conflict"]}
    four = overview.summary(comparison, {m: t.head(4) for m, t in ranks.items()}, {})
    assert len(four["best"]) == 2 and len(four["worst"]) == 2  # no group in both lists
