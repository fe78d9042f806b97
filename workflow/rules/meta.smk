# Meta-analysis: only for data sets of effect estimates or two-arm trials.


rule heterogeneity:
    """Overall effect, prediction interval, tau, I^2 and pooling factors under each model."""
    input:
        code=step_code("heterogeneity"),
        data="results/{dataset}/data.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
        predictions=per_model("results/{dataset}/{model}/new_group.nc"),
    output:
        table=report(
            "results/{dataset}/heterogeneity.csv",
            caption="../report/heterogeneity.rst",
            category="Meta-analysis",
            labels={"data set": "{dataset}", "table": "heterogeneity"},
        ),
        pooling=report(
            "results/{dataset}/pooling.csv",
            caption="../report/pooling.rst",
            category="Meta-analysis",
            labels={"data set": "{dataset}", "table": "pooling factors"},
        ),
    log:
        "logs/{dataset}/heterogeneity.log",
    params:
        models=models_of,
        interval=config["meta"]["interval"],
    run:
        run_step(input, output, params, log)


rule plot_meta_forest:
    """The meta-analysis forest plot: studies, pooled estimates, overall effect, prediction interval."""
    input:
        code=step_code("plot_meta_forest", "group_figures", "heterogeneity"),
        data="results/{dataset}/data.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
        predictions=per_model("results/{dataset}/{model}/new_group.nc"),
    output:
        figure=report_figure("results/{dataset}/forest_meta.png", "forest_meta", "Meta-analysis"),
    log:
        "logs/{dataset}/plot_meta_forest.log",
    params:
        models=models_of,
        interval=config["meta"]["interval"],
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)


rule plot_labbe:
    """L'Abbé plot of two-arm trials: treated against control event rates."""
    input:
        code=step_code("plot_labbe", "heterogeneity"),
        data="results/{dataset}/data.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
    output:
        figure=report_figure("results/{dataset}/labbe.png", "labbe", "Meta-analysis"),
    log:
        "logs/{dataset}/plot_labbe.log",
    params:
        models=models_of,
        max_groups=config["plots"]["max_groups"],
    run:
        run_step(input, output, params, log)
