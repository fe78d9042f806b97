"""Do the priors drive the answer? Power-scaling sensitivity (Kallioinen et al. 2024).

arviz-stats' `psense_summary` raises the prior and the likelihood to powers near 1 and
measures, by importance weighting of the existing draws, how much each posterior
quantity moves. Only the model's own priors are scaled (its `HYPERPRIORS`: alpha and beta
of the hierarchical model, not the population term theta | alpha, beta), from the
trace's `log_prior` group, with the likelihood of every group. Its diagnosis per
quantity: "potential prior-data conflict" (both move it), "potential strong prior / weak
likelihood" (the prior does, the data hardly), or none.

The quantities are the model's scalar parameters; a model that has none (no pooling) is
judged on the theta of the `max_groups` groups whose own data say least (the fewest
trials or patients, the largest standard errors), whose estimates the prior moves most. Writes
sensitivity.csv.
"""

import logging

import numpy as np

from common import atomic_path, read_prepared, read_variables, readable
from shapes import information

log = logging.getLogger("pipeline.sensitivity")

WARNINGS = ("prior-data conflict", "strong prior")


def summed(trace: str, group: str, block: int = 2000):
    """Every variable of a trace group, summed over its non-sample dimensions: psense uses
    only the sums, and a 10,000-group log-likelihood is read block by block."""
    import xarray as xr

    with readable(trace, "sample"), xr.open_dataset(trace, group=group, engine="netcdf4") as lazy:
        result = {}
        for name, values in lazy.data_vars.items():
            if "group" not in values.dims:
                result[name] = values.load()
                continue
            total = 0
            for start in range(0, values.sizes["group"], block):
                total = total + values.isel(group=slice(start, start + block)).load().sum("group")
            result[name] = total
        return xr.Dataset(result)


def quantities(variables: dict, table, max_groups: int):
    """(variables, coordinates) to judge, from each posterior variable's dimensions: the scalar
    parameters, else the least-informed groups."""
    scalars = [name for name, dims in variables.items() if "group" not in dims]
    if scalars:
        return scalars, None
    least = table["group"].to_numpy()[np.argsort(information(table), kind="stable")][:max_groups].tolist()
    # Each group's theta (not the nuisance parameters beside it: a two-arm trial's baseline).
    return (["theta"] if "theta" in variables else list(variables)), {"group": least}


def problems(table) -> list[str]:
    """One line per quantity whose diagnosis is a warning."""
    flagged = table[table["diagnosis"].str.contains("|".join(WARNINGS), regex=True, na=False)]
    return [f"prior sensitivity of {row.Index}: {row.diagnosis.replace('potential ', '')} (prior {row.prior:.3f}, "
            f"likelihood {row.likelihood:.3f})" for row in flagged.itertuples()]


def main(data: str, trace: str, sensitivity: str, *, max_groups: int) -> None:
    import xarray as xr
    from arviz_stats import psense_summary

    table = read_prepared(data)
    with readable(trace, "sample"), xr.open_dataset(trace, group="posterior", engine="netcdf4") as lazy:
        names, coords = quantities({name: values.dims for name, values in lazy.data_vars.items()}, table, max_groups)
    # Only what is judged is read: at 10,000 groups the posterior is 1.6 GB per variable.
    posterior = read_variables(trace, "posterior", names, rule_hint="sample", select=coords)
    tree = xr.DataTree.from_dict({
        "/posterior": posterior,
        "/log_prior": summed(trace, "log_prior"),
        "/log_likelihood": summed(trace, "log_likelihood"),
    })
    result = psense_summary(tree, var_names=names, round_to=6)
    result.index.name = "parameter"
    result["diagnosis"] = result["diagnosis"].replace({"✓": ""})
    for line in problems(result):
        log.warning("%s", line)
    with atomic_path(sensitivity) as tmp:
        result.to_csv(tmp, float_format="%.6g")
