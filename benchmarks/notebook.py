"""The article's notebook as one script: the baseline the pipeline is measured against.

Same models, settings and figures as `../shared/seed/hierarchical-models.md`, run one
after the other in one process with PyMC's default `pm.sample` (which, with nutpie
installed, is nutpie), written with ArviZ 1.x's plotting functions. Figures go to the
directory given as the only argument.

    python benchmarks/notebook.py OUTPUT_DIR
"""

import sys
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pymc as pm
import scipy.stats as st
from matplotlib import pyplot as plt


def save(collection_or_figure, path):
    figure = getattr(collection_or_figure, "viz", None)
    figure = figure["figure"].item() if figure is not None else collection_or_figure
    figure.savefig(path)
    plt.close("all")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    df_spacex = pd.DataFrame(
        {"Mission": ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"], "N": [5, 304, 9, 9], "y": [2, 301, 9, 5]}
    )
    df_spacex["mu"] = df_spacex["y"] / df_spacex["N"]
    rng = np.random.default_rng(42)

    with pm.Model() as no_pooling:
        theta = pm.Beta("theta", alpha=1 / 2, beta=1 / 2, shape=len(df_spacex["N"].values))
        pm.Binomial("y", p=theta, n=df_spacex["N"].values, observed=df_spacex["y"].values)
    pm.model_to_graphviz(no_pooling).render(out / "no_pooling_graph", format="svg", cleanup=True)
    with no_pooling:
        trace_no_pooling = pm.sample(5000, tune=5000, chains=4, random_seed=rng, target_accept=0.95, progressbar=False)
    save(az.plot_trace_dist(trace_no_pooling), out / "no_pooling_trace.png")
    save(az.plot_forest(trace_no_pooling), out / "no_pooling_forest.png")

    with pm.Model() as full_pooling:
        theta = pm.Beta("theta", alpha=1 / 2, beta=1 / 2)
        pm.Binomial("y", p=theta, n=df_spacex["N"].values, observed=df_spacex["y"].values)
    pm.model_to_graphviz(full_pooling).render(out / "full_pooling_graph", format="svg", cleanup=True)
    with full_pooling:
        trace_full_pooling = pm.sample(5000, tune=5000, chains=4, random_seed=rng, progressbar=False)
    save(az.plot_trace_dist(trace_full_pooling), out / "full_pooling_trace.png")
    save(az.plot_forest(trace_full_pooling), out / "full_pooling_forest.png")

    with pm.Model() as hierarchical:
        alpha = pm.HalfNormal("alpha", sigma=10)
        beta = pm.HalfNormal("beta", sigma=10)
        pm.Deterministic("mu", alpha / (alpha + beta))
        theta = pm.Beta("theta", alpha=alpha, beta=beta, shape=len(df_spacex["N"].values))
        pm.Binomial("y", p=theta, n=df_spacex["N"].values, observed=df_spacex["y"].values)
    pm.model_to_graphviz(hierarchical).render(out / "hierarchical_graph", format="svg", cleanup=True)
    with hierarchical:
        trace_hierarchical = pm.sample(5000, tune=5000, chains=4, target_accept=0.98, random_seed=rng, progressbar=False)
    save(az.plot_trace_dist(trace_hierarchical), out / "hierarchical_trace.png")
    save(az.plot_forest(trace_hierarchical, var_names="theta"), out / "hierarchical_forest.png")

    with hierarchical:
        pm.Beta("th_new", alpha=alpha, beta=beta)
        ppc_new = pm.sample_posterior_predictive(trace_hierarchical, var_names=["th_new"], progressbar=False)
    fig = plt.figure()
    ax = fig.add_subplot(111)
    ax.hist(ppc_new.posterior_predictive["th_new"].values.reshape(-1), bins=np.arange(0, 1, 0.02), density=True)
    save(fig, out / "new_theta.png")

    mu = trace_hierarchical.posterior["mu"].values.reshape(-1)
    map_mu = st.mode(np.digitize(mu, bins=np.linspace(0, 1, 100))).mode / 100
    collection = az.plot_dist(trace_hierarchical, var_names=["mu"])
    collection.viz["figure"].item().axes[0].text(0.3, 3, f"MAP: {map_mu}", fontsize=15)
    save(collection, out / "mu.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
