"""Full pooling with over-dispersion: one mean success probability, groups scattered about it.

    theta ~ Beta(1/2, 1/2)
    kappa ~ Gamma(2, 0.1)      (concentration: small kappa, much scatter)
    y_j   ~ BetaBinomial(n_j, theta kappa, (1 - theta) kappa)

Its likelihood is not Binomial: tests/test_ppc.py checks that the posterior predictive
check replicates it as written here, not as a Binomial.
"""

import pymc as pm

POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        theta = pm.Beta("theta", alpha=0.5, beta=0.5)
        kappa = pm.Gamma("kappa", alpha=2, beta=0.1)
        pm.BetaBinomial(
            "y", n=data["trials"].to_numpy(), alpha=theta * kappa, beta=(1 - theta) * kappa,
            observed=data["successes"].to_numpy(), dims="group",
        )
    return model


def new_group(model, trials):
    # A new group's success probability scatters about theta like the others'.
    theta, kappa = model["theta"], model["kappa"]
    theta_new = pm.Beta("theta_new", alpha=theta * kappa, beta=(1 - theta) * kappa)
    return pm.Binomial("y_new", n=trials, p=theta_new)
