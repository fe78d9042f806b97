# Set-up and entry points. `make run` and `make test` each do all the set-up they need.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the pins change: the stamp is newer than requirements.txt otherwise.
STAMP := $(VENV)/.installed
CORES ?= all
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test test-fast lint provenance lock clean bench report worker-status worker-stop

setup: $(STAMP)
	@tools/ensure-dot.sh

$(STAMP): requirements.txt
	@test -x $(BIN)/python || { py=$$(tools/find-python.sh) && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# The full suite: what CI runs (about 18 minutes on 2 cores, see docs/development.md).
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests and one tiny end-to-end run (tests/test_end_to_end.py): a few minutes.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Timings side by side (see benchmarks/README.md); BENCH_ARGS="--quick" for a shorter run.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Every figure and table with its caption in one HTML file (after `make run`).
report: setup
	$(BIN)/snakemake --report results/report.html

# What produced each trace: seed, sampler settings, data and model hashes, package versions.
provenance: setup
	$(BIN)/python scripts/provenance.py results

# Snakemake's own checks, then the formatting of the rules and the Python code (pinned tools).
lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow
	$(BIN)/ruff check .

# Resolve requirements.in afresh in a scratch venv and rewrite both lock files from it.
lock:
	rm -rf .lock-venv && "$$(tools/find-python.sh)" -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -r requirements.in
	.lock-venv/bin/python -m pip freeze > .lock-venv/freeze.txt
	.lock-venv/bin/python tools/lock.py .lock-venv/freeze.txt
	rm -rf .lock-venv

# The step worker that outlives a run (worker.idle_minutes): see it, stop it.
worker-status: setup
	$(BIN)/python scripts/runtime status

worker-stop: setup
	$(BIN)/python scripts/runtime stop

clean:
	rm -rf results logs .snakemake
