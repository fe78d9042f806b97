"""Compiled models that the step worker keeps between steps.

A sampling step spends most of its time compiling its model (about a second with nutpie,
against a few tenths drawing at the article's settings). A forked step cannot hand what
it compiled back to the worker, so the worker compiles instead: a request that names a
hook (`warm` in the protocol) goes to a zygote, a fork of the worker kept for that model
file and code, which calls the step file's `warm(**kwargs)` before forking the step.
`warm` compiles into this module's table with `keep`; the step, forked from the zygote,
finds it with `kept` and samples with it; a step in a fresh process (or the first of its
kind anywhere) compiles the very same model itself. The step decides the key: what the
compiled model depends on (the model file's content, the method, the data or, for data
that are swapped in, their shapes), so a kept model is only ever used where a fresh
compile would give the same one.
"""

import hashlib
import time
from collections import OrderedDict
from pathlib import Path

# Compiled models per zygote, the most recently used last; a zygote serves one model file.
LIMIT = 16
# key -> [compiled model, seconds it took to compile, how many steps it was kept for before]
_KEPT: OrderedDict = OrderedDict()


def keep(key: str, make) -> None:
    """In the worker: compile with `make()` and keep the result under `key`, unless it is
    kept already (then count one more step that uses it)."""
    if key in _KEPT:
        _KEPT.move_to_end(key)
        _KEPT[key][2] += 1
        return
    started = time.perf_counter()
    _KEPT[key] = [make(), time.perf_counter() - started, 0]
    while len(_KEPT) > LIMIT:
        _KEPT.popitem(last=False)


def kept(key: str) -> tuple[object, str] | tuple[None, None]:
    """In a step: the compiled model kept under `key` by the worker it was forked from, and
    how it came to be, in words; (None, None) if there is none."""
    entry = _KEPT.get(key)
    if entry is None:
        return None, None
    model, seconds, before = entry
    if before == 0:
        return model, f"compiled by the step worker for this step in {seconds:.3f} s"
    return model, f"kept by the step worker (compiled in {seconds:.3f} s for an earlier step, reused {before} time(s))"


def zygote_key(scripts: Path, model_file: str | Path) -> str:
    """Which zygote serves a step: the project's code and the model file, by content. A
    zygote imports them to compile, so it serves only steps of exactly this code (any edit
    starts another, and the old one leaves once idle)."""
    digest = hashlib.sha256()
    for path in [*sorted(Path(scripts).rglob("*.py")), Path(model_file)]:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def warm_hook(step_file: str | Path, scripts: Path, model_file: str | Path) -> dict:
    """The request's `warm` field for a step whose file defines `warm(**kwargs)`."""
    return {"hook": str(step_file), "key": zygote_key(scripts, model_file), "label": str(model_file)}
