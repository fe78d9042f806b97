"""The real workflow, run by the snakemake CLI in a private copy of the project on tiny settings."""

import json

import pandas as pd
import pytest
import yaml

from common import read_datatree
from conftest import CONFIGURED_MODELS, copy_workflow, planned_outputs, run_snakemake, tiny_config

pytestmark = pytest.mark.slow

MODELS = CONFIGURED_MODELS
GROUPS = ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]


def test_every_output_exists(finished_run):
    """The run made exactly what the rules name (the dry run's plan), and nothing else."""
    workdir, _ = finished_run
    expected = planned_outputs(workdir, "--forceall")
    assert len(expected) > 10 * len(MODELS)  # the plan was read
    made = {p.relative_to(workdir).as_posix() for p in (workdir / "results").rglob("*") if p.is_file()}
    assert made == expected
    for path in expected:
        assert (workdir / path).stat().st_size > 0, path
    assert "results/spacex/hierarchical/population_mean.png" in made
    assert "results/spacex/no_pooling/population_mean.png" not in made


@pytest.mark.parametrize("model", MODELS)
def test_trace_contents(finished_run, model):
    workdir, _ = finished_run
    trace = read_datatree(workdir / "results" / "spacex" / model / "trace.nc")
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(trace.children)
    posterior = trace["posterior"]
    assert posterior.sizes["chain"] == 2 and posterior.sizes["draw"] == 100
    expected = {
        "no_pooling": {"theta"}, "full_pooling": {"theta"}, "hierarchical": {"alpha", "beta", "mu", "theta"},
        "hierarchical_logit": {"m", "s", "z", "theta"},
    }[model]
    assert set(posterior.data_vars) == expected
    theta_dims = ("chain", "draw") if model == "full_pooling" else ("chain", "draw", "group")
    assert posterior["theta"].dims == theta_dims
    assert list(trace["observed_data"]["group"].values) == GROUPS
    assert list(trace["observed_data"]["y"].values) == [2, 301, 9, 5]
    assert trace.attrs["pipeline_model"] == model and trace.attrs["pipeline_dataset"] == "spacex"


@pytest.mark.parametrize("model", MODELS)
def test_diagnostics_and_prediction_contents(finished_run, model):
    workdir, _ = finished_run
    folder = workdir / "results" / "spacex" / model
    summary = pd.read_csv(folder / "summary.csv", index_col="parameter")
    assert {"mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"} <= set(summary.columns)
    thetas = [p for p in summary.index if p.startswith("theta")]
    assert len(thetas) == (1 if model == "full_pooling" else 4)
    report = json.loads((folder / "diagnostics.json").read_text())
    assert {"divergences", "max_rhat", "min_ess_bulk", "bfmi", "thresholds", "ok", "problems"} <= set(report)
    # 100 draws cannot reach the default 400 effective draws: the check must say so.
    assert report["ok"] is False and any("ESS" in p for p in report["problems"])
    prediction = read_datatree(folder / "new_group.nc")["posterior_predictive"]
    assert set(prediction.data_vars) == {"theta_new", "y_new"}
    assert prediction["y_new"].values.max() <= 10


def test_comparison_table_has_every_model(finished_run):
    workdir, _result = finished_run
    table = pd.read_csv(workdir / "results" / "spacex" / "comparison.csv", index_col="model")
    assert set(table.index) == set(MODELS)
    assert table["weight"].sum() == pytest.approx(1)
    assert table["elpd_diff"].max() == 0
    # Every value is exact or a reliable PSIS estimate: none rests on a high Pareto k.
    assert (table["pareto_k_above"] == 0).all()
    assert table.loc["no_pooling", "closed_form"] == 4 and table.loc["full_pooling", "closed_form"] == 4


def test_log_warns_about_failed_diagnostics(finished_run):
    workdir, result = finished_run
    assert "ESS bulk" in result.stderr
    assert "ESS" in (workdir / "logs" / "spacex" / "hierarchical" / "diagnose.log").read_text()


