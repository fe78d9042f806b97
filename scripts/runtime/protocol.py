"""What a caller and a worker say to each other, and how each checks the other.

A caller connects, checks with the kernel (SO_PEERCRED) that the process listening is the
worker its room describes (its user, its process id and start time), and sends one JSON
line: the token, the step (script, keyword arguments, log, threads, working directory)
and the environment variables that differ from the worker's; its standard output and error
travel beside it as file descriptors (SCM_RIGHTS), so that what a step prints goes where
a fresh process's output would. The worker answers with JSON lines: `started` (the
step's process id and start time), then `status` with the resource usage; or `fresh`
(it cannot fork safely: run the step in a fresh process) or `refused` (the request was
malformed). A caller that receives no status knows the worker ended.

The worker serves only its own user, reads at most MAX_REQUEST bytes within
REQUEST_SECONDS of the connection, refuses anything after the request line, and compares
the token as bytes, in constant time, after checking its type.
"""

import hmac
import json
import math
import socket
import struct
from pathlib import Path

MAX_REQUEST = 128 * 1024  # bytes of one request line (it also travels whole to a zygote)
REQUEST_SECONDS = 10.0  # from connection to complete request
MAX_FDS = 2  # the caller's standard output and error
MAX_PENDING = 64  # connections whose request is not complete yet; beyond, the oldest goes

# pid is a signed int; uid and gid are unsigned (sites with uids >= 2**31 exist).
_UCRED = struct.Struct("iII")


class BadRequest(Exception):
    """An authenticated request that the worker cannot serve; the message says why."""


def peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket, from the kernel."""
    pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid


def encode(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


def send(conn: socket.socket, message: dict) -> None:
    conn.sendall(encode(message))


def send_request(conn: socket.socket, request: dict, fds: list[int]) -> None:
    data = encode(request)
    if len(data) > MAX_REQUEST:
        raise BadRequest(f"the request is {len(data)} bytes, more than the {MAX_REQUEST} a worker reads")
    sent = socket.send_fds(conn, [data], fds)
    if sent < len(data):
        conn.sendall(data[sent:])


def messages(conn: socket.socket):
    """The JSON lines the other end sends, until it closes."""
    buffer = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def authenticated(request: object, token: bytes) -> bool:
    """Whether a parsed request carries the worker's token (bytes, compared in constant time)."""
    if not isinstance(request, dict):
        return False
    offered = request.get("token")
    if not isinstance(offered, str):
        return False
    try:
        offered_bytes = offered.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return hmac.compare_digest(offered_bytes, token)


def _strings(value, what: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRequest(f"{what} must map names to strings")


def validate(request: dict) -> dict:
    """The step of an authenticated request, with each field of the type it must have."""
    for name in ("script", "log", "cwd"):
        if not isinstance(request.get(name), str) or not request[name] or "\0" in request[name]:
            raise BadRequest(f"field {name!r} must be a non-empty string")
        if not Path(request[name]).is_absolute():
            raise BadRequest(f"field {name!r} must be an absolute path")
    if not isinstance(request.get("kwargs"), dict):
        raise BadRequest("field 'kwargs' must be an object")
    threads = request.get("threads", 1)
    if type(threads) is not int or threads < 1:
        raise BadRequest("field 'threads' must be a positive integer")
    env = request.get("env", {"set": {}, "unset": []})
    if not isinstance(env, dict):
        raise BadRequest("field 'env' must be an object")
    _strings(env.get("set", {}), "env.set")
    unset = env.get("unset", [])
    if not isinstance(unset, list) or not all(isinstance(name, str) for name in unset):
        raise BadRequest("env.unset must be a list of names")
    idle = request.get("idle_seconds")
    if idle is not None and (type(idle) not in (int, float) or not math.isfinite(idle) or idle < 0):
        raise BadRequest("field 'idle_seconds' must be a number of seconds")
    umask = request.get("umask")
    if umask is not None and (type(umask) is not int or not 0 <= umask <= 0o777):
        raise BadRequest("field 'umask' must be a file mode mask")
    warm = request.get("warm")
    if warm is not None:
        if not isinstance(warm, dict):
            raise BadRequest("field 'warm' must be an object")
        _strings({k: v for k, v in warm.items()}, "warm")
        if not {"hook", "key"} <= set(warm) or not Path(warm["hook"]).is_absolute():
            raise BadRequest("field 'warm' needs an absolute 'hook' and a 'key'")
    step = {name: request[name] for name in ("script", "kwargs", "log", "cwd")}
    return {**step, "threads": threads, "env": {"set": env.get("set", {}), "unset": unset},
            "idle_seconds": idle, "umask": umask, "warm": warm}
