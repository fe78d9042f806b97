"""Fit one model to one prepared data set and write its trace as ArviZ NetCDF.

Two methods, chosen per model (`models.NAME.method`): `nuts` samples the model file's
`build(data)` with NUTS; `collapsed` samples its `build_collapsed(data)`, in which
conjugate parameters are integrated out, and then draws those exactly with its
`complete()`. Either way the trace holds the same variables under the same names, so
every later step reads it alike. `auto` (the default) is `collapsed` where the model file
defines it.

Besides the posterior, the trace holds the log-likelihood (pointwise; per draw, summed over
the groups, for a model file that integrates each group's likelihood itself) and the log
density of the model's priors (`log_prior`), for the prior sensitivity check. Beyond
`sampling.store_values` group-level values it keeps one draw in k (`kept_every`), and for
a model file that gives the conditional moments of what it integrates out
(`conditional_moments`), each group's posterior mean and sd from every draw
(`rao_blackwellised`). It
carries what is needed to reproduce it: the seed, the method, the sampler and
its settings, the SHA-256 of the data and of the model file, and the versions of the
numerical stack.
"""


import importlib
import inspect
import json
import logging
import time
from pathlib import Path

from common import UserError, exact_numerics, load_module, read_prepared, sha256_of, thinning, write_datatree

log = logging.getLogger("pipeline.sample")

# The Monte Carlo error of a Rao-Blackwellised mean comes from this many batches per chain,
# and its conditional moments are computed this many values at a time.
RB_BATCHES = 10
RB_BLOCK_VALUES = 1_000_000

RECORDED_PACKAGES = ("pymc", "pytensor", "arviz", "nutpie", "numpy", "xarray", "netCDF4")


def draw(model, *, sampler: str, draws: int, tune: int, chains: int, seed: int, cores: int, target_accept=None):
    """The sampler's trace of `model` (a `Sampled`, or a PyMC model for PyMC's own NUTS)."""
    import pymc as pm

    options = {}
    if target_accept is not None:
        options["target_accept"] = target_accept
    started = time.perf_counter()
    if sampler == "nutpie":
        trace, how = draw_with_nutpie(model, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores, **options)
    else:
        how = "compiled by PyMC"
        trace = pm.sample(model=model.build() if isinstance(model, Sampled) else model, draws=draws, tune=tune,
                          chains=chains, cores=cores, random_seed=seed, nuts_sampler=sampler, progressbar=False, **options)
    # benchmarks/run.py reads this line: a job's time outside it is overhead.
    log.info("compiling and drawing took %.3f s (model %s)", time.perf_counter() - started, how)
    # A sampler stopped early (nutpie returns what it has on an interrupt) must not leave
    # a trace that looks finished.
    made = trace["posterior"].sizes["draw"]
    if made != draws:
        raise RuntimeError(f"the sampler stopped after {made} of {draws} draws")
    return trace


class Sampled:
    """What the sampler compiles and draws from: `build()` makes the PyMC model, `key` names
    what its compiled form depends on, `swap` holds the data put into it after compiling.

    Where the model file's collapsed form takes its data padded (`padded_to`), the data are
    swappable containers padded to a bucket of sizes (`bucket`), and the key holds only
    their shapes: data sets of similar size then share one compiled model, which the step
    worker keeps (runtime/compiled.py). Otherwise the data are part of the compiled model
    and of its key."""

    def __init__(self, module, table, method: str):
        self.module, self.table, self.method = module, table, method
        self.swap = None
        code = sha256_of(module.__file__)
        if method == "collapsed" and "padded_to" in inspect.signature(module.build_collapsed).parameters:
            natural = module.collapsed_data(table, swappable=True)
            self.length = bucket(len(next(iter(natural.values()))))
            self.swap = module.collapsed_data(table, swappable=True, padded_to=self.length)
            shapes = {name: [str(values.dtype), list(values.shape)] for name, values in self.swap.items()}
            self.key = digest_of({"model": code, "method": method, "swapped": shapes})
        else:
            self.key = digest_of({"model": code, "method": method, "data": table_digest(table)})

    def build(self):
        if self.swap is not None:
            return self.module.build_collapsed(self.table, swappable=True, padded_to=self.length)
        return self.module.build_collapsed(self.table) if self.method == "collapsed" else self.module.build(self.table)


