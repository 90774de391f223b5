# Two commands on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cytolens-installed
PYTEST_ARGS ?=
STARDIST := build/stardist-env/.installed

.PHONY: install demo test lint format bench clean

# torch first, from the CPU wheel (any other spec pulls gigabytes of CUDA), then the package.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/cytolens demo --out demo-out

test: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/pytest -n 2 src tests $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: install
	$(VENV)/bin/ruff format src tests benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

# Benchmarks against peers; each writes benchmarks/results/<name>.json and .md
# (segmentation_<part>.py are parts of segmentation.py; harness/ctc_reference are helpers).
bench: install $(STARDIST)
	@set -e; for script in benchmarks/*.py; do \
		case "$$(basename $$script)" in harness.py|ctc_reference.py|segmentation_*.py) continue;; esac; \
		echo "== $$script"; $(PY) $$script; \
	done

# StarDist (TensorFlow) lives in its own environment: the peer of benchmarks/segmentation.py
$(STARDIST):
	python3 -m venv build/stardist-env
	build/stardist-env/bin/pip install --quiet tensorflow-cpu stardist csbdeep tifffile imageio
	touch $(STARDIST)

clean:
	rm -rf demo-out .pytest_cache .ruff_cache .hypothesis
