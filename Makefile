# The platform's commands. `make help` lists them; README.md shows the two a newcomer needs.
PY := .venv/bin/python
# bash: the demo pipes the upload into the watch step and needs pipefail.
SHELL := /bin/bash
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

down: ## stop the API, the workers and every server
	@$(PY) -m infra.services down
	@$(PY) -m infra.stack down

reset: ## stop every server and wipe its data and logs (fetched jars stay cached)
	@$(PY) -m infra.stack reset

services: up ## start the API (port 8080) and the workers (control + transcode)
	@$(PY) -m infra.services up

services-down: ## stop the API and the workers
	@$(PY) -m infra.services down

DEMO_LOGIN = --email demo-creator@vidplat.local --password-file "$${VIDPLAT_STATE_DIR:-.state}/demo-creator.password"

demo: services ## set everything up, upload a sample, follow it to ready, play it in a real player, print its QoE row
	@$(PY) -m infra.stack status
	@# The demo creator: signed up on first use, its generated password kept in the state directory. The upload's
	@# lines are copied to stderr through a pipe, not by reopening /dev/stderr (that truncates a redirected log).
	@set -o pipefail; video_id=$$($(PY) -m producers.upload_cli "$$($(PY) -m infra.sample)" --title "Big Buck Bunny" \
		--description "Sample: natural content, CC-BY Blender Foundation" --tags sample,animation --thumbnail-time 2 \
		$(DEMO_LOGIN) --sign-up | tee >(cat >&2) | sed -n 's/^video_id: //p'); \
	$(PY) -m producers.watch_cli "$$video_id" $(DEMO_LOGIN)
	@echo "web app: http://$${API_HOST:-127.0.0.1}:$${API_PORT:-8080}/ (through the edge: $${EDGE_URL:-http://127.0.0.1:8081}/)"
	@echo "  sign in as demo-creator@vidplat.local, password in $${VIDPLAT_STATE_DIR:-.state}/demo-creator.password"

test: up ## run every test: unit, integration and end-to-end against the real servers
	@$(PY) -m pytest

bench: services ## the benchmarks: transcoding pipeline vs bare ffmpeg, and the fan-out choice
	@$(PY) -m bench.transcode
	@$(PY) bench/transcode_fanout.py

lint: bootstrap ## ruff (lint + format check), mypy and the import layering (import-linter, pyproject.toml)
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy common infra sinks producers processors api
	@.venv/bin/lint-imports --no-cache --no-logo

.PHONY: help bootstrap up services services-down status down reset demo test lint bench
