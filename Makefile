# One command to see it work (`make demo`), one to prove it (`make test`).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: install demo test test-fast lint synth cdk-synth lock bench browser clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mlcycle run examples/customer-churn.csv --spec examples/customer-churn.yaml --bake-seconds 2

# On every core (at most 4: each worker may hold a whole local run), a test file per worker.
PYTEST_WORKERS := -n auto --maxprocesses 4 --dist loadfile

test: install
	$(BIN)/pytest $(PYTEST_WORKERS)

test-fast: install
	$(BIN)/pytest $(PYTEST_WORKERS) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cfn-lint

synth: install
	$(BIN)/python -c "from mlcycle.local.assembly import ensure_assembly; print(ensure_assembly())"

# The same synth through the aws-cdk CLI pinned in package.json (what `cdk deploy` runs).
cdk-synth: install node_modules/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" npx cdk synth --quiet

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Re-pin the runtime dependencies (local development and the pipeline image share them).
lock: install
	mkdir -p .cache
	$(BIN)/pip install --dry-run --quiet --ignore-installed --report .cache/lock.json .
	$(BIN)/python -m infra.lock .cache/lock.json requirements.lock

# Benchmarks: run on demand, each prints ratios against a baseline measured in the same run.
bench: install
	$(BIN)/python bench/stages.py
	$(BIN)/python bench/endpoint.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/drift_sensitivity.py
	$(BIN)/python bench/evaluation.py
	$(BIN)/python bench/tuning.py
	$(BIN)/python bench/bootstrap.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/parts.py

# Headless chromium for tests/browser (they skip without it). Installing needs root or sudo;
# without either it says why and succeeds, so `make test` never depends on it.
browser:
	@if command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "browser: chromium is not installed and installing it needs root or sudo;" \
		"tests/browser will be skipped"; exit 0; fi; \
	if $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
		--no-install-recommends chromium; then :; \
	else echo "browser: apt-get could not install chromium; tests/browser will be skipped"; fi

clean:
	rm -rf cdk.out mlcycle-out .pytest_cache .mypy_cache .ruff_cache
