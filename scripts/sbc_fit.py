"""Simulation-based calibration (Talts et al. 2018) of one model on one data set's design.

Draw parameters from the model's prior, simulate data for the data set's own groups and
design (trials, standard errors), fit the model to each simulated data set, and record
the rank of the true value among the posterior draws, for every parameter and every
group's theta. If the sampler and the model code are right, each rank is uniform on
0..L (L posterior draws kept). Writes the ranks (one row per simulation) and a table
with, per parameter, a chi-square test of uniformity over `bins` equal bins.

Every simulation has the same design, so with nutpie the model is compiled once and each
simulation's observed values are swapped into it (`with_data`): the article's model with
its observed variables made shared variables (`pm.observe`), or the collapsed model's
data containers, whose shapes depend on the design only (`collapsed_data(table,
swappable=True)`). The draws are bitwise those of a model compiled for that simulation
alone (tests/test_sbc.py). SBC checks the method that `sample` uses, collapsed or NUTS.
"""

import logging

import numpy as np

from common import atomic_path, load_module, read_prepared
from shapes import SHAPES, shape_of, with_observed

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


class Fitter:
    """Posterior draws for simulated data sets of one design, compiling the model once."""

    def __init__(self, module, table, *, method: str, sampler: str, sampling: dict, target_accept):
        self.module, self.method, self.sampler = module, method, sampler
        self.sampling, self.target_accept = sampling, target_accept
        if sampler != "nutpie":
            return
        import nutpie
        import pymc as pm
        import pytensor

        import nutpie_callbacks

        nutpie_callbacks.install()
        if method == "collapsed":
            model = module.build_collapsed(table, swappable=True)
        else:
            article = module.build(table)
            swapped = {rv.name: pytensor.shared(np.asarray(article.rvs_to_values[rv].data), name=f"simulated_{rv.name}")
                       for rv in article.observed_RVs}
            model = pm.observe(article, swapped)
        self.compiled = nutpie.compile_pymc_model(model)
        self.compiles = 1
        self.shapes = {key: value.shape for key, value in self.data_of(table).items()}

    def data_of(self, table) -> dict:
        if self.method == "collapsed":
            return self.module.collapsed_data(table, swappable=True)
        observed = SHAPES[shape_of(table)].observed
        return {f"simulated_{name}": table[column].to_numpy() for name, column in observed.items()}

    def posterior(self, table, seed: int):
        import pymc as pm

        options = {"target_accept": self.target_accept} if self.target_accept else {}
        if self.sampler == "nutpie":
            import nutpie

            data = self.data_of(table)
            if {key: value.shape for key, value in data.items()} == self.shapes:
                compiled = self.compiled.with_data(**data)
            else:  # a model file whose data's shapes follow the values: compile anew
                compiled = nutpie.compile_pymc_model(self.module.build_collapsed(table, swappable=True))
                self.compiles += 1
            trace = nutpie.sample(compiled, draws=self.sampling["draws"], tune=self.sampling["tune"],
                                  chains=self.sampling["chains"], cores=1, seed=seed, progress_bar=False, **options)
        else:
            model = self.module.build_collapsed(table) if self.method == "collapsed" else self.module.build(table)
            trace = pm.sample(model=model, draws=self.sampling["draws"], tune=self.sampling["tune"],
                              chains=self.sampling["chains"], cores=1, random_seed=seed, nuts_sampler=self.sampler,
                              progressbar=False, **options)
        posterior = trace["posterior"].to_dataset()
        if self.method == "collapsed":
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
            for name, values in self.module.complete(posterior, table, rng).items():
                dims = ("chain", "draw", "group")[: np.ndim(values)]
                posterior[name] = (dims, np.asarray(values))
            posterior = posterior.assign_coords(group=table["group"].tolist())
        return posterior


def ranks_of_one(fitter, table, truth: dict, simulated: dict, *, names, seed: int, thin: int) -> dict:
    data = with_observed(table, simulated)
    posterior = fitter.posterior(data, seed).isel(draw=slice(None, None, thin))
    draws = flatten(posterior, names)
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
    import pandas as pd
    import pymc as pm

    import sample

    table = read_prepared(data)
    module = load_module(model_file)
    model = module.build(table)
    method = sample.method_of(module, settings, model_file)
    prior = pm.sample_prior_predictive(draws=sbc["simulations"], model=model, random_seed=seed)
    names = parameter_names(model)
    truths = flatten(prior["prior"].to_dataset(), names)
    simulated = {name: prior["prior_predictive"][name].values.reshape(sbc["simulations"], len(table))
                 for name in SHAPES[shape_of(table)].observed}
    sampling = {"draws": sbc["draws"], "tune": sbc["tune"], "chains": sbc["chains"]}
    fitter = Fitter(module, table, method=method, sampler=sampler, sampling=sampling, target_accept=settings.get("target_accept"))
    rows = []
    for index in range(sbc["simulations"]):
        truth = {name: values.reshape(-1)[index] for name, values in truths.items()}
        this = {name: values[index] for name, values in simulated.items()}
        rows.append(ranks_of_one(fitter, table, truth, this, names=names, seed=seed + 1 + index, thin=sbc["thin"]))
        log.info("simulation %d of %d fitted", index + 1, sbc["simulations"])
    if sampler == "nutpie":
        log.info("model compiled %d time(s) for %d simulations", fitter.compiles, sbc["simulations"])
    table_of_ranks = pd.DataFrame(rows)
    max_rank = len(range(0, sbc["draws"], sbc["thin"])) * sbc["chains"]
    result = uniformity_test(table_of_ranks, max_rank, sbc["bins"])
    worst = result.loc[result["p_value"].idxmin()]
    log.info("smallest uniformity p-value: %.3g (%s)", worst["p_value"], worst["parameter"])
    with atomic_path(ranks) as tmp:
        table_of_ranks.to_csv(tmp, index_label="simulation")
    with atomic_path(uniformity) as tmp:
        result.to_csv(tmp, index=False)
