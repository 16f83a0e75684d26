# Two commands set up everything on a fresh machine:
#   make run   installs Socle into .venv and starts it with its embedded defaults
#   make test  installs the dev extras and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# llama-cpp-python compiles llama.cpp from source: build only the library Socle loads.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test install dev lint typecheck bench docs clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The CPU build of PyTorch first: a plain "torch" requirement would pull GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

run: install
	$(BIN)/socle serve

# The console's browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff format --check socle tests bench
	$(BIN)/ruff check socle tests bench

typecheck: dev
	$(BIN)/mypy

docs: dev
	$(BIN)/python -m socle.cli.docgen

bench: dev
	$(BIN)/python bench/gateway_overhead.py --governance
	$(BIN)/python bench/inference.py
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/guardrails.py

clean:
	rm -rf $(VENV) .socle build *.egg-info
