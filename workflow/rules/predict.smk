rule predict:
    """Posterior predictive for a new group: theta_new and y_new in new_trials trials."""
    input:
        data="results/{dataset}/data.csv",
        model=model_path,
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        "results/{dataset}/{model}/new_group.nc",
    params:
        new_trials=config["predict"]["new_trials"],
        seed=lambda w: job_seed(w, "predict"),
    log:
        "results/{dataset}/logs/{model}/predict.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/predict.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/predict.py"
