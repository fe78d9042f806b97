rule loo:
    """Leave-one-group-out ELPD of one model: closed form, PSIS, or an exact refit per group."""
    input:
        code=step_code("loo", "sample", "mcmc_stats", "psis", "nutpie_callbacks"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
        trace="results/{dataset}/{model}/trace.nc",
    output:
        loo="results/{dataset}/{model}/loo.nc",
    log:
        "logs/{dataset}/{model}/loo.log",
    params:
        # Refits sample like the fit itself: its own settings, the data set's sampling.
        settings=lambda w: config["models"][w.model],
        sampling=config["sampling"],
        seed=lambda w: job_seed(w, "loo"),
        k_threshold=config["compare"]["pareto_k_threshold"],
        max_refits=config["compare"]["max_refits"],
    run:
        run_step(input, output, params, log)


rule compare:
    """The models of a data set compared by their leave-one-group-out ELPD."""
    input:
        code=step_code("compare"),
        loos=per_model("results/{dataset}/{model}/loo.nc"),
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
    log:
        "logs/{dataset}/compare.log",
    params:
        models=models_of,
        k_threshold=config["compare"]["pareto_k_threshold"],
    run:
        run_step(input, output, params, log)


rule overview:
    """The report's first page: best and worst groups, and the models sensitive to their priors."""
    input:
        code=step_code("overview"),
        comparison="results/{dataset}/comparison.csv",
        ranks=per_model("results/{dataset}/{model}/ranks.csv"),
        sensitivity=per_model("results/{dataset}/{model}/sensitivity.csv"),
    output:
        overview="results/{dataset}/overview.json",
    log:
        "logs/{dataset}/overview.log",
    params:
        models=models_of,
    run:
        run_step(input, output, params, log)
