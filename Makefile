# Quick start: `make demo` (self-distillation on bundled photos, a few minutes on a CPU) and `make test`.
# Each creates the virtual environment .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.srdistill-installed

.PHONY: demo test lint

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .

# torch first and pinned: BasicSR's build needs it, and the pin keeps pip off the CPU-only 2.13 wheel
# (it cannot load any torchvision from the registry). --no-build-isolation lets BasicSR's build see it.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $@
