# Everything starts from nothing: a machine with Python 3.11+, pip and make.
# `make test` builds .venv, installs the project with its pinned tools, and checks it all.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv generate check-generated update-specs lint typecheck pytest test demo bench fuzz soak clean

help:
	@echo "make test             lint, type-check, check generated/, run the tests"
	@echo "make demo             run the examples against a local fake server"
	@echo "make generate         regenerate generated/ from openapi/*.yaml"
	@echo "make check-generated  fail if generated/ does not match openapi/*.yaml"
	@echo "make update-specs     fetch the docs, report spec changes, regenerate (ARGS=--check to only compare)"
	@echo "make bench            run the benchmarks in tests/benchmarks/"
	@echo "make fuzz             the property-based fuzzing, with many more examples"
	@echo "make soak             the 10,000-task soak test against a faulty fake server"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --editable '.[dev]'
	@touch $@

venv: $(STAMP)

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

check-generated: $(STAMP)
	$(BIN)/python scripts/generate.py --check

update-specs: $(STAMP)
	$(BIN)/python scripts/update_specs.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check facade scripts tests
	$(BIN)/ruff format --check facade scripts tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict facade scripts

# Two workers: the suite waits on sockets and sleeps more than it computes (5 min alone, 2.5 with -n 2).
pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2

test: lint typecheck check-generated pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The throughput benchmarks need nginx (a server that is never the bottleneck); as root, install it when missing.
bench: $(STAMP)
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light)
	$(BIN)/python tests/benchmarks/run.py $(ARGS)

fuzz: $(STAMP)
	MOUNTSEA_FUZZ=long $(BIN)/python -m pytest -q tests/test_fuzz.py

soak: $(STAMP)
	MOUNTSEA_SOAK_TASKS=10000 $(BIN)/python -m pytest -q tests/test_soak.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
