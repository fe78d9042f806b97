"""The room: a node-local directory that only its user can enter, where each of that user's
step workers has its socket, its description and its lock.

Like ssh-agent's or a Bazel server's, the socket is a file in a directory of mode 0700, so
the kernel itself refuses every other user (EACCES): they can neither connect, nor flood
the worker, nor take its name first. The directory is `$XDG_RUNTIME_DIR/pipeline-worker`
when that is usable, else `pipeline-worker-UID` under the system's temporary directory
(then /tmp). Before use it must be a real directory (not a symbolic link), owned by the
user, open to no one else, on a filesystem of this machine alone (a lock or socket file on
NFS or Lustre is not), in a parent that others cannot rename it out of; otherwise the
room is unusable and every step runs in a fresh process, with the reason in its log.

Each worker has a key (`worker_key`): a digest of the user, the machine, the project
directory, the worker's fingerprint and its scope (shared between runs, or one run's
own). Its files are KEY.sock (the socket), KEY.json (its process id and start time and the
token a caller must present, mode 0600), KEY.lock (taken while a worker is started or
leaves, so that two runs never start two) and KEY.log (what the worker printed).
"""

import contextlib
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

from runtime.environment import digest

NAME = "pipeline-worker"
# sun_path holds 108 bytes, its terminating NUL included.
SOCKET_PATH_MAX = 107
# Filesystems that other machines mount too.
SHARED_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "fuse.ceph", "glusterfs",
    "fuse.glusterfs", "panfs", "pvfs2", "orangefs", "afs", "fuse.sshfs", "9p", "wekafs", "fuse.s3fs", "fuse.juicefs",
})


class RoomUnusable(Exception):
    """The private directory cannot be used safely; the message says why, in one line."""


def room() -> Path:
    """The user's room, created if need be and checked before use."""
    uid = os.getuid()
    candidates = []
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isabs(runtime_dir):
        candidates.append((Path(runtime_dir), Path(runtime_dir) / NAME))
    for base in dict.fromkeys([tempfile.gettempdir(), "/tmp"]):
        candidates.append((Path(base), Path(base) / f"{NAME}-{uid}"))
    reasons = []
    for parent, path in candidates:
        try:
            return private_directory(parent, path, uid)
        except RoomUnusable as exc:
            reasons.append(str(exc))
    raise RoomUnusable("; ".join(reasons))


def private_directory(parent: Path, path: Path, uid: int) -> Path:
    try:
        parent_stat = os.stat(parent)
    except OSError as exc:
        raise RoomUnusable(f"{parent}: {exc.strerror}") from None
    if not stat.S_ISDIR(parent_stat.st_mode):
        raise RoomUnusable(f"{parent}: not a directory")
    # Another user who may write to the parent could rename the room away and put their
    # own in its place, unless the sticky bit forbids it (as on /tmp).
    if parent_stat.st_mode & 0o022 and not parent_stat.st_mode & stat.S_ISVTX:
        raise RoomUnusable(f"{parent}: others may write to it and it is not sticky")
    if parent_stat.st_uid not in (0, uid):
        raise RoomUnusable(f"{parent}: belongs to uid {parent_stat.st_uid}")
    kind = filesystem_type(parent)
    if kind in SHARED_FILESYSTEMS:
        raise RoomUnusable(f"{parent}: on a {kind} filesystem, which other machines share")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        found = os.lstat(path)
    except OSError as exc:
        raise RoomUnusable(f"{path}: {exc.strerror}") from None
    if stat.S_ISLNK(found.st_mode):
        raise RoomUnusable(f"{path}: a symbolic link, not a directory")
    if not stat.S_ISDIR(found.st_mode):
        raise RoomUnusable(f"{path}: not a directory")
    if found.st_uid != uid:
        raise RoomUnusable(f"{path}: belongs to uid {found.st_uid}, not to you (uid {uid})")
    if found.st_mode & 0o077:
        raise RoomUnusable(f"{path}: open to others (mode {stat.S_IMODE(found.st_mode):04o}); remove it, or make it 0700")
    if len(str(path / ("0" * 32 + ".sock")).encode()) > SOCKET_PATH_MAX:
        raise RoomUnusable(f"{path}: too long a path for a socket")
    return path


