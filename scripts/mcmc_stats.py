"""Posterior summary and convergence statistics of many parameters at once.

The same numbers as ArviZ's `az.summary` (mean, sd, equal-tailed interval, bulk and tail
ESS, rank-normalised split R-hat, MCSE of mean and sd), computed as arviz-stats computes
them, step for step, but as array operations over all parameters instead of one Python
loop per parameter: at 10,000 groups ArviZ took 52 s, this takes a few
(tests/test_mcmc_stats.py checks equality with `az.summary`).
"""

import functools

import numpy as np
from scipy import fft, special

# Values per block of parameters: small enough to stay in the CPU's caches (2,000 parameters
# of 4,000 draws took 6.3 s in one block, 2.9 s in blocks of 250), and blocks run on
# `threads` threads (NumPy's sorts and FFTs release the GIL).
CHUNK = 400_000


def split_chains(x):
    """(P, C, D) -> (P, 2C, D // 2): first and last halves of each chain as chains."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., -half:]], axis=1)


def average_ranks(flat):
    """Ranks 1..N along the last axis, ties given their average rank (scipy's "average")."""
    order = np.argsort(flat, axis=-1)  # ties are averaged below, so the order among them is moot
    ordered = np.take_along_axis(flat, order, axis=-1)
    n = flat.shape[-1]
    position = np.arange(1, n + 1, dtype=float)
    new_run = np.ones(flat.shape, dtype=bool)
    new_run[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    run_ends = np.ones(flat.shape, dtype=bool)
    run_ends[..., :-1] = new_run[..., 1:]
    first = np.maximum.accumulate(np.where(new_run, position, 0.0), axis=-1)
    last = np.minimum.accumulate(np.where(run_ends, position, n + 1.0)[..., ::-1], axis=-1)[..., ::-1]
    ranks = np.empty(flat.shape)
    np.put_along_axis(ranks, order, (first + last) / 2, axis=-1)
    return ranks


def z_scale(x):
    """Rank-normalise each parameter's values (average ranks of ties; Blom's offset 3/8)."""
    flat = x.reshape(x.shape[0], -1)
    ranks = average_ranks(flat)
    return special.ndtri((ranks - 3 / 8) / (flat.shape[1] - 2 * 3 / 8 + 1)).reshape(x.shape)


def rhat_basic(x):
    """Gelman-Rubin R-hat of (P, C, D) chains."""
    draws = x.shape[-1]
    between = draws * np.var(x.mean(axis=-1), axis=-1, ddof=1)
    within = np.var(x, axis=-1, ddof=1).mean(axis=-1)
    return np.sqrt((between / within + draws - 1) / draws)


def ess_basic(x, by_fft: bool | None = None):
    """Effective sample size of (P, C, D) chains: Geyer's initial positive and initial
    monotone sequences over the autocorrelations, as arviz-stats' `_ess`.

    Few values: every lag at once by FFT (`ess_fft`, milliseconds). Many: lag by lag
    (`ess_lag_by_lag`), compiled by Numba, whose compiled code costs a fresh clone ~3 s
    and every later process 0.2 s to load: worth it only where it saves more. `by_fft`
    says which, for a caller that computes many blocks (`by_fft_for`); by default, x's own
    size decides.
    """
    x = np.ascontiguousarray(x, dtype=float)
    if by_fft is None:
        by_fft = by_fft_for(x.size)
    return ess_fft(x) if by_fft else ess_lag_by_lag(x)


# Up to this many values (parameters x chains x draws, over every block of a step)
# `ess_fft` takes less than loading the compiled kernel (0.2 s) would: ~10 ms for
# SpaceX's 120,000 values, ~50 ms for a million; beyond, the kernel is several times
# quicker (a million groups' 200 draws: 82 s of diagnostics by FFT).
FFT_VALUES = 1_000_000


def by_fft_for(values: int) -> bool:
    return values <= FFT_VALUES


def ess_lag_by_lag(x):
    """ess_basic for many values. Well-mixed chains need a handful of lags before the
    sequence stops, so those are computed one by one (`_ess_short`); a parameter that
    needs more than LAGS of them gets all lags at once by FFT, as ArviZ does."""
    ess = _ess_short(x, LAGS)
    longer = np.isinf(ess)
    if longer.any():
        ess[longer] = ess_fft(x[longer])
    return ess


LAGS = 32


def _compiled(function):
    # Compiled on first use and cached on disk beside this file, so each process after the
    # first loads it in milliseconds. Imported lazily: this module is imported by steps
    # that never compute an ESS.
    import numba

    return numba.njit(cache=True, nogil=True)(function)


def _ess_short_python(x, max_lag):
    n_param, chains, draws = x.shape
    total = chains * draws
    out = np.empty(n_param)
    resolution = np.finfo(np.float64).resolution
    for index in range(n_param):
        y = x[index]
        if y.max() - y.min() < resolution:
            out[index] = total
            continue
        means = np.empty(chains)
        for chain in range(chains):
            means[chain] = y[chain].mean()
        # Autocovariances averaged over chains, computed as the loop below asks for them.
        covariances = np.full(max_lag + 3, np.nan)
        for lag in range(2):
            acc = 0.0
            for chain in range(chains):
                for i in range(draws - lag):
                    acc += (y[chain, i] - means[chain]) * (y[chain, i + lag] - means[chain])
            covariances[lag] = acc / draws / chains
        mean_var = covariances[0] * draws / (draws - 1.0)
        var_plus = mean_var * (draws - 1.0) / draws
        if chains > 1:
            var_plus += np.var(means) * chains / (chains - 1.0)
        rho = np.zeros(draws)
        rho_even = 1.0
        rho[0] = rho_even
        rho_odd = 1.0 - (mean_var - covariances[1]) / var_plus
        rho[1] = rho_odd
        t = 1
        needs_more = False
        while t < (draws - 3) and (rho_even + rho_odd) > 0.0:
            if t + 2 > max_lag:
                needs_more = True
                break
            for lag in (t + 1, t + 2):
                acc = 0.0
                for chain in range(chains):
                    for i in range(draws - lag):
                        acc += (y[chain, i] - means[chain]) * (y[chain, i + lag] - means[chain])
                covariances[lag] = acc / draws / chains
            rho_even = 1.0 - (mean_var - covariances[t + 1]) / var_plus
            rho_odd = 1.0 - (mean_var - covariances[t + 2]) / var_plus
            if (rho_even + rho_odd) >= 0:
                rho[t + 1] = rho_even
                rho[t + 2] = rho_odd
            t += 2
        if needs_more:
            out[index] = np.inf
            continue
        max_t = t - 2
        if rho_even > 0:
            rho[max_t + 1] = rho_even
        t = 1
        while t <= max_t - 2:
            if (rho[t + 1] + rho[t + 2]) > (rho[t - 1] + rho[t]):
                rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
                rho[t + 2] = rho[t + 1]
            t += 2
        tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
        tau = max(tau, 1 / np.log10(total))
        out[index] = np.nan if np.isnan(rho).any() else total / tau
    return out


@functools.cache
def _ess_short_kernel():
    return _compiled(_ess_short_python)


def _ess_short(x, max_lag):
    return _ess_short_kernel()(x, max_lag)


def ess_fft(x):
    """ess_basic for parameters that need many lags: every autocovariance at once by FFT."""
    n_param, chains, draws = x.shape
    total = chains * draws
    m = fft.next_fast_len(2 * draws)
    centred = x - x.mean(axis=-1, keepdims=True)
    spectrum = fft.rfft(centred, n=m, axis=-1)
    acov = fft.irfft(spectrum * np.conjugate(spectrum), n=m, axis=-1)[..., :draws] / draws
    mean_var = acov[..., 0].mean(axis=-1) * draws / (draws - 1.0)
    var_plus = mean_var * (draws - 1.0) / draws
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=-1), axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    # Pairs (rho_2k, rho_2k+1). ArviZ's loop computes pair k >= 1 while the previous pair's
    # sum is positive and 2k - 1 < draws - 3, keeping it if its sum is >= 0, and stops after
    # the first pair whose sum is not positive.
    last_allowed = max(0, (draws - 1) // 2 - 1)  # how many pairs k >= 1 have 2k - 1 < draws - 3
    pairs = last_allowed + 1
    sums = rho[:, 0 : 2 * pairs : 2] + rho[:, 1 : 2 * pairs : 2]
    not_positive = ~(sums > 0)
    # The last pair looked at: the first with a sum that is not positive, else the last allowed.
    first_stop = np.where(not_positive.any(axis=1), not_positive.argmax(axis=1), last_allowed)
    k_last = np.where(not_positive[:, 0], 0, np.minimum(first_stop, last_allowed))
    # Initial monotone sequence: each kept pair's sum no larger than the one before.
    monotone = np.minimum.accumulate(sums, axis=1)
    kept = np.arange(pairs)[None, :] < k_last[:, None]
    rows = np.arange(n_param)
    even = rho[rows, 2 * k_last]
    last_sum = sums[rows, k_last]
    extra = np.where((k_last > 0) & ~((last_sum >= 0) | (even > 0)), 0.0, even)
    tau = -1.0 + 2.0 * np.sum(np.where(kept, monotone, 0.0), axis=1) + extra
    tau = np.maximum(tau, 1 / np.log10(total))
    ess = total / tau
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    ess = np.where(constant, float(total), ess)
    return np.where(np.isnan(rho).any(axis=1) & ~constant, np.nan, ess)


def ess_below(x, threshold, by_fft: bool | None = None):
    """ESS of the indicator x <= threshold (one threshold per parameter), split chains."""
    return ess_basic(split_chains((x <= threshold[:, None, None]).astype(float)), by_fft)


def diagnostics(x, ci_prob: float, by_fft: bool | None = None) -> dict:
    """Summary columns for a block of parameters, x of shape (P, chains, draws); `by_fft`
    as in `ess_basic`."""
    from arviz_base import rcParams

    # Tail ESS as ArviZ 1.x: the smaller ESS of the quantiles 1 - p and p, p its default
    # interval probability (0.89, so 11% and 89%).
    tail = 1 - rcParams["stats.ci_prob"]
    edge = (1 - ci_prob) / 2
    flat = x.reshape(x.shape[0], -1)
    low, high, tail_low, tail_high = np.quantile(flat, [edge, 1 - edge, tail, 1 - tail], axis=1)
    split = split_chains(x)
    z_split = z_scale(split)
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    if x.shape[1] > 1:  # ArviZ: R-hat needs two chains before splitting
        rhat = np.maximum(rhat_basic(z_split), rhat_basic(z_scale(folded)))
    else:
        rhat = np.full(len(x), np.nan)
    sd = flat.std(axis=1, ddof=1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    squares = centred**2
    variance = squares.mean(axis=1)
    varvar = ((squares**2).mean(axis=1) - variance**2) / ess_basic(split_chains(squares.reshape(x.shape)), by_fft)
    ci = int(ci_prob * 100)
    return {
        "mean": flat.mean(axis=1),
        "sd": sd,
        f"eti{ci}_lb": low,
        f"eti{ci}_ub": high,
        "ess_bulk": ess_basic(z_split, by_fft),
        "ess_tail": np.minimum(ess_below(x, tail_low, by_fft), ess_below(x, tail_high, by_fft)),
        "r_hat": rhat,
        "mcse_mean": sd / np.sqrt(ess_basic(split, by_fft)),
        "mcse_sd": np.sqrt(varvar / variance / 4),
    }


def parameter_labels(name: str, values, dims) -> list[str]:
    """The summary's row names of a variable's `dims` (az.summary's: theta[Falcon 9], in C order)."""
    if not dims:
        return [name]
    coords = [values[dim].values for dim in dims]
    return [f"{name}[{','.join(str(coords[d][i]) for d, i in enumerate(index))}]"
            for index in np.ndindex(*(values.sizes[dim] for dim in dims))]


def _over_blocks(blocks, function, threads: int) -> list:
    """`function(x, by_fft)` for each block of at most CHUNK values of the (chain, draw,
    parameters) arrays `blocks`, in order, on `threads` threads. Each x is made contiguous
    with its parameters first, so that every pass over it reads memory in order; `by_fft`
    is chosen once for all of them (`by_fft_for`), so each value is computed the same way
    whatever the blocks."""
    from concurrent.futures import ThreadPoolExecutor

    items = []
    for block in blocks:
        step = max(1, CHUNK // (block.shape[0] * block.shape[1]))
        items += [(block, start, start + step) for start in range(0, block.shape[2], step)]
    by_fft = by_fft_for(sum(block.size for block in blocks))

    def compute(item):
        block, start, stop = item
        return function(np.ascontiguousarray(np.moveaxis(block[..., start:stop], -1, 0)), by_fft)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(compute, items))


def summary(posterior, ci_prob: float, threads: int = 1):
    """az.summary's table for every variable of a posterior Dataset (chain, draw, ...)."""
    import pandas as pd

    names, blocks = [], []
    for name, values in posterior.data_vars.items():
        array = values.transpose("chain", "draw", ...)
        names += parameter_labels(name, array, array.dims[2:])
        blocks.append(np.asarray(array.values, dtype=float).reshape(array.shape[0], array.shape[1], -1))
    parts = _over_blocks(blocks, lambda x, by_fft: diagnostics(x, ci_prob, by_fft), threads)
    table = pd.DataFrame({column: np.concatenate([part[column] for part in parts]) for column in parts[0]}, index=names)
    table.index.name = "parameter"
    return table


def relative_ess(posterior, threads: int = 1) -> float:
    """ArviZ's r_eff for PSIS-LOO: the mean over every posterior value of its ESS for the
    mean (split chains), divided by the number of draws."""
    blocks = []
    for values in posterior.data_vars.values():
        array = np.asarray(values.transpose("chain", "draw", ...).values, dtype=float)
        blocks.append(array.reshape(array.shape[0], array.shape[1], -1))
    ess = np.concatenate(_over_blocks(blocks, lambda x, by_fft: ess_basic(split_chains(x), by_fft), threads))
    n_samples = blocks[0].shape[0] * blocks[0].shape[1]
    return float(ess.mean() / n_samples) if blocks[0].shape[0] > 1 else 1.0
