"""Common effect ("fixed effect") meta-analysis of effect estimates (full pooling):

    theta ~ Normal(0, 10 s)              (the one true effect every study measures)
    y_j   ~ Normal(theta, se_j)          (study j's reported estimate, se_j known)

s is the data set's `prior_scale` (see meta_random_effects.py). With a vague prior, the
posterior is the inverse-variance weighted mean, the classical common-effect estimate.
"""

import numpy as np
import pymc as pm

SHAPE = "effects"
POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        # The priors' scale, fixed for the data set (prepare_data.py), kept in the model.
        scale = pm.Data("prior_scale", float(data["prior_scale"].iloc[0]))
        theta = pm.Normal("theta", mu=0, sigma=10 * scale)
        pm.Normal("y", mu=theta, sigma=data["se"].to_numpy(), observed=data["estimate"].to_numpy(), dims="group")
    return model


def new_group(model, se):
    # Every study measures the same effect: so does a new one.
    theta_new = pm.Deterministic("theta_new", model["theta"])
    return pm.Normal("y_new", mu=theta_new, sigma=se)


def exact_loo(data):
    """log p(y_j | y_-j) per study, exactly: without study j, theta's posterior is Normal
    (conjugate: prior precision plus the other studies' 1/se^2), and y_j's predictive is
    Normal(its mean, its variance + se_j^2)."""
    from scipy import stats

    y, se = data["estimate"].to_numpy(float), data["se"].to_numpy(float)
    prior_precision = 1 / (10 * float(data["prior_scale"].iloc[0])) ** 2
    weights = 1 / se**2
    precision = prior_precision + weights.sum() - weights
    mean = ((weights * y).sum() - weights * y) / precision
    return stats.norm.logpdf(y, mean, np.sqrt(1 / precision + se**2))
