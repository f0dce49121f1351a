"""Compressed single files: gzip (multi-member too), zstd, bzip2 and xz around a CSV are
decompressed on the fly and give exactly the table of the plain file.

The compressed bytes are made here with Python's own compressors (and ``zstandard``),
so the decoders in the core are checked against independent encoders.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from _util import S3PROC_BIN, convert_chunks, peak_rss, run_gen_data

import s3proc
from s3proc import _core

# The plain CSV, and the table and metadata its conversion gives.
Plain = tuple[Path, pa.Table, dict[str, str]]

COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": (".gz", lambda b: gzip.compress(b, compresslevel=1, mtime=0)),
    "zstd": (".zst", lambda b: zstandard.ZstdCompressor(level=1).compress(b)),
    "bzip2": (".bz2", lambda b: bz2.compress(b, compresslevel=1)),
    "xz": (".xz", lambda b: lzma.compress(b, preset=1)),
}

ROWS = 20_000


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Plain:
    """A gen_data CSV, and the table and metadata its plain conversion gives."""
    path = run_gen_data("csv", ROWS, 42, tmp_path_factory.mktemp("plain") / "orders.csv")
    out = convert_chunks(path)
    assert out.table.num_rows == ROWS
    return path, out.table, out.metadata


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows
    for name in want.column_names:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


@pytest.mark.parametrize("codec", list(COMPRESSORS))
def test_each_codec_converts_to_the_plain_table(codec: str, plain: Plain, tmp_path: Path) -> None:
    csv, table, meta = plain
    suffix, compress = COMPRESSORS[codec]
    path = tmp_path / f"orders.csv{suffix}"
    path.write_bytes(compress(csv.read_bytes()))
    assert _core.sniff_compression(path) == codec
    out = convert_chunks(path)
    assert_same_table(out.table, table)
    assert out.metadata["s3proc.compression"] == codec
    assert out.metadata["s3proc.source"] == str(path)
    same = {k: v for k, v in out.metadata.items() if k not in ("s3proc.compression", "s3proc.source")}
    assert same == {k: v for k, v in meta.items() if k != "s3proc.source"}
    assert s3proc.inspect(path)["columns"] == s3proc.inspect(csv)["columns"]


@pytest.mark.parametrize(("fmt", "codec"), [("ndjson", "gzip"), ("json", "zstd"), ("xml", "xz")])
def test_compressed_json_and_xml_convert_to_the_plain_table(fmt: str, codec: str, tmp_path: Path) -> None:
    """The same table as the plain file; the metadata names the file as stored and its codec."""
    plain = run_gen_data(fmt, 2_000, 7, tmp_path / f"orders.{fmt}")
    want = convert_chunks(plain)
    suffix, compress = COMPRESSORS[codec]
    path = tmp_path / f"orders.{fmt}{suffix}"
    path.write_bytes(compress(plain.read_bytes()))
    out = convert_chunks(path)
    assert_same_table(out.table, want.table)
    assert out.metadata["s3proc.source"] == str(path)
    assert out.metadata["s3proc.compression"] == codec
    same = {k: v for k, v in out.metadata.items() if k not in ("s3proc.compression", "s3proc.source")}
    assert same == {k: v for k, v in want.metadata.items() if k != "s3proc.source"}


def test_bytes_and_file_like_sources_are_decompressed(plain: Plain, tmp_path: Path) -> None:
    csv, table, _ = plain
    data = COMPRESSORS["zstd"][1](csv.read_bytes())
    assert_same_table(convert_chunks(data).table, table)
    path = tmp_path / "orders.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert_same_table(convert_chunks(f).table, table)
    assert_same_table(convert_chunks(Unseekable(data)).table, table)


class Unseekable(io.RawIOBase):
    """A pipe-like stream: it can only be read once, front to back."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)


class Trickle(Unseekable):
    """A pipe that has 100 bytes at a time: ``read1`` returns them; ``read(n)`` would wait for n."""

    def read1(self, n: int = -1) -> bytes:
        return self._data.read(100 if n < 0 else min(n, 100))

    def read(self, n: int = -1) -> bytes:
        raise AssertionError("read(n) would wait until n bytes came through the pipe")


def test_a_stream_with_read1_is_read_as_it_comes(plain: Plain) -> None:
    csv, table, _ = plain
    assert_same_table(convert_chunks(Trickle(csv.read_bytes())).table, table)


