"""Leave-one-group-out cross-validation: the closed forms it rests on, and its values against
exact answers (conjugate closed forms, quadrature, a refit of every group)."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

import exact
import loo
from common import load_module, read_datatree, read_prepared
from conftest import K_THRESHOLD as THRESHOLD
from conftest import ROOT, SAMPLING, TARGET_ACCEPT

MODELS = ROOT / "scripts" / "models"


def model(name):
    return load_module(MODELS / f"{name}.py")


def table_of(trials, successes):
    return pd.DataFrame({"group": [f"g{i}" for i in range(len(trials))], "trials": trials, "successes": successes})


def draws(**values):
    return xr.Dataset({name: (("chain", "draw"), np.atleast_2d(v)) for name, v in values.items()})


def marginal(hierarchical, a, b, trials, successes):
    table = table_of(trials, successes)
    return hierarchical.betabinomial_loglik(a, b, hierarchical.collapsed_data(table)).eval()


@pytest.mark.parametrize("huge", [False, True])
def test_betabinomial_marginal_matches_scipy_in_both_forms(huge):
    """The histogram form (counts up to thousands) and the distinct-pairs form (counts up to
    2^31 - 1) are each the sum of Beta-Binomial log-probabilities, less sum_j log C(n_j, y_j)."""
    hierarchical = model("hierarchical")
    rng = np.random.default_rng(3)
    trials = rng.integers(1, 2**31 - 1 if huge else 400, size=500)
    successes = rng.binomial(trials, rng.beta(8, 2, size=500))
    assert hierarchical.histogram_is_cheaper(trials, successes) is (not huge)
    assert ("pair_weight" in hierarchical.collapsed_data(table_of(trials, successes))) is huge
    log_choose = special.gammaln(trials + 1.0) - special.gammaln(successes + 1.0) - special.gammaln(trials - successes + 1.0)
    for a, b in [(4.9, 0.97), (0.3, 12.0), (50.0, 50.0)]:
        expected = stats.betabinom.logpmf(successes, trials, a, b).sum() - log_choose.sum()
        assert marginal(hierarchical, a, b, trials, successes) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_both_marginal_forms_agree_on_the_same_data(monkeypatch):
    hierarchical = model("hierarchical")
    trials = np.array([5, 304, 9, 9, 120, 7, 9])
    successes = np.array([2, 301, 9, 5, 100, 0, 5])
    histogram = marginal(hierarchical, 2.0, 0.7, trials, successes)
    monkeypatch.setattr(hierarchical, "histogram_is_cheaper", lambda *_: False)
    assert marginal(hierarchical, 2.0, 0.7, trials, successes) == pytest.approx(histogram, rel=1e-12)


@pytest.mark.parametrize("trials,successes,form", [
    ([5, 30, 9], ([2, 30, 9], [0, 3, 1]), "successes_above"),
    # Pairs: two equal groups are one distinct pair in one data set, two in the other.
    ([300, 300, 9], ([2, 2, 9], [0, 3, 1]), "pair_weight"),
])
def test_swappable_shapes_do_not_depend_on_the_successes(trials, successes, form):
    """What lets one compiled model take another simulated data set of the same design
    (simulation-based calibration); the sum is unchanged."""
    hierarchical = model("hierarchical")
    one, other = (hierarchical.collapsed_data(table_of(np.array(trials), s), swappable=True) for s in successes)
    assert form in one and {k: v.shape for k, v in one.items()} == {k: v.shape for k, v in other.items()}
    for s in successes:
        table = table_of(np.array(trials), np.array(s))
        swapped = hierarchical.betabinomial_loglik(2.0, 0.7, hierarchical.collapsed_data(table, swappable=True)).eval()
        assert swapped == pytest.approx(marginal(hierarchical, 2.0, 0.7, np.array(trials), np.array(s)), rel=1e-12)


@pytest.mark.parametrize("scale", [1, 100_000])
def test_hierarchical_group_likelihood_is_beta_binomial(scale):
    """Both ways of computing it (a table of log sums, or betaln for counts in the millions)."""
    rng = np.random.default_rng(scale)
    trials = rng.integers(1, 300, size=200) * scale
    successes = rng.binomial(trials, 0.8)
    posterior = draws(alpha=rng.gamma(5, size=(2, 30)), beta=rng.gamma(1, size=(2, 30)))
    got = model("hierarchical").group_log_likelihood(posterior, table_of(trials, successes))
    assert got.shape == (2, 30, 200)
    expected = stats.betabinom.logpmf(successes, trials, posterior["alpha"].values[..., None], posterior["beta"].values[..., None])
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_conjugate_models_state_their_exact_leave_one_group_out_values():
    trials, successes = np.array([5, 304, 9]), np.array([2, 301, 9])
    table = table_of(trials, successes)
    np.testing.assert_allclose(model("no_pooling").exact_loo(table), stats.betabinom.logpmf(successes, trials, 0.5, 0.5))
    # Full pooling without group j: Beta(1/2 + other successes, 1/2 + other failures).
    by_hand = [stats.betabinom.logpmf(successes[j], trials[j], 0.5 + np.delete(successes, j).sum(),
                                      0.5 + np.delete(trials - successes, j).sum()) for j in range(3)]
    np.testing.assert_allclose(model("full_pooling").exact_loo(table), by_hand)


# Full pooling whose new group is over-dispersed: its likelihood is Beta-Binomial.
BETA_BINOMIAL_NEW_GROUP = """
import pymc as pm


