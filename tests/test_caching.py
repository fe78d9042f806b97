"""What reruns when: each row of the README's table, on a real results tree.

One project copy with two data sets is run to completion once; each test then asks a dry
run what a change would redo, or makes the change for real where bytes and times matter,
and puts the project back as it was.
"""

import os
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from common import read_datatree
from conftest import CONFIGURED_MODELS, copy_workflow, planned_outputs, run_snakemake, tiny_config

pytestmark = pytest.mark.slow

MODELS = CONFIGURED_MODELS
CROSS_MODEL = ["forest_models.png", "comparison.csv", "comparison.png", "shrinkage.png", "ranks.png", "overview.json"]
# The funnel allowing for spread uses this model's new group (funnel.model).
SPREAD = {"hierarchical": ["funnel.csv", "funnel.png"]}
OTHER = "group,trials,successes\nA,20,3\nB,15,12\nC,40,33\nD,8,8\nE,12,1\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("cached"))
    (workdir / "config" / "data" / "other.csv").write_text(OTHER)
    config = tiny_config()
    config["datasets"]["other"] = {"path": "config/data/other.csv"}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    return workdir


def outputs(workdir, dataset=None, model=None):
    """Every output of the complete run (relative paths), optionally of one branch."""
    found = set()
    for path in (workdir / "results").rglob("*"):
        relative = path.relative_to(workdir).as_posix()
        if path.is_file() and "/logs/" not in relative and "/benchmarks/" not in relative:
            parts = relative.split("/")
            if dataset and parts[1] != dataset:
                continue
            if model and (len(parts) < 4 or parts[2] != model):
                continue
            found.add(relative)
    return found


def branch(workdir, model):
    """A model's outputs in every data set, plus the cross-model outputs that use them."""
    return {p for d in ("spacex", "other") for p in outputs(workdir, d, model)} | {
        f"results/{d}/{name}" for d in ("spacex", "other") for name in CROSS_MODEL + SPREAD.get(model, [])
    }


def with_config(workdir, change):
    path = workdir / "config" / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    change(config)
    path.write_text(yaml.safe_dump(config))
    return original


