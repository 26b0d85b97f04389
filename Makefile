# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) scripts/demo.py

test: $(STAMP)
	$(PYTHON) -m pytest

test-fast: $(STAMP)
	$(PYTHON) -m pytest -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
