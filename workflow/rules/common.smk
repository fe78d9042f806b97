# Config and table checks, the warm-step glue, target lists, seeds and small helpers.

import functools
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.io import strip_wildcard_constraints
from snakemake.sourcecache import LocalSourceFile


def _project_root():
    """This repository's root as a local directory, however Snakemake got this file: the
    repository itself, or a local copy of it (`_local_copy`) when another workflow uses this
    one as a `module` from a remote source (`github(...)`, as snakedeploy writes, or
    `gitfile(...)`)."""
    rules_dir = workflow.current_basedir
    if isinstance(rules_dir, LocalSourceFile):
        return Path(rules_dir.get_path_or_uri(secret_free=True)).parent.parent
    return _local_copy(rules_dir)


def _local_copy(rules_dir):
    """The files the steps run and read (workflow/sources.txt), fetched through Snakemake's
    source cache into .snakemake/pipeline-sources/: steps import one another and are run by
    the worker, so they must lie side by side on disk. A file is rewritten only when its
    content changes, so that its modification time, which decides reruns, stays."""
    import hashlib
    import shutil

    origin = rules_dir.get_path_or_uri(secret_free=True)
    copy = Path(".snakemake", "pipeline-sources", hashlib.sha256(origin.encode()).hexdigest()[:16])
    listed = Path(workflow.source_path("../sources.txt")).read_text().splitlines()
    for name in (line.strip() for line in listed if line.strip() and not line.startswith("#")):
        fetched = Path(workflow.source_path(f"../../{name}"))
        target = copy / name
        if not target.is_file() or target.read_bytes() != fetched.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(fetched, partial)
            os.replace(partial, target)
    return copy.resolve()


ROOT = _project_root()
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import runtime  # noqa: E402
from runtime.compiled import warm_hook  # noqa: E402
from check_config import check_config, check_pairs, model_constant, model_file, model_shape  # noqa: E402
from common import UserError, derive_seed  # noqa: E402
from prepare_data import resolve, validate_later, validate_shape  # noqa: E402
from shapes import SHAPES  # noqa: E402

# Each data set's shape and columns (role -> column name), and each model's shape: models
# are fitted to the data sets of their shape only.
DATASET_SHAPE, DATASET_COLUMNS, MODEL_SHAPE = {}, {}, {}
try:
    _checked = check_config(config)
    # Tables are checked here too, not only in their job: a bad table then stops the run
    # before any job starts, so no earlier result is deleted or replaced. It is cheap.
    for _name, _table in _checked["datasets"].items():
        DATASET_SHAPE[_name], DATASET_COLUMNS[_name] = resolve(_name, _table)
        validate_shape(_table["path"], DATASET_SHAPE[_name], DATASET_COLUMNS[_name], _table["delimiter"])
        if "holdout" in _table:
            if DATASET_SHAPE[_name] != "binomial":
                raise UserError(
                    f"config key datasets.{_name}.holdout: later data are trials and successes; "
                    f"{_name} holds {DATASET_SHAPE[_name]} data"
                )
            validate_later(_table["path"], _table["group"], **_table["holdout"], delimiter=_table["delimiter"])
    MODEL_SHAPE.update({name: model_shape(name, settings) for name, settings in _checked["models"].items()})
    check_pairs(DATASET_SHAPE, MODEL_SHAPE)
except UserError as error:
    # One line, no traceback: the user's config is wrong, not the workflow.
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
config.clear()
config.update(_checked)

# Which step worker this Snakemake process will hand its steps to (none is started yet).
runtime.claim(config["worker"]["idle_minutes"])
# Steps' relative paths are relative to the directory Snakemake runs in, taken now: a
# host's shadow rule, running in another thread, may change the process's meanwhile.
WORKDIR = os.getcwd()


# Inputs are named relative to the working directory: Snakemake records the set of input
# paths, and absolute ones would make a moved or copied project rerun everything.

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
# This workflow's own rules carry it on their `code` input (see all_targets): a host that
# uses this workflow as a module has rules of its own, or of another copy of this one.
_THIS_WORKFLOW = object()


