# vae_notebooks: `make train` runs the main job, `make test` runs every check CI runs.
# Everything happens in the virtual environment .venv, created and filled on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.install-stamp
PIP := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt
# OpenMP threads sleep instead of spinning while they wait: on a shared, busy machine torch's spinning default
# ran training 3-50x slower (nbs/60a_runtime.ipynb); on an idle one passive waiting costs about 40%.
# Exported to every target and the kernels they start (papermill, JupyterLab); a value already in your
# environment wins (`OMP_WAIT_POLICY=ACTIVE make train` on a machine that is yours alone).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install train test test-fast docs docs-check docs-js lab sync readme clean-runs help

help:
	@echo "make train   install, then run the main job: papermill nbs/train_mri.ipynb runs/train_mri.ipynb"
	@echo "make test    install, then: nbdev-export/nbdev-clean change nothing, nbdev-test, pytest, docs site + browser check"
	@echo "make docs    nbdev-docs where Quarto is installed, else the offline site in _docs/ (open _docs/index.html)"
	@echo "make docs-check  load every page of _docs/ in headless Chromium and fail on raw maths, undrawn diagrams,"
	@echo "             broken internal links or visible directives (needs Debian's chromium)"
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
	@$(PY) -c "from vae_notebooks.train import run_summary_text; print(run_summary_text('runs/mri', 'mri'))"
	@echo "Report: runs/train_mri.ipynb (open in JupyterLab: make lab), run folder: runs/mri/"

test: install
	$(PY) tools/check_sync.py
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest
	OMP_NUM_THREADS=1 $(PY) tools/docs_site.py
	$(PY) tools/docs_browser_check.py

# MathJax and mermaid.js for the offline site: pinned files from the npm registry (npm pack), kept in .cache/docs-js/.
docs-js: install
	$(PY) tools/docs_site.py --vendor-only

docs: install
	@if command -v quarto >/dev/null; then $(BIN)/nbdev-docs; else echo "Quarto not installed: building the offline site with tools/docs_site.py"; OMP_NUM_THREADS=1 $(PY) tools/docs_site.py; fi

docs-check: install
	$(PY) tools/docs_browser_check.py

# Jupyter refuses to start as root without --allow-root (containers run as root).
lab: install
	$(BIN)/jupyter lab nbs/ $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

sync: install
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(PY) tools/sidebar.py
	$(PY) tools/readme.py

clean-runs:
	rm -rf runs nbs/runs
