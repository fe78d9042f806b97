"""Which pooling assumption do the data support? PSIS-LOO for every model of a data set.

Writes the comparison table (ELPD, its SE, differences to the best model, stacking
weights, and how many groups have Pareto k above the threshold) and ArviZ's comparison
plot. Leave-one-out here leaves out one *group*: with few groups each is a large share of
the data, and high Pareto k values say the estimate for that model is unreliable; the
warning names those groups.
"""

import logging

from common import atomic_path, read_datatree, save_plot_collection

log = logging.getLogger("pipeline.compare")


def high_k_groups(elpd, threshold: float) -> list[str]:
    k = elpd.pareto_k
    return [str(group) for group, value in zip(k["group"].values, k.values) if value > threshold]


def compare(traces: dict, *, k_threshold: float):
    """The comparison table, and per model the groups whose Pareto k exceeds the threshold."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        # ArviZ warns generically about high k; the table and our warning name the groups.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loos = {name: az.loo(tree, pointwise=True) for name, tree in traces.items()}
        table = az.compare(loos, round_to="none")
    flagged = {name: high_k_groups(elpd, k_threshold) for name, elpd in loos.items()}
    table["pareto_k_above"] = [len(flagged[name]) for name in table.index]
    table["pareto_k_threshold"] = k_threshold
    table.index.name = "model"
    return table, flagged


def main(traces: list[str], table: str, plot: str, *, models: list[str], k_threshold: float) -> None:
    trace_paths, model_names, table_path, plot_path = traces, models, table, plot
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    traces = {name: read_datatree(path, rule_hint="sample") for name, path in zip(model_names, trace_paths)}
    table, flagged = compare(traces, k_threshold=k_threshold)
    for name, groups in flagged.items():
        if groups:
            log.warning(
                "%s: Pareto k above %s for %d of %d groups (%s): its LOO estimate is unreliable there",
                name, k_threshold, len(groups), traces[name]["observed_data"].sizes.get("group", 1), ", ".join(groups),
            )
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp)
    save_plot_collection(az.plot_compare(table), plot_path)
    log.info("best model by PSIS-LOO: %s", table.index[0])
