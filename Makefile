# geomm — set-up and everyday commands. `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.geomm-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Re-runs only when pyproject.toml is newer than the stamp (or .venv is missing).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "geomm needs Python >= 3.11; run e.g. 'make PYTHON=python3.11 $(MAKECMDGOALS)'" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(BIN)/geomm demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check geomm tests bench
	$(BIN)/mypy geomm

bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	$(BIN)/python bench/coregister.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/remote.py
	$(BIN)/python bench/stac_load.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
