"""Simulation-based calibration: ranks of prior draws among posterior draws, tested for
uniformity, on a design small enough for the test suite."""

import numpy as np
import pandas as pd
import pytest

import plot_sbc
import sbc_fit as sbc
from conftest import ROOT
from test_plots import assert_png

pytestmark = pytest.mark.slow

SMALL = {"simulations": 8, "draws": 100, "tune": 100, "chains": 2, "thin": 2, "bins": 5}


@pytest.fixture(scope="module")
def calibrated(spacex_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("sbc")
    ranks, tests = out / "ranks.csv", out / "sbc.csv"
    sbc.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / "hierarchical.py"), str(ranks), str(tests),
             settings={"target_accept": 0.95}, sbc=SMALL, sampler="nutpie", seed=11)
    return pd.read_csv(ranks, index_col="simulation"), pd.read_csv(tests)


def test_ranks_cover_every_parameter_and_stay_in_range(calibrated):
    ranks, _ = calibrated
    groups = ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]
    assert list(ranks.columns) == ["alpha", "beta"] + [f"theta[{g}]" for g in groups]
    assert len(ranks) == SMALL["simulations"]
    max_rank = SMALL["draws"] // SMALL["thin"] * SMALL["chains"]
    assert ranks.to_numpy().min() >= 0 and ranks.to_numpy().max() <= max_rank
    # Different simulations, different truths: the ranks are not all alike.
    assert ranks["alpha"].nunique() > 1


def test_uniformity_table(calibrated):
    ranks, tests = calibrated
    assert list(tests["parameter"]) == list(ranks.columns)
    assert ((tests["p_value"] >= 0) & (tests["p_value"] <= 1)).all()
    assert (tests["simulations"] == SMALL["simulations"]).all()


@pytest.mark.parametrize("trials,form", [([10, 10, 40, 25], "successes_above"), ([300, 300, 9, 40], "pair_weight")],
                         ids=["histogram", "pairs"])
@pytest.mark.parametrize("model", ["hierarchical", "hierarchical_logit"])
def test_compiled_once_draws_are_bitwise_those_of_a_fresh_compile(model, trials, form):
    """Each simulation's data swapped into the model compiled for the design: not one drawn
    value differs from a model compiled for that simulation alone, and the model is
    compiled once, though two groups of equal trials have equal successes in one
    simulation and not in the other (the collapsed model's distinct pairs), in either of
    the collapsed model's forms of its data."""
    import sample
    from common import load_module

    table = pd.DataFrame({"group": ["a", "b", "c", "d"], "trials": trials, "successes": [3, 4, 7, 20]})
    module = load_module(ROOT / "scripts" / "models" / f"{model}.py")
    method = sample.method_of(module, {}, f"{model}.py")
    sampling = {"draws": 50, "tune": 50, "chains": 2}
    options = {"method": method, "sampler": "nutpie", "sampling": sampling, "target_accept": 0.9}
    fitter = sbc.Fitter(module, table, **options)
    if method == "collapsed":
        assert form in fitter.shapes
    for index, successes in enumerate([[3, 3, 7, 20], [0, 10, 1, 25]]):
        data = table.assign(successes=successes)
        reused = fitter.posterior(data, seed=5 + index)
        fresh = sbc.Fitter(module, data, **options).posterior(data, seed=5 + index)
        assert set(reused.data_vars) == set(fresh.data_vars) >= {"theta"}
        for name in fresh.data_vars:
            np.testing.assert_array_equal(reused[name].values, fresh[name].values)
    assert fitter.compiles == 1


def test_uniformity_test_flags_a_miscalibrated_sampler():
    """The test itself: uniform ranks pass, ranks piled at one end fail."""
    rng = np.random.default_rng(0)
    uniform = pd.DataFrame({"x": rng.integers(0, 101, 400)})
    piled = pd.DataFrame({"x": rng.integers(0, 30, 400)})
    assert sbc.uniformity_test(uniform, 100, 10)["p_value"].iloc[0] > 0.01
    assert sbc.uniformity_test(piled, 100, 10)["p_value"].iloc[0] < 1e-6


def test_rank_histogram_plot(calibrated, tmp_path):
    ranks, tests = calibrated
    ranks.to_csv(tmp_path / "ranks.csv", index_label="simulation")
    tests.to_csv(tmp_path / "sbc.csv", index=False)
    plot_sbc.main(str(tmp_path / "ranks.csv"), str(tmp_path / "sbc.csv"), str(tmp_path / "sbc.png"))
    assert_png(tmp_path / "sbc.png")


def test_sbc_target_runs_through_the_workflow_and_not_by_default(tmp_path):
    import yaml

    from conftest import copy_workflow, planned_outputs, run_snakemake, tiny_config

    workdir = copy_workflow(tmp_path)
    config = tiny_config()
    config["sbc"] = {**SMALL, "simulations": 3, "models": ["hierarchical"]}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    assert not any("sbc" in path for path in planned_outputs(workdir))
    run_snakemake(workdir, "sbc")
    folder = workdir / "results" / "spacex" / "hierarchical"
    assert len(pd.read_csv(folder / "sbc_ranks.csv")) == 3
    assert set(pd.read_csv(folder / "sbc.csv")["parameter"]) >= {"alpha", "beta"}
    assert_png(folder / "sbc.png")
    assert not (workdir / "results" / "spacex" / "full_pooling").exists()


@pytest.mark.parametrize("source,shape,group,model,parameters", [
    ("eight_schools.csv", "effects", "school", "meta_random_effects", 2 + 2 * 8),
    ("beta_blockers.csv", "two_arm", "trial", "trials_random_effects", 2 + 3 * 22),
])
def test_the_meta_analysis_models_are_calibrated(tmp_path, source, shape, group, model, parameters):
    """Their data simulated from the prior (every observed variable: both arms of a trial)
    and fitted again: ranks of mu, tau, each study's offset and theta (and baseline) are
    uniform, 20 simulations, compiled once."""
    import prepare_data

    data = tmp_path / "data.csv"
    columns = {"group": group, **{role: role for role in prepare_data.SHAPES[shape].columns}}
    prepare_data.main(str(ROOT / "config" / "data" / source), str(data), shape=shape, columns=columns)
    settings = {"simulations": 20, "draws": 200, "tune": 200, "chains": 2, "thin": 2, "bins": 5}
    ranks, tests = tmp_path / "ranks.csv", tmp_path / "sbc.csv"
    sbc.main(str(data), str(ROOT / "scripts" / "models" / f"{model}.py"), str(ranks), str(tests),
             settings={"target_accept": 0.95}, sbc=settings, sampler="nutpie", seed=3)
    table = pd.read_csv(tests)
    assert len(table) == parameters and {"mu", "tau"} <= set(table["parameter"])
    # With this many parameters a few small p-values come by chance; a miscalibrated model
    # piles its ranks up (p below 1e-6, as above).
    assert table["p_value"].min() > 1e-4, table.nsmallest(3, "p_value")
