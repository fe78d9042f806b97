"""Simulation-based calibration (Talts et al. 2018) of one model on one data set's design.

Draw parameters from the model's prior, simulate successes for the data set's own groups
and trials, fit the model to each simulated data set, and record the rank of the true
value among the posterior draws, for every scalar parameter and every group's theta. If
the sampler and the model code are right, each rank is uniform on 0..L (L posterior
draws kept). Writes the ranks (one row per simulation) and a table with, per parameter,
a chi-square test of uniformity over `bins` equal bins.
"""

import logging

import numpy as np

from common import atomic_path, load_module, read_prepared

log = logging.getLogger("pipeline.sbc")


def flatten(dataset, names) -> dict[str, np.ndarray]:
    """name or name[group] -> values over the leading dimensions."""
    columns = {}
    for name in names:
        values = dataset[name]
        extra = [d for d in values.dims if d not in ("chain", "draw", "sample")]
        if not extra:
            columns[name] = values.values
            continue
        for label in values[extra[0]].values:
            columns[f"{name}[{label}]"] = values.sel({extra[0]: label}).values
    return columns


def parameter_names(model) -> list[str]:
    """What SBC checks: the free variables and theta (deterministic or not)."""
    names = [rv.name for rv in model.free_RVs]
    return names + ([] if "theta" in names else ["theta"])


def ranks_of_one(module, table, truth: dict, simulated_successes, *, sampling: dict, seed: int, thin: int) -> dict:
    import pymc as pm

    data = table.assign(successes=np.asarray(simulated_successes, dtype="int64"))
    model = module.build(data)
    trace = pm.sample(
        model=model, draws=sampling["draws"], tune=sampling["tune"], chains=sampling["chains"], cores=1,
        random_seed=seed, nuts_sampler=sampling["sampler"], progressbar=False,
        **({"target_accept": sampling["target_accept"]} if sampling.get("target_accept") else {}),
    )
    posterior = trace["posterior"].to_dataset().isel(draw=slice(None, None, thin))
    draws = flatten(posterior, parameter_names(model))
    return {name: int((values < truth[name]).sum()) for name, values in draws.items()}


def uniformity_test(ranks, max_rank: int, bins: int):
    """Per parameter: chi-square test that ranks 0..max_rank fill `bins` equal bins evenly."""
    import pandas as pd
    from scipy import stats

    edges = np.linspace(0, max_rank + 1, bins + 1)
    rows = []
    for name in ranks.columns:
        counts, _ = np.histogram(ranks[name], bins=edges)
        test = stats.chisquare(counts)
        rows.append({"parameter": name, "simulations": len(ranks), "max_rank": max_rank, "bins": bins,
                     "chi2": float(test.statistic), "p_value": float(test.pvalue)})
    return pd.DataFrame(rows)


def main(data: str, model_file: str, ranks: str, uniformity: str, *, settings: dict, sbc: dict, sampler: str, seed: int) -> None:
    ranks_path, uniformity_path = ranks, uniformity
    import pandas as pd
    import pymc as pm

    if sampler == "nutpie":
        import nutpie_callbacks

        nutpie_callbacks.install()
    table = read_prepared(data)
    module = load_module(model_file)
    model = module.build(table)
    prior = pm.sample_prior_predictive(draws=sbc["simulations"], model=model, random_seed=seed)
    truths = flatten(prior["prior"].to_dataset(), parameter_names(model))
    simulated = prior["prior_predictive"]["y"].values.reshape(sbc["simulations"], len(table))
    sampling = {"draws": sbc["draws"], "tune": sbc["tune"], "chains": sbc["chains"], "sampler": sampler,
                "target_accept": settings.get("target_accept")}
    rows = []
    for index in range(sbc["simulations"]):
        truth = {name: values.reshape(-1)[index] for name, values in truths.items()}
        rows.append(ranks_of_one(module, table, truth, simulated[index], sampling=sampling, seed=seed + 1 + index, thin=sbc["thin"]))
        log.info("simulation %d of %d fitted", index + 1, sbc["simulations"])
    ranks = pd.DataFrame(rows)
    max_rank = len(range(0, sbc["draws"], sbc["thin"])) * sbc["chains"]
    result = uniformity_test(ranks, max_rank, sbc["bins"])
    worst = result.loc[result["p_value"].idxmin()]
    log.info("smallest uniformity p-value: %.3g (%s)", worst["p_value"], worst["parameter"])
    with atomic_path(ranks_path) as tmp:
        ranks.to_csv(tmp, index_label="simulation")
    with atomic_path(uniformity_path) as tmp:
        result.to_csv(tmp, index=False)
