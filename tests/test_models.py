"""Model files: names, dims and coords as the rest of the workflow expects them."""

import numpy as np
import pytest

from common import load_module, read_prepared
from conftest import ROOT

MODELS = ROOT / "scripts" / "models"
GROUPS = ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]


@pytest.fixture(scope="module")
def table(spacex_prepared):
    return read_prepared(spacex_prepared)


def build(name, table):
    module = load_module(MODELS / f"{name}.py")
    return module, module.build(table)


def test_no_pooling(table):
    _, model = build("no_pooling", table)
    assert [v.name for v in model.free_RVs] == ["theta"]
    assert model.named_vars_to_dims["theta"] == ("group",)
    assert list(model.coords["group"]) == GROUPS


def test_full_pooling(table):
    _, model = build("full_pooling", table)
    assert [v.name for v in model.free_RVs] == ["theta"]
    assert "theta" not in model.named_vars_to_dims
    assert model.named_vars_to_dims["y"] == ("group",)


def test_hierarchical(table):
    module, model = build("hierarchical", table)
    assert {v.name for v in model.free_RVs} == {"alpha", "beta", "theta"}
    assert [v.name for v in model.deterministics] == ["mu"]
    assert model.named_vars_to_dims["theta"] == ("group",)
    assert module.POPULATION_MEAN == "mu"
    assert model["mu"].eval({model["alpha"]: 3.0, model["beta"]: 1.0}) == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["no_pooling", "full_pooling", "hierarchical", "hierarchical_logit"])
def test_observed_data_and_new_group(name, table):
    import pymc as pm

    module, model = build(name, table)
    observed = model.rvs_to_values[model["y"]]
    np.testing.assert_array_equal(observed.data if hasattr(observed, "data") else observed.eval(), [2, 301, 9, 5])
    with model:
        y_new = module.new_group(model, 10)
    assert y_new.name == "y_new" and y_new.ndim == 0
    assert model["theta_new"].ndim == 0
    # 10 trials, as asked: y_new never exceeds them and reaches both ends over many draws.
    draws = pm.draw(y_new, draws=4000, random_seed=1)
    assert draws.min() >= 0 and draws.max() <= 10 and len(np.unique(draws)) > 2


@pytest.mark.parametrize("name", ["no_pooling", "full_pooling", "hierarchical"])
def test_logp_of_the_article_model(name, table):
    """The model's joint log density at a point equals the article's, written out by hand."""
    from scipy import stats

    _, model = build(name, table)
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    theta = np.array([0.4, 0.95, 0.9, 0.6])
    if name == "full_pooling":
        theta = np.full(4, 0.9)
        point = {"theta_logodds__": np.log(0.9 / 0.1)}
        jacobian = np.log(0.9 * 0.1)
        expected = stats.beta(0.5, 0.5).logpdf(0.9) + jacobian
    elif name == "no_pooling":
        point = {"theta_logodds__": np.log(theta / (1 - theta))}
        expected = (stats.beta(0.5, 0.5).logpdf(theta) + np.log(theta * (1 - theta))).sum()
    else:
        a, b = 3.0, 1.5
        point = {"alpha_log__": np.log(a), "beta_log__": np.log(b), "theta_logodds__": np.log(theta / (1 - theta))}
        halfnormal = stats.halfnorm(scale=10)
        expected = (
            halfnormal.logpdf(a) + np.log(a) + halfnormal.logpdf(b) + np.log(b)
            + (stats.beta(a, b).logpdf(theta) + np.log(theta * (1 - theta))).sum()
        )
    expected += stats.binom(n, theta).logpmf(y).sum()
    # PyTensor's and SciPy's log-gamma differ in the last few digits.
    assert model.compile_logp()(point) == pytest.approx(expected, rel=1e-7)


def test_hierarchical_logit_logp_and_structure(table):
    """Non-centred log-odds model: logit theta_j = m + s z_j, priors as documented."""
    from scipy import stats
    from scipy.special import expit

    module, model = build("hierarchical_logit", table)
    assert module.POPULATION_MEAN is None
    assert model.named_vars_to_dims["z"] == ("group",) and model.named_vars_to_dims["theta"] == ("group",)
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    m, s, z = 1.2, 0.8, np.array([-1.0, 2.0, 0.5, 0.0])
    point = {"m": m, "s_log__": np.log(s), "z": z}
    theta = expit(m + s * z)
    expected = (
        stats.norm(0, 1.5).logpdf(m) + stats.halfnorm(scale=1.5).logpdf(s) + np.log(s)
        + stats.norm().logpdf(z).sum() + stats.binom(n, theta).logpmf(y).sum()
    )
    assert model.compile_logp()(point) == pytest.approx(expected, rel=1e-7)
