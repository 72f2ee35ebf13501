# Two commands do everything on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   the main job end to end
#   make test   the whole test suite, against a real Kafka broker
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint kafka-up kafka-down bench bench-recon

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/clearline demo

test: install kafka-up lint
	$(PY) -m pytest -q

# ruff: lint and format check, configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

kafka-up: install
	$(VENV)/bin/clearline kafka up

kafka-down: install
	$(VENV)/bin/clearline kafka down

bench: install
	$(PY) bench/generate_throughput.py

# datacompy (the recon benchmark's baseline) pins Polars below 1.45, so the benchmark has
# a virtual environment of its own rather than holding the project's Polars back.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e . datacompy
	touch $@

bench-recon: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/recon_scale.py
