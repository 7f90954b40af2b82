# journey: `make demo` runs the pipeline on the embedded default; `make test` runs the tests.
# Both set up .venv first when needed (torch's CPU build first, then the project).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out

.PHONY: setup demo experiment rl-experiment scale-curve tcg-experiment test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	DEMO_DIR=$(DEMO_DIR) PATH=$(abspath $(VENV))/bin:$$PATH bash examples/demo.sh

experiment: setup
	PATH=$(abspath $(VENV))/bin:$$PATH HF_HUB_OFFLINE=1 $(PY) examples/part1_experiment.py --out experiment-out

rl-experiment: setup
	PATH=$(abspath $(VENV))/bin:$$PATH HF_HUB_OFFLINE=1 $(PY) examples/rl_experiment.py --out rl-out

scale-curve: setup
	PATH=$(abspath $(VENV))/bin:$$PATH HF_HUB_OFFLINE=1 $(PY) examples/scale_curve.py --out scale-out

tcg-experiment: setup
	PATH=$(abspath $(VENV))/bin:$$PATH HF_HUB_OFFLINE=1 $(PY) examples/tcg_experiment.py --out tcg-out

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check journey tests examples benchmarks

bench: setup
	$(PY) benchmarks/bench_build_tree.py

clean:
	rm -rf $(DEMO_DIR) experiment-out rl-out scale-out tcg-out .pytest_cache
