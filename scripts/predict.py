"""Posterior predictive for a group that is not in the data (the article's new launcher).

Writes `theta_new`, the new group's success probability, and `y_new`, its successes in
the next `new_trials` trials, drawn once per posterior draw. What a "new group" means, and
its likelihood, are each model's own answer (its `new_group()`), so this script is the same
for every model.
"""


from common import fitted_model, load_module, read_prepared, read_variables, write_datatree


def predict(model, module, posterior, *, new_trials: int, seed: int):
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
        y_new = module.new_group(model, new_trials)
    theta_new = model["theta_new"]
    # Copies as outputs, not the variables themselves: PyMC resizes a random variable that
    # owes nothing to the fit (no pooling's new group is its prior) to one draw per
    # posterior draw only when it is not itself an output.
    outputs = vectorize_over_posterior([theta_new.copy(), y_new.copy()], posterior, input_rvs=fitted)
    theta_draws, y_draws = pm.draw(outputs, random_seed=seed)
    dims = ("chain", "draw")
    coords = {dim: posterior.coords[dim] for dim in dims}
    return xr.Dataset({"theta_new": (dims, theta_draws), "y_new": (dims, y_draws)}, coords=coords)


def main(data: str, model_file: str, trace: str, prediction: str, *, new_trials: int, seed: int) -> None:
    import xarray as xr

    # The posterior only, as in ppc.py: the trace's log-likelihood is not needed here.
    posterior = read_variables(trace, "posterior", rule_hint="sample")
    fitted = fitted_model(trace)
    module = load_module(model_file)
    model = module.build(read_prepared(data))
    result = predict(model, module, posterior, new_trials=new_trials, seed=seed)
    result.attrs.update({"new_trials": new_trials, "seed": seed, "trace_model": fitted})
    write_datatree(xr.DataTree.from_dict({"/posterior_predictive": result}), prediction)
