rule ppc:
    """Posterior predictive check: the data replicated from the fit, and p-values per group."""
    input:
        data="results/{dataset}/data.csv",
        model=model_path,
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        replicated="results/{dataset}/{model}/ppc.nc",
        pvalues=report(
            "results/{dataset}/{model}/ppc_pvalues.csv",
            caption="../report/ppc_pvalues.rst",
            category="Posterior predictive checks",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "p-values"},
        ),
    params:
        seed=lambda w: job_seed(w, "ppc"),
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/{model}/ppc.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/ppc.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/ppc.py"


rule plot_ppc:
    input:
        replicated="results/{dataset}/{model}/ppc.nc",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/ppc.png", "ppc", "Posterior predictive checks"),
    params:
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/{model}/plot_ppc.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_ppc.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_ppc.py"
