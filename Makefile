# canarino: `make demo` and `make test` work on a machine with only Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install bench docs screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# htmx comes from the npm registry at build time and is never committed; without npm the
# pages still work as plain forms.
HTMX := src/canarino/web/static/vendor/htmx.min.js
$(HTMX):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix build/npm htmx.org@2 && \
	  mkdir -p $(dir $(HTMX)) && cp build/npm/node_modules/htmx.org/dist/htmx.min.js $(HTMX); \
	else echo "npm not found: the web app runs without htmx (full-page forms)"; fi

install: $(STAMP) $(HTMX)

demo: install
	$(BIN)/canarino demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/cog --check docs/cli.md

test: lint
	$(BIN)/python -m pytest

docs: install
	$(BIN)/cog -r docs/cli.md

# The browser tests save a picture of every page; docs/web-tour.md links them.
screenshots: install
	CANARINO_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/web/test_browser.py tests/web/test_public.py -k "browser or analyst or viewer or self_check or caller"

bench: install
	$(BIN)/python bench/trace.py
	$(BIN)/python bench/attribution.py
	$(BIN)/python bench/smtp_load.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
