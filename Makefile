# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv, install anpyc (CPU torch pinned), fetch the offline data sets, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ANPYC_DATA ?= $(HOME)/.cache/anpyc
PYTEST_ARGS ?= -m "not slow"
BENCH ?= quick

.PHONY: setup data demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

data: setup
	$(BIN)/anpyc data fetch mnist --quiet
	$(BIN)/anpyc data fetch fashion-mnist --quiet

demo: data
	$(BIN)/anpyc compare --methods anpyc,finetune --benchmark permuted-mnist --tasks 5 \
	    --subsample 5000 --epochs 1 --seeds 1 --out demo-out --overwrite

test: data
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests

bench: data
	$(BIN)/anpyc bench $(BENCH) --out bench-out/$(BENCH)

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache .ruff_cache
