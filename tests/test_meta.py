"""Meta-analysis: the data shapes of effect estimates and two-arm trials, validated; their
models against exact answers (one-dimensional quadrature over tau for the normal-normal
model; conjugate normal posteriors) and against the published BUGS "Blocker" results
under the same priors; their leave-one-study-out values against numerical integration;
and the heterogeneity table's arithmetic."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import exact
import heterogeneity
import prepare_data
import sample
from common import UserError, load_module, read_datatree, read_prepared
from conftest import ROOT, SAMPLING
from diagnose import summarise

SCHOOLS = ROOT / "config" / "data" / "eight_schools.csv"
BLOCKERS = ROOT / "config" / "data" / "beta_blockers.csv"
MODELS = ROOT / "scripts" / "models"
Z = 4.0


def prepared(tmp_path, source, shape, group):
    columns = {"group": group, **{role: role for role in prepare_data.SHAPES[shape].columns}}
    path = tmp_path / f"{shape}.csv"
    prepare_data.main(str(source), str(path), shape=shape, columns=columns)
    return path


@pytest.fixture(scope="module")
def schools(tmp_path_factory):
    return prepared(tmp_path_factory.mktemp("schools"), SCHOOLS, "effects", "school")


@pytest.fixture(scope="module")
def blockers(tmp_path_factory):
    return prepared(tmp_path_factory.mktemp("blockers"), BLOCKERS, "two_arm", "trial")


# --------------------------------------------------------------------------------------
# Data shapes


def test_the_shapes_are_found_from_the_columns_and_prepared(schools, blockers):
    table = read_prepared(schools)
    assert list(table.columns) == ["group", "estimate", "se", "prior_scale"] and len(table) == 8
    y, se = table["estimate"].to_numpy(), table["se"].to_numpy()
    assert table["prior_scale"].iloc[0] == pytest.approx(np.sqrt(y.var() + (se**2).mean()))
    trials = read_prepared(blockers)
    assert list(trials.columns) == ["group", "treated_trials", "treated_events", "control_trials", "control_events"]
    assert len(trials) == 22 and trials["treated_events"].sum() == 826 and trials["control_events"].sum() == 985


@pytest.mark.parametrize("content,message", [
    ("s,estimate,se\na,1.5,0\nb,2,1\n", "row 1 (line 2), column 'se': 0 is not positive (a standard error must be above 0)"),
    ("s,estimate,se\na,1.5,-2\nb,2,1\n", "column 'se': -2 is not positive"),
    ("s,estimate,se\na,inf,1\nb,2,1\n", "row 1 (line 2), column 'estimate': 'inf' is not a finite number"),
    ("s,estimate,se\na,1,nan\nb,2,1\n", "column 'se': 'nan' is not a finite number"),
    ("s,estimate,se\na,x,1\nb,2,1\n", "column 'estimate': 'x' is not a number"),
    ("s,estimate,se\na,,1\nb,2,1\n", "column 'estimate': missing value"),
    ("s,estimate,se\na,1,1\n", "1 studies; pooling needs at least two"),
])
def test_effect_estimates_are_validated_with_one_line_errors(tmp_path, content, message):
    source = tmp_path / "effects.csv"
    source.write_text(content)
    with pytest.raises(UserError) as error:
        prepared(tmp_path, source, "effects", "s")
    assert message in str(error.value) and str(error.value).startswith(str(source)) and "\n" not in str(error.value)


TWO_ARM_HEADER = "t,treated_trials,treated_events,control_trials,control_events\n"


@pytest.mark.parametrize("row,message", [
    ("a,10,11,10,2", "row 1 (line 2), column 'treated_events': 11 events exceed 10 patients"),
    ("a,10,1,0,0", "column 'control_trials': patients must be at least 1"),
    ("a,10,1,5,-1", "column 'control_events': -1 is negative"),
    ("a,10,1.5,5,1", "column 'treated_events': '1.5' is not a whole number"),
])
def test_two_arm_trials_are_validated_with_one_line_errors(tmp_path, row, message):
    source = tmp_path / "trials.csv"
    source.write_text(TWO_ARM_HEADER + row + "\nb,20,2,20,3\n")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepared(tmp_path, source, "two_arm", "t")


def test_zero_events_are_allowed(tmp_path):
    source = tmp_path / "trials.csv"
    source.write_text(TWO_ARM_HEADER + "a,10,0,12,0\nb,20,2,20,3\n")
    assert read_prepared(prepared(tmp_path, source, "two_arm", "t"))["treated_events"].tolist() == [0, 2]


def test_a_shape_must_be_clear_from_the_config_or_the_columns(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("g,n,y\na,3,1\n")
    settings = {"path": str(source), "group": "g", "delimiter": ","}
    with pytest.raises(UserError, match="its columns say no shape"):
        prepare_data.resolve("x", settings)
    with pytest.raises(UserError, match=r"config key datasets\.x: columns estimate, trials belong to different shapes"):
        prepare_data.resolve("x", {**settings, "trials": "n", "estimate": "y"})
    with pytest.raises(UserError, match=r"config key datasets\.x\.trials: not a column of effects data"):
        prepare_data.resolve("x", {**settings, "shape": "effects", "trials": "n"})
    assert prepare_data.resolve("x", {**settings, "trials": "n", "successes": "y"}) == (
        "binomial", {"group": "g", "trials": "n", "successes": "y"})


# --------------------------------------------------------------------------------------
# Effect estimates: exact answers


def fit(data, name, settings=None, seed=11, model_file=None):
    path = data.parent / f"{name}.nc"
    sample.main(str(data), str(model_file or MODELS / f"{name}.py"), str(path), dataset="test", model=name,
                sampling=SAMPLING, settings=settings or {"target_accept": 0.95}, seed=seed, threads=2)
    return path


def close(summary, parameter, mean, sd):
    row = summary.loc[parameter]
    assert abs(row["mean"] - mean) <= Z * row["mcse_mean"], (parameter, row["mean"], mean, row["mcse_mean"])
    assert abs(row["sd"] - sd) <= Z * row["mcse_sd"], (parameter, row["sd"], sd, row["mcse_sd"])


def half_cauchy_log(scale):
    return lambda tau: stats.halfcauchy(scale=scale).logpdf(tau)


@pytest.mark.slow
def test_random_effects_matches_quadrature_over_tau(schools):
    table = read_prepared(schools)
    y, se, scale = table["estimate"].to_numpy(), table["se"].to_numpy(), table["prior_scale"].iloc[0]
    reference = exact.normal_normal(y, se, mu_sd=10 * scale, tau_log_prior=half_cauchy_log(scale), tau_max=50 * scale)
    summary = summarise(read_datatree(fit(schools, "meta_random_effects")), 0.94)
    close(summary, "mu", *reference["mu"])
    close(summary, "tau", *reference["tau"])
    for group, mean, sd in zip(table["group"], *reference["theta"], strict=True):
        close(summary, f"theta[{group}]", mean, sd)


@pytest.mark.slow
def test_with_bda_priors_it_reproduces_bda3_eight_schools(schools):
    """Flat mu and uniform tau, as BDA3 section 5.5: the exact answers (which the published
    Table 5.3 agrees with, to its 200 draws' precision: docs/meta-analysis.md)."""
    table = read_prepared(schools)
    y, se = table["estimate"].to_numpy(), table["se"].to_numpy()
    reference = exact.normal_normal(y, se, mu_sd=1e4, tau_log_prior=lambda tau: 0 * tau, tau_max=1000)
    assert reference["mu"][0] == pytest.approx(7.93, abs=0.01) and reference["tau"][0] == pytest.approx(6.58, abs=0.01)
    trace = fit(schools, "meta_bda_priors", model_file=ROOT / "tests" / "models" / "meta_bda_priors.py")
    summary = summarise(read_datatree(trace), 0.94)
    close(summary, "mu", *reference["mu"])
    close(summary, "tau", *reference["tau"])
    close(summary, "theta[A]", reference["theta"][0][0], reference["theta"][1][0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["meta_common_effect", "meta_no_pooling"])
def test_common_effect_and_no_pooling_match_their_normal_posteriors(schools, name):
    table = read_prepared(schools)
    y, se, prior_sd = table["estimate"].to_numpy(), table["se"].to_numpy(), 10 * table["prior_scale"].iloc[0]
    summary = summarise(read_datatree(fit(schools, name)), 0.94)
    if name == "meta_common_effect":
        precision = 1 / prior_sd**2 + (1 / se**2).sum()
        close(summary, "theta", (y / se**2).sum() / precision, np.sqrt(1 / precision))
    else:
        precision = 1 / prior_sd**2 + 1 / se**2
        for group, mean, sd in zip(table["group"], y / se**2 / precision, np.sqrt(1 / precision), strict=True):
            close(summary, f"theta[{group}]", mean, sd)


def test_a_left_out_study_has_its_closed_form_likelihood(schools):
    """Random effects: theta_j integrated out, y_j ~ N(mu, tau^2 + se_j^2); common effect:
    the exact leave-one-out predictive, against a grid integration of the posterior
    without the study."""
    table = read_prepared(schools)
    import xarray as xr

    module = load_module(MODELS / "meta_random_effects.py")
    draws = xr.Dataset({"mu": (("chain", "draw"), [[3.0, 8.0]]), "tau": (("chain", "draw"), [[2.0, 10.0]])})
    values = module.group_log_likelihood(draws, table)
    j = 0
    y, s = table["estimate"].iloc[j], table["se"].iloc[j]
    for index, (mu, tau) in enumerate([(3.0, 2.0), (8.0, 10.0)]):
        def integrand(t, mu=mu, tau=tau):
            return stats.norm.pdf(y, t, s) * stats.norm.pdf(t, mu, tau)

        numeric, _ = integrate.quad(integrand, -200, 200, points=[mu, y])
        assert values[0, index, j] == pytest.approx(np.log(numeric), abs=1e-8)
    common = load_module(MODELS / "meta_common_effect.py").exact_loo(table)
    prior_sd = 10 * table["prior_scale"].iloc[0]
    grid = np.linspace(-400, 400, 400001)
    for j in range(len(table)):
        others = table.drop(index=j)
        log_post = stats.norm.logpdf(grid, 0, prior_sd) + sum(stats.norm.logpdf(r.estimate, grid, r.se) for r in others.itertuples())
        weights = np.exp(log_post - log_post.max())
        predictive = (weights * stats.norm.pdf(table["estimate"].iloc[j], grid, table["se"].iloc[j])).sum() / weights.sum()
        assert common[j] == pytest.approx(np.log(predictive), abs=1e-6)


# --------------------------------------------------------------------------------------
# Two-arm trials


# The BUGS "Blocker" example's published posteriors (mean, sd): OpenBUGS, MultiBUGS and
# JAGS's classic-bugs benchmark, the same model and priors (docs/meta-analysis.md). Their
# spread stands for their Monte Carlo error.
BUGS = {"mu": [(-0.2536, 0.06164), (-0.2502, 0.06137), (-0.25322, 0.05978)],
        "tau": [(0.1114, 0.06381), (0.1134, 0.06737), (0.11540, 0.06835)]}


@pytest.mark.slow
def test_with_bugs_priors_it_reproduces_the_bugs_blocker_example(blockers):
    trace = fit(blockers, "blocker_bugs", model_file=ROOT / "tests" / "models" / "blocker_bugs.py",
                settings={"target_accept": 0.99})
    summary = summarise(read_datatree(trace), 0.94)
    for name, published in BUGS.items():
        means = np.array([m for m, _ in published])
        # Within 4 of the combined Monte Carlo errors: ours, and the published runs' (their spread).
        tolerance = Z * np.sqrt(summary.loc[name, "mcse_mean"] ** 2 + means.std(ddof=1) ** 2)
        assert abs(summary.loc[name, "mean"] - means.mean()) <= tolerance, (name, summary.loc[name, "mean"], means)
        sds = np.array([s for _, s in published])
        assert abs(summary.loc[name, "sd"] - sds.mean()) <= Z * np.sqrt(summary.loc[name, "mcse_sd"] ** 2 + sds.std(ddof=1) ** 2)


@pytest.mark.slow
def test_the_shipped_two_arm_models_fit_without_trouble(blockers):
    for name in ("trials_no_pooling", "trials_common_effect", "trials_random_effects"):
        trace = read_datatree(fit(blockers, name))
        summary = summarise(trace, 0.94)
        assert summary["r_hat"].max() < 1.01 and int(trace["sample_stats"]["diverging"].sum()) == 0, name
        assert {"y_treated", "y_control"} == set(trace["log_likelihood"].data_vars)


# --------------------------------------------------------------------------------------
# Heterogeneity


def test_i2_and_pooling_factors_are_their_definitions():
    import xarray as xr

    table = pd.DataFrame({"group": ["a", "b", "c"], "estimate": [1.0, 2.0, 4.0], "se": [1.0, 2.0, 0.5],
                          "prior_scale": 1.0})
    tau = np.array([[0.5, 1.5]])
    posterior = xr.Dataset({"mu": (("chain", "draw"), [[1.0, 2.0]]), "tau": (("chain", "draw"), tau),
                            "theta": (("chain", "draw", "group"), np.arange(6.0).reshape(1, 2, 3))},
                           coords={"group": ["a", "b", "c"]})
    row, studies = heterogeneity.model_rows("m", posterior, np.array([0.0, 1.0]), table, 0.95, two_arm=False)
    w = 1 / np.array([1.0, 4.0, 0.25])
    s2 = 2 * w.sum() / (w.sum() ** 2 - (w**2).sum())
    assert row["i2_mean"] == pytest.approx(np.mean(tau**2 / (tau**2 + s2)))
    assert row["tau_mean"] == pytest.approx(1.0)
    se2 = np.array([1.0, 4.0, 0.25])
    np.testing.assert_allclose(studies["pooling_factor"], (se2 / (se2 + tau.T**2)).mean(axis=0))
    np.testing.assert_allclose(studies["weight"].sum(), 1.0)
    # Gelman and Pardoe: errors theta_j - mu per draw, [[0,1,2]-1, [3,4,5]-2].
    errors = np.array([[-1.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    assert row["pooling"] == pytest.approx(1 - errors.mean(axis=0).var(ddof=1) / errors.var(axis=1, ddof=1).mean())


def test_both_arms_of_a_trial_are_replicated_and_checked(blockers):
    """The posterior predictive check replicates every observed variable: each arm's events,
    with the trial's baseline and effect as drawn."""
    import xarray as xr

    import ppc

    table = read_prepared(blockers)
    model = load_module(MODELS / "trials_common_effect.py").build(table)
    rng = np.random.default_rng(4)
    baseline = rng.normal(-2.2, 0.05, size=(2, 500, len(table)))
    posterior = xr.Dataset({"baseline": (("chain", "draw", "group"), baseline),
                            "theta": (("chain", "draw"), rng.normal(-0.26, 0.05, size=(2, 500)))},
                           coords={"group": table["group"].tolist()})
    y_rep = ppc.replicate(model, table, posterior, seed=1)
    assert set(y_rep.data_vars) == {"y_treated", "y_control"}
    expected = table["control_trials"].to_numpy() / (1 + np.exp(2.2))
    np.testing.assert_allclose(y_rep["y_control"].mean(("chain", "draw")), expected, rtol=0.1)
    observed = {"y_treated": table["treated_events"].to_numpy(), "y_control": table["control_events"].to_numpy()}
    pvalues = ppc.p_values(y_rep, table, observed, 0.94)
    assert len(pvalues) == 44 and set(pvalues["variable"]) == {"y_treated", "y_control"}
    assert list(pvalues.loc[pvalues["variable"] == "y_treated", "denominator"]) == list(table["treated_trials"])
