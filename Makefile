# sklambda — one command per habit. Everything installs itself on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
ST_VENV := .venv-schemathesis
TRITON_VENV := .venv-triton
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
PORT ?= 3000
UV_VERSION := 0.13.8

.PHONY: help install serve test test-unit test-integration test-e2e test-infra lint format validate build bench clean checkov

help:
	@echo "make serve   - run the API locally on http://127.0.0.1:$(PORT) (embedded AWS emulator)"
	@echo "make test    - install what is needed and run every test suite"
	@echo "make lint    - ruff check, ruff format --check, mypy"
	@echo "make build   - sam validate --lint && sam build"
	@echo "make checkov - security scan of template.yaml (checkov, own venv)"
	@echo "make bench   - run the benchmarks and update benchmarks/RESULTS.md"

$(VENV)/.installed: requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements/dev.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.lock
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(SAM_VENV)/bin/uv pip sync -q --python $(SAM_VENV)/bin/python requirements/sam.lock
	touch $@

# Schemathesis pins its own hypothesis/jsonschema/requests: its own venv, like the SAM CLI.
$(ST_VENV)/.installed: requirements/schemathesis.lock
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(ST_VENV)/bin/uv pip sync -q --python $(ST_VENV)/bin/python requirements/schemathesis.lock
	touch $@

# tritonclient[http] (the Open Inference Protocol e2e tests) brings gevent and its own numpy pin: its own venv.
$(TRITON_VENV)/.installed: requirements/tritonclient.lock
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(TRITON_VENV)/bin/uv pip sync -q --python $(TRITON_VENV)/bin/python requirements/tritonclient.lock
	touch $@

# checkov in its own environment: its large, pinned dependency tree stays out of the dev venv.
$(CHECKOV_VENV)/.installed: requirements/checkov.lock
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(CHECKOV_VENV)/bin/uv pip sync -q --python $(CHECKOV_VENV)/bin/python requirements/checkov.lock
	touch $@

install: $(VENV)/.installed $(SAM_VENV)/.installed $(ST_VENV)/.installed $(TRITON_VENV)/.installed $(CHECKOV_VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/sklambda serve --port $(PORT)

test: $(VENV)/.installed $(SAM_VENV)/.installed $(ST_VENV)/.installed $(TRITON_VENV)/.installed $(CHECKOV_VENV)/.installed
	SAM_CLI=$(abspath $(SAM)) CHECKOV_CLI=$(abspath $(CHECKOV)) SCHEMATHESIS_CLI=$(abspath $(ST_VENV)/bin/st) \
	  TRITON_PYTHON=$(abspath $(TRITON_VENV)/bin/python) $(PY) -m pytest tests

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

test-integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration

test-e2e: $(VENV)/.installed $(ST_VENV)/.installed $(TRITON_VENV)/.installed
	SCHEMATHESIS_CLI=$(abspath $(ST_VENV)/bin/st) TRITON_PYTHON=$(abspath $(TRITON_VENV)/bin/python) \
	  $(PY) -m pytest tests/e2e

test-infra: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	SAM_CLI=$(abspath $(SAM)) CHECKOV_CLI=$(abspath $(CHECKOV)) $(PY) -m pytest tests/infra

# Every check passed, or skipped next to its resource with a justification (Metadata.checkov.skip).
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f template.yaml

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

# sam build (cached, parallel: samconfig.toml) needs a python3.12 named so on PATH: find one.
build: validate
	@py312="$$(scripts/find-python312)" || exit 1; \
	echo "sam build with $$py312"; \
	SAM_CLI_TELEMETRY=0 PATH="$$(dirname "$$py312"):$$PATH" $(SAM) build

# Unzipped size of each artifact of the last `make build` (Lambda: function + layers < 262,144,000 B).
.PHONY: sizes
sizes:
	@test -f .aws-sam/build/template.yaml || { echo "nothing built yet: run 'make build'" >&2; exit 1; }
	@for dir in .aws-sam/build/*/; do \
	  echo "$$(find "$$dir" -type f -printf '%s\n' | awk '{ s += $$1 } END { print s + 0 }') $$dir"; \
	done | sort -n | awk '{ printf "%11.1f MB  %s\n", $$1 / 1e6, $$2; t += $$1 } \
	  END { printf "%11.1f MB  total (limit 262.1 MB for a function plus its layers, unzipped)\n", t / 1e6 }'

# Regenerate the lock files (dev venv: python 3.11; layers: Lambda's python 3.12, manylinux x86_64).
# Existing pins are kept unless their inputs change (uv prefers the versions already locked).
.PHONY: locks
locks: $(VENV)/.installed
	$(VENV)/bin/uv pip compile -q --python-version 3.11 requirements/dev.in -o requirements/dev.lock --generate-hashes
	$(VENV)/bin/uv pip compile -q --python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  --no-header requirements/runtime.in -o layers/deps/requirements.txt
	$(VENV)/bin/uv pip compile -q --python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  --no-header requirements/sklearn.in -c layers/deps/requirements.txt --no-emit-package numpy \
	  -o layers/sklearn/requirements.txt

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache
