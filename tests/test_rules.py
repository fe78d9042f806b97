"""The rules' declarations agree with the code they run: each rule's `code` input
(`step_code` in workflow/rules/common.smk) names every module of scripts/ its step imports,
directly or through another, and no other, so that editing one reruns exactly the steps
that run it (docs/reruns.md)."""

import ast
import re

import pytest

from conftest import ROOT, SCRIPTS

FIRST_PARTY = {path.stem for path in SCRIPTS.glob("*.py")}


def imported(name: str) -> set[str]:
    """The modules of scripts/ that scripts/<name>.py imports anywhere in its text."""
    found = set()
    for node in ast.walk(ast.parse((SCRIPTS / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FIRST_PARTY


def run_by(step: str) -> set[str]:
    """The step's module and every module of scripts/ reachable through its imports."""
    seen, todo = set(), [step]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imported(name)
    return seen


def declared() -> dict[str, set[str]]:
    """Each step_code(...) call of the rules: its step -> the modules it names."""
    text = "\n".join(path.read_text() for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    calls = {}
    for arguments in re.findall(r"code=step_code\(([^)]*)\)", text):
        names = ast.literal_eval(f"({arguments},)")
        calls[names[0]] = {"common", "shapes", *names}  # step_code adds common and what it imports
    return calls


def test_every_step_is_found():
    steps = declared()
    assert len(steps) >= 15 and {"sample", "loo", "ppc", "plot_trace"} <= set(steps)


@pytest.mark.parametrize("step", sorted(declared()))
def test_a_rule_names_exactly_the_code_its_step_runs(step):
    assert declared()[step] == run_by(step) | {"common", "shapes"}
