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


def new_group(model):
    # A new group is assumed to be like every other: it has the shared theta.
    return pm.Deterministic("theta_new", model["theta"])
