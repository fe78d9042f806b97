"""Fit one model to one prepared data set and write its trace as ArviZ NetCDF.

The trace carries what is needed to reproduce it: the seed, the sampler and its settings,
the SHA-256 of the data and of the model file, and the versions of the numerical stack.
"""


import json
import logging
import time
from importlib.metadata import version
from pathlib import Path

from common import load_module, read_prepared, sha256_of, write_datatree

log = logging.getLogger("pipeline.sample")

RECORDED_PACKAGES = ("pymc", "pytensor", "arviz", "nutpie", "numpy", "xarray", "netCDF4")


def draw(model, *, sampler: str, draws: int, tune: int, chains: int, seed: int, cores: int, target_accept=None):
    import pymc as pm

    if sampler == "nutpie":
        import nutpie_callbacks

        nutpie_callbacks.install()
    options = {}
    if target_accept is not None:
        options["target_accept"] = target_accept
    started = time.perf_counter()
    trace = pm.sample(
        model=model,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        random_seed=seed,
        nuts_sampler=sampler,
        progressbar=False,
        **options,
    )
    # benchmarks/run.py reads this line: a job's time outside it is overhead.
    log.info("pm.sample took %.3f s (compiling and drawing)", time.perf_counter() - started)
    # A sampler stopped early (nutpie returns what it has on an interrupt) must not leave
    # a trace that looks finished.
    made = trace["posterior"].sizes["draw"]
    if made != draws:
        raise RuntimeError(f"the sampler stopped after {made} of {draws} draws")
    # Pointwise log-likelihood, for PSIS-LOO model comparison.
    return pm.compute_log_likelihood(trace, model=model, progressbar=False)


def provenance(*, dataset: str, model_name: str, data: Path, model_file: Path, seed: int, sampling: dict, settings: dict) -> dict:
    attrs = {
        "pipeline_dataset": dataset,
        "pipeline_model": model_name,
        "pipeline_seed": seed,
        "pipeline_sampler": sampling["sampler"],
        "pipeline_sampling": json.dumps(sampling, sort_keys=True),
        "pipeline_model_settings": json.dumps(settings, sort_keys=True),
        "pipeline_data_sha256": sha256_of(data),
        "pipeline_model_file_sha256": sha256_of(model_file),
    }
    for package in RECORDED_PACKAGES:
        attrs[f"version_{package}"] = version(package)
    return attrs


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
    table = read_prepared(data)
    built = load_module(model_file).build(table)
    started = time.perf_counter()
    result = draw(
        built,
        sampler=sampling["sampler"],
        draws=sampling["draws"],
        tune=sampling["tune"],
        chains=sampling["chains"],
        seed=seed,
        cores=threads,
        target_accept=settings.get("target_accept"),
    )
    log.info("sampled %s/%s in %.2f s", dataset, model, time.perf_counter() - started)
    result.attrs.update(
        provenance(
            dataset=dataset,
            model_name=model,
            data=Path(data),
            model_file=Path(model_file),
            seed=seed,
            sampling=sampling,
            settings=settings,
        )
    )
    write_datatree(result, trace)
