"""Convergence diagnostics of one trace: summary.csv and diagnostics.json.

A failed check (R-hat, ESS, divergences, BFMI) is a loud warning by default and a failure
of the rule with `strict`. Non-finite draws always fail: they mean the numbers are wrong,
not merely uncertain, and nothing downstream should be computed from them. A warning of
the prior sensitivity check (scripts/sensitivity.py: prior-data conflict, strong prior /
weak likelihood) is among the `problems` too, and under `prior_sensitivity`; it is a
finding about the model, not a failure of the sampler, so `strict` does not stop on it.
"""


import json
import logging
import math

import numpy as np

from common import UserError, atomic_path, read_datatree

log = logging.getLogger("pipeline.diagnose")


def summarise(trace, ci_prob: float, threads: int = 1):
    """az.summary's numbers, computed for all parameters at once (scripts/mcmc_stats.py)."""
    import mcmc_stats

    return mcmc_stats.summary(trace["posterior"].to_dataset(), ci_prob, threads=threads)


def nonfinite_variables(trace) -> list[str]:
    bad = []
    for group in ("posterior", "log_likelihood"):
        if group not in trace.children:
            continue
        for name, values in trace[group].data_vars.items():
            if not np.isfinite(values.values).all():
                bad.append(f"{group}/{name}")
    return bad


def with_unthinned(trace, table):
    """The summary with the rows of the sampler's scalar variables taken from every draw, for
    a trace that keeps one draw in k (sampling.store_values): computed by the sample step
    before thinning (intervals stay those of the kept draws)."""
    found = json.loads(trace.attrs.get("pipeline_unthinned_diagnostics", "{}"))
    table = table.copy()
    for name, columns in found.items():
        for column, value in columns.items():
            table.loc[name, column] = value
    return table


def with_rao_blackwellised(trace, table):
    """The summary with the mean, sd and mcse_mean of a collapsed model's integrated-out
    group variables (theta) taken from the sample step's Rao-Blackwellised summaries: their
    conditional moments averaged over every draw of the sampler, not over the kept draws of
    theta (intervals, ESS, R-hat and the MCSE of the sd stay those of the draws)."""
    import mcmc_stats

    if "rao_blackwellised" not in trace.children:
        return table
    table = table.copy()
    for name, values in trace["rao_blackwellised"].data_vars.items():
        dims = [dim for dim in values.dims if dim != "summary"]
        labels = mcmc_stats.parameter_labels(name, values, dims)
        for column in values["summary"].values:
            table.loc[labels, str(column)] = values.sel(summary=column).transpose(*dims).values.reshape(-1)
    return table


def judged(trace, table):
    """The summary rows the convergence thresholds apply to. In a thinned trace, not those of
    variables computed exactly from the sampler's draws after sampling (a collapsed model's
    mu, a function of alpha and beta, and theta, drawn from its conditional given them):
    their convergence is that of the sampler's variables, judged from every draw, while
    their own R-hat and ESS come from the few kept draws (a million groups' theta: noise
    whose maximum exceeds any threshold). They are in summary.csv all the same."""
    if int(trace.attrs.get("pipeline_kept_every", 1)) <= 1:
        return table
    completed = set(trace["posterior"].attrs.get("pipeline_completed", "").split())
    return table[[parameter.split("[")[0] not in completed for parameter in table.index]]


def check(trace, table, thresholds: dict) -> dict:
    import arviz as az

    table = judged(trace, table)
    stats = trace["sample_stats"]
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = [float(v) for v in np.atleast_1d(az.bfmi(trace)["energy"].values)] if "energy" in stats else []
    report = {
        "divergences": divergences,
        "max_rhat": float(table["r_hat"].max()),
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "min_ess_tail": float(table["ess_tail"].min()),
        "bfmi": bfmi,
        "thresholds": dict(thresholds),
    }
    problems = []
    worst_rhat = table["r_hat"].idxmax()
    if not report["max_rhat"] <= thresholds["max_rhat"]:
        problems.append(f"R-hat {report['max_rhat']:.4f} of {worst_rhat} exceeds {thresholds['max_rhat']}")
    for kind in ("bulk", "tail"):
        column = f"ess_{kind}"
        if not table[column].min() >= thresholds["min_ess"]:
            problems.append(
                f"ESS {kind} {table[column].min():.0f} of {table[column].idxmin()} is below {thresholds['min_ess']}"
            )
    if divergences > thresholds["max_divergences"]:
        problems.append(f"{divergences} divergent transitions (at most {thresholds['max_divergences']} allowed)")
    low = [f"chain {i}: {v:.2f}" for i, v in enumerate(bfmi) if v < thresholds["min_bfmi"]]
    if low:
        problems.append(f"BFMI below {thresholds['min_bfmi']} ({', '.join(low)})")
    report["ok"] = not problems
    report["problems"] = problems
    return report


def with_sensitivity(report: dict, path: str) -> dict:
    """The report with the sensitivity check's diagnosis per parameter, and its warnings."""
    import pandas as pd

    import sensitivity

    table = pd.read_csv(path, index_col="parameter", keep_default_na=False)
    found = sensitivity.problems(table)
    report["prior_sensitivity"] = {str(name): diagnosis for name, diagnosis in table["diagnosis"].items()}
    report["problems"] = report["problems"] + found
    report["ok"] = report["ok"] and not found
    return report


def main(trace: str, sensitivity: str, summary: str, diagnostics: str, *, thresholds: dict, ci_prob: float, strict: bool,
         threads: int = 1) -> None:
    trace_path = trace
    trace = read_datatree(trace_path, rule_hint="sample")
    bad = nonfinite_variables(trace)
    if bad:
        raise UserError(f"{trace_path}: non-finite values in {', '.join(bad)}; the fit cannot be used")
    table = with_rao_blackwellised(trace, with_unthinned(trace, summarise(trace, ci_prob, threads)))
    report = check(trace, table, thresholds)
    report["kept_every"] = int(trace.attrs.get("pipeline_kept_every", 1))
    report["rao_blackwellised"] = sorted(trace["rao_blackwellised"].data_vars) if "rao_blackwellised" in trace.children else []
    for problem in report["problems"]:
        log.warning("%s: %s", trace_path, problem)
    if strict and not report["ok"]:
        raise UserError(f"{trace_path}: diagnostics failed (diagnostics.strict is true): {'; '.join(report['problems'])}")
    report = with_sensitivity(report, sensitivity)
    with atomic_path(summary) as tmp:
        table.to_csv(tmp, float_format="%.10g")
    with atomic_path(diagnostics) as tmp:
        # json.dumps writes NaN as the invalid token NaN; R-hat of a constant is NaN.
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.items()}
        tmp.write_text(json.dumps(clean, indent=2) + "\n")