def step_code(step, *helpers):
    """The code a step runs: scripts/<step>.py, scripts/common.py and the other modules of
    scripts/ it imports, by name; the rule's `run:` block runs scripts/<step>.py.

    They are inputs of the rule, so editing one reruns exactly the jobs that run it
    (Snakemake tracks a run: block's own text, not the modules it calls). An input
    function rather than a list, so that it runs in the Snakemake process that plans the
    jobs (see `_run_steps_in_threads`) and carries the step's name for `all_targets`.
    """
    # scripts/common.py, which every step imports, imports scripts/shapes.py.
    files = [os.path.relpath(SCRIPTS / f"{name}.py") for name in dict.fromkeys((step, "common", "shapes", *helpers))]

    def code(wildcards):
        _run_steps_in_threads()
        _start_worker_early()
        return files

    code.step, code.workflow = step, _THIS_WORKFLOW
    return code


@functools.cache
def _run_steps_in_threads():
    """Run the rules' `run:` blocks in threads of Snakemake's own process, whatever profile
    was read.

    Without `--force-use-threads` (which workflow/profiles/default sets, but a run with
    `--workflow-profile` elsewhere, or this workflow as another's module, does not read),
    Snakemake starts a whole Snakemake process for every run: block, about 3 s each: the
    default run took 3x as long. A run: block here only waits on a socket, so a thread is
    all it needs. Snakemake has no setting a workflow can give itself for this; the
    execution settings it reads when it creates its executor, after the DAG is built, are
    set here while the DAG is built (this is called by the jobs' input functions).
    Guarded: if a Snakemake version has no such setting, say once why steps are slower.
    """
    settings = getattr(workflow, "execution_settings", None)
    # A shadow rule (of a host workflow) runs its job in a directory of its own, by
    # changing the working directory of the whole process: in a thread, that would move
    # every other thread's job too. Snakemake then keeps run: blocks out of threads.
    shadowed = [rule.name for rule in workflow.rules if getattr(rule, "shadow_depth", None)]
    if settings is None or not hasattr(settings, "use_threads") or shadowed:
        if not getattr(settings, "use_threads", False):
            reason = (
                f"the workflow has shadow rules ({', '.join(shadowed[:3])})"
                if shadowed
                else "this Snakemake has no such setting"
            )
            print(
                f"note: every step runs in a Snakemake process of its own (about 3 s more each): {reason}",
                file=sys.stderr,
            )
    elif not settings.use_threads:
        settings.use_threads = True


@functools.cache
def _start_worker_early():
    """Start the warm worker while Snakemake builds its DAG, when there is surely work to do
    here: its start (imports, warm-up: seconds) then overlaps Snakemake's own instead of
    holding up the first step.

    Surely work: a run that executes jobs locally (not a dry run, not one whose jobs all go
    to a cluster) and some target of this workflow is missing. A run whose targets all
    exist (nothing to do, or a rerun after a change) starts nothing here; if it turns out
    to have jobs, `onstart` (workflow/Snakefile) or the first step starts the worker.
    Called by the jobs' input functions, like `_run_steps_in_threads`.
    """
    try:
        local = workflow.local_exec and not workflow.dryrun and not workflow.touch
        planning = local and getattr(workflow.exec_mode, "name", "") == "DEFAULT"
    except AttributeError:  # another Snakemake: the worker starts later, no harm
        return
    if planning and any(not os.path.exists(target) for target in ALL_TARGETS):
        runtime.start("while Snakemake builds its DAG")


