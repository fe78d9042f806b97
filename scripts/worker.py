"""Warm steps: every rule's `main()` runs in a process forked from a worker that has already
imported the numerical stack, so a step costs its own work, not a Python start-up.

Why this design (measurements in docs/speed.md): a fresh Python process spends about 2.5 s
importing PyMC, ArviZ, xarray and matplotlib; most steps then work for 0.1-0.5 s. Here the
stack is imported once per Snakemake run, by a worker process, and each step is a `fork()`
of it: ~10 ms to start, its own address space (a crash or an out-of-memory kill ends that
step only, and its memory is returned when it ends), and the very same code path as a
plain process, so results are bitwise equal (tests/test_worker.py).

The pieces, in the order a run meets them:
- `claim()`, when the Snakefile is parsed (every Snakemake process parses it): decide whose
  worker this process uses. A Snakemake started by another Snakemake on the same machine
  and in the same SLURM job (the steps of a grouped cluster submission) shares the
  enclosing one's worker, if that one has started it; any other becomes an owner, with a
  secret of its own. Nothing is started here (but in a SLURM submission), so a run with
  nothing to do imports nothing.
- `start()`: the owner starts its worker, before its first step (`onstart`) or at the first.
- `run_step()`, called by each rule's `run:` block: check that the process listening is
  the worker this run started (same user, its process id), send it the step, and wait
  for the step's exit status. It falls back to a fresh Python process where forking is
  unsafe or cannot honour the step's environment, and says why in the step's log.
- `serve()`: the worker. It binds its socket first (callers queue while it imports), then
  imports the stack, then forks one child per request from its own user that knows the
  owner's secret. It kills its children and exits as soon as the owning Snakemake process
  is gone (even after `kill -9`), and kills a step whose caller went away (Ctrl-C), so
  that no step finishes writing after Snakemake has stopped.
- `execute()`: one step, in the forked child or in a fresh Python process: the step's
  log, its `main(**kwargs)`, and the exit status. Whatever happens in it (an exception
  anywhere, `sys.exit`, `KeyboardInterrupt`) ends as that step's failure, with its log.

Security (docs/cluster.md, "Shared nodes"): the socket is in Linux's abstract namespace,
which every user of the machine can reach, and whose bound names anyone can list
(/proc/net/unix). So the kernel's word decides: a caller sends nothing before it has
checked, with SO_PEERCRED, that the listener is its user's worker process (its pid and
start time); the worker serves only its own user, and only callers that present the
owner's secret, which only the owner's environment carries (/proc/PID/environ is
readable by its user alone; the name, random too, cannot be guessed before the worker
binds it); and a request carries only the environment variables that differ from the
worker's, not the whole environment.

Off Linux (macOS, Windows), or with PIPELINE_WARM=0, every step runs in a fresh Python
process: the same results, a few seconds slower per step.
"""

import contextlib
import gc
import hmac
import json
import os
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ENV = "PIPELINE_WORKER"  # the owner's identity and secret, inherited by nested Snakemakes
WARM = "PIPELINE_WARM"  # "0": every step in a fresh Python process (slower, same results)
PRELOAD_EXTRA = "PIPELINE_PRELOAD"  # more modules for the worker to import, comma-separated
SCRIPTS = Path(__file__).resolve().parent

# Imported by the worker before it forks. Only third-party modules: the project's own are
# imported by each step, so that an edited helper is always the one that runs.
PRELOAD = (
    "numpy",
    "scipy.special",
    "scipy.stats",
    "pandas",
    "xarray",
    "netCDF4",
    "matplotlib.pyplot",
    "arviz",
    "arviz_stats",
    "pymc",
    "nutpie",
    "graphviz",
)

# Set before numpy is imported, in the worker and in a fresh process alike. A process must
# not fork while other threads run (they may hold locks the child then waits on forever):
# BLAS/OpenMP pools get one thread, and Arrow's allocator (pandas imports pyarrow) no
# background thread. The same setting on both paths keeps their results bitwise equal.
# Sampling's parallelism is nutpie's chains, which a step starts after the fork.
STEP_ENV = {
    **{
        name: "1"
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
    },
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}

