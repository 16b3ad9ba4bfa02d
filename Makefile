# Two entry points, both from a fresh clone: `make demo` (main job) and `make test` (whole suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
EXTRAS ?= train,ros,carla,ray,dev
# pytest-xdist processes: serially the suite keeps ~1.2 of 2 cores busy
TEST_WORKERS ?= 2

.PHONY: setup demo test test-fast bench models clean

setup: $(VENV)/.installed

# torch==2.13.0 goes in first and stays pinned (constraints.txt): unpinned, it resolves to a CUDA build.
$(VENV)/.installed: pyproject.toml setup.py constraints.txt ros2_ws/build_interfaces.py ros2_ws/src/carla_msgs/package.xml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(BIN)/python ros2_ws/build_interfaces.py  # carla_msgs into the venv: importable with no sourcing
	touch $@

demo: setup
	$(BIN)/metasteer pipeline --size demo --out runs/demo

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-fast: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

bench: setup
	$(BIN)/metasteer bench sim --json
	$(BIN)/metasteer bench closed-loop --json
	$(BIN)/metasteer bench train-step --json
	$(BIN)/metasteer bench meta-step --json
	$(BIN)/metasteer bench node-latency --model models/learned.onnx --json
	$(BIN)/metasteer bench node-latency --model models/learned-int8.onnx --json
	$(BIN)/metasteer bench sample-efficiency --json
	$(BIN)/metasteer bench events-curve --steps 2000 --episodes 24 --json
	$(BIN)/metasteer bench dagger-curve --run runs/models --json  # needs `make models` first

# Regenerates models/{mse,oversample,learned}.onnx and their cards with the project's own pipeline (seed 0),
# then the int8 copy of the learned model and its closed-loop check against the float one (held-out routes).
models: setup
	$(BIN)/metasteer pipeline --out runs/models --seed 0
	for m in mse oversample learned; do cp runs/models/export/$$m.onnx runs/models/export/$$m.md models/; done
	$(BIN)/metasteer quantize models/learned.onnx --out models/learned-int8.onnx
	$(BIN)/metasteer compare models/learned.onnx models/learned-int8.onnx --out runs/models/compare/int8 --abnormal-rate 0.1 --episodes 48 --max-time-s 150  # the pipeline's held-out routes

clean:
	rm -rf runs .pytest_cache