def build(data):
    with pm.Model(coords={"group": data["group"].tolist()}) as model:
        theta = pm.Beta("theta", alpha=0.5, beta=0.5)
        pm.Binomial("y", n=data["trials"].to_numpy(), p=theta, observed=data["successes"].to_numpy(), dims="group")
    return model


def new_group(model, trials):
    theta = pm.Deterministic("theta_new", model["theta"])
    return pm.BetaBinomial("y_new", n=trials, alpha=10 * theta, beta=10 * (1 - theta))
"""


@pytest.mark.parametrize("likelihood", ["binomial", "beta-binomial"])
def test_without_a_closed_form_a_left_out_group_is_scored_by_the_models_new_group(likelihood, tmp_path):
    """loo.predictive_log_likelihood, for a refit of a model file without
    group_log_likelihood: y_j under new_group()'s own likelihood, at every posterior draw."""
    if likelihood == "binomial":
        module = model("full_pooling")
    else:
        (tmp_path / "overdispersed_new_group.py").write_text(BETA_BINOMIAL_NEW_GROUP)
        module = load_module(tmp_path / "overdispersed_new_group.py")
    assert not hasattr(module, "group_log_likelihood")
    theta = np.random.default_rng(4).beta(8, 2, size=(2, 50))
    fitted, left_out = table_of([5, 304], [2, 301]), table_of([9, 12], [9, 4])
    got = loo.predictive_log_likelihood(module, draws(theta=theta), fitted, left_out, seed=1)
    n, y, theta = np.array([9, 12]), np.array([9, 4]), theta[..., None]
    if likelihood == "binomial":
        expected = stats.binom.logpmf(y, n, theta)
    else:
        expected = stats.betabinom.logpmf(y, n, 10 * theta, 10 * (1 - theta))
    assert got.shape == (2, 50, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def fine_grid(m, s, n, y):
    z = np.linspace(-40, 40, 400_001)
    log_f = stats.binom.logpmf(y, n, special.expit(m + s * z)) + stats.norm.logpdf(z)
    return special.logsumexp(log_f) + np.log(z[1] - z[0])


def test_logit_group_likelihood_matches_numerical_integration():
    rng = np.random.default_rng(0)
    trials = rng.integers(1, 400, 20)
    successes = rng.binomial(trials, rng.uniform(0, 1, 20))
    successes[:2], successes[2:4] = trials[:2], 0  # all successes, all failures
    m = rng.normal(0, 2, 12)
    s = np.exp(rng.uniform(-4, 2.3, 12))  # spreads from 0.02 to 10
    got = model("hierarchical_logit").group_log_likelihood(draws(m=[m], s=[s]), table_of(trials, successes))[0]
    reference = np.array([[fine_grid(a, b, n, y) for n, y in zip(trials, successes, strict=True)] for a, b in zip(m, s, strict=True)])
    error = np.abs(got - reference)
    # Within 1e-4 where the posterior is (s < 3 on SpaceX); up to 0.03 in the far tail.
    assert error[s < 3].max() < 1e-4
    assert error.max() < 0.03


# --------------------------------------------------------------------------------------
# Through the real sampler, on the SpaceX data


@pytest.fixture(scope="module")
def spacex(spacex_prepared):
    table = read_prepared(spacex_prepared)
    return table, table["trials"].to_numpy(), table["successes"].to_numpy()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "reference"), [("no_pooling", exact.no_pooling_loo), ("full_pooling", exact.full_pooling_loo)])
