"""Side-by-side timings of the pipeline: against the article's notebook, for reruns, per
job, and as the problem grows. Everything runs in one invocation on this machine, in
scratch copies of the project, so that ratios compare like with like.

    python benchmarks/run.py [--quick] [--repeat N] [--sections cold,noop,...]

Prints a table and writes it as CSV to benchmarks/results/ (one file per run, plus
latest.csv), with the machine, the versions and the date in every row, and a plot of
the latest run to benchmarks/results/latest.png.
"""

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PYTHON = sys.executable
SECTIONS = ["cold", "rerun", "noop", "per_job", "sbc", "groups", "datasets"]
# The scaling run fits this model alone, as a user with thousands of groups would.
SCALING_MODELS = ["hierarchical"]


def project(where: Path) -> Path:
    """A scratch copy of the project that runs with this virtualenv."""
    where.mkdir(parents=True)
    for name in ("workflow", "scripts", "config", "tools"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("environment.yml", "Makefile", "requirements.txt"):
        shutil.copy2(ROOT / name, where / name)  # copy2 keeps the time: make must not reinstall
    (where / ".venv").symlink_to(sys.prefix)
    return where


def seconds(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"benchmark command failed in {cwd}: {' '.join(command)}\n{result.stderr[-3000:]}")
    return elapsed


def snakemake(*args: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "--cores", "all", *args]


def set_config(workdir: Path, update) -> dict:
    """Apply `update` to the project's config file; return the config as written."""
    path = workdir / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    update(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def simulated_table(path: Path, groups: int, seed: int) -> None:
    """Binomial data from a Beta(8, 2) population, 5 to 300 trials per group."""
    rng = np.random.default_rng(seed)
    trials = rng.integers(5, 301, size=groups)
    successes = rng.binomial(trials, rng.beta(8, 2, size=groups))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        handle.write("group,trials,successes\n")
        for index in range(groups):
            handle.write(f"g{index},{trials[index]},{successes[index]}\n")


def median_of(repeat: int, measure) -> float:
    return statistics.median(measure() for _ in range(repeat))


class Table:
    def __init__(self, out: Path):
        self.rows: list[dict] = []
        self.out = out

    def add(self, section: str, what: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append({"section": section, "what": what, "value": round(value, 3), "unit": unit, "note": note})
        print(f"{section:<9} {what:<58} {value:>10.2f} {unit:<6} {note}", flush=True)
        # Kept as it grows, so that an interrupted long run still leaves its rows.
        write_rows(self.rows, self.out / "partial.csv")


def cold(table: Table, scratch: Path, repeat: int) -> Path:
    """The notebook script and the pipeline, alternately, on empty results in a new project
    copy (no step worker yet: it starts with the run); the same copy's results deleted and
    run again, its worker still up (as a user's second run within worker.idle_minutes); and
    the pipeline with every step in a fresh Python process (PIPELINE_WARM=0), which is how
    every step ran before the warm worker."""
    notebook_times, pipeline_times, fresh_times, ready_times, second_times = [], [], [], [], []
    for attempt in range(repeat):
        notebook_times.append(seconds([PYTHON, str(ROOT / "benchmarks" / "notebook.py"), str(scratch / f"nb{attempt}")], ROOT))
        fresh = project(scratch / f"cold_fresh{attempt}")
        fresh_times.append(seconds(snakemake(), fresh, env={**os.environ, "PIPELINE_WARM": "0"}))
        workdir = project(scratch / f"cold{attempt}")
        elapsed, stderr = timed(snakemake(), workdir, env={**os.environ, "PIPELINE_WORKER_VERBOSE": "1"})
        pipeline_times.append(elapsed)
        ready = re.search(r"step worker: ready in ([0-9.]+) s", stderr)
        ready_times.append(float(ready.group(1)) if ready else float("nan"))
        # The first run's results and logs are kept aside (per_job reads them); the second
        # run starts from none.
        (workdir / "first").mkdir()
        for name in ("results", "logs"):
            (workdir / name).rename(workdir / "first" / name)
        second_times.append(seconds(snakemake(), workdir))
    notebook, pipeline = statistics.median(notebook_times), statistics.median(pipeline_times)
    second = statistics.median(second_times)
    table.add("cold", "notebook script (benchmarks/notebook.py)", notebook, "s", f"median of {repeat}")
    table.add("cold", "snakemake --cores all, empty results, no worker yet", pipeline, "s", f"median of {repeat}")
    table.add("cold", "the same, each step a fresh process (PIPELINE_WARM=0)", statistics.median(fresh_times), "s", f"median of {repeat}")
    table.add("cold", "worker start-up (imports and warm-up, once per run)", statistics.median(ready_times), "s", f"median of {repeat}")
    table.add("cold", "second run, results deleted, its worker still up", second, "s", f"median of {repeat}")
    table.add("cold", "pipeline / notebook", pipeline / notebook, "ratio", "target <= 1.0")
    table.add("cold", "second cold run (worker warm) / notebook", second / notebook, "ratio", "target <= 0.8")
    table.notebook = notebook
    return workdir


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"benchmark command failed in {cwd}: {' '.join(command)}\n{result.stderr[-3000:]}")
    return elapsed, result.stderr


def rerun(table: Table, workdir: Path, repeat: int) -> None:
    values = iter([0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.9][:repeat])
    def after_a_change():
        return seconds(snakemake("--config", f"models={{hierarchical: {{target_accept: {next(values)}}}}}"), workdir)

    elapsed = median_of(repeat, after_a_change)
    table.add("rerun", "one model's setting changed (hierarchical target_accept)", elapsed, "s", f"median of {repeat}")
    table.add("rerun", "rerun / notebook", elapsed / table.notebook, "ratio", "target <= 0.5")
    # Leave the tree complete for the default config again.
    seconds(snakemake(), workdir)


def noop(table: Table, workdir: Path, repeat: int) -> None:
    version_s = median_of(repeat, lambda: seconds([PYTHON, "-m", "snakemake", "--version"], workdir))
    snakemake_s = median_of(repeat, lambda: seconds(snakemake(), workdir))
    make_s = median_of(repeat, lambda: seconds(["make", "run"], workdir))
    table.add("noop", "snakemake --version (the floor)", version_s, "s", f"median of {repeat}")
    table.add("noop", "snakemake on a complete tree", snakemake_s, "s", f"median of {repeat}")
    table.add("noop", "make run on a complete tree", make_s, "s", f"median of {repeat}")
    table.add("noop", "snakemake / snakemake --version", snakemake_s / version_s, "ratio", "target <= 1.5")


# The last line of every step's log (scripts/worker.py).
STEP_LINE = re.compile(r"^step (\S+): (.+?), wall ([0-9.]+) s(?:, CPU ([0-9.]+) s, peak RSS ([0-9.]+) MB)?")


def job_times(workdir: Path, dataset: str) -> dict[tuple[str, str], dict]:
    """Per job: wall seconds, CPU seconds and peak RSS (MB) of its step, from its log."""
    times = {}
    for path in sorted((workdir / "logs" / dataset).rglob("*.log")):
        matches = [STEP_LINE.match(line) for line in path.read_text().splitlines()]
        matches = [m for m in matches if m]
        if not matches:
            continue
        last = matches[-1]
        scope = path.parent.name if path.parent.name != dataset else "-"
        times[(last.group(1), scope)] = {
            "wall": float(last.group(3)),
            "cpu": float(last.group(4) or "nan"),
            "rss": float(last.group(5) or "nan"),
        }
    return times


def sampling_seconds(trace: Path) -> float:
    """nutpie's own time for the draws (tuning included), recorded in the trace."""
    import xarray as xr

    with xr.open_datatree(trace, engine="netcdf4") as tree:
        return float(tree["posterior"].attrs.get("sampling_time", "nan"))


def compile_seconds(log: Path, sampling: float) -> float:
    match = re.search(r"compiling and drawing took ([0-9.]+) s", log.read_text())
    return float(match.group(1)) - sampling if match else float("nan")


def per_job(table: Table, workdir: Path) -> None:
    """Each step of a cold run (its results and logs under `workdir`)."""
    times = job_times(workdir, "spacex")
    others, overheads = [], []
    for (rule, model), step in sorted(times.items(), key=lambda item: -item[1]["wall"]):
        label = f"{rule} ({model})" if model != "-" else rule
        if rule == "sample":
            draws = sampling_seconds(workdir / "results" / "spacex" / model / "trace.nc")
            compiling = compile_seconds(workdir / "logs" / "spacex" / model / "sample.log", draws)
            overheads.append(step["wall"] - draws)
            table.add("per_job", f"{label}: wall - sampling", step["wall"] - draws, "s",
                      f"wall {step['wall']:.2f}, sampling {draws:.2f}, compile {compiling:.2f}, peak RSS {step['rss']:.0f} MB")
        else:
            if rule != "prepare_data":  # the first step waits for the worker to start
                others.append(step["wall"])
            table.add("per_job", f"{label}: wall", step["wall"], "s", f"peak RSS {step['rss']:.0f} MB")
    table.add("per_job", "a non-sampling step, wall (median)", statistics.median(others), "s", "target <= 0.3")
    table.add("per_job", "a sampling step, wall - draws (largest)", max(overheads), "s", "target <= 2")
    table.add("per_job", "jobs in the cold run", len(times), "jobs")


class MemoryWatch:
    """Peak memory of a process and all its descendants, sampled twice a second.

    Forked steps share the worker's pages, so the total is the sum of proportional set
    sizes (PSS: shared pages split between their sharers), not of RSS.
    """

    def __init__(self, pid: int):
        import threading

        self.pid, self.peak_pss, self.worker_rss, self.snakemake_rss = pid, 0.0, [], []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    @staticmethod
    def memory(pid: int) -> dict:
        values = {}
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    values[key] = int(rest.split()[0]) / 1024
        return values

    def watch(self) -> None:
        import psutil

        while not self.done.wait(0.5):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                total = 0.0
                for process in tree:
                    try:
                        memory = self.memory(process.pid)
                    except OSError:
                        continue
                    total += memory.get("Pss", 0)
                    command = " ".join(process.cmdline())
                    if process.pid == self.pid:
                        self.snakemake_rss.append(memory["Rss"])
                    elif command.endswith("runtime/__main__.py serve") and process.ppid() == self.pid:
                        self.worker_rss.append(memory["Rss"])
                self.peak_pss = max(self.peak_pss, total)
            except (psutil.NoSuchProcess, OSError):
                continue

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def watched(command: list[str], cwd: Path) -> tuple[float, MemoryWatch]:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watch = MemoryWatch(process.pid)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    watch.stop()
    if process.returncode != 0:
        sys.exit(f"benchmark command failed in {cwd}: {' '.join(command)}\n{stderr[-3000:]}")
    return elapsed, watch


def groups(table: Table, scratch: Path, sizes: list[int]) -> None:
    """The hierarchical model alone on ever more simulated groups, 1,000 draws x 4 chains:
    every output of the data set, end to end."""
    workdir = project(scratch / "groups")
    for size in sizes:
        simulated_table(workdir / "config" / "data" / f"groups_{size}.csv", size, seed=size)

    def update(config):
        config["datasets"] = {f"groups_{n}": {"path": f"config/data/groups_{n}.csv"} for n in sizes}
        config["models"] = {name: config["models"][name] for name in SCALING_MODELS if name in config["models"]}
        config["sampling"].update(draws=1000, tune=1000, chains=4)

    models = list(set_config(workdir, update)["models"])
    for size in sizes:
        dataset = f"groups_{size}"
        elapsed, _memory = watched(snakemake("--", f"results/{dataset}/comparison.csv", *[
            f"results/{dataset}/{m}/{name}"
            for m in models
            for name in ("summary.csv", "new_group.png", "ppc.png", "trace.png", "forest.png", "prior_predictive.png")
        ], *[f"results/{dataset}/{name}" for name in ("forest_models.png", "shrinkage.png", "ranks.png", "funnel.png",
                                                      "overview.json")]), workdir)
        steps = job_times(workdir, dataset)
        for model in models:
            folder = workdir / "results" / dataset / model
            report = json.loads((folder / "diagnostics.json").read_text())
            draws = sampling_seconds(folder / "trace.nc")
            note = (f"sample step {steps[('sample', model)]['wall']:.1f} s (draws {draws:.1f} s), max R-hat {report['max_rhat']:.3f}, "
                    f"divergences {report['divergences']}, trace.nc {(folder / 'trace.nc').stat().st_size / 2**20:.0f} MB")
            table.add("groups", f"{model}, {size} groups: every output, end to end", elapsed, "s",
                      note + {10000: ", target <= 20 s", 100000: ", target <= 60 s", 1000000: ", target <= 600 s"}.get(size, ""))
        slowest = max(steps.items(), key=lambda item: item[1]["wall"])
        largest = max(steps.items(), key=lambda item: item[1]["rss"])
        table.add("groups", f"{size} groups: slowest step", slowest[1]["wall"], "s", f"{slowest[0][0]} ({slowest[0][1]})")
        table.add("groups", f"{size} groups: largest peak RSS of a step", largest[1]["rss"], "MB",
                  f"{largest[0][0]} ({largest[0][1]})" + {10000: ", target <= 2000 MB", 100000: ", target <= 3000 MB",
                                                          1000000: ", target <= 8000 MB"}.get(size, ""))
        on_disk = sum(path.stat().st_size for path in (workdir / "results" / dataset).rglob("*") if path.is_file())
        table.add("groups", f"{size} groups: results on disk", on_disk / 2**20, "MB",
                  ", ".join(f"{name} {(workdir / 'results' / dataset / m / name).stat().st_size / 2**20:.0f} MB"
                            for m in models for name in ("trace.nc", "ppc.nc"))
                  + (", target <= 10240 MB" if size == 1000000 else ""))


def sbc(table: Table, workdir: Path) -> None:
    """`snakemake sbc` with the defaults, after the cold run (its data are prepared)."""
    elapsed = seconds(snakemake("sbc"), workdir)
    table.add("sbc", "snakemake sbc, default settings", elapsed, "s", "target <= 30 s")


def datasets(table: Table, scratch: Path, counts: list[int]) -> None:
    """1, 10, 50 small data sets through every model and figure, article settings, each
    count in a new project copy (its own worker); and what each data set beyond the first
    costs, against the notebook (which fits one)."""
    per_count = {}
    for count in counts:
        workdir = project(scratch / f"datasets_{count}")
        names = [f"set_{index:02d}" for index in range(count)]
        for index, name in enumerate(names):
            simulated_table(workdir / "config" / "data" / f"{name}.csv", 4 + index % 9, seed=1000 + index)

        def update(config, names=names):
            columns = {"group": "group", "trials": "trials", "successes": "successes"}
            config["datasets"] = {n: {"path": f"config/data/{n}.csv", **columns} for n in names}

        models = len(set_config(workdir, update)["models"])
        elapsed, memory = watched(snakemake(), workdir)
        jobs = sum(len(job_times(workdir, name)) for name in names)
        target = ", target <= 600 s" if count == 50 else ""
        table.add("datasets", f"{count} data sets x {models} models, end to end", elapsed, "s", f"{jobs} jobs{target}")
        table.add("datasets", f"{count} data sets: per data set", elapsed / count, "s")
        per_count[count] = elapsed
        if 1 in per_count and count > 1 and hasattr(table, "notebook"):
            extra = (elapsed - per_count[1]) / (count - 1)
            table.add("datasets", f"each extra data set ({count} at once) / notebook", extra / table.notebook, "ratio",
                      f"{extra:.1f} s per data set beyond the first; target <= 0.85")
        steps = [step["rss"] for name in names for step in job_times(workdir, name).values()]
        table.add("datasets", f"{count} data sets: peak memory, Snakemake and every process it started (PSS)", memory.peak_pss, "MB")
        for who, seen in (("the worker", memory.worker_rss), ("Snakemake", memory.snakemake_rss)):
            last, first = (seen[-1], f"first {seen[0]:.0f} MB") if seen else (float("nan"), "")
            table.add("datasets", f"{count} data sets: {who}'s RSS, first and last seen", last, "MB", first)
        shared = "includes the pages it shares with the worker"
        table.add("datasets", f"{count} data sets: largest peak RSS of a step", max(steps), "MB", shared)


def environment() -> dict:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "versions": " ".join(f"{p}={version(p)}" for p in ("pymc", "nutpie", "arviz", "snakemake", "numpy"))
        + f" python={platform.python_version()}",
    }


def write_rows(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    context = environment()
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], *context])
        writer.writeheader()
        writer.writerows({**row, **context} for row in rows)


