"""The warm-step worker (scripts/worker.py): same results as a plain process, failures that
end one step only, and no process left once its Snakemake is gone."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import worker
from common import read_datatree
from conftest import ROOT, SCRIPTS
from conftest import worker_processes as project_worker_processes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the warm worker is Linux-only")


def worker_processes(owner_pid: int) -> list[int]:
    return project_worker_processes(SCRIPTS, owner_pid)


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def owner():
    """This test process as the owner of a worker, stopped and forgotten afterwards."""
    saved = os.environ.pop(worker.ENV, None)
    worker.claim()
    try:
        yield os.getpid()
    finally:
        client = worker._Client.get()
        if client.process is not None:
            client.process.kill()
            client.process.wait()
        worker._Client._instance = None
        os.environ.pop(worker.ENV, None)
        if saved is not None:
            os.environ[worker.ENV] = saved


def step_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_step_runs_in_a_forked_child_and_logs_its_resources(owner, tmp_path):
    script = step_file(tmp_path, "where", """
        import os
        def main(output):
            open(output, "w").write(str(os.getpid()))
    """)
    outputs = [tmp_path / f"pid{i}" for i in range(2)]
    for output in outputs:
        worker.run_step(script, kwargs={"output": str(output)}, log=str(tmp_path / "where.log"))
    pids = {int(p.read_text()) for p in outputs}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(worker_processes(owner)[0] != pid for pid in pids)
    last = (tmp_path / "where.log").read_text().strip().splitlines()[-1]
    assert last.startswith("step where: exit status 0, wall ") and "peak RSS" in last and "(warm worker)" in last


def test_a_user_error_fails_the_step_with_its_one_line_message(owner, tmp_path):
    script = step_file(tmp_path, "refuses", """
        from common import UserError
        def main(table):
            raise UserError(f"{table}: row 2 (line 3), column 'x': -1 is negative")
    """)
    log = tmp_path / "refuses.log"
    with pytest.raises(worker.StepFailed, match="exit status 1"):
        worker.run_step(script, kwargs={"table": "data.csv"}, log=str(log))
    lines = log.read_text().splitlines()
    assert lines[0] == "ERROR pipeline: data.csv: row 2 (line 3), column 'x': -1 is negative"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("how,words", [("SIGSEGV", "killed by SIGSEGV"), ("SIGKILL", "killed by SIGKILL (out of memory?)")])
def test_a_crash_ends_that_step_only(owner, tmp_path, how, words):
    """A segfault, or the kernel's out-of-memory killer (SIGKILL), fails one step; the
    worker goes on serving the next."""
    crash = step_file(tmp_path, "crash", f"""
        import os, signal
        def main():
            os.kill(os.getpid(), signal.{how})
    """)
    before = worker_processes(owner)
    with pytest.raises(worker.StepFailed, match=re.escape(words)):
        worker.run_step(crash, kwargs={}, log=str(tmp_path / "crash.log"))
    assert words in (tmp_path / "crash.log").read_text()
    fine = step_file(tmp_path, "fine", """
        def main(output):
            open(output, "w").write("ok")
    """)
    worker.run_step(fine, kwargs={"output": str(tmp_path / "ok")}, log=str(tmp_path / "fine.log"))
    assert (tmp_path / "ok").read_text() == "ok"
    assert worker_processes(owner) == before  # the same worker, no step left behind


def test_steps_run_side_by_side(owner, tmp_path):
    script = step_file(tmp_path, "nap", """
        import time
        def main(output):
            time.sleep(1.0)
            open(output, "w").write("done")
    """)
    threads = [
        threading.Thread(
            target=worker.run_step,
            args=(script,),
            kwargs={"kwargs": {"output": str(tmp_path / f"n{i}")}, "log": str(tmp_path / f"n{i}.log")},
        )
        for i in range(4)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.perf_counter() - started < 3.0
    assert all((tmp_path / f"n{i}").read_text() == "done" for i in range(4))


def test_a_step_whose_caller_is_gone_is_stopped(owner, tmp_path):
    """Snakemake stopping a job closes the connection; the step must not go on to write."""
    script = step_file(tmp_path, "slow", """
        import os, time
        def main(started, output):
            open(started, "w").write(str(os.getpid()))
            time.sleep(3)
            open(output, "w").write("too late")
    """)
    worker._Client.get().connect().close()  # the worker is up
    conn = worker._Client.get().connect()
    request = {"script": str(script), "kwargs": {"started": str(tmp_path / "pid"), "output": str(tmp_path / "out")},
               "log": str(tmp_path / "slow.log"), "threads": 1, "cwd": str(tmp_path), "env": dict(os.environ)}
    worker._send(conn, request)
    wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 30, "the step to start")
    conn.close()
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5, "the step to be killed")
    time.sleep(3.5)
    assert not (tmp_path / "out").exists()


OWNER = """
import sys
sys.path.insert(0, {scripts!r})
import worker
worker.claim()
worker.run_step({script!r}, kwargs={{"started": {started!r}, "output": {output!r}}}, log={log!r})
"""


def test_killing_the_owner_stops_the_worker_and_its_steps(tmp_path):
    """`kill -9` of Snakemake (here: a process standing in for it, which owns the worker):
    the worker and every step end within a second or two, and no output is written."""
    script = step_file(tmp_path, "slow", """
        import os, time
        def main(started, output):
            open(started, "w").write(str(os.getpid()))
            time.sleep(4)
            open(output, "w").write("too late")
    """)
    code = OWNER.format(scripts=str(SCRIPTS), script=str(script), started=str(tmp_path / "pid"),
                        output=str(tmp_path / "out"), log=str(tmp_path / "slow.log"))
    env = {k: v for k, v in os.environ.items() if k != worker.ENV}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 60, "the step to start")
        assert len(worker_processes(process.pid)) == 2  # the worker and the step
        process.kill()
        process.wait()
        wait_until(lambda: not worker_processes(process.pid), 5, "the worker and the step to end")
        time.sleep(4.5)
        assert not (tmp_path / "out").exists()
    finally:
        for pid in worker_processes(process.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_nested_snakemake_shares_the_owner_worker_but_another_job_does_not(monkeypatch):
    monkeypatch.delenv(worker.ENV, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    worker.claim()
    mine = os.environ[worker.ENV]
    assert json.loads(mine)["pid"] == os.getpid()
    claim = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import worker, os; worker.claim(); print(os.environ[worker.ENV])"
    shared = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True).stdout.strip()
    assert shared == mine
    # The same identity inherited into a SLURM job (exported by sbatch) is not shared.
    in_slurm = {**os.environ, "SLURM_JOB_ID": "77"}
    other = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True, env=in_slurm).stdout.strip()
    assert json.loads(other)["pid"] != os.getpid() and json.loads(other)["slurm_job"] == "77"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_the_worker_serves_only_its_own_user(owner, tmp_path):
    """Anyone on the machine can reach an abstract socket: the worker checks who calls."""
    script = step_file(tmp_path, "mark", """
        def main(output):
            open(output, "w").write("ran")
    """)
    worker._Client.get().connect().close()  # the worker is up
    request = {"script": str(script), "kwargs": {"output": str(tmp_path / "ran")}, "log": str(tmp_path / "mark.log"),
               "threads": 1, "cwd": str(tmp_path), "env": {}}
    code = f"""
