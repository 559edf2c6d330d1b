# leadpipe: `make demo` to see it work, `make test` to check it. `make help` lists the rest.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LEADPIPE := $(VENV)/bin/leadpipe
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install leadpipe with its dev tools

.PHONY: demo
demo: $(STAMP) ## run the sample leads through the whole pipeline (embedded Redis + simulator)
	$(LEADPIPE) demo

.PHONY: services
services: ## start local PostgreSQL and Redis for the tests (no Docker)
	@scripts/services.sh start

.PHONY: services-stop
services-stop: ## stop the test PostgreSQL and Redis
	@scripts/services.sh stop

.PHONY: real-model
real-model: ## builds and starts the real llama.cpp model server (SmolLM2-135M, 127.0.0.1:58080)
	@scripts/real_model.sh start

.PHONY: real-model-stop
real-model-stop: ## stop the real model server
	@scripts/real_model.sh stop

.PHONY: test
test: $(STAMP) services real-model ## run every test against real PostgreSQL, Redis and a real model
	eval "$$(scripts/services.sh env)" && eval "$$(scripts/real_model.sh env)" && $(PY) -m pytest -q

.PHONY: testcov
testcov: $(STAMP) services real-model ## tests with branch coverage
	eval "$$(scripts/services.sh env)" && eval "$$(scripts/real_model.sh env)" && $(PY) -m coverage run -m pytest -q && $(PY) -m coverage report

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pipeline db workers simulator

.PHONY: format
format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: migrate
migrate: $(STAMP) ## apply the database migrations (LEADPIPE_DATABASE_URL or the SQLite default)
	$(LEADPIPE) db upgrade

.PHONY: worker
worker: $(STAMP) ## run a worker on every queue (needs LEADPIPE_REDIS_URL or `make services`)
	$(LEADPIPE) worker

.PHONY: beat
beat: $(STAMP) ## run celery beat with the database scheduler (scheduled campaigns)
	$(LEADPIPE) beat

.PHONY: flower
flower: $(STAMP) ## run Flower (basic auth: LEADPIPE_FLOWER_PASSWORD; 127.0.0.1:5555 by default)
	$(LEADPIPE) flower

.PHONY: simulator
simulator: $(STAMP) ## run the offline provider simulator on 127.0.0.1:8011
	$(LEADPIPE) simulator

.PHONY: bench
bench: $(STAMP) services ## benchmarks: print tables, write bench/results/*.json
	eval "$$(scripts/services.sh env)" && $(PY) bench/run.py

LOCK_FLAGS := -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: lock
lock: $(STAMP) ## re-resolve requirements.lock (hashed pins) from pyproject.toml's ranges
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml

.PHONY: update-prices
update-prices: $(STAMP) ## move the genai-prices pin to VERSION (default: newest), relock, reinstall
	$(PY) -m pip install -q pip-tools
	@version="$(VERSION)"; \
	if [ -z "$$version" ]; then \
	  version=$$($(PY) -m pip index versions genai-prices 2>/dev/null | sed -n 's/^genai-prices (\(.*\))$$/\1/p'); \
	fi; \
	test -n "$$version" || { echo "cannot find genai-prices' newest version; pass VERSION=x.y.z"; exit 1; }; \
	sed -i -E "s/\"genai-prices==[^\"]+\"/\"genai-prices==$$version\"/" pyproject.toml; \
	echo "genai-prices pinned to $$version"
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --upgrade-package genai-prices -o requirements.lock pyproject.toml
	$(PY) -m pip install -q -e ".[dev]"
	@echo "now run: make bench   (cost figures move with the catalogue; update README numbers)"

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