def write(table: Table) -> Path:
    stamp = environment()["date"].replace(":", "").replace("-", "")
    path = table.out / f"{stamp}.csv"
    for target in (path, table.out / "latest.csv"):
        write_rows(table.rows, target)
    (table.out / "partial.csv").unlink(missing_ok=True)
    plot([{**row} for row in table.rows], table.out / "latest.png")
    (table.out / "latest.md").write_text(markdown(table.rows))
    return path


def markdown(rows: list[dict]) -> str:
    """The table as Markdown, for the README."""
    context = environment()
    lines = [
        f"Measured {context['date']} on {context['machine']}; {context['versions']}.",
        "",
        "| section | what | value | unit | note |",
        "|---|---|---:|---|---|",
    ]
    lines += [f"| {r['section']} | {r['what']} | {r['value']:.2f} | {r['unit']} | {r['note']} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Ratios against their targets, and time against problem size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [r for r in rows if r["unit"] == "ratio"]
    scaling = [r for r in rows if r["section"] == "groups" and r["what"].endswith("every output, end to end")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    if ratios:
        targets = [float(re.search(r"<= ([0-9.]+)", r["note"]).group(1)) for r in ratios]
        labels = [r["what"] for r in ratios]
        axes[0].barh(labels, [r["value"] for r in ratios], color="tab:blue", label="measured")
        axes[0].scatter(targets, labels, color="tab:red", marker="|", s=400, label="target", zorder=3)
        axes[0].set_xlabel("ratio (lower is better)")
        axes[0].legend(loc="upper right")
    for model in dict.fromkeys(r["what"].split(",")[0] for r in scaling):
        mine = [r for r in scaling if r["what"].startswith(f"{model},")]
        sizes = [int(re.search(r"(\d+) groups", r["what"]).group(1)) for r in mine]
        axes[1].plot(sizes, [r["value"] for r in mine], "o-", label=model)
    if scaling:
        axes[1].set_xscale("log")
        axes[1].set_xlabel("groups (1,000 draws x 4 chains)")
        axes[1].set_ylabel("every output of the data set, s")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scaling runs (groups up to 1,000; 1 and 10 data sets)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the cold, rerun and no-op timings")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--groups", help="comma-separated group counts for the scaling run (overrides --quick)")
    parser.add_argument("--datasets", help="comma-separated data-set counts (overrides --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the CSV, Markdown and plot go")
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    table = Table(args.out)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch_name:
        scratch = Path(scratch_name)
        print(f"{'section':<9} {'what':<58} {'value':>10} {'unit':<6} note")
        if {"cold", "rerun", "noop", "per_job", "sbc"} & set(sections):
            # The later sections reuse the last cold run's complete results tree.
            workdir = cold(table, scratch, args.repeat)
            if "per_job" in sections:
                per_job(table, workdir / "first")
            if "rerun" in sections:
                rerun(table, workdir, args.repeat)
            if "noop" in sections:
                noop(table, workdir, args.repeat)
            if "sbc" in sections:
                sbc(table, workdir)
        if "groups" in sections:
            sizes = [4, 100, 1000] if args.quick else [4, 100, 1000, 10000, 100000]
            groups(table, scratch, [int(n) for n in args.groups.split(",")] if args.groups else sizes)
        if "datasets" in sections:
            counts = [1, 10] if args.quick else [1, 10, 50]
            datasets(table, scratch, [int(n) for n in args.datasets.split(",")] if args.datasets else counts)
    print(f"written: {write(table)}")


if __name__ == "__main__":
    main()
