# journey: `make demo` runs the pipeline on the embedded default; `make test` runs the tests.
# Both set up .venv first when needed (torch's CPU build first, then the project).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-out
DEMO_REAL_DIR ?= demo-real-out

.PHONY: setup demo demo-real experiment rl-experiment scale-curve tcg-experiment test lint bench llamacpp clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	DEMO_DIR=$(DEMO_DIR) PATH=$(abspath $(VENV))/bin:$$PATH bash examples/demo.sh

demo-real: setup
	DEMO_DIR=$(DEMO_REAL_DIR) PATH=$(abspath $(VENV))/bin:$$PATH bash examples/demo_real.sh

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

# The [llamacpp] extra, built from source (no wheel on PyPI; ~140 objects, 20-60 min on 2 cores).
# Not for the native CPU: on a VM that advertises AMX it cannot run, a native build dies with SIGILL
# on its first completion. AVX2 runs on any x86-64 server since 2013; add -DGGML_AVX512=ON only
# where /proc/cpuinfo lists avx512f. LLAVA_BUILD=OFF: no multimodal library (journey sends text).
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF
llamacpp: setup
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
		$(PY) -m pip install -e '.[llamacpp]'

clean:
	rm -rf $(DEMO_DIR) $(DEMO_REAL_DIR) experiment-out rl-out scale-out tcg-out .pytest_cache
