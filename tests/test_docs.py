"""The documentation agrees with the workflow: docs/outputs.md lists what the rules make,
links resolve, the README stays short; and a new figure needs one rule, one step and one
caption, nothing else."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import CONFIGURED_MODELS, ROOT, copy_workflow, planned_outputs, run_snakemake, tiny_config

DOCUMENTS = [ROOT / "README.md", ROOT / "config" / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rule_outputs(workdir: Path, models=CONFIGURED_MODELS) -> set[str]:
    """Every output the rules make, `all` and `sbc`, as patterns over {dataset} and {model}
    (read from a dry run of the SpaceX data set, and of the baseball example, which has
    later data)."""
    examples = [f"config/examples/{name}.yaml" for name in ("baseball", "eight_schools", "beta_blockers")]
    planned = planned_outputs(workdir, "--forceall", "all", "sbc", "--configfile", *examples)
    datasets = "(spacex|baseball|eight_schools|beta_blockers)"
    models = [*models, "meta_no_pooling", "meta_common_effect", "meta_random_effects", "trials_no_pooling",
              "trials_common_effect", "trials_random_effects"]
    model_folder = re.compile(rf"^results/{datasets}/(" + "|".join(map(re.escape, models)) + r")/")
    return {re.sub(rf"^results/{datasets}/", "results/{dataset}/", model_folder.sub("results/{dataset}/{model}/", path))
            for path in planned}


def documented_outputs(page: Path) -> set[str]:
    """The paths in the first column of the page's tables."""
    return set(re.findall(r"^\| `(results/[^`]+)` \|", page.read_text(), flags=re.MULTILINE))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("docs"))


def test_the_outputs_table_lists_exactly_what_the_rules_make(workdir):
    made = rule_outputs(workdir)
    assert len(made) > 20
    documented = documented_outputs(ROOT / "docs" / "outputs.md")
    assert made - documented == set(), "made but not in docs/outputs.md"
    assert documented - made == set(), "in docs/outputs.md but made by no rule"


def test_no_model_name_can_collide_with_an_output(workdir):
    """Beside the model folders every output has a dot in its name, and a model's name
    cannot have one: so models and files never share a path."""
    beside_models = [p for p in rule_outputs(workdir) if p.count("/") == 2]
    assert beside_models and all("." in Path(p).name for p in beside_models), beside_models
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    pattern = schema["properties"]["models"]["propertyNames"]["pattern"]
    assert re.fullmatch(pattern, "hierarchical_2") and not re.fullmatch(pattern, "data.csv")


def schema_keys(node, path=()):
    """Every settable key of the config schema, with NAME for user-chosen names."""
    if "properties" in node:
        for key, child in node["properties"].items():
            yield from schema_keys(child, (*path, key))
    elif isinstance(node.get("additionalProperties"), dict) and "properties" in node["additionalProperties"]:
        yield from schema_keys(node["additionalProperties"], (*path, "NAME"))
    else:
        yield path


def test_every_config_key_is_documented():
    """config/README.md's table has a row for every key of the schema (sbc's in
    docs/extending.md)."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    table = (ROOT / "config" / "README.md").read_text()
    calibration = (ROOT / "docs" / "extending.md").read_text()
    keys = list(schema_keys(schema))
    assert len(keys) > 20
    for *section, key in keys:
        if section == ["sbc"]:
            assert f"`{key}`" in calibration, key
        else:
            # A row names the key itself, or `section.other` / `.key` sharing one row.
            row = rf"^\| `{re.escape('.'.join(section))}\.([^|]*[.`])?{re.escape(key)}`"
            assert re.search(row, table, flags=re.MULTILINE), ".".join((*section, key))


def links(page: Path):
    """Relative markdown links and images of a page, without those inside code."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target):
            yield target


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(resolved), f"{page.name}: {target}: no such heading"


def test_every_document_is_linked_from_the_readme_or_docs():
    linked = {(page.parent / t.partition("#")[0]).resolve() for page in DOCUMENTS for t in links(page)}
    assert {page.resolve() for page in DOCUMENTS[1:]} <= linked


@pytest.mark.parametrize("command", [["snakemake", "--lint"], ["snakefmt", "--check", "workflow"], ["ruff", "check", "."]],
                         ids=["snakemake", "snakefmt", "ruff"])
def test_lint_is_clean(command):
    """What `make lint` runs, with the venv's pinned tools."""
    tool = Path(sys.executable).parent / command[0]
    result = subprocess.run([str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Lints for" not in result.stdout + result.stderr


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


# A figure as docs/extending.md says to add one: a rule, its step and its caption.
DUMMY_RULE = '''

rule plot_dummy:
    input:
        code=step_code("plot_dummy"),
        trace="results/{dataset}/{model}/trace.nc",
    output:
        figure=report_figure("results/{dataset}/{model}/dummy.png", "dummy", "Dummy figures"),
    log:
        "logs/{dataset}/{model}/plot_dummy.log",
    run:
        run_step(input, output, params, log)
'''
DUMMY_STEP = '''
"""A figure for tests/test_docs.py."""

from common import read_datatree, save_figure


def main(trace: str, figure: str) -> None:
    import matplotlib.pyplot as plt

    theta = read_datatree(trace)["posterior"]["theta"].values.ravel()
    fig, ax = plt.subplots()
    ax.hist(theta, bins=20)
    save_figure(fig, figure)
'''


@pytest.mark.slow
def test_a_new_figure_is_one_rule_one_step_and_one_caption(tmp_path):
    workdir = copy_workflow(tmp_path)
    with open(workdir / "workflow" / "rules" / "plot.smk", "a") as rules:
        rules.write(DUMMY_RULE)
    (workdir / "scripts" / "plot_dummy.py").write_text(textwrap.dedent(DUMMY_STEP).lstrip())
    (workdir / "workflow" / "report" / "dummy.rst").write_text("A dummy figure of **{{ snakemake.wildcards.model }}**.\n")
    # The target list: `snakemake` plans the figure for every model.
    expected = {f"results/spacex/{model}/dummy.png" for model in CONFIGURED_MODELS}
    assert expected <= planned_outputs(workdir)
    # The docs check asks for exactly its line.
    assert rule_outputs(workdir) - documented_outputs(ROOT / "docs" / "outputs.md") == {
        "results/{dataset}/{model}/dummy.png"
    }
    # The report holds it, in its category, once made (one model keeps this quick).
    config = tiny_config(models={"full_pooling": None})
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--cores", "2")
    assert (workdir / "results" / "spacex" / "full_pooling" / "dummy.png").stat().st_size > 0
    run_snakemake(workdir, "--report", "report.html")
    report = (workdir / "report.html").read_text()
    assert "results/spacex/full_pooling/dummy.png" in report and "Dummy figures" in report
