"""The workflow on a real SLURM scheduler (slurmctld, slurmd, slurmdbd from Debian's packages).

The test starts a single-node cluster with tools/slurm-up.sh, runs the workflow on two data
sets through Snakemake's SLURM executor plugin with the project's profile, and checks with
`sacct` that each data set went to SLURM as one job (not one per step), that every job
completed, that the steps ran warm inside it, and that the traces equal a local run's bit
for bit. The cluster is stopped at the end, also when the test fails.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import pytest
import yaml

from common import read_datatree
from conftest import ROOT, copy_workflow, run_snakemake, tiny_config, worker_processes

pytestmark = pytest.mark.slow

CONFIGURED = tiny_config()["models"]

GROUPS = 24
# Two models keep the test short: each step on SLURM costs an `srun` and a Snakemake start
# (about 3 s), and what is tested (grouping, completion, equal traces) does not depend on
# how many models there are.
MODELS = ["full_pooling", "hierarchical"]


def can_run_a_cluster() -> str | None:
    if os.geteuid() != 0:
        return "starting SLURM daemons needs root"
    if not shutil.which("dpkg") or not (shutil.which("apt-get") or shutil.which("slurmctld")):
        return "needs Debian's SLURM packages (or apt-get to install them)"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = can_run_a_cluster()
    if reason:
        # CI must prove the cluster path; elsewhere, say why it was not tried.
        if os.environ.get("CI"):
            pytest.fail(f"cluster test cannot run in CI: {reason}")
        pytest.skip(reason)
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "tools" / "slurm-up.sh")], check=True)
    print(f"cluster up in {time.perf_counter() - started:.1f} s")
    try:
        yield
    finally:
        subprocess.run(["bash", str(ROOT / "tools" / "slurm-down.sh")], check=False)


def many_groups_csv(path):
    """A data set of GROUPS groups with varied sizes and rates, fixed by its seed."""
    rng = np.random.default_rng(2024)
    trials = rng.integers(3, 60, size=GROUPS)
    successes = rng.binomial(trials, rng.beta(8, 2, size=GROUPS))
    lines = ["group,trials,successes"] + [f"g{i:02d},{n},{y}" for i, (n, y) in enumerate(zip(trials, successes, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def project(workdir):
    copy_workflow(workdir)
    shutil.copytree(ROOT / "profiles", workdir / "profiles")
    many_groups_csv(workdir / "config" / "data" / "many.csv")
    config = tiny_config(models={model: CONFIGURED[model] for model in MODELS})
    config["datasets"]["many"] = {"path": "config/data/many.csv"}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def sacct_jobs(run_id):
    result = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--name", run_id, "-S", "now-1hour", "-o", "JobID,State,Start,End,Comment"],
        capture_output=True, text=True, check=True,
    )
    jobs = []
    for line in result.stdout.splitlines():
        job_id, state, start, end, comment = line.split("|", 4)
        jobs.append({"id": job_id, "state": state, "start": datetime.fromisoformat(start),
                     "end": datetime.fromisoformat(end), "comment": comment})
    return jobs


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = project(tmp_path_factory.mktemp("slurm"))
    started = time.perf_counter()
    result = run_snakemake(
        workdir, "--profile", "profiles/slurm", "--jobs", "6",
        # A test cluster answers at once; a real one is asked less often (see the profile).
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
    )
    elapsed = time.perf_counter() - started
    log = result.stdout + result.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    steps = int(re.search(r"(\d+) of \1 steps \(100%\) done", log).group(1))
    # sacct learns of the last jobs' ends from slurmctld within a few seconds.
    for _ in range(30):
        jobs = sacct_jobs(run_id)
        if jobs and all(j["state"] == "COMPLETED" for j in jobs):
            break
        time.sleep(1)
    print(f"{steps - 1} steps in {len(jobs)} SLURM jobs, {elapsed:.1f} s")
    return workdir, jobs, steps


def test_each_data_set_is_one_slurm_job_and_every_job_completed(slurm_run):
    workdir, jobs, steps = slurm_run
    assert steps - 1 > 40  # two data sets of ~24 steps each (all but the local rule `all`)
    assert len(jobs) == 2, [j["comment"] for j in jobs]
    assert {j["state"] for j in jobs} == {"COMPLETED"}
    assert all(j["comment"].startswith("rule_dataset_") for j in jobs)
    for dataset in ("spacex", "many"):
        assert (workdir / "results" / dataset / "forest_models.png").is_file()


def test_steps_ran_warm_inside_the_submissions(slurm_run):
    workdir, _, steps = slurm_run
    ends = [line for log in (workdir / "logs").rglob("*.log") for line in log.read_text().splitlines() if line.startswith("step ")]
    assert len(ends) == steps - 1
    # Each step's Snakemake (`srun snakemake ...`) hands it to the submission's worker.
    warm = "(warm worker, called from a Snakemake process of its own)"
    assert all(line.endswith(warm) for line in ends), [e for e in ends if not e.endswith(warm)][:3]
    # Each submission's worker ended with it.
    assert not worker_processes(workdir / "scripts")


def test_every_rule_is_grouped_in_the_profile():
    """A rule missing from the profile's groups would go to SLURM one job per step."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    grouped = {entry.split("=")[0] for entry in profile["groups"]}
    listed = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=ROOT, capture_output=True, text=True, check=True)
    rules = {line.split(" (")[0].strip() for line in listed.stdout.splitlines() if line.strip() and not line.startswith("Using ")}
    runnable = rules - {"all", "sbc"}  # target rules: nothing to run
    assert runnable and grouped == runnable


def test_traces_equal_a_local_run(slurm_run, tmp_path):
    workdir, _, _ = slurm_run
    local = project(tmp_path)
    run_snakemake(local, *[f"results/many/{m}/trace.nc" for m in MODELS])
    for model in MODELS:
        a = read_datatree(workdir / "results" / "many" / model / "trace.nc")
        b = read_datatree(local / "results" / "many" / model / "trace.nc")
        assert a["observed_data"].sizes["group"] == GROUPS
        for name, values in a["posterior"].data_vars.items():
            assert values.values.tobytes() == b["posterior"][name].values.tobytes(), (model, name)
