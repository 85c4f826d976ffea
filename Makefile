# vae_notebooks: `make train` runs the main job, `make test` runs every check CI runs.
# Everything happens in the virtual environment .venv, created and filled on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.install-stamp
PIP := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: install train test test-fast docs lab sync readme clean-runs help

help:
	@echo "make train   install, then run the main job: papermill nbs/train_mri.ipynb runs/train_mri.ipynb"
	@echo "make test    install, then: nbdev-export/nbdev-clean change nothing, nbdev-test, pytest, docs check"
	@echo "make docs    nbdev-docs where Quarto is installed, else the docs check (HTML in _docs/)"
	@echo "make lab     JupyterLab on nbs/ with the project's kernel"
	@echo "make sync    re-export the package, clean notebooks, regenerate README.md and nbs/sidebar.yml"

# Idempotent install: re-runs only when pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

train: install
	@mkdir -p runs
	$(BIN)/papermill nbs/train_mri.ipynb runs/train_mri.ipynb -k python3 --log-output --progress-bar
	@echo "Report: runs/train_mri.ipynb (open in JupyterLab), run folder: runs/mri/"

test: install
	$(PY) tools/check_sync.py
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest
	$(PY) tools/docs_check.py

docs: install
	@if command -v quarto >/dev/null; then $(BIN)/nbdev-docs; else echo "Quarto not installed: running the docs check instead"; $(PY) tools/docs_check.py; fi

lab: install
	$(BIN)/jupyter lab nbs/

sync: install
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(PY) tools/sidebar.py
	$(PY) tools/readme.py

clean-runs:
	rm -rf runs nbs/runs
