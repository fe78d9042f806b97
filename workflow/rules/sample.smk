rule sample:
    """Fit one model to one data set; the trace is cached as ArviZ NetCDF."""
    input:
        code=step_code("sample", "mcmc_stats", "nutpie_callbacks"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
    output:
        trace="results/{dataset}/{model}/trace.nc",
    log:
        "logs/{dataset}/{model}/sample.log",
    threads: sample_threads
    resources:
        mem_mb=sample_mem_mb,
        runtime=sample_runtime,
    params:
        dataset="{dataset}",
        model="{model}",
        # Only this model's own settings, so changing another model's leaves this job alone.
        settings=lambda w: config["models"][w.model],
        sampling=config["sampling"],
        seed=lambda w: job_seed(w, "sample"),
    run:
        run_step(input, output, params, log, threads, keep_compiled=True)
