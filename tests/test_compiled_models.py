"""Compiled models kept by the step worker (scripts/runtime/compiled.py, scripts/sample.py):
a kept model draws bitwise what a fresh compile at the same shape draws, data sets of one
size bucket share a compile, and a changed model file compiles anew."""

import os
import shutil
import sys

import numpy as np
import pytest

import runtime
import sample
from common import load_module, read_datatree, read_prepared
from conftest import ROOT, SCRIPTS, owning_a_worker
from runtime.compiled import warm_hook

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the step worker is Linux-only")
HIERARCHICAL = ROOT / "scripts" / "models" / "hierarchical.py"
SAMPLING = {"draws": 150, "tune": 150, "chains": 2, "seed": 3, "sampler": "nutpie"}


def table_file(path, rows):
    import prepare_data

    raw = path.with_suffix(".raw.csv")
    raw.write_text("group,trials,successes\n" + "".join(f"g{i},{n},{y}\n" for i, (n, y) in enumerate(rows)))
    prepare_data.main(str(raw), str(path), group="group", trials="trials", successes="successes")
    return path


@pytest.fixture
def owner(monkeypatch):
    yield from owning_a_worker(monkeypatch)


def sample_step(tmp_path, data, model_file, name, *, warm=True):
    trace = tmp_path / f"{name}.nc"
    log = tmp_path / f"{name}.log"
    runtime.run_step(
        SCRIPTS / "sample.py",
        kwargs={"data": str(data), "model_file": str(model_file), "trace": str(trace), "dataset": name,
                "model": "hierarchical", "sampling": SAMPLING, "settings": {"target_accept": 0.9}, "seed": 11},
        log=str(log), warm=warm_hook(SCRIPTS / "sample.py", SCRIPTS, model_file) if warm else None,
    )
    return trace, log.read_text()


def test_buckets():
    assert [sample.bucket(n) for n in (1, 5, 8, 9, 60, 64, 65, 65_536, 65_537)] == [
        8, 8, 8, 16, 64, 64, 128, 65_536, 131_072]


@pytest.mark.parametrize("rows", [[(40, 30), (12, 5), (3, 3), (25, 20), (7, 1)],  # the histogram form
                                  [(4000, 3000), (12, 5), (3000, 2999)]], ids=["histogram", "pairs"])
def test_padding_adds_nothing_to_the_marginal_likelihood(tmp_path, rows):
    module = load_module(HIERARCHICAL)
    table = read_prepared(table_file(tmp_path / "data.csv", rows))
    natural = module.collapsed_data(table, swappable=True)
    length = len(next(iter(natural.values())))
    padded = module.collapsed_data(table, swappable=True, padded_to=sample.bucket(length))
    assert all(len(values) == sample.bucket(length) > length for values in padded.values())
    alpha, beta = np.array([[0.7], [3.0], [12.0]]), np.array([[0.4], [1.5], [30.0]])
    math = module.numpy_math()
    np.testing.assert_allclose(module.betabinomial_loglik(alpha, beta, padded, math),
                               module.betabinomial_loglik(alpha, beta, natural, math), rtol=1e-13)


@pytest.mark.slow
def test_data_sets_of_one_bucket_share_a_kept_model_that_draws_what_a_fresh_compile_draws(owner, tmp_path, monkeypatch):
    """Two data sets whose collapsed data pad to one size: the worker compiles for the first,
    the second reuses that compile (data swapped in), and its draws are bitwise those of a
    fresh process that compiles for it alone."""
    first = table_file(tmp_path / "first.csv", [(40, 30), (12, 5), (3, 3), (25, 20), (7, 1)])
    second = table_file(tmp_path / "second.csv", [(60, 51), (9, 4), (33, 30), (20, 12), (5, 5), (44, 40), (2, 0)])
    _, log_first = sample_step(tmp_path, first, HIERARCHICAL, "first")
    assert "(model compiled by the step worker for this step in " in log_first
    kept, log_kept = sample_step(tmp_path, second, HIERARCHICAL, "second")
    assert "(model kept by the step worker (compiled in " in log_kept and "reused 1 time(s))" in log_kept
    monkeypatch.setenv(runtime.WARM, "0")
    fresh, log_fresh = sample_step(tmp_path, second, HIERARCHICAL, "second_fresh", warm=False)
    assert "(model compiled in " in log_fresh and "(fresh process: PIPELINE_WARM=0)" in log_fresh
    kept, fresh = read_datatree(kept), read_datatree(fresh)
    for group in ("posterior", "sample_stats", "log_likelihood"):
        for name, values in fresh[group].data_vars.items():
            assert values.values.tobytes() == kept[group][name].values.tobytes(), (group, name)
    assert list(kept["posterior"]["group"].values) == [f"g{i}" for i in range(7)]


@pytest.mark.slow
def test_a_changed_model_file_compiles_anew(owner, tmp_path):
    model_file = tmp_path / "hierarchical.py"
    shutil.copy(HIERARCHICAL, model_file)
    data = table_file(tmp_path / "data.csv", [(40, 30), (12, 5), (3, 3), (25, 20), (7, 1)])
    _, log = sample_step(tmp_path, data, model_file, "before")
    assert "compiled by the step worker for this step" in log
    _, log = sample_step(tmp_path, data, model_file, "again")
    assert "reused 1 time(s)" in log
    with model_file.open("a") as handle:
        handle.write("\n# an edit that changes nothing but the file\n")
    _, log = sample_step(tmp_path, data, model_file, "after")
    assert "compiled by the step worker for this step" in log


def test_the_article_models_draw_what_pm_sample_drew(spacex_prepared):
    """The NUTS models sampled through a compiled model in hand give pm.sample's draws for
    the same seed (the same seed per chain, the same compiled model)."""
    import pymc as pm

    module = load_module(ROOT / "scripts" / "models" / "full_pooling.py")
    table = read_prepared(spacex_prepared)
    ours = sample.draw(sample.Sampled(module, table, "nuts"), sampler="nutpie", draws=100, tune=100, chains=2, seed=5,
                       cores=1)
    theirs = pm.sample(model=module.build(table), draws=100, tune=100, chains=2, cores=1, random_seed=5,
                       nuts_sampler="nutpie", progressbar=False)
    assert ours["posterior"]["theta"].values.tobytes() == theirs["posterior"]["theta"].values.tobytes()


def test_a_zygote_serves_one_version_of_the_code(tmp_path):
    """Its key changes with any of the project's modules and with the model file."""
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    model_file = scripts / "models" / "hierarchical.py"
    before = warm_hook(scripts / "sample.py", scripts, model_file)["key"]
    with (scripts / "common.py").open("a") as handle:
        handle.write("\n# an edit\n")
    edited = warm_hook(scripts / "sample.py", scripts, model_file)["key"]
    assert edited != before
    with model_file.open("a") as handle:
        handle.write("\n# an edit\n")
    assert warm_hook(scripts / "sample.py", scripts, model_file)["key"] != edited
    assert os.path.basename(warm_hook(scripts / "sample.py", scripts, model_file)["label"]) == "hierarchical.py"
