"""How long a step worker lives (scripts/runtime/): shared by successive runs in one project
directory until idle, one per run when asked, restarted when its fingerprint changes, one
at a time however many runs start together, and stopped on request or by Ctrl-C's steps."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import runtime
from conftest import SCRIPTS, wait_until
from runtime import client
from runtime.processes import alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the step worker is Linux-only")

OWNER = """
import json, os, sys
sys.path.insert(0, {scripts!r})
import runtime
from runtime.client import Client
runtime.claim({idle!r})
runtime.run_step({step!r}, kwargs={{"output": {output!r}}}, log={log!r})
files, info = Client.get().server(os.getcwd())
print(json.dumps({{"pid": info["pid"], "start": info["start"], "key": files.key, "room": str(files.room)}}))
"""


def project(tmp_path, name="project") -> Path:
    """A project directory with its own copy of the runtime (so that it may be edited)."""
    where = tmp_path / name
    (where / "scripts").mkdir(parents=True)
    shutil.copytree(SCRIPTS / "runtime", where / "scripts" / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SCRIPTS / "nutpie_callbacks.py", where / "scripts")
    shutil.copy(SCRIPTS / "common.py", where / "scripts")
    shutil.copy(SCRIPTS / "shapes.py", where / "scripts")
    (where / "step.py").write_text("def main(output):\n    open(output, 'w').write('ok')\n")
    return where


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (runtime.ENV, client.IDLE_ENV)}
    return {**env, **extra}


def a_run(where: Path, idle=0.5, name="out", env=None, wait=True):
    """A process standing in for a Snakemake run in `where`: one step, then what its worker is."""
    code = OWNER.format(scripts=str(where / "scripts"), idle=idle, step=str(where / "step.py"),
                        output=str(where / name), log=str(where / f"{name}.log"))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=where, env=env or environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def log_of(worker: dict) -> str:
    return (Path(worker["room"]) / f"{worker['key']}.log").read_text()


@pytest.mark.slow
def test_successive_runs_share_one_worker_which_leaves_when_idle(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=0.05, name="first")  # 3 s
    second = a_run(where, idle=0.05, name="second")
    assert second["pid"] == first["pid"] and alive(first["pid"], first["start"])
    assert (where / "second.log").read_text().rstrip().endswith("(warm worker)")
    wait_until(lambda: not alive(first["pid"], first["start"]), 15, "the idle worker to leave")
    assert not (Path(first["room"]) / f"{first['key']}.sock").exists()
    assert "closing: idle for 3 s" in log_of(first)
    third = a_run(where, idle=0.05, name="third")
    assert third["pid"] != first["pid"]


@pytest.mark.slow
def test_with_no_idle_time_each_run_has_a_worker_that_ends_with_it(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=0, name="first")
    wait_until(lambda: not alive(first["pid"], first["start"]), 10, "the run's worker to end with it")
    second = a_run(where, idle=0, name="second")
    assert second["pid"] != first["pid"]


@pytest.mark.slow
def test_runs_starting_together_in_one_directory_share_one_worker(tmp_path):
    where = project(tmp_path)
    runs = [a_run(where, idle=0.2, name=f"run{index}", wait=False) for index in range(3)]
    workers = []
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        workers.append(json.loads(out.strip().splitlines()[-1])["pid"])
    assert len(set(workers)) == 1
    assert all((where / f"run{index}").read_text() == "ok" for index in range(3))


@pytest.mark.slow
def test_an_edited_module_of_the_worker_restarts_it(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=5, name="first")
    with (where / "scripts" / "runtime" / "steps.py").open("a") as handle:
        handle.write("\n# an edit\n")
    wait_until(lambda: not alive(first["pid"], first["start"]), 10, "the worker to leave at once")
    assert "closing: its own code changed" in log_of(first)
    second = a_run(where, idle=5, name="second")
    assert second["pid"] != first["pid"] and second["key"] != first["key"]
    os.kill(second["pid"], signal.SIGTERM)


@pytest.mark.slow
def test_an_installed_package_changed_restarts_the_worker(tmp_path):
    """An upgrade changes a distribution's metadata directory (here one on PYTHONPATH)."""
    where = project(tmp_path)
    site = tmp_path / "site"
    (site / "fakepackage-1.0.dist-info").mkdir(parents=True)
    env = environment(PYTHONPATH=str(site))
    first = a_run(where, idle=5, name="first", env=env)
    (site / "fakepackage-1.0.dist-info").rename(site / "fakepackage-1.1.dist-info")
    wait_until(lambda: not alive(first["pid"], first["start"]), 10, "the worker to leave at once")
    assert "closing: the installed packages changed" in log_of(first)
    second = a_run(where, idle=5, name="second", env=env)
    assert second["pid"] != first["pid"]
    os.kill(second["pid"], signal.SIGTERM)


