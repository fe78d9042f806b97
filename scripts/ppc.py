"""Posterior predictive check: does the fitted model reproduce the data it was fitted to?

For every posterior draw, replicated successes y_rep of every group (same trials), and
per group the posterior predictive p-values P(y_rep >= y) and P(y_rep <= y). A value near
0 or 1 on either side flags a group the model cannot reproduce, e.g. a launcher forced to
the fleet's success rate by full pooling.
"""

import numpy as np

from common import atomic_path, fitted_model, load_module, read_prepared, read_variables, write_datatree


def replicate(model, table, posterior, *, seed: int):
    """y_rep over (chain, draw, group): the model's observed variable drawn again once per
    posterior draw, under whatever likelihood the model file gives it."""
    import pymc as pm
    import xarray as xr
    from pymc.sampling.forward import vectorize_over_posterior

    observed = observed_variable(model)
    # `y`'s size is fixed to the groups (dims="group"), which stops PyTensor from adding
    # the draws' batch dimensions; without it, the size follows the parameters' shapes.
    rng, _size, *parameters = observed.owner.inputs
    unsized = observed.owner.op.make_node(rng, None, *parameters).outputs[1]
    # As in predict.py: evaluate the graph once over all draws instead of once per draw.
    (replicated,) = vectorize_over_posterior([unsized], posterior, input_rvs=list(model.free_RVs))
    draws = pm.draw(replicated, random_seed=seed)
    dims = ("chain", "draw", "group")
    expected = (posterior.sizes["chain"], posterior.sizes["draw"], len(table))
    if draws.shape != expected:
        raise ValueError(f"the replicated y has shape {draws.shape}, expected {expected}: give y one value per group")
    coords = {"chain": posterior.coords["chain"], "draw": posterior.coords["draw"], "group": table["group"].to_numpy()}
    return xr.Dataset({"y": (dims, draws)}, coords=coords)


def observed_variable(model):
    """The model's one observed variable, `y` over `group` (docs/extending.md)."""
    from pytensor.tensor.random.op import RandomVariable

    names = [variable.name for variable in model.observed_RVs]
    if names != ["y"] or model.named_vars_to_dims.get("y") != ("group",):
        raise ValueError(f"a model must have one observed variable, y over group; this one has {names}")
    if not isinstance(model["y"].owner.op, RandomVariable):
        raise ValueError(f"y must be a plain distribution to be replicated, not {model['y'].owner.op}")
    return model["y"]


def p_values(y_rep, table, ci_prob: float, block: int = 2000):
    """Per group: the replicated mean and interval, and P(y_rep >= y), P(y_rep <= y).

    Computed `block` groups at a time: np.quantile copies what it sorts, which at 100,000
    groups x 4,000 draws is 3.2 GB per copy.
    """
    import pandas as pd

    observed = table["successes"].to_numpy()
    flat = y_rep["y"].values.reshape(-1, len(table))
    tail = (1 - ci_prob) / 2
    columns = {name: np.empty(len(table)) for name in ("mean", "low", "high", "greater", "less")}
    for start in range(0, len(table), block):
        part, seen = flat[:, start : start + block], observed[start : start + block]
        where = slice(start, start + block)
        columns["mean"][where] = part.mean(axis=0)
        columns["low"][where], columns["high"][where] = np.quantile(part, [tail, 1 - tail], axis=0)
        columns["greater"][where] = (part >= seen).mean(axis=0)
        columns["less"][where] = (part <= seen).mean(axis=0)
    return pd.DataFrame(
        {
            "group": table["group"],
            "trials": table["trials"],
            "observed": observed,
            "replicated_mean": columns["mean"],
            "replicated_low": columns["low"],
            "replicated_high": columns["high"],
            "p_greater_equal": columns["greater"],
            "p_less_equal": columns["less"],
        }
    )


def main(data: str, model_file: str, trace: str, replicated: str, pvalues: str, *, seed: int, ci_prob: float) -> None:
    import xarray as xr

    # The posterior and the observed data only: the trace's log-likelihood is as large as
    # its posterior and not needed here.
    posterior = read_variables(trace, "posterior", rule_hint="sample")
    observed = read_variables(trace, "observed_data", rule_hint="sample")
    fitted = fitted_model(trace)
    table = read_prepared(data)
    model = load_module(model_file).build(table)
    y_rep = replicate(model, table, posterior, seed=seed)
    y_rep.attrs.update({"seed": seed, "trace_model": fitted})
    # The trials go along (ArviZ's constant_data group): the plot shows rates, not counts.
    trials = xr.Dataset({"n": ("group", table["trials"].to_numpy())}, coords={"group": y_rep["group"].values})
    tree = xr.DataTree.from_dict(
        {"/posterior_predictive": y_rep, "/observed_data": observed, "/constant_data": trials}
    )
    write_datatree(tree, replicated)
    with atomic_path(pvalues) as tmp:
        p_values(y_rep, table, ci_prob).to_csv(tmp, index=False)
