"""The meta-analysis forest plot: each study's own estimate and interval, its pooled
estimate under each model, the overall effect as a diamond and the prediction interval
for a new study, per model.

Rows from the top: one per study (its estimate +- its interval as a square sized by its
precision and a black line; each model's posterior of its theta as a coloured line and
dot), then one per model with an overall effect (a diamond spanning its interval, and a
thin line for the prediction interval of a new study). For two-arm trials the axis is the
log odds ratio, with odds ratios marked on the top axis. Above `max_groups` studies only
the rows of the models and of the studies with the most extreme estimates are drawn.
"""

import numpy as np

from common import read_prepared, read_variables, save_figure
from group_figures import extreme_groups
from heterogeneity import overall_effect
from shapes import SHAPES, observed_values, shape_of, standard_errors


def main(data: str, traces: list[str], predictions: list[str], figure: str, *, models: list[str], interval: float,
         max_groups: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    table = read_prepared(data)
    shape = SHAPES[shape_of(table)]
    estimate, se = observed_values(table), standard_errors(table)
    labels = table["group"].tolist()
    shown = list(range(len(labels)))
    if len(labels) > max_groups:
        keep = set(extreme_groups(estimate, labels, max_groups // 2))
        shown = [i for i, label in enumerate(labels) if label in keep]
    tail = (1 - interval) / 2
    z = stats.norm.ppf(1 - tail)
    height = 0.55 / max(len(models), 1)
    fig, axis = plt.subplots(figsize=(8, 0.42 * (len(shown) + len(models)) + 1.8))
    precision = 1 / se[shown] ** 2
    position = np.arange(len(shown))[::-1] + len(models) + 1
    axis.hlines(position, estimate[shown] - z * se[shown], estimate[shown] + z * se[shown], color="black", linewidth=1)
    axis.scatter(estimate[shown], position, marker="s", s=15 + 120 * precision / precision.max(), color="black", zorder=3,
                 label=f"each study's own estimate, {interval:.0%}")
    summary_rows = []
    for index, (name, trace, prediction) in enumerate(zip(models, traces, predictions, strict=True)):
        color = f"C{index}"
        offset = (index - (len(models) - 1) / 2) * height
        posterior = read_variables(trace, "posterior", rule_hint="sample")
        theta = posterior["theta"]
        draws = (theta.transpose("chain", "draw", "group").values.reshape(-1, len(labels)) if "group" in theta.dims
                 else np.repeat(theta.values.reshape(-1, 1), len(labels), axis=1))[:, shown]
        low, middle, high = np.quantile(draws, [tail, 0.5, 1 - tail], axis=0)
        axis.hlines(position - offset, low, high, color=color, linewidth=1.6, alpha=0.85)
        axis.scatter(middle, position - offset, color=color, s=10, zorder=3, label=name)
        effect = overall_effect(posterior)
        if effect is not None:
            theta_new = read_variables(prediction, "posterior_predictive", ["theta_new"], rule_hint="predict")["theta_new"].values
            summary_rows.append((name, color, np.quantile(effect, [tail, 0.5, 1 - tail]), np.quantile(theta_new, [tail, 1 - tail])))
    for row, (name, color, (low, middle, high), (p_low, p_high)) in enumerate(summary_rows):
        y = len(summary_rows) - row
        axis.fill([low, middle, high, middle], [y, y + 0.3, y, y - 0.3], color=color, alpha=0.9)
        axis.hlines(y, p_low, p_high, color=color, linewidth=1, linestyle="-", alpha=0.6)
        axis.text(1.01, y, f"{name}: {middle:.3g} [{low:.3g}, {high:.3g}]", transform=axis.get_yaxis_transform(),
                  va="center", fontsize=7, color=color)
    ticks = list(position) + [len(summary_rows) - row for row in range(len(summary_rows))]
    axis.set_yticks(ticks, [labels[i] for i in shown] + [f"overall ({name})" for name, *_ in summary_rows], fontsize=8)
    axis.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel(f"{shape.value}: study estimates, pooled estimates, overall effect (diamond) and prediction interval "
                    f"for a new study (thin line), {interval:.0%}", fontsize=8)
    if shape.name == "two_arm":
        top = axis.secondary_xaxis("top", functions=(np.exp, np.log))
        low, high = np.exp(axis.get_xlim())
        ticks = [t for t in (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10, 20) if low <= t <= high]
        top.set_xticks(ticks, [f"{t:g}" for t in ticks])
        top.set_xlabel("odds ratio", fontsize=8)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    title = "Forest plot" + (f" ({len(shown)} of {len(labels)} studies: the most extreme)" if len(shown) < len(labels) else "")
    axis.set_title(title, fontsize=10)
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
