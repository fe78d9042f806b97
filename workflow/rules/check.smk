rule ppc:
    """Posterior predictive check: the data replicated from the fit, and p-values per group."""
    input:
        code=step_code("ppc"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
        trace="results/{dataset}/{model}/trace.nc",
    output:
        replicated="results/{dataset}/{model}/ppc.nc",
        pvalues=report(
            "results/{dataset}/{model}/ppc_pvalues.csv",
            caption="../report/ppc_pvalues.rst",
            category="Posterior predictive checks",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "p-values"},
        ),
    log:
        "logs/{dataset}/{model}/ppc.log",
    params:
        seed=lambda w: job_seed(w, "ppc"),
        ci_prob=config["plots"]["ci_prob"],
    run:
        run_step(input, output, params, log)


rule plot_ppc:
    input:
        code=step_code("plot_ppc"),
        replicated="results/{dataset}/{model}/ppc.nc",
        pvalues="results/{dataset}/{model}/ppc_pvalues.csv",
    output:
        figure=report_figure("results/{dataset}/{model}/ppc.png", "ppc", "Posterior predictive checks"),
    log:
        "logs/{dataset}/{model}/plot_ppc.log",
    params:
        ci_prob=config["plots"]["ci_prob"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)
