rule prepare_data:
    """Validate a data set's CSV and write it as group,trials,successes."""
    input:
        code=step_code("prepare_data"),
        source=lambda w: config["datasets"][w.dataset]["path"],
    output:
        table="results/{dataset}/data.csv",
    log:
        "logs/{dataset}/prepare_data.log",
    params:
        group=lambda w: config["datasets"][w.dataset]["group"],
        trials=lambda w: config["datasets"][w.dataset]["trials"],
        successes=lambda w: config["datasets"][w.dataset]["successes"],
        delimiter=lambda w: config["datasets"][w.dataset]["delimiter"],
    run:
        run_step(input, output, params, log)
