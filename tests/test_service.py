"""``s3proc run`` end to end: a real watched folder, the real CLI as a subprocess, a real S3 server.

Objects are read back over HTTP and compared value by value (Parquet through pyarrow against
DuckDB's or Python's reading of the source; raw files byte for byte), with their metadata,
checksums, the state database and the error folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _util import (
    assert_table_matches_rows,
    assert_table_matches_text_table,
    duckdb_text_table,
    make_archive,
    state_rows,
)
from s3servers import Daemon, S3Server, body, incomplete_uploads, objects, run_once, s3proc_args

import s3proc


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_parquet_object(client, bucket: str, key: str):
    return pq.read_table(pa.BufferReader(body(client, bucket, key)))


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    d = tmp_path / "inbox"
    d.mkdir()
    return d


# ---------------------------------------------------------------------- --once
def test_once_converts_tables_uploads_the_rest(moto: S3Server, watch: Path, gen_data, corpus: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "in" / "2024").mkdir(parents=True)
    big = watch / "in" / "2024" / "sales.csv"
    big.write_bytes(gen_data("csv", 40_000, 7).read_bytes())
    blob = os.urandom(12 << 20)  # raw, multipart at 5 MiB parts
    (watch / "blob.bin").write_bytes(blob)
    (watch / "notes.txt").write_text("héllo\n", encoding="utf-8")
    (watch / "empty.dat").write_bytes(b"")
    spectrum = corpus / "csv-spectrum" / "csvs"
    (watch / "spectrum").mkdir()
    for f in sorted(spectrum.glob("*.csv")):
        (watch / "spectrum" / f.name).write_bytes(f.read_bytes())

    run = run_once(moto, bucket, watch, "--part-size", "5MiB")
    assert run.returncode == 0, run.stderr

    client = moto.client()
    got = objects(client, bucket)
    # Raw files: byte for byte, with their metadata.
    assert body(client, bucket, "blob.bin") == blob
    assert got["blob.bin"]["ETag"].strip('"').endswith("-3"), "12 MiB at 5 MiB parts is three parts"
    assert body(client, bucket, "notes.txt") == "héllo\n".encode()
    assert body(client, bucket, "empty.dat") == b""
    meta = got["blob.bin"]["Metadata"]
    assert meta["s3proc-source"] == "blob.bin"
    assert meta["s3proc-source-sha256"] == hashlib.sha256(blob).hexdigest()
    assert meta["s3proc-version"] == s3proc.__version__
    assert meta["s3proc-format"] == "raw"

    # The generated table: every value, against DuckDB's reading of the same CSV.
    table = read_parquet_object(client, bucket, "in/2024/sales.parquet")
    assert_table_matches_text_table(table, duckdb_text_table(big))
    sales = got["in/2024/sales.parquet"]["Metadata"]
    assert sales["s3proc-rows"] == "40000"
    assert sales["s3proc-source-sha256"] == sha256(big)
    assert sales["s3proc-format"] == "parquet"

    # csv-spectrum: each converted file holds what the suite's JSON says.
    for f in sorted(spectrum.glob("*.csv")):
        expected = json.loads((spectrum.parent / "json" / f"{f.stem}.json").read_text(encoding="utf-8"))
        header = list(expected[0])
        table = read_parquet_object(client, bucket, f"spectrum/{f.stem}.parquet")
        assert_table_matches_rows(table, header, [[obj[k] for k in header] for obj in expected])

    # The state knows every file as uploaded, each key with its ETag.
    statuses = dict(state_rows(watch, "SELECT path, status FROM files"))
    assert statuses["blob.bin"] == "uploaded"
    assert statuses["in/2024/sales.csv"] == "uploaded"
    keys = dict(state_rows(watch, "SELECT key, etag FROM objects"))
    assert keys["in/2024/sales.parquet"] == got["in/2024/sales.parquet"]["ETag"].strip('"')
    assert incomplete_uploads(client, bucket) == []
    summary = [r for r in run.lines("uploaded") if r["path"] == "in/2024/sales.csv"]
    assert summary and summary[0]["rows"] == 40000 and summary[0]["keys"] == ["in/2024/sales.parquet"]
    assert summary[0]["sha"] == sha256(big)[:12]


def test_bad_inputs_go_to_the_error_folder_and_the_service_goes_on(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "good.csv").write_text("a,b\n1,x\n2,y\n")
    (watch / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(4000))
    (watch / "sub").mkdir()
    (watch / "sub" / "open_quote.csv").write_text('a,b\n1,"never closed\n2,3\n')
    (watch / "empty.csv").write_bytes(b"")

    run = run_once(moto, bucket, watch)

    assert run.returncode == 1, run.stderr
    client = moto.client()
    assert set(objects(client, bucket)) == {"good.parquet"}
    errors = watch / ".s3proc" / "errors"
    for rel in ("binary.csv", "sub/open_quote.csv", "empty.csv"):
        assert not (watch / rel).exists(), f"{rel} should have left the watch dir"
        assert (errors / rel).is_file(), f"{rel} is not in the error folder"
        note = json.loads((errors / (rel + ".error.json")).read_text())
        assert note["source"] == rel
        assert note["s3proc_version"] == s3proc.__version__
        assert note["reason"] and note["time"]
    quote_note = json.loads((errors / "sub/open_quote.csv.error.json").read_text())
    assert "line" in quote_note["reason"] and "quote" in quote_note["reason"], quote_note
    failed = dict(state_rows(watch, "SELECT path, error FROM files WHERE status='failed'"))
    assert set(failed) == {"binary.csv", "sub/open_quote.csv", "empty.csv"}
    assert all(failed.values())
    # `s3proc status` reports them with their reasons.
    status = subprocess.run(
        [str(Path(os.sys.executable).parent / "s3proc"), "status", "--watch-dir", str(watch), "--json"],
        capture_output=True,
        check=True,
    )
    report = json.loads(status.stdout)
    assert report["counts"]["failed"] == 3 and report["counts"]["uploaded"] == 1
    assert {f["path"] for f in report["failures"]} == set(failed)


def test_values_outside_the_xml_records_are_a_warning_in_the_log(moto: S3Server, watch: Path) -> None:
    # Three <tag>s outnumber two <row>s: the tags become the records and the rows are kept in the
    # file's metadata; the log says so, or nobody would look there.
    bucket = moto.new_bucket()
    (watch / "export.xml").write_bytes(
        b"<export><meta><tag>a</tag><tag>b</tag><tag>c</tag></meta>"
        b"<rows><row><id>1</id></row><row><id>2</id></row></rows></export>"
    )
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    [warning] = [r for r in run.logs if r["level"] == "warning"]
    assert warning["path"] == "export.xml" and warning["key"] == "export.parquet"
    assert "outside the <tag> records kept in the metadata (s3proc.xml_outside)" in warning["msg"]
    data = body(moto.client(), bucket, "export.parquet")
    outside = pq.ParquetFile(pa.BufferReader(data)).metadata.metadata[b"s3proc.xml_outside"]
    assert outside == b"<export><rows><row><id>1</id></row><row><id>2</id></row></rows></export>"


def test_files_deleted_after_upload_are_forgotten_and_found_unchanged_if_they_come_back(
    moto: S3Server, watch: Path
) -> None:
    # A service that deletes what it uploaded kept a row per file for ever.
    bucket = moto.new_bucket()
    (watch / "t.csv").write_text("id,name\n1,a\n2,b\n")
    (watch / "raw.txt").write_text("version 1\n")
    args = ("--after-upload", "delete", "--forget-after", "0.001")
    assert run_once(moto, bucket, watch, *args).returncode == 0
    first = objects(moto.client(), bucket)
    assert sorted(first) == ["raw.txt", "t.parquet"] and not (watch / "raw.txt").exists()
    time.sleep(0.05)

    again = run_once(moto, bucket, watch, *args)
    assert again.returncode == 0, again.stderr
    assert len(again.lines("forgot 2 file(s) gone from the watch dir")) == 1
    assert state_rows(watch, "SELECT path FROM files") == []
    assert sorted(k for (k,) in state_rows(watch, "SELECT key FROM objects")) == sorted(first)

    (watch / "raw.txt").write_text("version 1\n")
    back = run_once(moto, bucket, watch, *args)
    assert back.returncode == 0, back.stderr
    assert [r["path"] for r in back.lines("unchanged content: already uploaded")] == ["raw.txt"]
    assert objects(moto.client(), bucket) == first, "nothing written again"

    # Its object deleted behind s3proc's back (a lifecycle rule): the same content is no longer
    # "already uploaded", and deleting the file then would lose it.
    moto.client().delete_object(Bucket=bucket, Key="raw.txt")
    (watch / "raw.txt").write_text("version 1\n")
    gone = run_once(moto, bucket, watch, *args)
    assert gone.returncode == 0, gone.stderr
    assert [r["path"] for r in gone.lines("uploaded")] == ["raw.txt"]
    assert body(moto.client(), bucket, "raw.txt") == b"version 1\n"


def test_a_state_is_tied_to_its_destination(moto: S3Server, watch: Path) -> None:
    """Pointed at another bucket or prefix, the state would take every file as uploaded and
    send nothing: refused at start-up; a state of its own ships everything there."""
    first, other = moto.new_bucket(), moto.new_bucket()
    (watch / "x.csv").write_text("id,v\n1,a\n")
    assert run_once(moto, first, watch).returncode == 0
    for bucket, extra in ((other, ()), (first, ("--prefix", "v2"))):
        refused = run_once(moto, bucket, watch, *extra)
        assert refused.returncode == 2
        assert f"records what was uploaded to s3://{first}/, not to s3://{bucket}/" in refused.stderr
        assert objects(moto.client(), other) == {}
    own = run_once(moto, other, watch, "--state", str(watch / ".s3proc" / "other.db"))
    assert own.returncode == 0, own.stderr
    assert sorted(objects(moto.client(), other)) == ["x.parquet"]


def test_rebuild_state_refuses_a_state_tied_to_another_destination(moto: S3Server, watch: Path) -> None:
    """rebuild-state given another prefix than the state's would record another destination's
    objects, which a later run then takes as its own (and deletes): refused with status 2."""
    bucket = moto.new_bucket()
    client = moto.client()
    (watch / "x.csv").write_text("id,v\n1,a\n")
    assert run_once(moto, bucket, watch, "--prefix", "prod").returncode == 0
    client.put_object(
        Bucket=bucket,
        Key="staging/y.txt",
        Body=b"staging's",
        Metadata={"s3proc-writer": "s3proc", "s3proc-source": "y.txt", "s3proc-source-sha256": "0" * 64},
    )
    args = ["rebuild-state", "--watch-dir", str(watch), "--bucket", bucket, "--endpoint-url", moto.endpoint]
    refused = subprocess.run([_bin(), *args, "--prefix", "staging"], capture_output=True, env=moto.env())
    assert refused.returncode == 2, refused.stderr
    assert f"records what was uploaded to s3://{bucket}/prod/, not to s3://{bucket}/staging/" in (
        refused.stderr.decode()
    )
    assert state_rows(watch, "SELECT key FROM objects ORDER BY key") == [("prod/x.parquet",)]
    same = subprocess.run([_bin(), *args, "--prefix", "prod"], capture_output=True, env=moto.env())
    assert same.returncode == 0 and b"1 object(s) recorded" in same.stdout, same.stderr
    assert body(client, bucket, "staging/y.txt") == b"staging's"


def test_a_failed_file_gone_from_the_error_folder_is_forgotten(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "bad.csv").write_bytes(b"\x00\x01 binary \x00")
    args = ("--forget-after", "0.001")
    assert run_once(moto, bucket, watch, *args).returncode == 1
    errors = watch / ".s3proc" / "errors"
    time.sleep(0.05)
    assert run_once(moto, bucket, watch, *args).returncode == 0
    assert state_rows(watch, "SELECT path, status FROM files") == [("bad.csv", "failed")], "still there"
    (errors / "bad.csv").unlink()  # the operator empties the error folder
    (errors / "bad.csv.error.json").unlink()
    cleared = run_once(moto, bucket, watch, *args)
    assert cleared.returncode == 0, cleared.stderr
    assert len(cleared.lines("forgot 1 file(s) gone from the watch dir")) == 1
    assert state_rows(watch, "SELECT path FROM files") == []


def test_a_name_whose_key_would_be_too_long_skips_its_entry_and_fails_its_file(
    moto: S3Server, watch: Path
) -> None:
    """S3 takes keys of up to 1024 bytes (moto takes any): an archive entry whose key would be
    longer is skipped, as a link is, and the rest is shipped; a file is failed with that reason."""
    bucket = moto.new_bucket()
    long_entry = "/".join(["d" * 200] * 5) + "/x.txt"
    pack = make_archive("pack.zip", {long_entry: b"too long", "ok.txt": b"fine"})
    (watch / "exports").mkdir()
    (watch / "exports" / "pack.zip").write_bytes(pack)
    deep = watch.joinpath(*["f" * 200] * 6)
    deep.mkdir(parents=True)
    (deep / "y.txt").write_text("mine too")
    run = run_once(moto, bucket, watch)
    assert run.returncode == 1, run.stderr
    assert sorted(objects(moto.client(), bucket)) == ["exports/pack.zip/ok.txt"]
    skipped = state_rows(watch, "SELECT entry, reason FROM skipped")
    assert [e for e, _ in skipped] == [long_entry] and "s3proc makes keys of up to 1015" in skipped[0][1]
    failed = state_rows(watch, "SELECT path, error FROM files WHERE status='failed'")
    assert len(failed) == 1 and failed[0][0].endswith("/y.txt") and "keys of up to 1015" in failed[0][1]


def test_of_two_entries_for_one_key_the_first_in_the_archive_gets_it(moto: S3Server, watch: Path) -> None:
    """Small entries are shipped two at a time; the first of two in the archive gets the key."""
    bucket = moto.new_bucket()
    members = {}
    for i in range(12):
        members[f"d{i}/x.csv"] = f"n\n{i}\n".encode()
        members[f"d{i}/x.tsv"] = f"n\n{i + 100}\n".encode()
    (watch / "p.zip").write_bytes(make_archive("p.zip", members))
    assert run_once(moto, bucket, watch).returncode == 0
    got = objects(moto.client(), bucket)
    assert len(got) == 24
    for i in range(12):
        assert got[f"p.zip/d{i}/x.parquet"]["Metadata"]["s3proc-source"].endswith(f"d{i}/x.csv")


def test_a_rebuilt_state_tells_a_bang_in_a_name_from_an_archive_entry(moto: S3Server, watch: Path) -> None:
    """An archive entry's source is ``path!entry``; a ``!`` in a file's own name is no entry."""
    bucket = moto.new_bucket()
    (watch / "urgent!.csv").write_text("id,name\n1,a\n")
    (watch / "q!1.zip").write_bytes(make_archive("q!1.zip", {"x.csv": b"id,name\n1,a\n"}))
    assert run_once(moto, bucket, watch).returncode == 0
    first = objects(moto.client(), bucket)
    assert sorted(first) == ["q!1.zip/x.parquet", "urgent!.parquet"]
    shutil.rmtree(watch / ".s3proc")
    os.utime(watch / "urgent!.csv", (time.time() + 5, time.time() + 5))
    again = run_once(moto, bucket, watch)
    assert again.returncode == 0, again.stderr
    unchanged = [r["path"] for r in again.lines("unchanged content: already uploaded")]
    assert unchanged == ["urgent!.csv"]
    # An archive is found unchanged only by its own row (a crash can cut one short): read again,
    # its entry replaces its own object, not made a second one.
    assert again.lines("another source owns") == []
    now = objects(moto.client(), bucket)
    assert {k: o["ETag"] for k, o in now.items()} == {k: o["ETag"] for k, o in first.items()}
    assert now["urgent!.parquet"] == first["urgent!.parquet"]


def test_rerun_uploads_nothing_and_changed_files_are_replaced(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "t.csv").write_text("id,name\n1,a\n2,b\n")
    (watch / "raw.txt").write_text("version 1\n")
    assert run_once(moto, bucket, watch).returncode == 0
    client = moto.client()
    first = objects(client, bucket)

    again = run_once(moto, bucket, watch)
    assert again.returncode == 0, again.stderr
    assert again.lines("uploaded") == []
    assert objects(client, bucket) == first, "a re-run must not write anything"

    # Same content, new mtime: hashed, found unchanged, not uploaded.
    os.utime(watch / "raw.txt", (time.time() + 5, time.time() + 5))
    touched = run_once(moto, bucket, watch)
    assert [r["path"] for r in touched.lines("unchanged content: already uploaded")] == ["raw.txt"]
    assert objects(client, bucket)["raw.txt"]["ETag"] == first["raw.txt"]["ETag"]

    # New content: the same keys, replaced.
    (watch / "t.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    (watch / "raw.txt").write_text("version 2\n")
    changed = run_once(moto, bucket, watch)
    assert changed.returncode == 0, changed.stderr
    assert sorted(r["path"] for r in changed.lines("uploaded")) == ["raw.txt", "t.csv"]
    assert body(client, bucket, "raw.txt") == b"version 2\n"
    assert read_parquet_object(client, bucket, "t.parquet").column("id").to_pylist() == [1, 2, 3]
    now = objects(client, bucket)
    assert set(now) == {"raw.txt", "t.parquet"}
    assert now["raw.txt"]["Metadata"]["s3proc-source-sha256"] == sha256(watch / "raw.txt")
    etags = dict(state_rows(watch, "SELECT key, etag FROM objects"))
    assert etags["raw.txt"] == now["raw.txt"]["ETag"].strip('"')


@pytest.mark.parametrize("server_name", ["moto", "seaweed"])
def test_a_changed_file_whose_object_was_deleted_is_uploaded_again(
    request: pytest.FixtureRequest, server_name: str, watch: Path
) -> None:
    server: S3Server = request.getfixturevalue(server_name)
    bucket = server.new_bucket()
    (watch / "small.txt").write_text("version 1\n")
    (watch / "big.bin").write_bytes(os.urandom(6 << 20))  # multipart: If-Match on complete
    assert run_once(server, bucket, watch, "--part-size", "5MiB").returncode == 0
    client = server.client()
    for key in ("small.txt", "big.bin"):
        client.delete_object(Bucket=bucket, Key=key)  # behind s3proc's back
    (watch / "small.txt").write_text("version 2\n")
    (watch / "big.bin").write_bytes(os.urandom(6 << 20))
    run = run_once(server, bucket, watch, "--part-size", "5MiB")
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(r["path"] for r in run.lines("uploaded")) == ["big.bin", "small.txt"]
    assert body(client, bucket, "small.txt") == b"version 2\n"
    assert body(client, bucket, "big.bin") == (watch / "big.bin").read_bytes()


def test_two_sources_for_one_key_never_overwrite(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "x.csv").write_text("a\n1\n")
    (watch / "x.tsv").write_text("a\tb\n2\t3\n")
    run = run_once(moto, bucket, watch, "--concurrency", "1")
    assert run.returncode == 0, run.stderr
    got = objects(moto.client(), bucket)
    assert len(got) == 2 and "x.parquet" in got
    other = next(k for k in got if k != "x.parquet")
    assert other.startswith("x~") and other.endswith(".parquet")
    sources = {got[k]["Metadata"]["s3proc-source"] for k in got}
    assert sources == {"x.csv", "x.tsv"}
    assert any("another source owns" in r["msg"] for r in run.logs)
    # Deterministic: a second service on fresh state and bucket gives the same keys.
    shutil.rmtree(watch / ".s3proc")
    bucket2 = moto.new_bucket()
    assert run_once(moto, bucket2, watch, "--concurrency", "1").returncode == 0
    assert set(objects(moto.client(), bucket2)) == set(got)


def test_an_entry_whose_key_and_alternative_are_both_taken_gets_a_further_one(
    moto: S3Server, watch: Path
) -> None:
    """x.tsv wants pack.zip/x.parquet (x.csv has it), then its alternative, which an entry named
    like it holds: it takes the next alternative, the same on every run (it was an internal
    error that left the archive's uploaded entries in S3)."""
    from s3proc.keys import alternative

    tag = alternative("x", "pack.zip!x.tsv")  # the name of the alternative key x.tsv gets
    members = {"x.csv": b"id\n1\n", f"{tag}.csv": b"id\n2\n", "x.tsv": b"id\n3\n", "y.csv": b"id\n4\n"}
    (watch / "pack.zip").write_bytes(make_archive("pack.zip", members))
    bucket = moto.new_bucket()
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    third = alternative("pack.zip/x.parquet", "pack.zip!x.tsv~2")
    got = objects(moto.client(), bucket)
    assert sorted(got) == sorted(
        ["pack.zip/x.parquet", f"pack.zip/{tag}.parquet", third, "pack.zip/y.parquet"]
    )
    assert unquote(got[third]["Metadata"]["s3proc-source"]) == "pack.zip!x.tsv"
    (watch / "pack.zip").touch()  # read again: every entry keeps its key
    again = run_once(moto, bucket, watch)
    assert again.returncode == 0, again.stderr
    assert sorted(objects(moto.client(), bucket)) == sorted(got)


def _dated_file(watch: Path) -> tuple[str, ...]:
    """``d/f.csv`` of 14 November 2023 (UTC), and the flags of a template that dates keys."""
    (watch / "d").mkdir()
    (watch / "d" / "f.csv").write_text("a\n1\n")
    os.utime(watch / "d" / "f.csv", (1_700_000_000, 1_700_000_000))
    return ("--prefix", "landing", "--key-template", "{prefix}{date:%Y/%m/%d}/{path}")


def test_prefix_and_key_template(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    dated = _dated_file(watch)
    run = run_once(moto, bucket, watch, *dated)
    assert run.returncode == 0, run.stderr
    assert set(objects(moto.client(), bucket)) == {"landing/2023/11/14/d/f.parquet"}
    # The next day's version, same name: under its own date; the earlier one stays.
    (watch / "d" / "f.csv").write_text("a\n2\n")
    os.utime(watch / "d" / "f.csv", (1_700_086_400, 1_700_086_400))
    assert run_once(moto, bucket, watch, *dated).returncode == 0
    got = objects(moto.client(), bucket)
    assert set(got) == {"landing/2023/11/14/d/f.parquet", "landing/2023/11/15/d/f.parquet"}
    assert read_parquet_object(moto.client(), bucket, "landing/2023/11/14/d/f.parquet").to_pylist() == [
        {"a": 1}
    ]
    assert read_parquet_object(moto.client(), bucket, "landing/2023/11/15/d/f.parquet").to_pylist() == [
        {"a": 2}
    ]
    # Touched, same content: nothing new.
    os.utime(watch / "d" / "f.csv", (1_700_172_800, 1_700_172_800))
    assert run_once(moto, bucket, watch, *dated).returncode == 0
    assert set(objects(moto.client(), bucket)) == set(got)


# ---------------------------------------------------------------------- configuration
def _one_line_exit_2(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    return err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bucket", ""], "no bucket"),
        (["--watch-dir", "/nonexistent/inbox"], "does not exist"),
        (["--bucket", "no-such-bucket-here"], "does not exist"),
        (["--after-upload", "shred"], "--after-upload"),
        (["--checksum", "md4"], "md4"),
        (["--key-template", "{prefix}{nope}"], "nope"),
        (["--key-template", "{prefix}{dir:%Y}/{path}"], "Invalid format specifier"),
        (["--no-such-flag"], "No such option"),
        (["--part-size", "1MiB"], "5 MiB"),
        (["--error-dir", "/dev/null/errors"], "--error-dir /dev/null/errors cannot be made"),
        (["--after-upload", "move:/dev/null/done"], "move: /dev/null/done cannot be made"),
        # A folder s3proc moves files into that holds the watch dir: nothing would be shipped.
        (["--error-dir", "{watch}"], "holds the watch dir"),
        (["--after-upload", "move:{watch}/.."], "holds the watch dir"),
        (["--quiet-period", "nan"], "--quiet-period nan"),
        (["--grace", "nan"], "--grace nan"),
        (["--quiet-period", "inf"], "--quiet-period inf"),  # nothing would ever be ready
        (["--endpoint-url", "minio:9000"], "give http(s)://HOST[:PORT]"),
        (["--endpoint-url", "usr:PASSWORD1@minio:9000"], "--endpoint-url …@minio:9000"),
        (["--endpoint-url", "http://usr:pa/PASSWORD2@minio:9000"], "--endpoint-url http://…@minio:9000"),
        (["--region", "eu west 1"], "no S3 client"),
        # The converter's options are checked before any file meets them.
        (["--encoding", "bogus"], "unsupported encoding"),
        (["--delimiter", ";;"], "delimiter"),
        (["--sample-rows", "-5"], "sample_rows"),
    ],
)
def test_bad_configuration_fails_at_start_with_status_2(
    moto: S3Server, watch: Path, args: list[str], says: str
) -> None:
    bucket = moto.new_bucket()
    (watch / "f.txt").write_text("x")
    cmd = s3proc_args(moto, bucket, watch) + [a.replace("{watch}", str(watch)) for a in args] + ["--once"]
    proc = subprocess.run(cmd, capture_output=True, env=moto.env(), timeout=60)
    err = _one_line_exit_2(proc)
    assert says in err and "PASSWORD" not in err
    assert (watch / "f.txt").exists()
    assert not (watch / ".s3proc" / "state.db").exists()  # no state made before the checks pass
    assert objects(moto.client(), bucket) == {}


def test_run_with_a_state_but_no_watch_dir_refuses_to_watch_the_current_folder(
    moto: S3Server, tmp_path: Path
) -> None:
    bucket = moto.new_bucket()
    (tmp_path / "notes.txt").write_text("not for S3")
    cmd = [
        _bin(),
        "run",
        "--bucket",
        bucket,
        "--endpoint-url",
        moto.endpoint,
        "--state",
        str(tmp_path / "s.db"),
    ]
    proc = subprocess.run(
        [*cmd, "--once", "--after-upload", "delete"], capture_output=True, env=moto.env(), cwd=tmp_path
    )
    assert "no watch dir" in _one_line_exit_2(proc)
    assert (tmp_path / "notes.txt").exists()
    assert objects(moto.client(), bucket) == {}


def test_a_state_in_the_watch_dir_is_not_shipped(moto: S3Server, watch: Path) -> None:
    """Its files are held open by s3proc itself: queued, they would wait for ever."""
    bucket = moto.new_bucket()
    (watch / "t.txt").write_text("x")
    proc = run_once(moto, bucket, watch, "--state", str(watch / "state.db"), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(objects(moto.client(), bucket)) == {"t.txt"}


def test_a_password_in_the_endpoint_url_is_never_shown(moto: S3Server, watch: Path) -> None:
    down = ["--endpoint-url", "http://admin:S3cretPassw0rd@127.0.0.1:9", "--retries", "1"]
    proc = run_once(moto, "any-bucket", watch, *down, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "127.0.0.1:9" in proc.stderr and "S3cretPassw0rd" not in proc.stderr + proc.stdout


def test_an_endpoint_down_at_start_up_fails_with_status_2_and_touches_nothing(
    moto: S3Server, watch: Path
) -> None:
    """Retried first (the warnings say so), then one clear last line; the file waits."""
    (watch / "f.txt").write_text("x")
    down = ["--endpoint-url", "http://127.0.0.1:9", "--retries", "2"]  # nothing listens on port 9
    cmd = s3proc_args(moto, "any-bucket", watch) + down + ["--once"]
    proc = subprocess.run(cmd, capture_output=True, env=moto.env(), timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("s3proc: error: S3 cannot be reached"), err
    assert "Traceback" not in err
    assert (watch / "f.txt").read_text() == "x"


def test_configuration_from_env_and_dotenv(moto: S3Server, watch: Path, tmp_path: Path) -> None:
    bucket = moto.new_bucket()
    wrong = moto.new_bucket()
    (watch / "f.txt").write_text("x")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # .env names the bucket and the prefix; the environment overrides the prefix.
    (cwd / ".env").write_text(
        f"S3PROC_BUCKET={bucket}\nS3PROC_PREFIX=from-dotenv\nS3PROC_ENDPOINT_URL={moto.endpoint}\n"
    )
    env = {**moto.env(), "S3PROC_PREFIX": "from-env", "S3PROC_WATCH_DIR": str(watch)}
    cmd = [str(Path(os.sys.executable).parent / "s3proc"), "run", "--once", "--quiet-period", "0"]
    proc = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(objects(moto.client(), bucket)) == {"from-env/f.txt"}
    # A flag beats both (another bucket: another state).
    (watch / "g.txt").write_text("y")
    flags = [*cmd, "--bucket", wrong, "--state", str(tmp_path / "wrong.db")]
    proc = subprocess.run(flags, capture_output=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(objects(moto.client(), wrong)) == {"from-env/f.txt", "from-env/g.txt"}
    # A line of .env that is not NAME=VALUE: one line, status 2 (its setting was silently lost).
    (cwd / ".env").write_text(f"S3PROC_BUCKET={bucket}\nS3PROC_AFTER_UPLOAD delete\n")
    (watch / "h.txt").write_text("z")
    proc = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd, timeout=120)
    assert ".env, line 2: not NAME=VALUE" in _one_line_exit_2(proc)
    assert "from-env/h.txt" not in objects(moto.client(), bucket)


# ---------------------------------------------------------------------- the daemon
def test_daemon_waits_for_complete_files(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.5", "--rescan-interval", "1")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        # Written slowly, with pauses longer than the quiet period, the file held open all along.
        with open(watch / "slow.csv", "w") as f:
            f.write("n,s\n")
            for i in range(6):
                f.write(f"{i},{'x' * i}\n")
                f.flush()
                time.sleep(0.4 if i % 2 else 1.2)
        # Written as a .part and renamed into place.
        (watch / "moved.bin.part").write_bytes(b"abc" * 1000)
        os.rename(watch / "moved.bin.part", watch / "moved.bin")
        # Ignored names.
        (watch / ".hidden").write_text("no")
        (watch / "note.tmp").write_text("no")
        (watch / "~$doc.docx").write_text("no")
        (watch / "sub" / ".git").mkdir(parents=True)
        (watch / "sub" / ".git" / "HEAD").write_text("no")
        d.wait_for(lambda: {"slow.csv", "moved.bin"} <= d.uploaded())
        assert d.uploaded() == {"slow.csv", "moved.bin"}
        time.sleep(1.5)  # a rescan comes and goes
        assert d.uploaded() == {"slow.csv", "moved.bin"}
        # A file dropped later is picked up too.
        (watch / "later.txt").write_text("late\n")
        d.wait_for(lambda: "later.txt" in d.uploaded())
    finally:
        code = d.stop()
    assert code == 0
    client = moto.client()
    assert set(objects(client, bucket)) == {"slow.parquet", "moved.bin", "later.txt"}
    t = read_parquet_object(client, bucket, "slow.parquet")
    assert t.column("n").to_pylist() == list(range(6)), "the object must hold the whole file"
    assert body(client, bucket, "moved.bin") == b"abc" * 1000
    uploads = [r for r in d.lines() if r.get("msg") == "uploaded"]
    assert len(uploads) == 3, "each file exactly once"


def test_a_folder_whose_name_is_ignored_ignores_all_it_holds(moto: S3Server, watch: Path) -> None:
    """An ignored name (``--ignore``, ``*.tmp``) on a folder keeps its files out, in the start-up
    scan, in rescans and in events alike (events dropped the folder while scans shipped its files);
    a ``batch.tmp/`` filled, then renamed, is shipped once it has its name."""
    bucket = moto.new_bucket()
    for rel in ("skipme/a.txt", "old.tmp/b.txt", "ok/c.txt", "ok/skipme/d.txt"):
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_text(rel)
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2", "--rescan-interval", "1", "--ignore", "skipme")
    try:
        d.wait_for(lambda: "ok/c.txt" in d.uploaded())
        (watch / "batch.tmp").mkdir()
        (watch / "batch.tmp" / "e.txt").write_text("e")
        (watch / "skipme" / "f.txt").write_text("f")
        time.sleep(2.5)  # events, then a rescan
        assert d.uploaded() == {"ok/c.txt"}
        os.rename(watch / "batch.tmp", watch / "batch")
        d.wait_for(lambda: "batch/e.txt" in d.uploaded())
    finally:
        assert d.stop() == 0
    assert set(objects(moto.client(), bucket)) == {"ok/c.txt", "batch/e.txt"}


def test_files_under_a_symlinked_folder_are_never_shipped(
    moto: S3Server, watch: Path, tmp_path: Path
) -> None:
    """watchfiles follows a link to a folder and reports what is written behind it; such a file
    is outside the watch dir: it is neither uploaded nor, with --after-upload delete, deleted."""
    bucket = moto.new_bucket()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (watch / "link").symlink_to(elsewhere, target_is_directory=True)
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2", "--after-upload", "delete")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # the watches are set
        (elsewhere / "outside.txt").write_text("not in the watch dir\n")
        (elsewhere / "newdir").mkdir()
        (elsewhere / "newdir" / "deeper.txt").write_text("nor this\n")
        (watch / "inside.txt").write_text("in the watch dir\n")
        d.wait_for(lambda: "inside.txt" in d.uploaded())
        time.sleep(1.5)
    finally:
        assert d.stop() == 0
    assert set(objects(moto.client(), bucket)) == {"inside.txt"}
    assert (elsewhere / "outside.txt").exists() and (elsewhere / "newdir" / "deeper.txt").exists()


def test_events_under_a_link_to_a_folder_of_the_tree_count_for_the_folder(
    moto: S3Server, watch: Path
) -> None:
    """inotify gives a folder one watch, and watchfiles may report its events under the path of
    a link to it (``alias -> sub``): they were dropped, and a file written to ``sub/`` waited for
    the next rescan. Now they count for the folder's own path (links listed before and after
    ``sub`` in the folder, so that one comes last whatever the listing order)."""
    bucket = moto.new_bucket()
    (watch / "sub").mkdir()
    for name in ("aa_alias", "alias", "mm_alias", "zz_alias", "b", "q"):
        (watch / name).symlink_to("sub", target_is_directory=True)
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2", "--rescan-interval", "3600")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # the watches are set
        (watch / "sub" / "x.txt").write_text("x\n")
        (watch / "alias" / "y.txt").write_text("y\n")
        (watch / "top.txt").write_text("top\n")
        d.wait_for(lambda: {"top.txt", "sub/x.txt", "sub/y.txt"} <= set(d.uploaded()), 15)
    finally:
        assert d.stop() == 0
    assert set(objects(moto.client(), bucket)) == {"top.txt", "sub/x.txt", "sub/y.txt"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_ends_the_daemon_cleanly(moto: S3Server, watch: Path, sig: int) -> None:
    """SIGHUP (the terminal or SSH session closing) stops it as SIGTERM and SIGINT do: files in
    flight finish, a line says so, status 0; it killed the process on the spot."""
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2")
    try:
        (watch / "a.txt").write_text("a\n")
        d.wait_for(lambda: "a.txt" in d.uploaded())
    finally:
        assert d.stop(sig) == 0
    assert any(r["msg"].startswith("stopping") for r in d.lines())


def _recorded(watch: Path) -> bool:
    """Whether the state database holds a file (it may not be made yet)."""
    if not (watch / ".s3proc" / "state.db").exists():
        return False
    try:
        return bool(state_rows(watch, "SELECT path FROM files"))
    except sqlite3.OperationalError:
        return False


def _once_after_scan(
    server: S3Server, bucket: str, watch: Path, then: Any, quiet_period: str, *extra: str
) -> tuple[int, str]:
    """``s3proc run --once``; ``then(process)`` once its start-up scan recorded a file (while it
    waits the quiet period); its exit status and stderr."""
    args = [*s3proc_args(server, bucket, watch, "--quiet-period", quiet_period, *extra), "--once"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.env())
    try:
        deadline = time.monotonic() + 30
        while not _recorded(watch):
            assert time.monotonic() < deadline, "the start-up scan never recorded the file"
            time.sleep(0.05)
        then(proc)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    return proc.returncode, err.decode()


def _replace_by_folder(path: Path, elsewhere: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("the user's own file\n")


def _replace_by_link(path: Path, elsewhere: Path) -> None:
    path.unlink()
    path.symlink_to(elsewhere)


def _replace_by_fifo(path: Path, elsewhere: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_its_folder_by_a_file(path: Path, elsewhere: Path) -> None:
    shutil.rmtree(path.parent)
    path.parent.write_text("now a file\n")


@pytest.mark.parametrize(
    "replace", [_replace_by_folder, _replace_by_link, _replace_by_fifo, _replace_its_folder_by_a_file]
)
def test_a_queued_file_replaced_by_what_is_not_a_file_is_dropped_and_nothing_is_moved(
    moto: S3Server, watch: Path, tmp_path: Path, replace: Any
) -> None:
    """Between the scan and the claim: the queued row is forgotten (a folder's files are the
    watcher's to find), --once ends, nothing is read through a link or from a FIFO, nothing goes
    to the error folder."""
    bucket = moto.new_bucket()
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("id\n1\n2\n")
    path = watch / "sub" / "a.csv"
    path.parent.mkdir()
    path.write_text("id\n1\n")
    code, err = _once_after_scan(moto, bucket, watch, lambda _proc: replace(path, elsewhere), "2")
    assert code == 0, err[-2000:]
    assert objects(moto.client(), bucket) == {}
    assert state_rows(watch, "SELECT path, status FROM files") == []
    assert not list((watch / ".s3proc" / "errors").rglob("*"))
    assert elsewhere.read_text() == "id\n1\n2\n"
    if replace is _replace_by_folder:
        assert (path / "inside.txt").read_text() == "the user's own file\n"


def test_a_folder_replaced_by_a_link_while_its_file_waits_is_not_read_through_it(
    moto: S3Server, watch: Path, tmp_path: Path
) -> None:
    """A folder of the tree becomes a link to a folder outside it while its file waits for the
    quiet period: the file of the same name behind the link is neither uploaded nor, with
    --after-upload delete, deleted; the queued row is forgotten."""
    bucket = moto.new_bucket()
    private = tmp_path / "private"
    private.mkdir()
    (private / "a.txt").write_text("outside the watch dir\n")
    (watch / "drop").mkdir()
    (watch / "drop" / "a.txt").write_text("harmless\n")

    def swap(_proc: Any) -> None:
        (watch / "drop").rename(tmp_path / "moved-away")
        (watch / "drop").symlink_to(private, target_is_directory=True)

    code, err = _once_after_scan(moto, bucket, watch, swap, "2", "--after-upload", "delete")
    assert code == 0, err[-2000:]
    assert objects(moto.client(), bucket) == {}
    assert (private / "a.txt").read_text() == "outside the watch dir\n"
    assert state_rows(watch, "SELECT path, status FROM files") == []


def test_a_name_that_is_not_utf8_is_left_alone_with_a_warning(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    bad = os.fsdecode(b"caf\xe9.csv")
    (watch / bad).write_text("a\n1\n")
    (watch / "good.csv").write_text("a\n1\n")
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    assert set(objects(moto.client(), bucket)) == {"good.parquet"}
    assert (watch / bad).exists()
    assert [r["msg"] for r in run.logs if "not valid UTF-8" in r["msg"]] == [
        "left alone: the name caf\\xe9.csv is not valid UTF-8, so it cannot be an S3 key"
    ]


def test_the_service_caps_malloc_arenas_unless_the_environment_does() -> None:
    import platform
    import sys

    code = "from s3proc.service import limit_malloc_arenas as f; print(f())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert capped.stdout.strip() == str(platform.libc_ver()[0] == "glibc")
    env["MALLOC_ARENA_MAX"] = "4"
    left = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert left.stdout.strip() == "False"


def test_files_held_open_for_writing_are_found_among_the_candidates(tmp_path: Path) -> None:
    from s3proc.watcher import open_for_writing

    def key(p: Path) -> dict[tuple[int, int], set[str]]:
        st = p.stat()
        return {(st.st_dev, st.st_ino): {p.name}}

    writing, reading, other = (tmp_path / n for n in ("writing", "reading", "other"))
    for p in (writing, reading, other):
        p.write_bytes(b"x")
    # Another process holds them (as a writer would), not this one.
    holder = subprocess.Popen(
        [
            "python3",
            "-c",
            "import sys, time; w = open(sys.argv[1], 'ab'); o = open(sys.argv[3], 'ab');"
            " r = open(sys.argv[2], 'rb'); print('open', flush=True); time.sleep(60)",
            str(writing),
            str(reading),
            str(other),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        assert open_for_writing(key(writing) | key(reading)) == set(key(writing))
        assert open_for_writing(key(reading)) == set()
        assert open_for_writing({}) == set()
        # Known by another name only (a hard link), the writer is not seen; among its names, it is.
        (st_key,) = key(writing)
        assert open_for_writing({st_key: {"another-name"}}) == set()
        assert open_for_writing({st_key: {"another-name", "writing", "zzz"}}) == {st_key}
    finally:
        holder.kill()
        holder.communicate()
    assert open_for_writing(key(writing)) == set()


def test_a_file_held_open_for_writing_waits_whatever_hard_links_it_has(moto: S3Server, watch: Path) -> None:
    """A writer holds a.txt open; hard links to it are made in the watch dir once a.txt is
    queued (so a.txt comes first among rows of one stable time). Neither a.txt nor a link is
    shipped while it is open: the rows of one inode are looked for under all their names (they
    were under the last one only, and a.txt went up half written)."""
    bucket = moto.new_bucket()
    writer = (
        "import os, sys, time\n"
        "path = sys.argv[1]\n"
        "f = open(path, 'w'); f.write('first half\\n'); f.flush()\n"
        "time.sleep(1)\n"
        "for i in range(3): os.link(path, os.path.join(os.path.dirname(path), f'link{i}.txt'))\n"
        "time.sleep(5)\n"
        "f.write('second half\\n'); f.close()\n"
    )
    d = Daemon(moto, bucket, watch, "--quiet-period", "2", "--rescan-interval", "3600")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # the watches are set
        proc = subprocess.run([sys.executable, "-c", writer, str(watch / "a.txt")], timeout=60)
        assert proc.returncode == 0
        d.wait_for(lambda: {"a.txt", "link0.txt", "link1.txt", "link2.txt"} <= d.uploaded())
    finally:
        assert d.stop() == 0
    full = len("first half\nsecond half\n")
    sizes = [(r["path"], r["bytes_in"]) for r in d.lines() if r.get("msg") == "uploaded"]
    assert sizes and all(size == full for _, size in sizes), sizes
    assert body(moto.client(), bucket, "a.txt") == b"first half\nsecond half\n"


def test_a_folder_moved_in_whole_is_found_without_a_rescan(
    moto: S3Server, watch: Path, tmp_path: Path
) -> None:
    """A folder moved into the watch dir (or made and filled faster than its watch is set) sends
    one event, for the folder: its files must be found from it, not an hour later by a rescan."""
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2", "--rescan-interval", "3600")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        batch = tmp_path / "batch"
        (batch / "deep" / "er").mkdir(parents=True)
        for rel in ("a.txt", "deep/b.txt", "deep/er/c.txt"):
            (batch / rel).write_text(rel)
        os.rename(batch, watch / "batch")
        d.wait_for(lambda: len(d.uploaded()) == 3, timeout=20)
    finally:
        assert d.stop() == 0
    assert {k: body(moto.client(), bucket, k) for k in objects(moto.client(), bucket)} == {
        f"batch/{rel}": rel.encode() for rel in ("a.txt", "deep/b.txt", "deep/er/c.txt")
    }


@pytest.mark.parametrize("mode", ["delete", "move"])
def test_after_upload(moto: S3Server, watch: Path, tmp_path: Path, mode: str) -> None:
    bucket = moto.new_bucket()
    (watch / "a").mkdir()
    (watch / "a" / "f.txt").write_text("x")
    done = tmp_path / "done"
    run = run_once(moto, bucket, watch, "--after-upload", "delete" if mode == "delete" else f"move:{done}")
    assert run.returncode == 0, run.stderr
    assert not (watch / "a" / "f.txt").exists()
    if mode == "move":
        assert (done / "a" / "f.txt").read_text() == "x"
    assert set(objects(moto.client(), bucket)) == {"a/f.txt"}
    # The same content dropped again at the same path is known: not uploaded twice.
    (watch / "a" / "f.txt").write_text("x")
    again = run_once(moto, bucket, watch)
    assert again.lines("uploaded") == [] and again.returncode == 0


@pytest.mark.parametrize("mode", ["delete", "move"])
def test_a_file_dropped_again_with_the_same_size_and_mtime_after_upload_is_looked_at_anew(
    moto: S3Server, watch: Path, tmp_path: Path, mode: str
) -> None:
    """After a delete or a move, a file put at the path again with the size and mtime of the one
    gone (``cp -p``, ``rsync -t``) was never looked at: it stayed in the watch dir, and a new
    content was never uploaded. Now the same content is deleted or moved again, a new one shipped."""
    bucket = moto.new_bucket()
    done = tmp_path / "done"
    action = ("--after-upload", "delete" if mode == "delete" else f"move:{done}")
    mtime = 1_700_000_000_000_000_000
    for n, text in enumerate(["one\n", "one\n", "two\n"]):
        (watch / "a.txt").write_text(text)
        os.utime(watch / "a.txt", ns=(mtime, mtime))
        run = run_once(moto, bucket, watch, *action)
        assert run.returncode == 0, run.stderr
        assert not (watch / "a.txt").exists(), f"drop {n} stayed in the watch dir"
        assert len(run.lines("uploaded")) == (0 if n == 1 else 1)
        assert body(moto.client(), bucket, "a.txt") == text.encode()
    if mode == "move":
        assert sorted(p.read_text() for p in done.iterdir()) == ["one\n", "one\n", "two\n"]


@pytest.mark.parametrize("mode", ["delete", "move"])
def test_an_after_upload_action_a_crash_cut_short_is_done_at_the_next_start(
    moto: S3Server, watch: Path, tmp_path: Path, mode: str
) -> None:
    """A kill -9 between the state recording a file uploaded and its after-upload action leaves
    the file where it was, as it was recorded (as a run with keep leaves it): the next start
    does the action, and uploads nothing again."""
    bucket = moto.new_bucket()
    (watch / "a").mkdir()
    (watch / "a" / "f.txt").write_text("x")
    assert run_once(moto, bucket, watch).returncode == 0
    done = tmp_path / "done"
    run = run_once(moto, bucket, watch, "--after-upload", "delete" if mode == "delete" else f"move:{done}")
    assert run.returncode == 0, run.stderr
    assert run.lines("uploaded") == []
    assert not (watch / "a" / "f.txt").exists(), "the file stayed in the watch dir"
    if mode == "move":
        assert (done / "a" / "f.txt").read_text() == "x"
    assert set(objects(moto.client(), bucket)) == {"a/f.txt"}


def test_a_failed_file_a_crash_left_in_the_watch_dir_goes_to_the_error_folder_at_the_next_start(
    moto: S3Server, watch: Path
) -> None:
    """A kill -9 between the state recording a file failed and its move to the error folder:
    the next start moves it there, with its note."""
    bucket = moto.new_bucket()
    errors = watch / ".s3proc" / "errors"
    (watch / "bad.csv").write_text('a\n"open\n')
    assert run_once(moto, bucket, watch).returncode == 1
    # As the crash leaves it: failed in the state, the file unmoved (same size and mtime), no note.
    os.rename(errors / "bad.csv", watch / "bad.csv")
    (errors / "bad.csv.error.json").unlink()
    run = run_once(moto, bucket, watch)
    assert not (watch / "bad.csv").exists(), "the failed file stayed in the watch dir"
    assert (errors / "bad.csv").read_text() == 'a\n"open\n'
    note = json.loads((errors / "bad.csv.error.json").read_text())
    assert note["source"] == "bad.csv" and "quote" in note["reason"].lower(), note
    assert run.lines("uploaded") == [] and objects(moto.client(), bucket) == {}


@pytest.mark.parametrize("server_name", ["moto", "seaweed"])
def test_a_bucket_probe_cut_short_by_a_crash_is_aborted_at_the_next_start(
    request: pytest.FixtureRequest, watch: Path, server_name: str
) -> None:
    """A kill -9 between the start-up probe's CreateMultipartUpload and its abort leaves an
    incomplete upload of s3proc's own under ``<prefix>.s3proc-probe/``: the next start aborts
    it (an upload under the prefix that s3proc did not start stays)."""
    server: S3Server = request.getfixturevalue(server_name)
    bucket = server.new_bucket()
    client = server.client()
    client.create_multipart_upload(Bucket=bucket, Key="in/.s3proc-probe/0123456789abcdef")
    client.create_multipart_upload(Bucket=bucket, Key="in/someone-elses.bin")
    run = run_once(server, bucket, watch, "--prefix", "in/")
    assert run.returncode == 0, run.stderr
    assert [k for k, _ in incomplete_uploads(client, bucket)] == ["in/someone-elses.bin"]


def test_nothing_but_the_state_is_written(moto: S3Server, watch: Path, tmp_path: Path, gen_data) -> None:
    bucket = moto.new_bucket()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (watch / "t.csv").write_bytes(gen_data("csv", 30_000, 3).read_bytes())
    (watch / "b.bin").write_bytes(os.urandom(11 << 20))
    before = listing(watch)
    env = {**moto.env(), "TMPDIR": str(tmpdir)}
    run = run_once(moto, bucket, watch, "--part-size", "5MiB", env=env, cwd=cwd)
    assert run.returncode == 0, run.stderr
    written = listing(watch) - before
    own = {".s3proc", ".s3proc/errors", ".s3proc/state.db", ".s3proc/state.db-wal", ".s3proc/state.db-shm"}
    assert written <= own, written
    assert listing(tmpdir) == set()
    assert listing(cwd) == set()


def test_retry_puts_failed_files_back(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "bad.csv").write_text('a\n"open\n')
    assert run_once(moto, bucket, watch).returncode == 1
    assert (watch / ".s3proc" / "errors" / "bad.csv").exists()
    bin_ = str(Path(os.sys.executable).parent / "s3proc")
    # Fixed by hand in the error folder, then retried.
    (watch / ".s3proc" / "errors" / "bad.csv").write_text('a\n"closed"\n')
    proc = subprocess.run([bin_, "retry", "--watch-dir", str(watch)], capture_output=True, check=True)
    assert b"1 file(s) queued again" in proc.stdout
    assert (watch / "bad.csv").exists() and not (watch / ".s3proc" / "errors" / "bad.csv.error.json").exists()
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    assert set(objects(moto.client(), bucket)) == {"bad.parquet"}


def test_the_latest_failure_of_a_path_is_the_one_retry_brings_back(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    errors = watch / ".s3proc" / "errors"
    (watch / "bad.csv").write_text('a\n"first, never closed\n')
    assert run_once(moto, bucket, watch).returncode == 1
    (watch / "bad.csv").write_text('a\n"second, never closed\n')
    assert run_once(moto, bucket, watch).returncode == 1
    assert "second" in (errors / "bad.csv").read_text() and "first" in (errors / "bad.csv.1").read_text()
    assert (errors / "bad.csv.error.json").exists() and (errors / "bad.csv.1.error.json").exists()
    proc = subprocess.run([_bin(), "retry", "--watch-dir", str(watch)], capture_output=True, check=True)
    assert b"1 file(s) queued again" in proc.stdout
    assert "second" in (watch / "bad.csv").read_text()


def _bin() -> str:
    return str(Path(os.sys.executable).parent / "s3proc")


def test_status_and_retry_need_an_existing_state_and_retry_a_watch_dir(
    moto: S3Server, watch: Path, tmp_path: Path
) -> None:
    """A mistyped watch dir or state is an error that creates nothing; retry without the watch dir
    would put the files back in the current directory (or nowhere) and is refused; a failed file
    that is nowhere any more stays failed (queued, the next run would forget it)."""
    typo = tmp_path / "inbx"
    typo.mkdir()
    for args in (["status", "--watch-dir", str(typo)], ["retry", "--watch-dir", str(typo)]):
        proc = subprocess.run([_bin(), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and "no state database" in proc.stderr, proc.stderr
    assert not any(typo.iterdir())
    bucket = moto.new_bucket()
    (watch / "bad.csv").write_text('a\n"open\n')
    (watch / "gone.csv").write_text('a\n"open\n')
    assert run_once(moto, bucket, watch).returncode == 1
    state = str(watch / ".s3proc" / "state.db")
    proc = subprocess.run([_bin(), "retry", "--state", state], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "--watch-dir" in proc.stderr, proc.stderr
    (watch / ".s3proc" / "errors" / "gone.csv").unlink()
    proc = subprocess.run([_bin(), "retry", "--watch-dir", str(watch)], capture_output=True, text=True)
    assert "1 file(s) queued again" in proc.stdout and "1 not found" in proc.stdout, proc.stdout
    status = json.loads(
        subprocess.run([_bin(), "status", "--watch-dir", str(watch), "--json"], capture_output=True).stdout
    )
    assert status["counts"]["pending"] == 1 and [f["path"] for f in status["failures"]] == ["gone.csv"]


def test_cleanup_and_ls(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    client = moto.client()
    (watch / "t.csv").write_text("a\n1\n2\n")
    assert run_once(moto, bucket, watch, "--prefix", "p").returncode == 0
    orphan = client.create_multipart_upload(Bucket=bucket, Key="p/orphan.bin")["UploadId"]
    outside = client.create_multipart_upload(Bucket=bucket, Key="elsewhere.bin")["UploadId"]
    common = ["--bucket", bucket, "--endpoint-url", moto.endpoint, "--prefix", "p"]

    dry = subprocess.run(
        [_bin(), "cleanup", *common, "--dry-run"], capture_output=True, env=moto.env(), check=True
    )
    assert b"would abort p/orphan.bin" in dry.stdout and b"elsewhere" not in dry.stdout
    assert len(incomplete_uploads(client, bucket)) == 2
    subprocess.run([_bin(), "cleanup", *common], capture_output=True, env=moto.env(), check=True)
    assert incomplete_uploads(client, bucket) == [("elsewhere.bin", outside)]
    assert orphan

    ls = subprocess.run([_bin(), "ls", *common], capture_output=True, env=moto.env(), check=True)
    assert b"p/t.parquet" in ls.stdout and b"2 rows" in ls.stdout


@pytest.mark.parametrize("columns", [2, 1900])  # a footer within the last 64 KiB, and one past it
def test_ls_gives_the_rows_of_a_multipart_parquet_object_from_its_footer(
    moto: S3Server, columns: int
) -> None:
    """A multipart upload's metadata is written when the upload is created, often before the
    rows are counted: ls reads them from the object's Parquet footer."""
    bucket = moto.new_bucket()
    rows = 1000
    table = ",".join(f"c{j}" for j in range(columns)) + "\n"
    table += "".join(",".join(str(i * j) for j in range(columns)) + "\n" for i in range(rows))
    data = b"".join(s3proc.ParquetChunks(table.encode(), name="t.csv"))
    meta = {"s3proc-writer": "s3proc", "s3proc-format": "parquet", "s3proc-source": "t.csv"}
    moto.client().put_object(Bucket=bucket, Key="t.parquet", Body=data, Metadata=meta)
    footer = int.from_bytes(data[-8:-4], "little")
    assert (footer > 64 << 10) == (columns > 2), footer
    common = ["--bucket", bucket, "--endpoint-url", moto.endpoint]
    ls = subprocess.run([_bin(), "ls", *common], capture_output=True, env=moto.env(), check=True)
    assert b"1,000 rows" in ls.stdout, ls.stdout


@pytest.mark.parametrize("same", [True, False])
def test_a_state_rebuilt_from_a_shared_bucket_takes_only_its_own_keys(
    moto: S3Server, tmp_path: Path, same: bool
) -> None:
    """Service A writes under svcA/; service B's keys span the whole bucket (a template that does
    not begin with the prefix). B's first start rebuilds its state from every s3proc object it
    can list: A's f.txt is not B's f.txt (a key B's template does not give it). B took it, then
    replaced or deleted it, and never wrote its own."""
    bucket = moto.new_bucket()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f.txt").write_text("A's\n")
    (b / "f.txt").write_text("A's\n" if same else "B's\n")
    assert run_once(moto, bucket, a, "--prefix", "svcA").returncode == 0
    for _ in range(2):  # the second start rebuilds again: the state is lost
        run = run_once(moto, bucket, b, "--key-template", "svcB/{path}")
        assert run.returncode == 0, run.stderr
        shutil.rmtree(b / ".s3proc")
    client = moto.client()
    assert body(client, bucket, "svcA/f.txt") == b"A's\n"
    assert body(client, bucket, "svcB/f.txt") == (b"A's\n" if same else b"B's\n")
    assert set(objects(client, bucket)) == {"svcA/f.txt", "svcB/f.txt"}
    assert run.lines("state rebuilt from S3: 1 object(s) recorded"), run.stderr
    assert [r["path"] for r in run.lines("unchanged content: already uploaded")] == ["f.txt"]


def test_a_state_rebuilt_with_a_dated_template_finds_its_objects(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    dated = _dated_file(watch)
    assert run_once(moto, bucket, watch, *dated).returncode == 0
    shutil.rmtree(watch / ".s3proc")
    run = run_once(moto, bucket, watch, *dated)
    assert run.returncode == 0, run.stderr
    assert run.lines("state rebuilt from S3: 1 object(s) recorded"), run.stderr
    assert [r["path"] for r in run.lines("unchanged content: already uploaded")] == ["d/f.csv"]


def test_archive_entry_names_made_safe_are_logged(moto: S3Server, watch: Path) -> None:
    """A duplicated entry and one pointing outside the archive are renamed by the reader: the log
    says so, as it does for any key a source does not get as named."""
    bucket = moto.new_bucket()
    with zipfile.ZipFile(watch / "pack.zip", "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name": the point here
        z.writestr("dup.txt", "one")
        z.writestr("dup.txt", "two")
        z.writestr("../up.txt", "up")
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    assert set(objects(moto.client(), bucket)) == {
        "pack.zip/dup.txt",
        "pack.zip/dup~2.txt",
        "pack.zip/up.txt",
    }
    notes = {r["msg"] for r in run.logs if r["msg"].startswith("entry ")}
    assert any(m.startswith("entry dup~2.txt:") and "duplicate" in m for m in notes), notes
    assert any(m.startswith("entry up.txt:") and "outside the archive" in m for m in notes), notes


def test_mtimes_past_what_sqlite_holds_are_shipped_once(moto: S3Server, watch: Path) -> None:
    """An mtime in the year 2286 (or 1653) takes more than SQLite's 64-bit integers in
    nanoseconds: it is recorded as the last (first) day they hold; the run crashed at its first
    scan. With a dated template, a date past 9999 is the year 9999."""
    bucket = moto.new_bucket()
    keys = set()
    for name, when, key in (
        ("future.txt", 10**10, "2286/future.txt"),
        ("past.txt", -(10**10), "1653/past.txt"),
    ):
        (watch / name).write_text(name)
        os.utime(watch / name, (when, when))
        if os.stat(watch / name).st_mtime == when:
            keys.add(key)
        else:  # ext4 holds 1901 to 2446
            (watch / name).unlink()
    if not keys:
        pytest.skip("this file system holds no such mtime")
    for _ in range(2):  # the second run finds them unchanged
        run = run_once(moto, bucket, watch, "--key-template", "{date:%Y}/{path}")
        assert run.returncode == 0, run.stderr
    assert set(objects(moto.client(), bucket)) == keys
    assert [r["path"] for r in run.lines("uploaded")] == []


def test_ls_cleanup_and_rebuild_state_follow_the_key_template(moto: S3Server, watch: Path) -> None:
    """A template that does not begin with the prefix puts keys outside it: the other commands,
    configured as the service is (here by its environment), look where it writes."""
    bucket = moto.new_bucket()
    client = moto.client()
    (watch / "x.csv").write_text("a\n1\n")
    os.utime(watch / "x.csv", (1_700_000_000, 1_700_000_000))  # 2023-11-14 UTC
    env = {**moto.env(), "S3PROC_PREFIX": "p", "S3PROC_KEY_TEMPLATE": "{date:%Y}/{prefix}{path}"}
    common = ["--bucket", bucket, "--endpoint-url", moto.endpoint]

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([_bin(), *args, *common], capture_output=True, env=env)

    assert cli("run", "--once", "--watch-dir", str(watch), "--quiet-period", "0").returncode == 0
    assert set(objects(client, bucket)) == {"2023/p/x.parquet"}
    orphan = client.create_multipart_upload(Bucket=bucket, Key="2023/p/orphan.bin")["UploadId"]
    ls = cli("ls")
    assert ls.returncode == 0 and b"2023/p/x.parquet" in ls.stdout, ls.stderr
    dry = cli("cleanup", "--watch-dir", str(watch), "--dry-run")
    assert dry.returncode == 0 and b"would abort 2023/p/orphan.bin" in dry.stdout, dry
    assert incomplete_uploads(client, bucket) == [("2023/p/orphan.bin", orphan)]
    for db in (watch / ".s3proc").glob("state.db*"):
        db.unlink()  # lost: rebuilt from what is in the bucket
    rebuilt = cli("rebuild-state", "--watch-dir", str(watch))
    assert rebuilt.returncode == 0 and b"1 object(s) recorded" in rebuilt.stdout, rebuilt.stderr
    assert state_rows(watch, "SELECT key FROM objects") == [("2023/p/x.parquet",)]


def test_cleanup_of_a_watch_dir_needs_its_state_and_ls_and_cleanup_a_bucket(
    moto: S3Server, tmp_path: Path
) -> None:
    """A watch dir with no state is a typo, or a service whose state is elsewhere: aborting its
    uploads would cost it what it resumes. A missing bucket is one line, no traceback."""
    bucket = moto.new_bucket()
    client = moto.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="orphan.bin")["UploadId"]
    common = ["--endpoint-url", moto.endpoint]
    proc = subprocess.run(
        [_bin(), "cleanup", *common, "--bucket", bucket, "--watch-dir", str(tmp_path)],
        capture_output=True,
        env=moto.env(),
    )
    assert "no state database" in _one_line_exit_2(proc)
    assert incomplete_uploads(client, bucket) == [("orphan.bin", upload)]
    for command in ("ls", "cleanup"):
        proc = subprocess.run(
            [_bin(), command, *common, "--bucket", "no-such-bucket-here"], capture_output=True, env=moto.env()
        )
        assert "does not exist" in _one_line_exit_2(proc)


def test_a_prefix_with_a_percent_sign_is_listed_as_keys_hold_it(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "t.txt").write_text("x\n")
    assert run_once(moto, bucket, watch, "--prefix", "in%box").returncode == 0
    assert set(objects(moto.client(), bucket)) == {"in%25box/t.txt"}
    common = ["--bucket", bucket, "--endpoint-url", moto.endpoint, "--prefix", "in%box"]
    ls = subprocess.run([_bin(), "ls", *common], capture_output=True, env=moto.env(), check=True)
    assert b"in%25box/t.txt" in ls.stdout, ls.stdout


def test_cleanup_beside_a_service_refuses_and_keeps_what_the_state_resumes(
    moto: S3Server, watch: Path
) -> None:
    bucket = moto.new_bucket()
    client = moto.client()
    (watch / "t.txt").write_text("x\n")
    assert run_once(moto, bucket, watch).returncode == 0
    from s3proc.state import SqliteState

    kept = client.create_multipart_upload(Bucket=bucket, Key="t.txt")["UploadId"]
    orphan = client.create_multipart_upload(Bucket=bucket, Key="orphan.bin")["UploadId"]
    state = SqliteState(watch / ".s3proc" / "state.db", exclusive=True)  # as a running service holds it
    common = ["--bucket", bucket, "--endpoint-url", moto.endpoint, "--watch-dir", str(watch)]
    try:
        state.upload_started("t.txt", kept, "a" * 64, "kind")
        busy = subprocess.run([_bin(), "cleanup", *common], capture_output=True, env=moto.env())
        assert busy.returncode == 2 and b"another s3proc run is using the state" in busy.stderr, busy.stderr
    finally:
        state.close()
    done = subprocess.run([_bin(), "cleanup", *common], capture_output=True, env=moto.env(), check=True)
    assert b"keeping t.txt" in done.stdout and b"1 incomplete upload(s) aborted" in done.stdout, done.stdout
    assert incomplete_uploads(client, bucket) == [("t.txt", kept)]
    assert orphan


def test_embedded_s3_try_it(tmp_path: Path) -> None:
    cwd = tmp_path / "try"
    (cwd / "inbox").mkdir(parents=True)
    (cwd / "inbox" / "t.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    (cwd / "inbox" / "n.txt").write_text("hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PROC_"))}
    # A real service's configuration (its .env, here its environment) is not the try-it run's:
    # that run must neither ship the service's folder nor delete what it shipped.
    prod = tmp_path / "prod"
    prod.mkdir()
    (prod / "orders.csv").write_text("a\n1\n")
    (cwd / ".env").write_text(f"S3PROC_WATCH_DIR={prod}\nS3PROC_BUCKET=prod-bucket\n")
    env["S3PROC_AFTER_UPLOAD"] = "delete"
    for _ in range(2):  # run again, the new (empty) server gets everything again
        proc = subprocess.run(
            [_bin(), "run", "--embedded-s3", "--once", "--quiet-period", "0"],
            capture_output=True,
            cwd=cwd,
            env=env,
            timeout=120,
        )
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        assert "embedded S3 at http://127.0.0.1:" in out
        assert "2 object(s) in s3://s3proc/" in out
        lines = out.splitlines()
        assert any(line.split()[:1] == ["t.parquet"] and "3 rows" in line for line in lines), out
        assert any(line.split()[:1] == ["n.txt"] for line in lines), out
        assert sorted(p.name for p in (cwd / "inbox").iterdir()) == [".s3proc", "n.txt", "t.csv"]
    assert sorted(p.name for p in prod.iterdir()) == ["orders.csv"]


def test_every_line_about_a_file_carries_path_sha_and_stage(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    client = moto.client()
    (watch / "f.txt").write_text("same")
    assert run_once(moto, bucket, watch).returncode == 0
    # The state forgets the file (a state from elsewhere): the next run finds its own object behind
    # a 412 (a line from the uploader).
    with sqlite3.connect(watch / ".s3proc" / "state.db") as db:
        db.execute("DELETE FROM objects")
        db.execute("DELETE FROM files")
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr
    found = run.lines("already uploaded (found by HEAD)")
    assert found, run.stderr
    assert found[0]["path"] == "f.txt" and found[0]["sha"] == sha256(watch / "f.txt")[:12]
    assert found[0]["stage"] == "upload"
    for line in run.logs:
        if line["logger"] in ("s3proc.file", "s3proc.upload"):
            assert {"path", "stage"} <= set(line), line
    assert len(objects(client, bucket)) == 1
    # A file that fails in its conversion: the lines say so, with its checksum.
    (watch / "bad.csv").write_text('a\n"open\n')
    run = run_once(moto, bucket, watch)
    assert run.returncode == 1
    for msg in ("failed:", "moved to the error folder"):
        (line,) = [r for r in run.logs if r["msg"].startswith(msg)]
        assert line["sha"] == sha256(watch / ".s3proc" / "errors" / "bad.csv")[:12], line
        assert line["stage"] == "process", line


def test_polling_finds_new_files_between_rescans(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--poll", "--rescan-interval", "3600")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        (watch / "deep" / "er").mkdir(parents=True)
        (watch / "deep" / "er" / "p.txt").write_text("polled")
        d.wait_for(lambda: "deep/er/p.txt" in d.uploaded(), timeout=90)
    finally:
        assert d.stop() == 0
    assert body(moto.client(), bucket, "deep/er/p.txt") == b"polled"


def test_polling_goes_on_past_a_link_loop_and_never_through_a_link(
    moto: S3Server, watch: Path, tmp_path: Path
) -> None:
    """``sub/self -> .`` made watchfiles' poller fail for good ("File system loop found") and the
    watcher left new files to the rescan; s3proc's own polling follows no link: the loop is
    passed over, and a file behind a link to a folder outside the tree is not found."""
    bucket = moto.new_bucket()
    (watch / "sub").mkdir()
    (watch / "sub" / "self").symlink_to(".", target_is_directory=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (watch / "out").symlink_to(elsewhere, target_is_directory=True)
    d = Daemon(moto, bucket, watch, "--poll", "--rescan-interval", "3600", "--quiet-period", "0.5")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # a polling pass or two
        (elsewhere / "outside.txt").write_text("not in the watch dir\n")
        (watch / "sub" / "x.txt").write_text("polled")
        d.wait_for(lambda: "sub/x.txt" in d.uploaded(), timeout=15)
        time.sleep(2)
    finally:
        assert d.stop() == 0
    assert set(objects(moto.client(), bucket)) == {"sub/x.txt"}
    assert [r for r in d.lines() if r.get("logger") == "s3proc.watch"] == []


def test_a_watch_that_fails_starts_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error of the watch once it is set is logged and the watch starts again after a pause
    (it fell back to polling, and an error of the poller ended watching for good)."""
    from s3proc import watcher
    from s3proc.state import SqliteState

    root = tmp_path / "in"
    root.mkdir()
    real_watch = watcher.watchfiles.watch
    calls = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["force_polling"])
        if len(calls) == 1:
            yield set()
            raise RuntimeError("error in underlying watcher: something passing")
        yield from real_watch(*args, **kwargs)

    monkeypatch.setattr(watcher.watchfiles, "watch", failing_once)
    monkeypatch.setattr(watcher, "RETRY_MIN", 0.1, raising=False)  # 1 s in use
    state = SqliteState(tmp_path / "state.db")
    stop = threading.Event()
    w = watcher.Watcher(root, watcher.Filter(root), state, stop)
    w.start()
    try:
        deadline = time.monotonic() + 20
        while len(calls) < 2:
            assert w.is_alive() and time.monotonic() < deadline, calls
            time.sleep(0.05)
        time.sleep(1.5)  # the watches are set
        (root / "later.txt").write_text("after the failure")
        while state.get("later.txt") is None:
            assert time.monotonic() < deadline, "the file written after the failure was not seen"
            time.sleep(0.05)
    finally:
        stop.set()
        w.join(5)
        state.close()
    assert calls == [False, False], "inotify again, not polling"


def test_encryption_and_storage_class_pass_through(moto: S3Server, watch: Path) -> None:
    bucket = moto.new_bucket()
    (watch / "f.bin").write_bytes(os.urandom(6 << 20))  # multipart: set at CreateMultipartUpload
    (watch / "g.txt").write_text("small")  # one PutObject
    run = run_once(
        moto, bucket, watch, "--sse", "AES256", "--storage-class", "STANDARD_IA", "--part-size", "5MiB"
    )
    assert run.returncode == 0, run.stderr
    for key, head in objects(moto.client(), bucket).items():
        assert head.get("ServerSideEncryption") == "AES256", key
        assert head.get("StorageClass") == "STANDARD_IA", key


@pytest.mark.parametrize("failing", ["finish", "claim_key"])
def test_a_failing_state_database_stops_the_service_and_loses_nothing(
    moto: S3Server, watch: Path, failing: str
) -> None:
    """The disk under the state fills up, or another process holds its lock too long (here: the
    state refuses ``finish``, or the claim of a key): the service stops with the reason instead
    of going on without its memory (a failed claim is not a key owned by another source, whose
    alternative it would take); no file is marked failed or moved to the error folder, and the
    next start finishes the work, each file under its own key, without uploading anything twice."""
    from s3proc.config import RunConfig
    from s3proc.pipeline import Settings
    from s3proc.service import Schedule, Service
    from s3proc.state import SqliteState, StateUnavailable

    def full(*args: Any, **kwargs: Any) -> Any:
        raise StateUnavailable("the state database …: database or disk is full")

    DiskFull = type("DiskFull", (SqliteState,), {failing: full})

    bucket = moto.new_bucket()
    for i in range(6):
        (watch / f"f{i}.txt").write_text(f"file {i}\n")
    cfg = RunConfig(watch_dir=watch, bucket=bucket, endpoint_url=moto.endpoint, quiet_period=0,
                    access_key=moto.access_key, secret_key=moto.secret_key)  # fmt: skip
    keys = cfg.check()
    settings = Settings(root=watch.resolve(), keys=keys, error_dir=cfg.error_folder.resolve())

    def service(state: SqliteState) -> Service:
        return Service(
            settings, Schedule(concurrency=2, quiet_period=0), state, cfg.uploader(cfg.client()), ""
        )

    state = DiskFull(cfg.state_location, exclusive=True)
    try:
        with pytest.raises(StateUnavailable, match="disk is full"):
            service(state).run(once=True)
        assert state.counts()["failed"] == 0
    finally:
        state.close()
    assert not cfg.error_folder.exists() or not any(cfg.error_folder.iterdir())
    assert sorted(p.name for p in watch.iterdir() if p.is_file()) == [f"f{i}.txt" for i in range(6)]

    healthy = SqliteState(cfg.state_location, exclusive=True)
    try:
        assert service(healthy).run(once=True) == 0
        assert healthy.counts()["uploaded"] == 6
    finally:
        healthy.close()
    assert {k: body(moto.client(), bucket, k) for k in objects(moto.client(), bucket)} == {
        f"f{i}.txt": f"file {i}\n".encode() for i in range(6)
    }


def test_s3_going_away_and_coming_back_loses_nothing(moto: S3Server, watch: Path) -> None:
    """The endpoint goes away while files arrive (every connection reset), then comes back: the
    files wait in the queue (none goes to the error folder) and are uploaded when it is back."""
    from faultproxy import FaultProxy

    bucket = moto.new_bucket()
    proxy = FaultProxy(moto.endpoint)
    via = S3Server("proxy", proxy.endpoint, moto.access_key, moto.secret_key)
    d = Daemon(via, bucket, watch, "--retries", "1")
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        proxy.outage = True
        for i in range(5):
            (watch / f"f{i}.txt").write_text(f"during the outage {i}\n")
        d.wait_for(lambda: any("no new file for" in r["msg"] for r in d.lines()), timeout=60)
        time.sleep(2)
        proxy.outage = False
        d.wait_for(lambda: len(d.uploaded()) == 5, timeout=120)
    finally:
        assert d.stop() == 0
        proxy.close()
    assert not [r for r in d.lines() if r.get("msg", "").startswith("moved to the error folder")]
    assert {k: body(moto.client(), bucket, k) for k in objects(moto.client(), bucket)} == {
        f"f{i}.txt": f"during the outage {i}\n".encode() for i in range(5)
    }


def test_the_bucket_deleted_while_running(moto: S3Server, watch: Path) -> None:
    """The bucket disappears under a running service: a clear error, the files wait, and they are
    uploaded once the bucket is back."""
    bucket = moto.new_bucket()
    client = moto.client()
    d = Daemon(moto, bucket, watch)
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        client.delete_bucket(Bucket=bucket)
        (watch / "a.txt").write_text("waits for its bucket\n")
        d.wait_for(lambda: any("NoSuchBucket" in r["msg"] for r in d.lines()), timeout=60)
        client.create_bucket(Bucket=bucket)
        d.wait_for(lambda: "a.txt" in d.uploaded(), timeout=120)
    finally:
        assert d.stop() == 0
    assert body(client, bucket, "a.txt") == b"waits for its bucket\n"


def test_every_tabular_format_and_compressor_through_the_service(
    moto: S3Server, watch: Path, gen_data
) -> None:
    """NDJSON, a JSON array, XML, and tables compressed with gzip, zstd, bzip2 and xz: each becomes
    the same Parquet table as the generator's CSV of the same rows; a compressed file that is not a
    table goes up as it is; a binary with a tabular name goes to the error folder, saying what it is."""
    import bz2
    import gzip
    import lzma

    import zstandard

    bucket = moto.new_bucket()
    rows, seed = 2500, 12
    csv = gen_data("csv", rows, seed).read_bytes()
    inputs = {
        "t/a.ndjson": gen_data("ndjson", rows, seed).read_bytes(),
        "t/b.json": gen_data("json", rows, seed).read_bytes(),
        "t/c.xml": gen_data("xml", rows, seed).read_bytes(),
        "t/d.csv.gz": gzip.compress(csv),
        "t/e.csv.zst": zstandard.ZstdCompressor().compress(csv),
        "t/f.ndjson.bz2": bz2.compress(gen_data("ndjson", rows, seed).read_bytes()),
        "t/g.csv.xz": lzma.compress(csv),
        "logs/app.log.gz": gzip.compress(b"not a table\n" * 100),
        "bad/blob.json": gzip.compress(b"\x80" + random.Random(5).randbytes(5000)),
    }
    for rel, data in inputs.items():
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(data)
    run = run_once(moto, bucket, watch)
    assert run.returncode == 1, run.stderr  # the binary went to the error folder
    client = moto.client()
    want = pq.read_table(pa.BufferReader(s3proc_convert_bytes(csv)))
    for key in ("t/a.parquet", "t/b.parquet", "t/c.parquet", "t/d.parquet", "t/e.parquet", "t/f.parquet",
                "t/g.parquet"):  # fmt: skip
        got = read_parquet_object(client, bucket, key)
        assert got.num_rows == rows, key
        for name in want.column_names:
            col = name if name in got.column_names else f"@{name}"
            assert got.column(col).to_pylist() == want.column(name).to_pylist(), (key, name)
    assert body(client, bucket, "logs/app.log.gz") == inputs["logs/app.log.gz"]
    failed = [r for r in run.logs if r.get("path") == "bad/blob.json" and r.get("level") == "error"]
    assert failed and "line 1" in failed[0]["msg"], failed  # the gzip held random bytes
    assert (watch / ".s3proc" / "errors" / "bad" / "blob.json").exists()


def s3proc_convert_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    s3proc.convert(io.BytesIO(data), out)
    return out.getvalue()


def test_archives_entry_by_entry_and_a_broken_one_leaves_nothing(
    moto: S3Server, watch: Path, gen_data
) -> None:
    """A zip holding a CSV, a raw file, a nested tar.gz and compressed files: each entry is an
    object under the archive's own path, keyed and converted as the file dropped on its own would
    be (a .csv.gz is a table, a .log.gz is shipped as it is). A truncated archive goes to the
    error folder and leaves no object behind."""
    import tarfile
    import zipfile

    bucket = moto.new_bucket()
    csv = gen_data("csv", 1500, 21).read_bytes()
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        info = tarfile.TarInfo("deep/more.csv")
        info.size = len(csv)
        tar.addfile(info, io.BytesIO(csv))
    with zipfile.ZipFile(watch / "pack.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("q1/orders.csv", csv)
        z.writestr("readme.txt", "hello\n")
        z.writestr("nested.tar.gz", inner.getvalue())
        z.writestr("q2/sales.csv.gz", gzip.compress(csv, mtime=0))
        z.writestr("app.log.gz", gzip.compress(b"log\n", mtime=0))
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        for i in range(3):
            data = os.urandom(200_000)
            info = tarfile.TarInfo(f"part{i}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (watch / "broken.tar.gz").write_bytes(good.getvalue()[: len(good.getvalue()) * 2 // 3])
    with tarfile.open(watch / "links.tar", "w") as tar:
        info = tarfile.TarInfo("data.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("to-passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    run = run_once(moto, bucket, watch)
    assert run.returncode == 1, run.stderr  # broken.tar.gz failed
    client = moto.client()
    keys = set(objects(client, bucket))
    assert keys == {
        "pack.zip/q1/orders.parquet",
        "pack.zip/readme.txt",
        "pack.zip/nested.tar.gz/deep/more.parquet",
        "pack.zip/q2/sales.parquet",
        "pack.zip/app.log.gz",
        "links.tar/data.txt",
    }
    assert body(client, bucket, "pack.zip/readme.txt") == b"hello\n"
    assert body(client, bucket, "pack.zip/app.log.gz") == gzip.compress(b"log\n", mtime=0)
    # The link is never followed: recorded as skipped, in the state and in `s3proc status`.
    ((entry, reason),) = state_rows(watch, "SELECT entry, reason FROM skipped WHERE path='links.tar'")
    assert entry == "to-passwd" and "link" in reason, reason
    status = subprocess.run(
        [str(Path(os.sys.executable).parent / "s3proc"), "status", "--watch-dir", str(watch), "--json"],
        capture_output=True,
        check=True,
    )
    assert json.loads(status.stdout)["skipped_entries"] == [
        {"path": "links.tar", "entry": "to-passwd", "reason": reason}
    ]
    want = pq.read_table(pa.BufferReader(s3proc_convert_bytes(csv)))
    for key in (
        "pack.zip/q1/orders.parquet",
        "pack.zip/nested.tar.gz/deep/more.parquet",
        "pack.zip/q2/sales.parquet",
    ):
        assert read_parquet_object(client, bucket, key).equals(want), key
    assert (watch / ".s3proc" / "errors" / "broken.tar.gz").exists()
    assert incomplete_uploads(client, bucket) == []
    owned = state_rows(watch, "SELECT key FROM objects WHERE path='pack.zip'")
    assert len(owned) == 5


def test_an_archive_cut_short_by_a_crash_is_finished_at_restart(moto: S3Server, watch: Path) -> None:
    """A kill -9 in the middle of an archive leaves some entries uploaded (each with the archive's
    current SHA-256) and the archive ``processing``: the restart must ship the rest, not take the
    archive as already uploaded."""
    import zipfile

    bucket = moto.new_bucket()
    with zipfile.ZipFile(watch / "pack.zip", "w") as z:
        for name in ("a.txt", "b.txt", "c.txt"):
            z.writestr(name, f"entry {name}\n")
    assert run_once(moto, bucket, watch).returncode == 0
    client = moto.client()
    assert set(objects(client, bucket)) == {"pack.zip/a.txt", "pack.zip/b.txt", "pack.zip/c.txt"}
    # The state as a crash after a.txt and c.txt leaves it: b.txt never went out.
    client.delete_object(Bucket=bucket, Key="pack.zip/b.txt")
    db = sqlite3.connect(watch / ".s3proc" / "state.db")
    with db:
        db.execute("DELETE FROM objects WHERE key='pack.zip/b.txt'")
        db.execute("UPDATE files SET status='processing', sha256=NULL WHERE path='pack.zip'")
    db.close()
    run = run_once(moto, bucket, watch)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.lines("unchanged content: already uploaded") == []
    assert body(client, bucket, "pack.zip/b.txt") == b"entry b.txt\n"
    assert set(objects(client, bucket)) == {"pack.zip/a.txt", "pack.zip/b.txt", "pack.zip/c.txt"}


def test_once_gives_up_while_s3_stays_unavailable_and_starts_no_file_meanwhile(
    moto: S3Server, watch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every upload answers 503: each refusal pauses new files (shortened here from 5-60 s), during
    a pause no file starts (claimed ones included), and after the longest one ``--once`` gives up
    with exit 1, leaving every file queued for the next run, none in the error folder."""
    from faultproxy import FaultProxy, Rule

    import s3proc.service as service
    from s3proc.config import RunConfig
    from s3proc.pipeline import Settings
    from s3proc.service import Schedule, Service
    from s3proc.state import SqliteState

    monkeypatch.setattr(service, "PAUSE_MIN", 0.2)
    monkeypatch.setattr(service, "PAUSE_MAX", 0.4)
    bucket = moto.new_bucket()
    for i in range(20):
        (watch / f"f{i:02d}.txt").write_text(f"file {i}\n")
    proxy = FaultProxy(moto.endpoint, [Rule("status", method="PUT", every=1, status=503)])
    cfg = RunConfig(watch_dir=watch, bucket=bucket, endpoint_url=proxy.endpoint, quiet_period=0,
                    access_key=moto.access_key, secret_key=moto.secret_key, retries=0)  # fmt: skip
    settings = Settings(root=watch.resolve(), keys=cfg.check(), error_dir=cfg.error_folder.resolve())
    state = SqliteState(cfg.state_location, exclusive=True)
    try:
        one = Schedule(concurrency=1, quiet_period=0)
        svc = Service(settings, one, state, cfg.uploader(cfg.client()), "")
        codes: list[int] = []
        t = threading.Thread(target=lambda: codes.append(svc.run(once=True)), daemon=True)
        t.start()
        t.join(timeout=60)
        if t.is_alive():
            svc.request_stop()
            t.join(timeout=30)
            pytest.fail("--once did not give up")
        assert codes == [1]
        assert state.counts()["pending"] == 20 and state.counts()["failed"] == 0
    finally:
        state.close()
        proxy.close()
    started = {path for method, path in proxy.requests if method == "PUT"}
    assert len(started) == 3, started  # one per pause: 0.2 s, 0.4 s, then it gives up
    assert not cfg.error_folder.exists() or not any(cfg.error_folder.iterdir())


@pytest.mark.parametrize(
    ("kind", "grace", "signals"), [("put_object", "1", 1), ("upload_part", "1", 1), ("put_object", "60", 2)]
)
def test_sigterm_ends_within_the_grace_period_while_s3_does_not_answer(
    moto: S3Server, watch: Path, kind: str, grace: str, signals: int
) -> None:
    """S3 takes 30 s to answer an upload: SIGTERM with ``--grace 1`` ends the service in a few
    seconds, not when the answer comes, and so does a second SIGTERM within a longer grace
    period; the next start uploads the file once."""
    from faultproxy import FaultProxy, Rule

    bucket = moto.new_bucket()
    path = r"partNumber=" if kind == "upload_part" else r"/f\.bin$"
    proxy = FaultProxy(moto.endpoint, [Rule("stall", method="PUT", path=path, seconds=30)])
    via = S3Server("proxy", proxy.endpoint, moto.access_key, moto.secret_key)
    d = Daemon(via, bucket, watch, "--grace", grace, "--part-size", "5MiB")
    data = os.urandom(12 << 20 if kind == "upload_part" else 1000)
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        (watch / "f.bin").write_bytes(data)
        d.wait_for(lambda: any(r.seen for r in proxy.rules))  # the request is at the proxy
        time.sleep(0.5)
        for _ in range(signals - 1):
            d.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        sent = time.monotonic()
        assert d.stop() == 0
        took = time.monotonic() - sent
    finally:
        proxy.close()
    assert took < 8, f"{signals} SIGTERM with --grace {grace} took {took:.1f} s"
    assert run_once(moto, bucket, watch).returncode == 0
    assert body(moto.client(), bucket, "f.bin") == data
    assert incomplete_uploads(moto.client(), bucket) == []


def test_once_stopped_before_the_queue_is_empty_exits_1(moto: S3Server, watch: Path) -> None:
    """Stopped by ``timeout`` or systemd before its files went up, --once must not say that
    every file was uploaded."""
    bucket = moto.new_bucket()
    (watch / "a.csv").write_text("id\n1\n")
    code, err = _once_after_scan(moto, bucket, watch, lambda proc: proc.send_signal(signal.SIGTERM), "30")
    assert code == 1, err[-2000:]
    assert "stopped with 1 file(s) left for the next run" in err
    assert state_rows(watch, "SELECT status FROM files") == [("pending",)]
    assert objects(moto.client(), bucket) == {}
