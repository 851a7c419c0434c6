# Two commands do everything: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
NAME ?=

.PHONY: run test bench install install-test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Start everything (web + websockets, Celery worker and beat in-process, SMTP listener) on the
## embedded default with demo data, at http://$(HOST):$(PORT).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py rebuild_conversation_facts
	$(PY) manage.py seed_demo_presence
	PORT=$(PORT) HOST=$(HOST) $(PY) manage.py runembedded

## The whole suite, embedded mode then production mode (PostgreSQL + Redis).
test: install-test
	PY=$(PY) bash scripts/test.sh

## Benchmarks under bench/ (`make bench NAME=timeline` for one).
bench: install-test
	PY=$(PY) bash bench/run.sh $(NAME)

clean:
	rm -rf $(VENV) var
