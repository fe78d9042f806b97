# Simulation-based calibration: not part of `all`; run it with `snakemake sbc`.


rule sbc_fit:
    """Fit the model to data simulated from its prior, with the data set's group sizes."""
    input:
        data="results/{dataset}/data.csv",
        model=model_path,
        helpers=HELPERS,
        callbacks=NUTPIE_CALLBACKS,
    output:
        ranks="results/{dataset}/{model}/sbc_ranks.csv",
        uniformity=report(
            "results/{dataset}/{model}/sbc.csv",
            caption="../report/sbc_table.rst",
            category="Calibration",
            subcategory="{model}",
            labels={"data set": "{dataset}", "model": "{model}", "table": "uniformity"},
        ),
    params:
        settings=lambda w: config["models"][w.model],
        sbc=config["sbc"],
        sampler=config["sampling"]["sampler"],
        seed=lambda w: job_seed(w, "sbc"),
    log:
        "results/{dataset}/logs/{model}/sbc.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/sbc.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/sbc.py"


rule plot_sbc:
    input:
        ranks="results/{dataset}/{model}/sbc_ranks.csv",
        uniformity="results/{dataset}/{model}/sbc.csv",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/sbc.png", "sbc", "Calibration"),
    log:
        "results/{dataset}/logs/{model}/plot_sbc.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_sbc.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_sbc.py"


rule sbc:
    """Every configured SBC model on every data set."""
    input:
        expand("results/{dataset}/{model}/sbc.png", dataset=DATASETS, model=config["sbc"]["models"]),
