# eqt: two commands on a fresh machine.
#   make test   - create .venv, install torch (CPU build) + eqt[test,train,bench], run the tests
#                 (bench = torchmd-net 3.1.0, so the weight-transplant test runs)
#   make demo   - the main job end to end (see README)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
TORCH   := torch==2.13.0
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: test demo bench venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Install torch first from the pinned CPU build (a bare `torch` pulls GBs of CUDA wheels), then
# the package with the constraint so nothing upgrades it.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -e ".[test,train,bench]"
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

demo: $(VENV)/.installed
	$(BIN)/python -m eqt.demo

# Speed benchmark against torchmd-net (side by side, same weights).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_et_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
