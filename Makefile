# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the virtualenv .venv and installs cnnlab into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser demo test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The report's browser test (tests/test_report.py) drives Debian's chromium through pip's
# playwright (Playwright's own browser download cannot work offline). Installed with apt-get
# when missing and we are root; otherwise, or if apt-get fails, that one test is skipped.
CHROMIUM ?= /usr/bin/chromium

browser:  ## Debian's chromium for the report's browser test (skipped, not failed, without it)
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's chromium for the report's browser test"; \
	  (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1)) || \
	  echo "Could not install chromium: the report's browser test will be skipped"; \
	else echo "No $(CHROMIUM) (install the Debian package chromium as root): the report's browser test will be skipped"; fi

demo: install  ## train and evaluate an MLP on scikit-learn's bundled digits (no download)
	$(BIN)/cnnlab train experiments/digits_mlp.yaml
	$(BIN)/cnnlab evaluate

test: install browser  ## the whole suite, slow end-to-end tests and the browser test included
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check cnnlab tests benchmarks

bench: install  ## timing and accuracy figures (see BENCHMARKS.md); needs ../shared/datasets/mnist.npz
	$(BIN)/python benchmarks/host_check.py --seconds 10
	$(BIN)/python benchmarks/augmentation_throughput.py
	$(BIN)/python benchmarks/throughput.py --memory
	$(BIN)/python benchmarks/time_to_accuracy.py experiments/mnist_fast.yaml
	$(BIN)/python benchmarks/time_to_accuracy.py experiments/mnist_fast.yaml --set training.precision=float32

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
