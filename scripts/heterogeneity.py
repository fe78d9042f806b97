"""What meta-analysts read first: the overall effect, the prediction interval for a new
study, and how much the studies differ (heterogeneity), under each model of a data set
of effect estimates or two-arm trials.

heterogeneity.csv, one row per model:
- `effect_*`: the overall effect (mean, sd, median, interval at `meta.interval`): the
  population mean mu of a random effects model, the common theta of a common effect model;
  none under no pooling, which has no overall effect;
- `prediction_*`: the interval of a new study's true effect (theta_new of new_group.nc):
  the meta-analysis' prediction interval;
- `tau_*`: the between-study standard deviation (0 under common effect);
- `i2_*`: I^2 = tau^2 / (tau^2 + s^2), the share of the variation in the estimates that is
  between studies, with s^2 Higgins and Thompson's typical within-study variance;
- `pooling`: Gelman and Pardoe's (2006) pooling factor of the study effects,
  1 - var_j(E[theta_j - mu]) / E[var_j(theta_j - mu)]: 0 no pooling, 1 complete pooling;
- for two-arm trials the same effects as odds ratios (`odds_ratio_*`, exp of the log odds
  ratio's quantiles).

pooling.csv, one row per study and model: its pooling factor se_j^2 / (se_j^2 + tau^2)
(posterior mean; baggr's convention: near 1, the study's estimate is pooled into the
population's; near 0, it stands on its own) and its weight in the overall effect,
proportional to 1 / (se_j^2 + tau^2).
"""

import numpy as np

from common import atomic_path, read_prepared, read_variables
from shapes import shape_of, standard_errors, typical_within_variance


def overall_effect(posterior):
    """Draws of the overall effect: mu, or a common theta; None under no pooling."""
    if "mu" in posterior:
        return posterior["mu"].values.ravel()
    if "theta" in posterior and "group" not in posterior["theta"].dims:
        return posterior["theta"].values.ravel()
    return None


def between_sd(posterior):
    """Draws of tau: the model's tau, 0 under common effect, None (infinite) under no pooling."""
    if "tau" in posterior:
        return posterior["tau"].values.ravel()
    if "theta" in posterior and "group" not in posterior["theta"].dims:
        return np.zeros(posterior.sizes["chain"] * posterior.sizes["draw"])
    return None


def summary(values, interval: float, prefix: str) -> dict:
    if values is None:
        return {f"{prefix}_{k}": np.nan for k in ("mean", "sd", "median", "lb", "ub")}
    tail = (1 - interval) / 2
    low, median, high = np.quantile(values, [tail, 0.5, 1 - tail])
    return {f"{prefix}_mean": values.mean(), f"{prefix}_sd": values.std(ddof=1), f"{prefix}_median": median,
            f"{prefix}_lb": low, f"{prefix}_ub": high}


def pooling_factor(posterior, effect):
    """Gelman and Pardoe's pooling factor of the study effects theta_j about the overall one."""
    if "theta" not in posterior or "group" not in posterior["theta"].dims:
        return 1.0  # one effect for all: complete pooling
    if effect is None:
        return 0.0  # no population to pool toward
    theta = posterior["theta"].transpose("chain", "draw", "group").values.reshape(-1, posterior.sizes["group"])
    errors = theta - effect[:, None]
    return float(1 - errors.mean(axis=0).var(ddof=1) / errors.var(axis=1, ddof=1).mean())


def model_rows(name, posterior, theta_new, table, interval: float, two_arm: bool):
    se = standard_errors(table)
    effect, tau = overall_effect(posterior), between_sd(posterior)
    row = {"model": name, **summary(effect, interval, "effect"), **summary(theta_new, interval, "prediction")}
    row.update(summary(tau, interval, "tau"))
    within = typical_within_variance(se)
    i2 = None if tau is None else tau**2 / (tau**2 + within)
    row.update(summary(i2, interval, "i2"))
    row["pooling"] = pooling_factor(posterior, effect)
    if two_arm:
        for prefix, values in (("odds_ratio", effect), ("prediction_odds_ratio", theta_new)):
            quantiles = summary(values, interval, prefix)
            row.update({key: np.exp(quantiles[key]) for key in (f"{prefix}_median", f"{prefix}_lb", f"{prefix}_ub")})
    studies = {"group": table["group"], "model": name}
    if tau is None:  # no pooling: every study on its own
        studies.update(pooling_factor=0.0, weight=np.nan)
    else:
        studies["pooling_factor"] = (se[None, :] ** 2 / (se[None, :] ** 2 + tau[:, None] ** 2)).mean(axis=0)
        weights = 1 / (se[None, :] ** 2 + tau[:, None] ** 2)
        studies["weight"] = (weights / weights.sum(axis=1, keepdims=True)).mean(axis=0)
    return row, studies


def main(data: str, traces: list[str], predictions: list[str], table: str, pooling: str, *, models: list[str],
         interval: float) -> None:
    import pandas as pd

    studies = read_prepared(data)
    two_arm = shape_of(studies) == "two_arm"
    rows, per_study = [], []
    for name, trace, prediction in zip(models, traces, predictions, strict=True):
        posterior = read_variables(trace, "posterior", rule_hint="sample")
        theta_new = read_variables(prediction, "posterior_predictive", ["theta_new"], rule_hint="predict")["theta_new"].values.ravel()
        row, study_rows = model_rows(name, posterior, theta_new, studies, interval, two_arm)
        rows.append(row)
        per_study.append(pd.DataFrame(study_rows))
    with atomic_path(table) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(pooling) as tmp:
        pd.concat(per_study, ignore_index=True).to_csv(tmp, index=False, float_format="%.6g")
