"""Hierarchical (partial pooling): group probabilities drawn from a common Beta population.

    alpha, beta ~ HalfNormal(10)
    mu          = alpha / (alpha + beta)      (the population's mean success probability)
    theta_j     ~ Beta(alpha, beta)
    y_j         ~ Binomial(n_j, theta_j)

Beta is conjugate to the Binomial, so each theta_j integrates out in closed form:

    y_j | alpha, beta        ~ BetaBinomial(n_j, alpha, beta)
    theta_j | alpha, beta, y ~ Beta(alpha + y_j, beta + n_j - y_j)

The collapsed sampler (`models.hierarchical.method: collapsed`, the default) samples
(alpha, beta) from their marginal posterior and then draws every theta_j exactly from its
conditional: the same posterior as the article's, without its funnel. See no_pooling.py
for what a model file defines.
"""

from functools import partial

import numpy as np
import pymc as pm

POPULATION_MEAN = "mu"
# complete() draws this many values at a time (8 MB of float64), a block per thread.
BLOCK_VALUES = 1_000_000
# The priors the sensitivity check scales: the population's, not each group's draw from it.
HYPERPRIORS = ("alpha", "beta")


def build(data):
    """The article's model: what the graph shows and what NUTS samples with method: nuts."""
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        alpha = pm.HalfNormal("alpha", sigma=10)
        beta = pm.HalfNormal("beta", sigma=10)
        pm.Deterministic("mu", alpha / (alpha + beta))
        theta = pm.Beta("theta", alpha=alpha, beta=beta, dims="group")
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    # A new launcher is one more draw from the fitted population, as in the article.
    theta_new = pm.Beta("theta_new", alpha=model["alpha"], beta=model["beta"])
    return pm.Binomial("y_new", n=trials, p=theta_new)


# --------------------------------------------------------------------------------------
# Collapsed form: theta integrated out


def build_collapsed(data, swappable: bool = False, padded_to: int | None = None):
    """(alpha, beta) with every theta_j integrated out: the Beta-Binomial marginal likelihood.

    With `swappable`, the data enter as `pm.Data` (`collapsed_data`), so that a compiled
    model can take another data set of the same shapes (simulation-based calibration, and
    the step worker's kept models, with `padded_to`); otherwise as constants, which nutpie
    compiles in two thirds of the time.
    """
    import pytensor.tensor as pt

    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        alpha = pm.HalfNormal("alpha", sigma=10)
        beta = pm.HalfNormal("beta", sigma=10)
        counts = {name: pm.Data(name, values) if swappable else pt.constant(values)
                  for name, values in collapsed_data(data, swappable, padded_to).items()}
        pm.Potential("y_marginal", betabinomial_loglik(alpha, beta, counts))
    return model


def collapsed_data(data, swappable: bool = False, padded_to: int | None = None):
    """What the marginal likelihood needs of the data, in one of two forms (see
    `betabinomial_loglik`).

    With `swappable`, the form and the shapes depend on the design (the trials) only, never
    on the successes, so that one compiled model takes every data set simulated for that
    design: the pairs are then each group's own (weight 1) rather than the distinct ones.
    With `padded_to`, every array is that long, padded with zeros, which add nothing to the
    sum (no count above k, or a pair of weight zero): data sets of similar size then share
    one compiled model. The sum is the same either way."""
    arrays = _collapsed_arrays(data, swappable)
    if padded_to is not None:
        longest = max(len(values) for values in arrays.values())
        if padded_to < longest:
            raise ValueError(f"padded_to={padded_to} is shorter than the data's {longest} values")
        arrays = {name: np.pad(values, (0, padded_to - len(values))) for name, values in arrays.items()}
    return arrays


def _collapsed_arrays(data, swappable: bool):
    trials = data["trials"].to_numpy().astype("int64")
    successes = data["successes"].to_numpy().astype("int64")
    if histogram_is_cheaper(trials, None if swappable else successes):
        length = int(trials.max())
        return {
            "successes_above": counts_above(successes, length),
            "failures_above": counts_above(trials - successes, length),
            "trials_above": counts_above(trials, length),
        }
    if swappable:
        pairs, weight = np.stack([trials, successes]), np.ones(len(trials), dtype="int64")
    else:
        pairs, weight = np.unique(np.stack([trials, successes]), axis=1, return_counts=True)
    return {
        "pair_trials": pairs[0].astype("float64"),
        "pair_successes": pairs[1].astype("float64"),
        "pair_weight": weight.astype("float64"),
    }


