# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: demo test serve clean

$(VENV)/.installed-app: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-app
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed-app
	$(BIN)/liaison demo --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/pytest

serve: $(VENV)/.installed-app
	$(BIN)/liaison serve --port $(PORT)

clean:
	rm -rf $(VENV) var test-results .pytest_cache