def bucket(length: int) -> int:
    """The padded length of swappable data of `length`: the next power of two (at least 8),
    beyond 65,536 the next multiple of it. At most twice the likelihood's sums at small
    sizes, for one compiled model per bucket."""
    if length <= 1 << 16:
        return max(8, 1 << max(0, length - 1).bit_length())
    return -(-length // (1 << 16)) * (1 << 16)


def digest_of(value) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def table_digest(table) -> str:
    import hashlib

    import pandas as pd

    values = pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes()
    return hashlib.sha256(values + json.dumps(list(map(str, table.columns))).encode()).hexdigest()


def sampler_seed(seed: int, chains: int) -> int:
    """The seed PyMC's pm.sample gives nutpie for `seed` (its first chain's, from the spawned
    streams), so that the draws are those pm.sample made."""
    import numpy as np

    return int(np.random.default_rng(seed).spawn(chains)[0].integers(2**30))


def draw_with_nutpie(sampled: "Sampled", *, draws: int, tune: int, chains: int, seed: int, cores: int, **options):
    """nutpie's draws with the compiled model the step worker kept for this step (compiled
    there by `warm`), or one compiled here: the same model either way, so the same draws.
    As pm.sample with nutpie does, but with the compiled model in hand."""
    import nutpie

    import nutpie_callbacks
    from runtime import compiled

    nutpie_callbacks.install()
    model, how = compiled.kept(sampled.key)
    if model is None:
        started = time.perf_counter()
        model = nutpie.compile_pymc_model(sampled.build())
        how = f"compiled in {time.perf_counter() - started:.3f} s"
    if sampled.swap is not None:
        model = model.with_data(**sampled.swap)
    started = time.time()
    trace = nutpie.sample(model, draws=draws, tune=tune, chains=chains, cores=cores, seed=sampler_seed(seed, chains),
                          save_warmup=False, store_unconstrained=False, progress_bar=False, **options)
    trace["posterior"].attrs.update(sampling_time=time.time() - started, tuning_steps=tune)
    return trace, how


def warm(data: str, model_file: str, trace: str, *, dataset: str, model: str, sampling: dict, settings: dict,
         seed: int, threads: int = 1) -> None:
    """The step worker's hook, run before it forks this step in a process that outlives it:
    compile the model this step will draw from, and keep it (runtime/compiled.py)."""
    if sampling["sampler"] != "nutpie":
        return
    import nutpie

    import nutpie_callbacks
    from runtime import compiled

    nutpie_callbacks.install()
    exact_numerics()
    module = load_module(model_file)
    sampled = Sampled(module, read_prepared(data), method_of(module, settings, model_file))
    compiled.keep(sampled.key, lambda: nutpie.compile_pymc_model(sampled.build()))


def method_of(module, settings: dict, model_file: str) -> str:
    wanted = settings.get("method") or "auto"
    collapsible = hasattr(module, "build_collapsed") and hasattr(module, "complete")
    if wanted == "auto":
        return "collapsed" if collapsible else "nuts"
    if wanted == "collapsed" and not collapsible:
        raise UserError(f"{model_file}: method collapsed, but the file defines no build_collapsed() and complete()")
    return wanted


def completed(trace, module, model, table, seed: int, dtype="float64", threads: int = 1):
    """The collapsed sampler's trace with the integrated-out draws and the observed data
    added: the variables, dims and groups of a NUTS trace of the article's model."""
    import numpy as np
    import xarray as xr

    posterior = trace["posterior"].to_dataset()
    # Only the sampler's own draws: a compiled model kept from another data set of the
    # same bucket may carry that data set's group labels.
    posterior = posterior.drop_vars([name for name in posterior.coords if name not in ("chain", "draw")])
    # Its own stream, derived from the job's seed: the conditional draws are reproducible
    # and independent of the sampler's.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    accepts = inspect.signature(module.complete).parameters
    options = {"threads": threads} if "threads" in accepts else {}
    if dtype != "float64" and "dtype" in accepts:
        # Drawn into float32 by the model file itself: no float64 copy of every value.
        added = module.complete(posterior, table, rng, dtype=np.dtype(dtype), **options)
    else:
        added = {name: np.asarray(values).astype(dtype, copy=False)
                 for name, values in module.complete(posterior, table, rng, **options).items()}
    for name, values in added.items():
        dims = ("chain", "draw", *model.named_vars_to_dims.get(name, ()))
        posterior[name] = (dims, np.asarray(values))
    # Computed from the sampler's draws, exactly (mu as a function of them, theta from its
    # conditional given them): their convergence is that of those draws (scripts/diagnose.py).
    posterior.attrs["pipeline_completed"] = " ".join(sorted(added))
    posterior = posterior.assign_coords(group=table["group"].tolist())
    return xr.DataTree.from_dict(
        {"/posterior": posterior, "/sample_stats": trace["sample_stats"].to_dataset(),
         "/observed_data": observed_data(model, table)},
        name=None,
    )


def observed_data(model, table):
    """The observed values of the article's model, over its dims: a trace's observed_data."""
    import numpy as np
    import xarray as xr

    return xr.Dataset(
        {rv.name: (model.named_vars_to_dims.get(rv.name, ()), np.asarray(model.rvs_to_values[rv].data))
         for rv in model.observed_RVs},
        coords={"group": table["group"].tolist()},
    )


def kept_every(sampling: dict, groups: int) -> int:
    """Every how many draws the trace keeps: 1, or enough to store at most
    `sampling.store_values` group-level values (draws x chains x groups), but never fewer
    than `sampling.store_min_draws` draws (all chains together)."""
    draws = sampling["draws"] * sampling["chains"]
    return thinning(draws, groups, max_values=sampling.get("store_values", draws * groups),
                    min_draws=sampling.get("store_min_draws", 1))


def thinned(trace, every: int):
    """The sampler's trace with every `every`-th draw of each chain (from the first); each
    group keeps its attributes."""
    import xarray as xr

    groups = {name: trace[name].to_dataset() for name in trace.children}
    return xr.DataTree.from_dict({
        f"/{name}": group.isel(draw=slice(None, None, every)) if "draw" in group.dims else group
        for name, group in groups.items()
    })


def fit(module, table, *, method: str, sampling: dict, settings: dict, seed: int, cores: int = 1, every: int = 1):
    """Posterior draws of the model file's model for `table`: (trace, the article's pm.Model).

    The trace has posterior, sample_stats and observed_data; with method collapsed, the
    integrated-out variables are drawn afterwards (`completed`). With `every` > 1 (a data
    set too large to store every draw), every `every`-th draw is kept, before the
    integrated-out ones are drawn, and group-level values are stored as float32.
    """
    article_model = module.build(table)
    result = draw(
        Sampled(module, table, method),
        sampler=sampling["sampler"],
        draws=sampling["draws"],
        tune=sampling["tune"],
        chains=sampling["chains"],
        seed=seed,
        cores=cores,
        target_accept=settings.get("target_accept"),
    )
    if "observed_data" not in result.children:  # nutpie's trace has none (pm.sample adds it)
        result["observed_data"] = xr_tree(observed_data(article_model, table))
    summaries = None
    if method == "collapsed":
        summaries = rao_blackwellised(module, result["posterior"].to_dataset(), table, threads=cores)
    unthinned = None
    if every > 1:
        unthinned = unthinned_diagnostics(result["posterior"].to_dataset())
        result = thinned(result, every)
    dtype = "float32" if every > 1 else "float64"
    if method == "collapsed":
        sampled_attrs = dict(result["posterior"].attrs)
        result = completed(result, module, article_model, table, seed, dtype, threads=cores)
        result["posterior"].attrs.update(sampled_attrs)
    elif every > 1:
        posterior = result["posterior"].to_dataset()
        for name, values in posterior.data_vars.items():
            if "group" in values.dims:
                posterior[name] = values.astype(dtype)
        result["posterior"] = xr_tree(posterior)
    if unthinned is not None:
        result.attrs["pipeline_unthinned_diagnostics"] = json.dumps(unthinned)
    if summaries:
        result["rao_blackwellised"] = xr_tree(summaries_dataset(summaries, article_model, table))
    return result, article_model


def summaries_dataset(summaries: dict, model, table):
    """The Rao-Blackwellised summaries as a trace group: each variable over (summary, its dims)."""
    import xarray as xr

    return xr.Dataset(
        {name: (("summary", *model.named_vars_to_dims.get(name, ())), values) for name, values in summaries.items()},
        coords={"summary": ["mean", "sd", "mcse_mean"], "group": table["group"].tolist()},
    )


def rao_blackwellised(module, posterior, table, threads: int = 1):
    """Each group's posterior mean, sd and Monte Carlo error of the mean for the variables
    whose conditional moments given the sampler's draws the model file gives
    (`conditional_moments`), averaged over every draw, before any thinning: exact given
    those draws, so no draw of theta adds its own noise. The error comes from batch means
    (RB_BATCHES consecutive batches per chain). A Dataset: each variable over (`summary`:
    mean, sd, mcse_mean; then its own dims), or None when the model file gives none."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import pairwise

    import numpy as np

    if not hasattr(module, "conditional_moments"):
        return None
    draws = posterior.sizes["draw"]
    edges = np.linspace(0, draws, min(RB_BATCHES, draws) + 1).round().astype(int)
    step = max(1, RB_BLOCK_VALUES // max(len(table), 1))

    def batch(item):
        # One batch of one chain, summed in order by one thread: the same sums whatever the threads.
        chain, first, last = item
        sums = {}
        for start in range(first, last, step):
            block = posterior.isel(chain=[chain], draw=slice(start, min(start + step, last)))
            for name, moments in module.conditional_moments(block, table).items():
                totals = sums.setdefault(name, [0.0, 0.0])
                for k in (0, 1):
                    totals[k] += np.asarray(moments[k], dtype=np.float64).sum(axis=0)
        return {name: (mean / (last - first), second / (last - first)) for name, (mean, second) in sums.items()}

    items = [(chain, int(first), int(last)) for chain in range(posterior.sizes["chain"])
             for first, last in pairwise(edges) if last > first]
    weights = np.array([last - first for _, first, last in items], dtype=np.float64) / (posterior.sizes["chain"] * draws)
    means, second = {}, {}
    with ThreadPoolExecutor(max(1, threads)) as pool:
        # Each batch's means kept (for the error), its second moments summed as they come:
        # memory of batches x groups, not twice that.
        for index, part in enumerate(pool.map(batch, items)):
            for name, (mean, raw) in part.items():
                means.setdefault(name, np.empty((len(items), *mean.shape)))[index] = mean
                second[name] = second.get(name, 0.0) + weights[index] * raw
    found = {}
    count = len(items)
    for name, batches in means.items():
        mean = np.tensordot(weights, batches, axes=1)
        sd = np.sqrt(np.maximum(second[name] - mean**2, 0.0))
        # Batch means, weighted for batches of unequal length: the variance of the weighted
        # mean of `count` batch means, sum_k w_k^2 (m_k - m)^2 x count / (count - 1).
        if count > 1:
            spread = np.zeros_like(mean)
            for index in range(count):
                spread += weights[index] ** 2 * (batches[index] - mean) ** 2
            mcse = np.sqrt(spread * count / (count - 1))
        else:
            mcse = np.full_like(mean, np.nan)
        found[name] = np.stack([mean, sd, mcse])
    return found


def unthinned_diagnostics(posterior) -> dict:
    """Per scalar variable the sampler drew (the hyperparameters), its summary columns that
    do not depend on an interval, from every draw: what a thinned trace cannot give (the
    variables' convergence is judged on them; scripts/diagnose.py)."""
    import mcmc_stats

    scalars = [name for name, values in posterior.data_vars.items() if values.dims == ("chain", "draw")]
    if not scalars:
        return {}
    table = mcmc_stats.summary(posterior[scalars], 0.94)
    columns = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
    return {name: {column: float(table.loc[name, column]) for column in columns} for name in scalars}


def xr_tree(dataset):
    import xarray as xr

    return xr.DataTree(dataset=dataset)


def summed_log_likelihood(posterior, model):
    """log p(y | parameters) per draw, summed over the groups, for each observed variable:
    what the prior sensitivity check scales, for a model whose leave-one-group-out step
    computes its own integrated group likelihood (and so needs no pointwise values, which
    at many groups are as large as the posterior). One compiled function, draw by draw."""
    import numpy as np
    import pytensor.tensor as pt
    import xarray as xr
    from pymc.model.transform.conditioning import remove_value_transforms

    plain = remove_value_transforms(model)  # the trace holds untransformed values
    observed = list(plain.observed_RVs)
    function = plain.compile_fn(inputs=plain.value_vars, outs=[pt.sum(term) for term in plain.logp(vars=observed, sum=False)],
                                on_unused_input="ignore")
    names = [rv.name for rv in model.free_RVs]
    values = {name: posterior[name].values for name in names}
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    totals = np.empty((len(observed), chains, draws))
    for chain in range(chains):
        for draw_index in range(draws):
            point = {name: np.asarray(values[name][chain, draw_index], dtype="float64") for name in names}
            totals[:, chain, draw_index] = function(point)
    return xr.Dataset({rv.name: (("chain", "draw"), totals[i]) for i, rv in enumerate(observed)},
                      coords={"chain": posterior["chain"], "draw": posterior["draw"]},
                      attrs={"summed_over": "group"})


def hyperpriors(module, model) -> list[str]:
    """The priors the sensitivity check scales: the model file's HYPERPRIORS (the hierarchical
    model's alpha and beta, not its population term theta | alpha, beta), or else every
    free variable's (no pooling, full pooling: theta's prior is all there is)."""
    return list(getattr(module, "HYPERPRIORS", None) or [rv.name for rv in model.free_RVs])


def provenance(
    *, dataset: str, model_name: str, data: Path, model_file: Path, seed: int, sampling: dict, settings: dict, method: str
) -> dict:
    attrs = {
        "pipeline_dataset": dataset,
        "pipeline_model": model_name,
        "pipeline_seed": seed,
        "pipeline_method": method,
        "pipeline_sampler": sampling["sampler"],
        "pipeline_sampling": json.dumps(sampling, sort_keys=True),
        "pipeline_model_settings": json.dumps(settings, sort_keys=True),
        "pipeline_data_sha256": sha256_of(data),
        "pipeline_model_file_sha256": sha256_of(model_file),
    }
    for package in RECORDED_PACKAGES:
        attrs[f"version_{package}"] = running_version(package)
    return attrs


def running_version(package: str) -> str:
    """The version of the module this process runs, not of what is installed on disk now:
    the warm worker imported the stack when it started, and a package upgraded since would
    otherwise be recorded with a version that did not make the trace."""
    return str(importlib.import_module(package).__version__)


def main(
    data: str,
    model_file: str,
    trace: str,
    *,
    dataset: str,
    model: str,
    sampling: dict,
    settings: dict,
    seed: int,
    threads: int = 1,
) -> None:
    import pymc as pm

    table = read_prepared(data)
    module = load_module(model_file)
    method = method_of(module, settings, model_file)
    started = time.perf_counter()
    every = kept_every(sampling, len(table))
    if every > 1:
        log.info("keeping one draw in %d: %d groups x %d draws x %d chains exceed sampling.store_values (%d; "
                 "sampling.store_min_draws %d)", every, len(table), sampling["draws"], sampling["chains"],
                 sampling["store_values"], sampling.get("store_min_draws", 1))
    result, article_model = fit(module, table, method=method, sampling=sampling, settings=settings, seed=seed, cores=threads,
                                every=every)
    # The log-likelihood of the article's model (theta given), as in a NUTS trace: pointwise,
    # for leave-one-group-out, unless the model file integrates each group's likelihood
    # itself (`group_log_likelihood`); then per draw, summed over the groups, for the prior
    # sensitivity check. And the log density of its priors, for the same check.
    if hasattr(module, "group_log_likelihood"):
        result["log_likelihood"] = xr_tree(summed_log_likelihood(result["posterior"].to_dataset(), article_model))
    else:
        result = pm.compute_log_likelihood(result, model=article_model, progressbar=False)
    result = pm.stats.compute_log_prior(result, var_names=hyperpriors(module, article_model), model=article_model,
                                        progressbar=False)
    log.info("sampled %s/%s (%s) in %.2f s", dataset, model, method, time.perf_counter() - started)
    result.attrs["pipeline_kept_every"] = every
    result.attrs.update(
        provenance(
            dataset=dataset,
            model_name=model,
            data=Path(data),
            model_file=Path(model_file),
            seed=seed,
            sampling=sampling,
            settings=settings,
            method=method,
        )
    )
    write_datatree(result, trace)
