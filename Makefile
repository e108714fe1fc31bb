# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make demo   build .venv, then run the whole job end to end on embedded defaults
#   make test   build .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench soak clean system-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "campaign needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/campaign demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check campaign tests benchmarks
	$(BIN)/ruff format --check campaign tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format campaign tests benchmarks
	$(BIN)/ruff check --fix campaign tests benchmarks

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/render.py
	PYTHON=$(BIN)/python bash benchmarks/startup.sh
	$(BIN)/python benchmarks/dispatch.py
	$(BIN)/python benchmarks/receipts.py
	$(BIN)/python benchmarks/pdf.py
	$(BIN)/python benchmarks/workers.py

soak: $(STAMP)
	$(BIN)/python benchmarks/crash_soak.py

system-deps:
	sudo bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
