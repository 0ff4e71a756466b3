# The README's two commands are `make serve` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA_DIR ?= ./dossier-data

.PHONY: serve test venv lint bench clean

$(BIN)/dossier: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/dossier

venv: $(BIN)/dossier

serve: venv
	$(BIN)/dossier serve --data-dir $(DATA_DIR)

lint: venv
	$(BIN)/ruff check dossier consent audit auth schemas tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

JS_CLIENT = tests/integration/js_client

test: venv
	bash scripts/system-deps.sh
	cd $(JS_CLIENT) && npm ci --no-audit --no-fund --silent
	$(MAKE) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: venv
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DATA_DIR)
