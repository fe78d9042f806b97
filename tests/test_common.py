import os
import subprocess
import sys

import pytest

from common import UserError, atomic_path, derive_seed, read_datatree, sha256_of
from conftest import SCRIPTS


def test_seed_is_stable_across_processes_with_different_hash_salts():
    code = (
        f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); from common import derive_seed; "
        "print(derive_seed(42, 'spacex', 'hierarchical', 'sample'))"
    )
    seeds = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": salt}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for salt in ("1", "2", "random")
    }
    assert seeds == {str(derive_seed(42, "spacex", "hierarchical", "sample"))}


def test_seeds_differ_between_jobs_and_base_seeds():
    seeds = {
        derive_seed(base, dataset, model, purpose)
        for base in (0, 1)
        for dataset in ("a", "b")
        for model in ("m", "n")
        for purpose in ("sample", "predict")
    }
    assert len(seeds) == 16
    assert all(0 <= s < 2**32 for s in seeds)
    # Parts are separated, so ("ab", "c") and ("a", "bc") are different jobs.
    assert derive_seed(1, "ab", "c") != derive_seed(1, "a", "bc")


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_earlier_result_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_sha256_of(tmp_path):
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert sha256_of(path) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_unreadable_netcdf_names_file_and_recovery(tmp_path):
    broken = tmp_path / "trace.nc"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(UserError) as caught:
        read_datatree(broken, rule_hint="sample")
    assert str(broken) in str(caught.value)
    assert "snakemake --forcerun sample" in str(caught.value)


def test_fitted_model_reads_the_traces_provenance_only(tmp_path):
    import numpy as np
    import xarray as xr

    from common import fitted_model, write_datatree

    posterior = xr.Dataset({"theta": (("chain", "draw"), np.zeros((1, 3)))})
    tree = xr.DataTree.from_dict({"/posterior": posterior})
    tree.attrs["pipeline_model"] = "hierarchical"
    write_datatree(tree, tmp_path / "trace.nc")
    assert fitted_model(tmp_path / "trace.nc") == "hierarchical"
    write_datatree(xr.DataTree.from_dict({"/posterior": posterior}), tmp_path / "other.nc")
    assert fitted_model(tmp_path / "other.nc") == ""
