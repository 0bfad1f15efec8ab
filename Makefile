# The two set-up commands (see README):
#   make serve   build everything and serve functions/digits on http://127.0.0.1:8080
#   make test    build everything and run the tests
# Both create .venv on first use; pip's download cache makes later runs fast.

VENV ?= .venv
PYTHON ?= python3
PORT ?= 8080
PIP := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c packaging/constraints.txt

.PHONY: serve test bench check clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The runtime alone: what a deployed ONNX function carries.
$(VENV)/.runtime: pyproject.toml packaging/constraints.txt | $(VENV)/bin/python
	$(PIP) -e .
	@touch $@

# Tests, benchmarks and the digits training script (TensorFlow, scikit-learn).
$(VENV)/.dev: pyproject.toml packaging/constraints.txt | $(VENV)/bin/python
	$(PIP) -e ".[dev,train]"
	@touch $@ $(VENV)/.runtime

serve: $(VENV)/.runtime
	$(VENV)/bin/modelfn serve functions/digits --port $(PORT)

test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench functions
	$(VENV)/bin/ruff format --check src tests bench functions
	$(VENV)/bin/python -m pytest

check: $(VENV)/.runtime
	$(VENV)/bin/modelfn check functions/digits

bench: $(VENV)/.dev
	$(VENV)/bin/python bench/coldstart.py

clean:
	rm -rf $(VENV) functions/*/.modelfn
