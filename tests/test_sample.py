"""What a trace records of the code that made it (scripts/sample.py)."""

import sys

import sample
from conftest import ROOT, SPACEX


def test_recorded_versions_are_those_of_the_modules_that_run_not_of_the_files_on_disk(monkeypatch):
    """The warm worker imports the stack once; if a package is upgraded on disk meanwhile,
    its metadata says the new version while the old one runs (and made the trace)."""
    import importlib

    import pymc

    # Imported before the patch: a module that does `from importlib.metadata import version`
    # at import would keep the fake for the rest of the session.
    for package in sample.RECORDED_PACKAGES:
        importlib.import_module(package)
    monkeypatch.setattr(pymc, "__version__", "6.0.0+imported-before-an-upgrade")
    monkeypatch.setattr("importlib.metadata.version", lambda name: "99.0 (on disk)")
    attrs = sample.provenance(
        dataset="spacex", model_name="hierarchical", data=SPACEX, model_file=ROOT / "scripts" / "models" / "hierarchical.py",
        seed=1, sampling={"sampler": "nutpie"}, settings={}, method="collapsed",
    )
    assert attrs["version_pymc"] == "6.0.0+imported-before-an-upgrade"
    for package in sample.RECORDED_PACKAGES:
        assert attrs[f"version_{package}"] == sys.modules[package].__version__


def test_the_summed_log_likelihood_is_the_sum_of_the_pointwise_one(spacex_traces, spacex_prepared):
    """What a collapsed model's trace stores instead of pointwise values: their sum over the
    groups, draw by draw, as PyMC computes them."""
    import numpy as np
    import pymc as pm

    from common import load_module, read_datatree, read_prepared

    trace = read_datatree(spacex_traces["hierarchical"])
    model = load_module(ROOT / "scripts" / "models" / "hierarchical.py").build(read_prepared(spacex_prepared))
    pointwise = pm.compute_log_likelihood(trace.copy(), model=model, progressbar=False, extend_inferencedata=False)
    np.testing.assert_allclose(trace["log_likelihood"]["y"].values, pointwise["y"].sum("group").values, rtol=1e-12)


def test_a_trace_over_its_store_values_keeps_every_kth_draw_as_float32_bitwise(spacex_prepared, tmp_path):
    """sampling.store_values bounds the stored group-level values: 4 groups x 2 chains x 200
    draws = 1,600 values over a bound of 400 keep every 4th draw, the same draws (bitwise) as
    the full trace's, the group-level ones as float32, and a rerun gives the same file's
    values again."""
    import numpy as np

    from common import read_datatree

    small = {"sampler": "nutpie", "draws": 200, "tune": 200, "chains": 2, "seed": 1}
    assert sample.kept_every(small, 4) == 1
    assert sample.kept_every({**small, "store_values": 400}, 4) == 4
    assert sample.kept_every({**small, "store_values": 399}, 4) == 5
    # ... but never fewer than store_min_draws draws: 400 draws, at least 200 kept.
    assert sample.kept_every({**small, "store_values": 4, "store_min_draws": 200}, 4) == 2
    assert sample.kept_every({**small, "store_values": 400, "store_min_draws": 400}, 4) == 1
    # The floor holds when the chains' lengths do not divide: one chain of 204 draws at a
    # million groups keeps at least 200 (every 1st), four of 1,010 at least 200 (every 20th).
    for chains, draws in ((1, 204), (4, 1010), (4, 60), (3, 777)):
        sampling = {**small, "chains": chains, "draws": draws, "store_values": 20_000_000, "store_min_draws": 200}
        every = sample.kept_every(sampling, 10**6)
        assert chains * len(range(0, draws, every)) >= min(200, chains * draws), (chains, draws, every)

    def run(name, model, store_values=None):
        path = tmp_path / f"{name}.nc"
        sampling = small if store_values is None else {**small, "store_values": store_values}
        sample.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{model}.py"), str(path), dataset="spacex",
                    model=model, sampling=sampling, settings={}, seed=11, threads=1)
        return read_datatree(path)

    for model, group_variable, sampled in (("no_pooling", "theta", "theta"), ("hierarchical", "theta", "alpha")):
        full, kept, again = run(f"{model}_full", model), run(f"{model}_kept", model, 400), run(f"{model}_again", model, 400)
        assert kept.attrs["pipeline_kept_every"] == 4 and full.attrs["pipeline_kept_every"] == 1
        assert kept["posterior"].sizes["draw"] == 50
        assert kept["posterior"][group_variable].dtype == np.float32
        assert full["posterior"][group_variable].dtype == np.float64
        expected = full["posterior"][sampled].values[:, ::4]
        np.testing.assert_array_equal(kept["posterior"][sampled].values, expected.astype(kept["posterior"][sampled].dtype))
        assert kept["sample_stats"].sizes["draw"] == 50
        for group in ("posterior", "log_likelihood", "sample_stats"):
            for name in kept[group].data_vars:
                np.testing.assert_array_equal(kept[group][name].values, again[group][name].values)
        if model == "hierarchical":
            # The sampler's scalars are judged from every draw: the full trace's own summary.
            import json

            import diagnose
            import mcmc_stats

            unthinned = json.loads(kept.attrs["pipeline_unthinned_diagnostics"])
            reference = mcmc_stats.summary(full["posterior"].to_dataset()[["alpha", "beta"]], 0.94)
            assert set(unthinned) == {"alpha", "beta"}
            for name in unthinned:
                assert unthinned[name]["ess_bulk"] == reference.loc[name, "ess_bulk"]
                assert unthinned[name]["r_hat"] == reference.loc[name, "r_hat"]
            # Each group's mean and sd come from every draw (Rao-Blackwellised) all the same.
            np.testing.assert_array_equal(kept["rao_blackwellised"]["theta"].values, full["rao_blackwellised"]["theta"].values)
            table = diagnose.with_unthinned(kept, diagnose.summarise(kept, 0.94))
            assert table.loc["alpha", "ess_bulk"] == reference.loc["alpha", "ess_bulk"]
            # mu and theta, computed from each kept draw, are in the table, not judged.
            assert {"mu", "theta[Falcon 9]"} <= set(table.index)
            assert list(diagnose.judged(kept, table).index) == ["alpha", "beta"]
            assert list(diagnose.judged(full, table).index) == list(table.index)