def filesystem_type(path: Path) -> str:
    """The type of the filesystem that holds `path`, from /proc/self/mountinfo ('' if unknown)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) != 2:
            continue
        mount_point = _unescape(fields[0].split()[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fields[1].split()[0]
    return kind


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code in ("040", "011", "012", "134"):
        text = text.replace("\\" + code, chr(int(code, 8)))
    return text


def worker_key(project: str, fingerprint: dict, scope: dict) -> str:
    return digest({"uid": os.getuid(), "host": socket.gethostname(), "project": project,
                   "fingerprint": fingerprint, "scope": scope})[:32]


class Files:
    """One worker's files in the room."""

    def __init__(self, where: Path, key: str):
        self.room, self.key = where, key
        self.own_socket: tuple[int, int] | None = None  # (device, inode) of the socket this process bound
        self.socket = where / f"{key}.sock"
        self.info = where / f"{key}.json"
        self.lock = where / f"{key}.lock"
        self.log = where / f"{key}.log"

    def read_info(self) -> dict | None:
        try:
            info = json.loads(self.info.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def write_info(self, info: dict) -> None:
        """Written whole or not at all, readable by its user alone."""
        fd, partial = tempfile.mkstemp(prefix=f".{self.key}.", suffix=".json", dir=self.room)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(info, handle)
            os.replace(partial, self.info)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    @contextlib.contextmanager
    def locked(self, wait: float | None = 120.0):
        """Hold the worker's lock; with `wait` None, yield False at once if another holds it."""
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + (wait or 0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if wait is None or time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.02)
            yield True
        finally:
            os.close(fd)

    def bound(self) -> None:
        """Remember the socket this process has just bound, to remove only that one."""
        found = os.stat(self.socket)
        self.own_socket = (found.st_dev, found.st_ino)

    def remove(self, pid: int | None) -> None:
        """Remove the description and the socket if they are process `pid`'s (a worker
        leaving removes only the socket it bound: a successor may have bound its own)."""
        info = self.read_info()
        if info is not None and info.get("pid") != pid:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.info)
        with contextlib.suppress(FileNotFoundError):
            found = os.stat(self.socket)
            if self.own_socket is None or (found.st_dev, found.st_ino) == self.own_socket:
                os.unlink(self.socket)


def sweep(where: Path, days: float = 7.0) -> None:
    """Remove what workers that are gone left: the socket and description of one killed
    outright (a worker that leaves removes them itself), and, after `days`, its lock and
    its log (kept meanwhile: a caller may be opening the lock, the log says why it left)."""
    from runtime.processes import alive

    for path in where.glob("*.json"):
        files = Files(where, path.stem)
        info = files.read_info()
        if info is None or alive(info.get("pid"), info.get("start")):
            continue
        with contextlib.suppress(OSError), files.locked(wait=None) as held:
            if held:  # no one is starting a worker under this key now
                files.remove(info.get("pid"))
    old = time.time() - days * 86400
    for path in where.glob("*.log"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < old and not (where / f"{path.stem}.json").exists():
                path.unlink()
    for path in where.glob("*.lock"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= old or (where / f"{path.stem}.json").exists():
                continue
            with Files(where, path.stem).locked(wait=None) as held:
                if held:  # no one is starting that worker now
                    path.unlink()


def servers(where: Path) -> list[dict]:
    """The descriptions of every worker in the room (for `status` and `stop`)."""
    found = []
    for path in sorted(where.glob("*.json")):
        info = Files(where, path.stem).read_info()
        if info is not None:
            found.append({**info, "key": path.stem})
    return found
