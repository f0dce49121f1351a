"""``s3proc._core.ArchiveReader``: zip, tar and compressed tar read as streams of entries.

Archives are built in memory with ``zipfile``/``tarfile`` and every listing and every
entry's bytes are compared with what those modules wrote or read. The corpus archives
run in a child process under a timeout, since a hang must fail the test, not the run.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import psutil
import pytest

import s3proc
from s3proc._core import ArchiveReader

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

Listing = list[tuple[str, str, bytes | None]]


def read_all(source: Any, **options: Any) -> Listing:
    """Every entry as (name, kind, bytes of a file)."""
    out: Listing = []
    for e in ArchiveReader(source, **options):
        data = b"".join(e.chunks(7000)) if e.kind == "file" else None
        out.append((e.name, e.kind, data))
    return out


def files(listing: Listing) -> dict[str, bytes]:
    return {name: data for name, kind, data in listing if kind == "file" and data is not None}


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as t:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zstd_compress(data: bytes) -> bytes | None:
    try:
        import zstandard  # type: ignore[import-not-found]

        return bytes(zstandard.ZstdCompressor().compress(data))
    except ImportError:
        pass
    if shutil.which("zstd"):  # through a pipe: no temporary file
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    return None


ROWS = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(3000))
MEMBERS = {
    "q1/orders.csv": ROWS,
    "q1/empty.csv": b"",
    "q2/" + "long-directory-name/" * 8 + "deep.csv": ROWS[:999],
    "binary.bin": bytes(range(256)) * 50,
}


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_zip_methods_read_like_zipfile(method: int) -> None:
    data = zip_bytes(MEMBERS, method)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        expected = {i.filename: z.read(i) for i in z.infolist()}
    got = read_all(data)
    assert [n for n, _, _ in got] == list(expected)
    assert files(got) == expected


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("codec", ["", "gz", "bz2", "xz", "zst"])
def test_tar_formats_and_codecs_read_like_tarfile(fmt: int, codec: str) -> None:
    members = dict(MEMBERS)
    if fmt != tarfile.USTAR_FORMAT:  # ustar cannot hold a name over 255 bytes
        members["x" * 120 + "/" + "y" * 150 + ".csv"] = b"long"
    raw = tar_bytes(members, fmt)
    packed = {
        "": raw,
        "gz": gzip.compress(raw),
        "bz2": bz2.compress(raw),
        "xz": lzma.compress(raw),
        "zst": zstd_compress(raw),
    }[codec]
    if packed is None:
        pytest.skip("no zstd compressor (neither the zstandard package nor the zstd tool)")
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        expected = {m.name: t.extractfile(m).read() for m in t if m.isfile()}  # type: ignore[union-attr]
    # By magic bytes alone: the bytes carry no name.
    got = read_all(packed)
    assert files(got) == expected
    assert [n for n, _, _ in got] == list(expected)


class Unseekable(io.RawIOBase):
    """A stream that can only be read forward (or written forward)."""

    def __init__(self, data: bytes = b"") -> None:
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self.inner.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)

    def write(self, b: Any) -> int:
        return self.inner.write(b)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_written_to_a_stream_nested_in_a_tar(method: int) -> None:
    # zipfile writing to a stream puts every entry's sizes in a data descriptor
    # after its data: inside a tar, the zip must be read from its local headers.
    out = Unseekable()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in MEMBERS.items():
            with z.open(name, "w") as f:
                f.write(data)
    inner = out.inner.getvalue()
    assert zipfile.ZipFile(io.BytesIO(inner)).infolist()[0].flag_bits & 0x08
    got = read_all(tar_bytes({"in/pack.zip": inner}))
    assert got[0][:2] == ("in/pack.zip", "archive")
    assert files(got) == {f"in/pack.zip/{n}": d for n, d in MEMBERS.items()}


def test_python_stream_source_is_read_from_the_producer_thread() -> None:
    data = gzip.compress(tar_bytes(MEMBERS))
    got = read_all(io.BufferedReader(Unseekable(data)), name="s.tar.gz")
    assert files(got) == MEMBERS


def test_nested_four_levels_and_a_gz_entry() -> None:
    level4 = zip_bytes({"orders.csv": ROWS, "notes.txt.gz": gzip.compress(b"hello\n", mtime=0)})
    level3 = gzip.compress(tar_bytes({"q1.zip": level4}))
    level2 = zip_bytes({"exports/pack.tar.gz": level3}, zipfile.ZIP_STORED)
    level1 = tar_bytes({"outer.zip": level2})
    got = read_all(level1)
    base = "outer.zip/exports/pack.tar.gz/q1.zip"
    assert [(n, k) for n, k, _ in got] == [
        ("outer.zip", "archive"),
        ("outer.zip/exports/pack.tar.gz", "archive"),
        (base, "archive"),
        (f"{base}/orders.csv", "file"),
        (f"{base}/notes.txt.gz", "file"),
    ]
    # A single compressed file is an entry as it would be dropped on its own: its bytes as they are.
    assert files(got) == {
        f"{base}/orders.csv": ROWS,
        f"{base}/notes.txt.gz": gzip.compress(b"hello\n", mtime=0),
    }
    with pytest.raises(s3proc.ArchiveError, match="max_depth") as err:
        read_all(level1, max_depth=3)
    assert err.value.entry == base


def test_hostile_names_are_normalised_or_skipped() -> None:
    names = {
        "../../etc/passwd": b"a",
        "/abs/path.csv": b"b",
        "..\\..\\win\\evil.csv": b"c",
        "C:\\Users\\x.csv": b"d",
        "ok/./fine/../f.csv": b"e",
        "ctl\x01name.csv": b"f",
    }
    got = list(ArchiveReader(tar_bytes(names)))
    by_name = {e.name: e for e in got}
    assert [e.name for e in got if e.kind == "file"] == [
        "etc/passwd",
        "abs/path.csv",
        "win/evil.csv",
        "Users/x.csv",
        "ok/f.csv",
    ]
    for e in got:
        assert ".." not in e.name.split("/") and not e.name.startswith("/")
    assert "outside the archive" in (by_name["etc/passwd"].note or "")
    skipped = [e for e in got if e.kind == "skipped"]
    assert len(skipped) == 1 and "control character" in (skipped[0].reason or "")
    # A zip may carry the same names.
    zipped = read_all(zip_bytes({"../../etc/passwd": b"z"}))
    assert zipped == [("etc/passwd", "file", b"z")]


def test_links_devices_and_fifos_are_skipped() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("data.csv")
        info.size = 3
        t.addfile(info, io.BytesIO(b"1,2"))
        for name, kind in [
            ("sym", tarfile.SYMTYPE),
            ("hard", tarfile.LNKTYPE),
            ("fifo", tarfile.FIFOTYPE),
            ("dev", tarfile.CHRTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            t.addfile(info)
    got = list(ArchiveReader(buf.getvalue()))
    assert [(e.name, e.kind) for e in got] == [
        ("data.csv", "file"),
        ("sym", "skipped"),
        ("hard", "skipped"),
        ("fifo", "skipped"),
        ("dev", "skipped"),
    ]
    assert "symbolic link" in (got[1].reason or "") and "/etc/shadow" in (got[1].reason or "")
    assert "hard link" in (got[2].reason or "")
    # A symlink in a zip: unix mode S_IFLNK in the external attributes.
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16) | 0
        info.create_system = 3
        z.writestr(info, "/etc/passwd")
    (only,) = list(ArchiveReader(zbuf.getvalue()))
    assert only.kind == "skipped" and "/etc/passwd" in (only.reason or "")


def test_duplicate_names_get_a_deterministic_suffix() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for data in (b"first", b"second", b"third"):
            info = tarfile.TarInfo("q1/orders.csv")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    got = read_all(buf.getvalue())
    assert got == [
        ("q1/orders.csv", "file", b"first"),
        ("q1/orders~2.csv", "file", b"second"),
        ("q1/orders~3.csv", "file", b"third"),
    ]
    (second,) = [e for e in ArchiveReader(buf.getvalue()) if e.name == "q1/orders~2.csv"]
    assert "duplicate" in (second.note or "")


def test_an_entry_is_read_once() -> None:
    """A second chunks() went on where the first stopped: a retry got a short (empty) copy."""
    entry = next(ArchiveReader(zip_bytes({"a.bin": os.urandom(300_000)})))
    assert len(b"".join(entry.chunks())) == 300_000
    with pytest.raises(RuntimeError, match="was read already"):
        entry.chunks()


def expect_failure(source: Any, match: str, **options: Any) -> tuple[Listing, s3proc.ArchiveError]:
    """Reads until the ArchiveError; the entries read before it, and the error."""
    seen: Listing = []
    with pytest.raises(s3proc.ArchiveError, match=match) as err:
        for e in ArchiveReader(source, **options):
            seen.append((e.name, e.kind, b"".join(e.chunks()) if e.kind == "file" else None))
    assert isinstance(err.value, ValueError) and err.value.archive
    return seen, err.value


def test_limits() -> None:
    zeros = zip_bytes({"ok.csv": ROWS, "bomb.bin": bytes(50 << 20)})
    seen, err = expect_failure(zeros, "max_ratio", max_ratio=100)
    assert err.entry == "bomb.bin" and seen[0] == ("ok.csv", "file", ROWS)
    # A header that lies about the size: the bytes produced are counted.
    _, err = expect_failure(zeros, "max_total_bytes", max_total_bytes=1 << 20)
    assert err.entry == "bomb.bin"
    many = tar_bytes({f"f{i}": b"x" for i in range(20)})
    seen, _ = expect_failure(many, "max_entries", max_entries=10)
    assert len(seen) == 10
    # A zip says how many entries it has: too many is refused before its directory is loaded.
    seen, _ = expect_failure(
        zip_bytes({f"f{i}": b"x" for i in range(20)}), "declares 20 entries", max_entries=10
    )
    assert seen == []
    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z, z.open("a.csv", "w") as f:
        f.write(ROWS)
    nested = tar_bytes({"stream.zip": out.inner.getvalue()})
    expect_failure(nested, "max_nested_zip_bytes", max_nested_zip_bytes=1000)
    assert files(read_all(nested)) == {"stream.zip/a.csv": ROWS}
    # Such zips nested in one another are held at once: the limit is on their sum.
    inner = out.inner.getvalue()
    middle = Unseekable()
    with zipfile.ZipFile(middle, "w", zipfile.ZIP_STORED) as z, z.open("inner.zip", "w") as f:
        f.write(inner)
    twice = tar_bytes({"middle.zip": middle.inner.getvalue()})
    limit = len(middle.inner.getvalue()) + len(inner) // 2  # each alone fits, both do not
    _, err = expect_failure(twice, "max_nested_zip_bytes", max_nested_zip_bytes=limit)
    assert err.entry == "middle.zip/inner.zip"
    assert files(read_all(twice)) == {"middle.zip/inner.zip/a.csv": ROWS}


@pytest.mark.parametrize("codec", ["gz", "bz2", "xz", "zst"])
def test_ratio_of_a_compressed_tar_counts_its_compressed_bytes(tmp_path: Path, codec: str) -> None:
    tar = tar_bytes({"ok.csv": ROWS, "bomb.bin": bytes(20 << 20)})
    packed = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zst": zstd_compress}[codec](tar)
    if packed is None:
        pytest.skip("no zstd compressor")
    path = tmp_path / f"b.tar.{codec}"
    path.write_bytes(packed)
    seen, err = expect_failure(path, "max_ratio", max_ratio=100)
    assert err.entry == "bomb.bin" and seen[0] == ("ok.csv", "file", ROWS)
    assert files(read_all(path, max_ratio=1 << 40)) == {"ok.csv": ROWS, "bomb.bin": bytes(20 << 20)}


def test_lying_sizes_in_a_zip_header() -> None:
    data = bytearray(zip_bytes({"a.csv": ROWS}, zipfile.ZIP_STORED))
    # Claim a smaller size in both headers: zipfile and the central directory agree.
    for sig, off in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = data.index(sig) + off
        data[at : at + 4] = (10).to_bytes(4, "little")
        data[at - 4 : at] = (10).to_bytes(4, "little")
    expect_failure(bytes(data), "checksum")


def test_overlapping_zip_entries_are_a_bomb() -> None:
    """Central-directory records that all point at one deflated entry (Fifield's non-recursive
    zip bomb): each is under the ratio limit, together they inflate the same bytes again and
    again. No written zip shares bytes between entries."""
    data = b"\0" * 3_900_000
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = co.compress(data) + co.flush()
    crc = zlib.crc32(data)
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(packed), len(data), 5, 0)
    out = bytearray(local + b"x.bin" + packed)
    central = len(out)
    n = 500
    for i in range(n):
        name = b"e%06d.bin" % i
        out += struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0,
            crc,
            len(packed),
            len(data),
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        out += name
    out += struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(out) - central, central, 0)
    expect_failure(bytes(out), "overlap")


def test_truncated_and_corrupt_archives() -> None:
    big = {f"part{i}.csv": ROWS for i in range(6)}
    tgz = gzip.compress(tar_bytes(big))
    seen, _ = expect_failure(tgz[: len(tgz) // 2], "truncated|unexpected|corrupt|EOF")
    assert 0 < len(seen) < len(big)
    raw = tar_bytes(big)
    seen, _ = expect_failure(raw[: len(raw) // 2], "truncated|unexpected|EOF")
    assert 0 < len(seen) < len(big)
    # A flipped byte in deflated data: a CRC or a deflate error, never a silent success.
    z = bytearray(zip_bytes({"a.csv": ROWS}))
    z[len(z) // 3] ^= 0xFF
    expect_failure(bytes(z), "checksum|corrupt|invalid|deflate")
    # The encryption flag (bit 0) in both headers.
    z = bytearray(zip_bytes({"a.csv": ROWS}))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        z[z.index(sig) + off] |= 1
    expect_failure(bytes(z), "encrypted")
    # A .zip that is not a zip is refused, not guessed.
    expect_failure(b"id,name\n1,a\n", "not|zip", name="fake.zip")
    expect_failure(b"just text", "not an archive")


def _flip_deflate_decodes(data: bytes) -> bytes:
    """``data`` (gzip) with one bit flipped where deflate still decodes it to other bytes of the
    same length: only the gzip trailer's CRC-32 tells."""
    for pos in range(len(data) // 3, len(data) - 16):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        try:
            out = zlib.decompressobj(-15).decompress(bytes(bad[10:]))
        except zlib.error:
            continue
        if len(out) == len(gzip.decompress(data)) and out != gzip.decompress(data):
            return bytes(bad)
    raise AssertionError("no silent flip found")


def test_a_damaged_compressed_tar_fails_its_trailer_check() -> None:
    """The checksums after a tar's last entry are read and checked: the codec's trailer (gzip
    CRC-32 here), the CRC-32 of the zip entry holding a tar, and the end of a tar, after which
    only zero blocks may follow (an archive appended there would be skipped unread)."""
    tgz = gzip.compress(tar_bytes({"orders.csv": ROWS}), mtime=0)
    expect_failure(_flip_deflate_decodes(tgz), "crc|checksum|corrupt", name="x.tar.gz")
    expect_failure(zip_bytes({"in.tar.gz": _flip_deflate_decodes(tgz)}), "crc|checksum|corrupt")
    # A stored tar inside a zip whose CRC-32 is wrong.
    z = bytearray(zip_bytes({"in.tar": tar_bytes({"orders.csv": ROWS})}, zipfile.ZIP_STORED))
    at = z.index(b"orders.csv") + 200
    z[at] ^= 0x01
    expect_failure(bytes(z), "crc|checksum|corrupt")
    two = tar_bytes({"a.csv": ROWS}, tarfile.GNU_FORMAT) + tar_bytes({"b.csv": ROWS}, tarfile.GNU_FORMAT)
    seen, _ = expect_failure(gzip.compress(two), "after the end of the tar", name="two.tar.gz")
    assert [n for n, _, _ in seen] == ["a.csv"]
    # Zero blocks after the end are padding, read and accepted.
    padded = tar_bytes({"a.csv": ROWS}) + bytes(1 << 20)
    assert files(read_all(gzip.compress(padded), name="p.tar.gz")) == {"a.csv": ROWS}


def test_a_stale_entry_cannot_be_read() -> None:
    reader = ArchiveReader(tar_bytes(MEMBERS))
    first = next(reader)
    chunks = first.chunks(10)
    assert next(chunks) == ROWS[:10]
    second = next(reader)
    with pytest.raises(RuntimeError, match="no longer valid"):
        next(chunks)
    with pytest.raises(RuntimeError, match="was read already"):
        next(first.chunks())
    assert b"".join(second.chunks()) == b""
    assert [e.name for e in reader] == list(MEMBERS)[2:]


def test_many_tiny_entries_with_flat_memory() -> None:
    # tarfile takes seconds for this many members: patch one header instead.
    template = bytearray(tarfile.TarInfo("x").tobuf(tarfile.USTAR_FORMAT))
    template[124:136] = b"%011o\0" % 2
    parts = []
    for i in range(100_000):
        h = bytearray(template)
        name = b"d%d/f%d.csv" % (i % 100, i)
        h[: len(name)] = name
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        parts.append(bytes(h) + b"%02d" % (i % 100) + bytes(510))
    parts.append(bytes(1024))
    data = gzip.compress(b"".join(parts), compresslevel=1)
    del parts
    proc = psutil.Process()
    rss = []
    n = 0
    for e in ArchiveReader(data):
        assert b"".join(e.chunks()) == b"%02d" % (n % 100)
        n += 1
        if n in (10_000, 100_000):
            rss.append(proc.memory_info().rss)
    assert n == 100_000
    # The names seen (kept to rename duplicates) are the only growth: a few MB.
    assert rss[1] - rss[0] < 32 << 20, rss


CHILD = r"""
import hashlib, json, resource, sys
from s3proc._core import ArchiveReader
import s3proc
path, opts = sys.argv[1], json.loads(sys.argv[2])
out = {"entries": []}
try:
    for e in ArchiveReader(path, **opts):
        item = {"name": e.name, "kind": e.kind, "size": e.size}
        if e.kind == "file":
            h, n = hashlib.sha256(), 0
            for c in e.chunks(1 << 20):
                h.update(c)
                n += len(c)
            item["sha256"], item["read"] = h.hexdigest(), n
        out["entries"].append(item)
except s3proc.ArchiveError as err:
    out["error"] = str(err)
out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def in_child(path: Path, **opts: Any) -> dict[str, Any]:
    """Reads `path` in a child process: a hang or a crash fails, with its output."""
    cp = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(opts)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    result: dict[str, Any] = json.loads(cp.stdout)
    return result


# Read here although Python's zipfile refuses them (or the reverse), with why.
DIFFERENT_VERDICT = {
    "data/deflate64_issue_25.zip",  # both refuse it, for different reasons
    "data/ignore_encryption_flag.zip",  # the encryption flag is set: refused, as zipfile does
    "data/aes_archive.zip",  # AES: refused as encrypted
    "data/ppmd.zip",  # PPMd is not supported here: refused
    "data/extended_timestamp_bad.zip",
    "data/raw_deflate64_index_out_of_bounds.zip",  # zipfile crashes; a NUL name here: skipped
    "data/zip64_magic_in_filename_3.zip",  # NUL-holding names: skipped
    "data/zip64_magic_in_filename_5.zip",
    "data/invalid_cde_number_of_files_allocation_smaller_offset.zip",  # no entry either way
    "data/symlink.zip",  # a symlink: skipped here, read as a file by zipfile
    "data/zip64_demo.zip",  # its one entry is marked a FIFO (zip's "-" for stdin): skipped here
}


def corpus_archives() -> list[tuple[Path, dict[str, Any]]]:
    cases = []
    for d in ("zip2-testdata", "tar-rs-testdata", "go-archive-testdata"):
        listing = json.loads((CORPUS / d / "expected_listing.json").read_text())
        for rel, exp in sorted(listing.items()):
            if not rel.startswith("_"):
                cases.append((CORPUS / d / rel, exp))
    return cases


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not beside the repo")
def test_corpus_archives_list_and_read_or_fail_typed() -> None:
    for path, exp in corpus_archives():
        rel = f"{path.parent.name}/{path.name}"
        got = in_child(path, max_total_bytes=1 << 30)
        key = str(path.relative_to(path.parents[1 if path.parent.name == "data" else 0]))
        if "error" in got:
            # A typed error, naming the archive.
            assert str(path) in got["error"], got
            assert (
                "error" in exp
                or any("error" in e for e in exp["entries"])
                or (f"data/{path.name}" in DIFFERENT_VERDICT or path.name == "sparse-large.tar")
            ), (rel, got["error"])
            continue
        for e in got["entries"]:
            assert ".." not in e["name"].split("/") and not e["name"].startswith("/"), e
            if e["kind"] == "file" and e["size"] is not None:
                assert e["read"] == e["size"], (rel, e)
        if "error" in exp:
            continue
        # Python's reader read these entries: the same bytes, in the same order.
        # Names with a control character (NUL...) are skipped here.
        want = [
            x["sha256"]
            for x in exp["entries"]
            if "sha256" in x and x.get("type", "0") != "2" and x["name"].isprintable()
        ]
        have = [e["sha256"] for e in got["entries"] if e["kind"] == "file"]
        if f"data/{path.name}" in DIFFERENT_VERDICT:
            continue
        errors = [x for x in exp["entries"] if "error" in x]
        if errors:  # entries zipfile could not decode (Deflate64): the others match
            assert set(want) <= set(have), (rel, key)
        else:
            assert have == want, rel
    # deflate64.zip's and lzma.zip's big entry is folder/binary.wmv, byte for byte.
    wmv = hashlib.sha256((CORPUS / "zip2-testdata/data/folder/binary.wmv").read_bytes()).hexdigest()
    for name in ("deflate64.zip", "lzma.zip"):
        got = in_child(CORPUS / "zip2-testdata/data" / name)
        assert got["entries"][0]["name"] == "binary.wmv" and got["entries"][0]["sha256"] == wmv


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not beside the repo")
def test_sparse_tar_bomb_streams_in_bounded_memory() -> None:
    sparse = CORPUS / "tar-rs-testdata/archives/sparse-large.tar"
    # Default limits: refused on the ratio, fast.
    got = in_child(sparse)
    assert "max_ratio" in got["error"] and "huge" in got["error"]
    # Without the ratio limit: 2 GiB of its holes streamed, then the total limit.
    got = in_child(sparse, max_ratio=1 << 60, max_total_bytes=2 << 30)
    assert "max_total_bytes" in got["error"]
    normal = in_child(CORPUS / "tar-rs-testdata/archives/pax.tar")
    assert "error" not in normal
    assert got["maxrss"] - normal["maxrss"] < 64 << 20, (got["maxrss"], normal["maxrss"])


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        ArchiveReader(b"", max_bytes=1)  # type: ignore[call-arg]
    with pytest.raises(s3proc.OptionError):
        ArchiveReader(b"", max_ratio=-1)


def test_file_path_source_and_name(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A path is read in Rust; a zip path through its central directory.
    d = tmp_path_factory.mktemp("arch")
    p = d / "pack.zip"
    p.write_bytes(zip_bytes(MEMBERS))
    reader = ArchiveReader(os.fspath(p))
    assert reader.name == str(p)
    assert files(read_all(p)) == {n: v for n, v in MEMBERS.items()}


def test_entries_convert_with_one_walk_and_a_late_drift_walks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's path (``archive_results``): the converter's sniffing rewinds are served
    from the entry's head in memory; only a restart past ``HEAD_BYTES`` walks the archive again."""
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    from s3proc import _core, archives

    late = b"n,m\n" + b"".join(b"%d,%d\n" % (i, 3 * i) for i in range(700_000)) + b"x,late text\n"
    assert len(late) > archives.HEAD_BYTES
    members = {"a.csv": ROWS, "late.csv": late, "b.csv": ROWS[:5000] + b"\n", "raw.bin": bytes(range(256))}
    path = tmp_path / "pack.tar.gz"
    path.write_bytes(tar_bytes(members, mode="w:gz"))
    walks = []
    real = _core.ArchiveReader

    def counting(*args: Any, **kwargs: Any) -> Any:
        walks.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "ArchiveReader", counting)
    got: dict[str, bytes] = {}

    def make(name: str, tabular: bool, open_chunks: Any, rows: Any, detached: bool, **_: Any) -> None:
        assert detached == (name != "late.csv")
        got[name] = b"".join(open_chunks())

    for _ in archives.archive_results(path, "pack.tar.gz", 1 << 20, {}, make):
        pass
    assert len(walks) == 2, walks  # the listing, and the restart of late.csv
    assert got["raw.bin"] == members["raw.bin"]
    for name in ("a.csv", "late.csv", "b.csv"):
        table = pq.read_table(pa.BufferReader(got[name]))
        text = pa.csv.read_csv(
            pa.BufferReader(members[name]),
            convert_options=pa.csv.ConvertOptions(
                column_types=dict.fromkeys(table.column_names, pa.string())
            ),
        )
        assert table.cast(text.schema).equals(text), name
