"""The step worker (scripts/runtime/): same results as a plain process, failures that end one
step only, steps stopped with whatever they started, and nothing lost when the worker dies."""

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

import runtime
from common import read_datatree
from conftest import ROOT, SCRIPTS, gone, wait_until
from conftest import worker_processes as project_worker_processes
from runtime import client, execute, protocol
from runtime.processes import alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the step worker is Linux-only")


def worker_processes(owner_pid: int) -> list[int]:
    return project_worker_processes(SCRIPTS, owner_pid)


def forget_client():
    """Stop the workers this test process started and forget them."""
    mine = client.Client._instance
    if mine is not None:
        for process in mine.started.values():
            process.kill()
            process.wait()
    client.Client._instance = None


@pytest.fixture(scope="module")
def owner():
    """This test process as the owner of a worker of its own (one run's), stopped afterwards."""
    saved = os.environ.pop(runtime.ENV, None)
    forget_client()
    idle = os.environ.pop(client.IDLE_ENV, None)  # the tests' default would override the 0
    client.claim(0)
    if idle is not None:
        os.environ[client.IDLE_ENV] = idle
    try:
        yield os.getpid()
    finally:
        forget_client()
        os.environ.pop(runtime.ENV, None)
        if saved is not None:
            os.environ[runtime.ENV] = saved


def the_worker(cwd=None) -> tuple:
    """(files, info) of this process's worker, started if need be."""
    return client.Client.get().server(str(cwd or os.getcwd()))


def raw_request(script: Path, kwargs: dict, log: Path, cwd: Path | None = None) -> dict:
    """A request as run_step sends it, for tests that speak to the worker directly."""
    _files, info = the_worker()
    return {"script": str(script), "kwargs": kwargs, "log": str(log), "threads": 1, "cwd": str(cwd or log.parent),
            "env": {"set": {}, "unset": []}, "token": info["token"]}


def raw_connection() -> socket.socket:
    files, _info = the_worker()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(files.socket))
    return conn


def step_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


FINE = """
    def main(output):
        open(output, "w").write("ok")
"""


def assert_serves(tmp_path, name="fine"):
    script = step_file(tmp_path, name, FINE)
    runtime.run_step(script, kwargs={"output": str(tmp_path / f"{name}.out")}, log=str(tmp_path / f"{name}.log"))
    assert (tmp_path / f"{name}.out").read_text() == "ok"


def test_a_step_runs_in_a_forked_child_and_logs_its_resources(owner, tmp_path):
    script = step_file(tmp_path, "where", """
        import os
        def main(output):
            open(output, "w").write(str(os.getpid()))
    """)
    outputs = [tmp_path / f"pid{i}" for i in range(2)]
    for output in outputs:
        runtime.run_step(script, kwargs={"output": str(output)}, log=str(tmp_path / "where.log"))
    pids = {int(p.read_text()) for p in outputs}
    _files, info = the_worker()
    assert len(pids) == 2 and os.getpid() not in pids and info["pid"] not in pids
    last = (tmp_path / "where.log").read_text().strip().splitlines()[-1]
    assert last.startswith("step where: exit status 0, wall ") and "peak RSS" in last and "(warm worker)" in last


def test_a_user_error_fails_the_step_with_its_one_line_message(owner, tmp_path):
    script = step_file(tmp_path, "refuses", """
        from common import UserError
        def main(table):
            raise UserError(f"{table}: row 2 (line 3), column 'x': -1 is negative")
    """)
    log = tmp_path / "refuses.log"
    with pytest.raises(runtime.StepFailed, match="exit status 1"):
        runtime.run_step(script, kwargs={"table": "data.csv"}, log=str(log))
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
    _files, before = the_worker()
    with pytest.raises(runtime.StepFailed, match=re.escape(words)):
        runtime.run_step(crash, kwargs={}, log=str(tmp_path / "crash.log"))
    assert words in (tmp_path / "crash.log").read_text()
    assert_serves(tmp_path)
    _files, after = the_worker()
    assert after["pid"] == before["pid"]  # the same worker


