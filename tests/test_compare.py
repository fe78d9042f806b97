"""Model comparison: PSIS-LOO against exact leave-one-group-out answers where it can be trusted."""

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import compare
from common import read_datatree, read_prepared

pytestmark = pytest.mark.slow
THRESHOLD = 0.7


def exact_elpd(model, table):
    """log p(y_j | y_-j) per group: Beta-binomial, since both models are conjugate."""
    n, y = table["trials"].to_numpy(), table["successes"].to_numpy()
    if model == "no_pooling":
        # Leaving group j out leaves its theta with the Beta(1/2, 1/2) prior.
        return stats.betabinom.logpmf(y, n, 0.5, 0.5)
    a = 0.5 + y.sum() - y
    b = 0.5 + (n - y).sum() - (n - y)
    return stats.betabinom.logpmf(y, n, a, b)


@pytest.fixture(scope="module")
def compared(spacex_traces):
    traces = {name: read_datatree(path) for name, path in spacex_traces.items()}
    return compare.compare(traces, k_threshold=THRESHOLD), traces


def test_psis_loo_matches_exact_where_pareto_k_is_low(compared, spacex_prepared):
    import arviz as az

    (table, flagged), traces = compared
    elpd = az.loo(traces["full_pooling"], pointwise=True)
    exact = exact_elpd("full_pooling", read_prepared(spacex_prepared))
    k = elpd.pareto_k.values
    # Below k = 0.5 importance sampling is reliable: it must then agree with the exact answer.
    trusted = k < 0.5
    assert trusted.sum() >= 2
    np.testing.assert_allclose(elpd.elpd_i.values[trusted], exact[trusted], atol=0.05)
    assert flagged["full_pooling"] == [str(g) for g, value in zip(elpd.pareto_k["group"].values, k) if value > THRESHOLD]
    assert table.loc["full_pooling", "pareto_k_above"] == (k > THRESHOLD).sum()


def test_high_pareto_k_is_flagged_where_loo_fails(compared, spacex_prepared):
    """Leaving Falcon 9's 304 launches out changes no pooling's posterior from data to prior:
    importance sampling cannot bridge that, its estimate is far off, and it is flagged."""
    import arviz as az

    (_, flagged), traces = compared
    elpd = az.loo(traces["no_pooling"], pointwise=True)
    exact = exact_elpd("no_pooling", read_prepared(spacex_prepared))
    falcon9 = list(elpd.pareto_k["group"].values).index("Falcon 9")
    assert "Falcon 9" in flagged["no_pooling"]
    assert abs(elpd.elpd_i.values[falcon9] - exact[falcon9]) > 0.5


def test_table_ranks_models_and_weights_sum_to_one(compared, spacex_traces):
    table, _ = compared[0]
    assert set(table.index) == set(spacex_traces)
    assert list(table["rank"]) == list(range(len(spacex_traces)))
    assert table["elpd_diff"].iloc[0] == 0 and (table["elpd_diff"].iloc[1:] < 0).all()
    assert np.isclose(table["weight"].sum(), 1)
    # Full pooling gives Falcon 1 and Starship the fleet's rate; the data say otherwise.
    assert table.index[-1] == "full_pooling"


def test_main_writes_table_and_plot_and_names_high_k_groups(spacex_traces, tmp_path, caplog):
    names = list(spacex_traces)
    with caplog.at_level(logging.WARNING, logger="pipeline.compare"):
        compare.main([str(spacex_traces[n]) for n in names], str(tmp_path / "c.csv"), str(tmp_path / "c.png"), models=names, k_threshold=THRESHOLD)
    table = pd.read_csv(tmp_path / "c.csv", index_col="model")
    assert {"elpd", "se", "elpd_diff", "dse", "weight", "pareto_k_above"} <= set(table.columns)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flagged = [r.getMessage() for r in caplog.records if "Pareto k above" in r.getMessage()]
    assert len(flagged) == (table["pareto_k_above"] > 0).sum()
    assert all("Falcon" in message for message in flagged)
