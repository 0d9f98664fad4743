# `make demo` and `make test` each set up a fresh machine from nothing, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the venv's tools (ninja, for the C++ engine's first-use build) come first on PATH
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
TORCH_VERSION := 2.13.0

.PHONY: demo test test-all lint format clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel when none is there, so nothing pulls CUDA builds
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	# hold torch at whatever is installed while everything else resolves
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	# the adding problem with a standard, then a peephole LSTM (predicting the mean scores 0.167)
	$(VENV)/bin/lstmkit train configs/adding.yaml --set trainer.output_dir=runs/demo
	$(VENV)/bin/lstmkit train configs/adding.yaml --set trainer.output_dir=runs/demo \
		--set model.variant=peephole --set trainer.name=adding-peephole

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q -n 2 -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