def test_conjugate_values_are_exact(cross_validated, spacex, name, reference):
    _, trials, successes = spacex
    result = cross_validated[name][1]
    assert set(result["source"].values) == {"closed form"}
    np.testing.assert_allclose(result["elpd_i"].values, reference(trials, successes), rtol=1e-12)


@pytest.mark.slow
def test_hierarchical_matches_quadrature(cross_validated, spacex):
    _, trials, successes = spacex
    reference = [exact.hierarchical_loo(trials, successes, j) for j in range(len(trials))]
    result = cross_validated["hierarchical"][1]
    # PSIS values within 0.05; those above the Pareto k threshold come by quadrature itself.
    assert "quadrature" in set(result["source"].values)  # Falcon 9's k is above 0.7
    tolerance = np.where(result["source"] == "quadrature", 1e-6, 0.05)
    assert (np.abs(result["elpd_i"].values - reference) <= tolerance).all()


def test_the_collapsed_model_gives_each_left_out_value_by_quadrature(spacex):
    """hierarchical.exact_group_loo: its own grids, against tests/exact.py's (a finer grid
    of the posterior without the group, through betaln)."""
    table, trials, successes = spacex
    module = load_module(MODELS / "hierarchical.py")
    reference = [exact.hierarchical_loo(trials, successes, j) for j in range(len(trials))]
    np.testing.assert_allclose(module.exact_group_loo(table, [0, 1, 2, 3]), reference, atol=1e-6)
    many = table_of(np.arange(5, 405, 4), np.arange(5, 405, 4) * 3 // 4)  # 100 groups: the histogram form
    assert "successes_above" in module.collapsed_data(many)
    n, y = many["trials"].to_numpy(), many["successes"].to_numpy()
    np.testing.assert_allclose(module.exact_group_loo(many, [0, 57]), [exact.hierarchical_loo(n, y, j, points=400) for j in (0, 57)],
                               atol=1e-6)


@pytest.mark.slow
def test_no_value_rests_on_a_high_pareto_k(cross_validated):
    for name, (_, result) in cross_validated.items():
        unreliable = (result["source"] == "psis") & (result["pareto_k"] > THRESHOLD)
        assert not unreliable.any(), name
    # Integrating theta out is what makes PSIS work: most groups need no refit.
    hierarchical = cross_validated["hierarchical"][1]
    assert (hierarchical["source"] == "psis").sum() >= 3


@pytest.mark.slow
@pytest.mark.parametrize("closed_form", [True, False], ids=["group likelihood", "new group drawn"])
def test_a_refit_of_every_group_agrees_with_quadrature(spacex_traces, spacex_prepared, spacex, tmp_path, closed_form):
    """Brute force: with a threshold below every k, each group is refitted (reloo). A model
    file without `group_log_likelihood` is refitted too: its left-out group's likelihood is
    averaged over the model's own new group (loo.predictive_log_likelihood)."""
    _, trials, successes = spacex
    reference = [exact.hierarchical_loo(trials, successes, j) for j in range(len(trials))]
    # Without exact_group_loo, which would give every value by quadrature instead.
    source = (MODELS / "hierarchical.py").read_text().replace("def exact_group_loo(", "def _hidden_exact_group_loo(")
    if not closed_form:
        assert "def group_log_likelihood(" in source
        source = source.replace("def group_log_likelihood(", "def _hidden_group_log_likelihood(")
    model_file = tmp_path / "hierarchical_refitted.py"
    model_file.write_text(source)
    assert not hasattr(load_module(model_file), "exact_group_loo")
    assert hasattr(load_module(model_file), "group_log_likelihood") == closed_form
    trace = spacex_traces["hierarchical"]
    if not closed_form:
        # A model file without group_log_likelihood stores the pointwise log-likelihood
        # that its PSIS needs: its own trace.
        import sample

        trace = tmp_path / "trace.nc"
        sample.main(str(spacex_prepared), str(model_file), str(trace), dataset="spacex", model="hierarchical",
                    sampling=SAMPLING, settings={"target_accept": TARGET_ACCEPT["hierarchical"]}, seed=1002, threads=2)
        assert "group" in read_datatree(trace)["log_likelihood"]["y"].dims
    path = tmp_path / "hierarchical.nc"
    loo.main(str(spacex_prepared), str(model_file), str(trace), str(path),
             sampling=SAMPLING, settings={"target_accept": TARGET_ACCEPT["hierarchical"]}, seed=5,
             k_threshold=-1.0, max_refits=10)
    result = read_datatree(path)["loo"]
    assert set(result["source"].values) == {"refit"}
    # Within 4 of each refit's own Monte Carlo error (and the grid's 0.005).
    error = np.abs(result["elpd_i"].values - reference)
    assert (error <= 4 * result["refit_mcse"].values + 0.005).all(), (error, result["refit_mcse"].values)


@pytest.mark.parametrize(("chains", "draws_per_chain", "r_eff"), [(4, 1000, 1.0), (2, 300, 0.6), (1, 100, 1.0)])
def test_vectorised_psis_equals_arviz(chains, draws_per_chain, r_eff):
    """scripts/psis.py gives arviz-stats' PSIS-LOO values, from good to very bad Pareto k."""
    import warnings

    import arviz as az

    import psis

    rng = np.random.default_rng(chains * draws_per_chain)
    groups = 150
    loglik = -np.abs(rng.standard_t(3, size=(chains, draws_per_chain, groups))) * rng.uniform(0.05, 3, groups) - 1
    tree = xr.DataTree.from_dict({
        "/posterior": draws(a=rng.normal(size=(chains, draws_per_chain))),
        "/log_likelihood": xr.Dataset({"y": (("chain", "draw", "group"), loglik)}),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = az.loo(tree, pointwise=True, reff=r_eff)
    rows = psis.by_observation(loglik)
    elpd, pareto_k = psis.loo_pointwise(rows, r_eff)
    p = psis.lppd(rows) - elpd
    assert pareto_k.min() < 0.5 and pareto_k.max() > 1  # both regimes are exercised
    np.testing.assert_allclose(elpd, reference.elpd_i.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pareto_k, reference.pareto_k.values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p.sum(), reference.p, rtol=1e-10)


def test_the_logit_model_gives_each_left_out_value_by_quadrature(spacex):
    """hierarchical_logit.exact_group_loo against brute force: z by 160-point (non-adaptive)
    Gauss-Hermite, (m, log s) on a fixed 240 x 240 grid; the brute force's own error for
    Falcon 9 (304 launches: a narrow integrand in z) is a few 1e-4."""
    from scipy import special, stats

    table, trials, successes = spacex
    module = load_module(MODELS / "hierarchical_logit.py")
    z, w = special.roots_hermitenorm(160)
    m, log_s = np.meshgrid(np.linspace(-6, 8, 240), np.linspace(-7, 2.5, 240), indexing="ij")
    prior = stats.norm(scale=1.5).logpdf(m) + stats.halfnorm(scale=1.5).logpdf(np.exp(log_s)) + log_s
    eta = m[..., None] + np.exp(log_s)[..., None] * z
    groups = np.array([special.logsumexp(stats.binom.logpmf(y, n, special.expit(eta)) + np.log(w / w.sum()), axis=-1)
                       for n, y in zip(trials, successes, strict=True)])
    total = prior + groups.sum(axis=0)
    reference = [special.logsumexp(total) - special.logsumexp(total - groups[j]) for j in range(len(trials))]
    np.testing.assert_allclose(module.exact_group_loo(table, [0, 1, 2, 3]), reference, atol=5e-4)
    assert module.exact_group_loo(table_of(np.full(201, 10), np.full(201, 5)), [0]) is None  # beyond: refits


@pytest.mark.slow
def test_groups_taken_in_blocks_give_the_same_values(spacex_traces, spacex_prepared, tmp_path, monkeypatch):
    """At many groups the log-likelihood is made and smoothed a block of groups at a time;
    every value is that of one pass over all groups, bitwise."""
    for name in ("hierarchical", "no_pooling"):
        model_file = str(MODELS / f"{name}.py")
        paths = {}
        for label, block_values in (("whole", loo.BLOCK_VALUES), ("blocks", 8000)):  # 8,000 / 8,000 draws: one group a block
            monkeypatch.setattr(loo, "BLOCK_VALUES", block_values)
            paths[label] = tmp_path / f"{name}_{label}.nc"
            loo.main(str(spacex_prepared), model_file, str(spacex_traces[name]), str(paths[label]), sampling=SAMPLING,
                     settings={}, seed=5, k_threshold=THRESHOLD, max_refits=10)
        whole, blocks = read_datatree(paths["whole"])["loo"], read_datatree(paths["blocks"])["loo"]
        for variable in whole.data_vars:
            np.testing.assert_array_equal(whole[variable].values, blocks[variable].values)
