# The two quickstart commands: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-postgres lint bench clean lock

# .venv is installed from the lock files, never resolved afresh: every package of the tree at
# the version and with the hashes that were tested (README, "Updating dependencies").
# requirements-dev.lock = requirements.lock (what the image runs) + the test extras + CI tools.
# The project itself goes in without build isolation: its build backend (setuptools) is locked too.
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolves the lock files from pyproject.toml and requirements-ci.txt with uv (pinned here;
# it runs from its own .venv-lock), for every platform (--universal) and with every file's hash.
# Versions already locked are kept unless a pin moved them; LOCK_ARGS=--upgrade takes the newest
# of everything, LOCK_ARGS="--upgrade-package NAME" of one package.
UV_VERSION := 0.13.8
LOCK_VENV := .venv-lock
LOCK_ARGS ?=
UV_COMPILE := $(LOCK_VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock:
	test -x $(LOCK_VENV)/bin/uv && $(LOCK_VENV)/bin/uv --version | grep -q " $(UV_VERSION)" || \
		{ $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(UV_COMPILE) pyproject.toml -o requirements.lock
	$(UV_COMPILE) pyproject.toml --extra test --extra bench requirements-ci.txt -c requirements.lock -o requirements-dev.lock

run: $(STAMP)
	$(BIN)/python -m sidecar --demo

# Two pytest worker processes (pytest-xdist): most of a test's time is spent waiting for a sidecar
# process, a fake server or PostgreSQL, so two workers on two cores take about half the time of
# one. Every test has its own folders, ports and databases. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(PYTEST)

# The suites that read and write the state (message path, reliability, operator surface, console)
# once more, on PostgreSQL (tests/backends.py): CONNECTOR_TEST_PG_URL names a server (a role
# that may create databases), else a throw-away cluster is started with scripts/pg-cluster.
# tests/state and tests/postgres run on both back-ends in `make test` already. Left out (PG_SKIP):
# what never reads the state differently on another back-end: config parsing and reloading, the
# CLI, log lines, the HTTP/1.1 client, pure units, crew back-end protocols, terminal layout.
PG_SUITES := tests/sidecar tests/reliability tests/console
PG_SKIP := tests/sidecar/crew tests/sidecar/config tests/sidecar/test_config_reload.py \
	tests/sidecar/test_cli.py tests/sidecar/test_logs.py tests/sidecar/test_http11.py tests/sidecar/test_units.py \
	tests/sidecar/test_policy.py tests/sidecar/test_supervise.py tests/console/test_small_terminal.py \
	tests/console/test_import_hygiene.py
test-postgres: $(STAMP)
	CONNECTOR_TEST_BACKEND=postgres $(PYTEST) $(PG_SUITES) $(addprefix --ignore=,$(PG_SKIP))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Benchmarks (issue 7); not part of `make test`. BENCH_ARGS="--wal-seconds 300" for the full soak.
BENCH_ARGS ?=
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then apt-get install -y wrk || \
		{ apt-get update && apt-get install -y wrk; }; else echo "bench needs wrk: sudo apt-get install -y wrk"; exit 1; fi; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .ruff_cache
