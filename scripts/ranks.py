"""Which group is best, which worst, and how sure are we: ranks with their uncertainty, and
the probability that each group exceeds a benchmark.

League tables of raw rates are the classic misuse of small samples (the BUGS "Surgical"
example; Carpenter's case study "Hierarchical partial pooling for repeated binary
trials"). The answers here are posterior functionals of each group's theta, computed from
the draws in one place, for any model:

- ranks.csv, one row per group: the posterior mean and median of its rank and the
  equal-tailed interval at `ci_prob` (rank 1 is the best: the highest theta, or the lowest
  with `higher_is_better: false`), Pr(best), Pr(worst), Pr(among the best `top`), and
  SUCRA = (J - mean rank) / (J - 1), the surface under the cumulative ranking curve
  (1: surely best; 0: surely worst).
- exceedance.csv, one row per group and benchmark t: Pr(theta_j > t) and Pr(theta_j < t);
  and rows `max` and `min` over the groups: Pr(max_j theta_j > t), Pr(min_j theta_j < t)
  (with their complements).

Ties (a fully pooled theta is the same for every group) are broken at random: a group
tied with t - 1 others below a better groups has each rank a + 1 .. a + t with
probability 1/t. The probabilities and the mean rank are those expectations, exactly; the
median and the interval are of ranks drawn so (seeded). Both tables say how many draws they used (`draws`): at many
groups, every k-th draw of each chain, so that at most `max_values` / groups draws (at
least `min_draws`) are read and ranked, which keeps the cost to seconds.
"""

import numpy as np

from common import atomic_path, read_prepared, read_thinned_posterior

# Values (draws x groups) ranked at a time.
BLOCK_VALUES = 10_000_000


def as_draws(theta, groups: int):
    """theta over (draw, group), all chains together; a shared theta repeated for every group."""
    values = np.asarray(theta)
    return values.reshape(-1, groups) if values.ndim == 3 else np.repeat(values.reshape(-1, 1), groups, axis=1)


def tie_counts(draws, higher_is_better: bool):
    """Per draw and group: how many groups are strictly better, and how many share its value
    (itself included).

    One argsort per draw: a group's position in its draw's sorted order is the number of
    groups better than it. Where values are tied (a fully pooled theta; float32 draws of
    100,000 groups, which collide), each run of equal sorted values gives its members the
    run's first position and its length; scipy's rankdata, twice, sorted twice more."""
    ordered = -draws if higher_is_better else draws
    order = np.argsort(ordered, axis=1)
    positions = np.broadcast_to(np.arange(order.shape[1]), order.shape)
    better = np.empty_like(order)
    np.put_along_axis(better, order, positions, axis=1)
    changes = np.diff(np.take_along_axis(ordered, order, axis=1), axis=1) != 0
    if changes.all():
        return better, np.ones_like(better)
    first = np.ones(order.shape, dtype=bool)  # the first of a run of equal values
    first[:, 1:] = changes
    last = np.ones(order.shape, dtype=bool)
    last[:, :-1] = changes
    run_start = np.maximum.accumulate(np.where(first, positions, 0), axis=1)
    run_end = np.minimum.accumulate(np.where(last, positions, order.shape[1] - 1)[:, ::-1], axis=1)[:, ::-1]
    tied = np.empty_like(order)
    np.put_along_axis(better, order, run_start, axis=1)
    np.put_along_axis(tied, order, run_end - run_start + 1, axis=1)
    return better, tied


def rank_table(draws, labels, *, higher_is_better: bool, top: int, ci_prob: float, seed: int = 0):
    """The ranks table of draws over (draw, group).

    Ranked a block of draws at a time, each group's sums gathered as they go: at 100,000
    groups x 1,000 draws, the whole-array form held half a dozen 800 MB arrays at once.
    """
    import pandas as pd

    count, groups = draws.shape
    ranked = np.empty(draws.shape, dtype=np.int32)  # of each draw, ties broken at random
    sums = {name: np.zeros(groups) for name in ("average", "best", "worst", "top")}
    rng = np.random.default_rng(seed)
    per_block = max(1, BLOCK_VALUES // max(groups, 1))
    for start in range(0, count, per_block):
        rows = slice(start, start + per_block)
        better, tied = tie_counts(draws[rows], higher_is_better)
        sums["average"] += (better + (tied + 1) / 2).sum(axis=0)  # the expected rank under random tie-breaking
        sums["best"] += ((better == 0) / tied).sum(axis=0)
        sums["worst"] += ((better + tied == groups) / tied).sum(axis=0)
        sums["top"] += np.clip((top - better) / tied, 0, 1).sum(axis=0)
        # The interval and the median describe the rank itself, ties broken at random
        # (seeded): a fully pooled group's rank is anywhere from 1 to J, not always (J + 1) / 2.
        ranked[rows] = better + 1
        if (tied > 1).any():
            ranked[rows] += np.floor(rng.random(tied.shape) * tied).astype(np.int32)
    tail = (1 - ci_prob) / 2
    low, median, high = np.empty(groups), np.empty(groups), np.empty(groups)
    per_block = max(1, BLOCK_VALUES // max(count, 1))
    for start in range(0, groups, per_block):
        columns = slice(start, start + per_block)
        low[columns], median[columns], high[columns] = np.quantile(ranked[:, columns], [tail, 0.5, 1 - tail], axis=0,
                                                                   method="inverted_cdf")
    mean_rank = sums["average"] / count
    return pd.DataFrame(
        {
            "group": labels,
            "rank_mean": mean_rank,
            "rank_median": median,
            "rank_lb": low,
            "rank_ub": high,
            "p_best": sums["best"] / count,
            "p_worst": sums["worst"] / count,
            "p_top": sums["top"] / count,
            "sucra": (groups - mean_rank) / (groups - 1) if groups > 1 else np.ones(groups),
            "top": top,
            "draws": count,
        }
    )


def exceedance_table(draws, labels, benchmarks):
    """Pr(theta_j > t), Pr(theta_j < t) per group and benchmark, then `max` and `min` rows."""
    import pandas as pd

    rows = []
    largest, smallest = draws.max(axis=1), draws.min(axis=1)
    for benchmark in benchmarks:
        above, below = (draws > benchmark).mean(axis=0), (draws < benchmark).mean(axis=0)
        rows.append(pd.DataFrame({"group": labels, "benchmark": benchmark, "p_above": above, "p_below": below}))
        rows.append(pd.DataFrame({
            "group": ["max", "min"],
            "benchmark": benchmark,
            "p_above": [(largest > benchmark).mean(), (smallest > benchmark).mean()],
            "p_below": [(largest < benchmark).mean(), (smallest < benchmark).mean()],
        }))
    columns = ["group", "benchmark", "p_above", "p_below"]
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    table["draws"] = draws.shape[0]
    return table


def top_count(top, groups: int) -> int:
    """`ranking.top`, or the top tenth of the groups, at least one."""
    return int(top) if top else max(1, groups // 10)


def main(data: str, trace: str, ranks: str, exceedance: str, *, ci_prob: float, higher_is_better: bool, top,
         benchmarks: list[float], max_values: int, min_draws: int, seed: int = 0) -> None:
    table = read_prepared(data)
    labels = table["group"].tolist()
    # Only the draws used are read: at 10,000 groups, 2,000 of 20,000 (160 MB, not 1.6 GB).
    theta = read_thinned_posterior(trace, ["theta"], len(labels), max_values=max_values, min_draws=min_draws)[0]["theta"]
    if "group" in theta.dims:
        theta = theta.transpose("chain", "draw", "group")
    draws = as_draws(theta.values, len(labels))
    with atomic_path(ranks) as tmp:
        rank_table(draws, labels, higher_is_better=higher_is_better, top=top_count(top, len(labels)),
                   ci_prob=ci_prob, seed=seed).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(exceedance) as tmp:
        exceedance_table(draws, labels, benchmarks).to_csv(tmp, index=False, float_format="%.6g")
