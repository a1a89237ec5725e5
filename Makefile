# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv, install anpyc (CPU torch pinned), fetch the offline data sets, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ANPYC_DATA ?= $(HOME)/.cache/anpyc
# locally the quick set; under CI (CI=true, as .ci/run sets it) every test, the slow ones too
PYTEST_ARGS ?= $(if $(CI),,-m "not slow")
BENCH ?= quick
BENCH_ARGS ?=

.PHONY: setup data browser demo test lint bench clean

# pip shows its progress (a first install takes minutes); --quiet only where nothing takes long
$(BIN)/.installed: pyproject.toml
	@echo "setting up $(VENV): pip, then torch 2.13.0 (CPU), then anpyc and its dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --progress-bar on torch==2.13.0
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

data: setup
	$(BIN)/anpyc data fetch mnist --quiet
	$(BIN)/anpyc data fetch fashion-mnist --quiet

# a short comparison where forgetting shows: the first 5 tasks of the pmnist10-domain protocol
# (one head, no task label at test time), each method at its protocol preset, 3 seeds
demo: data
	$(BIN)/anpyc compare --protocol pmnist10-domain --tasks 5 --methods anpyc,ewc,finetune \
	    --seeds 3 --jobs 2 --out demo-out --overwrite

# The HTML-report test opens the page in headless Chromium. Install it where we can (root with
# apt-get); anywhere else carry on without it and that one test skips.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the HTML report test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "warning: could not install chromium; the HTML report test will skip"; \
	else echo "note: no chromium (and not root with apt-get); the HTML report test will skip"; fi

test: data browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports --no-cache

bench: data
	$(BIN)/anpyc bench $(BENCH) --out bench-out/$(BENCH) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache .ruff_cache