def test_rerun_has_nothing_to_do(finished_run):
    workdir, _ = finished_run
    result = run_snakemake(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_data_stops_before_sampling_with_one_line(tmp_path):
    copy_workflow(tmp_path)
    (tmp_path / "config" / "data" / "spacex.csv").write_text("mission,launches,successes\nFalcon 1,5,7\n")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    result = run_snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "config/data/spacex.csv: row 1 (line 2), column 'successes': 7 successes exceed 5 trials" in result.stderr
    assert not (tmp_path / "results" / "spacex" / "data.csv").exists()
    assert not list((tmp_path / "results").rglob("*.nc"))


def test_bad_config_is_refused_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    result = run_snakemake(tmp_path, "--config", "sampling={drawz: 10}", check=False)
    assert result.returncode != 0
    assert "error: config key sampling.drawz: unknown key; did you mean 'draws'?" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_later_data_are_scored_through_the_workflow(tmp_path):
    """The baseball example's later at-bats (config/examples/baseball.yaml), through the
    real workflow: one row per model, the conjugate models' lpd near their exact value."""
    from scipy import stats

    workdir = copy_workflow(tmp_path)
    baseball = yaml.safe_load((workdir / "config" / "examples" / "baseball.yaml").read_text())["datasets"]
    config = tiny_config(datasets=baseball, models={"no_pooling": None, "full_pooling": None})
    config["sampling"].update(draws=1000, chains=2)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "results/baseball/holdout.csv", "results/baseball/holdout.png")
    table = pd.read_csv(workdir / "results" / "baseball" / "holdout.csv").set_index("model")
    assert set(table.index) == {"no_pooling", "full_pooling"} and (table["groups"] == 18).all() and (table["skipped"] == 0).all()
    data = pd.read_csv(workdir / "config" / "data" / "efron_morris.csv")
    n, y = data["at_bats"].to_numpy(), data["hits"].to_numpy()
    later_n, later_y = data["remaining_at_bats"].to_numpy(), data["remaining_hits"].to_numpy()
    exact = {"no_pooling": stats.betabinom.logpmf(later_y, later_n, 0.5 + y, 0.5 + n - y).sum(),
             "full_pooling": stats.betabinom.logpmf(later_y, later_n, 0.5 + y.sum(), 0.5 + (n - y).sum()).sum()}
    for model, value in exact.items():
        assert abs(table.loc[model, "lpd"] - value) < 0.5, (model, table.loc[model, "lpd"], value)
    assert (workdir / "logs" / "baseball" / "prepare_holdout.log").read_text().startswith("INFO pipeline.prepare_holdout: 18 groups")


@pytest.mark.slow
def test_the_worker_starts_while_the_dag_is_built_and_not_for_a_run_with_nothing_to_do(tmp_path):
    """Cold: the worker is started while Snakemake builds its DAG (before it prints the
    jobs' table), so that its start overlaps Snakemake's. Complete: a no-op run starts
    nothing. Changed settings: the worker starts as the jobs start (onstart)."""
    import os
    import subprocess
    import sys

    workdir = copy_workflow(tmp_path)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(models={"full_pooling": None})))
    env = {**os.environ, "PIPELINE_WORKER_VERBOSE": "1"}

    def run(*args):
        result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stderr.splitlines()

    def said(lines, words):
        return [index for index, line in enumerate(lines) if line.startswith(f"step worker: started {words}")]

    cold = run()
    (started,) = said(cold, "while Snakemake builds its DAG")
    assert started < cold.index("Job stats:")
    assert not any("step worker" in line for line in run())  # nothing to do: nothing started
    # The worker outlives the run (worker.idle_minutes): the next run uses it, starting nothing.
    again = run("--forcerun", "plot_trace")
    assert not any("step worker: started" in line for line in again)
    assert (workdir / "logs" / "spacex" / "full_pooling" / "plot_trace.log").read_text().rstrip().endswith("(warm worker)")
    subprocess.run([sys.executable, str(workdir / "scripts" / "runtime" / "__main__.py"), "stop", str(workdir)], check=True,
                   capture_output=True)
    rerun = run("--forcerun", "plot_trace")
    assert said(rerun, "as the jobs start") and not said(rerun, "while Snakemake builds its DAG")
    # Snakemake's last rescheduling timer is found and stopped (the process exits without waiting for it).
    for stderr in (cold, rerun):
        stopped = [line for line in stderr if "rescheduling timer(s) of Snakemake stopped" in line]
        assert len(stopped) == 1 and int(stopped[0].split()[1]) >= 1, stopped
