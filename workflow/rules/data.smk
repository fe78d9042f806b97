rule prepare_data:
    """Validate a data set's CSV and write it in the columns of its shape."""
    input:
        code=step_code("prepare_data"),
        source=lambda w: config["datasets"][w.dataset]["path"],
    output:
        table="results/{dataset}/data.csv",
    log:
        "logs/{dataset}/prepare_data.log",
    params:
        shape=lambda w: DATASET_SHAPE[w.dataset],
        columns=lambda w: DATASET_COLUMNS[w.dataset],
        delimiter=lambda w: config["datasets"][w.dataset]["delimiter"],
        scale=lambda w: config["datasets"][w.dataset].get("prior_scale"),
    run:
        run_step(input, output, params, log)
