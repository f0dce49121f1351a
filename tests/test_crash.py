"""``kill -9`` at any moment, then a restart: every object exactly once, correct, nothing left over.

The real daemon (``s3proc run`` as a subprocess) against SeaweedFS (it verifies checksums and
honours ``If-None-Match``/``If-Match``, as AWS does) is killed with SIGKILL again and again: during
start-up, while multipart uploads are open, right after a file was recorded, at random moments.
Between kills files are dropped and changed. After every kill, whatever S3 shows must be a
complete version of its source; after a last ``--once`` run, the bucket must hold exactly one
object per file, byte for byte (raw) or value for value (Parquet), with no incomplete multipart
upload, and the state must know every file as uploaded.

The instants no outside timer can hit (between CreateMultipartUpload and the state recording
it, between CompleteMultipartUpload and the state recording that) are made by hand in the
state database, with real orphan uploads made with boto3; so are two sequels of a crash: the
file in flight deleted, or changed back to the content the state last recorded, while s3proc
was down.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _util import archive_members, assert_parquet_holds, json_lines, make_archive, state_rows
from faultproxy import FaultProxy
from s3servers import S3Server, body, incomplete_uploads, objects, run_once, s3proc_args

from s3proc.archives import is_archive
from s3proc.keys import KeyMaker, is_tabular
from s3proc.state import SqliteState

MiB = 1 << 20
ARGS = ("--part-size", "5MiB", "--concurrency", "2", "--quiet-period", "0.2")
QUIET = 0.2


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


KEYS = KeyMaker()


def key_of(rel: str) -> str:
    """The key of a file that is not an archive (the contract of keys.py)."""
    return KEYS.key(rel, parquet=is_tabular(rel))


def state_exec(watch: Path, sql: str, *args: Any) -> None:
    db = sqlite3.connect(watch / ".s3proc" / "state.db")
    try:
        with db:
            assert db.execute(sql, args).rowcount == 1, sql
    finally:
        db.close()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def body_sha256(client: Any, bucket: str, key: str) -> str:
    h = hashlib.sha256()
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def expected_objects(rel: str, data: bytes) -> dict[str, tuple[str, bytes]]:
    """key → (archive entry or '', the bytes it is made from), for one content of ``rel``
    (an archive's content only: other files are not read here)."""
    return {KEYS.key(rel, parquet=is_tabular(e), entry=e): (e, c) for e, c in archive_members(rel, data)}


@dataclass
class Tree:
    """The watch dir, and every content each of its files has had (SHA-256 → size)."""

    root: Path
    rng: random.Random
    gen_data: Callable[..., Path]
    history: dict[str, dict[str, int]] = field(default_factory=dict)
    archives: dict[str, dict[str, bytes]] = field(default_factory=dict)  # every content of each archive

    def write(self, rel: str, data: bytes, atomic: bool = False) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if atomic:  # as a well-behaved producer does while the daemon runs
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            path.write_bytes(data)
        sha = sha256_bytes(data)
        self.history.setdefault(rel, {})[sha] = len(data)
        if is_archive(rel):
            self.archives.setdefault(rel, {})[sha] = data

    def raw(self, rel: str, size: int, atomic: bool = False) -> None:
        self.write(rel, self.rng.randbytes(size), atomic)

    def csv(self, rel: str, rows: int, seed: int) -> None:
        self.gen(rel, "csv", rows, seed)

    def gen(self, rel: str, fmt: str, rows: int, seed: int) -> None:
        """A table of the shared generator (``fmt``: csv, ndjson, json, xml)."""
        self.write(rel, self.gen_data(fmt, rows, seed).read_bytes())

    def archive(self, rel: str, members: dict[str, bytes]) -> None:
        self.write(rel, make_archive(rel, members))

    def current(self) -> dict[str, str]:
        """Every file's current SHA-256."""
        return {rel: sha256_file(self.root / rel) for rel in sorted(self.history)}

    def objects_of(self, rel: str, sha: str) -> dict[str, tuple[str, bytes | Path]]:
        """key → (archive entry or '', its bytes, or the file) of the content ``sha`` of ``rel``."""
        if rel in self.archives:
            return dict(expected_objects(rel, self.archives[rel][sha]))
        return {key_of(rel): ("", self.root / rel)}


class Daemon:
    """One ``s3proc run`` whose stderr (JSON lines) goes to a file outside the watch dir."""

    def __init__(self, server: S3Server, bucket: str, watch: Path, log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                s3proc_args(server, bucket, watch, *ARGS),
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=server.env(),
            )

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def said(self, msg: str) -> bool:
        return any(r.get("msg") == msg for r in self.lines())

    def wait_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Waits for ``cond``; False after ``timeout`` (nothing left to do, say)."""
        deadline = time.monotonic() + timeout
        while not cond():
            assert self.proc.poll() is None, f"s3proc exited with {self.proc.returncode}:\n{self.tail()}"
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def kill(self) -> None:
        assert self.proc.poll() is None, f"s3proc exited by itself ({self.proc.returncode}):\n{self.tail()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def scanned(d: Daemon) -> bool:
    """Start-up recovery is over once the first scan is reported."""
    return any(str(r.get("msg", "")).startswith("scanned ") for r in d.lines())


# ---------------------------------------------------------------------- checks
def check_consistent(client: Any, bucket: str, tree: Tree) -> None:
    """At any instant: every object is a whole version of its source, never part of one."""
    sources = {key_of(rel): rel for rel in tree.history if rel not in tree.archives}
    for rel, contents in tree.archives.items():
        sources.update(
            dict.fromkeys((k for data in contents.values() for k in expected_objects(rel, data)), rel)
        )
    for key, head in objects(client, bucket).items():
        assert key in sources, f"unexpected object {key}"
        rel = sources[key]
        meta = head["Metadata"]
        sha = meta["s3proc-source-sha256"]
        assert sha in tree.history[rel], f"{key}: SHA-256 {sha} is no content {rel} ever had"
        made = tree.objects_of(rel, sha)
        assert key in made, f"{key}: not an object of the content of {rel} it names"
        entry, source = made[key]
        assert unquote(meta["s3proc-source"]) == rel + (f"!{entry}" if entry else "")
        if meta["s3proc-format"] == "raw":
            size = len(source) if isinstance(source, bytes) else tree.history[rel][sha]
            assert head["ContentLength"] == size, f"{key}: a torn object"


def check_final(client: Any, bucket: str, tree: Tree, logs: list[list[dict[str, Any]]]) -> None:
    watch = tree.root
    files = tree.current()
    want = {
        key: (rel, *made) for rel, sha in files.items() for key, made in tree.objects_of(rel, sha).items()
    }
    heads = objects(client, bucket)
    assert set(heads) == set(want), "exactly the objects of the files' current contents"
    assert incomplete_uploads(client, bucket) == []

    for key, (rel, entry, source) in want.items():
        meta = heads[key]["Metadata"]
        assert unquote(meta["s3proc-source"]) == rel + (f"!{entry}" if entry else "")
        assert meta["s3proc-source-sha256"] == files[rel], f"{key} does not hold the latest content of {rel}"
        if is_tabular(entry or rel):
            got = pq.read_table(pa.BufferReader(body(client, bucket, key)))
            assert_parquet_holds(key, got, entry or rel, source)
            # Rows are in the metadata when known at creation: always for one part (README).
            if "s3proc-rows" in meta or "-" not in heads[key]["ETag"]:
                assert meta["s3proc-rows"] == str(got.num_rows)
            assert meta["s3proc-format"] == "parquet"
        else:
            sha = sha256_bytes(source) if isinstance(source, bytes) else files[rel]
            assert body_sha256(client, bucket, key) == sha, f"{key} is not byte-identical to {rel} {entry}"
            assert meta["s3proc-format"] == "raw"

    # The state: every file uploaded with its current content, one object row each, none in flight.
    statuses = {p: (s, h) for p, s, h in state_rows(watch, "SELECT path, status, sha256 FROM files")}
    assert statuses == {rel: ("uploaded", sha) for rel, sha in files.items()}
    rows = state_rows(watch, "SELECT key, path, entry, sha256, etag, size, upload_id FROM objects")
    assert sorted(r[0] for r in rows) == sorted(want), "one object row per object"
    for key, path, entry, sha, etag, size, upload_id in rows:
        assert (path, entry) == want[key][:2]
        assert upload_id is None, f"{key}: an upload still recorded in flight"
        assert sha == files[path]
        assert etag == heads[key]["ETag"].strip('"')
        assert size == heads[key]["ContentLength"]
    assert not (watch / ".s3proc" / "errors").exists() or not any((watch / ".s3proc" / "errors").iterdir())

    # Exactly once, as the runs reported it: no content of a file was uploaded twice.
    reported = Counter((r["path"], r["sha"]) for run in logs for r in run if r.get("msg") == "uploaded")
    twice = {k: n for k, n in reported.items() if n > 1}
    assert not twice, f"uploaded more than once: {twice}"


# ---------------------------------------------------------------------- the kill loop
# startup: anywhere from before the imports to the scan; recovery: right after the first thing
# start-up recovery reports (files requeued, uploads not aborted yet); multipart: while an upload
# of this run is open; uploaded: just after a file was recorded; timed: 0.3-3 s after the start
# (once in two with a file dropped meanwhile).
KILL_MODES = ("startup", "recovery", "multipart", "uploaded", "timed")


def seed_tree(tree: Tree) -> None:
    rng = tree.rng
    for i in range(6):  # multipart at 5 MiB parts: kills land mid-upload
        tree.raw(f"big/blob{i}.bin", rng.randint(6 * MiB, 20 * MiB))
    for i in range(20):
        folder = ("", "small/", "small/deeper/", "a/b/c/")[i % 4]
        tree.raw(f"{folder}note{i}.txt", rng.randint(0, 64 << 10))
    tree.csv("tables/sales.csv", 150_000, 11)  # ~8 MiB of Parquet: two parts
    tree.csv("tables/2024/q1.csv", 20_000, 12)
    tree.csv("orders.csv", 2_000, 13)
    seed_formats(tree)


def ndjson_lines(tree: Tree, n: int) -> list[bytes]:
    """``n`` records of one generated NDJSON file (one generator run serves every JSON source)."""
    lines = tree.gen_data("ndjson", 3_000, 14).read_bytes().splitlines(keepends=True)
    assert len(lines) >= n
    return lines[:n]


def json_array(tree: Tree, n: int) -> bytes:
    return b"[\n" + b",\n".join(line.rstrip(b"\n") for line in ndjson_lines(tree, n)) + b"\n]\n"


def seed_formats(tree: Tree) -> None:
    """One of each other kind of source: NDJSON, a JSON array, XML, a gzipped CSV, a zip (a CSV,
    raw entries, a nested tar.gz holding a CSV and a raw entry) and a tar.gz (NDJSON, raw)."""
    rng, gen = tree.rng, tree.gen_data
    tree.write("json/events.ndjson", b"".join(ndjson_lines(tree, 3_000)))
    tree.write("json/list.json", json_array(tree, 2_000))
    tree.gen("xml/feed.xml", "xml", 1_500, 16)
    orders = gen("csv", 2_000, 13).read_bytes()  # orders.csv's first content: generated once
    tree.write("tables/small.csv.gz", gzip.compress(orders))
    nested = make_archive("nested.tar.gz", {"deep/more.csv": orders, "deep/raw.dat": rng.randbytes(50_000)})
    pack = {"q1/orders.csv": orders, "readme.txt": b"hello\n", "blob.bin": rng.randbytes(300_000),
            "nested.tar.gz": nested}  # fmt: skip
    tree.archive("packs/pack.zip", pack)
    tree.archive(
        "packs/logs.tar.gz", {"a.ndjson": b"".join(ndjson_lines(tree, 800)), "b.txt": rng.randbytes(1_000)}
    )


def between_kills(tree: Tree, n: int) -> None:
    """What producers do while s3proc is down: new files, new content for old ones.

    A big file gets new content every time, so that every run has multipart uploads to do.
    """
    rng = tree.rng
    tree.raw(f"big/blob{rng.randrange(6)}.bin", rng.randint(6 * MiB, 16 * MiB))
    if n == 0:
        tree.raw("late/blob-late.bin", 9 * MiB)
        tree.raw("late/one.txt", 100)
        tree.csv("late/tables/new.csv", 3_000, 21)
    elif n == 1:
        tree.raw("big/blob0.bin", rng.randint(7 * MiB, 12 * MiB))  # a new content, a new size
        tree.csv("orders.csv", 2_500, 22)
        tree.write("json/list.json", json_array(tree, 2_200))
    elif n == 2:
        tree.raw("note1.txt", 321)
        tree.csv("tables/2024/q1.csv", 25_000, 23)
        # An archive's new content drops an entry: its object must go.
        tree.archive("packs/logs.tar.gz", {"a.ndjson": b"".join(ndjson_lines(tree, 900)),
                                           "c.txt": b"new entry\n"})  # fmt: skip
    elif n == 3:
        tree.raw("big/blob3.bin", rng.randint(6 * MiB, 8 * MiB))


def kill_again_and_again(seaweed: S3Server, tmp_path: Path, gen_data: Callable[..., Path], seed: int,
                         kills: int, seed_with: Callable[[Tree], None] = seed_tree,
                         final_timeout: float = 300) -> None:  # fmt: skip
    rng = random.Random(seed)
    watch = tmp_path / "inbox"
    logdir = tmp_path / "logs"
    logdir.mkdir()
    tree = Tree(watch, rng, gen_data)
    seed_with(tree)
    started_at = time.monotonic()
    bucket = seaweed.new_bucket()
    client = seaweed.client()
    modes = [KILL_MODES[i % len(KILL_MODES)] for i in range(kills)]
    rng.shuffle(modes)
    left_open = 0  # kills that left an upload of their own run open
    report = []
    for n, mode in enumerate(modes):
        leftover = set(incomplete_uploads(client, bucket))
        d = Daemon(seaweed, bucket, watch, logdir / f"run{n}.log")
        started = time.monotonic()
        if mode == "startup":
            time.sleep(rng.uniform(0.05, 1.0))
        elif mode == "timed":
            if n % 2:  # a file arrives while the daemon runs
                tree.raw(f"live/drop{n}.bin", rng.randint(1, 8) * MiB, atomic=True)
            time.sleep(max(0.0, started + rng.uniform(0.3, 3.0) - time.monotonic()))
        elif mode == "recovery":
            d.wait_until(lambda d=d: any(r.get("stage") in ("recover", "detect") for r in d.lines()), 30)
        else:
            assert d.wait_until(lambda d=d: scanned(d), 30), d.tail()
            if mode == "multipart":  # an upload of this run is open
                d.wait_until(lambda: bool(incomplete_uploads(client, bucket)), 10)
            else:
                d.wait_until(lambda d=d: d.said("uploaded"), 10)
                time.sleep(rng.uniform(0, 0.3))
        d.kill()
        open_now = incomplete_uploads(client, bucket)
        left_open += bool(set(open_now) - leftover)
        report.append(f"{mode}:{len(set(open_now) - leftover)}/{len(open_now)}")
        check_consistent(client, bucket, tree)
        between_kills(tree, n)

    time.sleep(QUIET * 3)  # the last changes are older than the quiet period
    final = run_once(seaweed, bucket, watch, *ARGS, timeout=final_timeout)
    assert final.returncode == 0, final.stderr
    logs = [json_lines(p) for p in sorted(logdir.glob("run*.log"))] + [final.logs]
    print(f"{kills} kills over {len(tree.history)} files in {time.monotonic() - started_at:.0f} s"
          f" (mode:uploads it opened/open after it): {' '.join(report)}")  # fmt: skip
    check_final(client, bucket, tree, logs)
    assert left_open, "no kill landed during a multipart upload: the test proved less than it should"

    # Each upload the last kill left open was aborted, or kept and resumed (check_final: none is
    # left).
    def count(pattern: str) -> int:
        return sum(int(m.group(1)) for r in final.logs if (m := re.match(pattern, r.get("msg", ""))))

    aborted = count(r"aborted (\d+) incomplete multipart upload\(s\) of the last run")
    kept = count(r"kept (\d+) multipart upload\(s\) of the last run, to resume")
    assert aborted + kept == len(open_now), (aborted, kept, open_now)


def test_kill_9_at_any_moment_then_restart(seaweed: S3Server, tmp_path: Path, gen_data) -> None:
    kill_again_and_again(seaweed, tmp_path, gen_data, seed=1009, kills=6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_many_times(seaweed: S3Server, tmp_path: Path, gen_data, seed: int) -> None:
    kill_again_and_again(seaweed, tmp_path, gen_data, seed=seed, kills=25)


def seed_300_files(tree: Tree) -> None:
    """The issue's mix: about 300 files (small raw, CSV, NDJSON, archives, every other format)
    and two of about 500 MB, one raw and one CSV. The small tables are slices of two generated
    ones (the generator costs a process per call); the big CSV repeats a generated one's rows."""
    seed_tree(tree)
    rng = tree.rng
    header, *rows = list(csv.reader(io.StringIO(tree.gen_data("csv", 20_000, 31).read_text(), newline="")))
    lines = tree.gen_data("ndjson", 20_000, 32).read_bytes().splitlines(keepends=True)

    def csv_rows(part: list[list[str]]) -> bytes:
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(part)
        return out.getvalue().encode()

    def csv_slice(n: int) -> bytes:
        start = rng.randrange(len(rows) - n)
        return csv_rows([header, *rows[start : start + n]])

    def ndjson_slice(n: int) -> bytes:
        start = rng.randrange(len(lines) - n)
        return b"".join(lines[start : start + n])

    for i in range(100):
        tree.raw(f"many/raw/{i // 10}/r{i:03}.bin", rng.randint(0, 100_000))
    for i in range(70):
        tree.write(f"many/csv/t{i:03}.csv", csv_slice(rng.randint(1, 3_000)))
    for i in range(60):
        tree.write(f"many/ndjson/e{i:03}.ndjson", ndjson_slice(rng.randint(1, 3_000)))
    for i in range(30):
        members = {"t.csv": csv_slice(500), "e.ndjson": ndjson_slice(300), "raw.bin": rng.randbytes(20_000)}
        tree.archive(f"many/packs/p{i:02}" + (".zip" if i % 2 else ".tar.gz"), members)
    (tree.root / "huge").mkdir()
    with open(tree.root / "huge" / "raw.bin", "wb") as f:
        for _ in range(500):
            f.write(rng.randbytes(MiB))
    block = csv_rows(rows)
    with open(tree.root / "huge" / "table.csv", "wb") as f:
        f.write(csv_rows([header]))
        for _ in range(-(-500 * MiB // len(block))):
            f.write(block)
    for rel in ("huge/raw.bin", "huge/table.csv"):
        tree.history[rel] = {sha256_file(tree.root / rel): (tree.root / rel).stat().st_size}


@pytest.mark.slow
def test_kill_9_over_300_files_and_two_of_500_mb(seaweed: S3Server, tmp_path: Path, gen_data) -> None:
    kill_again_and_again(seaweed, tmp_path, gen_data, seed=300, kills=22, seed_with=seed_300_files,
                         final_timeout=1800)  # fmt: skip


def test_the_disk_under_the_state_fills_up(seaweed: S3Server, tmp_path: Path, gen_data) -> None:
    """The state database's disk fills up while files are processed (RLIMIT_FSIZE: the state
    database is the only file s3proc writes, and a write past the limit fails with EFBIG): the
    service stops with one line naming the state database and exit status 2, having marked no
    file failed; the database passes ``PRAGMA integrity_check``; a restart on a roomy disk
    finishes everything, each object exactly once."""
    import resource

    watch = tmp_path / "inbox"
    tree = Tree(watch, random.Random(17), gen_data)
    for i in range(120):
        tree.raw(f"many/f{i:03}.txt", tree.rng.randint(10, 4000))
    tree.raw("big.bin", 12 * MiB)  # multipart
    tree.csv("t.csv", 3_000, 7)
    seed_formats(tree)
    bucket = seaweed.new_bucket()
    client = seaweed.client()
    limit = 768 << 10  # the WAL reaches it after a few dozen files

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = run_once(seaweed, bucket, watch, *ARGS, preexec_fn=small_disk)
    assert full.returncode == 2, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("s3proc: error: the state database ") and "state.db failed: " in last, last
    assert "SQLITE_IOERR_WRITE" in last or "SQLITE_FULL" in last, last
    assert any(
        r["level"] == "error" and r["msg"].startswith("stopping: the state database ") for r in full.logs
    )
    done = len(full.lines("uploaded"))
    assert 0 < done < len(tree.history), f"{done} file(s) uploaded: the limit did not hit mid-run"
    assert state_rows(watch, "PRAGMA integrity_check") == [("ok",)]
    assert state_rows(watch, "SELECT count(*) FROM files WHERE status='failed'") == [(0,)]

    again = run_once(seaweed, bucket, watch, *ARGS)
    assert again.returncode == 0, again.stderr[-3000:]
    print(f"disk full after {done} of {len(tree.history)} files: {last}")
    check_final(client, bucket, tree, [full.logs, again.logs])


# ---------------------------------------------------------------------- the instants in between
def test_restart_after_crashes_between_s3_and_the_state(seaweed: S3Server, tmp_path: Path, gen_data) -> None:
    watch = tmp_path / "inbox"
    rng = random.Random(7)
    tree = Tree(watch, rng, gen_data)
    tree.raw("big.bin", 12 * MiB)  # three parts
    tree.raw("mid.bin", 7 * MiB)  # two parts
    tree.raw("small.txt", 1000)  # one PutObject
    tree.raw("changed.bin", 6 * MiB)  # two parts; then a new content, replaced with If-Match
    tree.csv("t.csv", 2_000, 5)
    bucket = seaweed.new_bucket()
    client = seaweed.client()
    first = run_once(seaweed, bucket, watch, *ARGS)
    assert first.returncode == 0, first.stderr
    (v1,) = state_rows(watch, "SELECT sha256, etag, size FROM objects WHERE key='changed.bin'")
    tree.raw("changed.bin", 7 * MiB)
    second = run_once(seaweed, bucket, watch, *ARGS)
    assert second.returncode == 0, second.stderr
    assert [r["path"] for r in second.lines("uploaded")] == ["changed.bin"]
    before = objects(client, bucket)

    # big.bin (multipart) and small.txt (PutObject): killed after the object was completed, before
    # the state recorded it: the row is claimed, an upload id in flight, the file processing.
    for rel, upload_id in (("big.bin", "fake-completed-upload"), ("small.txt", None)):
        state_exec(
            watch,
            "UPDATE objects SET sha256=NULL, etag=NULL, size=NULL, upload_id=? WHERE key=?",
            upload_id,
            rel,
        )
        state_exec(watch, "UPDATE files SET status='processing', sha256=NULL WHERE path=?", rel)
    # changed.bin: killed after its new content was completed (If-Match the old ETag), before the
    # state recorded it: the state still knows the old content and its ETag. Start-up finds the
    # new one by HEAD and records it.
    state_exec(
        watch,
        "UPDATE objects SET sha256=?, etag=?, size=?, upload_id='fake-replacing-upload' WHERE key=?",
        *v1,
        "changed.bin",
    )
    state_exec(watch, "UPDATE files SET status='processing', sha256=? WHERE path=?", v1[0], "changed.bin")
    # mid.bin: killed after CreateMultipartUpload was recorded, before the upload finished.
    client.delete_object(Bucket=bucket, Key="mid.bin")
    mid = client.create_multipart_upload(Bucket=bucket, Key="mid.bin")["UploadId"]
    client.upload_part(Bucket=bucket, Key="mid.bin", UploadId=mid, PartNumber=1, Body=b"m" * (5 * MiB))
    state_exec(watch, "UPDATE objects SET sha256=NULL, etag=NULL, size=NULL, upload_id=? WHERE key=?", mid,
               "mid.bin")  # fmt: skip
    state_exec(watch, "UPDATE files SET status='processing', sha256=NULL WHERE path='mid.bin'")
    # t.parquet: killed between CreateMultipartUpload and the state recording the upload id.
    orphan = client.create_multipart_upload(Bucket=bucket, Key="t.parquet")["UploadId"]
    client.upload_part(Bucket=bucket, Key="t.parquet", UploadId=orphan, PartNumber=1, Body=b"x" * (5 * MiB))
    # Someone else's upload under the prefix: never ours to abort.
    foreign = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/theirs.bin")["UploadId"]
    client.upload_part(Bucket=bucket, Key="elsewhere/theirs.bin", UploadId=foreign, PartNumber=1, Body=b"y")

    run = run_once(seaweed, bucket, watch, *ARGS)
    assert run.returncode == 0, run.stderr

    assert run.lines("queued 4 file(s) left in flight by the last run"), run.stderr
    assert run.lines("aborted 2 incomplete multipart upload(s) of the last run"), run.stderr
    assert any(
        r["msg"].startswith(
            "1 incomplete multipart upload(s) under the prefix were not started by this state"
        )
        for r in run.logs
    ), run.stderr
    assert incomplete_uploads(client, bucket) == [("elsewhere/theirs.bin", foreign)]
    found = sorted(r["key"] for r in run.lines("already uploaded (found by HEAD)"))
    assert found == ["big.bin", "small.txt"], run.stderr
    assert sorted(r["path"] for r in run.lines("uploaded")) == ["big.bin", "mid.bin", "small.txt"]
    assert run.lines("1 object(s) held a version the last run completed but never recorded; state updated")
    assert [r["path"] for r in run.lines("unchanged content: already uploaded")] == ["changed.bin"]

    after = objects(client, bucket)
    for key in ("big.bin", "changed.bin", "small.txt", "t.parquet"):  # the very objects of the first run
        assert after[key]["ETag"] == before[key]["ETag"]
        assert after[key]["LastModified"] == before[key]["LastModified"], f"{key} was written again"
    client.abort_multipart_upload(Bucket=bucket, Key="elsewhere/theirs.bin", UploadId=foreign)
    check_final(client, bucket, tree, [run.logs])


def test_restart_after_a_file_in_flight_at_the_crash_was_deleted(
    seaweed: S3Server, tmp_path: Path, gen_data
) -> None:
    """Uploaded once, changed, killed while the new content was in flight, then deleted: the
    restart has nothing to upload for it and must not wait for it forever."""
    watch = tmp_path / "inbox"
    tree = Tree(watch, random.Random(3), gen_data)
    for i in range(10):
        tree.raw(f"gone{i}.bin", 1000 + i)
    tree.raw("stays.txt", 10)
    bucket = seaweed.new_bucket()
    client = seaweed.client()
    assert run_once(seaweed, bucket, watch, *ARGS).returncode == 0
    before = objects(client, bucket)
    original = (watch / "gone0.bin").read_bytes()
    for i in range(10):  # new content, claimed by the run that was killed; then deleted
        rel = f"gone{i}.bin"
        (watch / rel).write_bytes(b"new")
        st = os.stat(watch / rel)
        state_exec(
            watch, "UPDATE files SET status='processing', size=?, mtime_ns=? WHERE path=?",
            st.st_size, st.st_mtime_ns, rel,
        )  # fmt: skip
        (watch / rel).unlink()
    tree.raw("new.txt", 20)  # and a new file, to be uploaded all the same

    run = run_once(seaweed, bucket, watch, *ARGS, timeout=60)
    assert run.returncode == 0, run.stderr
    assert set(objects(client, bucket)) == {*before, "new.txt"}
    assert body(client, bucket, "new.txt") == (watch / "new.txt").read_bytes()
    for key in before:  # what was uploaded stays, and stays known
        assert objects(client, bucket)[key]["ETag"] == before[key]["ETag"]
    statuses = dict(state_rows(watch, "SELECT path, status FROM files"))
    assert statuses == {**{f"gone{i}.bin": "uploaded" for i in range(10)}, "stays.txt": "uploaded",
                        "new.txt": "uploaded"}  # fmt: skip
    # The content that is in S3 comes back: known, nothing is uploaded.
    (watch / "gone0.bin").write_bytes(original)
    again = run_once(seaweed, bucket, watch, *ARGS, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.lines("uploaded") == []
    assert [r["path"] for r in again.lines("unchanged content: already uploaded")] == ["gone0.bin"]


def test_restart_after_a_crash_that_left_a_newer_upload_unrecorded(
    seaweed: S3Server, tmp_path: Path, gen_data
) -> None:
    """v1 recorded; v2 completed in S3, killed before the state recorded it; the file went back
    to v1 while s3proc was down. The state's "v1 is in S3" is stale: the restart must notice."""
    watch = tmp_path / "inbox"
    tree = Tree(watch, random.Random(5), gen_data)
    tree.raw("back.bin", 7 * MiB)  # multipart: its upload id was recorded
    tree.raw("back.txt", 100)  # one PutObject: nothing recorded before it completed
    v1 = {rel: (watch / rel).read_bytes() for rel in tree.history}
    bucket = seaweed.new_bucket()
    client = seaweed.client()
    assert run_once(seaweed, bucket, watch, *ARGS).returncode == 0
    recorded = {k: r for k, *r in state_rows(watch, "SELECT key, sha256, etag, size FROM objects")}
    tree.raw("back.bin", 8 * MiB)
    tree.raw("back.txt", 200)
    second = run_once(seaweed, bucket, watch, *ARGS)
    assert second.returncode == 0, second.stderr
    assert {h["ContentLength"] for h in objects(client, bucket).values()} == {8 * MiB, 200}
    for rel, upload_id in (("back.bin", "fake-completed-upload"), ("back.txt", None)):
        sha, etag, size = recorded[rel]
        state_exec(
            watch, "UPDATE objects SET sha256=?, etag=?, size=?, upload_id=? WHERE key=?",
            sha, etag, size, upload_id, rel,
        )  # fmt: skip
        state_exec(watch, "UPDATE files SET status='processing', sha256=? WHERE path=?", sha, rel)
        tree.write(rel, v1[rel])  # back to the first content, while s3proc is down

    run = run_once(seaweed, bucket, watch, *ARGS)
    assert run.returncode == 0, run.stderr
    check_final(client, bucket, tree, [run.logs])


@pytest.mark.parametrize("how", ["automatic", "command", "after a failed start"])
def test_a_lost_state_database_is_rebuilt_from_s3_without_uploading_again(
    seaweed: S3Server, tmp_path: Path, gen_data, how: str
) -> None:
    watch = tmp_path / "inbox"
    tree = Tree(watch, random.Random(11), gen_data)
    tree.raw("big.bin", 12 * MiB)  # multipart: without the state it would be sent again in full
    tree.raw("small.txt", 1000)
    tree.csv("t.csv", 2_000, 5)
    bucket = seaweed.new_bucket()
    assert run_once(seaweed, bucket, watch, *ARGS).returncode == 0
    before = objects(seaweed.client(), bucket)
    shutil.rmtree(watch / ".s3proc")

    proxy = FaultProxy(seaweed.endpoint)  # counts what reaches the server
    via = S3Server("proxy", proxy.endpoint, seaweed.access_key, seaweed.secret_key)
    try:
        if how == "command":
            cmd = [*s3proc_args(via, bucket, watch)[:2], "--watch-dir", str(watch), "--bucket", bucket,
                   "--endpoint-url", via.endpoint]  # fmt: skip
            cmd[1] = "rebuild-state"
            done = subprocess.run(cmd, env=via.env(), capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and "3 object(s) recorded" in done.stdout, done.stderr
        if how == "after a failed start":
            # A start that failed after making the state (S3 gone during the rebuild) leaves it
            # empty: not a rebuilt one. (One that fails its checks makes none.)
            down = S3Server("down", "http://127.0.0.1:9", seaweed.access_key, seaweed.secret_key)
            assert run_once(down, bucket, watch, *ARGS).returncode == 2
            assert not (watch / ".s3proc").exists()
            SqliteState(watch / ".s3proc" / "state.db").close()
        run = run_once(via, bucket, watch, *ARGS)
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr
    if how != "command":
        assert run.lines("state rebuilt from S3: 3 object(s) recorded"), run.stderr
    unchanged = sorted(r["path"] for r in run.lines("unchanged content: already uploaded"))
    assert unchanged == ["big.bin", "small.txt", "t.csv"]
    writes = [(m, p) for m, p in proxy.requests if m in ("PUT", "POST") and ".s3proc-probe" not in p]
    assert writes == [], "nothing was uploaded again"
    assert objects(seaweed.client(), bucket) == before
