"""The sampled posteriors agree with the exact ones within a few Monte Carlo standard errors."""

import numpy as np
import pytest
import xarray as xr

import diagnose
import exact
import sample
from common import read_datatree, read_prepared
from conftest import ROOT, SAMPLING
from diagnose import summarise

pytestmark = pytest.mark.slow

# A mean within this many of its MCSE; with a dozen checks, 4 gives a false alarm less
# than once in a thousand fresh seeds.
Z = 4.0


@pytest.fixture(scope="module")
def data(spacex_prepared):
    table = read_prepared(spacex_prepared)
    return table["trials"].to_numpy(), table["successes"].to_numpy()


def assert_close(summary, parameter, mean, sd):
    row = summary.loc[parameter]
    assert abs(row["mean"] - mean) <= Z * row["mcse_mean"], (parameter, row["mean"], mean, row["mcse_mean"])
    assert abs(row["sd"] - sd) <= Z * row["mcse_sd"], (parameter, row["sd"], sd, row["mcse_sd"])


def parameters(summary, name):
    return [p for p in summary.index if p == name or p.startswith(f"{name}[")]


def test_no_pooling_matches_conjugate_beta(spacex_traces, data):
    summary = summarise(read_datatree(spacex_traces["no_pooling"]), 0.94)
    means, sds = exact.no_pooling(*data)
    np.testing.assert_allclose(means, [0.4167, 0.9885, 0.9500, 0.5500], atol=5e-5)
    for parameter, mean, sd in zip(parameters(summary, "theta"), means, sds, strict=True):
        assert_close(summary, parameter, mean, sd)


def test_full_pooling_matches_conjugate_beta(spacex_traces, data):
    summary = summarise(read_datatree(spacex_traces["full_pooling"]), 0.94)
    mean, sd = exact.full_pooling(*data)
    assert mean == pytest.approx(0.9680, abs=5e-5)
    assert_close(summary, "theta", mean, sd)


def test_hierarchical_matches_numerical_integration(spacex_traces, data):
    summary = summarise(read_datatree(spacex_traces["hierarchical"]), 0.94)
    reference = exact.hierarchical(*data)
    for name in ("alpha", "beta", "mu"):
        assert_close(summary, name, *reference[name])
    means, sds = reference["theta"]
    for parameter, mean, sd in zip(parameters(summary, "theta"), means, sds, strict=True):
        assert_close(summary, parameter, mean, sd)


def test_the_rao_blackwellised_summaries_are_the_conditional_moments_averaged_and_match_quadrature(spacex_traces, data):
    """A collapsed trace's group means and sds come from theta_j's Beta conditional given
    every draw of (alpha, beta): equal to that average computed here, with the Monte Carlo
    error of batch means, within Z of it from the quadrature answer, and at least as
    precise as the mean of theta's own draws."""
    trace = read_datatree(spacex_traces["hierarchical"])
    found = trace["rao_blackwellised"]["theta"]
    n, y = data
    alpha, beta = (trace["posterior"][name].values[..., None] for name in ("alpha", "beta"))
    conditional_mean = (alpha + y) / (alpha + beta + n)
    second = conditional_mean * (alpha + y + 1) / (alpha + beta + n + 1)
    mean = conditional_mean.mean(axis=(0, 1))
    np.testing.assert_allclose(found.sel(summary="mean").values, mean, rtol=1e-12)
    np.testing.assert_allclose(found.sel(summary="sd").values, np.sqrt(second.mean(axis=(0, 1)) - mean**2), rtol=1e-9)
    chains, draws = alpha.shape[:2]
    batches = conditional_mean.reshape(chains, sample.RB_BATCHES, draws // sample.RB_BATCHES, -1).mean(axis=2).reshape(-1, len(n))
    count = len(batches)
    np.testing.assert_allclose(found.sel(summary="mcse_mean").values,
                               np.sqrt(((batches - mean) ** 2).sum(axis=0) / (count * (count - 1))), rtol=1e-9)
    summary = diagnose.with_rao_blackwellised(trace, summarise(trace, 0.94))
    draws_only = summarise(trace, 0.94)
    means, sds = exact.hierarchical(*data)["theta"]
    for parameter, exact_mean, exact_sd in zip(parameters(summary, "theta"), means, sds, strict=True):
        row = summary.loc[parameter]
        assert abs(row["mean"] - exact_mean) <= Z * row["mcse_mean"], (parameter, row["mean"], exact_mean)
        assert abs(row["sd"] - exact_sd) <= Z * draws_only.loc[parameter, "mcse_sd"], (parameter, row["sd"], exact_sd)
        assert row["mcse_mean"] < draws_only.loc[parameter, "mcse_mean"]


def test_hierarchical_logit_matches_numerical_integration(spacex_traces, data):
    summary = summarise(read_datatree(spacex_traces["hierarchical_logit"]), 0.94)
    reference = exact.hierarchical_logit(*data)
    for name in ("m", "s"):
        assert_close(summary, name, *reference[name])
    means, sds = reference["theta"]
    for parameter, mean, sd in zip(parameters(summary, "theta"), means, sds, strict=True):
        assert_close(summary, parameter, mean, sd)


def test_pymc_sampler_matches_conjugate_beta(spacex_prepared, data, tmp_path):
    path = tmp_path / "trace.nc"
    sample.main(
        str(spacex_prepared), str(ROOT / "scripts" / "models" / "full_pooling.py"), str(path),
        dataset="spacex", model="full_pooling", sampling={**SAMPLING, "sampler": "pymc", "draws": 1000},
        settings={}, seed=7, threads=2,
    )
    trace = read_datatree(path)
    assert trace["posterior"].attrs["inference_library"] == "pymc"
    assert_close(summarise(trace, 0.94), "theta", *exact.full_pooling(*data))


def test_trace_groups_dims_and_provenance(spacex_traces, spacex_prepared):
    from common import sha256_of

    trace = read_datatree(spacex_traces["hierarchical"])
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(trace.children)
    posterior = trace["posterior"]
    assert posterior["theta"].dims == ("chain", "draw", "group")
    assert list(posterior["group"].values) == ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]
    assert posterior["mu"].shape == (4, 2000)
    # Its leave-one-group-out step integrates each group itself: the trace keeps only the
    # per-draw sum that the prior sensitivity check scales.
    assert trace["log_likelihood"]["y"].dims == ("chain", "draw")
    assert trace["log_likelihood"].attrs["summed_over"] == "group"
    assert read_datatree(spacex_traces["no_pooling"])["log_likelihood"]["y"].dims == ("chain", "draw", "group")
    attrs = trace.attrs
    assert attrs["pipeline_data_sha256"] == sha256_of(spacex_prepared)
    assert attrs["pipeline_model_file_sha256"] == sha256_of(ROOT / "scripts" / "models" / "hierarchical.py")
    assert int(attrs["pipeline_seed"]) == 1002
    for package in ("pymc", "pytensor", "arviz", "nutpie", "numpy"):
        assert attrs[f"version_{package}"]


