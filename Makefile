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

# The whole product on the embedded default: the Stripe and Chargebee sandboxes (state in
# var/sandbox/), a Celery worker and beat on a file broker (var/celery/, no server), the demo data,
# then the web app. Logs in var/log/; Ctrl-C stops everything (apps/demo/.../serve_demo.py).
run: install
	$(PY) manage.py serve_demo --host $(HOST) --port $(PORT)

test: install
	@DATABASE_URL="$$($(PY) scripts/test_database.py)" TRUEUP_ENV=test $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy apps

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Start over: drop the embedded database, the sandboxes' state and queued tasks (the next
# `make run` recreates the demo).
reset:
	rm -f var/trueup.sqlite3 var/trueup.sqlite3-wal var/trueup.sqlite3-shm
	rm -rf var/sandbox var/celery

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

# Refresh the README's screenshots (docs/screenshots/): the demo tour in a real browser.
.PHONY: screenshots
screenshots: install
	@DATABASE_URL="$$($(PY) scripts/test_database.py)" TRUEUP_ENV=test TRUEUP_SCREENSHOTS_TO_DOCS=1 \
		$(PY) -m pytest tests/browser/test_demo_tour.py -q

# Queue and approval benchmark (PostgreSQL on 127.0.0.1): the discrepancy queue over 100k findings
# (p50/p95 per request kind, target p95 < 100 ms) and approvals through the decide view.
.PHONY: bench-ui
bench-ui: install
	$(PY) scripts/bench_ui.py $(BENCH_ARGS)
