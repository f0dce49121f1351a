"""Helpers shared by the test modules: converting, reading back, comparing with text.

The converter writes typed columns, while every reference we compare against (the
csv-spectrum JSON, Python's csv module, DuckDB with ``all_varchar``) gives text. So
comparisons go the other way round: the reference text is parsed the way its column's
Parquet type says, and that must equal what we read back. A string column must match
byte for byte.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import s3proc
from s3proc.archives import is_archive

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GEN_DATA = SHARED / "tools" / "gen_data.py"
S3PROC_BIN = Path(sys.executable).parent / "s3proc"

# The columns gen_data.py writes, with the type each must get.
GEN_TYPES = {
    "id": pa.int64(),
    "customer_id": pa.int64(),
    "quantity": pa.int64(),
    "store_id": pa.int64(),
    "amount": pa.float64(),
    "created_at": pa.timestamp("us", tz="UTC"),
    "ship_date": pa.date32(),
    "is_member": pa.bool_(),
    "country": pa.string(),
    "status": pa.string(),
    "order_uuid": pa.string(),
    "comment": pa.string(),
    "channel": pa.string(),
}


class Converted:
    """The outcome of iterating a ``ParquetChunks`` to its end."""

    def __init__(self, data: bytes, chunks: list[bytes], restarts_seen: int, it: s3proc.ParquetChunks):
        self.data = data
        self.chunks = chunks
        self.restarts_seen = restarts_seen
        self.iterator = it

    @property
    def table(self) -> pa.Table:
        return read_parquet(self.data)

    @property
    def metadata(self) -> dict[str, str]:
        return parquet_metadata(self.data)


def convert_chunks(source: Any, **options: Any) -> Converted:
    """Iterates ``ParquetChunks`` the way an uploader does: a restart voids the chunks so far."""
    it = s3proc.ParquetChunks(source, **options)
    chunks: list[bytes] = []
    restarts = 0
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            break
        except s3proc.SchemaRestart:
            restarts += 1
            chunks = []
            continue
        assert isinstance(chunk, bytes)
        chunks.append(chunk)
    return Converted(b"".join(chunks), chunks, restarts, it)


def convert_bytes(source: Any, **options: Any) -> bytes:
    """The Parquet file ``source`` converts to."""
    return convert_chunks(source, **options).data


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


def parquet_metadata(data: bytes) -> dict[str, str]:
    md = pq.ParquetFile(pa.BufferReader(data)).metadata.metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if not k.startswith(b"ARROW:")}


def convert_table(source: Any, **options: Any) -> pa.Table:
    return read_parquet(convert_bytes(source, **options))


# ------------------------------------------------------------------ text <-> typed values
def _parse_datetime(text: str) -> dt.datetime:
    # Python 3.11's fromisoformat takes "Z", "T" or " ", fractions and offsets.
    return dt.datetime.fromisoformat(text)


def text_as(text: str, type_: pa.DataType) -> Any:
    """The value ``text`` stands for in a column of Arrow type ``type_``."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return text
    if pa.types.is_int64(type_):
        return int(text)
    if pa.types.is_float64(type_):
        return float(text)
    if pa.types.is_boolean(type_):
        low = text.lower()
        assert low in ("true", "false"), f"{text!r} is not a boolean"
        return low == "true"
    if pa.types.is_date32(type_):
        return dt.date.fromisoformat(text)
    if pa.types.is_timestamp(type_):
        value = _parse_datetime(text)
        if type_.tz is None:
            assert value.tzinfo is None, f"{text!r} has a zone but the column has none"
        else:
            assert value.tzinfo is not None, f"{text!r} has no zone but the column is {type_}"
            value = value.astimezone(dt.UTC)
        return value
    raise AssertionError(f"unexpected column type {type_}")


