# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the virtualenv .venv and installs cnnlab into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser postgres demo test test-fast lint bench accuracy clean

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

# The shared-study test of cnnlab tune (tests/test_tune.py) starts a PostgreSQL server on 127.0.0.1 from
# Debian's postgresql binaries (as the user postgres when run as root). Installed with apt-get when missing
# and we are root; otherwise, or if apt-get fails, that one test is skipped.
postgres:  ## Debian's postgresql for the shared-study test (skipped, not failed, without it)
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's postgresql for the shared-study test"; \
	  (apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1)) || \
	  echo "Could not install postgresql: the shared-study test will be skipped"; \
	else echo "No PostgreSQL server (install the Debian package postgresql as root): the shared-study test will be skipped"; fi

demo: install  ## train and evaluate an MLP on scikit-learn's bundled digits (no download)
	$(BIN)/cnnlab train experiments/digits_mlp.yaml
	$(BIN)/cnnlab evaluate

test: install browser postgres  ## the whole suite, slow end-to-end tests and the browser and PostgreSQL tests, 2 processes
	$(BIN)/python -m pytest -n 2

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check cnnlab tests benchmarks

bench: install  ## timing and accuracy figures (see BENCHMARKS.md); needs ../shared/datasets/mnist.npz
	$(BIN)/python benchmarks/host_check.py --seconds 10
	$(BIN)/python benchmarks/whole_process.py
	$(BIN)/python benchmarks/augmentation_throughput.py
	$(BIN)/python benchmarks/throughput.py --memory
	$(BIN)/python benchmarks/callback_cost.py
	$(BIN)/python benchmarks/callback_cost.py --precision mixed_bfloat16
	$(BIN)/python benchmarks/time_to_accuracy.py experiments/mnist_fast.yaml
	$(BIN)/python benchmarks/time_to_accuracy.py experiments/mnist_fast.yaml --set training.precision=float32
	$(BIN)/python benchmarks/setup_search.py
	$(BIN)/python benchmarks/backends.py experiments/mnist_deep_cnn.yaml --contenders tensorflow jax jax:2
	$(BIN)/python benchmarks/profile_precision.py

accuracy: install  ## the accuracy table (README.md) and transfer figures: hours on 2 cores; runs kept in runs-accuracy/
	$(BIN)/python benchmarks/accuracy_table.py experiments/mnist_best.yaml --seeds 42,1,2,3,4 --ensemble 3,5
	$(BIN)/python benchmarks/accuracy_table.py experiments/digits_cnn.yaml
	$(BIN)/python benchmarks/accuracy_table.py experiments/mnist_deep_cnn.yaml experiments/mnist_augment.yaml \
	  experiments/mnist_batch_norm.yaml experiments/mnist_onecycle.yaml experiments/mnist_label_smoothing.yaml \
	  experiments/mnist_step_decay.yaml --set training.precision=mixed_bfloat16
	$(BIN)/python benchmarks/accuracy_table.py experiments/mnist_best.yaml --set training.precision=float32
	$(BIN)/python benchmarks/transfer_mnist.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
