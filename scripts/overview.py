"""What the report's first page says of a data set: the best and the worst groups under the
model that predicts best (leave-one-group-out), with their rank intervals, and every
model whose posterior is sensitive to its priors. Written as JSON; workflow/rules/common.smk
reads it into the report's template (the page is rendered from the config alone).

A model that gives every group the same theta (full pooling) cannot rank them: if it
predicts best, the ranks shown are those of the best-predicting model that tells groups
apart (`ranked_by`), and the page says so."""

import json

import numpy as np

from common import atomic_path

SHOWN = 3  # groups at each end


def summary(comparison, ranks: dict, sensitivity: dict, shown: int = SHOWN) -> dict:
    """comparison: the comparison table (best model first); ranks and sensitivity: per model."""
    best_model = str(comparison.index[0])
    telling_apart = [str(m) for m in comparison.index if np.ptp(ranks[str(m)]["p_best"].to_numpy()) > 1e-9]
    ranked_by = telling_apart[0] if telling_apart else best_model
    table = ranks[ranked_by].sort_values("rank_mean", kind="stable")
    best_count = min(shown, len(table) // 2) if len(table) > 1 else 1
    columns = ["group", "rank_mean", "rank_lb", "rank_ub", "p_best", "p_worst"]

    def rows(frame):
        return [{key: (str(value) if key == "group" else round(float(value), 3)) for key, value in row.items()}
                for row in frame[columns].to_dict("records")]

    flagged = {}
    for model, frame in sensitivity.items():
        warned = frame[frame["diagnosis"].fillna("").str.len() > 0]
        if len(warned):
            flagged[model] = [f"{parameter}: {diagnosis.replace('potential ', '')}"
                              for parameter, diagnosis in warned["diagnosis"].items()]
    return {
        "best_model": best_model,
        "ranked_by": ranked_by,
        "groups": len(table),
        "best": rows(table.head(best_count)),
        "worst": rows(table.tail(min(shown, len(table) - best_count)).iloc[::-1]),
        "sensitivity": flagged,
    }


def main(comparison: str, ranks: list[str], sensitivity: list[str], overview: str, *, models: list[str]) -> None:
    import pandas as pd

    compared = pd.read_csv(comparison, index_col="model")
    rank_tables = {m: pd.read_csv(p, dtype={"group": str}, keep_default_na=False) for m, p in zip(models, ranks, strict=True)}
    sensitive = {m: pd.read_csv(p, index_col="parameter", keep_default_na=False) for m, p in zip(models, sensitivity, strict=True)}
    with atomic_path(overview) as tmp:
        tmp.write_text(json.dumps(summary(compared, rank_tables, sensitive), indent=2) + "\n")
