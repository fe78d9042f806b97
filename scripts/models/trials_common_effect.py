"""Common effect ("fixed effect") meta-analysis of two-arm trials with a binary outcome
(full pooling of the effect), with the exact binomial likelihood of each arm:

    baseline_j ~ Normal(0, 10)                 (log odds of an event in trial j's control arm)
    theta      ~ Normal(0, 10)                 (the one log odds ratio of every trial)
    control events_j ~ Binomial(control trials_j, invlogit(baseline_j))
    treated events_j ~ Binomial(treated trials_j, invlogit(baseline_j + theta))

See trials_random_effects.py for the priors.
"""

import pymc as pm

SHAPE = "two_arm"
POPULATION_MEAN = None
HYPERPRIORS = ("theta",)
BASELINE_SD = 10.0


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        baseline = pm.Normal("baseline", mu=0, sigma=BASELINE_SD, dims="group")
        theta = pm.Normal("theta", mu=0, sigma=10)
        pm.Deterministic("odds_ratio", pm.math.exp(theta))
        pm.Binomial("y_control", n=data["control_trials"].to_numpy(), logit_p=baseline,
                    observed=data["control_events"].to_numpy(), dims="group")
        pm.Binomial("y_treated", n=data["treated_trials"].to_numpy(), logit_p=baseline + theta,
                    observed=data["treated_events"].to_numpy(), dims="group")
    return model


def new_group(model, size):
    # Every trial has the same log odds ratio: so does a new one.
    pm.Deterministic("theta_new", model["theta"])
    return None


def group_log_likelihood(posterior, data):
    """log p(trial j's events | theta) per draw and trial: its baseline integrated out."""
    import two_arm

    return two_arm.log_integrated_likelihood(data, posterior["theta"].values, None, baseline_sd=BASELINE_SD)
