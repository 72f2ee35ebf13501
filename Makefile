# Two commands do everything on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   the main job end to end
#   make test   the whole test suite, against a real Kafka broker
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test kafka-up kafka-down bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/clearline demo

test: install kafka-up
	$(PY) -m pytest -q

kafka-up: install
	$(VENV)/bin/clearline kafka up

kafka-down: install
	$(VENV)/bin/clearline kafka down

bench: install
	$(PY) bench/generate_throughput.py
