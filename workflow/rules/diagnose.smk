rule diagnose:
    """R-hat, ESS, MCSE, divergences and BFMI of one trace, checked against thresholds."""
    input:
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        summary=report(
            "results/{dataset}/{model}/summary.csv",
            caption="../report/summary.rst",
            category="Diagnostics",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "summary"},
        ),
        diagnostics="results/{dataset}/{model}/diagnostics.json",
    params:
        thresholds={k: v for k, v in config["diagnostics"].items() if k != "strict"},
        strict=config["diagnostics"]["strict"],
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/{model}/diagnose.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/diagnose.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/diagnose.py"