@pytest.mark.slow
def test_a_changed_settings_file_restarts_the_worker(tmp_path):
    """PyTensor reads its settings file when it is imported (so do Matplotlib and Numba)."""
    where = project(tmp_path)
    settings = tmp_path / "pytensorrc"
    settings.write_text("[global]\n")
    env = environment(PYTENSORRC=str(settings))
    first = a_run(where, idle=5, name="first", env=env)
    settings.write_text("[global]\nfloatX = float64\n")
    wait_until(lambda: not alive(first["pid"], first["start"]), 10, "the worker to leave at once")
    assert "closing: a settings file it read at import changed" in log_of(first)
    second = a_run(where, idle=5, name="second", env=env)
    assert second["pid"] != first["pid"]
    os.kill(second["pid"], signal.SIGTERM)


@pytest.mark.slow
def test_a_worker_whose_project_is_gone_leaves(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=5)
    shutil.rmtree(where)
    wait_until(lambda: not alive(first["pid"], first["start"]), 10, "the worker to leave")


@pytest.mark.slow
def test_status_lists_the_worker_and_stop_stops_it(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=5)
    command = [sys.executable, str(where / "scripts" / "runtime" / "__main__.py")]
    status = subprocess.run([*command, "status", str(where)], capture_output=True, text=True, check=True).stdout
    assert f"process {first['pid']}: ready, shared scope" in status and f"project {where.resolve()}" in status
    stopped = subprocess.run([*command, "stop", str(where)], capture_output=True, text=True, check=True).stdout
    assert stopped.strip() == "stopped 1 step worker(s)"
    assert not alive(first["pid"], first["start"])
    assert "stopping: stopped (SIGTERM)" in log_of(first)


SLOW = """
import os, time
def main(started, output):
    open(started, "w").write(str(os.getpid()))
    time.sleep(5)
    open(output, "w").write("too late")
"""
INTERRUPTED = """
import sys, time
sys.path.insert(0, {scripts!r})
import runtime
runtime.claim(0.5)
try:
    runtime.run_step({step!r}, kwargs={{"started": {started!r}, "output": {output!r}}}, log={log!r})
except KeyboardInterrupt:
    print("interrupted", flush=True)
except runtime.StepFailed as failure:
    print("failed:", failure, flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_stops_the_running_steps_and_leaves_the_shared_worker(tmp_path):
    """Steps run in their own process groups, so a terminal's Ctrl-C does not reach them:
    the run's SIGINT handler hangs up on them, and their worker kills them."""
    where = project(tmp_path)
    (where / "slow.py").write_text(SLOW)
    code = INTERRUPTED.format(scripts=str(where / "scripts"), step=str(where / "slow.py"), started=str(where / "pid"),
                              output=str(where / "out"), log=str(where / "slow.log"))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=where, env=environment(), stdout=subprocess.PIPE,
                               text=True)
    wait_until(lambda: (where / "pid").exists() and (where / "pid").read_text(), 60, "the step to start")
    step = int((where / "pid").read_text())
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert out.strip() in ("interrupted", "failed: the step was stopped: Snakemake was interrupted (SIGINT)")
    wait_until(lambda: not Path(f"/proc/{step}").exists(), 5, "the step to be killed")
    assert time.monotonic() - started < 5
    time.sleep(5)
    assert not (where / "out").exists()
    worker = a_run(where, idle=0.5, name="after")  # the shared worker still serves
    assert (where / "after.log").read_text().rstrip().endswith("(warm worker)")
    os.kill(worker["pid"], signal.SIGTERM)


