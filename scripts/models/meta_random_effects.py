"""Random effects meta-analysis of effect estimates (partial pooling; the normal-normal model):

    mu      ~ Normal(0, 10 s)            (the mean effect of the population of studies)
    tau     ~ HalfCauchy(s)              (the spread of the studies' true effects)
    z_j     ~ Normal(0, 1)
    theta_j = mu + tau z_j               (study j's true effect; non-centred)
    y_j     ~ Normal(theta_j, se_j)      (its reported estimate, se_j known)

s is the data set's `prior_scale` (data.csv): by default sqrt(var(y) + mean(se^2)), the
spread of the estimates themselves, fixed for the data set (so a study left out for
cross-validation leaves the priors as they were). mu's prior is vague; tau's is weakly
informative: half its mass below s, heavy-tailed above. Rubin's and BDA3's analyses use
flat priors on mu and tau instead; docs/meta-analysis.md compares.

Given tau, theta_j integrates out in closed form: y_j | mu, tau ~ Normal(mu, tau^2 + se_j^2),
the likelihood of a left-out study (`group_log_likelihood`).
"""

import numpy as np
import pymc as pm

SHAPE = "effects"
POPULATION_MEAN = "mu"
HYPERPRIORS = ("mu", "tau")


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        # The priors' scale, fixed for the data set (prepare_data.py), kept in the model.
        scale = pm.Data("prior_scale", float(data["prior_scale"].iloc[0]))
        mu = pm.Normal("mu", mu=0, sigma=10 * scale)
        tau = pm.HalfCauchy("tau", beta=scale)
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        pm.Normal("y", mu=theta, sigma=data["se"].to_numpy(), observed=data["estimate"].to_numpy(), dims="group")
    return model


def new_group(model, se):
    # A new study's true effect is one more draw from the population: its distribution is
    # the meta-analysis' prediction interval; y_new is what the study would report.
    theta_new = pm.Normal("theta_new", mu=model["mu"], sigma=model["tau"])
    return pm.Normal("y_new", mu=theta_new, sigma=se)


def group_log_likelihood(posterior, data):
    """log Normal(y_j | mu, tau^2 + se_j^2) per draw and study: theta_j integrated out."""
    from scipy import stats

    mu = posterior["mu"].values[..., None]
    tau = posterior["tau"].values[..., None]
    se, y = data["se"].to_numpy(float), data["estimate"].to_numpy(float)
    return stats.norm.logpdf(y, mu, np.sqrt(tau**2 + se**2))
