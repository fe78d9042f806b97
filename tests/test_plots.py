"""Every figure is drawn from real traces and is a readable image."""

import numpy as np
import pytest

import plot_forest
import plot_model_graph
import plot_models_forest
import plot_new_group
import plot_population_mean
import plot_shrinkage
import plot_trace
import predict
from conftest import ROOT

pytestmark = pytest.mark.slow


def assert_png(path, min_width=200):
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 100
    # Not a blank canvas: the figure drew something.
    assert image.std() > 0.01


def test_histogram_mode_finds_the_fullest_bin():
    values = np.concatenate([np.full(10, 0.123), np.linspace(0, 1, 50)])
    assert plot_population_mean.histogram_mode(values, bins=100) == pytest.approx(0.125)
    assert plot_population_mean.histogram_mode(np.full(5, 0.95), bins=10) == pytest.approx(0.95)


def test_histogram_mode_of_a_beta_sample_is_near_its_mode():
    draws = np.random.default_rng(0).beta(8, 3, size=200_000)
    assert plot_population_mean.histogram_mode(draws, bins=100) == pytest.approx(7 / 9, abs=0.03)


@pytest.mark.parametrize("model", ["no_pooling", "full_pooling", "hierarchical", "hierarchical_logit"])
def test_per_model_figures(model, spacex_traces, spacex_prepared, tmp_path):
    trace = str(spacex_traces[model])
    plot_trace.main(trace, str(tmp_path / "trace.png"), max_groups=30)
    plot_forest.main(trace, str(tmp_path / "forest.png"), ci_prob=0.94, max_groups=30)
    prediction = tmp_path / "new_group.nc"
    predict.main(str(spacex_prepared), str(ROOT / "scripts" / "models" / f"{model}.py"), trace, str(prediction), new_trials=10, seed=1)
    plot_new_group.main(str(prediction), str(tmp_path / "new_group.png"), ci_prob=0.94)
    model_file = ROOT / "scripts" / "models" / f"{model}.py"
    plot_model_graph.main(str(spacex_prepared), str(model_file), str(tmp_path / "g.png"), str(tmp_path / "g.svg"))
    for name in ("trace.png", "forest.png", "new_group.png", "g.png"):
        assert_png(tmp_path / name)
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "theta" in svg and "Binomial" in svg


def test_population_mean_figure_marks_the_map(spacex_traces, tmp_path):
    output = tmp_path / "mu.png"
    plot_population_mean.main(str(spacex_traces["hierarchical"]), str(output), variable="mu", ci_prob=0.94)
    assert_png(output)


def test_models_forest_puts_all_models_in_one_figure(spacex_traces, spacex_prepared, tmp_path):
    output = tmp_path / "forest_models.png"
    names = list(spacex_traces)
    plot_models_forest.main(str(spacex_prepared), [str(spacex_traces[n]) for n in names], str(output), models=names,
                            ci_prob=0.94, max_groups=30)
    assert_png(output, min_width=600)


def test_pooled_theta_is_repeated_over_groups(spacex_traces):
    from common import read_datatree

    trace = read_datatree(spacex_traces["full_pooling"])
    theta = plot_models_forest.theta_by_group(trace["posterior"]["theta"], ["a", "b", "c", "d"])
    assert theta.sizes["group"] == 4
    np.testing.assert_array_equal(theta.sel(group="a").values, theta.sel(group="d").values)


