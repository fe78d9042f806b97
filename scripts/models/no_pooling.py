"""No pooling: every group has its own success probability, learnt from its data alone.

    theta_j ~ Beta(1/2, 1/2)            (Jeffreys prior)
    y_j     ~ Binomial(n_j, theta_j)

A model file defines `build(data)` -> pm.Model, where `data` has columns group, trials
and successes, with coords `group`, the success probabilities `theta` and the observed
successes `y`; and `new_group(model, trials)`, called inside the model's context, which
defines `theta_new`, the success probability of a group that is not in the data, and
returns `y_new`, its successes in `trials` trials under the model's likelihood.
`POPULATION_MEAN` names the deterministic holding the population's mean success
probability, or is None. `HYPERPRIORS`, if given, names the variables whose priors the
prior sensitivity check scales (default: every free variable's). docs/extending.md says
more.
"""

import pymc as pm

POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        theta = pm.Beta("theta", alpha=0.5, beta=0.5, dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    # Groups share nothing here, so the data say nothing about a new one: its prior.
    theta_new = pm.Beta("theta_new", alpha=0.5, beta=0.5)
    return pm.Binomial("y_new", n=trials, p=theta_new)


def exact_loo(data):
    """log p(y_j | y_-j) per group, exactly. Groups share nothing, so leaving group j out
    leaves theta_j with its prior: the Beta-Binomial(n_j, 1/2, 1/2) prior predictive."""
    from scipy import stats

    return stats.betabinom.logpmf(data["successes"].to_numpy(), data["trials"].to_numpy(), 0.5, 0.5)
