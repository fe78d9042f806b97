rule sample:
    """Fit one model to one data set; the trace is cached as ArviZ NetCDF."""
    input:
        data="results/{dataset}/data.csv",
        model=model_path,
        helpers=HELPERS,
        callbacks=NUTPIE_CALLBACKS,
    output:
        "results/{dataset}/{model}/trace.nc",
    params:
        # Only this model's own settings, so changing another model's leaves this job alone.
        settings=lambda w: config["models"][w.model],
        sampling=config["sampling"],
        seed=lambda w: job_seed(w, "sample"),
    threads: config["sampling"]["chains"]
    resources:
        mem_mb=sample_mem_mb,
        runtime=sample_runtime,
    log:
        "results/{dataset}/logs/{model}/sample.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/sample.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/sample.py"
