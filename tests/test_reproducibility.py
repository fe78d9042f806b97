"""Same config and data, same numbers: a second run from scratch, on one core instead of two."""

import numpy as np
import pytest
import yaml

from common import read_datatree
from conftest import CONFIGURED_MODELS, copy_workflow, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("again"))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    run_snakemake(workdir, "--cores", "1")
    return workdir


def files(workdir, name):
    return sorted(p.relative_to(workdir) for p in (workdir / "results").rglob(name))


def test_posterior_arrays_are_bitwise_identical(finished_run, second_run):
    first, _ = finished_run
    traces = files(first, "trace.nc")
    assert traces == files(second_run, "trace.nc") and len(traces) == len(CONFIGURED_MODELS)
    for relative in traces:
        a, b = read_datatree(first / relative), read_datatree(second_run / relative)
        for group in ("posterior", "log_likelihood"):
            for name, values in a[group].data_vars.items():
                assert values.values.tobytes() == b[group][name].values.tobytes(), (relative, group, name)
        assert a.attrs == b.attrs


def test_summaries_are_identical(finished_run, second_run):
    first, _ = finished_run
    for relative in files(first, "summary.csv"):
        assert (first / relative).read_bytes() == (second_run / relative).read_bytes(), relative


def test_predictions_are_identical(finished_run, second_run):
    first, _ = finished_run
    for relative in files(first, "new_group.nc"):
        a = read_datatree(first / relative)["posterior_predictive"]
        b = read_datatree(second_run / relative)["posterior_predictive"]
        for name in ("theta_new", "y_new"):
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_another_seed_gives_other_draws(finished_run, tmp_path):
    first, _ = finished_run
    copy_workflow(tmp_path)
    config = tiny_config()
    config["sampling"]["seed"] = 43
    config["models"] = {"full_pooling": config["models"]["full_pooling"]}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "results/spacex/full_pooling/trace.nc")
    a = read_datatree(first / "results/spacex/full_pooling/trace.nc")["posterior"]["theta"].values
    b = read_datatree(tmp_path / "results/spacex/full_pooling/trace.nc")["posterior"]["theta"].values
    assert not np.array_equal(a, b)
