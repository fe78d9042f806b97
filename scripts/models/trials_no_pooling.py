"""No pooling of two-arm trials with a binary outcome: every trial's effect on its own, with
the exact binomial likelihood of each arm:

    baseline_j ~ Normal(0, 10)                 (log odds of an event in trial j's control arm)
    theta_j    ~ Normal(0, 10)                 (trial j's log odds ratio)
    control events_j ~ Binomial(control trials_j, invlogit(baseline_j))
    treated events_j ~ Binomial(treated trials_j, invlogit(baseline_j + theta_j))

See trials_random_effects.py for the priors.
"""

import numpy as np
import pymc as pm

SHAPE = "two_arm"
POPULATION_MEAN = None
HYPERPRIORS = ("theta",)  # the baselines' vague priors are not scaled
BASELINE_SD = 10.0
EFFECT_SD = 10.0


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        baseline = pm.Normal("baseline", mu=0, sigma=BASELINE_SD, dims="group")
        theta = pm.Normal("theta", mu=0, sigma=EFFECT_SD, dims="group")
        pm.Binomial("y_control", n=data["control_trials"].to_numpy(), logit_p=baseline,
                    observed=data["control_events"].to_numpy(), dims="group")
        pm.Binomial("y_treated", n=data["treated_trials"].to_numpy(), logit_p=baseline + theta,
                    observed=data["treated_events"].to_numpy(), dims="group")
    return model


def new_group(model, size):
    # Trials share nothing, so the data say nothing about a new one: its prior.
    pm.Normal("theta_new", mu=0, sigma=EFFECT_SD)
    return None


def exact_loo(data):
    """log p(trial j | the others) per trial: trials share nothing, so it is the trial's
    prior predictive, its baseline and effect integrated over their priors."""
    import two_arm

    return two_arm.log_integrated_likelihood(data, np.zeros(1), np.full(1, EFFECT_SD), baseline_sd=BASELINE_SD)[0]
