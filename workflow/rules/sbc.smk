# Simulation-based calibration: not part of `all`; run it with `snakemake sbc`.


rule sbc_fit:
    """Fit the model to data simulated from its prior, with the data set's group sizes."""
    input:
        code=step_code("sbc_fit", "sample", "mcmc_stats", "nutpie_callbacks"),
        data="results/{dataset}/data.csv",
        model_file=model_path,
    output:
        ranks="results/{dataset}/{model}/sbc_ranks.csv",
        uniformity=report(
            "results/{dataset}/{model}/sbc.csv",
            caption="../report/sbc_table.rst",
            category="Calibration",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "uniformity"},
        ),
    log:
        "logs/{dataset}/{model}/sbc_fit.log",
    params:
        settings=lambda w: config["models"][w.model],
        sbc=config["sbc"],
        sampler=config["sampling"]["sampler"],
        seed=lambda w: job_seed(w, "sbc"),
    run:
        run_step(input, output, params, log)


rule plot_sbc:
    input:
        code=step_code("plot_sbc"),
        ranks="results/{dataset}/{model}/sbc_ranks.csv",
        uniformity="results/{dataset}/{model}/sbc.csv",
    output:
        figure=report_figure("results/{dataset}/{model}/sbc.png", "sbc", "Calibration"),
    log:
        "logs/{dataset}/{model}/plot_sbc.log",
    run:
        run_step(input, output, params, log)


rule sbc:
    """Every configured SBC model on every data set."""
    input:
        [
            f"results/{dataset}/{model}/sbc.png"
            for dataset in DATASETS
            for model in models_for(dataset)
            if model in config["sbc"]["models"]
        ],
