"""Diagnostics on synthetic traces whose problems are known in advance."""

import json

import numpy as np
import pytest
import xarray as xr

import diagnose
from common import UserError, write_datatree

THRESHOLDS = {"max_rhat": 1.01, "min_ess": 400, "max_divergences": 0, "min_bfmi": 0.3}


def synthetic_trace(path, *, chains=4, draws=1000, shift=0.0, divergences=0, nan=False, seed=0):
    """Independent normal draws: a perfect sampler, unless `shift` moves chain 0 away."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(chains, draws, 3))
    theta[0] += shift
    if nan:
        theta[1, 5, 0] = np.nan
    diverging = np.zeros((chains, draws), bool)
    diverging.flat[:divergences] = True
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "group": ["a", "b", "c"]}
    posterior = xr.Dataset({"theta": (("chain", "draw", "group"), theta)}, coords=coords)
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), diverging), "energy": (("chain", "draw"), rng.normal(size=(chains, draws)))},
        coords={k: coords[k] for k in ("chain", "draw")},
    )
    write_datatree(xr.DataTree.from_dict({"/posterior": posterior, "/sample_stats": stats}), path)
    return path


SENSITIVE = "parameter,prior,likelihood,diagnosis\nalpha,0.30,0.03,potential strong prior / weak likelihood\nmu,0.01,0.09,\n"
CALM = "parameter,prior,likelihood,diagnosis\nalpha,0.01,0.09,\n"


def run(tmp_path, trace, strict=False, sensitivity=CALM):
    summary, report = tmp_path / "summary.csv", tmp_path / "diagnostics.json"
    (tmp_path / "sensitivity.csv").write_text(sensitivity)
    diagnose.main(str(trace), str(tmp_path / "sensitivity.csv"), str(summary), str(report), thresholds=THRESHOLDS,
                  ci_prob=0.9, strict=strict)
    return summary, json.loads(report.read_text())


def test_healthy_trace_passes(tmp_path):
    summary, report = run(tmp_path, synthetic_trace(tmp_path / "t.nc"))
    assert report["ok"] is True and report["problems"] == []
    assert report["divergences"] == 0
    assert report["max_rhat"] < 1.01
    assert len(report["bfmi"]) == 4
    assert report["thresholds"] == THRESHOLDS
    header = summary.read_text().splitlines()[0].split(",")
    assert header == ["parameter", "mean", "sd", "eti90_lb", "eti90_ub", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
    assert summary.read_text().count("theta[") == 3


def test_unmixed_chain_and_divergences_are_reported(tmp_path, caplog):
    trace = synthetic_trace(tmp_path / "t.nc", shift=3.0, divergences=7)
    _, report = run(tmp_path, trace)
    assert report["ok"] is False
    assert report["divergences"] == 7
    assert report["max_rhat"] > 1.1
    assert any("R-hat" in p for p in report["problems"])
    assert any("7 divergent transitions" in p for p in report["problems"])
    assert "R-hat" in caplog.text


def test_strict_mode_fails_and_writes_nothing(tmp_path):
    trace = synthetic_trace(tmp_path / "t.nc", shift=3.0)
    with pytest.raises(UserError, match="diagnostics failed"):
        run(tmp_path, trace, strict=True)
    assert not (tmp_path / "summary.csv").exists() and not (tmp_path / "diagnostics.json").exists()


def test_strict_mode_passes_a_healthy_trace(tmp_path):
    _, report = run(tmp_path, synthetic_trace(tmp_path / "t.nc"), strict=True)
    assert report["ok"]


def test_low_ess_is_reported(tmp_path):
    _, report = run(tmp_path, synthetic_trace(tmp_path / "t.nc", chains=2, draws=100))
    assert any(p.startswith("ESS bulk") for p in report["problems"])


def test_non_finite_draws_always_fail(tmp_path):
    trace = synthetic_trace(tmp_path / "t.nc", nan=True)
    with pytest.raises(UserError, match="non-finite values in posterior/theta"):
        run(tmp_path, trace)
    assert not (tmp_path / "diagnostics.json").exists()


def test_truncated_trace_is_named(tmp_path):
    trace = synthetic_trace(tmp_path / "t.nc")
    data = trace.read_bytes()
    trace.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"t\.nc: cannot be read as NetCDF.*--forcerun"):
        run(tmp_path, trace)


def test_a_prior_sensitivity_warning_is_a_problem_but_not_a_strict_failure(tmp_path):
    """The sensitivity check's warning (scripts/sensitivity.py) is named among the problems,
    but it is a finding about the model, not a failure of the sampler: strict passes."""
    _, report = run(tmp_path, synthetic_trace(tmp_path / "t.nc"), strict=True, sensitivity=SENSITIVE)
    assert report["ok"] is False
    assert report["prior_sensitivity"] == {"alpha": "potential strong prior / weak likelihood", "mu": ""}
    assert report["problems"] == ["prior sensitivity of alpha: strong prior / weak likelihood (prior 0.300, likelihood 0.030)"]
