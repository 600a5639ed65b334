# zoo: `make test`, `make demo`, `make list`, `make train-<name>`, `make evaluate-<name>`,
# `make experiments`, `make experiment-<name>`, `make lint`, `make dist`, `make package`, `make pins`,
# `make export-serving DIR=...`, `make export-onnx-<name> | export-tflite-<name> [QUANTIZE=int8|int8-dynamic]`,
# `make formats`.
# Every target bootstraps .venv from requirements.lock (generated from pyproject.toml) on first use.
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Raw official data files (optional); without it tfds downloads as usual. It reaches the
# programs through the environment only, never a shell command line, and is taken literally
# ($(value ...)): a quote, `;` or `$(...)` in a path is text, not shell or make code.
export ZOO_DATA_DIR := $(if $(filter undefined default,$(origin DATA_DIR)),$(value ZOO_DATA_DIR),$(value DATA_DIR))
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
EPOCHS ?=
DISTRIBUTE ?= none
QUANTIZE ?=
ISA ?=
# Not handed to the programs' environment: make would expand their text there (`$(shell ...)`).
# make export-serving DIR=...: the folder, taken literally like DATA_DIR.
export ZOO_SERVING_DIR := $(value DIR)
unexport DATA_DIR EPOCHS DISTRIBUTE DIR QUANTIZE ISA

# Every value that reaches a shell command line is checked here first, with make's own functions
# (a shell would already have run what it holds): model names, EPOCHS, DISTRIBUTE.
empty :=
space := $(empty) $(empty)
tab := $(empty)	$(empty)
define newline


endef
lowercase := a b c d e f g h i j k l m n o p q r s t u v w x y z
digits := 0 1 2 3 4 5 6 7 8 9
# $(call leftover,TEXT,CHARS): TEXT without the CHARS (a list), whitespace shown as `?` ($(if)
# would not see it).
leftover = $(call drop_chars,$(subst $(space),?,$(subst $(tab),?,$(subst $(newline),?,$(1)))),$(2))
drop_chars = $(if $(2),$(call drop_chars,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,$(words $(2)),$(2))),$(1))
# $(call model_name,STEM): the stem of a pattern target when it is a registry name, else stop.
model_name = $(if $(and $(1),$(if $(call leftover,$(1),$(lowercase) $(digits) _),,ok)),$(1),$(error \
  model name '$(1)' must be letters a-z, digits and _ only (see `make list`)))
PATTERN_TARGETS := train paper evaluate export-onnx export-tflite experiment profile
# Goals given on the command line are checked before anything runs (the venv bootstrap included).
checked_goals := $(foreach goal,$(MAKECMDGOALS),$(foreach target,$(PATTERN_TARGETS),\
  $(if $(filter $(target)-%,$(goal)),$(call model_name,$(patsubst $(target)-%,%,$(goal))))))
checked_epochs = $(if $(call leftover,$(value EPOCHS),$(digits)),$(error \
  EPOCHS='$(value EPOCHS)' must be a whole number of epochs, e.g. EPOCHS=3),$(value EPOCHS))
checked_distribute = $(if $(filter none mirrored multi_worker,$(if $(call leftover,$(value DISTRIBUTE),$(lowercase) _),,\
  $(value DISTRIBUTE))),$(value DISTRIBUTE),$(error DISTRIBUTE='$(value DISTRIBUTE)' must be none, mirrored or multi_worker))
checked_quantize = $(if $(filter int8 int8-dynamic,$(if $(call leftover,$(value QUANTIZE),$(lowercase) $(digits) -),,\
  $(value QUANTIZE))),$(value QUANTIZE),$(error QUANTIZE='$(value QUANTIZE)' must be int8 or int8-dynamic (unset: float32)))