class edited:
    """Append to a file for the duration of a `with`, then restore its bytes and times."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def __enter__(self):
        self.original, self.stat = self.path.read_bytes(), self.path.stat()
        self.path.write_bytes(self.original + self.text.encode())
        return self

    def __exit__(self, *exc):
        self.path.write_bytes(self.original)
        os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))


def fingerprints(paths):
    return {p: (Path(p).read_bytes(), Path(p).stat().st_mtime_ns) for p in paths}


def test_complete_run_has_nothing_to_do(project):
    assert planned_outputs(project) == set()


def test_model_setting_in_config_file_reruns_that_model_only(project):
    original = with_config(project, lambda c: c["models"]["hierarchical"].update(target_accept=0.9))
    try:
        # The model's graph and its prior predictive check depend on the data and the model
        # file, not on sampler settings.
        expected = {p for p in branch(project, "hierarchical") if "model_graph" not in p and "prior_predictive" not in p}
        assert planned_outputs(project) == expected
    finally:
        (project / "config" / "config.yaml").write_text(original)


def test_model_setting_on_command_line_reruns_only_its_branch_for_real(project):
    others = [project / f"results/{d}/{m}/trace.nc" for d in ("spacex", "other") for m in ("no_pooling", "full_pooling")]
    before = fingerprints(others)
    changed = [project / f"results/{d}/hierarchical/trace.nc" for d in ("spacex", "other")]
    old_times = {p: p.stat().st_mtime_ns for p in changed}
    result = run_snakemake(project, "--config", "models={hierarchical: {target_accept: 0.9}}")
    assert fingerprints(others) == before
    assert all(p.stat().st_mtime_ns > old_times[p] for p in changed)
    assert "rule sample:" in result.stdout + result.stderr
    assert read_datatree(changed[0]).attrs["pipeline_model_settings"] == '{"method": "collapsed", "target_accept": 0.9}'
    # Back to the config file's setting: the branch reruns once more, nothing else.
    run_snakemake(project)
    assert fingerprints(others) == before
    assert planned_outputs(project) == set()


def test_editing_a_model_file_reruns_that_model_only(project):
    with edited(project / "scripts" / "models" / "full_pooling.py", "\n# an edit\n"):
        assert planned_outputs(project) == branch(project, "full_pooling")
    # Same bytes again (with a newer time on disk it would still be the same content).
    assert planned_outputs(project) == set()


def test_a_model_file_rewritten_with_the_same_content_reruns_nothing(project):
    path = project / "scripts" / "models" / "hierarchical.py"
    path.write_bytes(path.read_bytes())  # new modification time, same content
    assert planned_outputs(project) == set()


def test_editing_a_plotting_script_reruns_that_plot_only(project):
    with edited(project / "scripts" / "plot_trace.py", "\n# an edit\n"):
        planned = planned_outputs(project)
    assert planned == {p for p in outputs(project) if p.endswith("/trace.png")}
    assert len(planned) == 2 * len(MODELS)


def test_a_new_rule_makes_its_outputs_only(project):
    """A figure added as docs/extending.md says (tests/test_docs.py) reruns nothing else."""
    from test_docs import DUMMY_RULE, DUMMY_STEP

    step, caption = project / "scripts" / "plot_dummy.py", project / "workflow" / "report" / "dummy.rst"
    step.write_text(textwrap.dedent(DUMMY_STEP).lstrip())
    caption.write_text("A dummy figure.\n")
    try:
        with edited(project / "workflow" / "rules" / "plot.smk", DUMMY_RULE):
            planned = planned_outputs(project)
    finally:
        step.unlink()
        caption.unlink()
    assert planned == {f"results/{d}/{m}/dummy.png" for d in ("spacex", "other") for m in MODELS}


def test_editing_the_sampling_script_reruns_every_model(project):
    with edited(project / "scripts" / "sample.py", "\n# an edit\n"):
        planned = planned_outputs(project)
    traces = {p for p in outputs(project) if p.endswith("trace.nc")}
    assert traces <= planned and len(traces) == 2 * len(MODELS)
    assert not any(p.endswith(("data.csv", "model_graph.png")) for p in planned)


@pytest.mark.parametrize("key,value", [("draws", 101), ("tune", 99), ("chains", 3), ("seed", 7), ("sampler", "pymc")])
def test_sampling_settings_rerun_every_model(project, key, value):
    original = with_config(project, lambda c: c["sampling"].update({key: value}))
    try:
        planned = planned_outputs(project)
    finally:
        (project / "config" / "config.yaml").write_text(original)
    assert {p for p in outputs(project) if p.endswith("trace.nc")} <= planned
    assert not any(p.endswith(("data.csv", "model_graph.png", "model_graph.svg")) for p in planned)


def test_new_trials_reruns_prediction_and_its_plot_only(project):
    planned = planned_outputs(project, "--config", "predict={new_trials: 20}")
    # The funnel allowing for spread reads the hierarchical model's new group (theta_new).
    assert planned == {p for p in outputs(project) if p.endswith(("new_group.nc", "new_group.png", "funnel.csv", "funnel.png"))}


def test_changing_one_data_file_reruns_that_data_set_only(project):
    with edited(project / "config" / "data" / "other.csv", "F,3,1\n"):
        planned = planned_outputs(project)
    assert planned == outputs(project, "other")


def test_rewriting_a_data_file_with_the_same_content_reruns_nothing(project):
    path = project / "config" / "data" / "spacex.csv"
    path.write_bytes(path.read_bytes())
    assert planned_outputs(project) == set()


def test_adding_a_data_set_runs_only_its_jobs(project, tmp_path):
    (tmp_path / "third.csv").write_text(OTHER)
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"datasets": {"third": {"path": str(tmp_path / "third.csv")}}}))
    planned = planned_outputs(project, "--configfile", "config/config.yaml", str(extra))
    assert planned and all(p.startswith("results/third/") for p in planned)
    assert "results/third/hierarchical/trace.nc" in planned


def test_diagnostic_thresholds_rerun_diagnostics_only(project):
    planned = planned_outputs(project, "--config", "diagnostics={max_rhat: 1.05, strict: false}")
    assert planned == {p for p in outputs(project) if p.endswith(("summary.csv", "diagnostics.json"))}


def test_a_moved_project_reruns_nothing(project, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(project, moved, symlinks=True)
    assert planned_outputs(moved) == set()


def test_a_step_script_rewritten_with_the_same_content_reruns_nothing(project):
    """Step scripts are inputs, compared by checksum like data: a new time alone is no change."""
    path = project / "scripts" / "plot_trace.py"
    path.write_bytes(path.read_bytes())
    assert planned_outputs(project) == set()


def test_editing_the_worker_reruns_nothing(project):
    """scripts/runtime/ decides where a step runs, not what it computes (the same bits warm
    or in a fresh process: tests/test_worker.py), so it is not an input of any rule."""
    with edited(project / "scripts" / "runtime" / "steps.py", "\n# an edit\n"):
        assert planned_outputs(project) == set()
