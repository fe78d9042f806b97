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
        max_values=config["ppc"]["max_values"],
        min_draws=config["ppc"]["min_draws"],
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


rule funnel:
    """The funnel plot: observed rates against trials, binomial limits and limits allowing for spread."""
    input:
        code=step_code("funnel"),
        data="results/{dataset}/data.csv",
        prediction=funnel_prediction,
    output:
        table=report(
            "results/{dataset}/funnel.csv",
            caption="../report/funnel_table.rst",
            category="Funnel plot",
            labels={"data set": "{dataset}", "table": "limits"},
        ),
        figure=report_figure("results/{dataset}/funnel.png", "funnel", "Funnel plot"),
    log:
        "logs/{dataset}/funnel.log",
    params:
        spread_model=config["funnel"]["model"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)


rule prior_predictive:
    """Rates simulated from the priors against the observed ones."""
    input:
        code=step_code("prior_predictive"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
    output:
        figure=report_figure("results/{dataset}/{model}/prior_predictive.png", "prior_predictive", "Prior checks"),
    log:
        "logs/{dataset}/{model}/prior_predictive.log",
    params:
        draws=config["prior_checks"]["draws"],
        seed=lambda w: job_seed(w, "prior_predictive"),
    run:
        run_step(input, output, params, log)


rule sensitivity:
    """Power-scaling sensitivity of the posterior to the priors and to the likelihood."""
    input:
        code=step_code("sensitivity"),
        data="results/{dataset}/data.csv",
        trace="results/{dataset}/{model}/trace.nc",
    output:
        sensitivity=report(
            "results/{dataset}/{model}/sensitivity.csv",
            caption="../report/sensitivity.rst",
            category="Prior checks",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "sensitivity"},
        ),
    log:
        "logs/{dataset}/{model}/sensitivity.log",
    params:
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)
