"""Leave-one-group-out cross-validation of one model: how well it predicts a group it has
not seen, with every value either exact or from a reliable PSIS estimate.

Four sources, per group, in order of preference:
- closed form: a conjugate model file states log p(y_j | y_-j) itself (`exact_loo`: no
  pooling's prior predictive, full pooling's Beta-Binomial), and so does a group whose
  likelihood, its own parameters integrated out, does not depend on the fit at all;
- PSIS-LOO on the model's per-group likelihood with the group's own parameter integrated
  out (`group_log_likelihood` of the model file; the conditional log-likelihood of the
  trace where the file has none). Integrating theta_j out is what makes PSIS work here:
  leaving a group out then moves only the population parameters, not a parameter that
  belonged to that group alone (SpaceX, hierarchical: Pareto k 0.41, 1.02, 0.24, 0.45
  against 0.87, 1.05, 0.75, 0.73 with theta_j kept);
- where Pareto k is still above the threshold: the exact value by quadrature where the
  model file gives it (`exact_group_loo`: the hierarchical models, over (alpha, beta) or
  (m, s)), else an exact refit without the group (arviz-stats' `reloo`): the model is
  sampled again on the other groups, and the left-out group's predictive density is
  averaged over that posterior.

Writes a NetCDF file over `group`: `elpd_i`, `pareto_k` (PSIS's, before any refit), `p_i`
(effective parameters), `source` (closed form, psis, quadrature or refit), `refit_mcse`
(the Monte Carlo error of a refit's value; 0 for exact ones); attributes `n_samples`,
`k_threshold`.
"""

import logging

import numpy as np

from common import derive_seed, load_module, read_prepared, read_variables, readable, write_datatree
from shapes import SHAPES, new_group_sizes, shape_of

log = logging.getLogger("pipeline.loo")
# Log-likelihood values (draws x groups) held at a time: 160 MB of float64.
BLOCK_VALUES = 20_000_000


def group_log_likelihood(module, posterior, table, trace_path=None, rows=slice(None)):
    """log p(y_j | population parameters) per (chain, draw, group) for the groups at `rows`,
    own parameters integrated out where the model file says how; else the trace's
    conditional one, summed over the model's observed variables (a two-arm trial's two arms)."""
    if hasattr(module, "group_log_likelihood"):
        return np.asarray(module.group_log_likelihood(posterior, table.iloc[rows]))
    # Only the groups asked for are read: leave-one-group-out asks a block at a time.
    stored = read_variables(trace_path, "log_likelihood", rule_hint="sample", at={"group": rows})
    total = sum(stored[name].transpose("chain", "draw", ...).values for name in stored.data_vars)
    return np.broadcast_to(total, (*total.shape[:2], len(table.iloc[rows]))) if total.ndim == 2 else total


def as_tree(posterior, loglik, groups):
    import xarray as xr

    log_likelihood = xr.Dataset({"y": (("chain", "draw", "group"), loglik)}, coords={"group": groups})
    return xr.DataTree.from_dict({"/posterior": posterior, "/log_likelihood": log_likelihood})


