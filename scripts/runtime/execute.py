"""One step in a process of its own: forked from a worker, or a fresh Python process.

`execute()` runs the step file's `main(**kwargs)` with its log. Whatever happens in it (an
exception anywhere, `sys.exit`, `KeyboardInterrupt`) ends as that step's failure, with its
log: a user error as its one-line message, anything else with its traceback.
`enter_forked_step()` first makes a fork of the worker what a fresh process would be: its
own process group (so that the step is stopped with whatever it started), the caller's
standard output and error, default signal handlers, and NumPy's global random state
seeded afresh (a fork would otherwise repeat the worker's stream in every step).
"""

import contextlib
import importlib
import os
import signal
import sys
import traceback
from pathlib import Path

from runtime.environment import SCRIPTS, STEP_ENV
from runtime.processes import close_inherited


def set_parent_death_signal(number: int = signal.SIGKILL) -> None:
    """Linux: this process gets `number` when its parent exits."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)


def enter_forked_step(stdio: list[int], inherited: list) -> None:
    """In a child just forked from a worker or a zygote: become a step's own process.

    `stdio` are the caller's standard output and error (or none); `inherited` are the
    worker's sockets, selectors and descriptors, closed here."""
    parent = os.getppid()
    # No signal may be written to the worker's wake-up pipe (or to a number reused after it
    # is closed below).
    signal.set_wakeup_fd(-1)
    close_inherited(inherited)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    set_parent_death_signal()
    if os.getppid() != parent:  # the worker died before the line above
        os._exit(1)
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    for target, fd in zip((1, 2), stdio, strict=False):
        os.dup2(fd, target)
    for fd in stdio:
        if fd > 2:
            os.close(fd)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # from the OS's entropy, as in a fresh process
    # Files added to the project since the worker looked: its import caches must not hide them.
    importlib.invalidate_caches()


def report(request: dict, message: str) -> None:
    """Put a failure in the step's log (and on stderr), even if logging was never set up."""
    print(message, file=sys.stderr, flush=True)
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
    """Run one step: its log, its main(**kwargs), its exit status (non-zero on any failure)."""
    # Ctrl-C ends a step outright. As KeyboardInterrupt it could be caught on the way: nutpie
    # catches it and returns the draws made so far, which would be written as a finished,
    # shorter trace.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log = None
    try:
        if request.get("umask") is not None:  # the caller's, for the modes of what the step writes
            os.umask(request["umask"])
        os.chdir(request["cwd"])
        _apply_environment(request.get("env"))
        os.environ.update(STEP_ENV)
        if str(SCRIPTS) not in sys.path:
            sys.path.insert(0, str(SCRIPTS))
        import importlib.util

        from common import exact_numerics, setup_logging

        log = setup_logging(request["log"])
        exact_numerics()
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


def run_forked(request: dict, stdio: list[int], inherited: list) -> None:
    """The forked child: run the step and leave, whatever happens. Never returns, so that no
    failure can unwind into the copy of the worker's loop it was forked from."""
    status = 1
    try:
        enter_forked_step(stdio, inherited)
        status = execute(request)
    except BaseException:  # execute() reports its own failures; this is the last resort
        report(request, f"step worker: the step's process failed before or after the step:\n{traceback.format_exc()}")
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


def _fail(request: dict, log, message: str) -> None:
    if log is not None:
        log.error("%s", message)
    else:
        report(request, f"ERROR pipeline: {message}")


def _arguments(main, request: dict) -> dict:
    """The step's keyword arguments, plus `threads` if its main() takes it."""
    import inspect

    kwargs = dict(request["kwargs"])
    if "threads" in inspect.signature(main).parameters:
        kwargs["threads"] = request["threads"]
    return kwargs