checked_isa = $(if $(filter avx2,\
  $(if $(call leftover,$(value ISA),$(lowercase) $(digits)),,$(value ISA))),$(value ISA),\
  $(error ISA='$(value ISA)' must be avx2 (unset: the CPU's own instructions)))
# make bench / bench-peers / profile-<name> ISA=avx2: oneDNN (TensorFlow's and PyTorch's), MKL and PyTorch's
# own kernels kept to AVX2 on a newer CPU, a stand-in for an AVX2-only machine; the training table, the peers
# and the profiles go to reports/isa-avx2/, not the README.
isa_env_avx2 := ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
ISA_ENV = $(if $(value ISA),$(isa_env_$(checked_isa)) )
ISA_OUTPUT = --output reports/isa-$(checked_isa)
BENCH_ARGS = $(if $(value ISA),--training-only --models resnet20_cifar10 cnn_mnist lstm_ptb $(ISA_OUTPUT),--update-readme)
PEERS_ARGS = $(if $(value ISA),$(ISA_OUTPUT),--update-readme)
# Expanded in the export-% recipes only: --precision for zoo convert.
PRECISION_ARGS = $(if $(value QUANTIZE), --precision $(checked_quantize))
# Expanded in the train-% recipe only, so that other targets ignore these variables.
TRAIN_ARGS = $(if $(value EPOCHS),--epochs $(checked_epochs)) --distribute $(checked_distribute)

.PHONY: help venv test test-fast lint lock demo list verify readme-table bench bench-serving bench-peers formats experiments serve dist package pins export-serving
help:
	@echo "make test | test-fast | lint | demo | list | verify | train-<name> | evaluate-<name>   [DATA_DIR=/raw/data]"
	@echo "make experiments | experiment-<name>   (reports/<name>/: JSON + PNG; see reports/README.md)"
	@echo "make bench | bench-serving | bench-peers | paper-<name>   (speed tables; PyTorch beside the zoo; a paper's schedule for the same minutes)"
	@echo "make profile-<name>   (where a train step's time goes, op by op; PyTorch's beside it once bench-peers installed it)"
	@echo "make bench bench-peers profile-<name> ISA=avx2   (kernels kept to AVX2 on a newer CPU: reports/isa-avx2/)"
	@echo "make export-onnx-<name> | export-tflite-<name> [QUANTIZE=int8|int8-dynamic] | formats   (converted files)"
	@echo "make serve   (http://127.0.0.1:8501: TF Serving's REST API and the gallery)"
	@echo "make dist | package | pins | export-serving DIR=/serving/models   (wheel, published archives, TF Serving)"
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
# Every extra but `peers` (PyTorch, for make bench-peers only: never installed by make test or CI).
LOCKED_EXTRAS := data train onnx tflite serve test browser lint
lock: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCKED_EXTRAS:%=--extra %) --python-version 3.11 -o requirements.lock

demo: $(STAMP)
	$(PY) -m zoo demo

list: $(STAMP)
	@$(PY) -m zoo list

verify: $(STAMP)
	$(PY) -m zoo verify

train-%: $(STAMP)
	$(PY) -m training.train --model $(call model_name,$*) $(TRAIN_ARGS)

paper-%: $(STAMP)
	$(PY) -m training.paper $(call model_name,$*)

evaluate-%: $(STAMP)
	$(PY) -m zoo evaluate $(call model_name,$*)

readme-table: $(STAMP)
	$(PY) -m training.readme

# The conversion is made in the cache (<cache>/converted/<name>/), where zoo.load(name, runtime=..., precision=...)
# finds it; QUANTIZE=int8 calibrates on the training split (DATA_DIR=...).
export-onnx-%: $(STAMP)
	$(PY) -m zoo convert onnx $(call model_name,$*)$(PRECISION_ARGS)

export-tflite-%: $(STAMP)
	$(PY) -m zoo convert tflite $(call model_name,$*)$(PRECISION_ARGS)

# reports/formats.{json,md} and the README's table: every trained model in each format (DATA_DIR=...).
formats: $(STAMP)
	$(PY) -m training.formats --update-readme

bench: $(STAMP)
	$(ISA_ENV)$(PY) -m training.bench $(BENCH_ARGS)

bench-serving: $(STAMP)
	$(PY) -m training.bench --serving-only

# The zoo's train steps beside PyTorch's (the optional `peers` extra, installed here, at
# once when already there; pip keeps the lock's pins for what both need). Adds to the figures of `make bench`.
bench-peers: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock \
	  $$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["peers"])')
	$(ISA_ENV)$(PY) -m training.bench.peers $(PEERS_ARGS)

# reports/profile-<name>.{json,md}: the bench's train step under TensorFlow's profiler, op times by kind,
# and PyTorch's eager step beside it where the `peers` extra is installed (make bench-peers installs it).
profile-%: $(STAMP)
	$(ISA_ENV)$(PY) -m training.bench.profile $(call model_name,$*)$(if $(value ISA), $(ISA_OUTPUT))

# Every trained model on 127.0.0.1:8501 (python -m zoo serve --help for --host, --port, --models).
serve: $(STAMP)
	$(PY) -m zoo serve

experiment-%: $(STAMP)
	$(PY) -m training.experiments $(call model_name,$*)

experiments: $(STAMP)
	$(PY) -m training.experiments all

# dist/zoo-<version>-py3-none-any.whl: the zoo package alone (training/ stays here), built with the
# pinned setuptools already in .venv, so no network is needed.
dist: $(STAMP)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .
	rm -rf build zoo.egg-info  # setuptools' leftovers; on PYTHONPATH the egg-info reads as an installed zoo

# dist/models/<name>-<version>.tar.gz for every trained model and dist/models/index.json.
package: $(STAMP)
	$(PY) -m zoo package dist/models

# zoo/pins.json: the sha256 of each committed artifact's MANIFEST.sha256 (after a retrain).
pins: $(STAMP)
	$(PY) -m zoo pins

# DIR/<name>/<version>/: every published model's SavedModel, as TF Serving reads them. The folder
# reaches the program through the environment only (like DATA_DIR), never a shell command line.
export-serving: $(STAMP)
	$(if $(value DIR),,$(error give the folder to write: make export-serving DIR=/path/to/models))
	$(PY) -m zoo export-serving "$$ZOO_SERVING_DIR"
