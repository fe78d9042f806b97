"""The caller's side of the step worker: Snakemake's `run:` blocks hand their steps here.

- `claim()`, when the Snakefile is parsed (every Snakemake process parses it): decide which
  worker this process uses. A Snakemake started by another on the same machine and in the
  same SLURM job (the steps of a grouped cluster submission) uses the enclosing run's;
  any other owns its run, and exports its identity (no secret: the room keeps the token).
  By default a run uses its user's shared worker for its project directory, which outlives
  the run by `worker.idle_minutes`; with 0, or inside a SLURM job, the run has a worker of
  its own that ends with it. Nothing is started here (but in a SLURM submission), so a run
  with nothing to do starts nothing.
- `start()`: make sure the worker is up, before the first step (`onstart`) or at the first.
- `run_step()`: find the worker in the room (or start it, under its lock), check that the
  process listening is that worker (the kernel's word: its user, process id and start
  time), send the step with the token, wait for its status. A worker that ends while
  running the step (the out-of-memory killer, a stray `kill`) costs only that step: it is
  run again in a fresh worker, then in a fresh Python process; outputs are written
  atomically, so a step is safe to redo. Where forking is unsafe, or the room unusable,
  the step runs in a fresh Python process, and its log says why.
- Ctrl-C (SIGINT to Snakemake): steps run in their own process groups, so the terminal's
  signal does not reach them; the handler installed by `claim()` hangs up on every
  running step (the worker then kills it) and kills fresh ones, then lets Snakemake stop.
"""

import contextlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from runtime import protocol
from runtime.environment import RUNTIME, STEP_ENV, WARM, fingerprint, unforkable_changes
from runtime.processes import alive, describe_status, kill_group, kill_leftovers, rusage_of, start_time
from runtime.room import Files, RoomUnusable, room, sweep, worker_key

ENV = "PIPELINE_WORKER"  # this run's identity, inherited by the Snakemakes it starts
IDLE_ENV = "PIPELINE_WORKER_IDLE_MINUTES"  # overrides the config's worker.idle_minutes
VERBOSE = "PIPELINE_WORKER_VERBOSE"
DEFAULT_IDLE_MINUTES = 15.0
START_SECONDS = 60.0  # for a new worker to listen
CONNECT_SECONDS = 10.0
STARTED_SECONDS = 600.0


class StepFailed(Exception):
    """A step ended unsuccessfully, or could not be handed over; the message says why."""


class Unavailable(Exception):
    """The warm path cannot serve this step: it runs in a fresh process; the message says why."""


class WorkerEnded(Exception):
    """The worker ended (or vanished) before it gave the step's status."""


def warm_available() -> bool:
    return sys.platform == "linux" and os.environ.get(WARM, "1") != "0"


def identity(pid: int) -> dict:
    return {"host": socket.gethostname(), "slurm_job": os.environ.get("SLURM_JOB_ID", ""), "pid": pid,
            "start": start_time(pid)}


