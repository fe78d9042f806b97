"""Helpers shared by the steps: the user-error type, atomic writes, seeds, logging, I/O.

Every step (scripts/<rule>.py) has a `main()` whose arguments are its rule's named
inputs, outputs and params, so tests call it without Snakemake; scripts/worker.py runs
it for the rule, with the rule's log, and turns a `UserError` into a one-line message.
"""


import contextlib
import hashlib
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

log = logging.getLogger("pipeline")


class UserError(Exception):
    """A problem with the user's input (data, config, an earlier result), not a bug.

    The message is one line that names the file, row and column or config key, and what is
    wrong; it is printed without a traceback.
    """


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def derive_seed(base: int, *parts: str) -> int:
    """A seed for one job, stable across processes, machines and Python versions.

    Python's `hash()` is salted per process, so it would break reproducible reruns; SHA-256
    of the parts is not. Distinct parts give unrelated streams, so parallel jobs never
    share one.
    """
    text = "\x1f".join([str(int(base)), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success.

    An interrupted or failed job therefore never leaves a file that looks finished, and an
    earlier result at `final` stays untouched until the new one is complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A job killed outright (SIGKILL, a node lost) leaves its temporary behind; Snakemake
    # runs one job per output at a time, so any left now is stale.
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def load_module(path: str | Path) -> ModuleType:
    """Import a model file by path (model files are rule inputs, not an installed package)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    spec = importlib.util.spec_from_file_location(f"model_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_datatree(path: str | Path, rule_hint: str = ""):
    """Open an ArviZ NetCDF file, or explain which file is broken and how to rebuild it.

    The data are read into memory and the file is closed at once. Left open (xarray's
    default is lazy), HDF5 handles pile up and are closed whenever the garbage collector
    gets to them, which crashed the process (a segfault in netCDF4) in long test runs.
    Reading everything also makes a truncated file fail here, not halfway through a plot.
    """
    import xarray as xr

    path = Path(path)
    with readable(path, rule_hint), xr.open_datatree(path, engine="netcdf4") as lazy:
        return lazy.load()


def read_variables(path: str | Path, group: str, names: list[str] | None = None, rule_hint: str = "", select: dict | None = None,
                   at: dict | None = None):
    """Some variables of one group of an ArviZ NetCDF file, read into memory, file closed.

    For steps that need a few variables of a large trace: at 10,000 groups a whole trace
    is 600 MB, of which a figure may need a few kB. `select` (coordinates, as for
    `Dataset.sel`) and `at` (positions, as for `Dataset.isel`, of the dimensions the group
    has) are applied before reading.
    """
    import xarray as xr

    path = Path(path)
    with readable(path, rule_hint), xr.open_dataset(path, group=group, engine="netcdf4") as lazy:
        chosen = lazy[names] if names is not None else lazy
        chosen = chosen.isel(at, missing_dims="ignore") if at else chosen
        return (chosen.sel(select) if select else chosen).load()


def trace_groups(path: str | Path, rule_hint: str = "") -> set[str]:
    """The names of the groups of an ArviZ NetCDF file, read without their values."""
    import netCDF4

    with readable(path, rule_hint), netCDF4.Dataset(path) as handle:
        return set(handle.groups)


def dimension_sizes(path: str | Path, group: str, rule_hint: str = "") -> dict:
    """The dimension sizes of one group of an ArviZ NetCDF file, read without its values."""
    import xarray as xr

    with readable(path, rule_hint), xr.open_dataset(path, group=group, engine="netcdf4") as lazy:
        return dict(lazy.sizes)


def thinning(draws: int, groups: int, *, max_values: int, min_draws: int) -> int:
    """Every how many draws of each chain a per-group summary reads: 1 (all) up to
    max_values draws x groups, beyond an evenly spaced subset of at least min_draws.

    `draws` counts all chains together. Keeping every k-th draw of each chain keeps at
    least draws / k of them, so k <= draws // min_draws guarantees the minimum whatever
    the chains' lengths (rounding k up to fit max_values alone could keep half of it)."""
    fits = -(-draws // max(max_values // max(groups, 1), 1))
    return max(1, min(fits, draws // max(min_draws, 1)))


def read_thinned_posterior(trace: str | Path, names: list[str] | None, groups: int, *, max_values: int | None,
                           min_draws: int):
    """The posterior's `names` (None: all) at every k-th draw of each chain, k from
    `thinning` (1 with no `max_values`), only those draws read: (Dataset, k)."""
    every = 1
    if max_values is not None:
        sizes = dimension_sizes(trace, "posterior", rule_hint="sample")
        every = thinning(sizes["chain"] * sizes["draw"], groups, max_values=max_values, min_draws=min_draws)
    return read_variables(trace, "posterior", names, rule_hint="sample", select={"draw": slice(None, None, every)}), every


def fitted_model(trace: str | Path) -> str:
    """The name of the model a trace was sampled from (its provenance), read without its variables."""
    return read_variables(trace, "/", [], rule_hint="sample").attrs.get("pipeline_model", "")


@contextlib.contextmanager
def readable(path: str | Path, rule_hint: str) -> Iterator[None]:
    """A failure to read a NetCDF file as one line naming it and the rule that rebuilds it."""
    try:
        yield
    except Exception as exc:  # netCDF4/HDF5 raise a zoo of types for damaged files
        raise UserError(
            f"{path}: cannot be read as NetCDF ({type(exc).__name__}: {exc}); "
            f"rebuild it with `snakemake --forcerun {rule_hint or 'sample'}`"
        ) from exc


def write_datatree(tree, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tree.to_netcdf(tmp, engine="netcdf4")


def save_figure(figure, path: str | Path, **kwargs) -> None:
    """Save a matplotlib figure atomically, in the format its extension names."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip("."), bbox_inches="tight", **kwargs)


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Log to stderr and to the step's log file; return the pipeline's logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    # Libraries' INFO chatter (PyTensor's config parser, ArviZ's backend search) is noise;
    # warnings from anyone and this pipeline's own progress are not.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    log.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return log


def exact_numerics() -> None:
    """Make PyTensor's compiled functions give the same bits in every process.

    PyTensor compiles through Numba with fastmath on by default, which lets LLVM reorder
    floating-point arithmetic as it inlines; a function compiled afresh and the same
    function loaded from Numba's cache on disk then differ in the last bits (a SpaceX
    trace's log-likelihood: 150 of 600 values, by up to 3.6e-15, on an empty cache against
    a filled one). Off, a rerun gives the same numbers whatever the cache holds. Called
    for every step (scripts/runtime/execute.py) and before the worker compiles a model.
    """
    import pytensor

    pytensor.config.numba__fastmath = False


def read_prepared(path: str | Path):
    """Read a table written by prepare_data.py (already validated), of any shape."""
    import pandas as pd

    from shapes import SHAPES

    # Labels stay text: "007" must not become 7.
    counts = {column: "int64" for shape in SHAPES.values() for column in shape.counts}
    return pd.read_csv(path, dtype={"group": str, **counts, "estimate": float, "se": float, "prior_scale": float},
                       keep_default_na=False)


def save_plot_collection(collection, path: str | Path) -> None:
    """Save the figure behind an arviz-plots PlotCollection (atomically, like every output)."""
    figure = collection.viz["figure"].item()
    save_figure(figure, path)
    import matplotlib.pyplot as plt

    plt.close(figure)
