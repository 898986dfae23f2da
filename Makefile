# make run   - install the runtime into .venv and serve the default model on 127.0.0.1:5000
# make test  - install the dev requirements into .venv, run lint (ruff, the import contracts of
#              pyproject.toml) and the whole test suite
# PYTHON and VENV choose the interpreter and the virtualenv (e.g. PYTHON=python3.13 VENV=.venv-3.13);
# PYTEST_ARGS is passed to pytest (e.g. PYTEST_ARGS='-m "not load and not browser"' skips the load
#              and the browser tests).
PYTHON ?= python3
VENV ?= .venv
BIND ?= 127.0.0.1:5000

.PHONY: run test train

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(VENV)/bin/firefly predict.predict --bind $(BIND)

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

train: $(VENV)/.dev
	$(VENV)/bin/python train.py