def owner() -> dict | None:
    try:
        found = json.loads(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def idle_minutes(configured=None) -> float:
    """PIPELINE_WORKER_IDLE_MINUTES, else the config's value, else 15 (0: one worker per run)."""
    for value in (os.environ.get(IDLE_ENV), configured):
        if value is None or value == "":
            continue
        try:
            minutes = float(value)
        except (TypeError, ValueError):
            continue
        if minutes >= 0:
            return minutes
    return DEFAULT_IDLE_MINUTES


def claim(idle: float | None = None) -> None:
    """Called when the Snakefile is parsed: use an enclosing run's worker, or own this run's.
    `idle` is the config's worker.idle_minutes."""
    if not warm_available():
        return
    here = identity(os.getpid())
    enclosing = owner()
    if (
        enclosing
        and enclosing.get("host") == here["host"]
        and enclosing.get("slurm_job") == here["slurm_job"]
        and alive(enclosing.get("pid"), enclosing.get("start"))
    ):
        return
    minutes = idle_minutes(idle)
    # Inside a SLURM job the worker belongs to the job: it must not outlive it on the node.
    scope = "run" if minutes == 0 or here["slurm_job"] else "shared"
    # `run` tells this run from another claim of the same process (a test, an API caller).
    os.environ[ENV] = json.dumps({**here, "scope": scope, "idle_minutes": minutes, "run": secrets.token_hex(8)})
    _install_interrupt_handler()
    # A grouped SLURM submission runs each step as `srun snakemake ...`; the worker starts
    # here, in the submission's own process, so that it is up before the first step.
    if here["slurm_job"] and any(a.startswith("--target-jobs") for a in sys.argv):
        start()


def start(when: str = "") -> None:
    """Make sure this run's worker is up (no-op off the warm path, or in a nested Snakemake);
    `when` is said with PIPELINE_WORKER_VERBOSE set."""
    mine = owner()
    if not warm_available() or not mine or mine.get("pid") != os.getpid():
        return
    with contextlib.suppress(Unavailable):  # each step will say why in its log
        Client.get().server(os.getcwd(), when)


def _install_interrupt_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or getattr(previous, "stops_steps", False):
        return

    def interrupted(number, frame):
        # Not Client.get(): its lock may be held by the very code this signal interrupted.
        client = Client._instance
        if client is not None:
            client.cancel_all()
        if callable(previous):
            previous(number, frame)
        else:
            signal.default_int_handler(number, frame)

    interrupted.stops_steps = True
    signal.signal(signal.SIGINT, interrupted)


def scope_of(mine: dict) -> dict:
    if mine.get("scope") == "run":
        return {"kind": "run", "owner": mine["pid"], "owner_start": mine["start"], "run": mine.get("run")}
    return {"kind": "shared"}


class Client:
    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "Client":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self.start_lock = threading.Lock()
        self.started: dict[str, subprocess.Popen] = {}  # workers this process started, by key
        self.worker_env: dict[int, dict] = {}
        self.fresh_reason: str | None = None  # set once a worker has said forking is unsafe
        self.said: set[str] = set()
        self.flight_lock = threading.Lock()
        self.in_flight: set = set()  # connections and fresh processes of running steps
        self.interrupted = False

    # ----------------------------------------------------------------------------------
    # Finding or starting the worker

    def files(self, project: str) -> Files:
        mine = owner()
        if mine is None:
            raise Unavailable("no worker was claimed (the Snakefile's common.smk calls runtime.claim())")
        try:
            where = room()
        except RoomUnusable as exc:
            raise Unavailable(f"no private directory for the step worker: {exc}") from None
        project = os.path.realpath(project)
        key = worker_key(project, fingerprint(os.environ, project), scope_of(mine))
        return Files(where, key)

    def server(self, project: str, when: str = "") -> tuple[Files, dict]:
        files = self.files(project)
        info = self.live(files)
        if info is not None:
            return files, info
        try:
            with self.start_lock, files.locked() as held:
                if not held:
                    raise Unavailable(f"another process holds {files.lock} for over 2 minutes")
                info = self.live(files) or self.launch(files, project, when)
        except OSError as exc:
            raise Unavailable(f"the step worker could not be started ({exc})") from exc
        return files, info

    def live(self, files: Files) -> dict | None:
        started = self.started.get(files.key)
        if started is not None and started.poll() is not None:  # one this process started has ended (and is reaped)
            del self.started[files.key]
        info = files.read_info()
        if info and alive(info.get("pid"), info.get("start")) and files.socket.exists():
            return info
        return None

    def launch(self, files: Files, project: str, when: str) -> dict:
        """Start a worker (the caller holds its lock) and wait until it listens."""
        sweep(files.room)
        stale = files.read_info()
        files.remove(stale.get("pid") if stale else None)
        with contextlib.suppress(FileNotFoundError):
            files.socket.unlink()  # a dead worker's, or a half-started one's
        mine = owner()
        scope = scope_of(mine)
        minutes = float(mine.get("idle_minutes", DEFAULT_IDLE_MINUTES))
        ready_r, ready_w = os.pipe()
        log_fd = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        setup = {"room": str(files.room), "key": files.key, "token": secrets.token_hex(32), "scope": scope,
                 "idle_seconds": minutes * 60, "project": os.path.realpath(project), "ready_fd": ready_w}
        try:
            process = subprocess.Popen(
                [sys.executable, str(RUNTIME / "__main__.py"), "serve"],
                stdin=subprocess.PIPE, stdout=log_fd, stderr=log_fd, env={**os.environ, **STEP_ENV},
                # It imports in the project directory, as a fresh step would (a matplotlibrc there).
                pass_fds=[ready_w], cwd=project,
                # Its own session: a Ctrl-C in the terminal or the end of the terminal's
                # session is not for it (running steps are stopped through their callers).
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
            os.close(ready_w)
        try:
            process.stdin.write(json.dumps(setup).encode())
            process.stdin.close()
            ready = self._wait_until_listening(ready_r, process)
        finally:
            os.close(ready_r)
        if not ready:
            process.kill()
            process.wait()
            last = [line for line in files.log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            raise Unavailable(f"the step worker did not start ({last[0] if last else 'no message'}; see {files.log})")
        self.started[files.key] = process
        if os.environ.get(VERBOSE):
            said = f" {when}" if when else ""
            print(f"step worker: started{said} (process {process.pid}, {scope['kind']} scope) with {sys.executable}",
                  file=sys.stderr)
        return files.read_info()

    @staticmethod
    def _wait_until_listening(ready_r: int, process: subprocess.Popen) -> bool:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            readable, _, _ = select.select([ready_r], [], [], 0.2)
            if readable:
                return os.read(ready_r, 64).startswith(b"listening")
            if process.poll() is not None:
                return False
        return False

    def connect(self, files: Files, info: dict) -> socket.socket:
        """A connection to the worker the room describes, checked to be it before anything is sent."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(CONNECT_SECONDS)
            try:
                conn.connect(str(files.socket))
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                conn.close()
                raise WorkerEnded(f"the step worker (process {info['pid']}) closed its socket") from exc
            except (BlockingIOError, TimeoutError) as exc:  # its queue of connections is full
                conn.close()
                if time.monotonic() > deadline:
                    raise Unavailable(f"the step worker did not accept within {CONNECT_SECONDS:.0f} s") from exc
                time.sleep(0.01)
        pid, uid = protocol.peer(conn)
        if uid != os.getuid() or pid != info["pid"] or start_time(pid) != info["start"]:
            conn.close()
            who = f"another user, {_user(uid)}" if uid != os.getuid() else "another of your processes"
            raise Unavailable(f"the step worker's socket is held by {who} (process {pid}), not by the worker its "
                              f"room describes (process {info['pid']}); nothing was sent to it")
        # Until the step has started: a worker (or its zygote compiling the model) that
        # takes longer than this is given up on, and the step runs in a fresh process.
        conn.settimeout(STARTED_SECONDS)
        return conn

    def environment_changes(self, info: dict) -> dict:
        """What the worker must change in a step's environment: the variables whose value
        differs from the worker's own (read once from /proc, which only its user can)."""
        pid = info["pid"]
        if pid not in self.worker_env:
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError as exc:
                raise WorkerEnded(f"the step worker (process {pid}) ended") from exc
            self.worker_env[pid] = dict(item.split("=", 1) for item in raw.decode(errors="surrogateescape").split("\0")
                                        if "=" in item)
        theirs = self.worker_env[pid]
        mine = {**os.environ, **STEP_ENV}
        return {"set": {name: value for name, value in mine.items() if theirs.get(name) != value},
                "unset": sorted(name for name in theirs if name not in mine)}

    # ----------------------------------------------------------------------------------
    # Running a step

    def run(self, request: dict, project: str) -> tuple[dict, str]:
        """The step's result from a worker, and how it ran; Unavailable if it must run fresh."""
        notes = []
        for _attempt in range(2):
            files, info = self.server(project)
            try:
                result = self.exchange(files, info, request)
            except WorkerEnded as ended:
                notes.append(str(ended))
                continue
            except protocol.BadRequest as exc:
                raise Unavailable(str(exc)) from exc
            except OSError as exc:
                raise Unavailable(f"the step worker could not be reached ({exc})") from exc
            how = "warm worker"
            mine = owner()
            if mine and mine.get("pid") != os.getpid():
                how += ", called from a Snakemake process of its own"
            if "error" in result:
                how += f": {result['error']}"
            if notes:
                how += f", run again after {'; '.join(notes)}"
            self._say_ready(files)
            return result, how
        if all("before starting" in note or "closed its socket" in note for note in notes):
            # A worker that dies before it can start anything (while it imports, say) would
            # cost every later step two launches: this run's steps run fresh from now on.
            self.fresh_reason = f"fresh process: {'; '.join(notes)}"
        raise Unavailable(f"{'; '.join(notes)}: the step worker ended twice while running this step")

    def exchange(self, files: Files, info: dict, request: dict) -> dict:
        conn = self.connect(files, info)
        changes = self.environment_changes(info)
        unsafe = unforkable_changes(changes)
        if unsafe:
            conn.close()
            raise Unavailable(f"{', '.join(unsafe)} differ from the worker's, and libraries may read them at import")
        started, result = None, None
        with self.flying(conn):
            protocol.send_request(conn, {**request, "env": changes, "token": info["token"], "umask": umask()}, [1, 2])
            try:
                for message in protocol.messages(conn):
                    if "started" not in message:
                        result = message
                        break
                    started = message
                    conn.settimeout(None)  # a step may run for hours
            except TimeoutError as exc:
                conn.close()  # the worker stops the step if it starts after all
                raise Unavailable(f"the step worker did not start the step within {STARTED_SECONDS:.0f} s") from exc
            except (OSError, ValueError):
                pass  # the worker went away mid-answer: as if it had said nothing
        if self.interrupted:
            raise StepFailed("the step was stopped: Snakemake was interrupted (SIGINT)")
        if result is None:
            where = "while running this step" if started else "before starting this step"
            if started:
                kill_leftovers(int(started["started"]), int(started["start"] or 0))
            raise WorkerEnded(f"the step worker (process {info['pid']}) ended {where}")
        if "fresh" in result:
            self.fresh_reason = f"fresh process: {result['fresh']}"
            self._say_once(f"step worker: {result['fresh']}; every step of this run runs in a fresh Python process instead")
            raise Unavailable(result["fresh"])
        if "refused" in result:
            raise Unavailable(f"the step worker refused the step: {result['refused']}")
        return result

    @contextlib.contextmanager
    def flying(self, item):
        with self.flight_lock:
            if self.interrupted:
                raise StepFailed("the step was not started: Snakemake was interrupted (SIGINT)")
            self.in_flight.add(item)
        try:
            yield
        finally:
            with self.flight_lock:
                self.in_flight.discard(item)

    def cancel_all(self) -> None:
        """Stop every running step: hang up on warm ones (their worker kills them), kill fresh ones."""
        self.interrupted = True
        for item in list(self.in_flight):
            with contextlib.suppress(OSError):
                if isinstance(item, socket.socket):
                    item.shutdown(socket.SHUT_RDWR)
                else:
                    kill_group(item.pid)

    def run_fresh(self, request: dict) -> dict:
        """The step in a new Python process (its own process group): the same code path."""
        process = subprocess.Popen(
            [sys.executable, str(RUNTIME / "__main__.py"), "execute"],
            stdin=subprocess.PIPE, env={**os.environ, **STEP_ENV}, process_group=0,
        )
        with self.flying(process):
            with contextlib.suppress(BrokenPipeError):  # it died at once: its status says how
                process.stdin.write(json.dumps({**request, "caller": os.getpid()}).encode())
                process.stdin.close()
            # Seen first, reaped after (see runtime/steps.py): what the step left running in
            # its group is killed while the group's id is surely still its own.
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        kill_group(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if self.interrupted:
            raise StepFailed("the step was stopped: Snakemake was interrupted (SIGINT)")
        return {"status": process.returncode, "rusage": rusage_of(usage)}

    def _say_once(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            print(message, file=sys.stderr, flush=True)

    def _say_ready(self, files: Files) -> None:
        if os.environ.get(VERBOSE) and files.key in self.started and files.key not in self.said:
            info = files.read_info() or {}
            if info.get("state") == "ready":
                self.said.add(files.key)
                print(f"step worker: ready in {info['preload_seconds']:.2f} s", file=sys.stderr, flush=True)


def umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return 0o022


def _user(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def fresh_reason() -> str | None:
    """Why this step runs in a fresh process, or None to send it to the warm worker."""
    if sys.platform != "linux":
        return f"fresh process: the warm worker is Linux-only ({sys.platform})"
    if os.environ.get(WARM, "1") == "0":
        return f"fresh process: {WARM}=0"
    if owner() is None:
        return "fresh process: no worker was claimed (the Snakefile's common.smk calls runtime.claim())"
    return Client.get().fresh_reason


def run_step(script: str | Path, *, kwargs: dict, log: str, threads: int = 1, cwd: str | None = None,
             warm: dict | None = None) -> None:
    """Run the step file's main(**kwargs), its output in `log`; raise StepFailed if it fails.

    `cwd` is the working directory the step's relative paths are relative to (default: this
    process's): Snakemake's own, recorded when the workflow was read, since a shadow rule
    running in another thread may change the process's meanwhile. `warm` names a hook that
    the worker runs before forking the step (runtime/compiled.py)."""
    step = Path(script).stem
    cwd = cwd or os.getcwd()
    log_path = os.path.join(cwd, log)  # messages name `log` as given
    request = {"script": os.path.join(cwd, script), "kwargs": kwargs, "log": log_path, "threads": threads, "cwd": cwd}
    mine = owner()
    if mine and mine.get("scope") == "shared":
        request["idle_seconds"] = float(mine.get("idle_minutes", DEFAULT_IDLE_MINUTES)) * 60
    if warm:
        request["warm"] = warm
    started = time.perf_counter()
    how = fresh_reason()
    if how is None:
        try:
            result, how = Client.get().run(request, cwd)
        except Unavailable as exc:
            how = f"fresh process: {exc}"
    if how.startswith("fresh process"):
        result = Client.get().run_fresh({key: value for key, value in request.items() if key != "warm"})
    wall = time.perf_counter() - started
    usage = result.get("rusage")
    line = f"step {step}: {describe_status(result['status'])}, wall {wall:.3f} s"
    if usage:
        line += f", CPU {usage['cpu']:.3f} s, peak RSS {usage['maxrss_mb']:.0f} MB"
    try:
        with open(log_path, "a") as handle:
            handle.write(f"{line} ({how})\n")
    except OSError as exc:
        raise StepFailed(f"step {step}: its log {log} cannot be written ({exc.strerror}); {line}") from exc
    if result["status"] != 0:
        raise StepFailed(f"step {step} failed: {describe_status(result['status'])}; see its log {log}")
