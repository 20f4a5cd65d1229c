VENV ?= .venv
PYTHON := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
CONTAINER_TOOLS := $(VENV)/.installed-containers

.PHONY: run test test-containers lint format install worker bench screenshots settings docs docs-serve clean

# make run needs the runtime requirements only; the tests add the development ones.
$(RUNTIME): requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

$(STAMP): $(RUNTIME) requirements-dev.txt examples/mytasks/pyproject.toml
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(CONTAINER_TOOLS): $(STAMP) tests/containers/requirements.txt
	$(PYTHON) -m pip install --quiet -r tests/containers/requirements.txt
	touch $@

install: $(STAMP)

## run: migrate, then the API on :5000 with a Celery worker and beat; Ctrl-C stops them all
run: $(RUNTIME)
	$(PYTHON) run.py --worker

## docs: the manual (docs/, mkdocs.yml) built into site/, offline, failing on any warning
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

## docs-serve: the manual on http://127.0.0.1:8000, rebuilt as its pages change
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve --dev-addr 127.0.0.1:8000

## worker: a Celery worker alone
worker: $(RUNTIME)
	$(PYTHON) -m celery -A celery_worker.celery worker --loglevel=INFO

## test: every test (unit, integration on three stacks, faults), in TEST_PROCESSES processes
TEST_PROCESSES ?= 4
test: $(STAMP)
	$(PYTHON) -m pytest -n $(TEST_PROCESSES) --dist loadgroup --ignore=tests/containers $(PYTEST_ARGS)

## test-containers: the Dockerfile's image and docker-compose.yml run for real (podman, as root)
test-containers: $(CONTAINER_TOOLS)
	$(PYTHON) -m pytest tests/containers $(PYTEST_ARGS)

## bench: the embedded stack's submit-to-COMPLETED latency
bench: $(STAMP)
	$(PYTHON) bench/embedded_latency.py

## screenshots: the dashboard pictures of the README and docs/, taken from the real pages by the browser test
screenshots: $(STAMP)
	SCREENSHOTS_DIR=docs/screenshots $(PYTHON) -m pytest -o addopts="" -q \
		tests/integration/test_dashboard.py -k "screenshots and embedded"

## lint: ruff, the layers (import-linter), the house rules (tools/house_rules.py), generated files current
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PYTHON) tools/house_rules.py
	$(PYTHON) -m config.reference --check

## settings: write tasker.env.example and docs/settings.md from the declarations (config/settings.py)
settings: $(RUNTIME)
	$(PYTHON) -m config.reference

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
