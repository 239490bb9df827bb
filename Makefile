# Two entry points for a fresh machine: `make demo` (train on real FashionMNIST) and `make test`.
# Both create .venv in the repo root if it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qfed-installed
DEBIAN_DATA := /usr/share/datasets/fashion-mnist
DEMO_CONFIG ?= configs/quickstart.toml
PYTEST_ARGS ?=

.PHONY: venv data demo test lint typecheck pytest notebooks test-slow bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the releases that install (and import together) on this kind of machine.
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[dev,flower]"
	@touch $(STAMP)

# Real FashionMNIST: Debian's dataset-fashion-mnist when we are root and it is missing;
# otherwise the loader falls back to QFED_DATA_DIR / torchvision's download.
data:
	@if [ -f $(DEBIAN_DATA)/train-images-idx3-ubyte.gz ]; then \
		echo "FashionMNIST: $(DEBIAN_DATA)"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "FashionMNIST not in $(DEBIAN_DATA); it will be read from QFED_DATA_DIR or downloaded by torchvision"; \
	fi

# The demo ends with what this toolkit measures: the trained model's exact test accuracy beside
# its accuracy with the QNN on noisy Aer (depolarizing-1e-3, 4096 shots), in one line.
DEMO_RUN ?= runs/quickstart

demo: venv data
	$(BIN)/qfed-qiskit train --config $(DEMO_CONFIG) --overwrite
	$(BIN)/qfed-qiskit evaluate --run $(DEMO_RUN) --backend aer-noisy

lint: venv
	$(BIN)/ruff check qfed_qiskit tests benchmarks
	$(BIN)/ruff format --check qfed_qiskit tests benchmarks

typecheck: venv
	$(BIN)/mypy

# pytest exit 5 means "no tests collected": report it and fail, so an empty run is never green.
pytest: venv
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# The notebooks, top to bottom in a Jupyter kernel (nbmake), with their small settings; they read
# the real FashionMNIST (the data target) and skip their training cells, saying so, without it.
notebooks: venv data
	$(BIN)/python -m pytest --nbmake --nbmake-timeout=1800 -p no:cacheprovider notebooks/

test: lint typecheck pytest notebooks

test-slow: venv
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
