rule ranks:
    """Ranks with their intervals, Pr(best/worst/top), SUCRA, and exceedance of benchmarks."""
    input:
        code=step_code("ranks"),
        data="results/{dataset}/data.csv",
        trace="results/{dataset}/{model}/trace.nc",
    output:
        ranks=report(
            "results/{dataset}/{model}/ranks.csv",
            caption="../report/ranks_table.rst",
            category="Rankings",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "ranks"},
        ),
        exceedance=report(
            "results/{dataset}/{model}/exceedance.csv",
            caption="../report/exceedance.rst",
            category="Rankings",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "benchmarks"},
        ),
    log:
        "logs/{dataset}/{model}/ranks.log",
    params:
        ci_prob=config["plots"]["ci_prob"],
        higher_is_better=lambda w: ranking(w.dataset)["higher_is_better"],
        top=lambda w: ranking(w.dataset)["top"],
        benchmarks=lambda w: ranking(w.dataset)["benchmarks"],
        max_values=config["ranking"]["max_values"],
        min_draws=config["ranking"]["min_draws"],
        seed=lambda w: job_seed(w, "ranks"),
    run:
        run_step(input, output, params, log)


rule plot_ranks:
    """Every group's rank interval under every model."""
    input:
        code=step_code("plot_ranks", "group_figures"),
        ranks=per_model("results/{dataset}/{model}/ranks.csv"),
    output:
        figure=report_figure("results/{dataset}/ranks.png", "ranks", "Rankings"),
    log:
        "logs/{dataset}/plot_ranks.log",
    params:
        models=models_of,
        ci_prob=config["plots"]["ci_prob"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)
