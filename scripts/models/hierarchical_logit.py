"""Hierarchical on the log-odds scale, non-centred: a fourth pooling model.

    m       ~ Normal(0, 1.5)        (log-odds of a typical group; 1.5 spreads its
                                     success probability over (0, 1) without piling up at the ends)
    s       ~ HalfNormal(1.5)       (spread of the groups' log-odds)
    z_j     ~ Normal(0, 1)
    theta_j = invlogit(m + s * z_j)
    y_j     ~ Binomial(n_j, theta_j)

The non-centred form samples the groups' offsets z_j independently of the spread s,
which avoids the funnel between s and the groups that a centred form has when groups
are few or small. It is added the way a user adds a model: this file and one entry under
`models:` in the config. See no_pooling.py for what a model file defines.
"""

import pymc as pm

# The population's mean success probability has no closed form here (it averages
# invlogit over a Normal), so no population-mean figure.
POPULATION_MEAN = None


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        m = pm.Normal("m", mu=0, sigma=1.5)
        s = pm.HalfNormal("s", sigma=1.5)
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", pm.math.invlogit(m + s * z), dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model):
    # A new group's offset is one more standard-normal draw, scaled by the fitted spread.
    z_new = pm.Normal("z_new", mu=0, sigma=1)
    return pm.Deterministic("theta_new", pm.math.invlogit(model["m"] + model["s"] * z_new))
