"""Which parts of a step's environment a warm worker can honour, and what makes two
workers interchangeable (their fingerprint).

A forked step inherits the libraries as the worker imported them. A library may read an
environment variable when it is imported (PyTensor's flags, thread counts, the locale,
TMPDIR, PATH for the compiler PyTensor looks for, ...), so a fork can only take over from
its caller the variables that nothing reads at import: those of the scheduler and of the
workflow itself, and those that differ between two terminals of one user. Every other
variable is part of the worker's fingerprint: a caller whose import-time environment
differs uses another worker.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent
SCRIPTS = RUNTIME.parent

WARM = "PIPELINE_WARM"  # "0": every step in a fresh Python process (slower, same results)
PRELOAD_EXTRA = "PIPELINE_PRELOAD"  # more modules for the worker to import, comma-separated

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

# The scheduler's and the workflow's own variables, which no library reads at import.
FORK_SAFE_PREFIXES = ("SLURM_", "SLURMD_", "SRUN_", "PMI_", "PMIX_", "OMPI_", "PIPELINE_", "SNAKEMAKE", "PYTEST_")
# What differs between two shells, terminals or `make` and a plain command line of one user.
SESSION_PREFIXES = ("SSH_", "XDG_SESSION_", "TMUX", "TERM_", "VSCODE_", "KITTY_", "ITERM_", "WT_", "KONSOLE_", "VTE_",
                    "GNOME_TERMINAL_", "ZELLIJ", "WEZTERM_", "ALACRITTY_")
SESSION_NAMES = frozenset({
    "OLDPWD", "PWD", "SHLVL", "_", "TERM", "COLORTERM", "DISPLAY", "WINDOWID", "WINDOW", "STY", "XDG_VTNR", "XDG_SEAT",
    "DBUS_SESSION_BUS_ADDRESS", "GPG_TTY", "MAIL", "LS_COLORS", "LESSOPEN", "LESSCLOSE", "PS1", "PROMPT_COMMAND",
    "HISTFILE", "HISTSIZE", "HISTFILESIZE", "HISTCONTROL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKE_TERMOUT",
    "MAKE_TERMERR", "EDITOR", "VISUAL", "PAGER",
})
# Read when the worker starts (what it imports), though it has the workflow's prefix.
IMPORT_TIME_NAMES = frozenset({PRELOAD_EXTRA})


def forkable(name: str) -> bool:
    """Whether a fork of the worker may take this variable over from its caller."""
    if name in STEP_ENV:
        return True  # set alike in every step, whatever the caller's value
    if name in IMPORT_TIME_NAMES:
        return False
    return name.startswith(FORK_SAFE_PREFIXES + SESSION_PREFIXES) or name in SESSION_NAMES


def import_time(environ) -> dict[str, str]:
    """The variables that a library may have read when the worker imported it."""
    merged = {**environ, **STEP_ENV}
    return {name: value for name, value in sorted(merged.items()) if not forkable(name)}


def unforkable_changes(changes: dict) -> list[str]:
    """The variables among a step's changes to the worker's environment that a fork cannot
    honour (with a fingerprinted worker there are none; kept as the last guard)."""
    return sorted(name for name in [*changes["set"], *changes["unset"]] if not forkable(name))


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def runtime_files() -> list[Path]:
    """The project's code that a worker runs itself (the steps' code is read by each step):
    this package, and the nutpie callbacks its warm-up compiles with."""
    return [*sorted(RUNTIME.glob("*.py")), SCRIPTS / "nutpie_callbacks.py"]


def installed_packages() -> str:
    """The installed distributions, by the names of their metadata directories (which carry
    each version), and conda's records of its packages (with their build strings: a BLAS
    switched, say): an install, upgrade or removal changes them. Cheap (a directory
    listing per entry of sys.path), so a worker can check it every second."""
    names = set()
    listings = [(entry, (".dist-info", ".egg-info", ".egg-link")) for entry in sys.path]
    listings.append((os.path.join(sys.prefix, "conda-meta"), (".json",)))
    for entry, endings in listings:
        try:
            with os.scandir(entry or ".") as found:
                names.update(item.name for item in found if item.name.endswith(endings))
        except OSError:
            continue
    return digest(sorted(names))


def configuration_files(project: str | None = None) -> str:
    """The settings files the stack reads when it is imported: PyTensor's, Matplotlib's
    and Numba's (the user's, and the project directory's, where the worker imports)."""
    home = Path.home()
    paths = [os.environ.get("PYTENSORRC", str(home / ".pytensorrc")), os.environ.get("MATPLOTLIBRC", ""),
             str(home / ".config" / "matplotlib" / "matplotlibrc")]
    if project:
        paths += [os.path.join(project, "matplotlibrc"), os.path.join(project, ".numba_config.yaml")]
    return digest({path: file_digest(path) for path in paths if path})


def interpreter() -> list[str]:
    return [sys.prefix, os.path.realpath(sys.executable), sys.version]


def fingerprint(environ, project: str | None = None) -> dict:
    """What a worker must share with its caller: the interpreter, the installed packages'
    versions, the code it runs itself, and the environment and settings files read at import."""
    return {
        "interpreter": interpreter(),
        "packages": installed_packages(),
        "settings": configuration_files(project),
        "code": {path.name: file_digest(path) for path in runtime_files()},
        "environment": digest(import_time(environ)),
        # Numba sizes its thread pool from the CPUs the process may use, when it is imported.
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }
