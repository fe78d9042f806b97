"""Which groups are genuinely unusual: the funnel plot (Spiegelhalter 2005; FunnelPlotR).

Each group's observed rate against its number of trials, with the limits within which a
group of that size would fall if it were like the others, at 95% and 99.8%:

- the classic binomial funnel: a group's successes ~ Binomial(n, p0), with p0 the pooled
  rate of all groups (what full pooling assumes, plugged in);
- the funnel allowing for the spread between groups: a new group's successes in n trials
  under a fitted model's posterior predictive (`funnel.model`, the hierarchical model by
  default: theta_new from its new_group.nc, then Binomial(n, theta_new)). A group outside
  it is unusual even for a population of groups that differ.

The curves drawn are, at probability q, the q-quantile r of the count made continuous as
in Spiegelhalter's appendix: (r - a) / n with a = (F(r) - q) / (F(r) - F(r - 1)), so that
they run smoothly with n. Whether a group is outside is decided exactly, by its tail
probabilities: above the 99.8% limit if P(Y >= y) <= 0.001 for a group of its size, below
if P(Y <= y) <= 0.001 (0.025 for 95%). (A count at the curve itself can go either way: the
largest possible count, all successes, is never "above" unless it is that improbable.)
Writes funnel.csv (every group's limits, tail probabilities and where it falls) and
funnel.png.
"""

import numpy as np

from common import atomic_path, read_prepared, read_variables, save_figure

LEVELS = {"95": (0.025, 0.975), "99.8": (0.001, 0.999)}
PROBABILITIES = np.array([0.001, 0.025, 0.975, 0.999])
EXACT_UP_TO = 50  # every trial count up to this on the curves; 60 log-spaced ones beyond
LABELLED = 10  # at most this many groups named in the figure
PREDICTIVE_DRAWS = 1000  # theta_new draws used for the spread funnel (evenly spaced): about 1 s


def interpolated_limit(quantile, cdf_at, cdf_below, probability, trials):
    """(r - a) / n, the continuous version of a count quantile r (Spiegelhalter 2005, A.1.1)."""
    step = np.where(cdf_at > cdf_below, cdf_at - cdf_below, 1.0)
    return np.clip((quantile - (cdf_at - probability) / step) / trials, 0, 1)


def binomial_limits(trials, rate):
    """Limits at PROBABILITIES for Binomial(n, rate), per n: array (len(trials), 4)."""
    from scipy import stats

    n = np.asarray(trials, dtype=float)[:, None]
    quantile = stats.binom.ppf(PROBABILITIES, n, rate)
    cdf_at, cdf_below = stats.binom.cdf(quantile, n, rate), stats.binom.cdf(quantile - 1, n, rate)
    return interpolated_limit(quantile, cdf_at, cdf_below, PROBABILITIES, n)


def predictive_limits(trials, theta):
    """Limits at PROBABILITIES for a new group's successes in n trials, theta ~ its draws:
    array (len(trials), 4).

    P(Y <= r) = mean over the draws of Binomial(n, theta_s)'s CDF at r, searched for its
    quantiles by bisection. Only the draws near the counts searched are evaluated: one
    whose n theta_s lies more than 6 sqrt(n) from every count in the window contributes
    exactly 0 or 1 to within exp(-72), by Hoeffding's inequality (P(|Y - n theta| >= t)
    <= 2 exp(-2 t^2 / n)). At thousands of trials that is a few percent of the draws, which
    makes the spread funnel of 10,000 groups cost a second, not a minute. If the quantile
    lies outside the first window, the search goes on over every count with every draw.
    """
    from scipy import special

    theta = np.sort(np.asarray(theta, dtype=float))
    draws = theta.size
    limits = np.empty((len(trials), len(PROBABILITIES)))

    def cdf_on(n, first, near):
        return lambda r: 0.0 if r < 0 else (first + special.bdtr(r, n, near).sum()) / draws

    for row, n in enumerate(np.asarray(trials, dtype=int)):
        spread = 12 * np.sqrt(n / 4) + 1  # 6 sqrt(n), and a count more
        for column, probability in enumerate(PROBABILITIES):
            centre = n * np.quantile(theta, probability)
            lo, hi = max(-1, int(centre - spread / 2) - 2), min(n, int(centre + spread / 2) + 2)
            first = np.searchsorted(theta, (lo - spread) / n)  # draws below: P(Y <= r) = 1
            last = np.searchsorted(theta, (hi + spread) / n)  # draws above: P(Y <= r) = 0
            cdf = cdf_on(n, first, theta[first:last])
            if cdf(lo) >= probability or cdf(hi) < probability:
                # Outside the window the shortcut does not hold: every count, every draw.
                lo, hi, cdf = -1, n, cdf_on(n, 0, theta)
            while hi - lo > 1:  # the smallest r with P(Y <= r) >= p: P(Y <= lo) < p <= P(Y <= hi)
                middle = (lo + hi) // 2
                lo, hi = (middle, hi) if cdf(middle) < probability else (lo, middle)
            limits[row, column] = interpolated_limit(hi, cdf(hi), cdf(hi - 1), probability, n)
    return limits


def binomial_tails(successes, trials, rate):
    """(P(Y <= y), P(Y >= y)) for Y ~ Binomial(n, rate), per group."""
    from scipy import stats

    return stats.binom.cdf(successes, trials, rate), stats.binom.sf(successes - 1, trials, rate)


def predictive_tails(successes, trials, theta):
    """(P(Y <= y), P(Y >= y)) for a new group's Y in n trials, theta ~ its draws, per group.

    Computed only where one can be 0.025 or less, NaN elsewhere: since the median of
    Binomial(n, theta) is at least y when n theta >= y, P(Y >= y) >= P(theta >= y / n) / 2,
    so a group whose rate is below the 95% quantile of the draws has P(Y >= y) > 0.025 (and
    above the 5% quantile, P(Y <= y) > 0.025). That leaves a tenth of the groups and a
    second at 10,000 groups, not ten. As in predictive_limits, only the draws within
    6 sqrt(n) of the count are evaluated.
    """
    from scipy import special

    theta = np.sort(np.asarray(theta, dtype=float))
    draws = theta.size
    successes, trials = np.asarray(successes, dtype=int), np.asarray(trials, dtype=int)
    low, high = np.full(len(trials), np.nan), np.full(len(trials), np.nan)
    rate = successes / trials
    lower, upper = np.quantile(theta, [0.05, 0.95])
    for index in np.flatnonzero((rate <= lower) | (rate >= upper)):
        y, n = successes[index], trials[index]
        spread = 12 * np.sqrt(n / 4) + 1
        first, last = np.searchsorted(theta, (y - spread) / n), np.searchsorted(theta, (y + spread) / n)
        near = theta[first:last]
        # Draws below the window have P(Y <= y) = 1 and P(Y >= y) = 0; above, the reverse.
        low[index] = (first + special.bdtr(y, n, near).sum()) / draws
        high[index] = (draws - last + (special.bdtrc(y - 1, n, near).sum() if y > 0 else near.size)) / draws
    return low, high


