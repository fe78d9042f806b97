"""What a trace records of the code that made it (scripts/sample.py)."""

import sys

import sample
from conftest import ROOT, SPACEX


def test_recorded_versions_are_those_of_the_modules_that_run_not_of_the_files_on_disk(monkeypatch):
    """The warm worker imports the stack once; if a package is upgraded on disk meanwhile,
    its metadata says the new version while the old one runs (and made the trace)."""
    import pymc

    monkeypatch.setattr(pymc, "__version__", "6.0.0+imported-before-an-upgrade")
    monkeypatch.setattr("importlib.metadata.version", lambda name: "99.0 (on disk)")
    attrs = sample.provenance(
        dataset="spacex", model_name="hierarchical", data=SPACEX, model_file=ROOT / "scripts" / "models" / "hierarchical.py",
        seed=1, sampling={"sampler": "nutpie"}, settings={}, method="collapsed",
    )
    assert attrs["version_pymc"] == "6.0.0+imported-before-an-upgrade"
    for package in sample.RECORDED_PACKAGES:
        assert attrs[f"version_{package}"] == sys.modules[package].__version__
