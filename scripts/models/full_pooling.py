"""Full pooling: one success probability shared by every group.

    theta ~ Beta(1/2, 1/2)
    y_j   ~ Binomial(n_j, theta)

See no_pooling.py for what a model file defines.
"""

import pymc as pm

POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        theta = pm.Beta("theta", alpha=0.5, beta=0.5)
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    # A new group is assumed to be like every other: it has the shared theta.
    theta_new = pm.Deterministic("theta_new", model["theta"])
    return pm.Binomial("y_new", n=trials, p=theta_new)


def exact_loo(data):
    """log p(y_j | y_-j) per group, exactly: without group j, theta's posterior is
    Beta(1/2 + sum of the other successes, 1/2 + sum of the other failures), and y_j's
    predictive under it is Beta-Binomial. (A refit cannot estimate this well: a group far
    from the others lives in the tail of their posterior, where no draw falls.)"""
    from scipy import stats

    n, y = data["trials"].to_numpy(), data["successes"].to_numpy()
    return stats.betabinom.logpmf(y, n, 0.5 + y.sum() - y, 0.5 + (n - y).sum() - (n - y))