def test_shrinkage_plots_every_model_and_orders_the_pooling(spacex_traces, spacex_prepared, tmp_path):
    from common import read_datatree, read_prepared

    table = read_prepared(spacex_prepared)
    means = {name: plot_shrinkage.posterior_means(path, table["group"]) for name, path in spacex_traces.items()}
    # The collapsed hierarchical model's are its Rao-Blackwellised means, the others' those of the draws.
    collapsed = read_datatree(spacex_traces["hierarchical"])
    np.testing.assert_array_equal(means["hierarchical"], collapsed["rao_blackwellised"]["theta"].sel(summary="mean").values)
    no_pooling = read_datatree(spacex_traces["no_pooling"])
    assert "rao_blackwellised" not in no_pooling.children
    np.testing.assert_array_equal(means["no_pooling"], no_pooling["posterior"]["theta"].mean(("chain", "draw")).values)
    raw = (table["successes"] / table["trials"]).to_numpy()
    pooled = table["successes"].sum() / table["trials"].sum()
    # Full pooling: one value for all; the hierarchical models pull small groups away from
    # their raw rates more than no pooling does...
    assert np.ptp(means["full_pooling"]) == 0 and means["full_pooling"][0] == pytest.approx(pooled, abs=0.005)
    small = (table["trials"] < 10).to_numpy()
    for name in ("hierarchical", "hierarchical_logit"):
        pulled = np.abs(means[name] - raw)[small]
        assert (pulled > np.abs(means["no_pooling"] - raw)[small]).all()
    # ... toward the population's mean, mu, not toward the pooled rate.
    mu = float(read_datatree(spacex_traces["hierarchical"])["posterior"]["mu"].mean())
    low, high = np.minimum(raw, mu), np.maximum(raw, mu)
    assert ((means["hierarchical"] >= low) & (means["hierarchical"] <= high))[small].all()
    output = tmp_path / "shrinkage.png"
    plot_shrinkage.main(str(spacex_prepared), [str(p) for p in spacex_traces.values()], str(output), models=list(spacex_traces))
    assert_png(output)


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory):
    """A trace and its checks with 400 groups, written as the workflow writes them."""
    import xarray as xr

    from common import write_datatree

    rng = np.random.default_rng(4)
    groups = [f"g{i:03d}" for i in range(400)]
    folder = tmp_path_factory.mktemp("many")
    theta = rng.beta(8, 2, size=(2, 300, 400))
    posterior = xr.Dataset(
        {"alpha": (("chain", "draw"), rng.gamma(8, size=(2, 300))), "beta": (("chain", "draw"), rng.gamma(2, size=(2, 300))),
         "theta": (("chain", "draw", "group"), theta)},
        coords={"group": groups},
    )
    write_datatree(xr.DataTree.from_dict({"/posterior": posterior}), folder / "trace.nc")
    trials = rng.integers(5, 300, size=400)
    observed = rng.binomial(trials, theta.mean(axis=(0, 1)))
    y_rep = rng.binomial(trials, theta)
    replicated = xr.Dataset({"y": (("chain", "draw", "group"), y_rep)}, coords={"group": groups})
    write_datatree(xr.DataTree.from_dict({"/posterior_predictive": replicated}), folder / "ppc.nc")
    import pandas as pd

    pd.DataFrame({"group": groups, "variable": "y", "denominator": trials, "observed": observed,
                  "p_greater_equal": (y_rep >= observed).mean(axis=(0, 1)),
                  "p_less_equal": (y_rep <= observed).mean(axis=(0, 1))}).to_csv(folder / "pvalues.csv", index=False)
    pd.DataFrame({"group": groups, "trials": trials, "successes": observed}).to_csv(folder / "data.csv", index=False)
    return folder


def test_figures_of_many_groups_summarise(many_groups, tmp_path):
    """Above max_groups: a caterpillar instead of a forest row per group, the population and
    the extreme groups instead of a trace panel per group, the worst groups of the PPC."""
    import time

    import plot_ppc

    started = time.perf_counter()
    plot_trace.main(str(many_groups / "trace.nc"), str(tmp_path / "trace.png"), max_groups=30)
    plot_forest.main(str(many_groups / "trace.nc"), str(tmp_path / "forest.png"), ci_prob=0.94, max_groups=30)
    plot_models_forest.main(str(many_groups / "data.csv"), [str(many_groups / "trace.nc")] * 2, str(tmp_path / "models.png"),
                            models=["a", "b"], ci_prob=0.94, max_groups=30)
    plot_ppc.main(str(many_groups / "ppc.nc"), str(many_groups / "pvalues.csv"), str(tmp_path / "ppc.png"), ci_prob=0.94, max_groups=30)
    for name in ("trace.png", "forest.png", "models.png", "ppc.png"):
        assert_png(tmp_path / name)
    import matplotlib.image

    # A trace plot of 400 groups would be 400 panels tall; this one has the population's two
    # and the six extreme groups.
    assert matplotlib.image.imread(tmp_path / "trace.png").shape[0] < 3000
    assert time.perf_counter() - started < 60


def test_extreme_groups_are_the_lowest_and_highest():
    from group_figures import extreme_groups

    means = np.array([0.5, 0.1, 0.9, 0.3, 0.95, 0.05, 0.6, 0.7])
    assert extreme_groups(means, list("abcdefgh"), count=2) == ["f", "b", "c", "e"]
