# One-command set-up: `make demo` and `make test` each create .venv and install what they need.
# torch is pinned to the CPU wheel by default; override for a CUDA build, for example
#   make test PIP_EXTRA="--index-url <CUDA wheel index URL>"      (or TORCH_SPEC="torch==X.Y.Z" for another version)
# On these machines `torch==2.13.0` resolves to the CPU wheel kept on disk (pip find-links).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Pins torch for every later install (extras included), so none of them can replace it.
CONSTRAINTS ?= constraints.txt
PIP_EXTRA ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test install install-test install-extra clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -q $(PIP_EXTRA) "$(TORCH_SPEC)"
	$(PIP) install -q $(PIP_EXTRA) -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) $(VENV)/.installed
	$(PIP) install -q $(PIP_EXTRA) -c $(CONSTRAINTS) -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# An optional extra with torch held at its pin, e.g. `make install-extra EXTRA=onnx` (or hf, decord, torchcodec).
EXTRA ?= onnx
install-extra: $(VENV)/.installed
	$(PIP) install -q $(PIP_EXTRA) -c $(CONSTRAINTS) -e ".[$(EXTRA)]"

demo: $(VENV)/.installed
	$(VENV)/bin/tubevit demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
