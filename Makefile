# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format clean-venv web-vendor

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) scripts/demo.py

# ONNX Runtime Web (pinned, from npm) for `emotionlab export --web` and its tests; a no-op once vendored.
web-vendor: $(STAMP)
	$(PYTHON) scripts/vendor_onnxruntime_web.py

test: $(STAMP) web-vendor
	$(PYTHON) -m pytest

test-fast: $(STAMP) web-vendor
	$(PYTHON) -m pytest -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

format: $(STAMP)  # what lint checks, fixed in place: imports sorted, safe fixes applied, code formatted
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts
	$(VENV)/bin/ruff format src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