def complete(posterior, data, rng, dtype=np.float64, threads=1):
    """The draws the collapsed sampler integrated out: mu, and theta_j ~ Beta(alpha + y_j,
    beta + n_j - y_j) for every posterior draw (exact, no Markov chain), stored as `dtype`.

    Drawn a block of posterior draws at a time, each block from its own stream spawned from
    `rng`: a float32 theta never needs its float64 whole in memory (at a million groups, 8
    bytes a value are gigabytes), and `threads` blocks are drawn at once (NumPy releases the
    GIL while it draws) with the same values whatever their number."""
    from concurrent.futures import ThreadPoolExecutor

    alpha = posterior["alpha"].values.reshape(-1, 1)
    beta = posterior["beta"].values.reshape(-1, 1)
    n, y = data["trials"].to_numpy(), data["successes"].to_numpy()
    theta = np.empty((alpha.shape[0], len(n)), dtype=dtype)
    step = max(1, BLOCK_VALUES // max(len(n), 1))
    blocks = [slice(start, start + step) for start in range(0, alpha.shape[0], step)]

    def fill(rows, stream):
        theta[rows] = stream.beta(alpha[rows] + y, beta[rows] + n - y)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        # list(): a failure in any block is raised here.
        list(pool.map(fill, blocks, rng.spawn(len(blocks))))
    return {
        "mu": (posterior["alpha"] / (posterior["alpha"] + posterior["beta"])).values,
        "theta": theta.reshape(*posterior["alpha"].shape, len(n)),
    }


def conditional_moments(posterior, data):
    """theta_j's mean and second moment given each draw of (alpha, beta), from its Beta
    conditional: what the sample step averages over every draw for each group's posterior
    mean and sd (Rao-Blackwellised). Arrays (draws of the block, groups)."""
    alpha = posterior["alpha"].values.reshape(-1, 1)
    beta = posterior["beta"].values.reshape(-1, 1)
    n, y = data["trials"].to_numpy(), data["successes"].to_numpy()
    shape_a, total = alpha + y, alpha + beta + n
    mean = shape_a / total
    return {"theta": (mean, mean * (shape_a + 1) / (total + 1))}


def group_log_likelihood(posterior, data):
    """log p(y_j | alpha, beta), theta_j integrated out, per draw and group: the likelihood of
    a left-out group, for leave-one-group-out cross-validation.

    log BetaBinomial(y | n, a, b) = log C(n, y) + [lgamma(y + a) - lgamma(a)]
        + [lgamma(n - y + b) - lgamma(b)] - [lgamma(n + a + b) - lgamma(a + b)],
    and lgamma(x + c) - lgamma(c) = sum_{k < x} log(c + k) for whole x: one table of those
    sums per draw, read at every group's counts (40 million values in 1-2 s, against 15 s
    through scipy.stats). Counts in the millions: betaln directly, in blocks of draws.
    """
    from scipy import special

    alpha = posterior["alpha"].values.reshape(-1)
    beta = posterior["beta"].values.reshape(-1)
    n = data["trials"].to_numpy().astype("int64")
    y = data["successes"].to_numpy().astype("int64")
    # log C(n, y) through betaln, as scipy does: differences of gammaln lose digits at large n.
    log_choose = -np.log(n + 1.0) - special.betaln(n - y + 1.0, y + 1.0)
    result = np.empty((alpha.size, n.size))
    largest = int(n.max())
    step = max(1, 2_000_000 // max(largest, n.size))
    for start in range(0, alpha.size, step):
        a, b = alpha[start : start + step, None], beta[start : start + step, None]
        if largest <= 100_000:
            block = log_rising_factorial(a, y) + log_rising_factorial(b, n - y) - log_rising_factorial(a + b, n)
        else:
            block = special.betaln(y + a, n - y + b) - special.betaln(a, b)
        result[start : start + step] = log_choose + block
    return result.reshape(*posterior["alpha"].shape, n.size)


def log_rising_factorial(c, counts):
    """sum_{k < x} log(c + k) = log(c (c + 1) ... (c + x - 1)) for each row of c (a column)
    and each whole count x: one cumulative sum per row, up to the largest count, read at every count."""
    k = np.arange(counts.max())
    table = np.concatenate([np.zeros((c.shape[0], 1)), np.cumsum(np.log(c + k), axis=1)], axis=1)
    return np.take_along_axis(table, np.broadcast_to(counts, (c.shape[0], counts.size)), axis=1)


def betabinomial_loglik(alpha, beta, counts, math=None):
    """sum_j log BetaBinomial(y_j | n_j, alpha, beta), up to a constant, as a PyTensor graph
    (or, with `math=numpy_math()`, for arrays of alpha and beta over a last axis of length 1).

    With f_j = n_j - y_j, the sum is
        sum_j [lgamma(y_j + a) - lgamma(a)] + [lgamma(f_j + b) - lgamma(b)]
              - [lgamma(n_j + a + b) - lgamma(a + b)],
    and for whole numbers sum_j [lgamma(x_j + c) - lgamma(c)] = sum_k h_k log(c + k) with
    h_k = #{j : x_j > k}. Its cost grows with the largest count, not with the groups: 0.3 s
    of sampling at a million groups. Counts in the millions make that the wrong trade, and
    then lgamma runs over the distinct (n_j, y_j) pairs instead (`histogram_is_cheaper`
    chooses).
    """
    if math is None:
        import pytensor.tensor as math
    if "successes_above" in counts:
        k = math.arange(counts["trials_above"].shape[0])
        return (
            math.sum(counts["successes_above"] * math.log(alpha + k), axis=-1)
            + math.sum(counts["failures_above"] * math.log(beta + k), axis=-1)
            - math.sum(counts["trials_above"] * math.log(alpha + beta + k), axis=-1)
        )
    n, y = counts["pair_trials"], counts["pair_successes"]
    return math.sum(
        counts["pair_weight"]
        * (
            math.gammaln(y + alpha) - math.gammaln(alpha)
            + math.gammaln(n - y + beta) - math.gammaln(beta)
            - math.gammaln(n + alpha + beta) + math.gammaln(alpha + beta)
        ),
        axis=-1,
    )


def numpy_math():
    """What `betabinomial_loglik` needs, from NumPy and SciPy, to evaluate it on a grid."""
    from types import SimpleNamespace

    from scipy import special

    return SimpleNamespace(arange=np.arange, sum=np.sum, log=np.log, gammaln=special.gammaln)


def _loo_grid(others, alone, points, box):
    """On a points x points grid over `box` (log alpha, log beta): the nodes, the log prior
    plus log marginal likelihood of the groups `others`, and that of the group `alone`."""
    from scipy import stats

    math = numpy_math()
    log_a, log_b = np.meshgrid(np.linspace(*box[0], points), np.linspace(*box[1], points), indexing="ij")
    a, b = np.exp(log_a).reshape(-1, 1), np.exp(log_b).reshape(-1, 1)
    # HalfNormal(10) priors, on the log scale (the Jacobian: + log alpha + log beta).
    prior = stats.halfnorm(scale=10).logpdf(a) + log_a.reshape(-1, 1) + stats.halfnorm(scale=10).logpdf(b) + log_b.reshape(-1, 1)
    without = prior[:, 0] + betabinomial_loglik(a, b, others, math)
    left_out = betabinomial_loglik(a, b, alone, math)
    return log_a.ravel(), log_b.ravel(), without, left_out


def exact_group_loo(data, positions, points=160):
    """log p(y_j | y_-j), exactly, for the groups at `positions`: the Beta-Binomial
    likelihood of group j averaged over the posterior of (alpha, beta) given the others,
    by quadrature on a grid over (log alpha, log beta), no refit needed.

    p(y_j | y_-j) = Z / Z_-j, with Z = integral of p(alpha, beta) p(y | alpha, beta) and Z_-j
    the same without group j; each on a grid that spans the posterior without group j (a
    first pass over a wide box finds it, a second spans +- 8 of its sds), in the
    log-marginal form of the sampler (`betabinomial_loglik`), so its cost grows with the
    largest count, not with the groups.
    """
    from scipy import special

    result = []
    for position in positions:
        others = collapsed_data(data.drop(index=data.index[position]))
        alone = collapsed_data(data.iloc[[position]])
        on_grid = partial(_loo_grid, others, alone, points)
        log_a, log_b, without, _ = on_grid(((-12.0, 5.5), (-12.0, 5.5)))
        weights = np.exp(without - without.max())
        weights /= weights.sum()
        box = []
        for values in (log_a, log_b):
            mean = (weights * values).sum()
            sd = np.sqrt((weights * (values - mean) ** 2).sum())
            box.append((max(-12.0, mean - 8 * sd), min(5.5, mean + 8 * sd)))
        _, _, without, left_out = on_grid(box)
        # The binomial coefficient of y_j, which the log-marginal form leaves out.
        n, y = int(data["trials"].iloc[position]), int(data["successes"].iloc[position])
        log_choose = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        result.append(log_choose + special.logsumexp(without + left_out) - special.logsumexp(without))
    return np.array(result)


def counts_above(values, length):
    """h_k = #{j : values_j > k} for k = 0 .. length - 1."""
    histogram = np.bincount(values, minlength=length + 1)[: length + 1]
    return (len(values) - np.cumsum(histogram))[:-1].astype("float64")


def histogram_is_cheaper(trials, successes=None) -> bool:
    """Three logs per count value, against six lgammas (about five logs each) per pair;
    without the successes, every group counts as a pair of its own."""
    distinct = len(trials) if successes is None else np.unique(np.stack([trials, successes]), axis=1).shape[1]
    return 3 * int(np.max(trials)) <= 30 * distinct
