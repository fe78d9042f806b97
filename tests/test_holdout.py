"""Held-out scoring (scripts/holdout.py, prepare_holdout) against the exact answers of the
conjugate models, on Efron and Morris's baseball data."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

import holdout
import prepare_data
from common import UserError, load_module
from conftest import ROOT

BASEBALL = ROOT / "config" / "data" / "efron_morris.csv"
COLUMNS = {"group": "player", "trials": "at_bats", "successes": "hits"}
LATER = {"group": "player", "trials": "remaining_at_bats", "successes": "remaining_hits"}
DRAWS = 200_000


@pytest.fixture(scope="module")
def baseball():
    early = pd.DataFrame(prepare_data.validate(BASEBALL, **COLUMNS), columns=["group", "trials", "successes"])
    rows, without = prepare_data.validate_later(BASEBALL, **LATER)
    assert without == 0
    return early, pd.DataFrame(rows, columns=["group", "trials", "successes"])


def posterior_of(theta, groups):
    """A posterior Dataset of exact draws: (1 chain, draws) or (1 chain, draws, group)."""
    if theta.ndim == 1:
        return xr.Dataset({"theta": (("chain", "draw"), theta[None])})
    return xr.Dataset({"theta": (("chain", "draw", "group"), theta[None])}, coords={"group": groups})


def exact_scores(later, a, b):
    """lpd, squared error and coverage of the Beta(a_j, b_j) posteriors, exactly: the later
    successes' predictive is Beta-Binomial(n'_j, a_j, b_j)."""
    n, y = later["trials"].to_numpy(), later["successes"].to_numpy()
    result = {"lpd": stats.betabinom.logpmf(y, n, a, b).sum(),
              "squared_error": ((a / (a + b) - y / n) ** 2).sum()}
    for probability in holdout.COVERAGES:
        tail = (1 - probability) / 2
        low, high = stats.betabinom.ppf(tail, n, a, b), stats.betabinom.ppf(1 - tail, n, a, b)
        result[f"coverage_{round(probability * 100)}"] = ((y >= low) & (y <= high)).mean()
    return result


@pytest.mark.parametrize("model", ["no_pooling", "full_pooling"])
def test_scores_of_the_conjugate_models_are_exact(baseball, model):
    early, later = baseball
    n, y = early["trials"].to_numpy(), early["successes"].to_numpy()
    rng = np.random.default_rng(11)
    if model == "no_pooling":
        a, b = 0.5 + y, 0.5 + n - y
        theta = rng.beta(a, b, size=(DRAWS, len(early)))
    else:
        a, b = np.full(len(early), 0.5 + y.sum()), np.full(len(early), 0.5 + (n - y).sum())
        theta = rng.beta(a[0], b[0], size=DRAWS)
    module = load_module(ROOT / "scripts" / "models" / f"{model}.py")
    scores = holdout.score(module, posterior_of(theta, early["group"].tolist()), later, seed=1)
    reference = exact_scores(later, a, b)
    # The Monte Carlo error of each group's log mean likelihood, by the delta method.
    loglik = stats.binom.logpmf(later["successes"].to_numpy(), later["trials"].to_numpy(),
                                theta if theta.ndim == 2 else theta[:, None])
    ratio = np.exp(loglik - logsumexp(loglik, axis=0))
    lpd_se = np.sqrt(((ratio * DRAWS - 1) ** 2).mean(axis=0) / DRAWS)
    assert abs(scores["lpd"] - reference["lpd"]) <= 4 * np.sqrt((lpd_se**2).sum())
    means_se = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)) / DRAWS)
    rate = later["successes"].to_numpy() / later["trials"].to_numpy()
    slopes = 2 * (a / (a + b) - rate) * means_se  # the delta method, per group's mean
    # No pooling: independent means; full pooling: one mean, its errors add up.
    error_se = np.sqrt((slopes**2).sum()) if model == "no_pooling" else abs(slopes.sum())
    assert abs(scores["squared_error"] - reference["squared_error"]) <= 4 * error_se + 1e-12
    for probability in holdout.COVERAGES:
        key = f"coverage_{round(probability * 100)}"
        assert scores[key] == pytest.approx(reference[key]), key


def test_later_columns_are_validated_with_one_line_errors(tmp_path):
    source = tmp_path / "later.csv"
    source.write_text("player,n,y,later_n,later_y\na,10,3,20,5\nb,10,4,,\nc,10,5,0,0\n")
    rows, without = prepare_data.validate_later(source, "player", "later_n", "later_y")
    assert rows == [("a", 20, 5)] and without == 2
    for content, message in [
        ("player,n,y,later_n,later_y\na,10,3,20,\n", "row 1 (line 2), column 'later_y': missing value"),
        ("player,n,y,later_n,later_y\na,10,3,20,21\n", "column 'later_y': 21 successes exceed 20 trials"),
        ("player,n,y,later_n,later_y\na,10,3,-2,0\n", "column 'later_n': -2 is negative"),
        ("player,n,y,later_n,later_y\na,10,3,0,1\n", "column 'later_y': 1 successes exceed 0 trials"),
        ("player,n,y,later_n,later_y\na,10,3,,\n", "no group has later data"),
        ("player,n,y,later,later_y\na,10,3,4,1\n", "no column 'later_n'"),
    ]:
        source.write_text(content)
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            prepare_data.validate_later(source, "player", "later_n", "later_y")
        assert str(error.value).startswith(str(source)) and "\n" not in str(error.value)
