"""Processes as the kernel knows them: identity, threads, exit statuses and resource usage."""

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, a unique identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int | None, start: str | None) -> bool:
    """Whether process `pid`, started at `start`, still runs (a zombie has ended)."""
    if pid is None or start is None:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


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


def close_inherited(items) -> None:
    """In a fresh fork: close what it inherited of its parent's (sockets, selectors,
    descriptors), through their objects, so that no finalizer later closes a number the
    child has reused."""
    for item in items:
        if item is None:
            continue
        with contextlib.suppress(OSError):
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()


def kill_group(pgid: int) -> None:
    """SIGKILL to a step's process group (the step and whatever it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_leftovers(pgid: int, since: int) -> int:
    """Kill what remains of a step's process group after its worker died: the processes of
    this user in group `pgid` that started no earlier than the step (clock ticks `since`),
    so that a group id reused by an unrelated, older process is left alone. How many."""
    killed = 0
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            owner = entry.stat().st_uid
        except OSError:
            continue
        if int(fields[2]) == pgid and int(fields[19]) >= since and owner == uid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def describe_status(status: int) -> str:
    """An exit status of os.waitstatus_to_exitcode() in words."""
    if status >= 0:
        return f"exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:  # a real-time signal
        return f"killed by signal {-status}"
    hint = " (out of memory?)" if name == "SIGKILL" else ""
    return f"killed by {name}{hint}"


def rusage_of(usage) -> dict:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS. It includes the worker's pages
    # the step shares.
    kilobytes = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return {"cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": kilobytes / 1024}
