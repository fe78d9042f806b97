"""Warm steps: every rule's `main()` runs in a process forked from a worker that has already
imported the numerical stack, so a step costs its own work, not a Python start-up.

Why this design (measurements in docs/speed.md): a fresh Python process spends about 2.5 s
importing PyMC, ArviZ, xarray and matplotlib; most steps then work for 0.1-0.5 s. Here the
stack is imported once per Snakemake run, by a worker process, and each step is a `fork()`
of it: ~10 ms to start, its own address space (a crash or an out-of-memory kill ends that
step only, and its memory is returned when it ends), and the very same code path as a
plain process, so results are bitwise equal (tests/test_worker.py). A persistent
interpreter that ran step after step would also keep compiled models, but would carry
state and memory from one step to the next; the models compile in about a second.

The pieces, in the order a run meets them:
- `claim()`, when the Snakefile is parsed (every Snakemake process parses it): decide whose
  worker this process uses. A Snakemake started by another Snakemake on the same machine
  and in the same SLURM job (the steps of a grouped cluster submission) shares the
  enclosing one's worker; any other becomes an owner. Nothing is started here, so a run
  with nothing to do imports nothing.
- `run_step()`, called by each rule's `run:` block (in a thread of Snakemake, see
  workflow/profiles/default): send the step to the worker, starting the worker on first
  use, and wait for the step's exit status.
- `serve()`: the worker. It binds its socket first (callers queue while it imports), then
  imports the stack, then forks one child per request. It kills its children and exits
  as soon as the owning Snakemake process is gone (even after `kill -9`), and kills a
  step whose caller went away (Ctrl-C), so that no step finishes writing after
  Snakemake has stopped.
- `execute()`: one step, in the forked child (or, with PIPELINE_WARM=0 or off Linux, in
  a fresh Python process): the step's log, its `main(**kwargs)`, and the exit status.
"""

import contextlib
import json
import os
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

ENV = "PIPELINE_WORKER"  # identity of the worker's owner, inherited by nested Snakemakes
WARM = "PIPELINE_WARM"  # "0": every step in a fresh Python process (slower, same results)
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


class StepFailed(Exception):
    """A step ended unsuccessfully; its own log says why."""


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


def _alive(owner: dict) -> bool:
    return owner.get("start") is not None and _start_time(owner["pid"]) == owner["start"]


def warm_available() -> bool:
    return sys.platform == "linux" and os.environ.get(WARM, "1") != "0"


def claim() -> None:
    """Called when the Snakefile is parsed: share an enclosing Snakemake's worker, or own one.

    Shared only within one machine and one SLURM job: a Snakemake on the login node exports
    its identity into the jobs it submits, and those must not use its worker.
    """
    owner = _owner()
    here = _identity(os.getpid())
    if owner and owner.get("host") == here["host"] and owner.get("slurm_job") == here["slurm_job"] and _alive(owner):
        return
    os.environ[ENV] = json.dumps(here)
    # A grouped SLURM submission runs each step as `srun snakemake ...`; the worker must
    # start here, in the submission's own process, so that it outlives each step.
    if warm_available() and here["slurm_job"] and any(a.startswith("--target-jobs") for a in sys.argv):
        _Client.get().ensure_worker()


def _address(owner: dict) -> str:
    # Linux's abstract socket namespace: no file to clean up, no path-length limit.
    return f"\0pipeline-worker-{owner['host']}-{owner['pid']}-{owner['start']}"


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

    def ensure_worker(self) -> None:
        owner = _owner()
        with self.start_lock:
            if self.process is not None and self.process.poll() is None:
                return
            if self._try_connect(owner) is not None:
                return
            env = {**os.environ, **STEP_ENV}
            mine = owner["pid"] == os.getpid()
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve"],
                stdin=subprocess.DEVNULL,
                env=env,
                # The owner's worker stays in Snakemake's process group, so a Ctrl-C in
                # the terminal reaches the steps as it reached script jobs. One started
                # by a nested Snakemake must outlive that process and its group.
                start_new_session=not mine,
            )

    @staticmethod
    def _try_connect(owner: dict) -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(_address(owner))
        except (ConnectionRefusedError, FileNotFoundError):
            conn.close()
            return None
        return conn

    def connect(self) -> socket.socket:
        owner = _owner()
        deadline = time.monotonic() + 60
        conn = self._try_connect(owner)
        while conn is None:
            self.ensure_worker()
            if self.process is not None and self.process.poll() is not None and self.process.returncode != 0:
                raise StepFailed(f"the step worker could not start (exit status {self.process.returncode}); see the messages above")
            if time.monotonic() > deadline:
                raise StepFailed("the step worker did not answer within 60 s")
            time.sleep(0.01)
            conn = self._try_connect(owner)
        return conn


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


