# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test lint bench clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch from PyPI pulls gigabytes of CUDA packages. On a machine without
	# the local CPU wheel: make demo TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cpu
	$(PY) -m pip install --quiet "numpy<2"
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[data,learned,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/perception3d demo --out demo_out --force

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/perception3d bench all

clean:
	rm -rf $(VENV) build *.egg-info demo_out
