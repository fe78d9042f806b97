rule plot_model_graph:
    """The model's structure, drawn by Graphviz."""
    input:
        data="results/{dataset}/data.csv",
        model=model_path,
        helpers=HELPERS,
    output:
        png=figure("results/{dataset}/{model}/model_graph.png", "model_graph", "Models"),
        svg="results/{dataset}/{model}/model_graph.svg",
    log:
        "results/{dataset}/logs/{model}/plot_model_graph.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_model_graph.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_model_graph.py"


rule plot_trace:
    input:
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/trace.png", "trace", "Traces"),
    log:
        "results/{dataset}/logs/{model}/plot_trace.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_trace.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_trace.py"


rule plot_forest:
    input:
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/forest.png", "forest", "Success probabilities"),
    params:
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/{model}/plot_forest.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_forest.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_forest.py"


rule plot_models_forest:
    """Every model's success probabilities side by side, per group."""
    input:
        traces=expand("results/{{dataset}}/{model}/trace.nc", model=MODELS),
        helpers=HELPERS,
    output:
        figure("results/{dataset}/forest_models.png", "forest_models", "Success probabilities"),
    params:
        models=MODELS,
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/plot_models_forest.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_models_forest.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_models_forest.py"


rule plot_new_group:
    input:
        prediction="results/{dataset}/{model}/new_group.nc",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/new_group.png", "new_group", "New group"),
    params:
        ci_prob=config["plots"]["ci_prob"],
    log:
        "results/{dataset}/logs/{model}/plot_new_group.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_new_group.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_new_group.py"


rule plot_population_mean:
    """Posterior of the population's mean success probability with its MAP."""
    input:
        trace="results/{dataset}/{model}/trace.nc",
        helpers=HELPERS,
    output:
        figure("results/{dataset}/{model}/population_mean.png", "population_mean", "Population"),
    params:
        variable=lambda w: population_mean(w.model),
        ci_prob=config["plots"]["ci_prob"],
        bins=config["plots"]["map_bins"],
    log:
        "results/{dataset}/logs/{model}/plot_population_mean.log",
    benchmark:
        "results/{dataset}/benchmarks/{model}/plot_population_mean.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_population_mean.py"


rule plot_shrinkage:
    """Raw rates against every model's posterior means: how much each model pools."""
    input:
        data="results/{dataset}/data.csv",
        traces=expand("results/{{dataset}}/{model}/trace.nc", model=MODELS),
        helpers=HELPERS,
    output:
        figure("results/{dataset}/shrinkage.png", "shrinkage", "Success probabilities"),
    params:
        models=MODELS,
    log:
        "results/{dataset}/logs/plot_shrinkage.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_shrinkage.tsv",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/plot_shrinkage.py"
