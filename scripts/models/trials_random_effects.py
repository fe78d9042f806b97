"""Random effects meta-analysis of two-arm trials with a binary outcome (partial pooling),
with the exact binomial likelihood of each arm (Smith, Spiegelhalter and Thomas 1995; the
BUGS "Blocker" example):

    baseline_j ~ Normal(0, 10)                 (log odds of an event in trial j's control arm)
    mu         ~ Normal(0, 10)                 (the mean log odds ratio of the population)
    tau        ~ HalfNormal(0.5)               (the spread of the trials' log odds ratios)
    z_j        ~ Normal(0, 1)
    theta_j    = mu + tau z_j                  (trial j's log odds ratio; non-centred)
    control events_j ~ Binomial(control trials_j, invlogit(baseline_j))
    treated events_j ~ Binomial(treated trials_j, invlogit(baseline_j + theta_j))

The baselines are the trials' own, not pooled (a trial's population is its own); the
effects are. HalfNormal(0.5) on tau is weakly informative on the log odds ratio scale
(Röver et al. 2021: it gives between-trial odds ratios varying by a factor of 3 or more
a few percent); the BUGS example puts Gamma(0.001, 0.001) on the precision 1/tau^2
instead, and vague priors N(0, 1000^2) on mu and N(0, 316^2) on each baseline
(docs/meta-analysis.md compares). No continuity correction is needed for zero events.
"""

import pymc as pm

SHAPE = "two_arm"
POPULATION_MEAN = "mu"
HYPERPRIORS = ("mu", "tau")
BASELINE_SD = 10.0


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        baseline = pm.Normal("baseline", mu=0, sigma=BASELINE_SD, dims="group")
        mu = pm.Normal("mu", mu=0, sigma=10)
        tau = pm.HalfNormal("tau", sigma=0.5)
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        pm.Deterministic("odds_ratio", pm.math.exp(mu))
        pm.Binomial("y_control", n=data["control_trials"].to_numpy(), logit_p=baseline,
                    observed=data["control_events"].to_numpy(), dims="group")
        pm.Binomial("y_treated", n=data["treated_trials"].to_numpy(), logit_p=baseline + theta,
                    observed=data["treated_events"].to_numpy(), dims="group")
    return model


def new_group(model, size):
    # A new trial's log odds ratio is one more draw from the population: its distribution
    # is the meta-analysis' prediction interval. Its events would need its baseline, which
    # no trial tells: none are predicted.
    pm.Normal("theta_new", mu=model["mu"], sigma=model["tau"])
    return None


def group_log_likelihood(posterior, data):
    """log p(trial j's events | mu, tau) per draw and trial: its baseline (prior
    N(0, 10^2)) and its log odds ratio (N(mu, tau^2)) integrated out (scripts/two_arm.py)."""
    import two_arm

    return two_arm.log_integrated_likelihood(data, posterior["mu"].values, posterior["tau"].values, baseline_sd=BASELINE_SD)
