# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the virtualenv .venv and installs cnnlab into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install  ## train and evaluate an MLP on scikit-learn's bundled digits (no download)
	$(BIN)/cnnlab train experiments/digits_mlp.yaml
	$(BIN)/cnnlab evaluate

test: install  ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check cnnlab tests benchmarks

bench: install  ## timing and accuracy figures (see BENCHMARKS.md); needs ../shared/datasets/mnist.npz
	$(BIN)/python benchmarks/augmentation_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
