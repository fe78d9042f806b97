"""The warm-step worker (scripts/worker.py): same results as a plain process, failures that
end one step only, and no process left once its Snakemake is gone."""

import json
import os
import re
import signal
import socket
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


def raw_request(script: Path, kwargs: dict, log: Path, cwd: Path | None = None) -> dict:
    """A request as run_step sends it, for tests that speak to the worker directly."""
    return {"script": str(script), "kwargs": kwargs, "log": str(log), "threads": 1, "cwd": str(cwd or log.parent),
            "env": {"set": {}, "unset": []}, "secret": worker._owner()["secret"]}


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
    request = raw_request(script, {"started": str(tmp_path / "pid"), "output": str(tmp_path / "out")}, tmp_path / "slow.log")
    worker._send(conn, request)
    wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 30, "the step to start")
    conn.close()
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5, "the step to be killed")
    time.sleep(3.5)
    assert not (tmp_path / "out").exists()


def send_raw(request: dict) -> dict:
    """Hand a request to the worker as run_step does, and return its last answer."""
    conn = worker._Client.get().connect()
    with conn:
        worker._send(conn, request)
        answers = list(worker._lines(conn))
    return answers[-1]


CRASHES = {
    "SystemExit in main()": ("def main():\n    raise SystemExit(3)\n", 3, "ERROR pipeline: the step called sys.exit(3)"),
    "KeyboardInterrupt in main()": ("def main():\n    raise KeyboardInterrupt\n", 1, "interrupted (KeyboardInterrupt)"),
    "BaseException at import": (
        "class Stop(BaseException):\n    pass\nraise Stop('at import')\n", 1, "step_crash.Stop: at import"),
    "segfault at import": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", -11, "killed by SIGSEGV"),
    # An exit status is one byte: 256 would read as 0, success.
    "sys.exit(256)": ("def main():\n    raise SystemExit(256)\n", 1, "the step called sys.exit(256)"),
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_any_failure_in_a_step_process_ends_as_that_step_failure(owner, tmp_path, crash):
    """Whatever escapes a step (SystemExit, KeyboardInterrupt, any BaseException, a signal)
    fails that step, with the reason in its log; the forked process never goes on as a
    second worker, and the worker serves the next step."""
    code, status, words = CRASHES[crash]
    script = tmp_path / "crash.py"
    script.write_text(code)
    worker._Client.get().connect().close()  # the worker is up
    before = worker_processes(owner)
    with pytest.raises(worker.StepFailed, match=re.escape(worker.describe_status(status))):
        worker.run_step(script, kwargs={}, log=str(tmp_path / "crash.log"))
    assert words in (tmp_path / "crash.log").read_text()
    time.sleep(0.3)
    assert worker_processes(owner) == before
    fine = step_file(tmp_path, "fine", """
        def main(output):
            open(output, "w").write("ok")
    """)
    worker.run_step(fine, kwargs={"output": str(tmp_path / "ok")}, log=str(tmp_path / "fine.log"))
    assert (tmp_path / "ok").read_text() == "ok"


def test_a_failure_before_the_step_code_is_the_step_failure_with_its_log(owner, tmp_path):
    """The working directory is gone (os.chdir fails before any logging is set up): the
    step fails, its log says why, and no copy of the worker's loop survives."""
    fine = step_file(tmp_path, "fine", """
        def main():
            pass
    """)
    worker._Client.get().connect().close()
    before = worker_processes(owner)
    answer = send_raw(raw_request(fine, {}, tmp_path / "fine.log", cwd=tmp_path / "gone"))
    assert answer["status"] == 1
    assert "FileNotFoundError" in (tmp_path / "fine.log").read_text()
    time.sleep(0.3)
    assert worker_processes(owner) == before


def test_a_step_log_that_cannot_be_written_fails_the_step_with_one_line(owner, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    fine = step_file(tmp_path, "fine", """
        def main():
            pass
    """)
    before = worker_processes(owner)
    with pytest.raises(worker.StepFailed, match=r"its log .*/file/fine\.log cannot be written") as failure:
        worker.run_step(fine, kwargs={}, log=str(tmp_path / "file" / "fine.log"))
    assert "\n" not in str(failure.value)
    time.sleep(0.3)
    assert worker_processes(owner) == before


def test_the_child_skips_the_connections_of_steps_whose_caller_has_gone(tmp_path):
    """The worker marks a step whose caller went away with None until it is reaped; a fork
    in that moment must not fail on it (it called None.fileno() before)."""
    fine = step_file(tmp_path, "fine", """
        def main(output):
            open(output, "w").write("ok")
    """)
    left, right = socket.socketpair()
    request = {**raw_request(fine, {"output": str(tmp_path / "ok")}, tmp_path / "fine.log"), "secret": ""}
    pid = os.fork()
    if pid == 0:
        worker._in_child(request, left, [None, right, None])
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and (tmp_path / "ok").read_text() == "ok"


def test_steps_are_forked_after_the_worker_froze_its_objects(owner, tmp_path):
    """gc.freeze() before forking: a child's collections do not touch (and so copy) the
    pages of the worker's long-lived objects."""
    script = step_file(tmp_path, "frozen", """
        import gc
        def main(output):
            open(output, "w").write(str(gc.get_freeze_count()))
    """)
    worker.run_step(script, kwargs={"output": str(tmp_path / "count")}, log=str(tmp_path / "frozen.log"))
    assert int((tmp_path / "count").read_text()) > 100_000


BROKEN_OWNER = """
import sys
sys.path.insert(0, {scripts!r})
import worker
worker.claim()
try:
    worker.run_step({script!r}, kwargs={{}}, log={log!r})
except worker.StepFailed as failure:
    print("failed:", failure, flush=True)
sys.stdin.readline()  # wait, so that the test can count the worker's processes
"""


def test_a_broken_helper_module_fails_the_step_not_the_worker(tmp_path):
    """scripts/common.py itself fails to import (before the step's own code and logging)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("worker.py", "nutpie_callbacks.py"):
        (scripts / name).write_bytes((SCRIPTS / name).read_bytes())
    (scripts / "common.py").write_text("raise ImportError('common is broken')\n")
    script = step_file(tmp_path, "fine", """
        def main():
            pass
    """)
    code = BROKEN_OWNER.format(scripts=str(scripts), script=str(script), log=str(tmp_path / "fine.log"))
    env = {k: v for k, v in os.environ.items() if k != worker.ENV}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("failed: step fine failed: exit status 1")
        time.sleep(0.3)
        assert len(project_worker_processes(scripts, process.pid)) == 1  # the worker, and no copy of it
        assert "ImportError: common is broken" in (tmp_path / "fine.log").read_text()
    finally:
        process.communicate("\n", timeout=30)


THREADED = """
import threading, time
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
"""
TWO_STEPS = """
import sys
sys.path.insert(0, {scripts!r})
import worker
worker.claim()
for name in ("one", "two"):
    worker.run_step({script!r}, kwargs={{"output": {out!r} + name}}, log={out!r} + name + ".log")
"""


def test_a_worker_with_threads_after_preloading_runs_steps_in_fresh_processes(tmp_path):
    """A library that leaves a thread running after it is imported (here: a module given to
    PIPELINE_PRELOAD): forking could deadlock, so every step runs fresh; said once."""
    (tmp_path / "threaded.py").write_text(THREADED)
    script = step_file(tmp_path, "where", """
        import os
        def main(output):
            open(output, "w").write(str(os.getppid()))
    """)
    code = TWO_STEPS.format(scripts=str(SCRIPTS), script=str(script), out=str(tmp_path / "out_"))
    env = {**{k: v for k, v in os.environ.items() if k != worker.ENV}, worker.PRELOAD_EXTRA: "threaded",
           "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("every step of this run runs in a fresh Python process instead") == 1
    for name in ("one", "two"):
        last = (tmp_path / f"out_{name}.log").read_text().rstrip().splitlines()[-1]
        assert "(fresh process: 1 other thread(s) ran in the worker after preloading (" in last, last
        assert last.endswith("so forking it could deadlock a step)"), last


def test_off_linux_every_step_runs_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.setattr(worker.sys, "platform", "darwin")
    monkeypatch.delenv(worker.ENV, raising=False)
    worker.claim()
    assert worker.ENV not in os.environ  # nothing of the warm path is set up
    script = step_file(tmp_path, "fine", """
        def main(output):
            open(output, "w").write("ok")
    """)
    worker.run_step(script, kwargs={"output": str(tmp_path / "ok")}, log=str(tmp_path / "fine.log"))
    assert (tmp_path / "ok").read_text() == "ok"
    assert (tmp_path / "fine.log").read_text().rstrip().endswith("(fresh process: the warm worker is Linux-only (darwin))")


@pytest.mark.parametrize("platform,maxrss,megabytes", [("linux", 2048 * 1024, 2048), ("darwin", 2048 * 2**20, 2048)])
def test_peak_memory_is_in_megabytes_on_each_platform(monkeypatch, platform, maxrss, megabytes):
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    from types import SimpleNamespace

    monkeypatch.setattr(worker.sys, "platform", platform)
    usage = SimpleNamespace(ru_maxrss=maxrss, ru_utime=1.0, ru_stime=0.5)
    assert worker._rusage_of(usage) == {"cpu": 1.5, "maxrss_mb": megabytes}


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


def test_a_nested_snakemake_shares_the_owner_worker_but_another_job_does_not(owner):
    """Shared within one machine and SLURM job, once the owner has started its worker (its
    process id is then in the identity the nested process inherits)."""
    worker.start()
    mine = json.loads(os.environ[worker.ENV])
    assert mine["pid"] == os.getpid() and mine["worker"] == worker._Client.get().process.pid
    claim = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import worker, os; worker.claim(); print(os.environ[worker.ENV])"
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    shared = subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert json.loads(shared) == mine
    # The same identity inherited into a SLURM job (exported by sbatch) is not shared.
    in_slurm = {**env, "SLURM_JOB_ID": "77"}
    other = json.loads(subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True, env=in_slurm).stdout)
    assert other["pid"] != os.getpid() and other["slurm_job"] == "77" and other["secret"] != mine["secret"]
    # Nor is an owner's identity whose worker has not been started.
    unstarted = {**env, worker.ENV: json.dumps({k: v for k, v in mine.items() if k not in ("worker", "worker_start")})}
    alone = json.loads(subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True, env=unstarted).stdout)
    assert alone["pid"] != os.getpid() and alone["secret"] != mine["secret"]


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
    assert "(fresh process: PIPELINE_WARM=0)" in (tmp_path / "sample0.log").read_text()
    warm, fresh = (read_datatree(traces[m]) for m in ("1", "0"))
    for group in ("posterior", "log_likelihood"):
        for name, values in warm[group].data_vars.items():
            assert values.values.tobytes() == fresh[group][name].values.tobytes(), (group, name)
    np.testing.assert_array_equal(warm["sample_stats"]["diverging"].values, fresh["sample_stats"]["diverging"].values)


def test_a_step_that_ends_as_its_caller_leaves_does_not_break_the_worker(owner, tmp_path):
    """The step's end (SIGCHLD) and its caller's hang-up reach the worker in one batch of
    events while it is busy reading another request: the reaped step's connection is closed
    before its hang-up is handled. That once raised in the worker's loop and killed it."""
    script = step_file(tmp_path, "quick", """
        import time
        def main():
            time.sleep(0.3)
    """)
    worker._Client.get().connect().close()
    before = worker_processes(owner)
    caller = worker._Client.get().connect()
    worker._send(caller, raw_request(script, {}, tmp_path / "quick.log"))
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.connect(worker._address(worker._owner()))
    busy.sendall(b"{")  # the worker now waits in _read_request for the rest of this line
    time.sleep(0.8)  # meanwhile the step ends (SIGCHLD) ...
    caller.close()  # ... and its caller hangs up
    time.sleep(0.2)
    busy.sendall(b"}\n")  # an empty request: refused, and both events are handled at once
    busy.close()
    time.sleep(0.5)
    assert worker_processes(owner) == before  # the worker lives
    fine = step_file(tmp_path, "fine", """
        def main(output):
            open(output, "w").write("ok")
    """)
    worker.run_step(fine, kwargs={"output": str(tmp_path / "ok")}, log=str(tmp_path / "fine.log"))
    assert (tmp_path / "ok").read_text() == "ok"
