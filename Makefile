# Everything starts from nothing: a machine with Python 3.11+, pip and make.
# `make test` builds .venv, installs the project with its pinned tools, and checks it all.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv generate check-generated lint typecheck pytest test demo bench clean

help:
	@echo "make test             lint, type-check, check generated/, run the tests"
	@echo "make demo             run the examples against a local fake server"
	@echo "make generate         regenerate generated/ from openapi/*.yaml"
	@echo "make check-generated  fail if generated/ does not match openapi/*.yaml"
	@echo "make bench            run the benchmarks in tests/benchmarks/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --editable '.[dev]'
	@touch $@

venv: $(STAMP)

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

check-generated: $(STAMP)
	$(BIN)/python scripts/generate.py --check

lint: $(STAMP)
	$(BIN)/ruff check facade scripts tests
	$(BIN)/ruff format --check facade scripts tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict facade scripts

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck check-generated pytest

demo: $(STAMP)
	@echo "make demo: coming soon (the facade and its fake server land with the next issues)."

bench: $(STAMP)
	@echo "make bench: no benchmarks yet."

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
