"""The life of one file at its edges, against a real S3 server: what a crash, a writer or
another writer's object leaves behind is cleaned up or left alone as the guarantees say.

Each test calls ``process`` (or runs ``s3proc run --once``) on a state set up as a crash, a
late write or a foreign object would leave it, then checks S3 and the state.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _util import make_archive, state_rows
from s3servers import S3Server, body, incomplete_uploads, objects, run_once

from s3proc import pipeline
from s3proc.config import RunConfig
from s3proc.errors import SchemaRestart
from s3proc.pipeline import Settings, process
from s3proc.state import SqliteState
from s3proc.uploader import META_SHA256, META_SOURCE, META_WRITER, Resume, Uploader

MiB = 1 << 20


class World:
    """A watched folder, its state and an uploader against a fresh bucket."""

    def __init__(self, server: S3Server, tmp_path: Path, **settings: Any):
        self.watch = tmp_path / "inbox"
        self.watch.mkdir()
        self.bucket = server.new_bucket()
        cfg = RunConfig(
            watch_dir=self.watch,
            bucket=self.bucket,
            endpoint_url=server.endpoint,
            quiet_period=0,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )
        self.settings = Settings(
            root=self.watch.resolve(), keys=cfg.check(), error_dir=cfg.error_folder.resolve(), **settings
        )
        self.state = SqliteState(cfg.state_location)
        self.uploader: Uploader = cfg.uploader(cfg.client())
        self.client = server.client()
        self.server = server

    def drop(self, rel: str, data: bytes) -> None:
        (self.watch / rel).write_bytes(data)
        st = os.stat(self.watch / rel)
        self.state.observe([(rel, st.st_size, st.st_mtime_ns)], 0)

    def claim(self, rel: str) -> Any:
        row = self.state.get(rel)
        assert row is not None
        claimed = self.state.claim(rel, row.size, row.mtime_ns)
        assert claimed is not None
        return claimed

    def process(self, rel: str) -> pipeline.Outcome:
        return process(self.claim(rel), self.settings, self.state, self.uploader)

    def start_upload(self, key: str, source: str, sha: str) -> str:
        """A multipart upload of ours, as a crash leaves one in flight (one part sent)."""
        meta = {META_WRITER: "s3proc", META_SOURCE: source, META_SHA256: sha}
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta)[
            "UploadId"
        ]
        self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * MiB
        )
        return str(upload_id)


@pytest.fixture
def world(moto: S3Server, tmp_path: Path) -> Iterator[World]:
    w = World(moto, tmp_path)
    yield w
    w.state.close()


def test_a_file_written_to_in_place_while_uploaded_is_not_published(world: World) -> None:
    """A writer rewrites the file in place while its parts go up: what was read is no one version
    of it (a torn object with the old file's SHA-256). Nothing is published, the upload is
    aborted and the file queued again; the next round ships the new content."""
    old, new = os.urandom(12 * MiB), os.urandom(12 * MiB)
    world.drop("f.bin", old)
    row = world.claim("f.bin")
    op = "UploadPart"

    def rewrite(**_: Any) -> None:
        if not done:
            done.append(1)
            with open(world.watch / "f.bin", "r+b") as f:
                f.write(new)
            os.utime(world.watch / "f.bin", ns=(10**18, 10**18))

    done: list[int] = []
    world.uploader.client.meta.events.register(f"before-call.s3.{op}", rewrite)
    assert process(row, world.settings, world.state, world.uploader).status == "requeued"
    assert done and objects(world.client, world.bucket) == {}
    assert incomplete_uploads(world.client, world.bucket) == []
    world.uploader.client.meta.events.unregister(f"before-call.s3.{op}", rewrite)
    st = os.stat(world.watch / "f.bin")
    world.state.observe([("f.bin", st.st_size, st.st_mtime_ns)], 0)
    assert world.process("f.bin").status == "uploaded"
    assert body(world.client, world.bucket, "f.bin") == new


def test_a_claimed_file_that_vanishes_is_forgotten_and_found_again_when_it_returns(world: World) -> None:
    world.drop("a.txt", b"first\n")
    row = world.claim("a.txt")
    (world.watch / "a.txt").unlink()
    assert process(row, world.settings, world.state, world.uploader).status == "gone"
    assert world.state.get("a.txt") is None, "a vanished file must not stay 'processing'"
    world.drop("a.txt", b"back again\n")
    assert [r.path for r in world.state.ready(1e12, 10)] == ["a.txt"]
    assert world.process("a.txt").status == "uploaded"
    assert body(world.client, world.bucket, "a.txt") == b"back again\n"


def test_a_file_rewritten_while_its_unchanged_content_is_hashed_is_queued_not_deleted(
    moto: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A touched file is hashed to see whether its content changed; a writer rewrites it
    meanwhile. The hash says "unchanged", but the new content must be uploaded, not deleted."""
    world = World(moto, tmp_path, after_upload="delete")
    try:
        world.drop("t.txt", b"old content\n")
        assert world.process("t.txt").status == "uploaded"
        (world.watch / "t.txt").write_bytes(b"old content\n")  # touched: the same content again
        world.drop("t.txt", b"old content\n")
        row = world.claim("t.txt")
        hash_first = pipeline.sha256_file

        def hash_then_rewrite(path: Path) -> str:
            sha = hash_first(path)
            path.write_bytes(b"new content, written while the old one was hashed\n")
            return sha

        monkeypatch.setattr(pipeline, "sha256_file", hash_then_rewrite)
        outcome = process(row, world.settings, world.state, world.uploader)
        assert outcome.status == "requeued"
        assert (world.watch / "t.txt").exists(), "the new content was deleted without being uploaded"
        again = world.state.get("t.txt")
        assert again is not None and again.status == "pending"
        assert again.size == len(b"new content, written while the old one was hashed\n")
        monkeypatch.undo()
        assert world.process("t.txt").status == "uploaded"
        assert body(world.client, world.bucket, "t.txt").startswith(b"new content")
    finally:
        world.state.close()


def test_a_file_that_fails_while_a_writer_still_adds_to_it_is_queued_not_moved(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer /proc cannot see (NFS, another host) paused past the quiet period: the JSON read
    so far is cut short, and the writer adds the rest as it fails. That was not the file."""
    world.drop("t.json", b'[{"a": 1}, {"a": 2}')
    real = pipeline._core.ParquetChunks

    def convert_then_write(*args: Any, **kwargs: Any) -> Any:
        try:
            return list(real(*args, **kwargs))
        except pipeline.ParseError:
            with open(world.watch / "t.json", "ab") as f:
                f.write(b', {"a": 3}]\n')
            raise

    monkeypatch.setattr(pipeline._core, "ParquetChunks", convert_then_write)
    assert world.process("t.json").status == "requeued"
    assert not list(world.settings.error_dir.rglob("*")), "nothing goes to the error folder"
    row = world.state.get("t.json")
    assert row is not None and (row.status, row.error) == ("pending", None)
    monkeypatch.undo()
    assert world.process("t.json").status == "uploaded"
    got = pq.read_table(pa.BufferReader(body(world.client, world.bucket, "t.parquet")))
    assert got.column("a").to_pylist() == [1, 2, 3]


def _link_in_place_of(folder: Path, target: Path) -> None:
    """``folder`` leaves the tree; a link to ``target`` takes its name."""
    folder.rename(folder.parent.parent / "moved-away")
    folder.symlink_to(target, target_is_directory=True)


def test_a_claimed_file_whose_folder_became_a_link_is_not_read_through_it(
    moto: S3Server, tmp_path: Path
) -> None:
    """Claimed, then its folder replaced by a link to a folder outside the watch dir that holds a
    file of the same name: that file is neither uploaded nor deleted; the row is forgotten."""
    world = World(moto, tmp_path, after_upload="delete")
    try:
        private = tmp_path / "private"
        private.mkdir()
        (private / "a.txt").write_text("outside the watch dir\n")
        (world.watch / "drop").mkdir()
        world.drop("drop/a.txt", b"harmless\n")
        row = world.claim("drop/a.txt")
        _link_in_place_of(world.watch / "drop", private)
        assert process(row, world.settings, world.state, world.uploader).status == "gone"
        assert incomplete_uploads(world.client, world.bucket) == []
        assert world.client.list_objects_v2(Bucket=world.bucket).get("KeyCount") == 0
        assert (private / "a.txt").read_text() == "outside the watch dir\n"
        assert world.state.get("drop/a.txt") is None
    finally:
        world.state.close()


def test_a_file_whose_folder_becomes_a_link_while_it_is_read_is_not_deleted_behind_it(
    moto: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is replaced while the file is hashed, by a link to a file of the same name,
    size and mtime: what was read is the file that was claimed, and the file behind the link is
    not taken for it (--after-upload delete deleted it)."""
    world = World(moto, tmp_path, after_upload="delete")
    try:
        private = tmp_path / "private"
        private.mkdir()
        (world.watch / "drop").mkdir()
        world.drop("drop/a.txt", b"harmless\n")
        st = (world.watch / "drop" / "a.txt").stat()
        (private / "a.txt").write_bytes(b"SECRET!!\n")  # the same size
        os.utime(private / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
        row = world.claim("drop/a.txt")
        hash_first = pipeline.sha256_file

        def hash_then_swap(path: Path) -> str:
            sha = hash_first(path)
            _link_in_place_of(world.watch / "drop", private)
            return sha

        monkeypatch.setattr(pipeline, "sha256_file", hash_then_swap)
        assert process(row, world.settings, world.state, world.uploader).status == "requeued"
        assert (private / "a.txt").read_bytes() == b"SECRET!!\n"
        assert body(world.client, world.bucket, "drop/a.txt") == b"harmless\n"
        assert [r.path for r in world.state.ready(1e12, 10)] == ["drop/a.txt"]
        monkeypatch.undo()
        assert world.process("drop/a.txt").status == "gone"
        assert (private / "a.txt").read_bytes() == b"SECRET!!\n"
    finally:
        world.state.close()


def test_a_note_that_cannot_be_written_keeps_the_reason_of_the_failure(world: World) -> None:
    world.drop("bad.csv", b"\x00\x01 binary \x00")
    (world.settings.error_dir / "bad.csv.error.json").mkdir(parents=True)  # in the note's way
    outcome = world.process("bad.csv")
    assert outcome.status == "failed" and outcome.error and "binary" in outcome.error, outcome
    row = world.state.get("bad.csv")
    assert row is not None and row.error == outcome.error
    assert (world.settings.error_dir / "bad.csv").is_file()


@pytest.mark.parametrize("first", ["a.csv", "a.csv.error.json"])
def test_a_failed_file_named_like_a_note_is_never_overwritten_by_one(world: World, first: str) -> None:
    """A failed ``a.csv.error.json`` and the note of a failed ``a.csv`` wanted one name in the
    error folder: the note was written over the file, or retry took the file for the note and
    deleted it. Notes alone end in ``.error.json`` there; both files come back whole."""
    inputs = {"a.csv": b"\x00\x01 binary \x00", "a.csv.error.json": b'{"precious": "user data", broken'}
    for rel in sorted(inputs, key=lambda r: r != first):
        world.drop(rel, inputs[rel])
        assert world.process(rel).status == "failed"
    errors = world.settings.error_dir
    kept = {p.name: p.read_bytes() for p in errors.iterdir()}
    files = {name: data for name, data in kept.items() if data in inputs.values()}
    assert sorted(files.values()) == sorted(inputs.values()), kept
    notes = {json.loads(kept[name + ".error.json"])["source"]: files[name] for name in files}
    assert notes == inputs and len(kept) == 4, kept
    assert pipeline.restore_failed(world.state, world.watch, errors) == (2, 0, 0, 0)
    assert {p.name: p.read_bytes() for p in world.watch.iterdir() if p.is_file()} == inputs
    assert not list(errors.iterdir())


def test_names_too_long_for_a_suffix_are_cut_to_fit_in_the_error_and_move_folders(
    moto: S3Server, tmp_path: Path
) -> None:
    """Names of up to 255 bytes take no suffix: ``<name>.error.json`` could not be written (a
    failed file without its note), and ``<name>.1`` made a move to a folder holding the name fail
    (the file stayed in the watch dir for good). Such names are cut, a hash of the whole kept."""
    done = tmp_path / "done"
    world = World(moto, tmp_path, after_upload=f"move:{done}")
    try:
        errors = world.settings.error_dir
        bad, bad_json = "L" * 251 + ".csv", "J" * 244 + ".error.json"  # 255 bytes each
        for n, rel in enumerate([bad, bad, bad_json]):
            world.drop(rel, b"\x00\x01 binary %d" % n)
            assert world.process(rel).status == "failed"
        files = {p.name: p.read_bytes() for p in errors.iterdir() if not p.name.endswith(".error.json")}
        notes = {p.name: json.loads(p.read_text())["source"] for p in errors.iterdir() if p.name not in files}
        assert files[bad] == b"\x00\x01 binary 1" and len(files) == 3 and len(notes) == 3, files
        assert sorted(notes.values()) == [bad_json, bad, bad], notes
        assert pipeline.restore_failed(world.state, world.watch, errors) == (2, 0, 0, 0)
        assert (world.watch / bad).read_bytes() == b"\x00\x01 binary 1"
        assert (world.watch / bad_json).read_bytes() == b"\x00\x01 binary 2"
        assert len(list(errors.iterdir())) == 2  # the earlier failure, aside, and its note

        name = "é" * 125 + ".txt"  # 254 bytes
        done.mkdir()
        (done / name).write_bytes(b"moved before\n")
        world.drop(name, b"the new one\n")
        assert world.process(name).status == "uploaded"
        assert not (world.watch / name).exists()
        moved = {p.name: p.read_bytes() for p in done.iterdir()}
        assert moved.pop(name) == b"moved before\n" and list(moved.values()) == [b"the new one\n"]
        assert all(len(os.fsencode(n)) <= 255 and n.endswith(".txt.1") for n in moved), moved
    finally:
        world.state.close()


def test_an_upload_kept_for_resuming_is_aborted_when_the_content_is_back_to_what_s3_holds(
    world: World,
) -> None:
    """A crash cut short the upload of a change; the file then went back to the content already
    in S3. The file is unchanged, and the kept upload must not stay behind."""
    data = b"the content in S3\n"
    world.drop("u.txt", data)
    assert world.process("u.txt").status == "uploaded"
    upload_id = world.start_upload("u.txt", "u.txt", "f" * 64)
    world.state.upload_started("u.txt", upload_id, "f" * 64, "kind")
    (world.watch / "u.txt").write_bytes(data)
    os.utime(world.watch / "u.txt", ns=(1, 1))  # touched: seen again
    world.drop("u.txt", data)
    assert world.process("u.txt").status == "unchanged"
    assert incomplete_uploads(world.client, world.bucket) == []
    assert [o.upload_id for o in world.state.objects_of("u.txt")] == [None]


def test_an_upload_kept_for_resuming_is_aborted_when_its_file_fails(world: World) -> None:
    """A crash cut short the upload of a change; the file's new content is bad input. The kept
    upload is aborted with the failure, not left until the next start."""
    world.drop("t.csv", b"a,b\n1,2\n")
    assert world.process("t.csv").status == "uploaded"
    upload_id = world.start_upload("t.parquet", "t.csv", "f" * 64)
    world.state.upload_started("t.parquet", upload_id, "f" * 64, "kind")
    world.drop("t.csv", b"\x00\x01 binary now \x00")
    assert world.process("t.csv").status == "failed"
    assert incomplete_uploads(world.client, world.bucket) == []
    assert [o.upload_id for o in world.state.objects_of("t.csv")] == [None]


def test_an_upload_kept_for_resuming_is_aborted_when_its_file_is_gone(moto: S3Server, tmp_path: Path) -> None:
    """A crash left a file processing with an upload in flight; the file is deleted while the
    service is down. At the next start the upload is aborted, not left until the one after."""
    world = World(moto, tmp_path)
    try:
        world.drop("big.bin", os.urandom(1000))
        world.claim("big.bin")
        world.state.claim_key("big.bin", "", "big.bin", "big.bin~x")
        upload_id = world.start_upload("big.bin", "big.bin", "e" * 64)
        world.state.upload_started("big.bin", upload_id, "e" * 64, "kind")
    finally:
        world.state.close()
    (world.watch / "big.bin").unlink()
    run = run_once(moto, world.bucket, world.watch)
    assert run.returncode == 0, run.stderr
    assert incomplete_uploads(world.client, world.bucket) == []
    assert state_rows(world.watch, "SELECT path FROM files") == []


def test_a_restart_before_the_first_parts_aborts_the_upload_it_was_to_resume(world: World) -> None:
    """The kept upload cannot be resumed when the conversion restarts (a widened column) before
    the upload goes on: it is aborted, and the new one completes."""
    upload_id = world.start_upload("r.bin", "r.bin", "d" * 64)
    data = [os.urandom(5 * MiB), b"tail"]

    class Restarting:
        """The converter's iterator: a restart voids what came before, then the new file."""

        def __init__(self) -> None:
            self.items: list[bytes | Exception] = [data[0], SchemaRestart("a column widened"), *data]

        def __iter__(self) -> Restarting:
            return self

        def __next__(self) -> bytes:
            if not self.items:
                raise StopIteration
            item = self.items.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

    world.uploader.upload(
        "r.bin", Restarting, source="r.bin", sha256="d" * 64, metadata=dict, if_match=None,
        resume=Resume(upload_id, "d" * 64, world.uploader.upload_kind),
    )  # fmt: skip
    assert incomplete_uploads(world.client, world.bucket) == []
    assert body(world.client, world.bucket, "r.bin") == b"".join(data)


@pytest.mark.parametrize("parts", [1, 2])
def test_a_damaged_object_of_this_content_found_behind_a_412_is_replaced(world: World, parts: int) -> None:
    """A server that does not verify bodies (moto) stored a damaged one under s3proc's metadata,
    and a crash came before s3proc replaced it. The next upload's 412 finds this source and
    content in the metadata, but the ETag is not what is sent now: it is replaced, not accepted."""
    data = [os.urandom(5 * MiB) for _ in range(parts - 1)] + [b"the last part"]
    whole = b"".join(data)
    sha = hashlib.sha256(whole).hexdigest()
    damaged = whole[:-1] + bytes([whole[-1] ^ 1])
    meta = {META_WRITER: "s3proc", META_SOURCE: "d.bin", META_SHA256: sha}
    world.client.put_object(Bucket=world.bucket, Key="d.bin", Body=damaged, Metadata=meta)
    up = world.uploader.upload(
        "d.bin", lambda: iter(data), source="d.bin", sha256=sha, metadata=dict, if_match=None
    )
    assert up.parts == parts
    assert body(world.client, world.bucket, "d.bin") == whole


def test_a_failed_archive_never_deletes_an_object_another_writer_put_on_its_keys(
    moto: S3Server, tmp_path: Path
) -> None:
    """An entry's key holds someone else's object: the archive fails (it is never overwritten)
    and withdraws what it uploaded, but the foreign object stays as it was."""
    watch = tmp_path / "inbox"
    watch.mkdir()
    bucket = moto.new_bucket()
    client = moto.client()
    client.put_object(Bucket=bucket, Key="pack.zip/b.txt", Body=b"not s3proc's")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "entry a\n")
        z.writestr("b.txt", "entry b\n")
        z.writestr("c.txt", "entry c\n")
    (watch / "pack.zip").write_bytes(buf.getvalue())
    run = run_once(moto, bucket, watch)
    assert run.returncode == 1, run.stderr
    assert body(client, bucket, "pack.zip/b.txt") == b"not s3proc's"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert keys == {"pack.zip/b.txt"}, "the archive's own objects are withdrawn"


def _other_filesystem(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no folder on another filesystem than the test's (/dev/shm)")
    return shm


def test_a_move_across_filesystems_killed_part_way_leaves_no_part_under_the_final_name(
    tmp_path: Path,
) -> None:
    """The error folder, the move folder or (for ``s3proc retry``) the watch dir may be on
    another filesystem: the file is copied. A kill -9 during the copy must not leave a part of
    it under its final name, where a consumer (or the next run, shipping it) takes it for the
    whole file; the next start removes the part left under a hidden name."""
    size = 256 * MiB
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for i in range(size // MiB):
            f.write(bytes([i % 251]) * MiB)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    shm = _other_filesystem(tmp_path)
    done = shm / f"s3proc-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, pathlib; from s3proc import pipeline as p;"
                " p._move(*map(pathlib.Path, sys.argv[1:]))",
                str(src),
                str(done / "sub" / "big.bin"),
            ],
        )
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            try:
                seen = {p.name: p.stat().st_size for p in (done / "sub").iterdir()}
            except OSError:
                continue
            if any(0 < n < size for n in seen.values()):
                child.send_signal(signal.SIGKILL)
                break
        child.wait()
        assert child.returncode == -signal.SIGKILL, f"the copy was not caught part-way ({seen})"
        final = done / "sub" / "big.bin"
        assert not final.exists() or final.stat().st_size == size, "a part of the file under its own name"
        assert hashlib.sha256(src.read_bytes()).hexdigest() == sha, "the source is whole where it was"
        assert pipeline.undo_cut_moves(done) == 1
        assert [p.name for p in (done / "sub").iterdir()] in ([], ["big.bin"])
        # Moved again at the next start: whole under its name, the source gone.
        moved = pipeline._move(src, final)
        assert hashlib.sha256(moved.read_bytes()).hexdigest() == sha and not src.exists()
    finally:
        subprocess.run(["rm", "-rf", str(done)], check=False)


def test_retry_moves_each_file_back_before_queueing_it(world: World) -> None:
    """``s3proc retry`` stopped part-way (a kill, or a file it cannot move back) leaves the files
    not moved back failed in the state, where the next retry finds them (queued while still in
    the error folder, they were forgotten as deleted by the next run)."""
    for rel in ("a.csv", "sub/b.csv"):
        (world.watch / rel).parent.mkdir(exist_ok=True)
        world.drop(rel, b"\x00\x01 binary \x00")
        assert world.process(rel).status == "failed"
    errors = world.settings.error_dir
    assert (errors / "a.csv").exists() and (errors / "sub" / "b.csv").exists()
    (world.watch / "sub").rmdir()
    (world.watch / "sub").write_text("a file where b.csv's folder was\n")  # b.csv cannot go back
    assert pipeline.restore_failed(world.state, world.watch, errors) == (1, 0, 0, 1)
    a, b = world.state.get("a.csv"), world.state.get("sub/b.csv")
    assert a is not None and a.status == "pending" and (world.watch / "a.csv").exists()
    assert b is not None and b.status == "failed" and (errors / "sub" / "b.csv").exists()
    (world.watch / "sub").unlink()
    assert pipeline.restore_failed(world.state, world.watch, errors) == (1, 0, 0, 0)
    b = world.state.get("sub/b.csv")
    assert b is not None and b.status == "pending" and (world.watch / "sub" / "b.csv").exists()
    assert not (errors / "sub" / "b.csv").exists() and not (errors / "sub" / "b.csv.error.json").exists()


@pytest.mark.parametrize("mode", ["delete", "move"])
def test_after_upload_leaves_a_new_version_put_in_place_after_the_last_check(
    moto: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A producer renames a new version into place just after the file was last checked for
    changes, before it is deleted or moved: the new version is neither, and is uploaded next."""
    done = tmp_path / "done"
    world = World(moto, tmp_path, after_upload="delete" if mode == "delete" else f"move:{done}")
    try:
        world.drop("latest.txt", b"version 1\n")
        real_finish = pipeline._finish

        def finish_then_replace(*args: Any) -> bool:
            ok = real_finish(*args)
            (world.watch / "latest.txt.part").write_bytes(b"version 2 -- must reach S3\n")
            os.replace(world.watch / "latest.txt.part", world.watch / "latest.txt")
            return ok

        monkeypatch.setattr(pipeline, "_finish", finish_then_replace)
        assert world.process("latest.txt").status == "uploaded"
        monkeypatch.undo()
        assert (world.watch / "latest.txt").read_bytes() == b"version 2 -- must reach S3\n"
        assert [p.name for p in world.watch.iterdir() if p.name != ".s3proc"] == ["latest.txt"]
        if mode == "move":
            assert not (done / "latest.txt").exists()
        st = os.stat(world.watch / "latest.txt")
        world.state.observe([("latest.txt", st.st_size, st.st_mtime_ns)], 0)
        assert world.process("latest.txt").status == "uploaded"
        assert body(world.client, world.bucket, "latest.txt") == b"version 2 -- must reach S3\n"
        assert not (world.watch / "latest.txt").exists()
        if mode == "move":
            assert (done / "latest.txt").read_bytes() == b"version 2 -- must reach S3\n"
    finally:
        world.state.close()


def test_a_file_taken_aside_by_a_cut_after_upload_is_put_back_at_the_next_start(tmp_path: Path) -> None:
    """A kill -9 while the file is taken aside to be deleted or moved: the next start puts it
    back (a scan then finds it as recorded, and the action is done again)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".s3proc-aside.f.txt").write_text("x")
    (tmp_path / "sub" / ".s3proc-partial-0123").write_text("half")
    assert pipeline.undo_cut_moves(tmp_path) == 2
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.txt"]


def test_a_stop_while_a_failed_archive_withdraws_its_objects_leaves_it_for_the_next_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grace period ends while a failed archive withdraws its objects: the archive is left
    for the next start (not marked failed with part of its objects still in S3), which redoes
    it: it fails again, withdraws everything and goes to the error folder."""

    world.drop("pack.zip", make_archive("pack.zip", {"a.txt": b"a1\n", "b.txt": b"b1\n", "c.txt": b"c1\n"}))
    assert world.process("pack.zip").status == "uploaded"
    world.drop(
        "pack.zip",
        make_archive("pack.zip", {"a.txt": b"a2\n", "b.txt": b"b2\n", "z.csv": b"\x00\x01 binary \x00"}),
    )
    real_remove = pipeline._remove_ours
    removed: list[str] = []

    def remove_then_stop(o: Any, state: Any, uploader: Uploader) -> bool:
        if removed:
            uploader.stop.set()  # the grace period is over after the first delete
        removed.append(o.key)
        return real_remove(o, state, uploader)

    monkeypatch.setattr(pipeline, "_remove_ours", remove_then_stop)
    assert world.process("pack.zip").status == "requeued"
    monkeypatch.undo()
    row = world.state.get("pack.zip")
    assert row is not None and row.status == "processing", "left for the next start"
    assert (world.watch / "pack.zip").exists() and not (world.settings.error_dir / "pack.zip").exists()

    world.uploader.stop.clear()  # the next start
    assert [r.path for r in world.state.recover()] == ["pack.zip"]
    assert world.process("pack.zip").status == "failed"
    assert world.client.list_objects_v2(Bucket=world.bucket).get("Contents", []) == []
    assert (world.settings.error_dir / "pack.zip").exists() and not (world.watch / "pack.zip").exists()


class _Crash(BaseException):
    """A kill -9, as far as the state and S3 can tell."""


def test_an_archive_cut_short_by_a_crash_then_deleted_withdraws_its_mix_of_versions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 = {a, b} is uploaded; v2 = {a, c} replaces a and the process dies; the archive is then
    deleted. The next start finds it gone: a (v2) and b (v1) are a mix that neither version was,
    and are withdrawn."""

    world.drop("pack.zip", make_archive("pack.zip", {"a.txt": b"a1\n", "b.txt": b"b1\n"}))
    assert world.process("pack.zip").status == "uploaded"
    world.drop("pack.zip", make_archive("pack.zip", {"a.txt": b"a2\n", "c.txt": b"c2\n"}))
    real_ship = pipeline._ship

    def ship_then_die(r: Any, obj: Any, *args: Any) -> Any:
        if r.entry != "a.txt":
            raise _Crash
        return real_ship(r, obj, *args)

    monkeypatch.setattr(pipeline, "_ship", ship_then_die)
    with pytest.raises(_Crash):
        world.process("pack.zip")
    monkeypatch.undo()
    assert body(world.client, world.bucket, "pack.zip/a.txt") == b"a2\n"
    assert body(world.client, world.bucket, "pack.zip/b.txt") == b"b1\n"

    (world.watch / "pack.zip").unlink()
    world.state.close()
    run = run_once(world.server, world.bucket, world.watch)  # the next start
    assert run.returncode == 0, run.stderr
    assert world.client.list_objects_v2(Bucket=world.bucket).get("Contents", []) == []
    assert state_rows(world.watch, "SELECT key FROM objects") == []


def test_a_finished_archive_deleted_before_it_is_processed_again_keeps_its_objects(world: World) -> None:
    """Only a mix is withdrawn: the objects of a whole, finished version stay."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "a1\n")
    world.drop("pack.zip", buf.getvalue())
    assert world.process("pack.zip").status == "uploaded"
    os.utime(world.watch / "pack.zip", ns=(1, 1))
    world.state.observe([("pack.zip", len(buf.getvalue()), 1)], 0)
    row = world.claim("pack.zip")
    (world.watch / "pack.zip").unlink()
    assert process(row, world.settings, world.state, world.uploader).status == "gone"
    assert body(world.client, world.bucket, "pack.zip/a.txt") == b"a1\n"
