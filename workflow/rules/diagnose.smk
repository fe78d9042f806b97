rule diagnose:
    """R-hat, ESS, MCSE, divergences and BFMI against thresholds, with the prior sensitivity."""
    input:
        code=step_code("diagnose", "mcmc_stats", "sensitivity"),
        trace="results/{dataset}/{model}/trace.nc",
        sensitivity="results/{dataset}/{model}/sensitivity.csv",
    output:
        summary=report(
            "results/{dataset}/{model}/summary.csv",
            caption="../report/summary.rst",
            category="Diagnostics",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "summary"},
        ),
        diagnostics="results/{dataset}/{model}/diagnostics.json",
    log:
        "logs/{dataset}/{model}/diagnose.log",
    threads: summary_threads
    params:
        thresholds={k: v for k, v in config["diagnostics"].items() if k != "strict"},
        strict=config["diagnostics"]["strict"],
        ci_prob=config["plots"]["ci_prob"],
    run:
        run_step(input, output, params, log, threads)
