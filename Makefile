# The README's two commands are `make demo` and `make test`; both do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_PYTEST_ARGS ?=
LEGACY_VENV := .venv-legacy
LEGACY_STAMP := $(LEGACY_VENV)/.installed
NATIVE_STAMP := $(VENV)/.native
NATIVE_IO_STAMP := $(VENV)/.native-io

.DEFAULT_GOAL := help

.PHONY: help setup demo test test-unit test-integration test-airflow lint format bench soak window-rss clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

# A Rust extension (PyO3) built by maturin with cargo from crates.io (Cargo.lock pins them)
# and installed into .venv: $(1) its crate directory, $(2) its module, $(3) what it is,
# $(4) minutes a cold build takes, $(5) what runs without it. maturin's lines go to
# $(1)/target/build.log, shown only when the build fails; where it cannot build, setup still
# succeeds and says so in one line.
define native_wheel
	@mkdir -p $(1)/target && rm -f $(1)/target/build.log
	@if command -v cargo >/dev/null 2>&1 \
	  && echo "building $(3) (Rust; up to $(4) min the first time)" \
	  && $(BIN)/maturin build --quiet --release --locked -m $(1)/Cargo.toml \
	       -i $(BIN)/python -o $(1)/target/wheels >$(1)/target/build.log 2>&1 \
	  && $(BIN)/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
	       $(1)/target/wheels/$(2)-*.whl; then \
	  touch $@; \
	else \
	  tail -n 15 $(1)/target/build.log >&2 2>/dev/null; \
	  echo "note: $(3) did not build; $(5)" >&2; \
	fi
endef

# The scoring core's native fast check (native/).
$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	$(call native_wheel,native,churnstream_native,the native scoring core,1,churnstream uses its Python path)

# The scorer's optional native Kafka client (native_io/: rdkafka, with librdkafka built from
# the crate's bundled sources).
$(NATIVE_IO_STAMP): $(STAMP) native_io/Cargo.toml native_io/Cargo.lock native_io/pyproject.toml $(wildcard native_io/src/*.rs)
	$(call native_wheel,native_io,churnstream_native_io,the native Kafka client,2,the scorer uses confluent-kafka)

# The replaced system's clients (kafka-python, no compression libraries) from their own
# requirements; tests/integration/test_interop.py runs them against churnstream's topics.
$(LEGACY_STAMP): tests/legacy_client/requirements.txt
	test -x $(LEGACY_VENV)/bin/python || $(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/pip install --quiet --disable-pip-version-check \
	  -r tests/legacy_client/requirements.txt
	touch $(LEGACY_STAMP)

setup: $(STAMP) $(NATIVE_STAMP) $(NATIVE_IO_STAMP) $(LEGACY_STAMP) ## Create .venv (churnstream, dev and spark extras) and .venv-legacy, fetch the Kafka jars, Chromium
	$(BIN)/churnstream broker fetch
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the dashboard's browser test"; \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: no chromium; the dashboard browser test needs Debian's 'chromium' package" >&2; \
	  fi; }
	@command -v kcat >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's kcat, the bench's native ceiling"; \
	    { apt-get update -qq && apt-get install -y -qq kcat >/dev/null; } \
	      || echo "note: could not install kcat; make bench skips the native ceiling" >&2; \
	  else \
	    echo "note: no kcat; make bench skips the native ceiling (Debian's 'kcat' package)" >&2; \
	  fi; }

demo: setup ## Run the demo on the embedded broker
	$(BIN)/churnstream demo

test: setup ## Run every test (unit, integration on a real Kafka, then the Airflow DAGs)
	$(BIN)/churnstream data fetch
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-airflow

# Airflow lives in its own venv (its pins clash with churnstream's); the DAGs call $(BIN)/churnstream.
$(AIRFLOW_STAMP): dags/requirements.txt Makefile
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check -r dags/requirements.txt \
	  'pytest>=9.2,<10' 'pytest-timeout>=2.4,<3' 'hypothesis>=6.170,<7'
	touch $(AIRFLOW_STAMP)

test-airflow: setup $(AIRFLOW_STAMP) ## The DAGs under a real Airflow 3 (.venv-airflow, SQLite, real Kafka)
	$(BIN)/churnstream data fetch
	CHURNSTREAM_BIN=$(CURDIR)/$(BIN)/churnstream AIRFLOW__CORE__LOAD_EXAMPLES=False \
	  AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	  $(AIRFLOW_VENV)/bin/python -m pytest tests/airflow $(AIRFLOW_PYTEST_ARGS)

test-unit: setup ## Unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff, ruff format --check, mypy --strict, lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## Throughput and latency benchmarks (bench/)
	$(BIN)/python -m bench $(BENCH_ARGS)

SOAK_MINUTES ?= 30
SOAK_RATE ?= 2000
soak: setup ## Soak one streaming scorer (SOAK_MINUTES=30, SOAK_RATE=2000 events/s): RSS, fds, threads, p99
	$(BIN)/python -m bench soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) $(SOAK_ARGS)

WINDOW_EVENTS ?= 10000000
window-rss: setup ## One batch window over WINDOW_EVENTS=10000000 events: the scorer's RSS every second
	$(BIN)/python -m bench window-rss --events $(WINDOW_EVENTS) $(WINDOW_ARGS)

clean: ## Remove the venv, caches and generated files (keeps data/)
	rm -rf $(VENV) $(AIRFLOW_VENV) $(LEGACY_VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
