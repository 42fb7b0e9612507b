# One command to see it work (`make demo`), one to prove it (`make test`).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: install demo test test-fast lint synth bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mlcycle run examples/customer-churn.csv --spec examples/customer-churn.yaml

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

synth: install
	$(BIN)/python -c "from mlcycle.local.assembly import ensure_assembly; print(ensure_assembly())"

bench: install
	$(BIN)/python bench/stages.py

clean:
	rm -rf cdk.out mlcycle-out .pytest_cache .mypy_cache .ruff_cache
