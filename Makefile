# One place for every command a user or CI runs. `make help` lists them.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := node_modules/.bin
STAMP := .make

.PHONY: help setup test test-forge test-py abi bench demo up down docker base-image postgres chromium console clean lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)/venv $(STAMP)/npm $(STAMP)/console docker base-image postgres ## install everything the project needs (idempotent)

$(STAMP)/venv: pyproject.toml
	@mkdir -p $(STAMP)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

$(STAMP)/npm: package.json package-lock.json
	@mkdir -p $(STAMP)
	@# npm ci refuses this lock: the Foundry packages list optional per-platform binaries
	@# that are not all published, so npm cannot record them. `install --no-save` honours
	@# the lock without rewriting it.
	@npm install --no-save --no-audit --no-fund --loglevel=error
	@touch $@

# The browser console: esbuild bundles console/ (with viem and the shipped ABIs) into the
# git-ignored folder the engine serves at /console. Reruns only when its sources change.
CONSOLE_SRC := $(shell find console -type f 2>/dev/null) $(wildcard registry_client/abi/*.json)
$(STAMP)/console: $(STAMP)/npm $(CONSOLE_SRC)
	@mkdir -p $(STAMP)
	@node console/build.mjs
	@touch $@

console: $(STAMP)/console ## build the browser console bundle (served at /console)

chromium: ## make sure Debian's Chromium is installed (the browser tests drive it)
	@tools/ensure-chromium.sh

docker: ## make sure a Docker engine answers (installs/starts it when root)
	@tools/ensure-docker.sh

postgres: ## install Debian's postgresql when missing (the PostgreSQL store tests start their own cluster)
	@tools/ensure-postgres.sh

base-image: docker ## build the local Python base image when no registry is reachable
	@tools/build-python-base.sh

test: setup chromium ## run every test: lint, forge, then pytest
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-forge
	@$(MAKE) --no-print-directory test-py

test-forge:
	@$(BIN)/forge test

test-py:
	@$(PY) -m pytest $(PYTEST_ARGS)

abi: $(STAMP)/npm ## compile contracts and refresh the ABIs shipped in registry_client/abi
	@$(BIN)/forge build
	@$(PY) tools/export_abi.py

bench: setup ## run the benchmarks (prints ratios against bare operations)
	@$(PY) bench/query.py
	@$(PY) bench/engine.py
	@$(PY) bench/cli.py
	@$(PY) bench/scale.py

demo: setup ## the whole product end to end on a local chain, then shut down
	@$(PY) -m demo run

up: setup ## start the demo stack and leave it running (see `make down`)
	@$(PY) -m demo up

down: ## stop what `make up` started
	@$(PY) -m demo down

lint: ## ruff over the Python code
	@$(VENV)/bin/ruff check registry_client engine tests bench demo tools

clean:
	rm -rf $(STAMP) contracts/out contracts/cache .pytest_cache
