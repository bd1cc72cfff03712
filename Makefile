# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/powerpool check
	$(BIN)/powerpool plan --policy policies/web.toml --snapshot docs/examples/web-night.json
	$(BIN)/powerpool plan --policy policies/web.toml --snapshot docs/examples/web-surge.json
	$(BIN)/powerpool lab --hosts 8 --pdus 2 --speed 240 --duration 60

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check powerpool tests benchmarks
	$(BIN)/ruff format --check powerpool tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
