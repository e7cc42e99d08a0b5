# Customer Pulse. `make demo` and `make test` work on a fresh machine: they create the venv,
# install the package and fetch the Kafka jars first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PULSE  := $(VENV)/bin/pulse
STAMP  := $(VENV)/.installed

.PHONY: install jars demo test unit up down status bench bench-views soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

jars: $(STAMP)
	$(PULSE) kafka fetch

demo: jars
	$(PULSE) demo

test: jars
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

bench: jars
	$(PY) -m pip install --quiet -e '.[test,bench]'
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PULSE) bench

# Every ClickHouse view timed on 10 million events in the embedded engine (a few minutes; no broker needed).
bench-views: $(STAMP)
	$(PULSE) bench-views

# Not part of `make test`: 30 cycles of kills take about a quarter of an hour. SOAK_ARGS="--cycles 5" for fewer.
soak: jars
	$(PULSE) soak $(SOAK_ARGS)

up: jars
	$(PULSE) up

down: $(STAMP)
	$(PULSE) down

status: $(STAMP)
	$(PULSE) status

clean:
	-$(PULSE) down
	rm -rf .pulse
