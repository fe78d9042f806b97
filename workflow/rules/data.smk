rule prepare_data:
    """Validate a data set's CSV and write it as group,trials,successes."""
    input:
        csv=lambda w: config["datasets"][w.dataset]["path"],
        helpers=HELPERS,
    output:
        "results/{dataset}/data.csv",
    params:
        columns=lambda w: {
            key: config["datasets"][w.dataset][key] for key in ("group", "trials", "successes", "delimiter")
        },
    log:
        "results/{dataset}/logs/prepare_data.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_data.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/prepare_data.py"
