"""Threads, determinism and chunking."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _util import GEN_TYPES, convert_bytes, convert_chunks, read_parquet

import s3proc

SEEDS = [11, 12, 13, 14, 15, 16]
ROWS = 40_000


@pytest.fixture(scope="module")
def inputs(gen_data) -> list[Path]:
    return [gen_data("csv", ROWS, seed) for seed in SEEDS]


def test_threads_give_same_bytes_as_sequential(inputs: list[Path]) -> None:
    sequential = [convert_bytes(p) for p in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(convert_bytes, inputs))
    for path, a, b in zip(inputs, sequential, concurrent, strict=True):
        assert a == b, f"{path.name}: converted in a thread, the bytes differ"
        assert read_parquet(a).num_rows == ROWS


def test_threads_same_file_many_times(inputs: list[Path]) -> None:
    expected = convert_bytes(inputs[0])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: convert_bytes(inputs[0]), range(8)))
    assert all(r == expected for r in results)


def test_threads_with_small_chunks_and_restarts(tmp_path: Path) -> None:
    # Conversions that restart, in parallel, each on its own file.
    paths = []
    for k in range(4):
        p = tmp_path / f"drift{k}.csv"
        body = "".join(f"{i},{i * k}\n" for i in range(30_000)) + f"x,{k}.5\n"
        p.write_text("a,b\n" + body, encoding="utf-8")
        paths.append(p)
    opts = {"chunk_size": 16 * 1024, "read_size": 64 * 1024, "row_group_rows": 2048}
    sequential = [convert_bytes(p, **opts) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda p: convert_bytes(p, **opts), paths))
    assert sequential == concurrent
    for k, data in enumerate(sequential):
        t = read_parquet(data)
        assert t.num_rows == 30_001
        assert t.column("a").to_pylist()[-1] == "x"
        assert t.column("b").to_pylist()[-1] == k + 0.5


def test_gil_is_released_while_converting(inputs: list[Path]) -> None:
    # A pure-Python thread keeps running while another thread converts.
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        it = s3proc.ParquetChunks(inputs[1])
        before = ticks
        data = b"".join(it)
        during = ticks - before
    finally:
        stop.set()
        t.join()
    assert read_parquet(data).num_rows == ROWS
    assert during > 1000


def test_same_input_twice_gives_same_bytes(inputs: list[Path]) -> None:
    assert convert_bytes(inputs[2]) == convert_bytes(inputs[2])


def test_source_kinds_give_same_bytes(inputs: list[Path]) -> None:
    path = inputs[3]
    by_path = convert_bytes(path)
    assert convert_bytes(path.read_bytes(), name=str(path)) == by_path
    with open(path, "rb") as f:
        assert convert_bytes(f) == by_path  # a file object is named by its path


def test_output_schema_of_generated_data(inputs: list[Path]) -> None:
    table = read_parquet(convert_bytes(inputs[0]))
    assert {f.name: f.type for f in table.schema} == GEN_TYPES


# ------------------------------------------------------------------ chunks
@pytest.fixture(scope="module")
def ten_mb(gen_data) -> Path:
    path = gen_data("csv", 55_000, 21)  # about 10 MB of CSV
    assert path.stat().st_size > 9_000_000
    return path


@pytest.mark.parametrize("chunk_size", [1 << 20, 256 * 1024, 64 * 1024 + 7])
def test_every_chunk_but_last_is_chunk_size(ten_mb: Path, chunk_size: int) -> None:
    out = convert_chunks(ten_mb, chunk_size=chunk_size, row_group_rows=8192)
    assert out.restarts_seen == 0
    assert len(out.chunks) >= 2, "the test needs several chunks"
    sizes = [len(c) for c in out.chunks]
    assert all(s == chunk_size for s in sizes[:-1]), sizes
    assert sizes[-1] > 0
    table = read_parquet(out.data)
    assert table.num_rows == 55_000
    assert pq.ParquetFile(pa.BufferReader(out.data)).metadata.num_row_groups >= 2


def test_chunks_with_default_row_groups(ten_mb: Path) -> None:
    out = convert_chunks(ten_mb, chunk_size=1 << 20)
    sizes = [len(c) for c in out.chunks]
    assert all(s == 1 << 20 for s in sizes[:-1]), sizes
    assert read_parquet(out.data).num_rows == 55_000


def test_chunk_size_does_not_change_the_file(ten_mb: Path) -> None:
    a = convert_bytes(ten_mb, chunk_size=1 << 20)
    b = convert_bytes(ten_mb, chunk_size=100_000)
    assert a == b


def test_zstd_levels_read_back_equal(ten_mb: Path) -> None:
    low = convert_bytes(ten_mb, zstd_level=1)
    high = convert_bytes(ten_mb, zstd_level=9)
    assert read_parquet(low).equals(read_parquet(high))
    meta = pq.ParquetFile(pa.BufferReader(low)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_rows_is_none_until_done(ten_mb: Path) -> None:
    it = s3proc.ParquetChunks(ten_mb, chunk_size=1 << 20, row_group_rows=8192)
    assert it.rows is None
    first = next(it)
    assert len(first) == 1 << 20
    rest = list(it)
    assert it.rows == 55_000
    assert read_parquet(first + b"".join(rest)).num_rows == 55_000
    with pytest.raises(StopIteration):
        next(it)
