# tandem: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install browser demo test test-unit test-integration check lint types imports bench chaos up down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "tandem needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install tandem with its dev tools

# The console's browser test drives Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser build: these machines reach only package registries).
browser: ## Debian's chromium for the console's browser test, installed when missing
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

demo: $(STAMP) ## the main job: the end-to-end demo on the embedded broker (USERS=N for more users)
	$(BIN)/tandem demo $(if $(USERS),--users $(USERS))

# Two pytest workers: each starts its own broker and PostgreSQL (session fixtures), and the
# integration tests spend much of their time waiting on the subprocesses they drive.
# worksteal hands the long tests out as workers free up instead of in fixed chunks.
TEST_WORKERS ?= 2

test: $(STAMP) browser ## every test, unit and integration (starts its own broker per worker)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test-unit: $(STAMP) ## unit tests only
	$(BIN)/python -m pytest -m "not integration"

test-integration: $(STAMP) browser ## integration tests only
	$(BIN)/python -m pytest -m integration

check: lint types imports ## what CI checks besides the tests: lint, types, import boundaries

lint: $(STAMP)
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP) ## every benchmark; writes bench/results.json
	$(BIN)/python -m bench.run

chaos: $(STAMP) ## crashes, broker outage, hostile input, HTTP fuzz, blast radius, security; writes bench/chaos.json
	$(BIN)/tandem chaos

up: $(STAMP) ## start broker, workers and serving API in the background (logs in .tandem/logs)
	$(BIN)/tandem up

down: $(STAMP) ## stop what `make up` started
	$(BIN)/tandem down

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .tandem .pytest_cache .mypy_cache .ruff_cache .hypothesis