def run_step(script: str | Path, *, kwargs: dict, log: str, threads: int = 1) -> None:
    """Run the step file's main(**kwargs), its output in `log`; raise StepFailed if it fails."""
    step = Path(script).stem
    request = {
        "script": os.path.abspath(script),
        "kwargs": kwargs,
        "log": os.path.abspath(log),
        "threads": threads,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
    }
    started = time.perf_counter()
    if warm_available():
        conn = _Client.get().connect()
        with conn:
            _send(conn, request)
            result = {"status": -signal.SIGKILL, "rusage": None, "how": "worker"}
            for message in _lines(conn):
                result = message
    else:
        result = _run_fresh(request)
    wall = time.perf_counter() - started
    usage = result.get("rusage")
    with open(log, "a") as handle:
        line = f"step {step}: {describe_status(result['status'])}, wall {wall:.3f} s"
        if usage:
            line += f", CPU {usage['cpu']:.3f} s, peak RSS {usage['maxrss_mb']:.0f} MB"
        handle.write(f"{line} ({result.get('how', 'worker')})\n")
    if result["status"] != 0:
        raise StepFailed(f"step {step} failed: {describe_status(result['status'])}; see its log {log}")


def _rusage_of(usage) -> dict:
    # ru_maxrss is in kilobytes on Linux. It includes the worker's pages the step shares.
    return {"cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024}


def _run_fresh(request: dict) -> dict:
    """The step in a new Python process: no worker, the same code path."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "execute"],
        stdin=subprocess.PIPE,
        env={**request["env"], **STEP_ENV},
    )
    process.stdin.write(json.dumps(request).encode())
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"status": process.returncode, "rusage": _rusage_of(usage), "how": "fresh process"}


# --------------------------------------------------------------------------------------
# The worker


def _preload() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a step that needs it will say so itself
            print(f"step worker: cannot preload {name}: {exc}", file=sys.stderr)
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


def _set_parent_death_signal() -> None:
    """Linux: this process gets SIGKILL when its parent (the worker) exits."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def _read_request(conn: socket.socket) -> dict | None:
    conn.settimeout(10)
    buffer = b""
    while not buffer.endswith(b"\n"):
        chunk = conn.recv(1 << 20)
        if not chunk:
            return None
        buffer += chunk
    conn.settimeout(None)
    return json.loads(buffer)


def serve() -> None:
    owner = _owner()
    if os.environ.get("PIPELINE_WORKER_VERBOSE"):
        print(f"step worker: starting for Snakemake process {owner['pid']} with {sys.executable}", file=sys.stderr)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(owner))
    except OSError:
        return  # another process of this run started the worker first
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
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:  # forking would copy locks other threads hold: say so, loudly
        print(f"step worker: {threads} threads after preloading; steps may deadlock", file=sys.stderr)
    if os.environ.get("PIPELINE_WORKER_VERBOSE"):
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
    children: dict[int, socket.socket] = {}

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
                if _peer_uid(conn) != os.getuid():
                    conn.close()
                    continue
                try:
                    request = _read_request(conn)
                except (OSError, ValueError):
                    request = None
                if request is None:
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    for fd in [listener.fileno(), wake_r, wake_w, owner_fd, *[c.fileno() for c in children.values()]]:
                        if fd is not None:
                            with contextlib.suppress(OSError):
                                os.close(fd)
                    os._exit(_child(request, conn))
                children[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            elif key.data == "reap":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(children, selector)
            else:
                # The caller closed its end (Snakemake stopped the job): stop the step.
                pid = key.data
                try:
                    gone = not key.fileobj.recv(1, socket.MSG_PEEK)
                except OSError:
                    gone = True
                if gone:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    children[pid] = None


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
            _send(conn, {"status": os.waitstatus_to_exitcode(status), "rusage": _rusage_of(usage), "how": "warm worker"})
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        conn.close()


def _child(request: dict, conn: socket.socket) -> int:
    """In the forked child: become a plain process for one step, then run it."""
    worker = os.getppid()
    _set_parent_death_signal()
    if os.getppid() != worker:  # the worker died before the line above
        return 1
    conn.close()
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    return execute(request)


def execute(request: dict) -> int:
    """Run one step: its log, its main(**kwargs), its exit status (1 on any failure)."""
    # Ctrl-C ends a step outright. As KeyboardInterrupt it could be caught on the way: nutpie
    # catches it and returns the draws made so far, which would be written as a finished,
    # shorter trace.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(STEP_ENV)
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import importlib.util

    from common import UserError, setup_logging

    log = setup_logging(request["log"])
    try:
        spec = importlib.util.spec_from_file_location(f"step_{Path(request['script']).stem}", request["script"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(**_arguments(module.main, request))
    except UserError as exc:
        log.error("%s", exc)
        return 1
    except Exception:  # any other failure is a bug: show where
        log.error("unexpected failure:\n%s", traceback.format_exc())
        return 1
    finally:
        for handler in log.root.handlers:
            handler.flush()
    return 0


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