def same_value(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) and isinstance(got, float):
        if math.isnan(expected):
            return math.isnan(got)
        return expected == got and math.copysign(1, expected) == math.copysign(1, got)
    if isinstance(expected, dt.datetime) and isinstance(got, dt.datetime):
        return expected == got and (expected.tzinfo is None) == (got.tzinfo is None)
    return type(expected) is type(got) and expected == got


def assert_column_matches_text(
    name: str,
    column: pa.ChunkedArray | pa.Array,
    texts: Sequence[str | None],
    null_values: Iterable[str] = ("",),
) -> None:
    """Every value of ``column`` is what the matching text means (a null marker or None: null)."""
    nulls = set(null_values)
    got = column.to_pylist()
    assert len(got) == len(texts), f"column {name!r}: {len(got)} values, expected {len(texts)}"
    for row, (text, value) in enumerate(zip(texts, got, strict=True)):
        if text is None or text in nulls:
            assert value is None, f"column {name!r} row {row}: {text!r} should be null, got {value!r}"
            continue
        expected = text_as(text, column.type)
        assert same_value(expected, value), (
            f"column {name!r} ({column.type}) row {row}: text {text!r} means {expected!r}, got {value!r}"
        )


def assert_table_matches_rows(
    table: pa.Table,
    header: Sequence[str],
    rows: Sequence[Sequence[str | None]],
    null_values: Iterable[str] = ("",),
) -> None:
    """``table`` holds exactly ``rows`` (text) under the column names ``header``."""
    assert table.column_names == list(header)
    assert table.num_rows == len(rows)
    for j, name in enumerate(header):
        texts = [r[j] if j < len(r) else None for r in rows]
        assert_column_matches_text(name, table.column(j), texts, null_values)