def stop_rescheduling_timers():
    """Let Snakemake exit as soon as its run is over, not up to a second later.

    After a round of scheduling, Snakemake's job scheduler may start a `threading.Timer`
    (the timespan of `--max-jobs-per-timespan`, 1 s by default) to schedule again; the
    timer is not a daemon thread, so the process waits for the last one before it exits.
    Called from `onsuccess` and `onerror`, after this run's scheduler has returned, this
    cancels the timers of that scheduler only (found by the function Snakemake gives them
    and the scheduler it holds; another workflow run in the same process keeps its own).
    If a Snakemake makes them otherwise, none is found and the run ends as before. Says
    how many with PIPELINE_WORKER_VERBOSE set (tests/test_workflow.py checks it finds them).
    """
    import threading

    scheduler = getattr(workflow, "scheduler", None)
    stopped = 0
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if not (
            isinstance(thread, threading.Timer)
            and "JobScheduler._schedule_reevalutation" in getattr(function, "__qualname__", "")
        ):
            continue
        if scheduler is not None and any(
            cell.cell_contents is scheduler for cell in (getattr(function, "__closure__", None) or ())
        ):
            thread.cancel()
            stopped += 1
    if os.environ.get("PIPELINE_WORKER_VERBOSE"):
        print(f"pipeline: {stopped} rescheduling timer(s) of Snakemake stopped at the end of the run", file=sys.stderr)


def _plain(value):
    """Snakemake's file and list types as JSON's plain ones."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def run_step(input, output, params, log, threads=1, keep_compiled=False):
    """Run the step its `code` input names (scripts/<step>.py) in the step worker
    (scripts/runtime/).

    The rule's named inputs, outputs and params are main()'s keyword arguments, by name;
    `code` is left out. The step comes from `code`, not from the rule's name, which a host
    workflow may change (`use rule * from pooling as pooling_*`). With `keep_compiled`, the
    worker compiles the step's model before forking it (the step file's `warm` hook) and
    keeps it for later steps of that model file and code (runtime/compiled.py). This is
    the only glue between Snakemake and the steps.
    """
    if not input.get("code"):
        raise WorkflowError("a rule's input `code` must name its step (use step_code)")
    kwargs = {
        name: _plain(value) for named in (input, output, params) for name, value in named.items() if name != "code"
    }
    warm = None
    if keep_compiled:
        warm = warm_hook(os.path.join(WORKDIR, input.code[0]), SCRIPTS, os.path.join(WORKDIR, input.model_file))
    runtime.run_step(input.code[0], kwargs=kwargs, log=log[0], threads=threads, cwd=WORKDIR, warm=warm)


def one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=one_of(MODELS),


def model_path(wildcards):
    return model_relpath(wildcards.model)


def model_relpath(model):
    return os.path.relpath(model_file(model, config["models"][model]))


def ranking(dataset):
    """A data set's ranking settings: `ranking`, with the data set's own over it."""
    return {**config["ranking"], **config["datasets"][dataset].get("ranking", {})}


def has_holdout(dataset):
    return "holdout" in config["datasets"][dataset]


def funnel_prediction(wildcards):
    """The new group of the model that gives the funnel its spread, if that model is fitted."""
    model = config["funnel"]["model"]
    return [f"results/{wildcards.dataset}/{model}/new_group.nc"] if model in config["models"] else []


@functools.cache
def population_mean(model):
    """The model file's POPULATION_MEAN, read without importing it (PyMC is slow to import)."""
    return model_constant(model_file(model, config["models"][model]), "POPULATION_MEAN")


def models_for(dataset):
    """The models of the config that take this data set's shape, in the config's order."""
    return [model for model in MODELS if MODEL_SHAPE[model] == DATASET_SHAPE[dataset]]


def per_model(pattern):
    """An input function: `pattern` for every model of the data set's shape."""
    return lambda wildcards: expand(pattern, dataset=wildcards.dataset, model=models_for(wildcards.dataset))


def models_of(wildcards):
    return models_for(wildcards.dataset)


def is_shape(*shapes):
    return lambda dataset: DATASET_SHAPE[dataset] in shapes


def is_meta_analysis(dataset):
    return SHAPES[DATASET_SHAPE[dataset]].meta_analysis


@functools.cache
def group_count(dataset):
    """Rows of a data set's CSV (an upper bound on its groups), read once per data set at DAG
    time (four resource functions per job ask for it)."""
    with open(config["datasets"][dataset]["path"], "rb") as handle:
        return max(1, sum(1 for _ in handle) - 1)


