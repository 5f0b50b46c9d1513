# coperniq-quickbooks: every entry point a user or CI needs. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MELTANO_PROJECT_ROOT := $(CURDIR)
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: help venv install system-deps demo test test-fast sandboxes bench reconcile clean

help:
	@echo "make demo       set up everything, start the sandboxes, run both legs, print what was synced"
	@echo "make test       set up and run the whole test suite"
	@echo "make sandboxes  run both sandboxes in the foreground (Coperniq :8765, Merge :8766)"
	@echo "make bench      performance figures against the sandboxes (bench/RESULTS.md)"
	@echo "make reconcile  land both sides into DuckDB and run the dbt reconciliation models"
	@echo "make clean      remove the venvs, .meltano and generated files"

# The dev venv: meltano, singer-sdk test tooling and every package of the repo, editable.
$(BIN)/.installed: requirements-dev.txt sync-ledger/pyproject.toml tap-coperniq/pyproject.toml \
		target-quickbooks-merge/pyproject.toml tap-quickbooks-merge/pyproject.toml target-coperniq/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# Meltano creates one venv per plugin under .meltano/ (editable installs of this repo's packages).
.meltano/.installed: $(BIN)/.installed meltano.yml
	$(BIN)/meltano install
	mkdir -p .meltano && touch $@

install: .meltano/.installed

# Headless Chromium for the Merge Link connect-flow test (Debian packages; needs root, as on CI).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "note: chromium/chromedriver missing and not root: the browser test will be skipped"; fi; \
	fi

demo: install
	$(BIN)/python scripts/demo.py

test: install system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 -m "not meltano" tests

sandboxes: venv
	$(BIN)/python -m sandbox.coperniq --port 8765 --seed 42 --projects 60 & \
	$(BIN)/python -m sandbox.merge --port 8766 & \
	trap 'kill %1 %2' INT TERM; wait

bench: install
	$(BIN)/python bench/run_all.py

reconcile: install
	$(BIN)/python transform/reconcile.py

clean:
	rm -rf $(VENV) .meltano output bench/out .pytest_cache
