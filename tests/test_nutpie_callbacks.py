"""The quicker nutpie callbacks change compile time only: draws stay bitwise identical."""

import numpy as np
import nutpie
import nutpie.compile_pymc as compile_pymc
import pandas as pd

import nutpie_callbacks
from common import load_module
from conftest import SCRIPTS

# nutpie's own factories, captured at collection, before any test can install ours.
OWN = (compile_pymc._make_c_logp_func, compile_pymc._make_c_expand_func)


def draws(model_name, data):
    model = load_module(SCRIPTS / "models" / f"{model_name}.py").build(data)
    compiled = nutpie.compile_pymc_model(model)
    trace = nutpie.sample(compiled, draws=200, tune=200, chains=2, cores=1, seed=7, progress_bar=False)
    return {name: trace.posterior[name].values for name in trace.posterior.data_vars}


def test_same_draws_as_nutpie_own_callbacks(monkeypatch):
    data = pd.DataFrame({"group": ["a", "b", "c"], "trials": [5, 30, 9], "successes": [2, 29, 0]})
    assert OWN[0] is not nutpie_callbacks.make_logp_callback
    monkeypatch.setattr(compile_pymc, "_make_c_logp_func", OWN[0])
    monkeypatch.setattr(compile_pymc, "_make_c_expand_func", OWN[1])
    own = draws("hierarchical", data)
    assert nutpie_callbacks.install()
    assert compile_pymc._make_c_logp_func is nutpie_callbacks.make_logp_callback
    ours = draws("hierarchical", data)
    assert own.keys() == ours.keys()
    for name in own:
        np.testing.assert_array_equal(own[name], ours[name])


def test_other_nutpie_versions_are_left_alone(monkeypatch):
    monkeypatch.setattr(compile_pymc, "_make_c_logp_func", OWN[0])
    original = compile_pymc._make_c_logp_func
    monkeypatch.setattr(nutpie, "__version__", "0.99.0")
    assert not nutpie_callbacks.install()
    assert compile_pymc._make_c_logp_func is original


def swapped_draws(module, first, second):
    """The collapsed model compiled for `first` (padded to 64), `second`'s data swapped in."""
    model = module.build_collapsed(first, swappable=True, padded_to=64)
    compiled = nutpie.compile_pymc_model(model).with_data(**module.collapsed_data(second, swappable=True, padded_to=64))
    trace = nutpie.sample(compiled, draws=200, tune=200, chains=2, cores=1, seed=7, progress_bar=False)
    return {name: trace.posterior[name].values for name in trace.posterior.data_vars}


def test_our_reading_of_swapped_data_gives_nutpie_own_draws(monkeypatch):
    """The straight-line reader of shared arrays (make_extraction) against nutpie's generic
    one (make_extraction_fn): the same data reach the model, so the same draws."""
    module = load_module(SCRIPTS / "models" / "hierarchical.py")
    first = pd.DataFrame({"group": ["a", "b", "c"], "trials": [5, 30, 9], "successes": [2, 29, 0]})
    second = pd.DataFrame({"group": list("vwxyz"), "trials": [40, 12, 3, 25, 7], "successes": [30, 5, 3, 20, 1]})
    assert nutpie_callbacks.install()
    ours = swapped_draws(module, first, second)
    monkeypatch.setattr(nutpie_callbacks, "make_extraction", compile_pymc.make_extraction_fn)
    own = swapped_draws(module, first, second)
    for name in own:
        np.testing.assert_array_equal(own[name], ours[name])
    # and the swap is real: the second data set's posterior, not the first's
    assert abs(ours["alpha"].mean() / (ours["alpha"].mean() + ours["beta"].mean()) - 0.68) < 0.15
