# Held-out scoring: only for data sets that name later columns (datasets.NAME.holdout).


rule prepare_holdout:
    """Validate a data set's later columns and write them as group,trials,successes."""
    input:
        code=step_code("prepare_holdout", "prepare_data"),
        source=lambda w: config["datasets"][w.dataset]["path"],
    output:
        later="results/{dataset}/later.csv",
    log:
        "logs/{dataset}/prepare_holdout.log",
    params:
        group=lambda w: config["datasets"][w.dataset]["group"],
        trials=lambda w: config["datasets"][w.dataset]["holdout"]["trials"],
        successes=lambda w: config["datasets"][w.dataset]["holdout"]["successes"],
        delimiter=lambda w: config["datasets"][w.dataset]["delimiter"],
    run:
        run_step(input, output, params, log)


rule holdout:
    """Every model of a data set scored on its later data."""
    input:
        code=step_code("holdout", "ppc"),
        data="results/{dataset}/data.csv",
        later="results/{dataset}/later.csv",
        traces=per_model("results/{dataset}/{model}/trace.nc"),
        model_files=lambda w: [model_relpath(model) for model in models_for(w.dataset)],
    output:
        table=report(
            "results/{dataset}/holdout.csv",
            caption="../report/holdout_table.rst",
            category="Held-out data",
            labels={"data set": "{dataset}", "table": "scores"},
        ),
        figure=report_figure("results/{dataset}/holdout.png", "holdout", "Held-out data"),
    log:
        "logs/{dataset}/holdout.log",
    params:
        models=models_of,
        seed=lambda w: derive_seed(config["sampling"]["seed"], w.dataset, "holdout"),
    run:
        run_step(input, output, params, log)
