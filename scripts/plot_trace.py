"""Trace plot of one model: marginal densities and sampled values per chain.

Up to `max_groups` groups, every parameter, as the article draws it; beyond, the
population's parameters and the most extreme groups (scripts/group_figures.py).
"""

from common import read_variables, save_plot_collection
from group_figures import extreme_groups


def main(trace: str, figure: str, *, max_groups: int) -> None:
    import arviz as az
    import matplotlib
    import xarray as xr

    matplotlib.use("Agg")
    posterior = read_variables(trace, "posterior", rule_hint="sample")
    groups = posterior.sizes.get("group", 0)
    coords = None
    if groups > max_groups:
        per_group = [name for name, values in posterior.data_vars.items() if "group" in values.dims]
        shown = [name for name in per_group if name == "theta"] or per_group[:1]
        means = posterior[shown[0]].mean(("chain", "draw")).values
        coords = {"group": extreme_groups(means, list(posterior["group"].values))}
        posterior = posterior[[name for name in posterior.data_vars if name not in per_group or name in shown]]
    tree = xr.DataTree.from_dict({"/posterior": posterior})
    save_plot_collection(az.plot_trace_dist(tree, coords=coords), figure)
