"""The BUGS "Blocker" example's random effects model (OpenBUGS Examples Vol. I), with its
priors, to compare the workflow with the published results (tests/test_meta.py):

    mu[i] ~ dnorm(0, 1.0E-5)   (baseline, precision: sd 316)
    delta[i] ~ dnorm(d, tau)   (the trial's log odds ratio)
    d ~ dnorm(0, 1.0E-6)       (sd 1000)
    tau ~ dgamma(0.001, 0.001) (precision; sigma = 1 / sqrt(tau))
    rc[i] ~ dbin(pc[i], nc[i]); rt[i] ~ dbin(pt[i], nt[i]); logit(pc) = mu; logit(pt) = mu + delta

Named as the workflow's trials_random_effects: baseline, mu (= d), tau (= sigma), theta.
"""

import pymc as pm

SHAPE = "two_arm"
POPULATION_MEAN = "mu"
HYPERPRIORS = ("mu", "precision")


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        baseline = pm.Normal("baseline", mu=0, sigma=1e5**0.5, dims="group")
        mu = pm.Normal("mu", mu=0, sigma=1e3)
        precision = pm.Gamma("precision", alpha=0.001, beta=0.001)
        tau = pm.Deterministic("tau", 1 / pm.math.sqrt(precision))
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        pm.Binomial("y_control", n=data["control_trials"].to_numpy(), logit_p=baseline,
                    observed=data["control_events"].to_numpy(), dims="group")
        pm.Binomial("y_treated", n=data["treated_trials"].to_numpy(), logit_p=baseline + theta,
                    observed=data["treated_events"].to_numpy(), dims="group")
    return model


def new_group(model, size):
    pm.Normal("theta_new", mu=model["mu"], sigma=model["tau"])
    return None