HOOKED_RUN = """
import sys
sys.path.insert(0, {scripts!r})
import runtime
from runtime.compiled import warm_hook
runtime.claim(0.5)
warm = warm_hook({step!r}, {scripts!r}, {step!r})
runtime.run_step({step!r}, kwargs={{"started": {started!r}, "output": {output!r}}}, log={log!r}, warm=warm)
"""
HOOKED_STEP = """
import os, time
def warm(started, output):
    pass
def main(started, output):
    open(started, "w").write(str(os.getpid()))
    time.sleep(4)
    open(output, "w").write("done")
"""


@pytest.mark.slow
def test_a_worker_that_closes_lets_its_zygotes_steps_finish(tmp_path):
    """The worker's code is edited while a step runs in one of its zygotes: the worker
    takes no more callers, but the step finishes there (it is not killed and redone)."""
    where = project(tmp_path)
    (where / "hooked.py").write_text(HOOKED_STEP)
    code = HOOKED_RUN.format(scripts=str(where / "scripts"), step=str(where / "hooked.py"), started=str(where / "pid"),
                             output=str(where / "out"), log=str(where / "hooked.log"))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=where, env=environment(), stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (where / "pid").exists() and (where / "pid").read_text(), 60, "the step to start")
    with (where / "scripts" / "runtime" / "steps.py").open("a") as handle:
        handle.write("\n# an edit\n")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert (where / "out").read_text() == "done"
    assert (where / "hooked.log").read_text().rstrip().endswith("(warm worker)")


@pytest.mark.slow
def test_a_slurm_job_keeps_a_worker_of_its_own(tmp_path):
    where = project(tmp_path)
    worker = a_run(where, idle=5, env=environment(SLURM_JOB_ID="4242"))
    wait_until(lambda: not alive(worker["pid"], worker["start"]), 10, "the job's worker to end with the job")


@pytest.mark.slow
def test_a_kill_of_the_shared_worker_between_runs_costs_nothing(tmp_path):
    where = project(tmp_path)
    first = a_run(where, idle=5, name="first")
    os.kill(first["pid"], signal.SIGKILL)
    second = a_run(where, idle=5, name="second")
    assert second["pid"] != first["pid"] and (where / "second").read_text() == "ok"
    assert (where / "second.log").read_text().rstrip().endswith("(warm worker)")
    os.kill(second["pid"], signal.SIGTERM)


def test_the_configured_idle_time_is_overridden_by_the_environment(monkeypatch):
    monkeypatch.delenv(client.IDLE_ENV, raising=False)
    assert client.idle_minutes(None) == client.DEFAULT_IDLE_MINUTES
    assert client.idle_minutes(3) == 3
    monkeypatch.setenv(client.IDLE_ENV, "0")
    assert client.idle_minutes(3) == 0
    monkeypatch.setenv(client.IDLE_ENV, "not a number")
    assert client.idle_minutes(3) == 3


@pytest.mark.slow
def test_the_step_file_is_not_part_of_the_worker(tmp_path):
    """Editing a step (or any module the steps import) does not restart the worker: each
    step imports it from disk."""
    where = project(tmp_path)
    first = a_run(where, idle=5, name="first")
    (where / "step.py").write_text(textwrap.dedent("""
        def main(output):
            open(output, 'w').write('edited')
    """))
    with (where / "scripts" / "common.py").open("a") as handle:
        handle.write("\n# an edit\n")
    second = a_run(where, idle=5, name="second")
    assert second["pid"] == first["pid"] and (where / "second").read_text() == "edited"
    os.kill(first["pid"], signal.SIGTERM)


def test_what_a_worker_killed_outright_left_is_swept(tmp_path):
    """A worker killed with SIGKILL cannot remove its socket and description; the next
    launch (or `status`) does, and leaves a live worker's alone."""
    from runtime.room import Files, sweep

    where = tmp_path / "room"
    where.mkdir(mode=0o700)
    dead, living = Files(where, "a" * 32), Files(where, "b" * 32)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead.write_info({"pid": gone.pid, "start": "1"})
    dead.socket.write_text("")
    living.write_info({"pid": os.getpid(), "start": client.start_time(os.getpid())})
    living.socket.write_text("")
    sweep(where)
    assert not dead.info.exists() and not dead.socket.exists()
    assert living.info.exists() and living.socket.exists()
