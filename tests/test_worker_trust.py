"""Both ends of the warm worker's socket check the other (scripts/worker.py): a caller sends
nothing to a process that is not its run's worker, the worker serves no one without the
owner's secret, and a request carries only the environment that differs from the worker's."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import worker

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the warm worker is Linux-only")


@pytest.fixture
def fresh_owner(monkeypatch):
    """This test process as a new owner (a new secret, no worker yet); its worker, if any,
    is stopped afterwards."""
    saved = worker._Client._instance
    worker._Client._instance = None
    monkeypatch.delenv(worker.ENV, raising=False)
    worker.claim()
    try:
        yield worker._owner()
    finally:
        client = worker._Client.get()
        if client.process is not None:
            client.process.kill()
            client.process.wait()
        worker._Client._instance = saved


def step_file(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


# A process that takes the worker's name first and counts the bytes it is sent.
SQUATTER = """
import os, socket, sys
if {uid} is not None:
    os.setuid({uid})
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind({address!r})
listener.listen(8)
print("listening", flush=True)
listener.settimeout(20)
received = 0
try:
    conn, _ = listener.accept()
    conn.settimeout(5)
    while chunk := conn.recv(65536):
        received += len(chunk)
except OSError:
    pass
print(received, flush=True)
"""


def squat(owner, uid=None):
    process = subprocess.Popen([sys.executable, "-c", SQUATTER.format(uid=uid, address=worker._address(owner))],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "listening"
    return process


@pytest.mark.parametrize("who", ["another user", "another process of the same user"])
def test_the_caller_sends_nothing_to_a_process_that_is_not_its_worker(fresh_owner, tmp_path, who):
    """Someone holds the worker's name before the worker binds it: the step fails with one
    line naming who holds it, and that process receives not a byte."""
    if who == "another user" and os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    squatter = squat(fresh_owner, uid=65534 if who == "another user" else None)
    script = step_file(tmp_path, "mark", """
        def main(output):
            open(output, "w").write("ran")
    """)
    words = "another user, uid 65534" if who == "another user" else f"another of your processes (process {squatter.pid})"
    try:
        with pytest.raises(worker.StepFailed, match=r"held by " + words.replace("(", r"\(").replace(")", r"\)")) as failure:
            worker.run_step(script, kwargs={"output": str(tmp_path / "ran")}, log=str(tmp_path / "mark.log"))
        assert "nothing was sent to it" in str(failure.value) and "\n" not in str(failure.value)
        output, _ = squatter.communicate(timeout=30)
        assert output.strip() == "0"
    finally:
        squatter.kill()
    assert not (tmp_path / "ran").exists()


def test_the_worker_serves_no_caller_without_the_owner_secret(fresh_owner, tmp_path):
    script = step_file(tmp_path, "mark", """
        def main(output):
            open(output, "w").write("ran")
    """)
    worker.run_step(script, kwargs={"output": str(tmp_path / "first")}, log=str(tmp_path / "first.log"))
    request = {"script": str(script), "kwargs": {"output": str(tmp_path / "ran")}, "log": str(tmp_path / "mark.log"),
               "threads": 1, "cwd": str(tmp_path), "env": {"set": {}, "unset": []}}
    for secret in (None, "0" * 32):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(worker._address(fresh_owner))
        worker._send(conn, request if secret is None else {**request, "secret": secret})
        conn.settimeout(10)
        assert conn.recv(100) == b""  # hung up, no answer
        conn.close()
    time.sleep(0.5)
    assert (tmp_path / "first").read_text() == "ran" and not (tmp_path / "ran").exists()


ENVIRONMENT_STEP = """
import json, os
def main(output):
    open(output, "w").write(json.dumps(dict(os.environ)))