def make_refitter(module, table, positions, *, method: str, sampling: dict, settings: dict, seed: int, idata):
    """arviz-stats' SamplingWrapper: the model refitted on every group but one.

    `positions` maps reloo's observation index (into `idata`, which holds the groups PSIS
    was run on) to rows of `table`.
    """
    from arviz_stats import SamplingWrapper

    import sample

    class GroupRefit(SamplingWrapper):
        def sel_observations(self, idx):
            keep = np.ones(len(table), dtype=bool)
            keep[positions[idx]] = False
            return table[keep].reset_index(drop=True), table[~keep].reset_index(drop=True)

        def sample(self, modified_observed_data):
            left_out = sorted(set(table["group"]) - set(modified_observed_data["group"]))
            self.fitted_table = modified_observed_data
            fit, _ = sample.fit(
                module, modified_observed_data, method=method, sampling=sampling, settings=settings,
                seed=derive_seed(seed, "refit", *left_out),
            )
            log.info("refitted without %s", ", ".join(left_out))
            return fit

        def get_inference_data(self, fitted_model):
            return fitted_model

        def log_likelihood__i(self, excluded_obs, idata__i):
            import xarray as xr

            posterior = idata__i["posterior"].to_dataset()
            values = predictive_log_likelihood(module, posterior, self.fitted_table, excluded_obs, seed=seed)
            self.mcse[excluded_obs["group"].iloc[0]] = log_mean_mcse(values[..., 0])
            return xr.DataArray(values, dims=("chain", "draw", "group"), coords={"group": excluded_obs["group"].tolist()})

    wrapper = GroupRefit(model=None, idata_orig=idata)
    wrapper.mcse = {}
    return wrapper


def log_mean_mcse(log_values):
    """Monte Carlo standard error of log(mean(exp(v))) over (chain, draw) draws: the delta
    method, with the draws' effective sample size. A left-out group far from the others is
    likely only in the tail of their posterior, and then this is large."""
    import mcmc_stats

    values = np.exp(log_values - log_values.max())
    ess = mcmc_stats.ess_basic(mcmc_stats.split_chains(values[None]))[0]
    return float(values.std(ddof=1) / values.mean() / np.sqrt(ess))


def predictive_log_likelihood(module, posterior, fitted_table, left_out, *, seed: int):
    """log p(y_j | draw) for a group the fit (on `fitted_table`) has not seen."""
    if hasattr(module, "group_log_likelihood"):
        return np.asarray(module.group_log_likelihood(posterior, left_out))
    # No closed form: the model's own new group stands for the left-out one. Per posterior
    # draw, one new group is drawn and y_j scored under new_group()'s likelihood, whatever it
    # is; averaged over the draws, that is p(y_j | y_-j).
    import pymc as pm
    from pymc.sampling.forward import vectorize_over_posterior

    (observed_column,) = SHAPES[shape_of(left_out)].observed.values()  # two-arm models give group_log_likelihood
    columns = []
    for size, observed in zip(new_group_sizes(left_out), left_out[observed_column], strict=True):
        model = module.build(fitted_table)
        fitted = list(model.free_RVs)  # before new_group() adds its own
        with model:
            y_new = module.new_group(model, size)
        (log_likelihood,) = vectorize_over_posterior([pm.logp(y_new, observed)], posterior, input_rvs=fitted)
        columns.append(pm.draw(log_likelihood, random_seed=seed))
    return np.stack(columns, axis=-1)


