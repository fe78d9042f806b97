"""Who may use the step worker (scripts/runtime/): the kernel keeps every other user out of
its room, the worker serves only callers with its token, and nothing a caller sends can
end or stall it."""

import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import runtime
from conftest import SCRIPTS, owning_a_worker
from runtime import client, protocol, room

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the step worker is Linux-only")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
NOBODY = 65534


@pytest.fixture(scope="module")
def owner():
    """A run's worker shared by this module's tests that leave it as they found it."""
    with pytest.MonkeyPatch.context() as patch:
        yield from owning_a_worker(patch)


@pytest.fixture
def fresh_owner(monkeypatch):
    """A worker of this test's own, for tests that change or break it."""
    yield from owning_a_worker(monkeypatch)


def the_worker():
    return client.Client.get().server(os.getcwd())


def step_file(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


MARK = """
    def main(output):
        open(output, "w").write("ran")
"""


def request_for(tmp_path, info, **extra) -> dict:
    script = step_file(tmp_path, "mark", MARK)
    return {"script": str(script), "kwargs": {"output": str(tmp_path / "ran")}, "log": str(tmp_path / "mark.log"),
            "threads": 1, "cwd": str(tmp_path), "env": {"set": {}, "unset": []}, "token": info["token"], **extra}


def worker_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_serves(tmp_path, name="fine"):
    script = step_file(tmp_path, name, MARK)
    runtime.run_step(script, kwargs={"output": str(tmp_path / name)}, log=str(tmp_path / f"{name}.log"))
    assert (tmp_path / name).read_text() == "ran"
    assert "(warm worker)" in (tmp_path / f"{name}.log").read_text()


# As another user: connect to the worker's socket, flood it with connections, take its
# name, and list its room. Prints what each attempt met.
PROBE = """
import errno, os, socket, sys
os.setgid({uid}); os.setuid({uid})
path = {path!r}
results = {{}}
def attempt(name, action):
    try:
        action()
        results[name] = "allowed"
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, str(exc.errno))
def connect():
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    finally:
        conn.close()
attempt("connect", connect)
codes = set()
for _ in range(2000):
    try:
        connect()
        codes.add("allowed")
    except OSError as exc:
        codes.add(errno.errorcode.get(exc.errno, str(exc.errno)))
results["flood"] = ",".join(sorted(codes))
def squat():
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(os.path.dirname(path), "squatted.sock"))
attempt("squat", squat)
attempt("list", lambda: os.listdir(os.path.dirname(path)))
print(repr(results))
"""


@as_root
def test_other_users_cannot_connect_flood_squat_or_look_and_steps_go_on(owner, tmp_path):
    """The room is 0700: the kernel answers every other user with EACCES, while the
    worker's own user is served as usual."""
    files, _info = the_worker()
    probe = subprocess.Popen([sys.executable, "-c", PROBE.format(uid=NOBODY, path=str(files.socket))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for index in range(3):  # the run goes on meanwhile
        assert_serves(tmp_path, f"during{index}")
    out, err = probe.communicate(timeout=120)
    assert eval(out) == {"connect": "EACCES", "flood": "EACCES", "squat": "EACCES", "list": "EACCES"}, err
    assert not (files.room / "squatted.sock").exists()


def test_the_token_is_in_no_name_listing_or_command_line(owner):
    """The name was the secret before, and /proc/net/unix lists every socket's name."""
    files, info = the_worker()
    token = info["token"]
    assert len(token) == 64 and token not in str(files.socket)
    listed = Path("/proc/net/unix").read_text()
    assert str(files.socket) in listed and token not in listed
    pid = info["pid"]
    assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert stat.S_IMODE(files.info.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.room.stat().st_mode) == 0o700


@pytest.mark.parametrize("token", [None, "0" * 64, "é", "\ud800", 12345, ["a"]], ids=repr)
def test_the_worker_serves_no_caller_without_the_token_and_lives(owner, tmp_path, token):
    """A missing, wrong, non-ASCII (which once raised TypeError in the worker and ended it),
    unencodable or non-string token: the caller is hung up on, nothing runs, the worker goes on."""
    files, info = the_worker()
    request = request_for(tmp_path, info)
    if token is None:
        del request["token"]
    else:
        request["token"] = token
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(files.socket))
        conn.sendall(json.dumps(request).encode() + b"\n")
        conn.settimeout(10)
        assert conn.recv(100) == b""
    time.sleep(0.3)
    assert not (tmp_path / "ran").exists()
    assert_serves(tmp_path)


@pytest.mark.parametrize("how", ["bytes after the request line", "a request over the size limit", "not JSON",
                                 "a JSON list", "deeply nested JSON"])
def test_malformed_requests_are_refused_and_the_worker_lives(owner, tmp_path, how):
    files, info = the_worker()
    line = json.dumps(request_for(tmp_path, info)).encode() + b"\n"
    payload = {
        "bytes after the request line": line + b"more",
        "a request over the size limit": b"{" + b" " * (protocol.MAX_REQUEST + 10) + b"}\n",
        "not JSON": b"not json\n",
        "a JSON list": b"[1, 2]\n",
        "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    }[how]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(files.socket))
        conn.settimeout(10)
        try:
            conn.sendall(payload)
            assert conn.recv(100) == b""
        except (BrokenPipeError, ConnectionResetError):
            pass  # hung up on before all was sent
    time.sleep(0.3)
    assert not (tmp_path / "ran").exists()
    assert_serves(tmp_path)


def test_an_authenticated_but_malformed_step_is_refused_with_a_reason(owner, tmp_path):
    files, info = the_worker()
    request = request_for(tmp_path, info, threads="two")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(files.socket))
        protocol.send(conn, request)
        assert list(protocol.messages(conn)) == [{"refused": "field 'threads' must be a positive integer"}]
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_a_dribbling_caller_stalls_nothing_and_is_cut_off(owner, tmp_path):
    """A caller that sends a byte now and then, never a whole request: other steps are
    served meanwhile, and its connection is closed after REQUEST_SECONDS."""
    files, _info = the_worker()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(files.socket))
    cut = threading.Event()

    def dribble():
        try:
            for _ in range(int(protocol.REQUEST_SECONDS * 4)):
                conn.sendall(b" ")
                time.sleep(0.5)
        except OSError:
            cut.set()

    started = time.monotonic()
    thread = threading.Thread(target=dribble)
    thread.start()
    time.sleep(0.5)
    served = time.monotonic()
    assert_serves(tmp_path)
    assert time.monotonic() - served < 5
    thread.join()
    assert cut.is_set() and time.monotonic() - started < protocol.REQUEST_SECONDS * 2
    conn.close()


def test_bytes_after_the_request_stop_the_step_and_cost_the_worker_nothing(owner, tmp_path):
    """The protocol allows nothing after the request: more bytes while the step runs stop
    it (a peek at them once kept the worker's loop spinning at full CPU)."""
    files, info = the_worker()
    assert_serves(tmp_path)  # the worker has finished starting
    script = step_file(tmp_path, "slow", """
        import os, time
        def main(started, output):
            open(started, "w").write(str(os.getpid()))
            time.sleep(3)
            open(output, "w").write("too late")
    """)
    request = {**request_for(tmp_path, info), "script": str(script),
               "kwargs": {"started": str(tmp_path / "pid"), "output": str(tmp_path / "out")}}
    before = worker_cpu_seconds(info["pid"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(files.socket))
        protocol.send(conn, request)
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.sendall(b"and more")
        time.sleep(2)
        assert worker_cpu_seconds(info["pid"]) - before < 0.5
    time.sleep(2)
    assert not (tmp_path / "out").exists()
    assert not Path(f"/proc/{(tmp_path / 'pid').read_text()}").exists()


def test_a_flood_of_connections_from_the_same_user_does_not_stop_the_steps(owner, tmp_path):
    files, _info = the_worker()
    stop = threading.Event()
    made = []

    def flood():
        while not stop.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                try:
                    conn.connect(str(files.socket))
                    made.append(1)
                except OSError:
                    pass

    threads = [threading.Thread(target=flood) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for index in range(5):
            assert_serves(tmp_path, f"flooded{index}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(made) > 100


def test_uids_beyond_2_31_are_read_unsigned():
    """Sites with AD or winbind ranges have uids >= 2**31; read as signed, they never matched."""

    class Peer:
        def getsockopt(self, level, option, size):
            assert (level, option) == (socket.SOL_SOCKET, socket.SO_PEERCRED)
            return struct.pack("iII", 4321, 2**31 + 7, 2**32 - 2)

    assert protocol.peer(Peer()) == (4321, 2**31 + 7)


# A process of the same user that took the worker's socket and wrote no description of
# its own: it counts the bytes it is sent.
SQUATTER = """
import socket
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind({path!r})
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


@pytest.mark.slow
def test_the_caller_sends_nothing_to_a_process_that_is_not_the_described_worker(fresh_owner, tmp_path):
    """The room describes one worker (its pid and start time); another process of the same
    user listening on its socket gets not a byte, and the step runs in a fresh process."""
    files, _info = the_worker()
    os.unlink(files.socket)
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER.format(path=str(files.socket))],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "listening"
        script = step_file(tmp_path, "mark", MARK)
        runtime.run_step(script, kwargs={"output": str(tmp_path / "ran")}, log=str(tmp_path / "mark.log"))
        output, _ = squatter.communicate(timeout=30)
    finally:
        squatter.kill()
    assert output.strip() == "0"
    last = (tmp_path / "mark.log").read_text().rstrip().splitlines()[-1]
    assert f"another of your processes (process {squatter.pid}), not by the worker its room describes" in last, last
    assert "(fresh process: " in last and (tmp_path / "ran").read_text() == "ran"


ENVIRONMENT_STEP = """
import json, os
def main(output):
    open(output, "w").write(json.dumps(dict(os.environ)))
"""


@pytest.mark.slow
def test_a_request_carries_only_the_environment_that_differs_from_the_worker(fresh_owner, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TEST_GONE", "set before the worker started")
    script = step_file(tmp_path, "environment", ENVIRONMENT_STEP)
    runtime.run_step(script, kwargs={"output": str(tmp_path / "before.json")}, log=str(tmp_path / "before.log"))
    monkeypatch.delenv("PIPELINE_TEST_GONE")
    monkeypatch.setenv("PIPELINE_TEST_CHANGED", "set after")
    sent = []
    send = protocol.send_request
    monkeypatch.setattr(protocol, "send_request", lambda conn, message, fds: (sent.append(message), send(conn, message, fds)))
    runtime.run_step(script, kwargs={"output": str(tmp_path / "after.json")}, log=str(tmp_path / "after.log"))
    (request,) = sent
    assert request["env"] == {"set": {"PIPELINE_TEST_CHANGED": "set after"}, "unset": ["PIPELINE_TEST_GONE"]}
    seen = json.loads((tmp_path / "after.json").read_text())
    assert seen["PIPELINE_TEST_CHANGED"] == "set after" and "PIPELINE_TEST_GONE" not in seen
    assert seen["PATH"] == os.environ["PATH"]
    assert all(seen[name] == value for name, value in runtime.STEP_ENV.items())
    assert (tmp_path / "after.log").read_text().rstrip().endswith("(warm worker)")


@pytest.mark.slow
def test_a_setting_libraries_read_at_import_gets_a_worker_of_its_own(fresh_owner, tmp_path, monkeypatch):
    """A fork cannot honour PyTensor's flags changed after the worker imported PyTensor: a
    caller with other flags has another fingerprint, and so another worker, started with them."""
    script = step_file(tmp_path, "environment", ENVIRONMENT_STEP)
    _files, first = the_worker()
    monkeypatch.setenv("PYTENSOR_FLAGS", "optimizer_verbose=False")
    runtime.run_step(script, kwargs={"output": str(tmp_path / "flags.json")}, log=str(tmp_path / "flags.log"))
    assert json.loads((tmp_path / "flags.json").read_text())["PYTENSOR_FLAGS"] == "optimizer_verbose=False"
    _files, second = the_worker()
    assert second["pid"] != first["pid"]
    assert (tmp_path / "flags.log").read_text().rstrip().endswith("(warm worker)")
    assert client.Client.get().environment_changes(second)["set"].get("PYTENSOR_FLAGS") is None


@pytest.mark.parametrize("problem", ["open to others", "a symbolic link", "another user's"])
def test_an_unsafe_room_is_refused(tmp_path, problem):
    parent = tmp_path / "base"
    parent.mkdir(mode=0o755)
    path = parent / "room"
    if problem == "open to others":
        path.mkdir(mode=0o700)
        path.chmod(0o755)
        words = "open to others (mode 0755)"
    elif problem == "a symbolic link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
        words = "a symbolic link"
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory away")
        path.mkdir(mode=0o700)
        os.chown(path, NOBODY, NOBODY)
        words = f"belongs to uid {NOBODY}"
    with pytest.raises(room.RoomUnusable, match=re.escape(words)):
        room.private_directory(parent, path, os.getuid())


def test_a_parent_others_may_rename_in_is_refused(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)  # writable by all, not sticky
    with pytest.raises(room.RoomUnusable, match="others may write to it and it is not sticky"):
        room.private_directory(parent, parent / "room", os.getuid())


def test_a_room_on_a_shared_filesystem_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(room, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(room.RoomUnusable, match="on a nfs4 filesystem, which other machines share"):
        room.private_directory(tmp_path, tmp_path / "room", os.getuid())


def test_without_a_usable_room_steps_run_fresh_and_say_why(owner, tmp_path, monkeypatch):
    def unusable():
        raise room.RoomUnusable("/tmp/pipeline-worker-0: open to others (mode 0777)")

    monkeypatch.setattr(client, "room", unusable)
    script = step_file(tmp_path, "mark", MARK)
    runtime.run_step(script, kwargs={"output": str(tmp_path / "ran")}, log=str(tmp_path / "mark.log"))
    last = (tmp_path / "mark.log").read_text().rstrip().splitlines()[-1]
    assert last.endswith("(fresh process: no private directory for the step worker: "
                         "/tmp/pipeline-worker-0: open to others (mode 0777))")


NO_FORK = """
import errno, os
def refuse():
    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
os.fork = refuse
"""
REFUSED_OWNER = """
import sys
sys.path.insert(0, {scripts!r})
import runtime
from runtime.client import Client
runtime.claim(0)
for name in ("one", "two"):
    try:
        runtime.run_step({script!r}, kwargs={{}}, log={log!r} + name)
    except runtime.StepFailed as failure:
        print("failed:", failure, flush=True)
print("worker alive:", all(p.poll() is None for p in Client.get().started.values()), flush=True)
"""


@pytest.mark.slow
def test_a_refused_fork_fails_that_step_and_the_worker_goes_on(tmp_path):
    """A per-user process limit (EAGAIN) refuses the fork: the step fails with its reason in
    its log; the worker does not die with it."""
    (tmp_path / "nofork.py").write_text(NO_FORK)
    script = step_file(tmp_path, "fine", "def main():\n    pass\n")
    code = REFUSED_OWNER.format(scripts=str(SCRIPTS), script=str(script), log=str(tmp_path / "fine.log"))
    env = {**{k: v for k, v in os.environ.items() if k not in (runtime.ENV, client.IDLE_ENV)},
           runtime.PRELOAD_EXTRA: "nofork", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["failed: step fine failed: exit status 1; see its log " + str(tmp_path / f"fine.log{n}") for n in ("one", "two")]
    assert lines[2] == "worker alive: True"
    assert (tmp_path / "fine.logone").read_text().rstrip().endswith(
        "(warm worker: could not fork a process for the step (Resource temporarily unavailable))")
