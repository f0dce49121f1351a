# The same verbs as every project we learn from. `make test` is what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR ?= $(HOME)/.cache/s3proc-target

.PHONY: venv build-dev build-release format lint test test-rust test-python test-slow bench demo clean

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

# The main job on a bundled example: detect the table, convert it to Parquet.
demo: $(PY)
	$(PY) -m pip install -q .
	$(VENV)/bin/s3proc inspect examples/orders.csv
	$(VENV)/bin/s3proc convert examples/orders.csv orders.parquet

clean:
	rm -rf $(VENV) target orders.parquet .pytest_cache .mypy_cache .ruff_cache .hypothesis
