rule compare:
    """PSIS-LOO of every model of a data set, compared."""
    input:
        code=step_code("compare"),
        traces=expand("results/{{dataset}}/{model}/trace.nc", model=MODELS),
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
        "logs/{dataset}/compare.log",
    run:
        run_step(rule, input, output, params, log)
