"""Type drift: a late value that does not fit its column widens it; it never fails and never loses a value.

Types are inferred from the first 20,000 rows (``sample_rows``); the files here have
50,000 rows and put the odd values after row 20,000, so the converter only meets them
while converting.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from _util import assert_column_matches_text, convert_chunks, read_parquet

import s3proc

ROWS = 50_000
LATE = 40_000  # well past the 20,000 sampled rows

# Small row groups and chunks: chunks are handed out long before the late value is read,
# so the converter must void them with SchemaRestart.
RESTART_OPTS = {"chunk_size": 64 * 1024, "read_size": 64 * 1024, "row_group_rows": 4096}


def _ints(i: int) -> str:
    return str((i * 7919) % 1_000_003 - 500_000)


def _dates(i: int) -> str:
    return str(dt.date(2000, 1, 1) + dt.timedelta(days=i % 9000))


def _timestamps(i: int) -> str:
    return str(dt.datetime(2000, 1, 1) + dt.timedelta(seconds=i * 3607))


def write_drift_csv(path: Path, base: Callable[[int], str], late: dict[int, str]) -> list[str]:
    """A 3-column CSV ``id,v,pad``: ``v`` is ``base(i)`` except at the rows in ``late``.

    ``pad`` is random hex so that the Parquet output is large enough to be handed out in
    many chunks before the late rows are reached. Returns the texts of ``v``.
    """
    rng = random.Random(1234)
    texts = [late.get(i, base(i)) for i in range(ROWS)]
    lines = ["id,v,pad"]
    lines += [f"{i},{t},{rng.getrandbits(96):024x}" for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return texts


CASES = {
    # name: (base, late values, type inferred from the sample, expected final type of v)
    "int_then_NA": (_ints, {LATE: "N/A"}, "int64", pa.string()),
    "int_then_float": (_ints, {LATE: "2.5", LATE + 1: "-0.125"}, "int64", pa.float64()),
    "int_then_huge": (_ints, {LATE: "12345678901234567890"}, "int64", pa.string()),
    "int_then_beyond_2_53": (_ints, {LATE: "9007199254740993"}, "int64", pa.int64()),
    "int_then_float_then_beyond_2_53": (
        _ints,
        {LATE: "2.5", LATE + 5000: "9007199254740993"},
        "int64",
        pa.string(),
    ),
    "int_then_leading_zero": (_ints, {LATE: "007"}, "int64", pa.string()),
    "bool_then_text": (lambda i: "true" if i % 3 else "false", {LATE: "maybe"}, "boolean", pa.string()),
    "date_then_timestamp": (_dates, {LATE: "2024-01-02 03:04:05"}, "date", pa.timestamp("us")),
    "date_then_timestamp_then_text": (
        _dates,
        {LATE: "2024-01-02 03:04:05", LATE + 3000: "soon"},
        "date",
        pa.string(),
    ),
    "timestamp_then_zoned": (_timestamps, {LATE: "2024-01-02T03:04:05Z"}, "timestamp", pa.string()),
    "float_then_text": (lambda i: f"{i}.25", {LATE: "n/a"}, "float64", pa.string()),
}

TYPE_NAMES = {
    pa.string(): "string",
    pa.float64(): "float64",
    pa.int64(): "int64",
    pa.timestamp("us"): "timestamp",
}


def _check(table: pa.Table, texts: list[str], expected_type: pa.DataType) -> None:
    assert table.num_rows == ROWS
    assert table.column_names == ["id", "v", "pad"]
    assert table.schema.field("v").type == expected_type
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == list(range(ROWS))
    if expected_type == pa.timestamp("us"):
        # A date in a timestamp column is its midnight.
        texts = [t if len(t) > 10 else t + " 00:00:00" for t in texts]
    assert_column_matches_text("v", table.column("v"), texts)
    if expected_type == pa.string():
        assert table.column("v").to_pylist() == texts, "a widened string column holds the text as written"


@pytest.mark.parametrize("case", list(CASES))
def test_late_value_widens_column(tmp_path: Path, case: str) -> None:
    base, late, sampled, expected_type = CASES[case]
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, base, late)
    plan = s3proc.inspect(path)
    assert ("v", sampled) in [tuple(c) for c in plan["columns"]], "the sample must not see the late value"
    out = convert_chunks(path)
    _check(out.table, texts, expected_type)
    assert out.metadata["s3proc.rows"] == str(ROWS)
    assert ("v", TYPE_NAMES[expected_type]) in [tuple(c) for c in out.iterator.plan["columns"]]


@pytest.mark.parametrize("case", list(CASES))
def test_late_value_raises_schema_restart_mid_iteration(tmp_path: Path, case: str) -> None:
    base, late, sampled, expected_type = CASES[case]
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, base, late)
    out = convert_chunks(path, **RESTART_OPTS)
    if TYPE_NAMES[expected_type] != sampled:
        # (2^53 + 1 still fits int64: there the physical type need not change.)
        assert out.restarts_seen >= 1, "chunks were out before the late value: a SchemaRestart was due"
    assert out.iterator.restarts == out.restarts_seen
    _check(out.table, texts, expected_type)
    assert out.iterator.rows == ROWS
    assert out.metadata["s3proc.rows"] == str(ROWS)
    assert ("v", TYPE_NAMES[expected_type]) in [tuple(c) for c in out.iterator.plan["columns"]]


def test_every_chunk_after_restart_is_full_size(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    write_drift_csv(path, _ints, {LATE: "N/A"})
    out = convert_chunks(path, **RESTART_OPTS)
    assert out.restarts_seen >= 1
    assert len(out.chunks) > 1
    assert all(len(c) == RESTART_OPTS["chunk_size"] for c in out.chunks[:-1])


def test_convert_rewinds_seekable_output(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, _ints, {LATE: "N/A"})
    with open(tmp_path / "out.parquet", "w+b") as out:
        out.write(b"keep")  # convert writes from the stream's position, and rewinds to it
        result = s3proc.convert(path, out, **RESTART_OPTS)
        assert result.restarts >= 1
        out.seek(0)
        data = out.read()
    assert data[:4] == b"keep"
    assert result.bytes == len(data) - 4
    assert result.rows == ROWS
    _check(read_parquet(data[4:]), texts, pa.string())


class _Pipe(io.RawIOBase):
    """A write-only stream that cannot seek, like stdout to a pipe."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)


