# One-command set-up: `make demo` and `make test` each create .venv and install what they need.
# torch is pinned to the CPU wheel by default; override for a CUDA build, for example
#   make test PIP_EXTRA="--index-url <CUDA wheel index URL>"      (or TORCH_SPEC="torch==X.Y.Z" for another version)
# On these machines `torch==2.13.0` resolves to the CPU wheel kept on disk (pip find-links).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q $(PIP_EXTRA) "$(TORCH_SPEC)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/tubevit demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
