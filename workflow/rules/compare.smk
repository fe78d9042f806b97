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
        loos=expand("results/{{dataset}}/{model}/loo.nc", model=MODELS),
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
        models=MODELS,
        k_threshold=config["compare"]["pareto_k_threshold"],
    run:
        run_step(input, output, params, log)


rule overview:
    """The report's first page: best and worst groups, and the models sensitive to their priors."""
    input:
        code=step_code("overview"),
        comparison="results/{dataset}/comparison.csv",
        ranks=expand("results/{{dataset}}/{model}/ranks.csv", model=MODELS),
        sensitivity=expand("results/{{dataset}}/{model}/sensitivity.csv", model=MODELS),
    output:
        overview="results/{dataset}/overview.json",
    log:
        "logs/{dataset}/overview.log",
    params:
        models=MODELS,
    run:
        run_step(input, output, params, log)
