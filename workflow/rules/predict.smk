rule predict:
    """Posterior predictive for a new group: theta_new and y_new in new_trials trials."""
    input:
        code=step_code("predict"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
        trace="results/{dataset}/{model}/trace.nc",
    output:
        prediction="results/{dataset}/{model}/new_group.nc",
    log:
        "logs/{dataset}/{model}/predict.log",
    params:
        new_trials=config["predict"]["new_trials"],
        new_se=config["predict"]["new_se"],
        seed=lambda w: job_seed(w, "predict"),
    run:
        run_step(input, output, params, log)
