"""The step worker: a process that has imported the numerical stack once and forks a child
per step, so that a step costs its own work, not a Python start-up.

It listens on its socket in the user's room (runtime/room.py) before it imports anything
(callers queue meanwhile), then imports the stack, warms it up, freezes its objects out of
the garbage collector's view (so that children do not copy their pages) and serves. One
loop, which nothing a caller sends can end or stall: connections are read without
blocking, each within REQUEST_SECONDS and MAX_REQUEST bytes, at most MAX_PENDING at once,
and whatever goes wrong with one connection closes that connection only.

Its scope (runtime/client.py decides it) is one run, whose Snakemake process it watches and
outlives by nothing, or every run of its user in one project directory with one
fingerprint: it then leaves after `idle_seconds` without a step, at once when its
fingerprint changes (an upgraded package, an edited module of its own), or when its
project directory is gone. It removes its socket before it leaves, so the next run starts
a fresh worker by itself.

A request that names a warm hook goes to a zygote: a fork of the worker kept for one model
file and code version, which compiles that model once (runtime/compiled.py) and forks
every such step from itself.
"""

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from runtime import protocol
from runtime.environment import PRELOAD_EXTRA, SCRIPTS, configuration_files, file_digest, installed_packages, runtime_files
from runtime.execute import set_parent_death_signal
from runtime.processes import alive, close_inherited, other_threads, start_time
from runtime.room import Files
from runtime.steps import Steps

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
CHECK_SECONDS = 1.0  # how often the worker looks at its owner, fingerprint and idleness
MAX_ZYGOTES = 8
ZYGOTE_QUEUE = 4  # steps waiting for a zygote; beyond, a step is forked here and compiles itself
ZYGOTE_MESSAGE = 100_000  # bytes of a step passed to a zygote (one datagram of its channel)
HOOK_SECONDS = 300  # a warm hook that takes longer is abandoned: the step compiles itself


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} step worker {os.getpid()}: {message}", file=sys.stderr, flush=True)


def preload() -> list[str]:
    """Import the stack and warm it up; what went wrong, as notes (a step that needs a
    module that failed will say so itself)."""
    import matplotlib

    matplotlib.use("Agg")
    notes = []
    extra = [name.strip() for name in os.environ.get(PRELOAD_EXTRA, "").split(",") if name.strip()]
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
        except Exception as exc:
            notes.append(f"cannot preload {name}: {type(exc).__name__}: {exc}")
    try:
        warm_up()
    except Exception as exc:  # a cold first step is slower, not wrong
        notes.append(f"warm-up skipped: {type(exc).__name__}: {exc}")
    return notes


def warm_up() -> None:
    """Pay once what every step would pay on its first use, before any fork.

    The first model compiled in a process takes ~0.7 s longer than the next (Numba and
    PyTensor set themselves up), and the first figure loads fonts. Nothing here samples:
    nutpie's sampler starts threads, and a process must not fork with threads running.
    Compiling leaves no state that changes a later result (tests/test_worker.py).
    """
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    import nutpie
    import pymc as pm

    # The sampling step compiles with these callbacks: warm up the same path. (Each step
    # sets exact numerics itself, common.exact_numerics, before it compiles anything.)
    private_copy("nutpie_callbacks").install()
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


def private_copy(name: str):
    """The project's module `name`, loaded under a private name: the steps forked later
    still import the file as it is on disk then, not this copy."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_worker_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed(path: str) -> bool:
    """Whether a module's file is the interpreter's or an installed package's."""
    where = os.path.realpath(path)
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        with contextlib.suppress(ValueError):
            if os.path.commonpath([where, os.path.realpath(prefix)]) == os.path.realpath(prefix):
                return True
    return False


