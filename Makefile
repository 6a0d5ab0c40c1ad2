# Trueup — `make run` starts the app on the embedded default; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed-$(shell sha1sum $(LOCK) | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve migrate demo test lint format reset lock vendor

install: $(STAMP)

$(STAMP): $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9 2>&1 | grep -v "^WARNING: Location" || true
	$(VENV)/bin/uv pip sync --quiet --python $(PY) $(LOCK)
	@rm -f $(VENV)/.installed-* && touch $@

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/

run: demo
	@echo "Serving Trueup on http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	@DATABASE_URL="$$($(PY) scripts/test_database.py)" TRUEUP_ENV=test $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy apps

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Start over: drop the embedded database (the next `make run` recreates the demo).
reset:
	rm -f var/trueup.sqlite3 var/trueup.sqlite3-wal var/trueup.sqlite3-shm

# Re-resolve the pinned dependencies after editing pyproject.toml.
lock: install
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements/dev.lock
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --python-version 3.11 -o requirements/prod.lock

# Refresh the front-end libraries in static/vendor from the npm registry (package-lock.json).
vendor:
	npm ci --no-audit --no-fund
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js
	cp node_modules/chart.js/dist/chart.umd.min.js static/vendor/chart.umd.min.js

# Ingestion benchmark (PostgreSQL on 127.0.0.1): gunicorn + 1M events over HTTP vs an in-process COPY baseline.
.PHONY: bench-ingest
bench-ingest: install
	$(PY) scripts/bench_ingest.py $(BENCH_ARGS)
