# The platform's commands. `make help` lists them; README.md shows the two a newcomer needs.
PY := .venv/bin/python
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: ## install missing Debian packages and the Python environment (.venv)
	@bash infra/bootstrap.sh

up: bootstrap ## start Kafka, Cassandra and S3Proxy on 127.0.0.1, create topics and tables
	@$(PY) -m infra.stack up
	@$(PY) -m infra.topics
	@$(PY) -m sinks.migrate

status: ## show each server's health, pid, ports and memory
	@$(PY) -m infra.stack status

down: ## stop every server
	@$(PY) -m infra.stack down

reset: ## stop every server and wipe its data and logs (fetched jars stay cached)
	@$(PY) -m infra.stack reset

demo: up ## set everything up and run the platform's main job on a sample
	@$(PY) -m infra.stack status

test: up ## run every test: unit, integration and end-to-end against the real servers
	@$(PY) -m pytest

lint: bootstrap ## ruff (lint + format check) and mypy
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy common infra sinks producers processors api

.PHONY: help bootstrap up status down reset demo test lint