# Variables a fork of the worker may take over from its caller: those of the scheduler and
# of the workflow itself, which no library reads when it is imported. Any other difference
# between a step's environment and the worker's (PyTensor's or Numba's flags, thread
# counts, the locale, TMPDIR, LD_PRELOAD, ...) may have been read by the libraries the
# worker imported long ago, so a fork cannot honour it: that step runs in a fresh process.
FORK_SAFE_PREFIXES = ("SLURM_", "SLURMD_", "SRUN_", "PMI_", "PMIX_", "OMPI_", "PIPELINE_", "SNAKEMAKE", "PYTEST_")
FORK_SAFE_NAMES = {"OLDPWD", "PWD", "SHLVL", "_"}


class StepFailed(Exception):
    """A step ended unsuccessfully, or could not be handed over; the message says why."""


# --------------------------------------------------------------------------------------
# Who owns the worker


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, a unique identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _identity(pid: int) -> dict:
    return {
        "host": socket.gethostname(),
        "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
        "pid": pid,
        "start": _start_time(pid),
    }


def _owner() -> dict | None:
    try:
        owner = json.loads(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def _alive(process: dict, pid_key: str = "pid", start_key: str = "start") -> bool:
    return process.get(start_key) is not None and _start_time(process[pid_key]) == process[start_key]


def warm_available() -> bool:
    return sys.platform == "linux" and os.environ.get(WARM, "1") != "0"


def claim() -> None:
    """Called when the Snakefile is parsed: share an enclosing Snakemake's worker, or own one.

    Shared only within one machine and one SLURM job, and only once that worker has been
    started (its process id is then part of the identity, so a caller knows whom to
    trust): a Snakemake on the login node exports its identity into the jobs it submits,
    and those must not use its worker.
    """
    if not warm_available():
        return
    owner = _owner()
    here = _identity(os.getpid())
    if (
        owner
        and owner.get("host") == here["host"]
        and owner.get("slurm_job") == here["slurm_job"]
        and _alive(owner)
        and owner.get("worker")
        and _alive(owner, "worker", "worker_start")
    ):
        return
    here.update(uid=os.getuid(), secret=secrets.token_hex(16))
    os.environ[ENV] = json.dumps(here)
    # A grouped SLURM submission runs each step as `srun snakemake ...`; the worker must
    # start here, in the submission's own process, so that it outlives each step and its
    # process id is in the environment the steps inherit.
    if here["slurm_job"] and any(a.startswith("--target-jobs") for a in sys.argv):
        start()


def start(when: str = "") -> None:
    """Start this process's worker now, if it owns one (no-op otherwise, or if started);
    `when` is said with PIPELINE_WORKER_VERBOSE set."""
    owner = _owner()
    if warm_available() and owner and owner.get("pid") == os.getpid() and not owner.get("worker"):
        if when and os.environ.get("PIPELINE_WORKER_VERBOSE"):
            print(f"step worker: started {when}", file=sys.stderr)
        _Client.get().ensure_worker()


def _address(owner: dict) -> str:
    # Linux's abstract socket namespace: no file to clean up, no path-length limit. The
    # secret makes the name unguessable, so no other user can take it first.
    return f"\0pipeline-worker-{owner['uid']}-{owner['secret']}"


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket, from the kernel."""
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def _user(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


# --------------------------------------------------------------------------------------
# The caller's side: Snakemake's run: blocks


class _Client:
    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "_Client":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.start_lock = threading.Lock()
        self.worker_env: dict | None = None
        self.fresh_reason: str | None = None  # set once the worker has said forking is unsafe

    def ensure_worker(self) -> None:
        """Start the owner's worker and record its process id in the owner's identity."""
        owner = _owner()
        with self.start_lock:
            if self.process is not None or owner.get("worker"):
                return
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve"],
                stdin=subprocess.DEVNULL,
                env={**os.environ, **STEP_ENV},
                # In Snakemake's process group, so that a Ctrl-C in the terminal reaches the
                # steps as it reached script jobs.
                start_new_session=False,
            )
            owner.update(worker=self.process.pid, worker_start=_start_time(self.process.pid))
            os.environ[ENV] = json.dumps(owner)

    def expected_worker(self, owner: dict) -> int:
        if not owner.get("worker"):
            if owner.get("pid") != os.getpid():
                raise StepFailed("the step worker of the enclosing Snakemake was never started; rerun, or set PIPELINE_WARM=0")
            self.ensure_worker()
            owner = _owner()
        return owner["worker"]

    def connect(self) -> socket.socket:
        """A connection to this run's worker, checked to be it before anything is sent."""
        owner = _owner()
        worker_pid = self.expected_worker(owner)
        owner = _owner()
        deadline = time.monotonic() + 60
        while True:
            # Checked before each attempt: a dead worker's name is free for anyone to take.
            if self.process is not None and self.process.poll() is not None:
                raise StepFailed(f"the step worker (process {worker_pid}) has ended "
                                 f"({describe_status(self.process.returncode)}); see the messages above")
            if not _alive(owner, "worker", "worker_start"):
                raise StepFailed(f"the step worker (process {worker_pid}) has ended")
            if time.monotonic() > deadline:
                raise StepFailed("the step worker did not answer within 60 s")
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(10)  # a listener whose backlog is full would block connect() for ever
            try:
                conn.connect(_address(owner))
                conn.settimeout(None)
                break
            except (ConnectionRefusedError, FileNotFoundError, TimeoutError, BlockingIOError):
                conn.close()
            time.sleep(0.01)
        pid, uid = _peer(conn)
        # The worker by its pid and its start time: a pid alone could have been reused.
        if uid != os.getuid() or pid != worker_pid or _start_time(pid) != owner.get("worker_start"):
            conn.close()
            who = f"another user, {_user(uid)}" if uid != os.getuid() else "another of your processes"
            raise StepFailed(
                f"the step worker's socket is held by {who} (process {pid}), not by this run's worker "
                f"(process {worker_pid}); nothing was sent to it. Stop that process, or set PIPELINE_WARM=0"
            )
        return conn

    def environment_changes(self, owner: dict) -> dict:
        """What the worker must change in a step's environment: the variables whose value
        differs from the worker's own (read once from /proc, which only its user can)."""
        if self.worker_env is None:
            raw = Path(f"/proc/{owner['worker']}/environ").read_bytes()
            self.worker_env = dict(item.split("=", 1) for item in raw.decode(errors="surrogateescape").split("\0") if "=" in item)
        # The owner's identity is left as the worker has it (it gained the worker's pid
        # after the worker started): a step has no use for it.
        mine = {**os.environ, **STEP_ENV, ENV: self.worker_env.get(ENV, "")}
        return {
            "set": {name: value for name, value in mine.items() if self.worker_env.get(name) != value},
            "unset": sorted(name for name in self.worker_env if name not in mine),
        }


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _lines(conn: socket.socket):
    buffer = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def describe_status(status: int) -> str:
    """An exit status of os.waitstatus_to_exitcode() in words."""
    if status >= 0:
        return f"exit status {status}"
    name = signal.Signals(-status).name
    hint = " (out of memory?)" if name == "SIGKILL" else ""
    return f"killed by {name}{hint}"


def unforkable_changes(changes: dict) -> list[str]:
    """The variables among `changes` that a fork of the worker cannot honour."""
    names = [*changes["set"], *changes["unset"]]
    return sorted(name for name in names
                  if not name.startswith(FORK_SAFE_PREFIXES) and name not in FORK_SAFE_NAMES and name not in STEP_ENV)


def run_step(script: str | Path, *, kwargs: dict, log: str, threads: int = 1, cwd: str | None = None) -> None:
    """Run the step file's main(**kwargs), its output in `log`; raise StepFailed if it fails.

    `cwd` is the working directory the step's relative paths are relative to (default: this
    process's): Snakemake's own, recorded when the workflow was read, since a shadow rule
    running in another thread may change the process's meanwhile."""
    step = Path(script).stem
    cwd = cwd or os.getcwd()
    log_path = os.path.join(cwd, log)  # messages name `log` as given
    request = {
        "script": os.path.join(cwd, script),
        "kwargs": kwargs,
        "log": log_path,
        "threads": threads,
        "cwd": cwd,
    }
    started = time.perf_counter()
    how = _fresh_reason()
    if how is None:
        client = _Client.get()
        conn = client.connect()
        owner = _owner()
        changes = client.environment_changes(owner)
        unsafe = unforkable_changes(changes)
        if unsafe:
            conn.close()
            how = f"fresh process: {', '.join(unsafe)} differ from the worker's, and libraries may read them at import"
        else:
            with conn:
                _send(conn, {**request, "env": changes, "secret": owner["secret"]})
                result = {"status": -signal.SIGKILL, "rusage": None}
                for message in _lines(conn):
                    result = message
            if "fresh" in result:  # the worker cannot fork safely: it said so once, on its stderr
                client.fresh_reason = how = f"fresh process: {result['fresh']}"
            elif "error" in result:  # the worker could not start the step (a fork refused)
                how = f"warm worker: {result['error']}"
            else:
                caller = "" if owner["pid"] == os.getpid() else ", called from a Snakemake process of its own"
                how = f"warm worker{caller}"
    if how.startswith("fresh process"):
        result = _run_fresh(request)
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


def _fresh_reason() -> str | None:
    """Why this step runs in a fresh process, or None to send it to the warm worker."""
    if sys.platform != "linux":
        return f"fresh process: the warm worker is Linux-only ({sys.platform})"
    if os.environ.get(WARM, "1") == "0":
        return f"fresh process: {WARM}=0"
    if _owner() is None:
        return "fresh process: no worker was claimed (the Snakefile's common.smk calls worker.claim())"
    return _Client.get().fresh_reason


def _rusage_of(usage) -> dict:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS. It includes the worker's pages
    # the step shares.
    kilobytes = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return {"cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": kilobytes / 1024}


def _run_fresh(request: dict) -> dict:
    """The step in a new Python process: no worker, the same code path (`execute`)."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "execute"],
        stdin=subprocess.PIPE,
        env={**os.environ, **STEP_ENV},
    )
    process.stdin.write(json.dumps(request).encode())
    process.stdin.close()
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return {"status": process.returncode, "rusage": _rusage_of(usage)}
    return {"status": process.wait(), "rusage": None}  # Windows: no resource usage


# --------------------------------------------------------------------------------------
# The worker


def _preload() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    extra = [name.strip() for name in os.environ.get(PRELOAD_EXTRA, "").split(",") if name.strip()]
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a step that needs it will say so itself
            print(f"step worker: cannot preload {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        _warm_up()
    except Exception as exc:  # a cold first step is slower, not wrong
        print(f"step worker: warm-up skipped: {type(exc).__name__}: {exc}", file=sys.stderr)


def _warm_up() -> None:
    """Pay once what every step would pay on its first use, before any fork.

    The first model compiled in a process takes ~0.7 s longer than the next (Numba and
    PyTensor set themselves up), and the first figure loads fonts. Nothing here samples:
    nutpie's sampler starts threads, and a process must not fork with threads running.
    Compiling leaves no state that changes a later result (tests/test_worker.py).
    """
    import importlib.util
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    import nutpie
    import pymc as pm

    # The sampling step compiles with these callbacks: warm up the same path. Loaded under
    # a private name, so that each step still imports the file as it is on disk.
    spec = importlib.util.spec_from_file_location("_warm_up_nutpie_callbacks", SCRIPTS / "nutpie_callbacks.py")
    callbacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(callbacks)
    callbacks.install()
    with pm.Model() as model:
        p = pm.Beta("p", 1.0, 1.0, shape=2)
        pm.Binomial("y", n=np.array([3, 4]), p=p, observed=np.array([1, 2]))
    nutpie.compile_pymc_model(model)
    pm.draw(pm.Binomial.dist(n=3, p=0.5, shape=2), random_seed=0)
    figure, axis = plt.subplots()
    axis.plot([0, 1], [0, 1], label="warm-up")
    axis.legend()
    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)


def other_threads() -> list[str]:
    """Names of this process's threads other than the calling one (from the kernel, so
    native threads of OpenMP, MKL or TBB count as well as Python's)."""
    names = []
    for task in sorted(os.listdir("/proc/self/task")):
        if int(task) != threading.get_native_id():
            try:
                names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
            except OSError:  # it ended meanwhile
                continue
    return names


def _set_parent_death_signal() -> None:
    """Linux: this process gets SIGKILL when its parent (the worker) exits."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _read_request(conn: socket.socket) -> dict | None:
    conn.settimeout(10)
    buffer = b""
    while not buffer.endswith(b"\n"):
        chunk = conn.recv(1 << 20)
        if not chunk:
            return None
        buffer += chunk
    conn.settimeout(None)
    request = json.loads(buffer)
    return request if isinstance(request, dict) else None


def serve() -> None:
    owner = _owner()
    verbose = bool(os.environ.get("PIPELINE_WORKER_VERBOSE"))
    if verbose:
        print(f"step worker: starting for Snakemake process {owner['pid']} with {sys.executable}", file=sys.stderr)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(owner))
    except OSError as exc:
        # Only its owner starts a worker, under a secret name: someone else holds it.
        print(f"step worker: cannot listen on its socket ({exc.strerror}): another process holds the name", file=sys.stderr)
        sys.exit(1)
    listener.listen(256)
    # The terminal's Ctrl-C is for the steps (they share Snakemake's process group);
    # the worker ends when its owner does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        owner_fd = os.pidfd_open(owner["pid"])
    except (OSError, AttributeError):
        owner_fd = None
    if not _alive(owner):
        return
    started = time.perf_counter()
    _preload()
    threads = other_threads()
    unsafe = None
    if threads:
        unsafe = (
            f"{len(threads)} other thread(s) ran in the worker after preloading ({', '.join(threads)}), "
            f"so forking it could deadlock a step"
        )
        print(f"step worker: {unsafe}; every step of this run runs in a fresh Python process instead", file=sys.stderr)
    # Objects that exist now live as long as the worker: take them out of the collector's
    # view, so that no child's collection writes to (and so copies) their pages.
    gc.collect()
    gc.freeze()
    if verbose:
        print(f"step worker: ready in {time.perf_counter() - started:.2f} s", file=sys.stderr)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "reap")
    if owner_fd is not None:
        selector.register(owner_fd, selectors.EVENT_READ, "owner")
    # A running step's pid -> the connection to its caller (None once the caller has gone).
    children: dict[int, socket.socket | None] = {}

    def stop_all():
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Leave at once: tearing down an interpreter that holds PyMC and Numba takes
        # seconds, during which this process would hold the terminal's output stream
        # open (a `snakemake ... | tee` would wait for it).
        sys.stderr.flush()
        os._exit(0)

    while True:
        events = selector.select(timeout=None if owner_fd is not None else 1.0)
        if owner_fd is None and not _alive(owner):
            stop_all()
        for key, _ in events:
            if key.data == "owner":
                stop_all()
            if key.data == "accept":
                conn, _ = listener.accept()
                request = _accepted_request(conn, owner)
                if request is None:
                    conn.close()
                    continue
                if unsafe:
                    with contextlib.suppress(OSError):
                        _send(conn, {"fresh": unsafe})
                    conn.close()
                    continue
                try:
                    pid = os.fork()
                except OSError as exc:  # a per-user process limit, memory: this step fails, not the worker
                    with contextlib.suppress(OSError):
                        _send(conn, {"status": 1, "rusage": None, "error": f"could not fork a process for the step ({exc.strerror})"})
                    conn.close()
                    continue
                if pid == 0:
                    _in_child(request, conn, [listener, wake_r, wake_w, owner_fd, selector, *children.values()])
                children[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            elif key.data == "reap":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(children, selector)
            elif key.data != "owner":
                # The caller closed its end (Snakemake stopped the job): stop the step. In the
                # same batch of events the step may have ended and been reaped already (its
                # connection then closed): nothing is left to stop.
                pid = key.data
                if children.get(pid) is not key.fileobj:
                    continue
                try:
                    gone = not key.fileobj.recv(1, socket.MSG_PEEK)
                except OSError:
                    gone = True
                if gone:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(key.fileobj)
                    key.fileobj.close()
                    children[pid] = None


def _accepted_request(conn: socket.socket, owner: dict) -> dict | None:
    """The request of a caller of this worker's user that knows the owner's secret, or None."""
    _pid, uid = _peer(conn)
    if uid != os.getuid():
        return None
    try:
        request = _read_request(conn)
    except (OSError, ValueError, RecursionError):
        return None
    if request is None or not hmac.compare_digest(str(request.get("secret", "")), owner["secret"]):
        return None
    return request


def _in_child(request: dict, conn: socket.socket, inherited: list) -> None:
    """The forked child: run the step and leave, whatever happens. Never returns, so that
    no failure can unwind into the copy of the worker's loop above."""
    status = 1
    try:
        for item in inherited:
            if item is None:
                continue
            with contextlib.suppress(OSError):
                if isinstance(item, int):
                    os.close(item)
                else:
                    item.close()
        worker = os.getppid()
        _set_parent_death_signal()
        if os.getppid() == worker:  # else the worker died before the line above
            conn.close()
            signal.set_wakeup_fd(-1)
            for number in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(number, signal.SIG_DFL)
            status = execute(request)
    except BaseException:  # execute() reports its own failures; this is the last resort
        _report(request, f"step worker: the step's process failed before or after the step:\n{traceback.format_exc()}")
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


def _reap(children: dict, selector) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        with contextlib.suppress(OSError):
            _send(conn, {"status": os.waitstatus_to_exitcode(status), "rusage": _rusage_of(usage)})
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        conn.close()


def _report(request: dict, message: str) -> None:
    """Put a failure in the step's log (and on stderr), even if logging was never set up."""
    print(message, file=sys.stderr)
    with contextlib.suppress(Exception):
        Path(request["log"]).parent.mkdir(parents=True, exist_ok=True)
        with open(request["log"], "a") as handle:
            handle.write(message.rstrip("\n") + "\n")


def _apply_environment(changes: dict | None) -> None:
    if not changes:
        return
    for name in changes.get("unset", []):
        os.environ.pop(name, None)
    os.environ.update(changes.get("set", {}))


def execute(request: dict) -> int:
    """Run one step: its log, its main(**kwargs), its exit status (non-zero on any failure).

    Every failure is the step's: a user error as its one-line message, anything else with
    its traceback, both in the step's log."""
    # Ctrl-C ends a step outright. As KeyboardInterrupt it could be caught on the way: nutpie
    # catches it and returns the draws made so far, which would be written as a finished,
    # shorter trace.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log = None
    try:
        os.chdir(request["cwd"])
        _apply_environment(request.get("env"))
        os.environ.update(STEP_ENV)
        if str(SCRIPTS) not in sys.path:
            sys.path.insert(0, str(SCRIPTS))
        import importlib.util

        from common import setup_logging

        log = setup_logging(request["log"])
        spec = importlib.util.spec_from_file_location(f"step_{Path(request['script']).stem}", request["script"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(**_arguments(module.main, request))
        return 0
    except SystemExit as exc:
        code = exc.code
        # An exit status is one byte: sys.exit(256) would read as success.
        status = 0 if code is None else code if isinstance(code, int) and 0 <= code <= 255 else 1
        if status != 0:
            _fail(request, log, f"the step called sys.exit({code!r})")
        return status
    except KeyboardInterrupt:
        _fail(request, log, "the step was interrupted (KeyboardInterrupt)")
        return 1
    except BaseException as exc:  # a step's failure, whatever it is, is reported as one
        user_error = getattr(sys.modules.get("common"), "UserError", None)
        if user_error is not None and isinstance(exc, user_error):
            _fail(request, log, str(exc))
        else:  # any other failure is a bug: show where
            _fail(request, log, f"unexpected failure:\n{traceback.format_exc()}")
        return 1
    finally:
        if log is not None:
            for handler in log.root.handlers:
                with contextlib.suppress(Exception):
                    handler.flush()


def _fail(request: dict, log, message: str) -> None:
    if log is not None:
        log.error("%s", message)
    else:
        _report(request, f"ERROR pipeline: {message}")


def _arguments(main, request: dict) -> dict:
    """The step's keyword arguments, plus `threads` if its main() takes it."""
    import inspect

    kwargs = dict(request["kwargs"])
    if "threads" in inspect.signature(main).parameters:
        kwargs["threads"] = request["threads"]
    return kwargs


def _main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve":
        serve()
    elif command == "execute":
        sys.exit(execute(json.loads(sys.stdin.read())))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve|execute")


if __name__ == "__main__":
    _main()
