# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make demo   build .venv, then run the whole job end to end on embedded defaults
#   make test   build .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := $(VENV)/.uv/bin/uv
# uv installs into our venv with its own interpreter; it never downloads a Python. Like pip,
# it compiles what it installs to bytecode (uv does not by default), so that every command
# starts without compiling its imports (0.4 s each where PYTHONDONTWRITEBYTECODE is set).
UV_ENV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON=$(BIN)/python UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1

.PHONY: demo test lint format bench soak clean system-deps upgrade check-latest

# Installs exactly what uv.lock records (with hashes), then the project itself, without
# resolving again: a fresh clone gets the versions the suite last passed with. uv comes from
# PyPI at a pinned version and lives in $(VENV)/.uv, outside the environment it manages.
$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "campaign needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(VENV)/.uv "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV_ENV) $(UV) sync --frozen --quiet --extra dev
	$(BIN)/python -m compileall -q campaign
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/campaign demo

# Two workers (pytest-xdist; CI has 2 cores and the suite waits on servers more than it
# computes), then, in one process, the tests of the loopback Postfix and Dovecot: they share
# one server and its Maildirs. (xdist's --dist loadgroup would keep them on one worker, but
# it has no effect under pytest 9.) TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not mta and not imap"
	$(BIN)/python -m pytest -q -p no:xdist -m "mta or imap"

lint: $(STAMP)
	$(BIN)/ruff check campaign tests benchmarks
	$(BIN)/ruff format --check campaign tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format campaign tests benchmarks
	$(BIN)/ruff check --fix campaign tests benchmarks

$(VENV)/.bench: $(STAMP) uv.lock
	$(UV_ENV) $(UV) sync --frozen --quiet --extra dev --extra bench
	@touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/render.py
	PYTHON=$(BIN)/python bash benchmarks/startup.sh
	$(BIN)/python benchmarks/dispatch.py
	$(BIN)/python benchmarks/receipts.py
	$(BIN)/python benchmarks/pdf.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/serve.py

soak: $(STAMP)
	$(BIN)/python benchmarks/crash_soak.py

# Refresh uv.lock to the newest releases the ranges in pyproject.toml allow, and install
# them. Commit the new lock only after `make test` passes with it (README, "Upgrading").
upgrade: $(UV)
	$(UV_ENV) $(UV) lock --upgrade
	$(UV_ENV) $(UV) sync --frozen --quiet --extra dev
	@touch $(STAMP)
	@echo "uv.lock refreshed; run 'make test' and commit uv.lock only if it passes"

# The newest and the lowest releases the ranges allow, each in a throwaway venv (not CI).
check-latest: $(UV)
	UV=$(UV) bash scripts/check-latest.sh

system-deps:
	sudo bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