def test_convert_to_unseekable_output_infers_from_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, _ints, {LATE: "2.5"})
    pipe = _Pipe()
    result = s3proc.convert(path, pipe, **RESTART_OPTS)
    assert result.restarts == 0
    _check(read_parquet(bytes(pipe.buf)), texts, pa.float64())


def test_sample_rows_none_never_restarts(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, _ints, {LATE: "N/A"})
    out = convert_chunks(path, sample_rows=None, **RESTART_OPTS)
    assert out.restarts_seen == 0
    _check(out.table, texts, pa.string())


def test_small_sample_rows(tmp_path: Path) -> None:
    # sample_rows=10: the float shows up right after the sample.
    data = "v\n" + "".join(f"{i}\n" for i in range(10)) + "0.5\n" + "".join(f"{i}\n" for i in range(10))
    out = convert_chunks(data.encode(), sample_rows=10)
    texts = data.splitlines()[1:]
    assert out.table.schema.field("v").type == pa.float64()
    assert_column_matches_text("v", out.table.column("v"), texts)


def test_file_like_source_is_reread_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "drift.csv"
    texts = write_drift_csv(path, _ints, {LATE: "N/A"})
    with open(path, "rb") as f:
        out = convert_chunks(f, **RESTART_OPTS)
    assert out.restarts_seen >= 1
    _check(out.table, texts, pa.string())


def test_late_long_row_adds_column(tmp_path: Path) -> None:
    # A row with more fields than the header, after the sample: an extra column, nothing dropped.
    path = tmp_path / "ragged.csv"
    rows = [f"{i},{i * 2}" for i in range(ROWS)]
    rows[LATE] = f"{LATE},{LATE * 2},extra,1"
    path.write_text("a,b\n" + "\n".join(rows) + "\n", encoding="utf-8")
    for opts in ({}, RESTART_OPTS):
        table = convert_chunks(path, **opts).table
        assert table.column_names == ["a", "b", "column_3", "column_4"]
        assert table.num_rows == ROWS
        assert table.column("a").to_pylist() == list(range(ROWS))
        assert table.column("column_3").to_pylist() == [None] * LATE + ["extra"] + [None] * (ROWS - LATE - 1)
        assert_column_matches_text(
            "column_4", table.column("column_4"), [None] * LATE + ["1"] + [None] * (ROWS - LATE - 1)
        )
