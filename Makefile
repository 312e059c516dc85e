# The two commands a newcomer needs: `make run` and `make test`.
# Each sets up what it needs first (a virtualenv with pinned packages; for tests also
# Chromium and the JavaScript SDKs), so both work on a fresh machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup test-setup run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

test-setup: setup
	if [ -f tests/sdk/setup.sh ]; then bash tests/sdk/setup.sh; fi

run: setup
	$(VENV)/bin/onefold serve --demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: test-setup lint
	$(PY) -m pytest -ra

bench: setup
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) onefold-data .pytest_cache
