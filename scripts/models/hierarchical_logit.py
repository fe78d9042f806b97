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
# The priors the sensitivity check scales: the population's, not each group's draw from it.
HYPERPRIORS = ("m", "s")


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        m = pm.Normal("m", mu=0, sigma=1.5)
        s = pm.HalfNormal("s", sigma=1.5)
        z = pm.Normal("z", mu=0, sigma=1, dims="group")
        theta = pm.Deterministic("theta", pm.math.invlogit(m + s * z), dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    # A new group's offset is one more standard-normal draw, scaled by the fitted spread.
    z_new = pm.Normal("z_new", mu=0, sigma=1)
    theta_new = pm.Deterministic("theta_new", pm.math.invlogit(model["m"] + model["s"] * z_new))
    return pm.Binomial("y_new", n=trials, p=theta_new)


def group_log_likelihood(posterior, data, nodes=25, newton_steps=20):
    """log p(y_j | m, s) = log E_z[Binomial(y_j | n_j, invlogit(m + s z))], z ~ N(0, 1), per
    draw and group: the likelihood of a left-out group, for leave-one-group-out
    cross-validation.

    Adaptive Gauss-Hermite quadrature: the integrand is centred on its mode (Newton's
    method; it is log-concave) and scaled by its curvature there, so that it stays accurate
    when a group's trials pin z_j down far more tightly than its prior. Measured against a
    fine grid (tests/test_loo.py): within 1e-4 for spreads s < 3; up to 0.03 for s > 3 in
    groups with all successes or all failures, whose integrand is a one-sided plateau.
    """
    import numpy as np
    from scipy import special

    x, w = np.polynomial.hermite.hermgauss(nodes)
    y, n = data["successes"].to_numpy(), data["trials"].to_numpy()
    log_choose = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
    m_all, s_all = posterior["m"].values, posterior["s"].values
    result = np.empty((*m_all.shape, len(y)))
    # Draws in chunks: all of them at once would need draws x groups x nodes floats.
    step = max(1, 2_000_000 // (len(y) * nodes))
    for chain in range(m_all.shape[0]):
        for start in range(0, m_all.shape[1], step):
            m = m_all[chain, start : start + step, None]
            s = s_all[chain, start : start + step, None]
            # Start from the group's own rate, shrunk toward the prior by its precision; then
            # Newton, its steps clipped so that it cannot overshoot on a flat tail.
            rate = (y + 0.5) / (n + 1)
            information = (s**2) * n * rate * (1 - rate)
            z = information / (information + 1) * (special.logit(rate) - m) / s
            for _ in range(newton_steps):
                p = special.expit(m + s * z)
                z = z - np.clip((s * (y - n * p) - z) / (-(s**2) * n * p * (1 - p) - 1), -1, 1)
            p = special.expit(m + s * z)
            scale = np.sqrt(2 / ((s**2) * n * p * (1 - p) + 1))
            points = z[..., None] + scale[..., None] * x
            eta = m[..., None] + s[..., None] * points
            log_binomial = -y[:, None] * np.logaddexp(0, -eta) - (n - y)[:, None] * np.logaddexp(0, eta)
            logs = log_binomial - points**2 / 2 + x**2 + np.log(w)
            result[chain, start : start + step] = (
                log_choose + np.log(scale) - 0.5 * np.log(2 * np.pi) + special.logsumexp(logs, axis=-1)
            )
    return result


# Groups up to which a left-out group's value comes by quadrature: its cost grows with the
# groups (each one's z is integrated at every grid point); beyond, loo.py refits.
QUADRATURE_GROUPS = 200


def exact_group_loo(data, positions, points=120):
    """log p(y_j | y_-j) for the groups at `positions`, by quadrature: each group's z
    integrated out (`group_log_likelihood`), then (m, s) on a grid over (m, log s) that
    spans their posterior without group j (a first pass over a wide box finds it, a second
    spans +- 8 of its sds). p(y_j | y_-j) = Z / Z_-j, as for the hierarchical model. None
    above QUADRATURE_GROUPS groups (loo.py then refits).
    """
    import numpy as np
    import xarray as xr
    from scipy import special, stats

    if len(data) > QUADRATURE_GROUPS:
        return None

    def on_grid(box):
        m, log_s = np.meshgrid(np.linspace(*box[0], points), np.linspace(*box[1], points), indexing="ij")
        grid = xr.Dataset({"m": (("chain", "draw"), m.reshape(1, -1)), "s": (("chain", "draw"), np.exp(log_s).reshape(1, -1))})
        prior = stats.norm(scale=1.5).logpdf(m) + stats.halfnorm(scale=1.5).logpdf(np.exp(log_s)) + log_s
        return m.ravel(), log_s.ravel(), prior.ravel(), group_log_likelihood(grid, data)[0]

    result = []
    for position in positions:
        m, log_s, prior, groups = on_grid(((-8.0, 8.0), (-7.0, 2.5)))
        without = prior + groups.sum(axis=1) - groups[:, position]
        weights = np.exp(without - without.max())
        weights /= weights.sum()
        box = []
        for values, limits in ((m, (-8.0, 8.0)), (log_s, (-7.0, 2.5))):
            mean = (weights * values).sum()
            sd = np.sqrt((weights * (values - mean) ** 2).sum())
            box.append((max(limits[0], mean - 8 * sd), min(limits[1], mean + 8 * sd)))
        _, _, prior, groups = on_grid(box)
        without = prior + groups.sum(axis=1) - groups[:, position]
        result.append(special.logsumexp(without + groups[:, position]) - special.logsumexp(without))
    return np.array(result)
