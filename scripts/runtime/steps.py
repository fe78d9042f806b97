"""The steps a worker (or one of its zygotes) has forked, each with the connection to its
caller: start, watch the caller, reap, answer.

A step is a fork in a process group of its own. Its caller's connection is watched while
it runs: if the caller goes away (Snakemake stopped the job, or was killed) or sends
anything more (the protocol allows nothing after the request), the whole group is killed,
so that no step finishes writing after its caller has stopped. When the step ends its
caller gets its status, and what the step left running in its group is killed.
"""

import contextlib
import os
import selectors
import socket
import sys

from runtime import protocol
from runtime.execute import run_forked
from runtime.processes import kill_group, rusage_of, start_time


class Steps:
    def __init__(self, selector: selectors.BaseSelector, inherited):
        """`inherited()` lists what a forked step must close of its parent's (sockets,
        selectors, descriptors)."""
        self.selector = selector
        self.inherited = inherited
        # A running step's pid -> the connection to its caller (None once the caller has gone).
        self.children: dict[int, socket.socket | None] = {}

    def __len__(self) -> int:
        return len(self.children)

    def start(self, request: dict, conn: socket.socket, stdio: list[int]) -> None:
        """Fork the step; the caller hears `started`, and later its status."""
        # Whatever this process has buffered must not be printed again by the child.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # a per-user process limit, memory: this step fails, not the worker
            self._answer(conn, {"status": 1, "rusage": None, "error": f"could not fork a process for the step ({exc.strerror})"})
            conn.close()
            self._close(stdio)
            return
        if pid == 0:
            run_forked(request, stdio, [*self.inherited(), conn])
        self._close(stdio)
        with contextlib.suppress(OSError):  # also done by the child; whichever comes first
            os.setpgid(pid, pid)
        self.children[pid] = conn
        conn.setblocking(False)
        self._answer(conn, {"started": pid, "start": start_time(pid)})
        self.selector.register(conn, selectors.EVENT_READ, ("step", pid))

    def caller_event(self, pid: int, conn: socket.socket) -> None:
        """The caller's end of a running step became readable: it hung up, or broke the
        protocol by sending more. Either way the step is stopped."""
        if self.children.get(pid) is not conn:  # reaped in the same batch of events
            return
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        del data  # anything, or nothing: the caller is gone or misbehaving
        kill_group(pid)
        self._forget(conn)
        self.children[pid] = None

    def reap(self) -> list[int]:
        """Collect ended children; answer their callers. Returns the pids reaped that were
        not steps (a zygote, for the worker to handle)."""
        others = []
        while True:
            # Seen first, reaped after: while the ended step is a zombie its pid, and so its
            # group's id, cannot be taken by another process, so the group killed is its own.
            try:
                seen = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return others
            if seen is None:
                return others
            pid = seen.si_pid
            if pid in self.children:
                kill_group(pid)  # what the step left running in its group
            _, status, usage = os.wait4(pid, 0)
            if pid not in self.children:
                others.append(pid)
                continue
            conn = self.children.pop(pid)
            if conn is not None:
                self._answer(conn, {"status": os.waitstatus_to_exitcode(status), "rusage": rusage_of(usage)})
                self._forget(conn)

    def kill_all(self) -> None:
        for pid in self.children:
            kill_group(pid)

    def _answer(self, conn: socket.socket, message: dict) -> None:
        # Blocking for this one small write: the socket's buffer is empty but for it.
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.settimeout(1.0)
            protocol.send(conn, message)
        with contextlib.suppress(OSError):
            conn.setblocking(False)

    def _forget(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        conn.close()

    @staticmethod
    def _close(fds: list[int]) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