"""


def test_a_request_carries_only_the_environment_that_differs_from_the_worker(fresh_owner, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TEST_GONE", "set before the worker started")
    script = step_file(tmp_path, "environment", ENVIRONMENT_STEP)
    worker.run_step(script, kwargs={"output": str(tmp_path / "before.json")}, log=str(tmp_path / "before.log"))
    monkeypatch.delenv("PIPELINE_TEST_GONE")
    monkeypatch.setenv("PIPELINE_TEST_CHANGED", "set after")
    sent = []
    send = worker._send
    monkeypatch.setattr(worker, "_send", lambda conn, message: (sent.append(message), send(conn, message)))
    worker.run_step(script, kwargs={"output": str(tmp_path / "after.json")}, log=str(tmp_path / "after.log"))
    (request,) = sent
    assert request["env"] == {"set": {"PIPELINE_TEST_CHANGED": "set after"}, "unset": ["PIPELINE_TEST_GONE"]}
    seen = json.loads((tmp_path / "after.json").read_text())
    assert seen["PIPELINE_TEST_CHANGED"] == "set after" and "PIPELINE_TEST_GONE" not in seen
    assert seen["PATH"] == os.environ["PATH"]  # the rest is the worker's own, as it was
    assert all(seen[name] == value for name, value in worker.STEP_ENV.items())
    assert (tmp_path / "after.log").read_text().rstrip().endswith("(warm worker)")


def test_a_setting_libraries_read_at_import_runs_the_step_in_a_fresh_process(fresh_owner, tmp_path, monkeypatch):
    """A fork of the worker cannot honour PyTensor's flags changed after it imported PyTensor:
    the step runs in a fresh process, which does, and its log says why."""
    script = step_file(tmp_path, "environment", ENVIRONMENT_STEP)
    worker.run_step(script, kwargs={"output": str(tmp_path / "warm.json")}, log=str(tmp_path / "warm.log"))
    monkeypatch.setenv("PYTENSOR_FLAGS", "optimizer_verbose=False")
    worker.run_step(script, kwargs={"output": str(tmp_path / "fresh.json")}, log=str(tmp_path / "fresh.log"))
    assert json.loads((tmp_path / "fresh.json").read_text())["PYTENSOR_FLAGS"] == "optimizer_verbose=False"
    last = (tmp_path / "fresh.log").read_text().rstrip().splitlines()[-1]
    assert last.endswith("(fresh process: PYTENSOR_FLAGS differ from the worker's, and libraries may read them at import)")


def test_the_address_holds_a_secret_that_only_the_owner_environment_carries(fresh_owner):
    """The name was host, pid and start time before, all readable in /proc by anyone."""
    address = worker._address(fresh_owner)
    assert fresh_owner["secret"] in address and len(fresh_owner["secret"]) == 32
    assert str(os.getpid()) not in address
    assert oct(os.stat(f"/proc/{os.getpid()}/environ").st_mode & 0o777) == "0o400"


# Another user's listener whose backlog is full (listen(0), one pending connection of its
# own): a connect() to it blocks.
FULL_BACKLOG = """
import os, socket, time
os.setuid(65534)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind({address!r})
listener.listen(0)
pending = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
pending.setblocking(False)
try:
    pending.connect({address!r})
except OSError:
    pass
print("listening", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_dead_worker_name_taken_by_someone_else_fails_fast(fresh_owner, tmp_path):
    """The worker is gone and another user holds its (listable) name, with a backlog so full
    that connect() would block: the step fails at once, naming the worker's end."""
    script = step_file(tmp_path, "mark", """
        def main(output):
            open(output, "w").write("ran")
    """)
    worker.run_step(script, kwargs={"output": str(tmp_path / "first")}, log=str(tmp_path / "first.log"))
    client = worker._Client.get()
    client.process.kill()
    client.process.wait()
    squatter = subprocess.Popen([sys.executable, "-c", FULL_BACKLOG.format(address=worker._address(fresh_owner))],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "listening"
        started = time.monotonic()
        with pytest.raises(worker.StepFailed, match=r"the step worker .* has ended"):
            worker.run_step(script, kwargs={"output": str(tmp_path / "ran")}, log=str(tmp_path / "mark.log"))
        assert time.monotonic() - started < 5
    finally:
        squatter.kill()
    assert not (tmp_path / "ran").exists()


NO_FORK = """
import errno, os
def refuse():
    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
os.fork = refuse
"""
REFUSED_OWNER = """
import sys
sys.path.insert(0, {scripts!r})
import worker
worker.claim()
for name in ("one", "two"):
    try:
        worker.run_step({script!r}, kwargs={{}}, log={log!r} + name)
    except worker.StepFailed as failure:
        print("failed:", failure, flush=True)
print("worker alive:", worker._Client.get().process.poll() is None, flush=True)
"""


def test_a_refused_fork_fails_that_step_and_the_worker_goes_on(tmp_path):
    """A per-user process limit (EAGAIN) refuses the fork: the step fails with its reason in
    its log; the worker does not die with it."""
    from conftest import SCRIPTS

    (tmp_path / "nofork.py").write_text(NO_FORK)
    script = step_file(tmp_path, "fine", """
        def main():
            pass
    """)
    code = REFUSED_OWNER.format(scripts=str(SCRIPTS), script=str(script), log=str(tmp_path / "fine.log"))
    env = {**{k: v for k, v in os.environ.items() if k != worker.ENV}, worker.PRELOAD_EXTRA: "nofork", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["failed: step fine failed: exit status 1; see its log " + str(tmp_path / f"fine.log{n}") for n in ("one", "two")]
    assert lines[2] == "worker alive: True"
    assert (tmp_path / "fine.logone").read_text().rstrip().endswith(
        "(warm worker: could not fork a process for the step (Resource temporarily unavailable))")
