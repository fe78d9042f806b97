"""A smoke run of the benchmark harness on the smallest setting: it runs, and writes what
the README shows. (The benchmarks themselves are `make bench`, not part of the tests.)"""

import csv
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_harness_writes_table_markdown_and_plot(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--sections", "groups", "--groups", "4", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "latest.csv").open()))
    assert [r["what"] for r in rows] == [
        "hierarchical, 4 groups: every output, end to end", "4 groups: slowest step", "4 groups: largest peak RSS of a step",
        "4 groups: results on disk",
    ]
    assert all(float(r["value"]) > 0 and r["machine"] and "pymc=" in r["versions"] for r in rows)
    assert "max R-hat" in rows[0]["note"]
    assert "| groups | hierarchical, 4 groups: every output, end to end |" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "latest.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "partial.csv").exists()