def fit_hierarchical(data_path, tmp_path, *, method, sampling, seed):
    path = tmp_path / f"{method}.nc"
    sample.main(
        str(data_path), str(ROOT / "scripts" / "models" / "hierarchical.py"), str(path),
        dataset="test", model="hierarchical", sampling=sampling, settings={"target_accept": 0.95, "method": method},
        seed=seed, threads=2,
    )
    trace = read_datatree(path)
    assert trace.attrs["pipeline_method"] == method
    return trace


def test_the_articles_nuts_still_matches_numerical_integration(spacex_prepared, data, tmp_path):
    """method: nuts samples the article's model as written, funnel and all."""
    trace = fit_hierarchical(spacex_prepared, tmp_path, method="nuts", sampling=SAMPLING, seed=11)
    summary = summarise(trace, 0.94)
    reference = exact.hierarchical(*data)
    for name in ("alpha", "beta", "mu"):
        assert_close(summary, name, *reference[name])
    for parameter, mean, sd in zip(parameters(summary, "theta"), *reference["theta"], strict=True):
        assert_close(summary, parameter, mean, sd)


def test_collapsed_trace_has_the_shape_and_names_of_a_nuts_trace(spacex_traces, spacex_prepared, tmp_path):
    collapsed = read_datatree(spacex_traces["hierarchical"])
    nuts = fit_hierarchical(spacex_prepared, tmp_path, method="nuts", sampling={**SAMPLING, "draws": 100, "tune": 100}, seed=3)
    assert collapsed.attrs["pipeline_method"] == "collapsed"
    for group in ("posterior", "log_likelihood", "observed_data"):
        assert {n: v.dims for n, v in collapsed[group].data_vars.items()} == {n: v.dims for n, v in nuts[group].data_vars.items()}, group
    assert list(collapsed["posterior"]["group"].values) == list(nuts["posterior"]["group"].values)
    # No funnel, no divergences.
    assert int(collapsed["sample_stats"]["diverging"].sum()) == 0


@pytest.fixture(scope="module")
def thousand_groups(tmp_path_factory):
    """1,000 simulated groups; trials of a few sizes, so that quadrature stays quick."""
    import prepare_data

    rng = np.random.default_rng(1000)
    trials = rng.choice([5, 20, 60, 150], size=1000)
    successes = rng.binomial(trials, rng.beta(6, 2, size=1000))
    folder = tmp_path_factory.mktemp("thousand")
    rows = "".join(f"g{i},{n},{y}\n" for i, (n, y) in enumerate(zip(trials, successes, strict=True)))
    (folder / "raw.csv").write_text("group,trials,successes\n" + rows)
    prepare_data.main(str(folder / "raw.csv"), str(folder / "data.csv"), group="group", trials="trials", successes="successes")
    return folder / "data.csv", trials, successes


@pytest.mark.parametrize("method,draws", [("collapsed", 1000), ("nuts", 500)])
def test_both_methods_match_numerical_integration_at_1000_groups(thousand_groups, tmp_path, method, draws):
    path, trials, successes = thousand_groups
    trace = fit_hierarchical(path, tmp_path, method=method, sampling={**SAMPLING, "draws": draws, "tune": draws}, seed=7)
    posterior = trace["posterior"]
    subset = xr_subset(posterior, [f"g{i}" for i in range(0, 1000, 100)])
    summary = summarise(xr.DataTree.from_dict({"/posterior": subset}), 0.94)
    reference = exact.hierarchical(trials, successes, points=400)
    for name in ("alpha", "beta", "mu"):
        assert_close(summary, name, *reference[name])
    for index, parameter in zip(range(0, 1000, 100), parameters(summary, "theta"), strict=True):
        assert_close(summary, parameter, reference["theta"][0][index], reference["theta"][1][index])


def xr_subset(posterior, groups):
    return posterior.to_dataset().sel(group=groups)
