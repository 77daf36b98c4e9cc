# forestops: `make up` runs the embedded stack, `make test` runs every check CI runs.
# Both build the project's environment in .venv from the lock file first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
# Airflow pins FastAPI below the inference service: it gets its own environment, built from its own
# lock (deploy/airflow/requirements.in -> requirements-airflow.lock), for the DAG tests and its image.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_BIN := $(AIRFLOW_VENV)/bin
# The only packages whose versions may differ between the two locks (Airflow pins them); every
# other shared package is resolved to requirements.lock's version (tests/integration/test_compose_images.py).
AIRFLOW_OWN_PINS := fastapi

# The real-browser UI test drives Debian's chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
# The alert rule tests run Debian's promtool (package prometheus) and Alertmanager with its amtool.
PROMTOOL := /usr/bin/promtool
ALERTMANAGER := /usr/bin/prometheus-alertmanager
# `make fullstack` runs the compose file's load balancer (nginx) from Debian's package.
NGINX := /usr/sbin/nginx

.PHONY: up test install lint typecheck pytest audit lock clean airflow-install airflow-test lock-airflow fullstack

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $@

install: $(VENV)/.installed

# pip check runs before forestops goes in with --no-deps (it needs FastAPI newer than Airflow allows).
$(AIRFLOW_VENV)/.installed: requirements-airflow.lock pyproject.toml | $(VENV)/.installed
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(BIN)/uv pip sync --python $(AIRFLOW_BIN)/python requirements-airflow.lock
	$(BIN)/uv pip check --python $(AIRFLOW_BIN)/python
	$(BIN)/uv pip install --python $(AIRFLOW_BIN)/python --no-deps -e .
	touch $@

airflow-install: $(AIRFLOW_VENV)/.installed

up: install
	$(BIN)/forestops up

lint: install
	$(BIN)/ruff check src tests benchmarks dags tools
	$(BIN)/ruff format --check src tests benchmarks dags tools

typecheck: install
	$(BIN)/mypy

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM) for the UI browser test" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq chromium

$(PROMTOOL):
	@command -v apt-get >/dev/null || { echo "install Prometheus' promtool at $(PROMTOOL) for the alert rule tests" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus

$(ALERTMANAGER):
	@command -v apt-get >/dev/null || { echo "install Alertmanager at $(ALERTMANAGER) for the alert routing test" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus-alertmanager

# tests/integration/test_alert_rules.py: promtool test rules, amtool check-config, a real Alertmanager
pytest: $(PROMTOOL) $(ALERTMANAGER)

$(NGINX):
	@command -v apt-get >/dev/null || { echo "install nginx at $(NGINX) for make fullstack" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq nginx

# The services of deploy/docker-compose.yml as local processes (no Docker): prints one JSON line
# of endpoints, runs until Ctrl-C. Needs PostgreSQL, MariaDB and Redis on loopback (as make test).
# FULLSTACK_ARGS: e.g. --env-file my.env (lines laid over the generated .env) --run-dir DIR
# stdout carries only the JSON line (set-up output goes to stderr); the harness is tied to make
# (die_with_parent), so a SIGTERM to make stops the stack as Ctrl-C does.
fullstack:
	@$(MAKE) --no-print-directory install airflow-install $(NGINX) >&2
	@exec $(BIN)/python -m forestops.orchestration.die_with_parent $$PPID \
	  $(BIN)/python -m forestops.fullstack $(FULLSTACK_ARGS)

# tests/e2e/test_fullstack.py starts the same harness: it needs the Airflow environment and nginx
pytest: install airflow-install $(CHROMIUM) $(NGINX)
	$(BIN)/pytest

# the DAG tests: Airflow's own pytest; they start the data API and the inference service from .venv
airflow-test: install airflow-install
	$(AIRFLOW_BIN)/pytest tests/airflow

# pip-audit over the lock; fails only on known vulnerabilities that have a fixed release
audit: install
	$(BIN)/python tools/audit_dependencies.py requirements.lock

test: lint typecheck audit pytest airflow-test

lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

# requirements.lock (minus AIRFLOW_OWN_PINS) constrains the Airflow lock: run after `make lock`.
lock-airflow: install
	grep -vE '^($(shell echo $(AIRFLOW_OWN_PINS) | tr ' ' '|'))==' requirements.lock \
	  | $(BIN)/uv pip compile deploy/airflow/requirements.in --constraint - --python-version 3.11 \
	    --custom-compile-command "make lock-airflow" -o requirements-airflow.lock

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .forestops .pytest_cache .mypy_cache .ruff_cache
