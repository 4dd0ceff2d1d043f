# The interface: `make up` (run Conveyor on the embedded default) and `make test`. CI runs the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BENCH_VENV := .venv-bench

.PHONY: up install install-test browser test test-fast chaos lint fmt bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[embedded]'
	touch $@

$(TEST_STAMP): pyproject.toml constraints.txt tests/jobtypes/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[embedded,test]' -e tests/jobtypes
	touch $@ $(STAMP)

install: $(STAMP)
install-test: $(TEST_STAMP)

## up: migrate and run api + worker + beat + flower on the embedded default (SQLite + private Redis)
up: install
	$(BIN)/conveyor up

## browser: Debian's Chromium, which the console's browser tests drive (Playwright cannot download its own browsers here)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "No Chromium, and no root to install it (apt-get install -y chromium): the browser tests skip." >&2

# The TypeScript client generator and tsc that tests/api/test_openapi_clients.py runs (tests/clients/package-lock.json).
CLIENT_TOOLS := tests/clients/node_modules/.installed
$(CLIENT_TOOLS): tests/clients/package.json tests/clients/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/clients --no-audit --no-fund --silent && touch $@; \
		else echo "No npm: the TypeScript client check skips (install Node.js 20+)." >&2; fi

## test: the suite, on the embedded default and (when they answer) PostgreSQL + Redis, with the fault-injection smoke subset
test: install-test browser $(CLIENT_TOOLS)
	$(BIN)/python -m pytest -q -m "not chaos"

## chaos: every fault-injection scenario; prints the ledger table and writes var/chaos/*.json
chaos: install-test
	$(BIN)/python -m pytest -q tests/faults

## test-fast: everything but the end-to-end tests
test-fast: install-test
	$(BIN)/python -m pytest -q -m "not e2e and not chaos"

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The pandas baseline of bench/ingest.py lives in a venv of its own: pandas brings NumPy, which pyarrow then loads
# too (12 MB), and Conveyor's own venv, like a deployment, has neither.
$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -c constraints.txt pandas sqlalchemy 'psycopg[binary]'

## bench: ingest vs psql \copy and pandas; throughput vs bare Celery and the hand-rolled app (single, batch); bytes written per job; latency; scaling 1→2→4; pruner; fan-in vs a Celery chord; failure groups over 1M failures; the same speed with 10M finished jobs in the ledger; a backlog of 1M drained
bench: install-test $(BENCH_VENV)/bin/python
	$(BIN)/python bench/ingest.py --pandas-python $(BENCH_VENV)/bin/python
	$(BIN)/python bench/api_load.py
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/ledger_writes.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/queue_throughput.py --backends services --concurrency 1,2,4 --jobs 2000 --name scaling
	$(BIN)/python bench/prune.py
	$(BIN)/python bench/fan_in.py
	$(BIN)/python bench/failure_groups.py
	$(BIN)/python bench/ledger_scale.py --backend services
	$(BIN)/python bench/ledger_scale.py --backend embedded
	$(BIN)/python bench/backlog.py --backend services
	$(BIN)/python bench/backlog.py --backend embedded

clean:
	rm -rf $(VENV) $(BENCH_VENV) var .pytest_cache .mypy_cache .ruff_cache
