"""Mistakes and accidents never lose or fake a result: bad tables, interrupted and
concurrent runs, damaged traces, and a sampler in trouble, through the real workflow."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from common import read_datatree
from conftest import (
    CONFIGURED_MODELS,
    copy_workflow,
    messages,
    run_snakemake,
    step_processes,
    tiny_config,
    wait_until,
    worker_processes,
)
from test_prepare_data import BAD_TABLES

pytestmark = pytest.mark.slow

MODELS = CONFIGURED_MODELS


def snapshot(workdir):
    """Bytes and modification time of every file under results/."""
    return {
        p.relative_to(workdir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((workdir / "results").rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def completed(finished_run, tmp_path_factory):
    """A private copy of the finished tiny run, results and Snakemake's records included."""
    source, _ = finished_run
    workdir = tmp_path_factory.mktemp("reliable") / "project"
    shutil.copytree(source, workdir, symlinks=True)
    return workdir


@pytest.mark.parametrize("content,message", BAD_TABLES)
def test_bad_table_stops_the_workflow_and_keeps_results(completed, content, message):
    data = completed / "config" / "data" / "spacex.csv"
    original = data.read_bytes()
    before = snapshot(completed)
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        result = run_snakemake(completed, check=False)
    finally:
        data.write_bytes(original)
    assert result.returncode != 0
    lines = messages(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: config/data/spacex.csv") and message in lines[0]
    assert snapshot(completed) == before


def test_missing_data_file_names_the_config_key(completed):
    before = snapshot(completed)
    result = run_snakemake(completed, "--config", "datasets={spacex: {path: config/data/nope.csv}}", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: config key datasets.spacex.path: config/data/nope.csv: file not found"]
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert snapshot(completed) == before


@pytest.mark.parametrize(
    "override,message",
    [
        ("models={hierarchical: {target_accept: 1.5}}", "models.hierarchical.target_accept"),
        ("models={pooled: {}}", "models.pooled: no model file"),
        ("sampling={sampler: stan}", "sampling.sampler"),
        ("sampling={chains: 0}", "sampling.chains"),
        ("datasets={../escape: {path: config/data/spacex.csv}}", "datasets"),
        ("diagnostics={max_rhatt: 1.1}", "did you mean 'max_rhat'"),
    ],
)
def test_bad_config_stops_before_any_job(completed, override, message):
    before = snapshot(completed)
    result = run_snakemake(completed, "--config", override, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: config key") and message in errors[0]
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert snapshot(completed) == before


def slow_project(workdir):
    """Sampling that lasts several seconds, so that a run can be interrupted inside it."""
    copy_workflow(workdir)
    config = tiny_config()
    config["sampling"].update(draws=60000, tune=500)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


# The slow projects stop at the traces: figures of 120,000 draws would only cost time.
TRACES = [f"results/spacex/{m}/trace.nc" for m in MODELS]


def start_snakemake(workdir, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args, *TRACES], cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def sampling_under_way(workdir):
    """Some trace is finished and another model's sampling job has started."""
    folder = workdir / "results" / "spacex"
    done = [m for m in MODELS if (folder / m / "trace.nc").exists()]
    started = [m for m in MODELS if (workdir / "logs" / "spacex" / m / "sample.log").exists() and m not in done]
    return bool(done) and bool(started)


def recorded_complete(workdir, path):
    """Snakemake has recorded the job that wrote `path` as finished: it has removed the
    marker it writes, under .snakemake/incomplete/, when the job starts. A file can exist
    before that (the step renamed it into place; Snakemake has not yet processed the
    job's end), and then a killed run's output is rightly redone by --rerun-incomplete."""
    from base64 import urlsafe_b64encode

    relative = path.relative_to(workdir).as_posix()
    return not (workdir / ".snakemake" / "incomplete" / urlsafe_b64encode(relative.encode()).decode()).exists()


def assert_every_trace_is_whole(workdir):
    for trace in (workdir / "results").rglob("trace.nc"):
        posterior = read_datatree(trace)["posterior"]
        assert posterior.sizes["draw"] == 60000, trace


def assert_no_process_left(workdir, seconds=5):
    """No step of this project copy outlives Snakemake (its worker may: it serves the next
    run, tests/test_worker_lifetime.py)."""
    wait_until(lambda: not step_processes(workdir / "scripts"), seconds, "the steps to end")


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGINT to Snakemake", "SIGKILL", "SIGKILL to Snakemake"])
def test_interrupted_sampling_leaves_nothing_that_looks_finished(tmp_path, how):
    """Ctrl-C in a terminal signals Snakemake's process group; the steps run in groups of
    their own, and Snakemake's SIGINT handler (scripts/runtime/client.py) hangs up on them,
    so SIGINT to Snakemake alone stops them just as well. `kill -9` of Snakemake (alone or
    with its group) closes its connections, and the worker stops every step. Each way: no
    step is left, no partial output, and the next run recovers."""
    workdir = slow_project(tmp_path)
    process = start_snakemake(workdir)
    wait_until(lambda: sampling_under_way(workdir), 240, "a sampling job to start")
    time.sleep(1.5)
    finished_before = {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (workdir / "results").rglob("trace.nc") if recorded_complete(workdir, p)
    }
    assert step_processes(workdir / "scripts")  # the steps run in the warm worker
    if how == "Ctrl-C":
        os.killpg(process.pid, signal.SIGINT)
    elif how == "SIGINT to Snakemake":
        process.send_signal(signal.SIGINT)
    elif how == "SIGKILL":
        os.killpg(process.pid, signal.SIGKILL)  # no chance to clean up at all
    else:
        process.kill()
    process.communicate(timeout=300)
    assert_no_process_left(workdir)
    assert process.returncode != 0
    assert_every_trace_is_whole(workdir)
    if how.startswith("SIGKILL"):
        # The dead run's lock stays; the README says to clear it first. (Snakemake checks
        # for incomplete files before its lock: if a step renamed its trace into place just
        # before the kill, that trace is reported first, and --rerun-incomplete redoes it.)
        refused = run_snakemake(workdir, *TRACES, check=False)
        assert refused.returncode != 0
        assert "cannot be locked" in refused.stderr or "Incomplete files:" in refused.stderr, refused.stderr[-2000:]
        run_snakemake(workdir, "--unlock")
    result = run_snakemake(workdir, "--rerun-incomplete", *TRACES)
    assert "steps (100%) done" in result.stderr + result.stdout or "Nothing to be done" in result.stderr + result.stdout
    assert_every_trace_is_whole(workdir)
    for path, (content, mtime) in finished_before.items():
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime, path
    assert not list((workdir / "results").rglob("*.tmp"))
    assert_no_process_left(workdir)


def worker_servers(workdir):
    """The workers (not their zygotes or steps) of a project copy: each leads its session."""
    found = []
    for pid in worker_processes(workdir / "scripts"):
        with contextlib.suppress(OSError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]) == pid:
                found.append(pid)
    return found


def test_a_worker_killed_mid_run_costs_only_the_redo_of_its_steps(tmp_path):
    """The out-of-memory killer or a stray `kill -9` ends the worker while sampling steps
    run: those steps are run again in a fresh worker, and the run completes."""
    workdir = slow_project(tmp_path)
    process = start_snakemake(workdir)
    wait_until(lambda: sampling_under_way(workdir), 240, "a sampling job to start")
    (server,) = worker_servers(workdir)
    os.kill(server, signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert_every_trace_is_whole(workdir)
    redone = [log for log in (workdir / "logs").rglob("sample.log")
              if f"run again after the step worker (process {server}) ended while running this step" in log.read_text()]
    assert redone
    assert "out of memory" not in output
    assert_no_process_left(workdir)


CRASHING = {
    "segfault": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),
    "out of memory": (
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does",
        "killed by SIGKILL (out of memory?)",
    ),
    "exception": ("raise RuntimeError('a bug in the model file')", "RuntimeError: a bug in the model file"),
}


@pytest.mark.parametrize("crash", list(CRASHING))
def test_a_crashing_step_fails_its_job_only(tmp_path, crash):
    """A step that dies fails its own job, with the reason in its log; the worker goes on and
    the other models' jobs complete."""
    copy_workflow(tmp_path)
    code, words = CRASHING[crash]
    source = (tmp_path / "scripts" / "models" / "full_pooling.py").read_text()
    crash = "".join(f"    {line}\n" for line in code.splitlines())
    (tmp_path / "crashing.py").write_text(source.replace("def build(data):\n", "def build(data):\n" + crash, 1))
    config = tiny_config()
    config["models"] = {"crashing": {"file": "crashing.py"}, "full_pooling": {}, "no_pooling": {}}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/spacex/{m}/trace.nc" for m in config["models"]]
    result = run_snakemake(tmp_path, "--keep-going", *targets, check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "spacex" / "crashing" / "sample.log").read_text()
    assert words in log
    assert "see its log logs/spacex/crashing/sample.log" in result.stderr
    assert not (tmp_path / "results" / "spacex" / "crashing" / "trace.nc").exists()
    for model in ("full_pooling", "no_pooling"):
        assert read_datatree(tmp_path / "results" / "spacex" / model / "trace.nc")["posterior"].sizes["draw"] == 100
    assert_no_process_left(tmp_path)


def test_second_invocation_is_refused_while_the_first_runs(tmp_path):
    workdir = slow_project(tmp_path)
    first = start_snakemake(workdir)
    wait_until(lambda: any((workdir / ".snakemake" / "locks").glob("*")), 60, "the first run to lock")
    second = run_snakemake(workdir, *TRACES, check=False)
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stderr
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert_every_trace_is_whole(workdir)


def test_damaged_trace_fails_downstream_with_file_and_remedy(completed):
    trace = completed / "results" / "spacex" / "full_pooling" / "trace.nc"
    original = trace.read_bytes()
    trace.write_bytes(original[: len(original) // 3])
    plot = completed / "results" / "spacex" / "full_pooling" / "trace.png"
    try:
        result = run_snakemake(completed, "--keep-going", check=False)
        assert result.returncode != 0
        assert "results/spacex/full_pooling/trace.nc: cannot be read as NetCDF" in result.stderr
        assert "snakemake --forcerun sample" in result.stderr
        assert "Traceback" not in result.stderr
        assert not plot.exists()  # the stale figure was removed, and no new one drawn from garbage
        # The remedy the message gives works.
        run_snakemake(completed, "--forcerun", "sample", "--", "results/spacex/full_pooling/trace.nc")
        run_snakemake(completed)
        assert plot.exists()
        read_datatree(trace)
    finally:
        if not plot.exists():
            trace.write_bytes(original)


FUNNEL = '''"""Neal's funnel on the log-odds: a geometry NUTS cannot explore without divergences."""
import pymc as pm

POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        log_scale = pm.Normal("log_scale", 0, 3)
        logit = pm.Normal("logit", 0, pm.math.exp(log_scale / 2), dims="group")
        theta = pm.Deterministic("theta", pm.math.invlogit(logit), dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    logit_new = pm.Normal("logit_new", 0, pm.math.exp(model["log_scale"] / 2))
    theta_new = pm.Deterministic("theta_new", pm.math.invlogit(logit_new))
    return pm.Binomial("y_new", n=trials, p=theta_new)
'''


def funnel_project(workdir, strict):
    copy_workflow(workdir)
    (workdir / "funnel.py").write_text(FUNNEL)
    config = tiny_config()
    config["sampling"].update(draws=300, tune=100)
    # A step size this large diverges in the funnel's neck for any seed (39-70 of 600
    # draws over five seeds; at 0.6, 0-3, which a seed could leave at none).
    config["models"] = {"funnel": {"file": "funnel.py", "target_accept": 0.3}}
    config["diagnostics"]["strict"] = strict
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def test_sampler_trouble_is_reported(tmp_path):
    workdir = funnel_project(tmp_path, strict=False)
    result = run_snakemake(workdir, "results/spacex/funnel/diagnostics.json")
    report = json.loads((workdir / "results" / "spacex" / "funnel" / "diagnostics.json").read_text())
    assert report["ok"] is False and report["divergences"] > 0
    assert "divergent transitions" in result.stderr


def test_strict_diagnostics_stop_the_workflow_at_that_model(tmp_path):
    workdir = funnel_project(tmp_path, strict=True)
    result = run_snakemake(workdir, check=False)
    assert result.returncode != 0
    assert "diagnostics failed (diagnostics.strict is true)" in result.stderr
    folder = workdir / "results" / "spacex" / "funnel"
    assert (folder / "trace.nc").exists()  # kept, to be inspected
    assert not (folder / "diagnostics.json").exists() and not (folder / "summary.csv").exists()
