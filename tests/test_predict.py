"""New-group prediction: each model's answer, checked against what it must be."""

import numpy as np
import pytest

import predict
from common import read_datatree
from conftest import ROOT

pytestmark = pytest.mark.slow
NEW_TRIALS = 10


@pytest.fixture(scope="module")
def predictions(spacex_traces, spacex_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("predictions")
    paths = {}
    for name, trace in spacex_traces.items():
        paths[name] = out / f"{name}.nc"
        predict.main(
            str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{name}.py"), str(trace), str(paths[name]),
            new_trials=NEW_TRIALS, seed=5,
        )
    return paths


def drawn(path):
    tree = read_datatree(path)["posterior_predictive"]
    return tree["theta_new"].values, tree["y_new"].values


def mcse(values):
    import arviz as az

    return float(az.mcse(values, method="mean"))


def test_variables_and_shapes(predictions, spacex_traces):
    for name, path in predictions.items():
        theta_new, y_new = drawn(path)
        posterior = read_datatree(spacex_traces[name])["posterior"]
        assert theta_new.shape == y_new.shape == (posterior.sizes["chain"], posterior.sizes["draw"])
        assert ((theta_new >= 0) & (theta_new <= 1)).all()  # float rounding can reach 0 or 1
        assert np.issubdtype(y_new.dtype, np.integer)
        assert ((y_new >= 0) & (y_new <= NEW_TRIALS)).all()


def test_full_pooling_new_group_has_the_shared_theta(predictions, spacex_traces):
    theta_new, _ = drawn(predictions["full_pooling"])
    np.testing.assert_array_equal(theta_new, read_datatree(spacex_traces["full_pooling"])["posterior"]["theta"].values)


def test_no_pooling_new_group_is_the_jeffreys_prior(predictions):
    from scipy import stats

    theta_new, _ = drawn(predictions["no_pooling"])
    assert stats.kstest(theta_new.ravel(), stats.beta(0.5, 0.5).cdf).pvalue > 1e-3


def test_hierarchical_new_group_mean_is_the_population_mean(predictions, spacex_traces):
    theta_new, _ = drawn(predictions["hierarchical"])
    mu = read_datatree(spacex_traces["hierarchical"])["posterior"]["mu"].values
    # E[theta_new] = E[E[Beta(alpha, beta)]] = E[mu]; both estimates carry Monte Carlo error.
    tolerance = 4 * np.hypot(mcse(theta_new), mcse(mu))
    assert abs(theta_new.mean() - mu.mean()) < tolerance
    # ...but theta_new is wider than mu: it adds the spread of groups around the mean.
    assert theta_new.std() > 1.5 * mu.std()


def test_y_new_is_binomial_given_theta_new(predictions):
    for path in predictions.values():
        theta_new, y_new = drawn(path)
        # Given theta_new, y_new - n theta_new has mean 0 and variance n theta (1 - theta),
        # independently across draws: a z-test with no Monte Carlo error in the reference.
        residual = y_new - NEW_TRIALS * theta_new
        standard_error = np.sqrt(np.mean(NEW_TRIALS * theta_new * (1 - theta_new)) / residual.size)
        assert abs(residual.mean()) < 4 * standard_error


def test_same_seed_same_draws_other_seed_other_draws(spacex_traces, spacex_prepared, tmp_path):
    paths = []
    for seed in (5, 5, 6):
        paths.append(tmp_path / f"{len(paths)}.nc")
        predict.main(
            str(spacex_prepared), str(ROOT / "scripts" / "models" / "hierarchical.py"), str(spacex_traces["hierarchical"]),
            str(paths[-1]), new_trials=NEW_TRIALS, seed=seed,
        )
    first, again, other = (drawn(p)[0] for p in paths)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", ["hierarchical", "full_pooling"])
def test_same_draws_as_sample_posterior_predictive(name, predictions, spacex_traces, spacex_prepared):
    """The vectorised prediction is the article's `pm.sample_posterior_predictive`, faster."""
    import pymc as pm

    from common import load_module, read_prepared

    module = load_module(ROOT / "scripts" / "models" / f"{name}.py")
    model = module.build(read_prepared(spacex_prepared))
    with model:
        module.new_group(model, NEW_TRIALS)
        reference = pm.sample_posterior_predictive(
            read_datatree(spacex_traces[name]), var_names=["theta_new", "y_new"], random_seed=5, progressbar=False
        )["posterior_predictive"]
    theta_drawn, y_drawn = drawn(predictions[name])
    np.testing.assert_array_equal(theta_drawn, reference["theta_new"].values)
    np.testing.assert_array_equal(y_drawn, reference["y_new"].values)
