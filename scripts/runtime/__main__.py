"""`python scripts/runtime serve|execute|status|stop [PROJECT]`.

serve: the step worker (started by runtime/client.py, its setup on standard input).
execute: one step in a fresh process, its request on standard input.
status: the user's step workers on this machine, from their room.
stop: stop them (those of PROJECT only, if given); each kills its running steps first.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

# Run as a file, this directory is on sys.path; its parent is what the package needs.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from runtime.processes import alive  # noqa: E402
from runtime.room import RoomUnusable, room, servers, sweep  # noqa: E402


def the_room() -> Path:
    try:
        return room()
    except RoomUnusable as exc:
        sys.exit(f"no room for step workers: {exc}")


def status(project: str | None) -> int:
    where = the_room()
    sweep(where)  # what workers killed outright left behind
    found = [s for s in servers(where) if project is None or s.get("project") == os.path.realpath(project)]
    print(f"step workers in {where}: {len(found) or 'none'}")
    for server in found:
        state = server.get("state", "?") if alive(server.get("pid"), server.get("start")) else "gone"
        age = time.time() - server.get("created", time.time())
        print(f"- process {server.get('pid')}: {state}, {server.get('scope', {}).get('kind')} scope, "
              f"up {age / 60:.1f} min, leaves after {server.get('idle_seconds', 0) / 60:.0f} idle min; "
              f"project {server.get('project')}; log {where / (server['key'] + '.log')}")
    return 0


def stop(project: str | None) -> int:
    where = the_room()
    stopped = []
    for server in servers(where):
        if project is not None and server.get("project") != os.path.realpath(project):
            continue
        if alive(server.get("pid"), server.get("start")):
            os.kill(server["pid"], signal.SIGTERM)
            stopped.append(server)
    deadline = time.monotonic() + 10
    while any(alive(s["pid"], s["start"]) for s in stopped) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"stopped {len(stopped)} step worker(s)")
    return 0


def execute_fresh() -> int:
    from runtime.execute import execute, set_parent_death_signal

    request = json.loads(sys.stdin.read())
    # This process dies with the Snakemake thread that waits for it (as a fork of the
    # worker dies with the worker), so no step outlives its run.
    set_parent_death_signal()
    if request.get("caller") is not None and os.getppid() != request["caller"]:
        return 1
    return execute(request)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    project = sys.argv[2] if len(sys.argv) > 2 else None
    if command == "serve":
        from runtime.server import serve

        serve()
    elif command == "execute":
        sys.exit(execute_fresh())
    elif command == "status":
        sys.exit(status(project))
    elif command == "stop":
        sys.exit(stop(project))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve|execute|status|stop [PROJECT]")


if __name__ == "__main__":
    main()
