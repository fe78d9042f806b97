"""No pooling of effect estimates: every study's true effect on its own.

    theta_j ~ Normal(0, 10 s)            (study j's true effect)
    y_j     ~ Normal(theta_j, se_j)      (its reported estimate, se_j known)

s is the data set's `prior_scale` (see meta_random_effects.py). Each theta_j's posterior
is its own estimate, shrunk a hair toward 0 by the vague prior.
"""

import numpy as np
import pymc as pm

SHAPE = "effects"
POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        # The priors' scale, fixed for the data set (prepare_data.py), kept in the model.
        scale = pm.Data("prior_scale", float(data["prior_scale"].iloc[0]))
        theta = pm.Normal("theta", mu=0, sigma=10 * scale, dims="group")
        pm.Normal("y", mu=theta, sigma=data["se"].to_numpy(), observed=data["estimate"].to_numpy(), dims="group")
    return model


def new_group(model, se):
    # Studies share nothing, so the data say nothing about a new one: its prior.
    theta_new = pm.Normal("theta_new", mu=0, sigma=10 * model["prior_scale"])
    return pm.Normal("y_new", mu=theta_new, sigma=se)


def exact_loo(data):
    """log p(y_j | y_-j) per study, exactly: studies share nothing, so leaving study j out
    leaves theta_j with its prior: y_j ~ Normal(0, (10 s)^2 + se_j^2)."""
    from scipy import stats

    se = data["se"].to_numpy(float)
    prior_sd = 10 * float(data["prior_scale"].iloc[0])
    return stats.norm.logpdf(data["estimate"].to_numpy(float), 0, np.sqrt(prior_sd**2 + se**2))
