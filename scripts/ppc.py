"""Posterior predictive check: does the fitted model reproduce the data it was fitted to?

For every posterior draw, replicated successes y_rep of every group (same trials), and
per group the posterior predictive p-values P(y_rep >= y) and P(y_rep <= y). A value near
0 or 1 on either side flags a group the model cannot reproduce, e.g. a launcher forced to
the fleet's success rate by full pooling.
"""

import numpy as np

from common import atomic_path, load_module, read_datatree, read_prepared, write_datatree


def replicate(model, table, trace, *, seed: int):
    """y_rep over (chain, draw, group): the model's observed variable drawn again once per
    posterior draw, under whatever likelihood the model file gives it."""
    import pymc as pm
    import xarray as xr
    from pymc.sampling.forward import vectorize_over_posterior

    observed = observed_variable(model)
    posterior = trace["posterior"].to_dataset()
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
    coords = {"chain": posterior.coords["chain"], "draw": posterior.coords["draw"], "group": trace["observed_data"]["group"].values}
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


def p_values(y_rep, table, ci_prob: float):
    import pandas as pd

    observed = table["successes"].to_numpy()
    flat = y_rep["y"].values.reshape(-1, len(table))
    tail = (1 - ci_prob) / 2
    return pd.DataFrame(
        {
            "group": table["group"],
            "trials": table["trials"],
            "observed": observed,
            "replicated_mean": flat.mean(axis=0),
            "replicated_low": np.quantile(flat, tail, axis=0),
            "replicated_high": np.quantile(flat, 1 - tail, axis=0),
            "p_greater_equal": (flat >= observed).mean(axis=0),
            "p_less_equal": (flat <= observed).mean(axis=0),
        }
    )


def main(data: str, model_file: str, trace: str, replicated: str, pvalues: str, *, seed: int, ci_prob: float) -> None:
    import xarray as xr

    trace = read_datatree(trace, rule_hint="sample")
    table = read_prepared(data)
    model = load_module(model_file).build(table)
    y_rep = replicate(model, table, trace, seed=seed)
    y_rep.attrs.update({"seed": seed, "trace_model": trace.attrs.get("pipeline_model", "")})
    # The trials go along (ArviZ's constant_data group): the plot shows rates, not counts.
    trials = xr.Dataset({"n": ("group", table["trials"].to_numpy())}, coords={"group": y_rep["group"].values})
    tree = xr.DataTree.from_dict(
        {"/posterior_predictive": y_rep, "/observed_data": trace["observed_data"].to_dataset(), "/constant_data": trials}
    )
    write_datatree(tree, replicated)
    with atomic_path(pvalues) as tmp:
        p_values(y_rep, table, ci_prob).to_csv(tmp, index=False)
