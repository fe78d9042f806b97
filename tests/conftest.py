import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

SPACEX = ROOT / "config" / "data" / "spacex.csv"
SPACEX_COLUMNS = {"group": "mission", "trials": "launches", "successes": "successes"}


@pytest.fixture(scope="session")
def spacex_prepared(tmp_path_factory):
    """The SpaceX table as prepare_data writes it."""
    import prepare_data

    path = tmp_path_factory.mktemp("data") / "data.csv"
    prepare_data.main(str(SPACEX), str(path), **SPACEX_COLUMNS)
    return path


def tiny_config(**overrides) -> dict:
    """The repository's config with sampling cut down so a whole run takes seconds."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["sampling"].update(draws=100, tune=100, chains=2)
    for key, value in overrides.items():
        config[key] = value
    return config


# The models of the repository's config, in its order: what a default run fits.
CONFIGURED_MODELS = list(tiny_config()["models"])


def copy_workflow(destination: Path) -> Path:
    """A private copy of the project (workflow, scripts, config) to run Snakemake in."""
    for part in ("workflow", "scripts", "config"):
        shutil.copytree(ROOT / part, destination / part, ignore=shutil.ignore_patterns("__pycache__"))
    # Rules name it in `conda:`; Snakemake records it with every job.
    shutil.copy(ROOT / "environment.yml", destination)
    return destination


# Snakemake's own notice, printed first by every run that reads the workflow's profile.
PROFILE_NOTICE = "Using workflow specific profile workflow/profiles/default for setting default command line arguments."


def messages(stderr: str) -> list[str]:
    """What a run printed to stderr, without Snakemake's profile notice."""
    return [line for line in stderr.strip().splitlines() if line != PROFILE_NOTICE]


def worker_processes(scripts: Path, owner_pid: int | None = None) -> list[int]:
    """Warm workers started from `scripts`/worker.py, and the steps they forked (which share
    their command line); only those of one Snakemake process if `owner_pid` is given."""
    import json

    found = []
    wanted = [str(scripts / "worker.py").encode(), b"serve"]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if command[-3:-1] != wanted:
            continue
        if owner_pid is not None:
            owners = [json.loads(item.split(b"=", 1)[1]).get("pid") for item in environ if item.startswith(b"PIPELINE_WORKER=")]
            if owner_pid not in owners:
                continue
        found.append(int(entry.name))
    return found


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result


@pytest.fixture
def workflow_copy(tmp_path):
    """A copy of the project with a tiny-settings config at config/config.yaml."""
    copy_workflow(tmp_path)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    return tmp_path


# Enough draws for checks to a few Monte Carlo standard errors, still seconds per model.
SAMPLING = {"sampler": "nutpie", "draws": 2000, "tune": 1000, "chains": 4, "seed": 1}
TARGET_ACCEPT = {"no_pooling": 0.95, "full_pooling": None, "hierarchical": 0.98, "hierarchical_logit": 0.95}


@pytest.fixture(scope="session")
def spacex_traces(spacex_prepared, tmp_path_factory):
    """The three models fitted to the SpaceX data once per test session: name -> trace path."""
    import sample

    out = tmp_path_factory.mktemp("traces")
    traces = {}
    for offset, (name, target_accept) in enumerate(TARGET_ACCEPT.items()):
        path = out / f"{name}.nc"
        sample.main(
            str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{name}.py"), str(path),
            dataset="spacex", model=name, sampling=SAMPLING, settings={"target_accept": target_accept},
            seed=1000 + offset, threads=2,
        )
        traces[name] = path
    return traces


K_THRESHOLD = 0.7


@pytest.fixture(scope="session")
def cross_validated(spacex_traces, spacex_prepared, tmp_path_factory):
    """Leave-one-group-out results (scripts/loo.py) of every SpaceX trace: name -> Dataset."""
    import loo
    from common import read_datatree

    out = tmp_path_factory.mktemp("loo")
    results = {}
    for name, trace in spacex_traces.items():
        path = out / f"{name}.nc"
        loo.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{name}.py"), str(trace), str(path),
                 sampling=SAMPLING, settings={"target_accept": TARGET_ACCEPT[name]}, seed=21,
                 k_threshold=K_THRESHOLD, max_refits=10)
        results[name] = (path, read_datatree(path)["loo"].to_dataset())
    return results


def planned_outputs(workdir: Path, *args: str) -> set[str]:
    """What a dry run would make: every output of every job but `all`."""
    result = run_snakemake(workdir, "--dry-run", *args)
    planned, rule = set(), None
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("output:") and rule != "all":
            planned.update(name.strip() for name in line.split(":", 1)[1].split(","))
    return planned


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The workflow run to completion once on tiny settings: (workdir, CompletedProcess)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    return workdir, run_snakemake(workdir)
