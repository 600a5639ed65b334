# zoo: `make test`, `make demo`, `make list`, `make train-<name>`, `make evaluate-<name>`,
# `make experiments`, `make experiment-<name>`, `make lint`.
# Every target bootstraps .venv from requirements.lock (generated from pyproject.toml) on first use.
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Raw official data files (optional); without it tfds downloads as usual.
DATA_DIR ?= $(ZOO_DATA_DIR)
export ZOO_DATA_DIR := $(DATA_DIR)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
EPOCHS ?=
DISTRIBUTE ?= none
TRAIN_ARGS := $(if $(EPOCHS),--epochs $(EPOCHS)) --distribute $(DISTRIBUTE)

.PHONY: help venv test test-fast lint lock demo list verify readme-table bench experiments
help:
	@echo "make test | test-fast | lint | demo | list | verify | train-<name> | evaluate-<name>   [DATA_DIR=/raw/data]"
	@echo "make experiments | experiment-<name>   (reports/<name>/: JSON + PNG; see reports/README.md)"
	@echo "make bench | paper-<name>   (speed tables; a paper's schedule for the same minutes)"
	@echo "models: run 'make list'"

$(STAMP): requirements.lock
	@command -v $(PYTHON_BIN) >/dev/null || { echo "need $(PYTHON_BIN) on PATH (or set PYTHON_BIN=)"; exit 1; }
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check zoo training tests
	$(VENV)/bin/mypy

# Re-resolve requirements.lock from pyproject.toml (existing pins are kept unless they must move).
lock: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 -o requirements.lock

demo: $(STAMP)
	$(PY) -m zoo demo

list: $(STAMP)
	@$(PY) -m zoo list

verify: $(STAMP)
	$(PY) -m zoo verify

train-%: $(STAMP)
	$(PY) -m training.train --model $* $(TRAIN_ARGS)

paper-%: $(STAMP)
	$(PY) -m training.paper $*

evaluate-%: $(STAMP)
	$(PY) -m zoo evaluate $*

readme-table: $(STAMP)
	$(PY) -m training.readme

export-onnx-%: $(STAMP)
	$(PY) -m zoo convert onnx $*

export-tflite-%: $(STAMP)
	$(PY) -m zoo convert tflite $*

bench: $(STAMP)
	$(PY) -m training.bench --update-readme

experiment-%: $(STAMP)
	$(PY) -m training.experiments $*

experiments: $(STAMP)
	$(PY) -m training.experiments all
