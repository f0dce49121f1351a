# The same verbs as every project we learn from. `make test` is what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR ?= $(HOME)/.cache/s3proc-target

.PHONY: venv build-dev build-release format lint test test-rust test-python test-slow bench bench-service demo clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Installs the package (release build of the Rust core) with test and lint tools.
venv: $(PY)
	$(PY) -m pip install -q '.[test,lint]'

build-dev: $(PY)
	$(PY) -m pip install -q maturin
	$(VENV)/bin/maturin develop

build-release: venv

format:
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest s3proc._core --allowlist .stubtest-allowlist

test-rust:
	cargo test --release -p s3proc-core

test-python:
	$(PY) -m pytest -q

# Everything CI checks, from a fresh virtual environment if there is none.
test: venv test-rust lint test-python

test-slow: venv
	$(PY) -m pytest -q -m slow

bench: $(PY)
	$(PY) -m pip install -q '.[bench]'
	$(PY) benches/compare.py $(DATA)

# The service end to end against a local moto server: `make bench-service ARGS='--big-rows 200000'`.
bench-service: $(PY)
	$(PY) -m pip install -q '.[bench,test]'
	$(PY) benches/service.py $(ARGS)

# The main job on the bundled examples: drop them into an inbox, ship them once to an S3
# server inside the process (moto, in memory), list what arrived with sizes and row counts.
demo: $(PY)
	$(PY) -m pip install -q '.[embedded]'
	rm -rf demo && mkdir -p demo/inbox/2024 && cp examples/orders.csv demo/inbox/2024/ \
	    && cp examples/stations.tsv examples/logo.png examples/events.ndjson examples/readings.xml \
	       examples/exports.zip demo/inbox/
	cd demo && ../$(VENV)/bin/s3proc run --embedded-s3 --once --quiet-period 0 --log-format console

clean:
	rm -rf $(VENV) target demo orders.parquet .pytest_cache .mypy_cache .ruff_cache .hypothesis