def own_code() -> dict[str, str]:
    """Digests of the code this process runs that is neither the standard library nor an
    installed package (whose versions `installed_packages` covers): this package, the
    project's modules it loaded, and modules of PIPELINE_PRELOAD outside site-packages."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py") and not installed(path):
            files[path] = file_digest(path)
    # Its warm-up loads the nutpie callbacks without registering them as a module.
    files.update({str(path): file_digest(path) for path in runtime_files()})
    return files


def wake_on_signals(wake_w: int) -> None:
    """A child's end (SIGCHLD) or a stop (SIGTERM) wakes the loop: the signal's number is
    written to `wake_w`, which the loop watches with everything else."""
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for number in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(number, lambda *_: None)


class Pending:
    """A connection whose request has not arrived whole yet."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.deadline = time.monotonic() + protocol.REQUEST_SECONDS
        self.buffer = bytearray()
        self.fds: list[int] = []

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        self.conn.close()


class Server:
    def __init__(self, setup: dict):
        self.files = Files(Path(setup["room"]), setup["key"])
        self.token = setup["token"].encode()
        self.scope = setup["scope"]
        self.idle_seconds = float(setup.get("idle_seconds") or 0)
        self.project = setup["project"]
        self.selector = selectors.DefaultSelector()
        self.pending: dict[int, Pending] = {}
        self.zygotes: dict[str, dict] = {}
        self.retired: set[int] = set()  # zygotes whose channel is closed, until they end
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = os.pipe()
        self.owner_fd = None
        self.steps = Steps(self.selector, self.inherited)
        self.unsafe: str | None = None
        self.closing: str | None = None
        self.last_activity = time.monotonic()
        self.next_check = 0.0
        self.reference: dict = {}

    def inherited(self) -> list:
        """What a forked step or zygote must close of this process's."""
        return [self.listener, self.wake_r, self.wake_w, self.owner_fd, self.selector,
                *(p.conn for p in self.pending.values()), *(fd for p in self.pending.values() for fd in p.fds),
                *self.steps.children.values(), *(z["channel"] for z in self.zygotes.values())]

    # ----------------------------------------------------------------------------------
    # Start

    def bind(self, ready_fd: int) -> None:
        # Private for the socket only: the steps get their caller's umask (steps.py).
        previous = os.umask(0o077)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(str(self.files.socket))
        finally:
            os.umask(previous)
        self.files.bound()
        self.listener.listen(256)
        self.listener.setblocking(False)
        self.info = {"pid": os.getpid(), "start": start_time(os.getpid()), "token": self.token.decode(),
                     "project": self.project, "scope": self.scope, "idle_seconds": self.idle_seconds,
                     "created": time.time(), "python": sys.executable, "state": "starting"}
        self.files.write_info(self.info)
        os.write(ready_fd, b"listening\n")
        os.close(ready_fd)

    def start(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self.scope.get("kind") == "run":
            try:
                self.owner_fd = os.pidfd_open(self.scope["owner"])
            except (OSError, AttributeError):
                self.owner_fd = None
            if not alive(self.scope["owner"], self.scope.get("owner_start")):
                self.leave("its run ended before it started")
        started = time.perf_counter()
        notes = preload()
        threads = other_threads()
        if threads:
            self.unsafe = (f"{len(threads)} other thread(s) ran in the worker after preloading ({', '.join(threads)}), "
                           f"so forking it could deadlock a step")
            notes.append(f"{self.unsafe}; every step runs in a fresh Python process instead")
        for note in notes:
            log(note)
        # Objects that exist now live as long as the worker: take them out of the collector's
        # view, so that no child's collection writes to (and so copies) their pages.
        gc.collect()
        gc.freeze()
        self.reference = {"packages": installed_packages(), "code": own_code(),
                          "settings": configuration_files(self.project)}
        self.info.update(state="ready", preload_seconds=round(time.perf_counter() - started, 3), notes=notes)
        self.files.write_info(self.info)
        log(f"ready in {time.perf_counter() - started:.2f} s for {self.project} ({self.scope.get('kind')} scope)")
        wake_on_signals(self.wake_w)
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept",))
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake",))
        if self.owner_fd is not None:
            self.selector.register(self.owner_fd, selectors.EVENT_READ, ("owner",))

    # ----------------------------------------------------------------------------------
    # The loop

    def run(self) -> None:
        self.start()
        while True:
            timeout = max(0.0, min([self.next_check - time.monotonic(), *(p.deadline - time.monotonic()
                                                                            for p in self.pending.values())]))
            for key, _ in self.selector.select(timeout=timeout):
                try:
                    self.event(key)
                except Exception:  # one connection's trouble, never the worker's
                    log(f"an event failed and was dropped:\n{traceback.format_exc()}")
            now = time.monotonic()
            for fd, pending in list(self.pending.items()):
                if now > pending.deadline:
                    self.drop(fd)
            if now >= self.next_check:
                self.next_check = now + CHECK_SECONDS
                try:
                    self.check()
                except Exception:  # the room removed under it, say: leave rather than die
                    log(f"its checks failed:\n{traceback.format_exc()}")
                    self.stop("its room is unusable")
            if self.closing and not self.busy():
                self.leave(self.closing)

    def event(self, key) -> None:
        kind = key.data[0]
        if kind == "accept":
            self.accept()
        elif kind == "pending":
            self.read(key.fd)
        elif kind == "step":
            self.steps.caller_event(key.data[1], key.fileobj)
        elif kind == "wake":
            self.wake()
        elif kind == "zygote":
            self.zygote_message(key.data[1])
        elif kind == "owner":
            self.stop("its run ended")

    def accept(self, drain: bool = False) -> None:
        """Take waiting connections: a bounded number at a time, and none beyond MAX_PENDING
        (the rest wait in the kernel's queue, and callers retry while it is full, rather
        than push out a caller whose request is on its way); with `drain`, all of them."""
        taken = 0
        while self.listener is not None and (drain or (taken < 16 and len(self.pending) < protocol.MAX_PENDING)):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # out of descriptors: refuse this one, keep serving
                log(f"cannot accept a connection: {exc.strerror}")
                break
            taken += 1
            try:
                _pid, uid = protocol.peer(conn)
            except OSError:
                conn.close()
                continue
            if uid != os.getuid():
                conn.close()
                continue
            conn.setblocking(False)
            self.pending[conn.fileno()] = Pending(conn)
            self.selector.register(conn, selectors.EVENT_READ, ("pending",))
        self.listen_while_there_is_room()

    def listen_while_there_is_room(self) -> None:
        """Watch the listener only while another pending connection fits (a full table with
        the listener watched would wake the loop for ever)."""
        if self.listener is None:
            return
        watched = self.listener.fileno() in self.selector.get_map()
        if len(self.pending) < protocol.MAX_PENDING and not watched:
            self.selector.register(self.listener, selectors.EVENT_READ, ("accept",))
        elif len(self.pending) >= protocol.MAX_PENDING and watched:
            self.selector.unregister(self.listener)

    def drop(self, fd: int) -> None:
        pending = self.pending.pop(fd, None)
        if pending is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(pending.conn)
            pending.close()
        self.listen_while_there_is_room()

    def read(self, fd: int) -> None:
        pending = self.pending[fd]
        try:
            data, fds, flags, _ = socket.recv_fds(pending.conn, 65536, protocol.MAX_FDS + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(fd)
            return
        pending.fds += fds
        if not data or len(pending.fds) > protocol.MAX_FDS or flags & socket.MSG_CTRUNC:
            self.drop(fd)
            return
        pending.buffer += data
        if len(pending.buffer) > protocol.MAX_REQUEST:
            self.drop(fd)
            return
        if b"\n" not in pending.buffer:
            return
        line, rest = bytes(pending.buffer).split(b"\n", 1)
        self.pending.pop(fd)
        self.selector.unregister(pending.conn)
        self.listen_while_there_is_room()
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            pending.close()
            return
        if rest or not protocol.authenticated(request, self.token):  # nothing may follow the request
            pending.close()
            return
        try:
            step = protocol.validate(request)
        except protocol.BadRequest as exc:
            self.answer_and_close(pending, {"refused": str(exc)})
            return
        self.dispatch(step, pending)

    def answer_and_close(self, pending: Pending, message: dict) -> None:
        with contextlib.suppress(OSError):
            pending.conn.setblocking(True)
            pending.conn.settimeout(1.0)
            protocol.send(pending.conn, message)
        pending.close()

    def dispatch(self, step: dict, pending: Pending) -> None:
        self.last_activity = time.monotonic()
        if step["idle_seconds"] is not None and self.scope.get("kind") == "shared":
            self.idle_seconds = float(step["idle_seconds"])  # the latest run's setting holds
        if self.unsafe:
            self.answer_and_close(pending, {"fresh": self.unsafe})
            return
        stdio, pending.fds = pending.fds, []
        warm = step.pop("warm")
        if warm and self.to_zygote(warm, step, pending.conn, stdio):
            return
        self.steps.start(step, pending.conn, stdio)

    def wake(self) -> None:
        try:
            received = os.read(self.wake_r, 4096)
        except BlockingIOError:
            return
        if signal.SIGTERM in received:
            self.stop("stopped (SIGTERM)")
        for pid in self.steps.reap():
            self.zygote_ended(pid)
        self.last_activity = time.monotonic()

    # ----------------------------------------------------------------------------------
    # Zygotes

    def to_zygote(self, warm: dict, step: dict, conn: socket.socket, stdio: list[int]) -> bool:
        """Hand the step to its zygote, if one can take it now; otherwise (False) the step is
        forked here and compiles its model itself. Never waits: a zygote busy compiling, or
        with many steps queued, must not hold up this loop."""
        message = json.dumps({**step, "warm": warm}, ensure_ascii=False).encode()
        zygote = self.zygotes.get(warm["key"])
        if len(message) > ZYGOTE_MESSAGE or (zygote is not None and zygote["sent"] - zygote["taken"] >= ZYGOTE_QUEUE):
            return False
        # The zygote must not inherit this request's connection and descriptors: it gets
        # them through its channel, and a copy left open would hold the caller's connection.
        zygote = zygote or self.spawn_zygote(warm, [conn, *stdio])
        if zygote is None:
            return False
        try:
            socket.send_fds(zygote["channel"], [message], [conn.fileno(), *stdio])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            log(f"zygote {zygote['pid']} did not take a step ({exc.strerror}); forking it here")
            self.retire(warm["key"])
            return False
        zygote["sent"] += 1
        conn.close()
        for fd in stdio:
            os.close(fd)
        return True

    def spawn_zygote(self, warm: dict, dispatched: list) -> dict | None:
        for key in [k for k, z in self.zygotes.items() if z["label"] == warm.get("label", "")]:
            self.retire(key)  # the same model file under older code: it leaves when idle
        while len(self.zygotes) >= MAX_ZYGOTES:
            self.retire(min(self.zygotes, key=lambda k: self.zygotes[k]["used"]))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            log(f"cannot fork a zygote ({exc.strerror}); forking steps from the worker")
            mine.close()
            theirs.close()
            return None
        if pid == 0:
            try:
                Zygote(theirs, [*self.inherited(), mine, *dispatched]).run()
            finally:
                os._exit(1)
        theirs.close()
        mine.setblocking(False)
        zygote = {"pid": pid, "channel": mine, "label": warm.get("label", ""), "busy": 0, "sent": 0, "taken": 0,
                  "used": time.monotonic()}
        self.zygotes[warm["key"]] = zygote
        self.selector.register(mine, selectors.EVENT_READ, ("zygote", warm["key"]))
        return zygote

    def zygote_message(self, key: str) -> None:
        zygote = self.zygotes.get(key)
        if zygote is None:
            return
        try:
            message = zygote["channel"].recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message = b""
        if not message:  # it ended; its steps' callers see their connections close
            self.retire(key)
            return
        news = json.loads(message)
        zygote["busy"], zygote["taken"] = int(news.get("busy", 0)), int(news.get("taken", zygote["taken"]))
        zygote["used"] = time.monotonic()
        self.last_activity = time.monotonic()
        if news.get("unsafe"):
            log(f"zygote {zygote['pid']} cannot fork safely ({news['unsafe']}); it is retired")
            self.retire(key)

    def retire(self, key: str) -> None:
        """Close a zygote's channel: it leaves once its running steps have ended, and until
        then it keeps this worker busy."""
        zygote = self.zygotes.pop(key, None)
        if zygote is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(zygote["channel"])
            zygote["channel"].close()
            self.retired.add(zygote["pid"])

    def zygote_ended(self, pid: int) -> None:
        for key, zygote in list(self.zygotes.items()):
            if zygote["pid"] == pid:
                self.retire(key)
        self.retired.discard(pid)

    # ----------------------------------------------------------------------------------
    # Staying and leaving

    def busy(self) -> bool:
        return bool(self.steps.children or self.pending or self.retired
                    or any(z["busy"] or z["sent"] > z["taken"] for z in self.zygotes.values()))

    def check(self) -> None:
        scope = self.scope.get("kind")
        if scope == "run" and self.owner_fd is None and not alive(self.scope["owner"], self.scope.get("owner_start")):
            self.stop("its run ended")
        if self.closing or scope != "shared":
            return
        if installed_packages() != self.reference["packages"]:
            self.close("the installed packages changed")
        elif {path: file_digest(path) for path in self.reference["code"]} != self.reference["code"]:
            self.close("its own code changed")
        elif configuration_files(self.project) != self.reference["settings"]:
            self.close("a settings file it read at import changed")
        elif not os.path.isdir(self.project):
            self.close("its project directory is gone")
        elif not self.busy() and time.monotonic() - self.last_activity >= self.idle_seconds:
            self.close(f"idle for {self.idle_seconds:.0f} s", wait_for_lock=False)

    def close(self, reason: str, wait_for_lock: bool = True) -> None:
        """Take no more callers: remove the socket (the next run starts a fresh worker), serve
        those already queued, and leave when every step has ended."""
        try:
            with self.files.locked(wait=5.0 if wait_for_lock else None) as held:
                if not held and not wait_for_lock:
                    return  # a caller is starting or looking for a worker now: stay this round
                self.files.remove(os.getpid())
        except OSError as exc:  # the room itself is gone
            log(f"its room is unusable ({exc.strerror})")
        log(f"closing: {reason}")
        self.closing = reason
        self.accept(drain=True)
        listener, self.listener = self.listener, None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(listener)
        listener.close()
        for key in list(self.zygotes):
            self.retire(key)

    def stop(self, reason: str) -> None:
        """Leave at once, killing every step first."""
        log(f"stopping: {reason}")
        self.steps.kill_all()
        for pid in [*(zygote["pid"] for zygote in self.zygotes.values()), *self.retired]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # each kills its own steps
        self.leave(reason)

    def leave(self, reason: str) -> None:
        self.files.remove(os.getpid())
        log(f"left: {reason}")
        # Leave at once: tearing down an interpreter that holds PyMC and Numba takes
        # seconds, during which this process would hold its output streams open.
        sys.stderr.flush()
        os._exit(0)


class Zygote:
    """A fork of the worker kept for one model file and code version: it runs the step
    file's warm hook for each request (compiling once what later steps reuse), then forks
    the step from itself. It leaves when the worker closes its channel and its steps have
    ended, and at once (killing its steps) when the worker dies or stops it."""

    def __init__(self, channel: socket.socket, inherited: list):
        self.channel = channel
        close_inherited(inherited)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.steps = Steps(self.selector, lambda: [self.channel, self.selector, self.wake_r, self.wake_w,
                                                   *self.steps.children.values()])
        self.retiring = False
        self.taken = 0

    def run(self) -> None:
        worker = os.getppid()
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != worker:  # the worker died before the line above
            os._exit(0)
        wake_on_signals(self.wake_w)
        self.selector.register(self.channel, selectors.EVENT_READ, ("channel",))
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake",))
        while not (self.retiring and not self.steps.children):
            for key, _ in self.selector.select():
                try:
                    self.event(key)
                except Exception:
                    log(f"zygote: an event failed and was dropped:\n{traceback.format_exc()}")
        os._exit(0)

    def event(self, key) -> None:
        kind = key.data[0]
        if kind == "channel":
            self.take()
        elif kind == "wake":
            received = os.read(self.wake_r, 4096)
            if signal.SIGTERM in received:
                self.steps.kill_all()
                os._exit(0)
            self.steps.reap()
            self.tell({"busy": len(self.steps), "taken": self.taken})
        elif kind == "step":
            self.steps.caller_event(key.data[1], key.fileobj)

    def take(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(self.channel, ZYGOTE_MESSAGE + 1, protocol.MAX_FDS + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds, flags = b"", [], 0
        if not data:  # the worker retired this zygote, or is gone
            self.retiring = True
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.channel)
            return
        self.taken += 1
        for fd in fds:
            os.set_inheritable(fd, False)
        conn = None
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or not fds:
                raise ValueError("a step arrived cut short")
            request = json.loads(data)
            conn, stdio = socket.socket(fileno=fds[0]), fds[1:]
            self.prepare(request)
            threads = other_threads()
            if threads:
                reason = f"{len(threads)} thread(s) ran after compiling ({', '.join(threads)})"
                self.answer(conn, {"fresh": f"the compiling process cannot fork safely: {reason}"}, stdio)
                self.tell({"busy": len(self.steps), "taken": self.taken, "unsafe": reason})
                return
            self.steps.start(request, conn, stdio)
        except Exception:  # whatever went wrong, the caller hears of it and nothing is held
            log(f"zygote: a step could not be started:\n{traceback.format_exc()}")
            if conn is None and fds:
                conn = socket.socket(fileno=fds[0])
            self.answer(conn, {"status": 1, "rusage": None, "error": "the step worker's zygote could not start it"},
                        fds[1:])
        self.tell({"busy": len(self.steps), "taken": self.taken})

    @staticmethod
    def answer(conn, message: dict, fds: list[int]) -> None:
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                protocol.send(conn, message)
            conn.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def tell(self, message: dict) -> None:
        with contextlib.suppress(OSError):  # never wait on the worker
            self.channel.send(json.dumps(message).encode(), socket.MSG_DONTWAIT)

    def prepare(self, request: dict) -> None:
        """Run the step file's warm hook (it keeps what it compiles in runtime.compiled). A
        failure is logged and left to the step, which meets it again and reports it."""
        import importlib.util

        before = set(sys.modules)
        try:
            os.chdir(request["cwd"])
            if str(SCRIPTS) not in sys.path:
                sys.path.insert(0, str(SCRIPTS))
            hook = Path(request["warm"]["hook"])
            spec = importlib.util.spec_from_file_location(f"_warm_{hook.stem}", hook)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "warm"):
                # A hook that hangs must not keep its step waiting for ever (nor this
                # zygote's other steps): abandoned, the step compiles for itself.
                signal.signal(signal.SIGALRM, _hook_overran)
                signal.alarm(HOOK_SECONDS)
                module.warm(**request["kwargs"], **({"threads": request["threads"]} if _takes_threads(module.warm) else {}))
        except BaseException:
            log(f"zygote: the warm hook failed (the step will say why):\n{traceback.format_exc()}")
        finally:
            signal.alarm(0)
            # The steps forked from here import the project's modules from disk, as they are
            # now: forget those the hook imported (what it compiled stays kept).
            for name in set(sys.modules) - before:
                path = getattr(sys.modules[name], "__file__", None)
                if path and not installed(path) and name != "runtime" and not name.startswith("runtime."):
                    del sys.modules[name]
            gc.collect()
            gc.freeze()


def _hook_overran(*_):
    raise TimeoutError(f"the warm hook ran for more than {HOOK_SECONDS} s")


def _takes_threads(function) -> bool:
    import inspect

    return "threads" in inspect.signature(function).parameters


def serve() -> None:
    """The worker's entry point: its setup comes on standard input, from the caller that
    starts it (the token travels neither in its command line nor in its environment)."""
    setup = json.loads(sys.stdin.read())
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)
    server = Server(setup)
    try:
        server.bind(setup["ready_fd"])
    except OSError as exc:
        log(f"cannot listen on {server.files.socket}: {exc.strerror}")
        sys.exit(1)
    os.chdir(server.files.room)
    server.run()
