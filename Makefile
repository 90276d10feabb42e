# istio-multicluster-lab. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed (found " + sys.version.split()[0] + ")")'
	@# Debian/Ubuntu split venv's pip bootstrap (ensurepip) into the python3-venv package; without it `-m venv` fails.
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "make: $(PYTHON) $$v has no ensurepip, so it cannot create $(VENV): on Debian/Ubuntu run \`sudo apt install python3-venv\` (or python$$v-venv), then make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: \`$(PYTHON) -m venv $(VENV)\` failed; on Debian/Ubuntu install python3-venv (\`sudo apt install python3-venv\`) and run make again" >&2; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP) ## create the virtual environment with everything the lab and its tests need

lab-up: $(STAMP) ## build the two-cluster lab of the profile's scenario and prove its cross-cluster call returns 200 (LAB_ARGS="--scenario NAME")
	$(PY) -m lab up $(LAB_ARGS)

lab-down: $(STAMP) ## delete the clusters the lab created (nothing else)
	$(PY) -m lab down $(LAB_ARGS)

lab-status: $(STAMP) ## show clusters, Istio, DNS, apps and the last probe
	$(PY) -m lab status $(LAB_ARGS)

lab-doctor: $(STAMP) ## walk the path from sleep to httpbin and name the first broken hop
	$(PY) -m lab doctor $(LAB_ARGS)

plan: $(STAMP) ## print the plan `lab up` runs, as a bash script a person can replay
	@$(PY) -m lab plan --shell $(LAB_ARGS)

lint: $(STAMP) ## ruff, the import layering contract (.importlinter), mypy --strict on lab/, mypy on tests/upstream
	$(VENV)/bin/ruff check lab tests conftest.py
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests/upstream

test: $(STAMP) lint ## every test that needs no Docker (unit + integration)
	$(PY) -m pytest

test-upstream: $(STAMP) ## the upstream lane: istioctl, pilot, CoreDNS, kube-apiserver + etcd and musl built from their own modules (needs Go)
	$(PY) -m pytest tests/upstream -m upstream --durations=10

E2E_MARK ?= e2e
e2e: $(STAMP) ## the e2e suite against the lab (builds or reuses it; needs Docker); E2E_MARK='e2e and not reinstall' = fast lane
	$(PY) -m pytest tests/e2e -m '$(E2E_MARK)' --durations=0 $(E2E_ARGS)

clean: ## remove the virtual environment and caches (not the lab: use lab-down)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

.PHONY: help venv lab-up lab-down lab-status lab-doctor plan lint test test-upstream e2e clean
