rule compare:
    """PSIS-LOO of every model of a data set, compared."""
    input:
        traces=expand("results/{{dataset}}/{model}/trace.nc", model=MODELS),
        helpers=HELPERS,
    output:
        table=report(
            "results/{dataset}/comparison.csv",
            caption="../report/comparison_table.rst",
            category="Model comparison",
            labels={"data set": "{dataset}", "table": "comparison"},
        ),
        plot=report(
            "results/{dataset}/comparison.png",
            caption="../report/comparison.rst",
            category="Model comparison",
            labels={"data set": "{dataset}", "figure": "comparison"},
        ),
    params:
        models=MODELS,
        k_threshold=config["compare"]["pareto_k_threshold"],
    log:
        "results/{dataset}/logs/compare.log",
    benchmark:
        "results/{dataset}/benchmarks/compare.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/compare.py"
