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


def tiny_run(workdir, config):
    """Run `snakemake` on `config` with 300 draws: (workdir, the outputs it planned)."""
    config["sampling"].update(draws=300, tune=300)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    expected = planned_outputs(workdir)
    run_snakemake(workdir, "--cores", "2")
    return workdir, expected


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("end_to_end"))
    return tiny_run(workdir, tiny_config(models={"full_pooling": None, "hierarchical": {"target_accept": 0.95}}))


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


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory):
    """The two meta-analysis examples, tiny: effect estimates and two-arm trials."""
    workdir = copy_workflow(tmp_path_factory.mktemp("meta_end_to_end"))
    examples = [yaml.safe_load((workdir / "config" / "examples" / f"{name}.yaml").read_text())
                for name in ("eight_schools", "beta_blockers")]
    return tiny_run(workdir, tiny_config(datasets={k: v for e in examples for k, v in e["datasets"].items()},
                                         models={k: v for e in examples for k, v in e["models"].items()}))


def test_each_meta_analysis_shape_runs_to_completion(meta_run):
    workdir, expected = meta_run
    for name in ("eight_schools", "beta_blockers"):
        for output in ("heterogeneity.csv", "pooling.csv", "forest_meta.png", "comparison.csv", "ranks.png"):
            assert f"results/{name}/{output}" in expected
    assert "results/beta_blockers/labbe.png" in expected and "results/eight_schools/labbe.png" not in expected
    assert not any("funnel" in path for path in expected)  # binomial data only
    for path in expected:
        assert (workdir / path).stat().st_size > 0, path
    assert planned_outputs(workdir) == set()


def test_meta_analysis_tables_hold_every_model_and_no_unreliable_value(meta_run):
    workdir, _ = meta_run
    for name, models in (("eight_schools", "meta"), ("beta_blockers", "trials")):
        table = pd.read_csv(workdir / "results" / name / "heterogeneity.csv").set_index("model")
        assert set(table.index) == {f"{models}_no_pooling", f"{models}_common_effect", f"{models}_random_effects"}
        assert table.loc[f"{models}_common_effect", "tau_mean"] == 0 and np.isnan(table.loc[f"{models}_no_pooling", "effect_mean"])
        assert table.loc[f"{models}_random_effects", "prediction_ub"] > table.loc[f"{models}_random_effects", "effect_ub"]
        comparison = pd.read_csv(workdir / "results" / name / "comparison.csv")
        assert (comparison["pareto_k_above"] == 0).all()
    odds = pd.read_csv(workdir / "results" / "beta_blockers" / "heterogeneity.csv").set_index("model")
    assert odds.loc["trials_common_effect", "odds_ratio_median"] == pytest.approx(
        np.exp(odds.loc["trials_common_effect", "effect_median"]))