def test_the_collapsed_draws_are_the_same_whatever_the_threads(monkeypatch):
    """hierarchical.complete draws theta a block of posterior draws at a time (to bound
    memory at a million groups, and a block per thread), each block from its own stream:
    the values are the same drawn on one thread or three, as float64 or float32, and each
    block's are the Beta draws of its own stream."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from common import load_module

    module = load_module(ROOT / "scripts" / "models" / "hierarchical.py")
    monkeypatch.setattr(module, "BLOCK_VALUES", 7 * 1000)  # blocks of 7 draws: 15 of them
    rng = np.random.default_rng(3)
    posterior = xr.Dataset({"alpha": (("chain", "draw"), rng.gamma(2, size=(2, 50))),
                            "beta": (("chain", "draw"), rng.gamma(2, size=(2, 50)))})
    table = pd.DataFrame({"trials": rng.integers(1, 30, 1000)})
    table["successes"] = rng.binomial(table["trials"], 0.3)
    once = module.complete(posterior, table, np.random.default_rng(5))["theta"]
    alpha = posterior["alpha"].values.reshape(-1, 1)
    beta = posterior["beta"].values.reshape(-1, 1)
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    streams = np.random.default_rng(5).spawn(15)
    whole = np.concatenate([streams[k].beta(alpha[7 * k:7 * k + 7] + y, beta[7 * k:7 * k + 7] + n - y)
                            for k in range(15)]).reshape(2, 50, 1000)
    np.testing.assert_array_equal(once, whole)
    threaded = module.complete(posterior, table, np.random.default_rng(5), threads=3)["theta"]
    np.testing.assert_array_equal(threaded, whole)
    single = module.complete(posterior, table, np.random.default_rng(5), dtype=np.float32, threads=2)["theta"]
    np.testing.assert_array_equal(single, whole.astype(np.float32))


def test_rao_blackwellised_summaries_with_batches_of_unequal_length_and_on_threads():
    """Chains whose draws do not divide into RB_BATCHES batches: the mean and sd are still
    those of every draw, the error that of the weighted batch means, and two threads give
    the same numbers as one; a single draw gives no error (NaN), not a false zero."""
    from itertools import pairwise

    import numpy as np
    import pandas as pd
    import xarray as xr

    from common import load_module

    module = load_module(ROOT / "scripts" / "models" / "hierarchical.py")
    rng = np.random.default_rng(8)
    table = pd.DataFrame({"trials": rng.integers(1, 30, 7)})
    table["successes"] = rng.binomial(table["trials"], 0.6)
    posterior = xr.Dataset({"alpha": (("chain", "draw"), rng.gamma(5, size=(2, 23))),
                            "beta": (("chain", "draw"), rng.gamma(2, size=(2, 23)))})
    found = sample.rao_blackwellised(module, posterior, table)["theta"]
    alpha, beta = posterior["alpha"].values[..., None], posterior["beta"].values[..., None]
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    mean = (alpha + y) / (alpha + beta + n)
    second = mean * (alpha + y + 1) / (alpha + beta + n + 1)
    np.testing.assert_allclose(found[0], mean.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(found[1], np.sqrt(second.mean(axis=(0, 1)) - mean.mean(axis=(0, 1)) ** 2), rtol=1e-9)
    edges = np.linspace(0, 23, sample.RB_BATCHES + 1).round().astype(int)
    batches = [mean[c, a:b].mean(axis=0) for c in range(2) for a, b in pairwise(edges)]
    weights = np.array([b - a for _ in range(2) for a, b in pairwise(edges)]) / 46
    assert len(set(weights)) > 1  # the batches are of unequal length
    spread = sum(w**2 * (m - mean.mean(axis=(0, 1))) ** 2 for w, m in zip(weights, batches, strict=True))
    np.testing.assert_allclose(found[2], np.sqrt(spread * 20 / 19), rtol=1e-9)
    np.testing.assert_array_equal(sample.rao_blackwellised(module, posterior, table, threads=2)["theta"], found)
    single = sample.rao_blackwellised(module, posterior.isel(chain=[0], draw=[0]), table)["theta"]
    np.testing.assert_allclose(single[0], mean[0, 0], rtol=1e-12)
    assert np.isnan(single[2]).all()
