"""L'Abbé plot of two-arm trials: each trial's event rate in the treated arm against that in
its control arm (marker area: its patients). On the diagonal the treatment does nothing;
below it (with a harmful event) it helps. Each model with an overall odds ratio draws
the curve of that odds ratio (its posterior median) across control rates,
treated = OR c / (1 - c + OR c); trials scattered about the curve more than their sizes
allow are the heterogeneity the random effects model takes in.
"""

import numpy as np

from common import read_prepared, read_variables, save_figure
from heterogeneity import overall_effect


def main(data: str, traces: list[str], figure: str, *, models: list[str], max_groups: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_prepared(data)
    control = table["control_events"] / table["control_trials"]
    treated = table["treated_events"] / table["treated_trials"]
    patients = table["control_trials"] + table["treated_trials"]
    fig, axis = plt.subplots(figsize=(6.5, 6))
    top = float(max(control.max(), treated.max())) * 1.1 or 1.0
    axis.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="no effect (odds ratio 1)")
    axis.scatter(control, treated, s=15 + 300 * patients / patients.max(), alpha=0.5, color="black", edgecolor="none",
                 label="trials (area: patients)")
    if len(table) <= max_groups:
        for label, x, y in zip(table["group"], control, treated, strict=True):
            axis.annotate(str(label), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color="grey")
    rates = np.linspace(0, top, 200)
    for index, (name, trace) in enumerate(zip(models, traces, strict=True)):
        effect = overall_effect(read_variables(trace, "posterior", rule_hint="sample"))
        if effect is None:
            continue
        ratio = float(np.exp(np.median(effect)))
        axis.plot(rates, ratio * rates / (1 - rates + ratio * rates), color=f"C{index}", linewidth=1.5,
                  label=f"{name}: odds ratio {ratio:.2f}")
    axis.set_xlim(0, top)
    axis.set_ylim(0, top)
    axis.set_xlabel("event rate in the control arm")
    axis.set_ylabel("event rate in the treated arm")
    axis.set_title(f"L'Abbé plot of {len(table)} trials", fontsize=10)
    axis.legend(fontsize=7, loc="upper left")
    save_figure(fig, figure, dpi=100)
    plt.close(fig)
