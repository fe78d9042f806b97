"""The random effects model of effect estimates with the priors of Rubin (1981) and BDA3
section 5.5: flat on mu (here N(0, 10^4^2)) and uniform on tau (here on (0, 1000)), to
compare the workflow with the published analyses of the eight schools (tests/test_meta.py).

    mu ~ Normal(0, 10^4); tau ~ Uniform(0, 1000); theta_j = mu + tau z_j, z_j ~ N(0, 1);
    y_j ~ Normal(theta_j, se_j)
"""

import pymc as pm

SHAPE = "effects"
POPULATION_MEAN = "mu"
HYPERPRIORS = ("mu", "tau")


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        mu = pm.Normal("mu", mu=0, sigma=1e4)
        tau = pm.Uniform("tau", lower=0, upper=1000)
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        pm.Normal("y", mu=theta, sigma=data["se"].to_numpy(), observed=data["estimate"].to_numpy(), dims="group")
    return model


def new_group(model, se):
    theta_new = pm.Normal("theta_new", mu=model["mu"], sigma=model["tau"])
    return pm.Normal("y_new", mu=theta_new, sigma=se)
