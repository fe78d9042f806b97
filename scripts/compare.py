"""Which pooling assumption do the data support? Leave-one-group-out ELPD of every model of a
data set (each model's loo.nc, from scripts/loo.py), compared with ArviZ.

Writes the comparison table and ArviZ's comparison plot. Besides ArviZ's columns (elpd and
its se, differences to the best model and their se, effective parameters, stacking
weights), the table says where each model's values come from: `closed_form` (exact: a
closed form or quadrature), `refits`
(exact refits without a group, named in `refitted`) and `pareto_k_above`, the number of
values that still rest on a PSIS estimate with Pareto k above the threshold (0 unless
more refits were needed than `compare.max_refits` allows; the log then names them).
"""

import logging

import numpy as np

from common import atomic_path, read_datatree, save_plot_collection

log = logging.getLogger("pipeline.compare")


def elpd_data(loo):
    """ArviZ's ELPDDataLOO from a model's pointwise leave-one-group-out values."""
    from arviz_stats.utils import ELPDDataLOO

    elpd_i = loo["elpd_i"]
    n = elpd_i.sizes["group"]
    threshold = float(loo.attrs["k_threshold"])
    # A refit or a closed form is exact: no importance sampling, no Pareto k to worry about.
    pareto_k = loo["pareto_k"].where(loo["source"] == "psis", 0.0)
    return ELPDDataLOO(
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n * np.var(elpd_i.values, ddof=1))) if n > 1 else 0.0,
        p=float(loo["p_i"].sum()),
        n_samples=int(loo.attrs["n_samples"]),
        n_data_points=n,
        scale="log",
        warning=bool((pareto_k > threshold).any()),
        good_k=threshold,
        elpd_i=elpd_i,
        pareto_k=pareto_k,
    )


def sources(loo, threshold: float) -> dict:
    refitted = [str(g) for g in loo["group"].values[loo["source"].values == "refit"]]
    unreliable = [str(g) for g in loo["group"].values[(loo["source"].values == "psis") & (loo["pareto_k"].values > threshold)]]
    return {
        "closed_form": int(loo["source"].isin(["closed form", "quadrature"]).sum()),
        "refits": len(refitted),
        "refitted": ";".join(refitted),
        "pareto_k_above": len(unreliable),
        "unreliable": unreliable,
    }


def compare(loos: dict, *, k_threshold: float):
    """The comparison table, best model first, with where each model's values come from."""
    import arviz as az

    table = az.compare({name: elpd_data(loo) for name, loo in loos.items()}, round_to="none")
    origin = {name: sources(loo, k_threshold) for name, loo in loos.items()}
    for column in ("closed_form", "refits", "refitted", "pareto_k_above"):
        table[column] = [origin[name][column] for name in table.index]
    table["pareto_k_threshold"] = k_threshold
    table.index.name = "model"
    return table, {name: info["unreliable"] for name, info in origin.items()}


def main(loos: list[str], table: str, plot: str, *, models: list[str], k_threshold: float) -> None:
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    results = {name: read_datatree(path, rule_hint="loo")["loo"].to_dataset() for name, path in zip(models, loos, strict=True)}
    compared, unreliable = compare(results, k_threshold=k_threshold)
    for name, groups in unreliable.items():
        if groups:
            log.warning(
                "%s: Pareto k above %s for %d of %d groups (%s) and no refit (compare.max_refits): unreliable there",
                name, k_threshold, len(groups), results[name].sizes["group"], ", ".join(groups),
            )
    with atomic_path(table) as tmp:
        compared.to_csv(tmp)
    save_plot_collection(az.plot_compare(compared), plot)
    log.info("best model by leave-one-group-out ELPD: %s", compared.index[0])