def test_steps_run_side_by_side(owner, tmp_path):
    script = step_file(tmp_path, "nap", """
        import time
        def main(output):
            time.sleep(1.0)
            open(output, "w").write("done")
    """)
    the_worker()
    threads = [
        threading.Thread(target=runtime.run_step, args=(script,),
                         kwargs={"kwargs": {"output": str(tmp_path / f"n{i}")}, "log": str(tmp_path / f"n{i}.log")})
        for i in range(4)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.perf_counter() - started < 3.0
    assert all((tmp_path / f"n{i}").read_text() == "done" for i in range(4))


GRANDCHILD = """
    import os, subprocess, sys, time
    def main(started, output):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open(started, "w").write(f"{os.getpid()} {child.pid}")
        time.sleep({nap})
        open(output, "w").write("too late")
"""


def test_a_step_whose_caller_is_gone_is_stopped_with_what_it_started(owner, tmp_path):
    """Snakemake stopping a job closes the connection: the step's whole process group is
    killed (a grandchild such as `dot` too), and nothing more is written."""
    script = step_file(tmp_path, "slow", GRANDCHILD.replace("{nap}", "3"))
    conn = raw_connection()
    protocol.send(conn, raw_request(script, {"started": str(tmp_path / "pid"), "output": str(tmp_path / "out")},
                                    tmp_path / "slow.log"))
    wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 30, "the step to start")
    conn.close()
    step, grandchild = map(int, (tmp_path / "pid").read_text().split())
    wait_until(lambda: gone(step) and gone(grandchild), 5, "the step and its child to be killed")
    time.sleep(3.5)
    assert not (tmp_path / "out").exists()


def test_what_a_step_leaves_running_is_stopped_when_it_ends(owner, tmp_path):
    script = step_file(tmp_path, "leaves", GRANDCHILD.replace("{nap}", "0"))
    runtime.run_step(script, kwargs={"started": str(tmp_path / "pid"), "output": str(tmp_path / "out")},
                     log=str(tmp_path / "leaves.log"))
    _step, grandchild = map(int, (tmp_path / "pid").read_text().split())
    wait_until(lambda: gone(grandchild), 5, "the step's child to be killed")


def test_each_step_has_its_own_numpy_random_state(owner, tmp_path):
    """A fork would repeat the worker's global NumPy stream in every step; a fresh process
    starts from the OS's entropy, and so does a forked step."""
    script = step_file(tmp_path, "draws", """
        import numpy as np
        def main(output):
            open(output, "w").write(repr(np.random.random()))
    """)
    for index in range(2):
        runtime.run_step(script, kwargs={"output": str(tmp_path / f"draw{index}")}, log=str(tmp_path / "draws.log"))
    assert (tmp_path / "draw0").read_text() != (tmp_path / "draw1").read_text()


def test_a_step_writes_files_with_its_caller_umask(owner, tmp_path):
    """The worker keeps its socket private with a umask of 077; a step must not inherit it
    (outputs would be 0600 where a fresh process writes them 0644, or 0640 here)."""
    script = step_file(tmp_path, "writes", """
        import os
        def main(output):
            open(output, "w").write("x")
            os.mkdir(output + ".d")
    """)
    previous = os.umask(0o027)
    try:
        runtime.run_step(script, kwargs={"output": str(tmp_path / "out")}, log=str(tmp_path / "writes.log"))
    finally:
        os.umask(previous)
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == oct(0o640)
    assert oct((tmp_path / "out.d").stat().st_mode & 0o777) == oct(0o750)


HOOKED = """
    import os, time
    def warm(output, nap):
        time.sleep(nap)
    def main(output, nap):
        open(output, "w").write(str(os.getppid()))
"""


def test_a_zygote_busy_compiling_holds_up_no_other_step(owner, tmp_path):
    """A step whose warm hook (compiling its model, say) takes seconds goes to a zygote; the
    worker's own loop goes on serving, and steps beyond the zygote's queue are forked by
    the worker itself instead of waiting."""
    from runtime.compiled import warm_hook

    script = step_file(tmp_path, "hooked", HOOKED)
    warm = warm_hook(script, tmp_path, script)
    hooked = [
        threading.Thread(target=runtime.run_step, args=(script,),
                         kwargs={"kwargs": {"output": str(tmp_path / f"h{i}"), "nap": 2}, "log": str(tmp_path / f"h{i}.log"),
                                 "warm": warm})
        for i in range(8)
    ]
    for thread in hooked:
        thread.start()
    time.sleep(0.5)
    started = time.perf_counter()
    assert_serves(tmp_path)
    assert time.perf_counter() - started < 1.5
    for thread in hooked:
        thread.join()
    parents = {(tmp_path / f"h{i}").read_text() for i in range(8)}
    _files, info = the_worker()
    assert str(info["pid"]) in parents and len(parents) == 2  # some from the zygote, the rest from the worker


