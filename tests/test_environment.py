"""The pip pins and the conda environment describe the same package set."""

import os
import re
import subprocess

import pytest
import yaml

from conftest import ROOT


def pins_of_requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_requirements_are_exact_pins():
    pins = pins_of_requirements()
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", p) for p in pins)


def test_environment_yml_has_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) == pins_of_requirements()
    assert "python=3.12" in env["dependencies"] and "graphviz" in env["dependencies"]


def test_direct_dependencies_are_all_pinned():
    direct = [
        line.split("#")[0].strip().lower()
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    pinned = {p.split("==")[0].lower().replace("_", "-") for p in pins_of_requirements()}
    assert {d.replace("_", "-") for d in direct} <= pinned


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for pin in pins_of_requirements():
        name, wanted = pin.split("==")
        assert version(name) == wanted, name


def test_python_finder_prefers_a_312_interpreter():
    found = subprocess.run(["bash", str(ROOT / "tools" / "find-python.sh")], capture_output=True, text=True, check=True)
    check = subprocess.run(
        [found.stdout.strip(), "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True
    )
    assert check.stdout.strip() == "True"


def test_python_finder_explains_when_nothing_fits(tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only the tools the script uses, and a "python3" that is too old: nothing else to find.
    for tool in ("ls", "sort"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {"PATH": str(bin_dir), "PYENV_ROOT": str(tmp_path / "none"), "PYTHON": str(fake), "HOME": str(tmp_path)}
    result = subprocess.run([shutil.which("bash"), str(ROOT / "tools" / "find-python.sh")], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "no Python >= 3.12 found" in result.stderr


@pytest.mark.slow
def test_the_workflow_runs_with_the_interpreter_of_any_environment_that_has_the_pins(tmp_path):
    """The conda route: `mamba env create -f environment.yml`, activate it, run `snakemake`.
    Nothing names the project's .venv: the steps run with the interpreter that runs
    Snakemake. Stood in for here by a second environment whose packages are the pinned set."""
    import sys
    import sysconfig

    from conftest import copy_workflow, tiny_config

    other = tmp_path / "other-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    site = next(other.glob("lib/python*/site-packages"))
    (site / "pinned.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = copy_workflow(tmp_path / "project")
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    python = other / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "snakemake", "--cores", "2", "results/spacex/full_pooling/trace.nc"],
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "PIPELINE_WORKER_VERBOSE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"with {python}" in result.stderr
    assert (workdir / "logs" / "spacex" / "full_pooling" / "sample.log").read_text().rstrip().endswith("(warm worker)")
