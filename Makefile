# Two commands matter: `make run` (everything up, demo data, zero setup) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
# SANDBOX=0 make run: no demo sandbox (connect a real Kommo account in the admin instead).
SANDBOX ?= 1

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install run test lint fmt typecheck bench sandbox replay up down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed ## Create .venv with the locked dependencies

run: install ## Migrate, demo admin, the Kommo sandbox with demo data, web + worker + beat (Ctrl-C stops all)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py core_demo_admin
	$(PY) manage.py core_run $(if $(filter 0,$(SANDBOX)),--no-sandbox)

test: install ## The whole suite (PostgreSQL and Redis are started by the fixtures when installed)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff, formatting, migrations and import boundaries
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports

fmt: install ## Format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install ## mypy (strict on apps/kommo)
	$(VENV)/bin/mypy apps config kommo_sandbox benchmarks

bench: install ## Benchmarks, reported as ratios against a baseline measured in the same run
	$(PY) -m benchmarks

sandbox: install ## The Kommo sandbox with demo data on port 8001
	$(PY) -m kommo_sandbox --port 8001 --seed demo --credentials-file .run/sandbox-credentials.json

replay: install ## Post a recorded webhook body to a running portal: make replay FILE=path
	$(PY) manage.py kommo_replay $(FILE)

up: ## docker compose: web, worker, beat, PostgreSQL, Redis
	docker compose up -d --build

down: ## Stop the compose deployment
	docker compose down

clean: ## Remove what make run made (.run: SQLite file, embedded broker, schedules, sandbox data)
	rm -rf .run control
