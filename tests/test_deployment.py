"""The workflow deployed as Snakemake workflows are: used as a `module` by another workflow
(from a path, and from a git repository as snakedeploy sets it up), and run warm whatever
profile Snakemake reads."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common import read_datatree
from conftest import ROOT, copy_workflow, run_snakemake, tiny_config

MODELS = {"full_pooling": None, "hierarchical": {"target_accept": 0.9}}


def host_config(host: Path) -> None:
    """The config a deployment copies into the host (snakedeploy copies config/), made tiny."""
    if not (host / "config").exists():
        shutil.copytree(ROOT / "config", host / "config")
    (host / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(models=MODELS)))


HOST_SNAKEFILE = """configfile: "config/config.yaml"


module pooling:
    snakefile:
        {source}
    config:
        config


use rule * from pooling as pooling_*


rule host_only:
    output:
        "host_only.txt",
    shell:
        "touch {{output}}"
"""


def assert_complete(host: Path) -> None:
    folder = host / "results" / "spacex"
    assert (folder / "comparison.csv").stat().st_size > 0
    for model in MODELS:
        assert read_datatree(folder / model / "trace.nc")["posterior"].sizes["draw"] == 100
        for log in (host / "logs" / "spacex" / model).glob("*.log"):
            assert log.read_text().rstrip().endswith("(warm worker)"), log
    assert not (host / "host_only.txt").exists()  # the module's targets are its own rules' only


@pytest.mark.slow
def test_the_workflow_runs_as_a_module_of_another_workflow(tmp_path):
    """What snakedeploy writes, with the rules renamed (`use rule * ... as pooling_*`): the
    scripts are found from the module's own directory, targets come from its own rules,
    the step from each rule's code (not its new name), outputs land in the host."""
    host = tmp_path / "host"
    (host / "workflow").mkdir(parents=True)
    host_config(host)
    (host / "workflow" / "Snakefile").write_text(HOST_SNAKEFILE.format(source=f'"{ROOT / "workflow" / "Snakefile"}"'))
    result = run_snakemake(host)
    assert "pooling_all" in result.stderr
    assert_complete(host)


@pytest.mark.slow
def test_snakedeploy_deploys_it_from_a_git_repository(tmp_path):
    """`snakedeploy deploy-workflow` from a local repository: it copies config/ and
    profiles/ and writes a module declaration. For a local source, snakedeploy 0.17.1
    writes the Snakefile's path relative to the repository, which does not resolve from
    the host; docs/deployment.md says to replace it with gitfile(), Snakemake's local
    counterpart of the github() that snakedeploy writes for a GitHub URL. Through either,
    Snakemake reads the workflow from git objects, not from a directory: the steps' files
    come through its source cache (workflow/sources.txt)."""
    repository = tmp_path / "pooling"
    copy_workflow(repository)
    for name in ("profiles", "workflow"):
        shutil.copytree(ROOT / name, repository / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-C", str(repository)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the workflow"], check=True)
    host = tmp_path / "host"
    snakedeploy = Path(sys.executable).parent / "snakedeploy"
    deployed = subprocess.run([str(snakedeploy), "deploy-workflow", str(repository), str(host), "--branch", "main"],
                              capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stderr
    assert (host / "config" / "data" / "spacex.csv").exists() and (host / "profiles" / "slurm" / "config.yaml").exists()
    snakefile = (host / "workflow" / "Snakefile").read_text()
    assert "module pooling:" in snakefile and "use rule * from pooling" in snakefile
    gitfile = f'gitfile("{repository}", path="workflow/Snakefile", ref="main")'
    snakefile = re.sub(r"(snakefile:\s*\n\s*)(\S.*)\n", lambda m: m.group(1) + gitfile + "\n", snakefile, count=1)
    (host / "workflow" / "Snakefile").write_text(snakefile)
    host_config(host)
    result = run_snakemake(host)
    assert "Finished jobid: 0 (Rule: all)" in result.stderr
    assert_complete(host)
    # The steps ran from the copy fetched out of git, not from this repository.
    copies = list((host / ".snakemake" / "pipeline-sources").glob("*/scripts/sample.py"))
    # (Snakemake reads a gitfile() through GitPython, which drops the final newline.)
    assert len(copies) == 1 and copies[0].read_bytes().rstrip() == (ROOT / "scripts" / "sample.py").read_bytes().rstrip()
    # A second run fetches again and finds nothing changed: nothing reruns.
    again = run_snakemake(host)
    assert "Nothing to be done" in again.stderr


def test_the_source_list_holds_every_file_the_steps_run_or_read():
    listed = {line for line in (ROOT / "workflow" / "sources.txt").read_text().splitlines() if line and not line.startswith("#")}
    patterns = ("scripts/*.py", "scripts/models/*.py", "scripts/runtime/*.py", "workflow/schemas/*")
    present = {p.relative_to(ROOT).as_posix() for pattern in patterns for p in ROOT.glob(pattern)}
    assert listed == present


WHOAMI_RULE = """

rule whoami:
    output:
        "whoami.txt",
    run:
        import os

        with open(output[0], "w") as handle:
            handle.write(str(os.getpid()))
"""


@pytest.mark.slow
def test_steps_run_in_snakemake_own_process_whatever_the_profile(tmp_path):
    """With `--workflow-profile` elsewhere, workflow/profiles/default (force-use-threads) is
    not read; run: blocks still run in threads of Snakemake's process, not in a Snakemake
    process started for each (3x slower)."""
    workdir = copy_workflow(tmp_path / "project")
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(models={"full_pooling": None})))
    with open(workdir / "workflow" / "rules" / "data.smk", "a") as rules:
        rules.write(WHOAMI_RULE)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.yaml").write_text("printshellcmds: false\n")
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--workflow-profile", str(tmp_path / "elsewhere"),
               "whoami.txt", "results/spacex/full_pooling/trace.nc"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert "workflow/profiles/default" not in stderr
    assert (workdir / "whoami.txt").read_text() == str(process.pid)
    for log in ("prepare_data", "full_pooling/sample"):
        assert (workdir / "logs" / "spacex" / f"{log}.log").read_text().rstrip().endswith("(warm worker)")
