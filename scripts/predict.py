"""Posterior predictive for a group that is not in the data (the article's new launcher, a
new study of a meta-analysis).

Writes `theta_new`, the new group's theta (success probability, true effect, log odds
ratio), and `y_new`, what it would show: its successes in the next `new_trials` trials,
or its estimate with standard error `new_se` (the median of the data's if not given);
drawn once per posterior draw. A model whose new group shows nothing without more than
the data tell (two-arm trials: a new trial's events need its baseline) gives theta_new
alone. What a "new group" means, and its likelihood, are each model's own answer (its
`new_group()`), so this script is the same for every model.
"""

import numpy as np

from common import fitted_model, load_module, read_prepared, read_variables, write_datatree
from shapes import shape_of


def new_group_size(table, *, new_trials: int, new_se: float | None):
    """What a new group's `new_group(model, size)` takes: trials, a standard error, or None."""
    shape = shape_of(table)
    if shape == "binomial":
        return new_trials
    if shape == "effects":
        return float(new_se) if new_se else float(np.median(table["se"]))
    return None


def predict(model, module, posterior, *, size, seed: int):
    """theta_new and y_new once per draw of `posterior` (a Dataset over chain and draw).

    The forward graph is vectorised over all draws and evaluated once (PyMC's
    `vectorize_over_posterior`), instead of once per draw as `sample_posterior_predictive`
    does: seconds less per job, and for a new group drawn from the fitted population the
    very same draws for the same seed (tests/test_predict.py compares them).
    """
    import pymc as pm
    import xarray as xr
    from pymc.sampling.forward import vectorize_over_posterior

    fitted = list(model.free_RVs)  # before new_group() adds its own
    with model:
        y_new = module.new_group(model, size)
    wanted = {"theta_new": model["theta_new"], **({"y_new": y_new} if y_new is not None else {})}
    # Copies as outputs, not the variables themselves: PyMC resizes a random variable that
    # owes nothing to the fit (no pooling's new group is its prior) to one draw per
    # posterior draw only when it is not itself an output.
    outputs = vectorize_over_posterior([v.copy() for v in wanted.values()], posterior, input_rvs=fitted)
    draws = pm.draw(outputs, random_seed=seed)
    dims = ("chain", "draw")
    coords = {dim: posterior.coords[dim] for dim in dims}
    return xr.Dataset({name: (dims, values) for name, values in zip(wanted, draws, strict=True)}, coords=coords)


def main(data: str, model_file: str, trace: str, prediction: str, *, new_trials: int, seed: int,
         new_se: float | None = None) -> None:
    import xarray as xr

    # The posterior only, as in ppc.py: the trace's log-likelihood is not needed here.
    posterior = read_variables(trace, "posterior", rule_hint="sample")
    fitted = fitted_model(trace)
    module = load_module(model_file)
    table = read_prepared(data)
    model = module.build(table)
    size = new_group_size(table, new_trials=new_trials, new_se=new_se)
    result = predict(model, module, posterior, size=size, seed=seed)
    result.attrs.update({"new_size": "none" if size is None else size, "seed": seed, "trace_model": fitted})
    write_datatree(xr.DataTree.from_dict({"/posterior_predictive": result}), prediction)