def curve_trials(trials):
    """Trial counts at which the limits are computed: every count up to EXACT_UP_TO, then
    log-spaced up to the largest."""
    # A little beyond the groups' sizes, so that the funnel shows even if they all share one.
    smallest, largest = max(1, int(np.min(trials)) // 2), 2 * int(np.max(trials))
    exact = np.arange(smallest, min(largest, EXACT_UP_TO) + 1)
    spaced = np.geomspace(max(EXACT_UP_TO, smallest), largest, 60).round() if largest > EXACT_UP_TO else []
    return np.unique(np.concatenate([exact, spaced])).astype(int)


def at_trials(curve_n, curve_limits, trials):
    """The limits at each group's trial count: exact on the curve, interpolated in log n off it."""
    log_n = np.log(curve_n)
    return np.stack([np.interp(np.log(trials), log_n, curve_limits[:, k]) for k in range(curve_limits.shape[1])], axis=1)


def where_it_falls(below, above) -> list[str]:
    """'above 99.8%', 'above 95%', 'below 95%', 'below 99.8%' or '' per group, from its tail
    probabilities P(Y <= y) and P(Y >= y)."""
    result = []
    for low, high in zip(below, above, strict=True):  # NaN: not computed, as it is above 0.025
        if high <= 0.001:
            result.append("above 99.8%")
        elif high <= 0.025:
            result.append("above 95%")
        elif low <= 0.001:
            result.append("below 99.8%")
        elif low <= 0.025:
            result.append("below 95%")
        else:
            result.append("")
    return result


def funnel_table(table, theta_new=None):
    """(per-group table, curves): the limits of both funnels at every group and on a grid of n."""
    import pandas as pd

    trials, successes = table["trials"].to_numpy(), table["successes"].to_numpy()
    target = successes.sum() / trials.sum()
    rate = successes / trials
    curve_n = curve_trials(trials)
    curves = {"trials": curve_n, "classic": binomial_limits(curve_n, target)}
    classic = at_trials(curve_n, curves["classic"], trials)
    result = pd.DataFrame({"group": table["group"], "trials": trials, "successes": successes, "rate": rate,
                           "target": target})
    for k, name in enumerate(("low_998", "low_95", "high_95", "high_998")):
        result[name] = classic[:, k]
    result["p_at_most"], result["p_at_least"] = binomial_tails(successes, trials, target)
    result["classic"] = where_it_falls(result["p_at_most"], result["p_at_least"])
    if theta_new is not None:
        curves["spread"] = predictive_limits(curve_n, theta_new)
        spread = at_trials(curve_n, curves["spread"], trials)
        for k, name in enumerate(("spread_low_998", "spread_low_95", "spread_high_95", "spread_high_998")):
            result[name] = spread[:, k]
        result["spread_p_at_most"], result["spread_p_at_least"] = predictive_tails(successes, trials, theta_new)
        result["with_spread"] = where_it_falls(result["spread_p_at_most"], result["spread_p_at_least"])
    return result, curves


def draw(result, curves, *, spread_model: str | None, max_groups: int = 30):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5.5))
    many = len(result) > 200
    outside_classic = result["classic"].str.contains("99.8")
    outside_spread = result["with_spread"].str.contains("99.8") if "with_spread" in result else outside_classic & False
    for chosen, color, label in (
        (~outside_classic & ~outside_spread, "C0", "groups"),
        (outside_classic & ~outside_spread, "C1", "outside the binomial 99.8% limits"),
        (outside_spread, "C3", "outside the 99.8% limits with spread"),
    ):
        if chosen.any():
            axis.scatter(result.loc[chosen, "trials"], result.loc[chosen, "rate"], s=4 if many else 30,
                         alpha=0.4 if many else 0.9, color=color, rasterized=many, zorder=3, label=label)
    target = result["target"].iloc[0]
    axis.axhline(target, color="black", linewidth=1, label=f"pooled rate {target:.3f}")
    n = curves["trials"]
    for key, color, name in (("classic", "C1", "binomial (full pooling)"), ("spread", "C2", f"with spread ({spread_model})")):
        if key not in curves:
            continue
        limits = curves[key]
        for k, style in ((1, "--"), (2, "--"), (0, ":"), (3, ":")):
            label = f"{name}: 95% (dashed), 99.8% (dotted)" if k == 1 else None
            axis.plot(n, limits[:, k], color=color, linestyle=style, linewidth=1.2, label=label)
    # Few groups: all named; many: the most extreme of those outside the 99.8% limits.
    named = result if len(result) <= max_groups else result[outside_spread if outside_spread.any() else outside_classic]
    if len(named) > LABELLED:
        distance = (named["rate"] - target).abs() / np.sqrt(target * (1 - target) / named["trials"])
        named = named.loc[distance.sort_values(ascending=False).index[:LABELLED]]
    if len(result) <= max_groups:
        for _, row in named.iterrows():
            axis.annotate(str(row["group"]), (row["trials"], row["rate"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    elif len(named):
        # Thousands of points: the most extreme are circled and listed beside the plot, where
        # their names cannot pile up on each other.
        axis.scatter(named["trials"], named["rate"], s=40, facecolors="none", edgecolors="black", linewidths=0.8, zorder=4)
        lines = [f"{row['group']}: {int(row['successes'])}/{int(row['trials'])}" for _, row in named.iterrows()]
        axis.text(1.02, 0.0, "most unusual (circled):\n" + "\n".join(lines), transform=axis.transAxes, fontsize=7,
                  va="bottom", ha="left", family="monospace")
    if n.max() > 20 * n.min():
        axis.set_xscale("log")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("trials")
    axis.set_ylabel("observed rate (successes / trials)")
    axis.set_title(f"Funnel plot of {len(result):,} groups: {int(outside_classic.sum())} outside the binomial 99.8% limits"
                   + (f", {int(outside_spread.sum())} outside those with spread" if "with_spread" in result else ""), fontsize=10)
    if len(result) <= max_groups:
        axis.legend(fontsize=7, loc="lower right")
    else:  # beside the plot: at thousands of groups every corner holds points
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


def main(data: str, table: str, figure: str, *, prediction: str | list = (), spread_model: str | None = None,
         max_groups: int = 30) -> None:
    import matplotlib.pyplot as plt

    groups = read_prepared(data)
    theta_new = None
    # The rule gives a list: the spread model's new group, or nothing if it is not fitted.
    prediction = prediction if isinstance(prediction, str) else next(iter(prediction), None)
    if prediction:
        values = read_variables(prediction, "posterior_predictive", ["theta_new"], rule_hint="predict")["theta_new"].values.ravel()
        theta_new = values[np.linspace(0, values.size - 1, min(values.size, PREDICTIVE_DRAWS)).round().astype(int)]
    result, curves = funnel_table(groups, theta_new)
    with atomic_path(table) as tmp:
        result.to_csv(tmp, index=False, float_format="%.6g")
    fig = draw(result, curves, spread_model=spread_model if prediction else None, max_groups=max_groups)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
