"""One tiny run of the whole workflow, for `make test-fast`: the `snakemake` command of the
README, two models, a few hundred draws, every output, numbers checked against the exact
answers. tests/test_workflow.py checks the full default run in depth (slow tier)."""

import numpy as np
import pandas as pd
import pytest
import yaml

import exact
from common import read_prepared
from conftest import copy_workflow, planned_outputs, run_snakemake, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("end_to_end"))
    config = tiny_config(models={"full_pooling": None, "hierarchical": {"target_accept": 0.95}})
    config["sampling"].update(draws=300, tune=300)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    expected = planned_outputs(workdir)
    run_snakemake(workdir, "--cores", "2")
    return workdir, expected


def test_every_planned_output_is_made_and_nothing_is_left_to_do(run):
    workdir, expected = run
    assert len(expected) > 20
    for path in expected:
        assert (workdir / path).stat().st_size > 0, path
    assert planned_outputs(workdir) == set()


def within_mcse(workdir, model, parameter, exact_mean, tolerance=4):
    summary = pd.read_csv(workdir / "results" / "spacex" / model / "summary.csv", index_col="parameter")
    row = summary.loc[parameter]
    assert abs(row["mean"] - exact_mean) < tolerance * row["mcse_mean"], (parameter, row["mean"], exact_mean)


def test_posteriors_agree_with_the_exact_answers(run):
    workdir, _ = run
    table = read_prepared(workdir / "results" / "spacex" / "data.csv")
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    within_mcse(workdir, "full_pooling", "theta", exact.full_pooling(n, y)[0])
    answer = exact.hierarchical(n, y, points=400)
    within_mcse(workdir, "hierarchical", "mu", answer["mu"][0])
    for group, mean in zip(table["group"], answer["theta"][0], strict=True):
        within_mcse(workdir, "hierarchical", f"theta[{group}]", mean)


def test_comparison_ranks_the_hierarchical_model_first(run):
    workdir, _ = run
    comparison = pd.read_csv(workdir / "results" / "spacex" / "comparison.csv", index_col=0)
    assert list(comparison.index) == ["hierarchical", "full_pooling"]
    assert (comparison["pareto_k_above"] == 0).all()
    assert np.isclose(comparison["weight"].sum(), 1)
