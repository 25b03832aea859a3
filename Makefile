# The two commands a new user needs: `make demo` (the main job) and `make test` (every tier).
# Both create .venv and install what they need; nothing else has to be on the machine but
# python3 (3.11+) and, for the local control plane, Go.

PYTHON ?= python3
# Go builds the local control plane and helm; the usual install location need not be on PATH.
export PATH := $(PATH):/usr/local/go/bin
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit install clean bench wasm-toolchain

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lab]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests compile C guests to wasm32-wasi with Debian's clang-14, lld-14 and wasi-libc.
WASM_CC_PACKAGES := clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

wasm-toolchain:
	@dpkg -s $(WASM_CC_PACKAGES) >/dev/null 2>&1 || { \
		echo "installing the wasm32-wasi C toolchain: $(WASM_CC_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(WASM_CC_PACKAGES); }

# --go-prebuild: the Go tools the e2e tier needs build in the background while the tiers before it run
# (tests/gobuilds.py); the tiers run in order, unit, component, then e2e.
test: lint typecheck wasm-toolchain
	$(BIN)/pytest -m "not bench" --go-prebuild $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m warmpool.demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/warmpool bench runtime
	$(BIN)/warmpool bench scaling

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
