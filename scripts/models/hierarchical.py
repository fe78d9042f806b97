"""Hierarchical (partial pooling): group probabilities drawn from a common Beta population.

    alpha, beta ~ HalfNormal(10)
    mu          = alpha / (alpha + beta)      (the population's mean success probability)
    theta_j     ~ Beta(alpha, beta)
    y_j         ~ Binomial(n_j, theta_j)

See no_pooling.py for what a model file defines.
"""

import pymc as pm

POPULATION_MEAN = "mu"


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        alpha = pm.HalfNormal("alpha", sigma=10)
        beta = pm.HalfNormal("beta", sigma=10)
        pm.Deterministic("mu", alpha / (alpha + beta))
        theta = pm.Beta("theta", alpha=alpha, beta=beta, dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model):
    # A new launcher is one more draw from the fitted population, as in the article.
    return pm.Beta("theta_new", alpha=model["alpha"], beta=model["beta"])
