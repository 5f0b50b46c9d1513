# coperniq-quickbooks: every entry point a user or CI needs. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export MELTANO_PROJECT_ROOT := $(CURDIR)
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: help venv install system-deps demo test test-fast lint lock sandboxes bench reconcile clean

help:
	@echo "make demo       set up everything, start the sandboxes, run both legs, print what was synced"
	@echo "make test       set up and run the whole test suite"
	@echo "make lint       ruff check, ruff format --check and mypy (0 findings expected; CI runs it before the tests)"
	@echo "make lock       re-resolve requirements-dev.txt into requirements-dev.lock (UPGRADE=1 to take newer versions)"
	@echo "make sandboxes  run both sandboxes in the foreground (Coperniq :8765, Merge :8766)"
	@echo "make bench      performance figures against the sandboxes (bench/RESULTS.md)"
	@echo "make reconcile  land both sides into DuckDB and run the dbt reconciliation models"
	@echo "make clean      remove the venvs, .meltano (all but the sync ledger) and generated files"

# The dev venv: meltano, singer-sdk test tooling, lint tools and every package of the repo, editable.
# Every third-party package comes from requirements-dev.lock, pinned and hashed (pip, and hatchling, the build backend
# of the editable installs, included), so a fresh clone installs exactly what was tested. The repo's own packages are
# the `-e ./...` lines of requirements-dev.txt (a new one is picked up by itself); they cannot be hashed, so they go in
# a second step with --no-deps (their dependencies are in the lock). `pip check` then proves the set is consistent:
# it fails when a package's dependencies changed and the lock was not regenerated (`make lock`).
LOCAL_PACKAGES = $(shell sed -n 's/^-e[[:space:]]*//p' requirements-dev.txt)
$(BIN)/.installed: requirements-dev.lock requirements-dev.txt $(wildcard */pyproject.toml)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(addprefix -e ,$(LOCAL_PACKAGES))
	$(BIN)/python -m pip check
	touch $@

venv: $(BIN)/.installed

# Resolve requirements-dev.txt (the third-party pins and the local packages' own dependencies) for CPython 3.11 on
# Linux x86_64, with the hashes of every file of each pinned version. Versions already in the lock are kept unless
# UPGRADE=1. uv runs from a throwaway venv, so a stale lock never blocks regenerating it; the local packages' `-e`
# entries are dropped from the output (they are installed from the work tree, see above).
UV_VERSION := 0.13.9
lock:
	set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m venv "$$tmp/venv" && "$$tmp/venv/bin/python" -m pip install --quiet uv==$(UV_VERSION); \
	if [ -f requirements-dev.lock ]; then cp requirements-dev.lock "$$tmp/lock.txt"; fi; \
	"$$tmp/venv/bin/uv" pip compile --quiet requirements-dev.txt --output-file "$$tmp/lock.txt" --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade); \
	awk '/^-e /{skip=1; next} skip && /^[[:space:]]/{next} {skip=0; print}' "$$tmp/lock.txt" > requirements-dev.lock
	@echo "requirements-dev.lock: $$(grep -c '^[^ #].*==' requirements-dev.lock) pinned packages"

# Lint and types: ruff (rules in pyproject.toml), ruff's formatter, mypy (files and flags in pyproject.toml).
# All three run, so one pass shows every finding; the target fails if any of them found something.
lint: venv
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/mypy || status=1; \
	exit $$status

# Meltano creates one venv per plugin under .meltano/ (editable installs of this repo's packages).
.meltano/.installed: $(BIN)/.installed meltano.yml
	$(BIN)/meltano install
	mkdir -p .meltano && touch $@

install: .meltano/.installed

# Headless Chromium for the Merge Link connect-flow test, and the PostgreSQL server (initdb, postgres, pg_ctl under
# /usr/lib/postgresql/<major>/bin) that sandbox/postgres.py starts for the PostgreSQL-ledger tests (Debian packages;
# needs root, as on CI). One `apt-get update`, only when something is missing.
system-deps:
	@pkgs=""; \
	if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then pkgs="chromium chromium-driver"; fi; \
	if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then pkgs="$$pkgs postgresql"; fi; \
	if [ -n "$$pkgs" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
		else \
			case "$$pkgs" in *chromium*) echo "note: chromium/chromedriver missing and not root: the browser test will be skipped";; esac; \
			case "$$pkgs" in *postgresql*) echo "note: PostgreSQL server (package postgresql) missing and not root: the PostgreSQL-ledger tests will fail";; esac; \
		fi; \
	fi

demo: install
	$(BIN)/python scripts/demo.py

# Three workers on two cores: a good part of the suite waits (retry backoff, Retry-After, subprocesses starting), so a
# third worker fills the cores (measured: 584 s with -n 2, 518 s with -n 3 on a 2-core machine).
test: install system-deps
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup tests

test-fast: venv
	$(BIN)/python -m pytest -q -n 3 -m "not meltano" tests

sandboxes: venv
	$(BIN)/python -m sandbox.coperniq --port 8765 --seed 42 --projects 60 & \
	$(BIN)/python -m sandbox.merge --port 8766 & \
	trap 'kill %1 %2' INT TERM; wait

bench: install
	$(BIN)/python bench/run_all.py

reconcile: install
	$(BIN)/python transform/reconcile.py

# The sync ledger (.meltano/sync-ledger.duckdb) is the only record of which QuickBooks record is which Coperniq one:
# clean keeps it (and its write-ahead log); delete it by hand only to start over (docs/OPERATIONS.md).
LEDGER_FILES := sync-ledger.duckdb sync-ledger.duckdb.wal
clean:
	rm -rf $(VENV) output bench/out .pytest_cache
	@if [ -d .meltano ]; then \
		find .meltano -mindepth 1 -maxdepth 1 $(foreach f,$(LEDGER_FILES),! -name '$(f)') -exec rm -rf {} +; \
		for f in $(LEDGER_FILES); do \
			if [ -e ".meltano/$$f" ]; then echo "kept .meltano/$$f (the sync ledger: remove it by hand only to start over)"; fi; \
		done; \
		rmdir .meltano 2>/dev/null || true; \
	fi