import os, socket
os.setuid(65534)
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect({worker._address(worker._owner())!r})
try:
    conn.sendall({json.dumps(request).encode() + b"\n"!r})
    print("refused" if conn.recv(100) == b"" else "served")
except (BrokenPipeError, ConnectionResetError):  # the worker may hang up before the request is sent
    print("refused")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "refused", result.stderr
    time.sleep(0.5)
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_warm_and_fresh_processes_give_bitwise_equal_results(owner, tmp_path, spacex_prepared, monkeypatch):
    """The same sampling step through the worker and in a fresh Python process."""
    traces = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(worker.WARM, mode)
        traces[mode] = tmp_path / f"trace{mode}.nc"
        worker.run_step(
            SCRIPTS / "sample.py",
            kwargs={"data": str(spacex_prepared), "model_file": str(ROOT / "scripts" / "models" / "hierarchical.py"),
                    "trace": str(traces[mode]), "dataset": "spacex", "model": "hierarchical",
                    "sampling": {"draws": 200, "tune": 200, "chains": 2, "seed": 3, "sampler": "nutpie"},
                    "settings": {"target_accept": 0.9}, "seed": 3},
            log=str(tmp_path / f"sample{mode}.log"), threads=2,
        )
    assert "(warm worker)" in (tmp_path / "sample1.log").read_text()
    assert "(fresh process)" in (tmp_path / "sample0.log").read_text()
    warm, fresh = (read_datatree(traces[m]) for m in ("1", "0"))
    for group in ("posterior", "log_likelihood"):
        for name, values in warm[group].data_vars.items():
            assert values.values.tobytes() == fresh[group][name].values.tobytes(), (group, name)
    np.testing.assert_array_equal(warm["sample_stats"]["diverging"].values, fresh["sample_stats"]["diverging"].values)