def send_raw(request: dict) -> dict:
    """Hand a request to the worker as run_step does, and return its last answer."""
    with raw_connection() as conn:
        protocol.send(conn, request)
        answers = list(protocol.messages(conn))
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
    the_worker()
    before = worker_processes(owner)
    with pytest.raises(runtime.StepFailed, match=re.escape(runtime.describe_status(status))):
        runtime.run_step(script, kwargs={}, log=str(tmp_path / "crash.log"))
    assert words in (tmp_path / "crash.log").read_text()
    time.sleep(0.3)
    assert worker_processes(owner) == before
    assert_serves(tmp_path)


def test_a_failure_before_the_step_code_is_the_step_failure_with_its_log(owner, tmp_path):
    """The working directory is gone (os.chdir fails before any logging is set up): the
    step fails, its log says why, and no copy of the worker's loop survives."""
    fine = step_file(tmp_path, "fine", "def main():\n    pass\n")
    the_worker()
    before = worker_processes(owner)
    answer = send_raw(raw_request(fine, {}, tmp_path / "fine.log", cwd=tmp_path / "gone"))
    assert answer["status"] == 1
    assert "FileNotFoundError" in (tmp_path / "fine.log").read_text()
    time.sleep(0.3)
    assert worker_processes(owner) == before


def test_a_step_log_that_cannot_be_written_fails_the_step_with_one_line(owner, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    fine = step_file(tmp_path, "fine", "def main():\n    pass\n")
    the_worker()
    before = worker_processes(owner)
    with pytest.raises(runtime.StepFailed, match=r"its log .*/file/fine\.log cannot be written") as failure:
        runtime.run_step(fine, kwargs={}, log=str(tmp_path / "file" / "fine.log"))
    assert "\n" not in str(failure.value)
    time.sleep(0.3)
    assert worker_processes(owner) == before


def test_the_child_skips_the_connections_of_steps_whose_caller_has_gone(tmp_path):
    """The worker marks a step whose caller went away with None until it is reaped; a fork
    in that moment must not fail on it."""
    step_file(tmp_path, "fine", FINE)
    left, right = socket.socketpair()
    request = {"script": str(tmp_path / "fine.py"), "kwargs": {"output": str(tmp_path / "ok")},
               "log": str(tmp_path / "fine.log"), "threads": 1, "cwd": str(tmp_path)}
    pid = os.fork()
    if pid == 0:
        execute.run_forked(request, [], [None, right, None, left])
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
    runtime.run_step(script, kwargs={"output": str(tmp_path / "count")}, log=str(tmp_path / "frozen.log"))
    assert int((tmp_path / "count").read_text()) > 100_000


OWNER_SCRIPT = """
import os, sys
sys.path.insert(0, {scripts!r})
import runtime
runtime.claim({idle!r})
{body}
"""


def owner_process(tmp_path, body: str, idle=0, env=None, scripts=SCRIPTS, **popen) -> subprocess.Popen:
    """A process standing in for a Snakemake run: it claims, then runs `body`."""
    code = OWNER_SCRIPT.format(scripts=str(scripts), idle=idle, body=textwrap.dedent(body))
    environment = {**{k: v for k, v in os.environ.items() if k not in (runtime.ENV, client.IDLE_ENV)}, **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code], env=environment, cwd=tmp_path, **popen)


def run_owner(tmp_path, body: str, **options) -> subprocess.CompletedProcess:
    process = owner_process(tmp_path, body, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
def test_a_broken_helper_module_fails_the_step_not_the_worker(tmp_path):
    """scripts/common.py itself fails to import (before the step's own code and logging)."""
    import shutil

    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS / "runtime", scripts / "runtime")
    (scripts / "nutpie_callbacks.py").write_bytes((SCRIPTS / "nutpie_callbacks.py").read_bytes())
    (scripts / "common.py").write_text("raise ImportError('common is broken')\n")
    step_file(tmp_path, "fine", "def main():\n    pass\n")
    result = run_owner(tmp_path, f"""
        try:
            runtime.run_step({str(tmp_path / "fine.py")!r}, kwargs={{}}, log={str(tmp_path / "fine.log")!r})
        except runtime.StepFailed as failure:
            print("failed:", failure, flush=True)
        from runtime.client import Client
        print("worker alive:", all(p.poll() is None for p in Client.get().started.values()))
    """, scripts=scripts)
    assert result.stdout.splitlines()[0].startswith("failed: step fine failed: exit status 1"), result.stderr
    assert result.stdout.splitlines()[1] == "worker alive: True"
    assert "ImportError: common is broken" in (tmp_path / "fine.log").read_text()


