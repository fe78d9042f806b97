"""Exact posterior moments of the article's models on binomial data, for the tests.

No pooling and full pooling are conjugate: Beta(1/2 + y, 1/2 + n - y) posteriors. The
hierarchical model has no closed form, but integrating theta out leaves a beta-binomial
likelihood in (alpha, beta) alone, a 2-D integral done here on a grid over
(log alpha, log beta).
"""

import numpy as np
from scipy import special, stats


def beta_moments(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def no_pooling(trials, successes):
    return beta_moments(0.5 + successes, 0.5 + trials - successes)


def full_pooling(trials, successes):
    return beta_moments(0.5 + np.sum(successes), 0.5 + np.sum(trials - successes))


def hierarchical_grid(trials, successes, sigma=10.0, points=1200, lower=-12.0, upper=5.5):
    """(alpha, beta, normalised posterior weights) on a grid over (log alpha, log beta).

    With many groups the posterior is narrow: a first pass on the given range finds it, a
    second pass spans it (+- 8 of its sds) with the same number of points.
    """
    trials, successes = np.asarray(trials), np.asarray(successes)
    # Every group enters through sum_j log BetaBinomial(y_j | n_j, a, b); identical groups
    # once, with their count.
    pairs, counts = np.unique(np.stack([trials, successes]), axis=1, return_counts=True)

    def weights_on(log_a_range, log_b_range):
        log_a, log_b = np.meshgrid(np.linspace(*log_a_range, points), np.linspace(*log_b_range, points), indexing="ij")
        a, b = np.exp(log_a), np.exp(log_b)
        prior = stats.halfnorm(scale=sigma)
        # Priors on alpha, beta plus the Jacobian of the log transform (da = a d(log a)).
        log_density = prior.logpdf(a) + log_a + prior.logpdf(b) + log_b
        for (n, y), count in zip(pairs.T, counts, strict=True):
            log_density += count * (special.betaln(a + y, b + n - y) - special.betaln(a, b))
        weights = np.exp(log_density - log_density.max())
        return log_a, log_b, weights / weights.sum()

    log_a, log_b, weights = weights_on((lower, upper), (lower, upper))
    spans = []
    for values in (log_a, log_b):
        mean = np.sum(weights * values)
        sd = np.sqrt(np.sum(weights * (values - mean) ** 2))
        spans.append((max(lower, mean - 8 * sd), min(upper, mean + 8 * sd)))
    log_a, log_b, weights = weights_on(*spans)
    return np.exp(log_a), np.exp(log_b), weights


def hierarchical(trials, successes, sigma=10.0, points=1200, lower=-12.0, upper=5.5):
    """Posterior means and sds of alpha, beta, mu and each theta_j."""
    a, b, weights = hierarchical_grid(trials, successes, sigma, points, lower, upper)

    def moments(values):
        mean = np.sum(weights * values)
        return mean, np.sqrt(np.sum(weights * (values - mean) ** 2))

    result = {"alpha": moments(a), "beta": moments(b), "mu": moments(a / (a + b))}
    theta = []
    for n, y in zip(trials, successes, strict=True):
        # theta_j | alpha, beta, y ~ Beta(alpha + y_j, beta + n_j - y_j): average its moments.
        post_a, post_b = a + y, b + n - y
        mean = np.sum(weights * post_a / (post_a + post_b))
        second = np.sum(weights * post_a * (post_a + 1) / ((post_a + post_b) * (post_a + post_b + 1)))
        theta.append((mean, np.sqrt(second - mean**2)))
    result["theta"] = (np.array([m for m, _ in theta]), np.array([s for _, s in theta]))
    return result


def hierarchical_loo(trials, successes, j, **grid):
    """log p(y_j | y_-j) of the hierarchical model: the Beta-Binomial likelihood of group j
    averaged over the posterior of (alpha, beta) given the other groups."""
    keep = np.arange(len(trials)) != j
    a, b, weights = hierarchical_grid(np.asarray(trials)[keep], np.asarray(successes)[keep], **grid)
    return np.log(np.sum(weights * stats.betabinom.pmf(successes[j], trials[j], a, b)))


def no_pooling_loo(trials, successes):
    """log p(y_j | y_-j) with no pooling: the other groups say nothing; the prior predictive."""
    return stats.betabinom.logpmf(successes, trials, 0.5, 0.5)


def full_pooling_loo(trials, successes):
    """log p(y_j | y_-j) with full pooling: Beta-Binomial under the others' Beta posterior."""
    trials, successes = np.asarray(trials), np.asarray(successes)
    a = 0.5 + successes.sum() - successes
    b = 0.5 + (trials - successes).sum() - (trials - successes)
    return stats.betabinom.logpmf(successes, trials, a, b)


def hierarchical_logit(trials, successes, sigma_m=1.5, sigma_s=1.5, points=300, nodes=60):
    """Posterior means and sds of m, s and each theta_j of the non-centred logit model.

    Each z_j is integrated out by Gauss-Hermite quadrature, leaving a likelihood in (m, s)
    alone, integrated on a grid over (m, log s).
    """
    from scipy.special import expit, roots_hermitenorm

    z, w = roots_hermitenorm(nodes)
    w = w / w.sum()  # quadrature weights of the standard normal
    m_grid = np.linspace(-6.0, 8.0, points)
    log_s_grid = np.linspace(-7.0, 2.8, points)
    m, log_s = np.meshgrid(m_grid, log_s_grid, indexing="ij")
    s = np.exp(log_s)
    log_density = stats.norm(scale=sigma_m).logpdf(m) + stats.halfnorm(scale=sigma_s).logpdf(s) + log_s
    theta = expit(m[..., None] + s[..., None] * z)  # (m, s, node)
    group_terms = []
    for n, y in zip(trials, successes, strict=True):
        likelihood = stats.binom.pmf(y, n, theta)  # (m, s, node)
        marginal = likelihood @ w
        with np.errstate(divide="ignore", invalid="ignore"):
            # Where the data are impossible the density is 0 and the conditional moments moot.
            log_density += np.log(marginal)
            first = np.where(marginal > 0, (likelihood * theta) @ w / marginal, 0.0)
            second = np.where(marginal > 0, (likelihood * theta**2) @ w / marginal, 0.0)
        group_terms.append((first, second))
    weights = np.exp(log_density - log_density.max())
    weights /= weights.sum()

    def moments(values):
        mean = np.sum(weights * values)
        return mean, np.sqrt(np.sum(weights * (values - mean) ** 2))

    result = {"m": moments(m), "s": moments(s)}
    means = np.array([np.sum(weights * first) for first, _ in group_terms])
    seconds = np.array([np.sum(weights * second) for _, second in group_terms])
    result["theta"] = (means, np.sqrt(seconds - means**2))
    return result


# --------------------------------------------------------------------------------------
# Ranks and exceedance of independent Beta variables, and their averages over (alpha, beta)


def beta_rank_probabilities(a, b, higher_is_better=True, points=12001, bound=300.0):
    """Pr(best), Pr(worst) and the mean rank (1 = best) of independent theta_j ~ Beta(a_j, b_j):
    Pr(j best) = integral of f_j times the product over k != j of F_k (or 1 - F_k), and
    E[rank_j] = 1 + sum over k != j of Pr(theta_k better than theta_j). Arrays over j, or
    over (..., j) for a batch of (a, b).

    Integrated on the log-odds scale u, where x = expit(u) and 1 - x = expit(-u) keep their
    digits near 0 and 1: a Beta(9.5, 0.5) posterior (nine successes in nine) has mass within
    1e-9 of 1, which a grid in x, or in u computed through x, loses."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    u = np.linspace(-bound, bound, points)
    weights = np.full(points, u[1] - u[0])
    weights[[0, -1]] /= 2
    shape = (*a.shape[:-1], 1, a.shape[-1])
    a, b, u = a.reshape(shape), b.reshape(shape), u[:, None]
    # Density in u: x^a (1 - x)^b / B(a, b), with x = expit(u).
    log_density = a * -np.logaddexp(0, -u) + b * -np.logaddexp(0, u) - special.betaln(a, b)
    pdf = np.exp(log_density) * weights[:, None]
    x, one_minus_x = special.expit(u), special.expit(-u)
    below = np.where(u > 0, 1 - special.betainc(b, a, one_minus_x), special.betainc(a, b, x))
    above = np.where(u > 0, special.betainc(b, a, one_minus_x), 1 - special.betainc(a, b, x))
    worse, better = (below, above) if higher_is_better else (above, below)

    def product_of_others(values):
        groups = values.shape[-1]
        return np.stack([np.prod(values[..., [k for k in range(groups) if k != j]], axis=-1) for j in range(groups)], axis=-1)

    p_best = (pdf * product_of_others(worse)).sum(-2)
    p_worst = (pdf * product_of_others(better)).sum(-2)
    mean_rank = 1 + (pdf * (better.sum(-1, keepdims=True) - better)).sum(-2)
    return p_best, p_worst, mean_rank


def beta_exceedance(a, b, benchmark):
    """Pr(theta_j > t) per j, Pr(max_j theta_j > t) and Pr(min_j theta_j < t) of independent
    theta_j ~ Beta(a_j, b_j) (over the last axis)."""
    below = stats.beta.cdf(benchmark, a, b)
    return 1 - below, 1 - below.prod(-1), 1 - (1 - below).prod(-1)


def hierarchical_rank_probabilities(trials, successes, higher_is_better=True, points=30):
    """The same under the hierarchical model: given (alpha, beta) the theta_j are independent
    Beta(alpha + y_j, beta + n_j - y_j); averaged over the posterior of (alpha, beta) on a
    grid (hierarchical_grid), leaving out the grid points of negligible weight."""
    alpha, beta, weights = hierarchical_grid(trials, successes, points=points)
    kept = weights.reshape(-1) > 1e-12 * weights.max()
    weights = weights.reshape(-1)[kept] / weights.reshape(-1)[kept].sum()
    a = alpha.reshape(-1, 1)[kept] + successes
    b = beta.reshape(-1, 1)[kept] + trials - successes
    results = [np.zeros(len(trials)) for _ in range(3)]
    for start in range(0, a.shape[0], 20):
        block = beta_rank_probabilities(a[start:start + 20], b[start:start + 20], higher_is_better, points=6001)
        w = weights[start:start + 20, None]
        for index, values in enumerate(block):
            results[index] += (w * values).sum(0)
    return tuple(results)


def hierarchical_exceedance(trials, successes, benchmark, points=40):
    alpha, beta, weights = hierarchical_grid(trials, successes, points=points)
    a = alpha.reshape(-1, 1) + successes
    b = beta.reshape(-1, 1) + trials - successes
    w = weights.reshape(-1)
    above, largest, smallest = beta_exceedance(a, b, benchmark)
    return (w[:, None] * above).sum(0), float((w * largest).sum()), float((w * smallest).sum())


# --------------------------------------------------------------------------------------
# The normal-normal model of effect estimates: exact by one-dimensional quadrature over tau


def normal_normal(estimate, se, *, mu_sd, tau_log_prior, tau_max, points=20001):
    """Posterior means and sds of mu, tau and every theta_j, and of a new study's theta, for
    y_j ~ N(theta_j, se_j^2), theta_j ~ N(mu, tau^2), mu ~ N(0, mu_sd^2) (mu_sd = inf: flat),
    tau with log prior density `tau_log_prior(tau)` on (0, tau_max).

    Given tau everything is Gaussian (BDA3 eqs. 5.17-5.21, with mu's prior added): mu | tau, y
    ~ N(m, v) with precision 1/mu_sd^2 + sum w_j and mean sum w_j y_j / precision, w_j =
    1/(se_j^2 + tau^2); theta_j | mu, tau, y ~ N((y_j/se_j^2 + mu/tau^2) / (1/se_j^2 + 1/tau^2),
    1 / (1/se_j^2 + 1/tau^2)); and p(tau | y) is proportional to the prior times
    sqrt(v) prod N(y_j | 0-centred terms) (the marginal likelihood with mu integrated out).
    """
    y, s2 = np.asarray(estimate, float), np.asarray(se, float) ** 2
    # A grid dense near tau = 0, where a flat-ish posterior of tau often peaks: tau = tau_max
    # x^2 for x uniform on (0, 1], integrated in x (dtau = 2 tau_max x dx).
    x = np.linspace(0, 1, points)[1:]
    tau = (tau_max * x**2)[:, None]
    jacobian = np.log(2 * tau_max * x)
    w = 1 / (s2 + tau**2)
    precision = (0 if np.isinf(mu_sd) else 1 / mu_sd**2) + w.sum(1, keepdims=True)
    m = (w * y).sum(1, keepdims=True) / precision
    v = 1 / precision
    # log p(y | tau), mu integrated out (up to a constant): Gaussian algebra.
    log_marginal = (0.5 * np.log(v) + 0.5 * np.log(w).sum(1, keepdims=True)
                    - 0.5 * (w * y**2).sum(1, keepdims=True) + 0.5 * m**2 * precision)
    log_post = (log_marginal + tau_log_prior(tau)).ravel() + jacobian
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()

    def moments(mean_given_tau, var_given_tau=0.0):
        mean = np.sum(weights * np.ravel(mean_given_tau))
        second = np.sum(weights * (np.ravel(var_given_tau) + np.ravel(mean_given_tau) ** 2))
        return mean, np.sqrt(second - mean**2)

    result = {"mu": moments(m, v), "tau": moments(tau), "theta_new": moments(m, v + tau**2)}
    # theta_j | tau, y: its conditional mean is linear in mu, so average over mu | tau too.
    shrink = (1 / tau**2) / (1 / s2 + 1 / tau**2)
    cond_mean = (1 - shrink) * y + shrink * m
    cond_var = 1 / (1 / s2 + 1 / tau**2) + shrink**2 * v
    theta = [moments(cond_mean[:, j], cond_var[:, j]) for j in range(len(y))]
    result["theta"] = (np.array([a for a, _ in theta]), np.array([b for _, b in theta]))
    return result
