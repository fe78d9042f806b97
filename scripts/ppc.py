"""Posterior predictive check: does the fitted model reproduce the data it was fitted to?

For every posterior draw, the model's observed variables replicated for every group (same
design: trials, standard errors), and per group and variable the posterior predictive
p-values P(y_rep >= y) and P(y_rep <= y). A value near 0 or 1 on either side flags a group
the model cannot reproduce, e.g. a launcher forced to the fleet's success rate by full
pooling. Every observed variable over `group` is replicated: `y` of a binomial or an
effect-estimate model, `y_treated` and `y_control` of a two-arm one.
"""

import numpy as np

from common import (
    atomic_path,
    fitted_model,
    load_module,
    read_prepared,
    read_thinned_posterior,
    read_variables,
    write_datatree,
)
from shapes import SHAPES, shape_of

# Replicated values drawn at a time (as int64, 400 MB) at many groups.
BLOCK_VALUES = 50_000_000


def replicate(model, table, posterior, *, seed: int):
    """Each observed variable over (chain, draw, group), drawn again once per posterior draw,
    under whatever likelihood the model file gives it."""
    import pymc as pm
    import xarray as xr
    from pymc.sampling.forward import vectorize_over_posterior

    variables = observed_variables(model)
    unsized = []
    for observed in variables:
        # The observed variable's size is fixed to the groups (dims="group"), which stops
        # PyTensor from adding the draws' batch dimensions; without it, the size follows the
        # parameters' shapes.
        rng, _size, *parameters = observed.owner.inputs
        unsized.append(observed.owner.op.make_node(rng, None, *parameters).outputs[1])
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    expected = (chains, draws, len(table))
    # As in predict.py: evaluate the graph once over all draws instead of once per draw; at
    # many groups, over a block of draws at a time (each block its own stream, derived from
    # the seed), so that no int64 copy of every draw of every group is ever held.
    per_block = max(1, BLOCK_VALUES // max(chains * len(table), 1))
    blocks = [slice(start, start + per_block) for start in range(0, draws, per_block)]
    replicated = [None] * len(variables)
    for number, block in enumerate(blocks):
        part = posterior if len(blocks) == 1 else posterior.isel(draw=block)
        graph = vectorize_over_posterior(unsized, part, input_rvs=list(model.free_RVs))
        random_seed = seed if len(blocks) == 1 else np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(number,)))
        values = pm.draw(graph, random_seed=random_seed)
        values = values if isinstance(values, list | tuple) else [values]
        for index, (variable, block_values) in enumerate(zip(variables, values, strict=True)):
            wanted = (chains, len(range(draws)[block]), len(table))
            if block_values.shape != wanted:
                raise ValueError(f"the replicated {variable.name} has shape {block_values.shape}, expected {wanted}: "
                                 f"give it one value per group")
            if replicated[index] is None:
                # Counts are stored as int32, half the bytes, unless one is too large for it.
                integer = np.issubdtype(block_values.dtype, np.integer)
                replicated[index] = np.empty(expected, dtype=np.int32 if integer else block_values.dtype)
            if replicated[index].dtype == np.int32 and np.abs(block_values).max(initial=0) > np.iinfo(np.int32).max:
                replicated[index] = replicated[index].astype(block_values.dtype)
            replicated[index][:, block] = block_values
    coords = {"chain": posterior.coords["chain"], "draw": posterior.coords["draw"], "group": table["group"].to_numpy()}
    dims = ("chain", "draw", "group")
    return xr.Dataset({v.name: (dims, values) for v, values in zip(variables, replicated, strict=True)}, coords=coords)


def observed_variables(model):
    """The model's observed variables, each over `group` (docs/extending.md)."""
    from pytensor.tensor.random.op import RandomVariable

    found = list(model.observed_RVs)
    if not found or any(model.named_vars_to_dims.get(v.name) != ("group",) for v in found):
        names = [v.name for v in found]
        raise ValueError(f"a model's observed variables must each be over group; this one has {names}")
    for variable in found:
        if not isinstance(variable.owner.op, RandomVariable):
            raise ValueError(f"{variable.name} must be a plain distribution to be replicated, not {variable.owner.op}")
    return found


def p_values(y_rep, table, observed: dict, ci_prob: float, block: int = 2000):
    """Per group and observed variable: the replicated mean and interval, and P(y_rep >= y),
    P(y_rep <= y); with the count each variable is out of (`denominator`, e.g. trials), if any.

    Computed `block` groups at a time: np.quantile copies what it sorts, which at 100,000
    groups x 4,000 draws is 3.2 GB per copy.
    """
    import pandas as pd

    denominators = SHAPES[shape_of(table)].denominators
    frames = []
    for name, seen_all in observed.items():
        flat = y_rep[name].values.reshape(-1, len(table))
        tail = (1 - ci_prob) / 2
        columns = {key: np.empty(len(table)) for key in ("mean", "low", "high", "greater", "less")}
        for start in range(0, len(table), block):
            part, seen = flat[:, start : start + block], np.asarray(seen_all)[start : start + block]
            where = slice(start, start + block)
            columns["mean"][where] = part.mean(axis=0)
            columns["low"][where], columns["high"][where] = np.quantile(part, [tail, 1 - tail], axis=0)
            columns["greater"][where] = (part >= seen).mean(axis=0)
            columns["less"][where] = (part <= seen).mean(axis=0)
        frames.append(pd.DataFrame({
            "group": table["group"],
            "variable": name,
            "denominator": table[denominators[name]] if name in denominators else np.nan,
            "observed": seen_all,
            "replicated_mean": columns["mean"],
            "replicated_low": columns["low"],
            "replicated_high": columns["high"],
            "p_greater_equal": columns["greater"],
            "p_less_equal": columns["less"],
        }))
    return pd.concat(frames, ignore_index=True)


def main(data: str, model_file: str, trace: str, replicated: str, pvalues: str, *, seed: int, ci_prob: float,
         max_values: int | None = None, min_draws: int = 1000) -> None:
    import xarray as xr

    table = read_prepared(data)
    # Replicated data for every draw up to `max_values` draws x groups; beyond, for every
    # k-th draw of each chain (at least `min_draws`): at 10,000 groups x 4,000 draws, a
    # thousand draws give the same p-values to their Monte Carlo error in a quarter of the
    # time. Only those draws are read. The posterior and the observed data only: the
    # trace's log-likelihood is not needed here.
    posterior, every = read_thinned_posterior(trace, None, len(table), max_values=max_values, min_draws=min_draws)
    observed = read_variables(trace, "observed_data", rule_hint="sample")
    fitted = fitted_model(trace)
    model = load_module(model_file).build(table)
    y_rep = replicate(model, table, posterior, seed=seed)
    y_rep.attrs.update({"seed": seed, "trace_model": fitted, "kept_every": every})
    # The counts each variable is out of go along (ArviZ's constant_data group): the plot
    # shows rates, not counts.
    denominators = SHAPES[shape_of(table)].denominators
    design = xr.Dataset({f"{name}_of": ("group", table[column].to_numpy()) for name, column in denominators.items()},
                        coords={"group": y_rep["group"].values})
    tree = xr.DataTree.from_dict(
        {"/posterior_predictive": y_rep, "/observed_data": observed, "/constant_data": design}
    )
    write_datatree(tree, replicated)
    seen = {name: observed[name].values for name in y_rep.data_vars}
    with atomic_path(pvalues) as tmp:
        p_values(y_rep, table, seen, ci_prob).to_csv(tmp, index=False)
