"""pytest-benchmark benches: conversion throughput, apart from any upload.

    pytest benches -p no:cacheprovider --benchmark-columns=min,median,max,rounds

Inputs come from ../shared/tools/gen_data.py (seeded). Each bench converts into
memory, so the figures are the converter's own. The peers run in the same session
for a like-for-like table. ``S3PROC_BENCH_ROWS`` sets the size (default 500,000
rows, about 95 MB of CSV).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import s3proc

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

ROWS = int(os.environ.get("S3PROC_BENCH_ROWS", "500000"))
GEN = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "gen_data.py"


@pytest.fixture(scope="session")
def csv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not GEN.exists():
        pytest.skip(f"{GEN} not found")
    out = tmp_path_factory.mktemp("bench") / "data.csv"
    subprocess.run(
        [sys.executable, str(GEN), "--rows", str(ROWS), "--format", "csv", "--seed", "42", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _s3proc(path: Path, **options: object) -> int:
    return sum(len(c) for c in s3proc.ParquetChunks(path, **options))


@pytest.fixture(autouse=True)
def _release_only() -> None:
    if s3proc.build_profile != "release":
        pytest.skip("benchmarks need a release build of the core")


@pytest.mark.benchmark(group="csv-to-parquet-zstd3")
def test_s3proc(benchmark: BenchmarkFixture, csv_file: Path) -> None:
    size = benchmark(_s3proc, csv_file, zstd_level=3)
    benchmark.extra_info["output_bytes"] = size
    benchmark.extra_info["input_mb"] = csv_file.stat().st_size / 1e6


@pytest.mark.benchmark(group="csv-to-parquet-zstd3")
def test_duckdb(benchmark: BenchmarkFixture, csv_file: Path, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "duck.parquet"

    def run() -> int:
        duckdb.sql(
            f"COPY (SELECT * FROM read_csv('{csv_file}')) TO '{out}' "
            "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3)"
        )
        return out.stat().st_size

    benchmark.extra_info["output_bytes"] = benchmark(run)


@pytest.mark.benchmark(group="csv-to-parquet-zstd3")
def test_polars(benchmark: BenchmarkFixture, csv_file: Path, tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    out = tmp_path / "polars.parquet"

    def run() -> int:
        pl.scan_csv(csv_file).sink_parquet(out, compression="zstd", compression_level=3)
        return out.stat().st_size

    benchmark.extra_info["output_bytes"] = benchmark(run)


@pytest.mark.benchmark(group="late-drift")
def test_s3proc_late_drift(benchmark: BenchmarkFixture, csv_file: Path, tmp_path: Path) -> None:
    """A value near the end widens a column: the cost of the restart."""
    drifted = tmp_path / "drift.csv"
    with open(csv_file, "rb") as src, open(drifted, "wb") as dst:
        dst.write(src.read())
        dst.write(b"1,1,2.5,1,1.00,2023-01-01T00:00:00Z,2023-01-02,true,DE,shipped,x,late,web\n")

    def run() -> int:
        with open(os.devnull, "wb") as sink:
            return s3proc.convert(drifted, sink).bytes

    benchmark(run)
