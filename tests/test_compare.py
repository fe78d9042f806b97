"""Model comparison from each model's leave-one-group-out values (tests/test_loo.py checks
those against exact answers)."""

import logging

import numpy as np
import pandas as pd
import pytest

import compare
from common import write_datatree
from conftest import K_THRESHOLD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compared(cross_validated):
    return compare.compare({name: result for name, (_, result) in cross_validated.items()}, k_threshold=K_THRESHOLD)


def test_table_ranks_models_weights_sum_to_one_and_full_pooling_is_last(compared, cross_validated):
    table, _ = compared
    assert set(table.index) == set(cross_validated)
    assert list(table["rank"]) == list(range(len(cross_validated)))
    assert table["elpd_diff"].iloc[0] == 0 and (table["elpd_diff"].iloc[1:] < 0).all()
    assert np.isclose(table["weight"].sum(), 1)
    # Full pooling gives Falcon 1 and Starship the fleet's rate; the data say otherwise.
    assert table.index[-1] == "full_pooling"


def test_elpd_is_the_sum_of_the_pointwise_values(compared, cross_validated):
    table, _ = compared
    for name, (_, result) in cross_validated.items():
        assert table.loc[name, "elpd"] == pytest.approx(float(result["elpd_i"].sum()))
        n = result.sizes["group"]
        assert table.loc[name, "se"] == pytest.approx(np.sqrt(n * np.var(result["elpd_i"].values, ddof=1)))


def test_table_says_where_values_come_from_and_none_is_unreliable(compared, cross_validated):
    table, unreliable = compared
    assert (table["pareto_k_above"] == 0).all() and not any(unreliable.values())
    for name, (_, result) in cross_validated.items():
        refitted = [str(g) for g, s in zip(result["group"].values, result["source"].values, strict=True) if s == "refit"]
        assert table.loc[name, "refits"] == len(refitted)
        assert (table.loc[name, "refitted"] if isinstance(table.loc[name, "refitted"], str) else "") == ";".join(refitted)
    assert table.loc["no_pooling", "closed_form"] == 4


def test_main_writes_table_and_plot(cross_validated, tmp_path):
    names = list(cross_validated)
    compare.main([str(cross_validated[n][0]) for n in names], str(tmp_path / "c.csv"), str(tmp_path / "c.png"),
                 models=names, k_threshold=K_THRESHOLD)
    table = pd.read_csv(tmp_path / "c.csv", index_col="model")
    assert {"elpd", "se", "elpd_diff", "dse", "weight", "refits", "refitted", "pareto_k_above"} <= set(table.columns)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_values_left_to_psis_above_the_threshold_are_counted_and_named(cross_validated, tmp_path, caplog):
    """When more groups need a refit than compare.max_refits allows, their PSIS values stay,
    and the table and the log say so."""
    import xarray as xr

    _, result = cross_validated["hierarchical"]
    doubtful = result.copy(deep=True)
    doubtful["source"] = ("group", np.array(["psis"] * doubtful.sizes["group"]))
    doubtful["pareto_k"] = ("group", np.array([0.2, 1.1, 0.3, 0.9]))
    write_datatree(xr.DataTree.from_dict({"/loo": doubtful}), tmp_path / "h.nc")
    with caplog.at_level(logging.WARNING, logger="pipeline.compare"):
        compare.main([str(tmp_path / "h.nc"), str(cross_validated["no_pooling"][0])], str(tmp_path / "c.csv"),
                     str(tmp_path / "c.png"), models=["hierarchical", "no_pooling"], k_threshold=K_THRESHOLD)
    table = pd.read_csv(tmp_path / "c.csv", index_col="model")
    assert table.loc["hierarchical", "pareto_k_above"] == 2
    assert any("Falcon 9, Starship" in r.getMessage() for r in caplog.records)
