import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

# Steps compile with exact numerics (common.exact_numerics); so do the tests that call them here.
from common import exact_numerics  # noqa: E402

exact_numerics()

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
    """Step workers started from `scripts`/runtime, their zygotes and the steps they forked
    (which share their command line); only those started by one process if `owner_pid`
    is given."""
    import json

    found = []
    wanted = [str(scripts / "runtime" / "__main__.py").encode(), b"serve"]
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


def step_processes(scripts: Path) -> list[int]:
    """The steps that workers started from `scripts`/runtime are running: each leads a
    process group of its own, while a worker leads its session (and its zygotes are in
    its group)."""
    steps = []
    for pid in worker_processes(scripts):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid and int(fields[3]) != pid:
            steps.append(pid)
    return steps


def wait_until(condition, seconds, what):
    """Poll `condition` for up to `seconds`; fail naming `what` if it never holds."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """The process has ended (or is a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def owning_a_worker(patch):
    """A generator for fixtures: this test process as the owner of a run's step worker
    (claimed through `patch`, a MonkeyPatch, so that the claim is undone), yielding the
    owner's identity; the worker it started is stopped afterwards."""
    import runtime
    from runtime import client

    saved = client.Client._instance
    client.Client._instance = None
    patch.setenv(runtime.ENV, "")  # recorded, so that the claim below is undone
    patch.delenv(client.IDLE_ENV, raising=False)
    client.claim(0)
    try:
        yield client.owner()
    finally:
        for process in client.Client.get().started.values():
            process.kill()
            process.wait()
        client.Client._instance = saved


# Workers that the tests' runs leave behind leave after a minute without a step (instead of
# the default 15), and every worker of a test's project is stopped when the session ends.
os.environ.setdefault("PIPELINE_WORKER_IDLE_MINUTES", "1")


@pytest.fixture(scope="session", autouse=True)
def stop_test_workers(tmp_path_factory):
    yield
    base = str(tmp_path_factory.getbasetemp().resolve())
    from runtime.processes import alive
    from runtime.room import RoomUnusable, room, servers

    try:
        for server in servers(room()):
            if str(server.get("project", "")).startswith(base) and alive(server.get("pid"), server.get("start")):
                os.kill(server["pid"], signal.SIGTERM)
    except RoomUnusable:
        pass


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
