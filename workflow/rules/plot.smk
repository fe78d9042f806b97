rule plot_model_graph:
    """The model's structure, drawn by Graphviz."""
    input:
        code=step_code("plot_model_graph"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
    output:
        png=report_figure("results/{dataset}/{model}/model_graph.png", "model_graph", "Models"),
        svg="results/{dataset}/{model}/model_graph.svg",
    log:
        "logs/{dataset}/{model}/plot_model_graph.log",
    run:
        run_step(input, output, params, log)


rule plot_trace:
    input:
        code=step_code("plot_trace", "group_figures"),
        trace="results/{dataset}/{model}/trace.nc",
    output:
        figure=report_figure("results/{dataset}/{model}/trace.png", "trace", "Traces"),
    log:
        "logs/{dataset}/{model}/plot_trace.log",
    params:
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)


rule plot_forest:
    input:
        code=step_code("plot_forest", "group_figures"),
        trace="results/{dataset}/{model}/trace.nc",
    output:
        figure=report_figure("results/{dataset}/{model}/forest.png", "forest", "Success probabilities"),
    log:
        "logs/{dataset}/{model}/plot_forest.log",
    params:
        ci_prob=config["plots"]["ci_prob"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)


rule plot_models_forest:
    """Every model's success probabilities side by side, per group."""
    input:
        code=step_code("plot_models_forest", "group_figures"),
        data="results/{dataset}/data.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
    output:
        figure=report_figure("results/{dataset}/forest_models.png", "forest_models", "Success probabilities"),
    log:
        "logs/{dataset}/plot_models_forest.log",
    params:
        models=models_of,
        ci_prob=config["plots"]["ci_prob"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)


rule plot_new_group:
    input:
        code=step_code("plot_new_group"),
        prediction="results/{dataset}/{model}/new_group.nc",
    output:
        figure=report_figure("results/{dataset}/{model}/new_group.png", "new_group", "New group"),
    log:
        "logs/{dataset}/{model}/plot_new_group.log",
    params:
        ci_prob=config["plots"]["ci_prob"],
    run:
        run_step(input, output, params, log)


rule plot_population_mean:
    """Posterior of the population's mean success probability with its MAP."""
    input:
        code=step_code("plot_population_mean"),
        trace="results/{dataset}/{model}/trace.nc",
    output:
        figure=report_figure("results/{dataset}/{model}/population_mean.png", "population_mean", "Population"),
    log:
        "logs/{dataset}/{model}/plot_population_mean.log",
    params:
        variable=lambda w: population_mean(w.model),
        ci_prob=config["plots"]["ci_prob"],
        bins=config["plots"]["map_bins"],
        # A probability lies in [0, 1]; an effect anywhere.
        bounded=lambda w: DATASET_SHAPE[w.dataset] == "binomial",
    run:
        run_step(input, output, params, log)


rule plot_shrinkage:
    """Raw rates against every model's posterior means: how much each model pools."""
    input:
        code=step_code("plot_shrinkage"),
        data="results/{dataset}/data.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
    output:
        figure=report_figure("results/{dataset}/shrinkage.png", "shrinkage", "Success probabilities"),
    log:
        "logs/{dataset}/plot_shrinkage.log",
    params:
        models=models_of,
    run:
        run_step(input, output, params, log)
