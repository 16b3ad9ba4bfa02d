# Two entry points, both from a fresh clone: `make demo` (main job) and `make test` (whole suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
EXTRAS ?= train,ros,carla,ray,dev

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

# torch==2.13.0 goes in first and stays pinned (constraints.txt): unpinned, it resolves to a CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/metasteer pipeline --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/metasteer bench sim --json

clean:
	rm -rf runs .pytest_cache