THREADED = """
import threading, time
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
"""


@pytest.mark.slow
def test_a_worker_with_threads_after_preloading_runs_steps_in_fresh_processes(tmp_path):
    """A library that leaves a thread running after it is imported (here: a module given to
    PIPELINE_PRELOAD): forking could deadlock, so every step runs fresh; said once."""
    (tmp_path / "threaded.py").write_text(THREADED)
    step_file(tmp_path, "where", """
        import os
        def main(output):
            open(output, "w").write(str(os.getppid()))
    """)
    result = run_owner(tmp_path, f"""
        for name in ("one", "two"):
            runtime.run_step({str(tmp_path / "where.py")!r}, kwargs={{"output": {str(tmp_path)!r} + "/out_" + name}},
                             log={str(tmp_path)!r} + "/out_" + name + ".log")
    """, env={runtime.PRELOAD_EXTRA: "threaded", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("every step of this run runs in a fresh Python process instead") == 1
    for name in ("one", "two"):
        last = (tmp_path / f"out_{name}.log").read_text().rstrip().splitlines()[-1]
        assert "(fresh process: 1 other thread(s) ran in the worker after preloading (" in last, last
        assert last.endswith("so forking it could deadlock a step)"), last


NOISY = "print('preloaded and not flushed', end='')\n"


@pytest.mark.slow
def test_what_the_worker_has_buffered_is_not_printed_by_every_step(tmp_path):
    """Output buffered in the worker before a fork would be printed again by each forked
    step at its exit (under SLURM or a pipe, where output is block-buffered)."""
    (tmp_path / "noisy.py").write_text(NOISY)
    step_file(tmp_path, "fine", FINE)
    result = run_owner(tmp_path, f"""
        for name in ("one", "two"):
            runtime.run_step({str(tmp_path / "fine.py")!r}, kwargs={{"output": {str(tmp_path)!r} + "/" + name}},
                             log={str(tmp_path)!r} + "/" + name + ".log")
    """, env={runtime.PRELOAD_EXTRA: "noisy", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "preloaded and not flushed" not in result.stdout + result.stderr
    assert "warm worker" in (tmp_path / "two.log").read_text()


@pytest.mark.slow
def test_what_a_step_prints_goes_where_its_caller_prints(tmp_path):
    step_file(tmp_path, "talks", """
        import sys
        def main():
            print("to stdout from the step")
            print("to stderr from the step", file=sys.stderr)
    """)
    result = run_owner(tmp_path, f"""
        runtime.run_step({str(tmp_path / "talks.py")!r}, kwargs={{}}, log={str(tmp_path / "talks.log")!r})
    """)
    assert result.returncode == 0, result.stderr
    assert "to stdout from the step" in result.stdout and "to stderr from the step" in result.stderr
    assert "(warm worker)" in (tmp_path / "talks.log").read_text()


def test_off_linux_every_step_runs_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.setattr(client.sys, "platform", "darwin")
    monkeypatch.setenv(runtime.ENV, "")
    client.claim()
    assert not os.environ.get(runtime.ENV)  # nothing of the warm path is set up
    assert_serves(tmp_path)
    assert (tmp_path / "fine.log").read_text().rstrip().endswith("(fresh process: the warm worker is Linux-only (darwin))")


@pytest.mark.parametrize("platform,maxrss,megabytes", [("linux", 2048 * 1024, 2048), ("darwin", 2048 * 2**20, 2048)])
def test_peak_memory_is_in_megabytes_on_each_platform(monkeypatch, platform, maxrss, megabytes):
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    from types import SimpleNamespace

    from runtime import processes

    monkeypatch.setattr(processes.sys, "platform", platform)
    usage = SimpleNamespace(ru_maxrss=maxrss, ru_utime=1.0, ru_stime=0.5)
    assert processes.rusage_of(usage) == {"cpu": 1.5, "maxrss_mb": megabytes}


SLOW_STEP = """
    import os, time
    def main(started, output):
        open(started, "w").write(str(os.getpid()))
        time.sleep({nap})
        open(output, "w").write("done")
"""


@pytest.mark.slow
def test_killing_the_run_stops_its_steps_and_its_own_worker(tmp_path):
    """`kill -9` of Snakemake (here: a process standing in for it, with a worker of its own
    run): the worker and every step end within a second or two, and no output is written."""
    step_file(tmp_path, "slow", SLOW_STEP.replace("{nap}", "4"))
    process = owner_process(tmp_path, f"""
        runtime.run_step({str(tmp_path / "slow.py")!r}, kwargs={{"started": {str(tmp_path / "pid")!r},
                         "output": {str(tmp_path / "out")!r}}}, log={str(tmp_path / "slow.log")!r})
    """)
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


@pytest.mark.slow
def test_a_worker_killed_mid_step_costs_only_the_redo_of_that_step(tmp_path):
    """The out-of-memory killer, or a stray `kill`, ends the worker while a step runs: the
    step is run again in a fresh worker, its log says why (not "out of memory?"), and the
    caller's next step is served too."""
    step_file(tmp_path, "slow", SLOW_STEP.replace("{nap}", "2"))
    step_file(tmp_path, "fine", FINE)
    process = owner_process(tmp_path, f"""
        runtime.run_step({str(tmp_path / "slow.py")!r}, kwargs={{"started": {str(tmp_path / "pid")!r},
                         "output": {str(tmp_path / "out")!r}}}, log={str(tmp_path / "slow.log")!r})
        runtime.run_step({str(tmp_path / "fine.py")!r}, kwargs={{"output": {str(tmp_path / "next")!r}}},
                         log={str(tmp_path / "fine.log")!r})
    """, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 60, "the step to start")
        first_step = int((tmp_path / "pid").read_text())
        (server,) = [pid for pid in worker_processes(process.pid) if pid != first_step]
        os.kill(server, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert (tmp_path / "out").read_text() == "done" and (tmp_path / "next").read_text() == "ok"
    assert int((tmp_path / "pid").read_text()) != first_step  # run again
    last = (tmp_path / "slow.log").read_text().rstrip().splitlines()[-1]
    assert f"run again after the step worker (process {server}) ended while running this step" in last, last
    assert "out of memory" not in last
    assert not Path(f"/proc/{first_step}").exists()


def test_a_step_that_ends_as_its_caller_leaves_does_not_break_the_worker(owner, tmp_path):
    """The step's end (SIGCHLD) and its caller's hang-up reach the worker in one batch of
    events while it is busy reading another request."""
    script = step_file(tmp_path, "quick", """
        import time
        def main():
            time.sleep(0.3)
    """)
    _files, info = the_worker()
    caller = raw_connection()
    protocol.send(caller, raw_request(script, {}, tmp_path / "quick.log"))
    busy = raw_connection()
    busy.sendall(b"{")  # an unfinished request
    time.sleep(0.8)  # meanwhile the step ends (SIGCHLD) ...
    caller.close()  # ... and its caller hangs up
    time.sleep(0.2)
    busy.sendall(b"}\n")  # an empty request: refused
    busy.close()
    time.sleep(0.5)
    assert alive(info["pid"], info["start"])
    assert_serves(tmp_path)


@pytest.mark.slow
def test_warm_and_fresh_processes_give_bitwise_equal_results(owner, tmp_path, spacex_prepared, monkeypatch):
    """The same sampling step through the worker and in a fresh Python process."""
    traces = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(runtime.WARM, mode)
        traces[mode] = tmp_path / f"trace{mode}.nc"
        runtime.run_step(
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


@pytest.mark.slow
def test_a_nested_snakemake_uses_the_enclosing_run_but_another_slurm_job_does_not(owner):
    """Shared within one machine and SLURM job: the nested process keeps the enclosing
    identity; the same identity inherited into a SLURM job (exported by sbatch) is not used."""
    mine = json.loads(os.environ[runtime.ENV])
    claim = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import runtime, os; runtime.claim(); print(os.environ[runtime.ENV])"
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    nested = json.loads(subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True, env=env).stdout)
    assert nested == mine
    in_slurm = {**env, "SLURM_JOB_ID": "77"}
    other = json.loads(subprocess.run([sys.executable, "-c", claim], capture_output=True, text=True, check=True,
                                      env=in_slurm).stdout)
    assert other["pid"] != os.getpid() and other["slurm_job"] == "77"
    assert other["scope"] == "run"  # a SLURM job's worker ends with the job
