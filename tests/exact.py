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


def hierarchical(trials, successes, sigma=10.0, points=1200, lower=-12.0, upper=5.5):
    """Posterior means and sds of alpha, beta, mu and each theta_j."""
    grid = np.linspace(lower, upper, points)
    log_a, log_b = np.meshgrid(grid, grid, indexing="ij")
    a, b = np.exp(log_a), np.exp(log_b)
    prior = stats.halfnorm(scale=sigma)
    # Priors on alpha, beta plus the Jacobian of the log transform (da = a d(log a)).
    log_density = prior.logpdf(a) + log_a + prior.logpdf(b) + log_b
    for n, y in zip(trials, successes):
        log_density += special.betaln(a + y, b + n - y) - special.betaln(a, b)
    weights = np.exp(log_density - log_density.max())
    weights /= weights.sum()

    def moments(values):
        mean = np.sum(weights * values)
        return mean, np.sqrt(np.sum(weights * (values - mean) ** 2))

    result = {"alpha": moments(a), "beta": moments(b), "mu": moments(a / (a + b))}
    theta = []
    for n, y in zip(trials, successes):
        # theta_j | alpha, beta, y ~ Beta(alpha + y_j, beta + n_j - y_j): average its moments.
        post_a, post_b = a + y, b + n - y
        mean = np.sum(weights * post_a / (post_a + post_b))
        second = np.sum(weights * post_a * (post_a + 1) / ((post_a + post_b) * (post_a + post_b + 1)))
        theta.append((mean, np.sqrt(second - mean**2)))
    result["theta"] = (np.array([m for m, _ in theta]), np.array([s for _, s in theta]))
    return result
