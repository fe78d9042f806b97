"""A two-arm trial's likelihood with its baseline and effect integrated out
(scripts/two_arm.py), against a fine two-dimensional grid."""

import numpy as np
import pandas as pd
import pytest
from scipy import special

import two_arm
from conftest import ROOT

TRIALS = pd.read_csv(ROOT / "config" / "data" / "beta_blockers.csv").rename(columns={"trial": "group"})


def on_a_grid(row, mean, sd, baseline_sd):
    """log of the integral by the trapezoid rule on a fine grid (sd None: d = mean), wide
    enough for the baseline's prior tails: a trial with no events has its mass there."""
    design = [float(row[c]) for c in ("control_events", "control_trials", "treated_events", "treated_trials")]
    constant = two_arm.log_choose(design[0], design[1]) + two_arm.log_choose(design[2], design[3])
    b = np.linspace(-70, 50, 6001)
    if sd is None:
        f = two_arm._log_integrand(b, mean, design, None, None, baseline_sd)
        return constant + special.logsumexp(f) + np.log(b[1] - b[0])
    width = min(12 * sd, 40)  # the effect's prior, or the likelihood when the prior is wider
    d = np.linspace(mean - width, mean + width, 2401)
    grid_b, grid_d = np.meshgrid(b, d, indexing="ij")
    f = two_arm._log_integrand(grid_b, grid_d, design, mean, sd, baseline_sd)
    return constant + special.logsumexp(f) + np.log((b[1] - b[0]) * (d[1] - d[0]))


@pytest.mark.parametrize("mean,sd", [(-0.25, 0.12), (-0.25, 0.005), (0.4, 1.5), (0.0, 10.0), (-0.25, None)])
def test_the_integrated_likelihood_matches_a_fine_grid(mean, sd):
    table = TRIALS.copy()
    table.loc[0, "control_events"] = 0  # a zero cell: no continuity correction, one-sided likelihood
    table.loc[1, "treated_events"] = table.loc[1, "treated_trials"]  # every patient an event
    table.loc[2, ["control_events", "treated_events"]] = 0  # no event in either arm
    table.loc[4, "control_events"] = table.loc[4, "control_trials"]  # only events in both arms
    table.loc[4, "treated_events"] = table.loc[4, "treated_trials"]
    got = two_arm.log_integrated_likelihood(table, np.array([mean]), None if sd is None else np.array([sd]), baseline_sd=10.0)
    # Trials with no event or only events in an arm: 4e-4; the others 1e-5 (under no
    # pooling's vague prior on the effect, 1e-3 and 1e-4).
    edge, inner = (1e-3, 1e-4) if sd == 10.0 else (4e-4, 1e-5)
    for j, tolerance in ((0, edge), (1, edge), (2, edge), (4, edge), (3, inner), (6, inner), (18, inner)):
        assert got[0, j] == pytest.approx(on_a_grid(table.iloc[j], mean, sd, 10.0), abs=tolerance), j


def test_draws_keep_their_shape_and_blocks_do_not_change_the_values(monkeypatch):
    rng = np.random.default_rng(0)
    mean, sd = rng.normal(-0.25, 0.06, (2, 30)), np.abs(rng.normal(0.1, 0.05, (2, 30)))
    whole = two_arm.log_integrated_likelihood(TRIALS, mean, sd, baseline_sd=10.0)
    assert whole.shape == (2, 30, 22) and np.isfinite(whole).all()
    monkeypatch.setattr(two_arm, "BLOCK", 50)  # a few draws per block
    np.testing.assert_array_equal(two_arm.log_integrated_likelihood(TRIALS, mean, sd, baseline_sd=10.0), whole)