def sample_threads(wildcards):
    """One chain per core only when drawing is most of a sampling step.

    Below ~10 million group-draws a step is mostly compiling, on one core; holding a core
    per chain then only keeps other steps waiting (measured in docs/speed.md). Draws are
    the same either way: each chain has its own seeded stream.
    """
    sampling = config["sampling"]
    work = (sampling["draws"] + sampling["tune"]) * sampling["chains"] * group_count(wildcards.dataset)
    return sampling["chains"] if work >= 10_000_000 else 1


def summary_threads(wildcards):
    """Two threads for a posterior of millions of values (scripts/mcmc_stats.py), else one."""
    sampling = config["sampling"]
    return 2 if sampling["draws"] * sampling["chains"] * group_count(wildcards.dataset) >= 4_000_000 else 1


def sample_mem_mb(wildcards, attempt):
    # Posterior, log-likelihood and the copies made while converting and writing them:
    # about ten float64 values per group, draw and chain, on top of PyMC's ~1 GB.
    sampling = config["sampling"]
    values = sampling["draws"] * sampling["chains"] * (group_count(wildcards.dataset) + 4) * 10
    return (1000 + values * 8 // 2**20) * attempt


def sample_runtime(wildcards, attempt):
    # Minutes: compiling takes a few seconds; sampling grows with steps x groups.
    sampling = config["sampling"]
    steps = (sampling["draws"] + sampling["tune"]) * sampling["chains"]
    return (10 + steps * group_count(wildcards.dataset) // 2_000_000) * attempt


def job_seed(wildcards, purpose):
    return derive_seed(config["sampling"]["seed"], wildcards.dataset, wildcards.model, purpose)


# Steps whose outputs are made only when asked for by name (`snakemake sbc`).
ON_REQUEST = {"sbc_fit", "plot_sbc"}
# Steps that apply only to some models, or to some data sets: step -> which ones.
ONLY_FOR = {"plot_population_mean": lambda model: population_mean(model) is not None}
ONLY_FOR_DATASETS = {
    "prepare_holdout": has_holdout,
    "holdout": has_holdout,
    "funnel": is_shape("binomial"),
    "heterogeneity": is_meta_analysis,
    "plot_meta_forest": is_meta_analysis,
    "plot_labbe": is_shape("two_arm"),
}


def own_steps():
    """This workflow's rules with their steps: (rule, step), in the order defined."""
    for candidate in workflow.rules:
        code = candidate.input.get("code") if hasattr(candidate.input, "get") else None
        if getattr(code, "workflow", None) is _THIS_WORKFLOW:
            yield candidate, code.step


def all_targets():
    """Every output of every rule of this workflow, for each data set and model.

    The rules are the one place that names outputs: this list, the tests and
    docs/outputs.md (checked by tests/test_docs.py) all derive from them, so a new rule's
    outputs are made by `snakemake` with no other edit. Called after every rule is defined.
    """
    targets = []
    for defined, step in own_steps():
        if step in ON_REQUEST or not defined.output:
            continue
        applies = ONLY_FOR.get(step, lambda model: True)
        datasets = [d for d in DATASETS if ONLY_FOR_DATASETS.get(step, lambda dataset: True)(d)]
        for pattern in map(strip_wildcard_constraints, defined.output):
            if "{model}" in pattern:
                for dataset in datasets:
                    targets += expand(pattern, dataset=dataset, model=[m for m in models_for(dataset) if applies(m)])
            else:
                targets += expand(pattern, dataset=datasets)
    return targets


def _report_overview():
    """What the report's first page says of each data set (results/DATASET/overview.json, made
    by the overview step), read when they exist: the page is a template of the config alone,
    so this is how it learns the results. Cheap (a few small files)."""
    import json

    found = {}
    for name in DATASETS:
        path = Path("results", name, "overview.json")
        try:
            found[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


config["report_overview"] = _report_overview()
config["report_shapes"] = dict(DATASET_SHAPE)


def report_figure(path, caption, category):
    """An output that goes into `snakemake --report`, with its caption from workflow/report/."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory="{model}" if "{model}" in path else "all models",
        labels={"data set": "{dataset}", "model": "{model}" if "{model}" in path else "all", "figure": caption},
    )