def cross_validate(
    module, posterior, trace_path, table, *, method: str, sampling: dict, settings: dict, seed: int, k_threshold: float, max_refits: int
):
    import xarray as xr
    from arviz_stats import reloo
    from arviz_stats.utils import ELPDDataLOO

    import mcmc_stats
    import psis

    groups = table["group"].tolist()
    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    lpd, elpd, pareto_k = np.empty(len(groups)), np.full(len(groups), np.nan), np.full(len(groups), np.nan)
    exact_model = hasattr(module, "exact_loo")
    constant = np.ones(len(groups), dtype=bool)
    if exact_model:
        elpd = np.asarray(module.exact_loo(table), dtype=float)
    # ArviZ's r_eff, computed for all parameters at once (it loops over them).
    r_eff = None
    # A block of groups at a time, so that memory stays bounded at many groups: each group's
    # values depend on its own row of draws alone (and on r_eff, one number).
    per_block = max(1, BLOCK_VALUES // n_samples)
    for start in range(0, len(groups), per_block):
        block = slice(start, min(start + per_block, len(groups)))
        # One row of draws per group, made once: every reduction over draws below runs along it.
        rows = psis.by_observation(group_log_likelihood(module, posterior, table, trace_path, block))
        lpd[block] = psis.lppd(rows)
        if exact_model:
            continue
        constant[block] = np.ptp(rows, axis=1) == 0
        elpd[block] = np.where(constant[block], rows[:, 0], np.nan)
        varying = np.flatnonzero(~constant[block])
        if varying.size:
            r_eff = mcmc_stats.relative_ess(posterior) if r_eff is None else r_eff
            # Its PSIS-LOO, for all groups of the block at once (ArviZ loops over them).
            subset = rows if varying.size == rows.shape[0] else rows[varying]
            elpd[start + varying], pareto_k[start + varying] = psis.loo_pointwise(subset, r_eff)
    mcse = np.where(constant, 0.0, np.nan)
    source = np.where(constant, "closed form", "psis").astype(object)
    varying = np.flatnonzero(~constant)
    if varying.size:
        flagged = varying[pareto_k[varying] > k_threshold]
        exact = module.exact_group_loo(table, flagged) if flagged.size and hasattr(module, "exact_group_loo") else None
        if exact is not None:
            # Where the model's maths gives the left-out value itself, no refit is needed.
            elpd[flagged] = exact
            source[flagged] = "quadrature"
            mcse[flagged] = 0.0
            flagged = flagged[:0]
        if flagged.size > max_refits:
            log.warning(
                "Pareto k above %s for %d groups, more than compare.max_refits (%d): their PSIS values are kept",
                k_threshold, flagged.size, max_refits,
            )
        elif flagged.size:
            names = [groups[i] for i in varying]
            tree = as_tree(posterior, group_log_likelihood(module, posterior, table, trace_path, varying), names)
            wrapper = make_refitter(
                module, table, varying, method=method, sampling=sampling, settings=settings, seed=seed, idata=tree,
            )
            first = ELPDDataLOO(
                elpd=float(elpd[varying].sum()), se=0.0, p=float((lpd - elpd)[varying].sum()), n_samples=n_samples,
                n_data_points=varying.size, scale="log", warning=True, good_k=k_threshold,
                elpd_i=xr.DataArray(elpd[varying], dims="group", coords={"group": names}),
                pareto_k=xr.DataArray(pareto_k[varying], dims="group", coords={"group": names}),
            )
            refitted = reloo(wrapper, loo_orig=first, k_threshold=k_threshold, pointwise=True)
            elpd[varying] = refitted.elpd_i.values
            source[flagged] = "refit"
            mcse[flagged] = [wrapper.mcse[groups[i]] for i in flagged]
    return xr.Dataset(
        {
            "elpd_i": ("group", elpd),
            "pareto_k": ("group", pareto_k),
            "p_i": ("group", lpd - elpd),
            "refit_mcse": ("group", mcse),
            "source": ("group", source.astype(str)),
        },
        coords={"group": groups},
        attrs={"n_samples": n_samples, "k_threshold": k_threshold},
    )


def main(data: str, model_file: str, trace: str, loo: str, *, sampling: dict, settings: dict, seed: int,
         k_threshold: float, max_refits: int) -> None:
    import xarray as xr

    import sample

    table = read_prepared(data)
    module = load_module(model_file)
    method = sample.method_of(module, settings, model_file)
    # The posterior is opened, not read: the model's group likelihood reads the variables it
    # needs (the hierarchical model: alpha and beta, not 10,000 thetas).
    with readable(trace, "sample"):
        opened = xr.open_dataset(trace, group="posterior", engine="netcdf4")
    with opened as posterior:
        result = cross_validate(
            module, posterior, trace, table, method=method, sampling=sampling, settings=settings, seed=seed,
            k_threshold=k_threshold, max_refits=max_refits,
        )
    counts = {kind: int((result["source"] == kind).sum()) for kind in ("closed form", "quadrature", "psis", "refit")}
    log.info("elpd %.2f; groups by source: %s", float(result["elpd_i"].sum()), counts)
    write_datatree(xr.DataTree.from_dict({"/loo": result}), loo)