def typed_from_text(texts: pa.ChunkedArray | pa.Array, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """Vectorised ``text_as`` for large, well-formed columns (gen_data.py output)."""
    if pa.types.is_string(type_):
        return texts
    if pa.types.is_boolean(type_):
        return pc.equal(pc.utf8_lower(texts), "true")
    return pc.cast(texts, type_)


def assert_table_matches_text_table(ours: pa.Table, text: pa.Table) -> None:
    """``ours`` (typed) equals ``text`` (all strings, e.g. DuckDB all_varchar) column by column."""
    assert ours.column_names == text.column_names
    assert ours.num_rows == text.num_rows
    for name in ours.column_names:
        want = typed_from_text(text.column(name), ours.schema.field(name).type)
        got = ours.column(name)
        if not got.equals(want):
            got_l, want_l = got.to_pylist(), want.to_pylist()
            bad = next(i for i, (a, b) in enumerate(zip(got_l, want_l, strict=True)) if a != b)
            raise AssertionError(
                f"column {name!r} differs first at row {bad}: got {got_l[bad]!r}, "
                f"expected {want_l[bad]!r} (text {text.column(name)[bad].as_py()!r})"
            )


def duckdb_text_table(path: os.PathLike[str] | str, **read_csv_options: Any) -> pa.Table:
    """DuckDB's reading of a CSV, every column as text (empty field: null)."""
    import duckdb

    opts = {"all_varchar": True, "header": True, **read_csv_options}
    args = ", ".join(f"{k} := ${k}" for k in opts)
    con = duckdb.connect()
    try:
        rel = con.sql(f"SELECT * FROM read_csv($path, {args})", params={"path": str(path), **opts})
        return rel.to_arrow_table()
    finally:
        con.close()


# ------------------------------------------------------------------ sources, read without s3proc
def make_archive(name: str, members: dict[str, bytes]) -> bytes:
    """A zip (deflated) or a tar (gzip-compressed for ``.tar.gz``) holding ``members``."""
    out = io.BytesIO()
    if name.endswith(".zip"):
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for entry, data in members.items():
                z.writestr(entry, data)
    else:
        with tarfile.open(fileobj=out, mode="w:gz" if name.endswith(".gz") else "w") as t:
            for entry, data in members.items():
                info = tarfile.TarInfo(entry)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def archive_members(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """Every file entry of the zip or tar ``data`` as zipfile/tarfile see it, nested archives
    walked (an entry of ``inner.tar.gz`` in the archive: ``inner.tar.gz/<entry>``)."""
    if name.lower().endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            items = [(i.filename, z.read(i)) for i in z.infolist() if not i.is_dir()]
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            items = [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]  # type: ignore[union-attr]
    out = []
    for entry, content in items:
        if is_archive(entry):
            out += [(f"{entry}/{e}", c) for e, c in archive_members(entry, content)]
        else:
            out.append((entry, content))
    return out


def _json_text(v: Any) -> str | None:
    if v is None:
        return None
    return ("false", "true")[v] if isinstance(v, bool) else str(v)


def source_text_table(name: str, source: bytes | Path) -> pa.Table:
    """The table ``source`` holds, every column as text (null: absent or empty), read with
    pyarrow's CSV reader, json and ElementTree: what the Parquet object must hold, typed."""
    lower = name.lower()
    if lower.endswith((".csv", ".csv.gz")):

        def opened() -> Any:  # a path: pyarrow decompresses by its extension
            if isinstance(source, Path):
                return str(source)
            return io.BytesIO(gzip.decompress(source) if lower.endswith(".gz") else source)

        parse = pacsv.ParseOptions(newlines_in_values=True)  # the generator's comments hold some
        header = pacsv.open_csv(opened(), parse_options=parse).schema.names
        opts = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True)
        return pacsv.read_csv(opened(), parse_options=parse, convert_options=opts)
    data = source if isinstance(source, bytes) else source.read_bytes()
    if lower.endswith(".ndjson"):
        records = [json.loads(line) for line in data.splitlines() if line.strip()]
    elif lower.endswith(".json"):
        records = json.loads(data)
    elif lower.endswith(".xml"):
        records = [
            {"@" + k: v for k, v in e.attrib.items()} | {c.tag: c.text for c in e}
            for e in ET.fromstring(data)
        ]
    else:
        raise AssertionError(f"no reference reader for {name}")
    columns = dict.fromkeys(k for r in records for k in r)
    return pa.table({c: pa.array([_json_text(r.get(c)) for r in records], pa.string()) for c in columns})


def assert_parquet_holds(key: str, got: pa.Table, name: str, source: bytes | Path) -> None:
    want = source_text_table(name, source)
    assert sorted(got.column_names) == sorted(want.column_names), (key, got.column_names, want.column_names)
    try:
        assert_table_matches_text_table(got, want.select(got.column_names))
    except AssertionError as e:
        raise AssertionError(f"{key} differs from {name}: {e}") from None


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # the last line, cut by the kill
                out.append(json.loads(line))
    return out


# ------------------------------------------------------------------ data generation
def run_gen_data(fmt: str, rows: int, seed: int, out: Path) -> Path:
    """Runs the shared generator (it needs numpy and pyarrow, present in the test venv)."""
    subprocess.run(
        [
            sys.executable,
            str(GEN_DATA),
            "--format",
            fmt,
            "--rows",
            str(rows),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def json_dialect(metadata: dict[str, str]) -> dict[str, Any]:
    return json.loads(metadata["s3proc.dialect"])


def state_rows(watch: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the state database of the service watching ``watch``."""
    db = sqlite3.connect(watch / ".s3proc" / "state.db")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


_PEAK = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(usage.ru_maxrss * 1024)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def peak_rss(cmd: Sequence[str]) -> tuple[int, int, str]:
    """Runs ``cmd``; its exit status, peak RSS in bytes and stderr. Started from a small Python
    process: a child of the test process would count that process's own peak as its own (Linux
    keeps the parent's high-water mark across fork and exec)."""
    done = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True, check=False)
    return done.returncode, int(done.stdout.split()[-1]), done.stderr