def test_multi_member_gzip(plain: Plain, tmp_path: Path) -> None:
    csv, table, _ = plain
    text = csv.read_bytes()
    cuts = [0, 7, len(text) // 3 + 5, len(text) // 2, len(text)]  # mid-line, mid-header too
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(b"".join(gzip.compress(text[a:b], mtime=0) for a, b in itertools.pairwise(cuts)))
    assert_same_table(convert_chunks(path).table, table)


def test_zero_padding_after_gzip_is_read_and_other_data_after_it_is_named(
    plain: Plain, tmp_path: Path
) -> None:
    """Zero bytes after the last member (a block device's padding) are read past, as ``gzip -d``
    and Python's gzip do; other data there is an error that says where it is, not a bad header."""
    csv, table, _ = plain
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(gzip.compress(csv.read_bytes(), mtime=0) + bytes(4096))
    assert_same_table(convert_chunks(path).table, table)
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(s3proc.SourceError, match="data after the end of the gzip stream"):
        convert_chunks(path)


def test_gzip_named_csv_is_decompressed(plain: Plain, tmp_path: Path) -> None:
    csv, table, _ = plain
    path = tmp_path / "orders.csv"
    path.write_bytes(gzip.compress(csv.read_bytes(), mtime=0))
    assert _core.sniff_compression(path) == "gzip"
    out = convert_chunks(path)
    assert_same_table(out.table, table)
    assert out.metadata["s3proc.compression"] == "gzip"


def test_late_drift_inside_gzip_restarts_and_decompresses_again(tmp_path: Path) -> None:
    rows, late = 50_000, 40_000  # past the 20,000 sampled rows
    texts = ["N/A" if i == late else str(i * 3) for i in range(rows)]
    noise = random.Random(7)  # a column Parquet cannot shrink, so chunks are out early
    text = "id,v,pad\n" + "".join(f"{i},{v},{noise.getrandbits(64):016x}\n" for i, v in enumerate(texts))
    path = tmp_path / "drift.csv.gz"
    path.write_bytes(gzip.compress(text.encode(), compresslevel=1, mtime=0))
    out = convert_chunks(path, chunk_size=64 * 1024, read_size=64 * 1024, row_group_rows=4096)
    assert out.restarts_seen >= 1, "chunks were out before the late value: a SchemaRestart was due"
    assert out.table.schema.field("v").type == pa.string()
    assert out.table.column("v").to_pylist() == texts
    assert out.table.column("id").to_pylist() == list(range(rows))


def test_truncated_gzip_is_a_source_error(plain: Plain, tmp_path: Path) -> None:
    csv, _, _ = plain
    data = gzip.compress(csv.read_bytes(), mtime=0)
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(s3proc.SourceError, match=r"corrupt gzip data in .*orders\.csv\.gz: truncated"):
        convert_chunks(path)
    # The command line leaves no output that could pass for complete.
    out = tmp_path / "out.parquet"
    run = subprocess.run(
        [str(S3PROC_BIN), "convert", str(path), str(out)], capture_output=True, text=True, check=False
    )
    assert run.returncode != 0
    assert "corrupt gzip data" in run.stderr and "truncated" in run.stderr
    assert not out.exists()


def test_corrupt_xz_is_a_source_error(plain: Plain, tmp_path: Path) -> None:
    csv, _, _ = plain
    data = bytearray(lzma.compress(csv.read_bytes(), preset=1))
    mid = len(data) // 2
    data[mid : mid + 32] = bytes(b ^ 0x5A for b in data[mid : mid + 32])
    path = tmp_path / "orders.csv.xz"
    path.write_bytes(bytes(data))
    with pytest.raises(s3proc.SourceError, match=r"corrupt xz data in .*orders\.csv\.xz"):
        convert_chunks(path)


def test_gz_name_on_plain_data_is_refused(plain: Plain, tmp_path: Path) -> None:
    csv, _, _ = plain
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(csv.read_bytes())
    assert _core.sniff_compression(path) is None
    refused = r"orders\.csv\.gz: the name says gzip but the data is not gzip"
    with pytest.raises(s3proc.SourceError, match=refused):
        s3proc.ParquetChunks(path)
    path.write_bytes(b"")
    with pytest.raises(s3proc.SourceError, match="it is empty"):
        s3proc.inspect(path)


def test_plain_files_are_not_compressed(plain: Plain) -> None:
    csv, _, meta = plain
    assert _core.sniff_compression(csv) is None
    assert "s3proc.compression" not in meta
    with pytest.raises(s3proc.SourceError):
        _core.sniff_compression(csv.parent / "missing.csv.gz")


@pytest.mark.parametrize("doc", [b'[{"a": 1}]', b'{"k": [{"a": 1}]'])
def test_spaces_after_a_json_array_cost_no_memory(tmp_path: Path, doc: bytes) -> None:
    """200 MiB of spaces after the records (a bomb of 200 KB) are checked, not held."""
    path = tmp_path / "bomb.json.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(doc)
        spaces = b" " * (1 << 20)
        for _ in range(200):
            f.write(spaces)
        f.write(b"" if doc.startswith(b"[") else b"}")
    out = tmp_path / "bomb.parquet"
    code, peak, err = peak_rss([str(S3PROC_BIN), "convert", str(path), str(out)])
    assert code == 0, err
    assert peak < 120 << 20, f"peak RSS {peak >> 20} MiB"
    assert pq.read_table(out).to_pylist() == [{"a": 1}]


@pytest.mark.slow
def test_gzip_bomb_converts_in_flat_memory(tmp_path: Path) -> None:
    """1 GB of one repeated row (10^8 rows) in about 1 MB of gzip: the peak RSS stays bounded."""
    path = tmp_path / "bomb.csv.gz"
    block = b"1,abc,2.5\n" * 100_000  # 1 MB
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"a,b,c\n")
        for _ in range(1000):
            f.write(block)
    assert path.stat().st_size < 4 << 20
    out = tmp_path / "bomb.parquet"
    log = tmp_path / "convert.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([str(S3PROC_BIN), "convert", str(path), str(out)], stdout=f, stderr=f)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, log.read_text(errors="replace")
    assert usage.ru_maxrss * 1024 < 256 << 20, f"peak RSS {usage.ru_maxrss // 1024} MiB"
    assert pq.ParquetFile(out).metadata.num_rows == 100_000_000
