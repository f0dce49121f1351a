"""The uploader against real servers: integrity, conditional writes, restarts, retries.

Corruption and conditional-write tests run against SeaweedFS, which verifies Content-MD5 and
checksums and honours If-None-Match as AWS does; a test against moto (which stores whatever it
gets) shows that s3proc's own ETag check catches what such a server lets through.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import botocore.exceptions
import pytest
from s3servers import S3Server, body, incomplete_uploads

from s3proc import uploader as up
from s3proc.errors import SchemaRestart
from s3proc.uploader import Cancelled, KeyTaken, Resume, Uploader, make_client, part_groups, unavailable

MiB = 1 << 20


class Tampering:
    """A boto3 client that lets ``hook(op, kwargs)`` change or fail a request first."""

    def __init__(self, client: Any, hook: Callable[[str, dict[str, Any]], None]):
        self._client, self._hook = client, hook
        self.calls: list[str] = []

    def __getattr__(self, op: str) -> Any:
        fn = getattr(self._client, op)
        if not callable(fn):
            return fn

        def call(**kwargs: Any) -> Any:
            self.calls.append(op)
            self._hook(op, kwargs)
            return fn(**kwargs)

        return call


def client_for(server: S3Server, checksum: str = "crc32") -> Any:
    return make_client(
        endpoint_url=server.endpoint,
        region="us-east-1",
        compat=True,
        checksum_name=checksum,
        concurrency=2,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )


def uploader_for(client: Any, bucket: str, **kw: Any) -> Uploader:
    kw.setdefault("backoff", 0.01)
    return Uploader(client, bucket, **kw)


def chunks_of(*parts: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter(parts)


def upload(u: Uploader, key: str, stream: Callable[[], Iterator[bytes]], sha: str = "0" * 64, **kw: Any):
    kw.setdefault("if_match", None)
    return u.upload(key, stream, source=kw.pop("source", key), sha256=sha, metadata=lambda: {}, **kw)


def test_part_sizes_grow_so_10000_parts_are_never_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "PARTS_PER_STEP", 2)
    parts = list(part_groups(iter([b"x"] * 15)))
    assert [len(p) for p in parts] == [1, 1, 2, 2, 4, 4, 1]
    # At the real step, 10,000 parts of 8 MiB chunks reach past 5 TiB (S3's object limit).
    total = sum(8 * MiB * (1 << (n // 1000)) for n in range(10_000))
    assert total > 5 * (1 << 40)


def test_a_part_never_grows_past_the_largest_part_s3_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    # As with --part-size 4 GiB from part 1,001 on: two chunks would be 8 GiB, S3 takes 5.
    assert up.MAX_PART == 5 << 30 and up.part_groups.__defaults__ == (up.MAX_PART,)
    monkeypatch.setattr(up, "PARTS_PER_STEP", 2)
    parts = [len(p) for p in part_groups(iter([b"x" * 3] * 20), max_part=10)]
    assert parts == [3, 3, 6, 6, 9, 9, 9, 9, 6]  # 4 and 8 chunks are 12 and 24 bytes: 3 fit
    # Chunks of other sizes (Parquet chunks are at least the chunk size): a part ends before a
    # chunk that does not fit (3 + 3 + 5 > 10); a chunk over the maximum is a part of its own.
    monkeypatch.setattr(up, "PARTS_PER_STEP", 1)
    sizes = [1, 2, 2, 3, 3, 5, 1, 12]
    parts = [len(p) for p in part_groups(iter([b"y" * n for n in sizes]), max_part=10)]
    assert parts == [1, 4, 6, 6, 12]


def _extra_refs(items: list[bytes], n: int) -> list[int]:
    """References to ``items[:n]`` beyond the list's own, calibrated on an object only the list
    holds (bytes take no weak references)."""
    control = [*items[:n], bytes(1)]  # the last one is referenced by this list alone
    counts = [sys.getrefcount(control[i]) for i in range(n + 1)]
    return [c - counts[-1] - 1 for c in counts[:-1]]  # -1: `items` holds each of them too


def test_parts_sent_are_not_kept_in_memory(moto: S3Server) -> None:
    # Parts 1 and 2 were held (by the uploader's names for them and by the chain of parts) until
    # the whole upload ended: two parts more in memory per large file in flight.
    bucket = moto.new_bucket()
    u = uploader_for(client_for(moto), bucket, part_concurrency=1)
    mine: list[bytes] = []
    held: list[int] = []

    def stream() -> Iterator[bytes]:
        for n in range(8):
            if n == 7:  # parts 1..5 are sent and settled by now (one part in flight at a time)
                held.extend(_extra_refs(mine, 5))
            chunk = bytes([n]) * (5 * MiB)
            mine.append(chunk)
            yield chunk
            del chunk
        yield b"tail"

    u.upload("k", stream, source="k", sha256="0" * 64, metadata=lambda: {}, if_match=None, inline=True)
    assert held == [0] * 5, "parts already uploaded are still referenced by the uploader"


def test_a_joined_part_is_the_only_copy_of_its_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "PARTS_PER_STEP", 2)  # parts 3 and 4 join two chunks (as parts 1,001+)
    chunks = [bytes([n]) * (3 * MiB) for n in range(6)]
    groups = part_groups(iter(chunks))
    first, second, third = next(groups), next(groups), next(groups)
    assert third == chunks[2] + chunks[3]
    assert _extra_refs(chunks, 4) == [1, 1, 0, 0], "part_groups holds the chunks of the part it handed out"
    del first, second
    assert _extra_refs(chunks, 2) == [0, 0]


def test_a_long_source_path_is_cut_to_keep_the_metadata_within_2_kb(moto: S3Server) -> None:
    # S3 refuses more than 2 KB of user metadata (MetadataTooLarge); percent-encoded, a path
    # of 700 bytes of non-ASCII characters is 2,100.
    bucket = moto.new_bucket()
    u = uploader_for(client_for(moto), bucket)
    long = "données/" + "é" * 200 + "/" + "数据" * 60 + ".csv"
    short = "données/orders 2024.csv"
    assert len(quote(long, safe="/")) > 2048
    sha = hashlib.sha256(b"x").hexdigest()

    def put(key: str, source: str) -> up.Uploaded:
        more = {up.META_FORMAT: "parquet", up.META_ROWS: "1234567"}
        return u.upload(key, chunks_of(b"x"), source=source, sha256=sha, metadata=lambda: more, if_match=None)

    put("long", long)
    put("short", short)
    c = moto.client()
    meta = c.head_object(Bucket=bucket, Key="long")["Metadata"]
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    assert size <= 2048
    cut = unquote(meta[up.META_SOURCE])
    assert long.startswith(cut) and quote(cut, safe="/") == meta[up.META_SOURCE]  # whole characters
    assert size + len(quote(long[len(cut)])) > 2048, "cut as far as it fits, no further"
    assert meta[up.META_SOURCE_CUT] == hashlib.sha256(long.encode()).hexdigest()
    meta = c.head_object(Bucket=bucket, Key="short")["Metadata"]
    assert meta[up.META_SOURCE] == quote(short, safe="/") and up.META_SOURCE_CUT not in meta
    # s3proc still tells its object of this source (by the SHA-256 of the path) from others.
    assert u.stored_version("long", long) is not None
    assert u.stored_version("long", long[:-1]) is None
    assert put("long", long).resumed  # found by HEAD after a 412: not an object of another source
    with pytest.raises(KeyTaken):
        put("long", long + "x")
    # A state rebuild cannot know the path of a cut one: it records only the other.
    assert [o[:2] for o in u.ours("")] == [("short", short)]


CREDENTIAL_PROCESS = """\
import datetime as dt, json, os, sys
if os.path.exists(sys.argv[1]):
    sys.exit("the credential source is down for a moment")
expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)  # refreshed at every request
print(json.dumps({"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing",
                  "SessionToken": "t", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}))
"""


def test_credentials_that_cannot_be_had_for_a_moment_mean_s3_is_unavailable(
    moto: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They were taken for the file's fault: the file went to the error folder.
    bucket = moto.new_bucket()
    down = tmp_path / "down"
    (tmp_path / "creds.py").write_text(CREDENTIAL_PROCESS)
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {tmp_path / 'creds.py'} {down}\n")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = make_client(
        endpoint_url=moto.endpoint, region="us-east-1", compat=True, checksum_name="crc32", concurrency=2
    )
    u = uploader_for(client, bucket)
    upload(u, "before", chunks_of(b"x"))
    down.touch()
    with pytest.raises(botocore.exceptions.CredentialRetrievalError) as failed:
        upload(u, "during", chunks_of(b"x"))
    assert unavailable(failed.value)
    down.unlink()
    assert upload(u, "after", chunks_of(b"x")).parts == 1
    e = botocore.exceptions
    for error in [
        e.NoCredentialsError(),
        e.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        e.TokenRetrievalError(provider="sso", error_msg="timed out"),
        e.SSOTokenLoadError(error_msg="no token"),
        e.UnauthorizedSSOTokenError(),
        e.MetadataRetrievalError(error_msg="IMDS timed out"),
    ]:
        assert unavailable(error), error
    assert not unavailable(e.ParamValidationError(report="bad"))


@pytest.mark.parametrize("checksum", ["crc32", "sha256", "none"])
def test_single_put_and_multipart_round_trip(seaweed: S3Server, checksum: str) -> None:
    bucket = seaweed.new_bucket()
    u = uploader_for(client_for(seaweed, checksum), bucket, checksum_name=checksum)
    small = upload(u, "small.bin", chunks_of(b"hello"))
    assert small.parts == 1
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(123)]
    big = upload(u, "big.bin", chunks_of(*parts), sha="ab" * 32)
    assert big.parts == 3 and big.size == 10 * MiB + 123
    c = seaweed.client()
    assert body(c, bucket, "small.bin") == b"hello"
    assert body(c, bucket, "big.bin") == b"".join(parts)
    head = c.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["Metadata"]["s3proc-source-sha256"] == "ab" * 32
    assert head["Metadata"]["s3proc-writer"] == "s3proc"
    if checksum != "none":
        assert head.get(f"Checksum{checksum.upper()}", "").endswith("-3")
    assert incomplete_uploads(c, bucket) == []


def test_bodies_are_sent_unsigned_under_signed_content_md5_and_checksum(seaweed: S3Server) -> None:
    # No SHA-256 of each body for the signature (botocore signs payloads over plain HTTP by
    # default): the signed Content-MD5 and checksum headers protect it, and the server accepts it.
    # Only a large body waits for 100 Continue.
    bucket = seaweed.new_bucket()
    client = client_for(seaweed)
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        if request.body:
            sent.append(
                {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            )

    client.meta.events.register("before-send.s3", capture)
    u = uploader_for(client, bucket)
    upload(u, "one", chunks_of(b"hello"))
    upload(u, "parts", chunks_of(os.urandom(5 * MiB), b"tail"))
    bodies = [h for h in sent if "content-md5" in h]
    assert len(bodies) == 3, sent  # PutObject, two UploadParts
    for h in bodies:
        assert h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        signed = h["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert {"content-md5", "x-amz-checksum-crc32"} <= set(signed)
        large = int(h["content-length"]) >= up.EXPECT_CONTINUE_BYTES
        assert ("expect" in h) == large, h
    assert body(seaweed.client(), bucket, "parts")[-4:] == b"tail"


def _corrupt_once(ops: tuple[str, ...]) -> Callable[[str, dict[str, Any]], None]:
    done: list[str] = []

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op in ops and op not in done and len(kw.get("Body", b"")) > 0:
            done.append(op)
            data = bytearray(kw["Body"])
            data[len(data) // 2] ^= 0xFF  # one flipped byte on the wire, headers unchanged
            kw["Body"] = bytes(data)

    return hook


@pytest.mark.parametrize("op", ["put_object", "upload_part"])
def test_seaweedfs_rejects_a_corrupted_body_and_the_request_is_retried(seaweed: S3Server, op: str) -> None:
    bucket = seaweed.new_bucket()
    client = Tampering(client_for(seaweed), _corrupt_once((op,)))
    u = uploader_for(client, bucket)
    data = [os.urandom(5 * MiB), os.urandom(MiB)] if op == "upload_part" else [os.urandom(MiB)]
    got = upload(u, "k", chunks_of(*data))
    assert client.calls.count(op) == len(data) + 1, "exactly the corrupted request was sent again"
    assert body(seaweed.client(), bucket, "k") == b"".join(data)
    assert got.parts == len(data)


def test_seaweedfs_rejects_corruption_even_without_an_additional_checksum(seaweed: S3Server) -> None:
    # Content-MD5 alone still protects the body.
    bucket = seaweed.new_bucket()
    client = Tampering(client_for(seaweed, "none"), _corrupt_once(("put_object",)))
    u = uploader_for(client, bucket, checksum_name="none")
    upload(u, "k", chunks_of(b"payload" * 1000))
    assert client.calls.count("put_object") == 2
    assert body(seaweed.client(), bucket, "k") == b"payload" * 1000


def test_s3procs_etag_check_catches_what_moto_lets_through(moto: S3Server) -> None:
    bucket = moto.new_bucket()
    raw = moto.client()

    # moto verifies neither Content-MD5 nor checksums: it stores the flipped byte and returns its MD5.
    def hook(op: str, kw: dict[str, Any]) -> None:
        if op == "upload_part" and kw["PartNumber"] == 2 and not seen:
            seen.append(1)
            kw["Body"] = kw["Body"][:-1] + bytes([kw["Body"][-1] ^ 1])

    seen: list[int] = []
    client = Tampering(client_for(moto), hook)
    u = uploader_for(client, bucket)
    data = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    upload(u, "k", chunks_of(*data))
    assert client.calls.count("upload_part") == 4, "part 2 was sent again after its ETag did not match"
    assert body(raw, bucket, "k") == b"".join(data)


def test_throttling_and_5xx_are_retried_then_give_up(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    failures = {"n": 0}

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op == "upload_part" and failures["n"] < failures.get("limit", 0):
            failures["n"] += 1
            code = "SlowDown" if failures["n"] % 2 else "InternalError"
            raise botocore.exceptions.ClientError(
                {
                    "Error": {"Code": code, "Message": "try later"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "UploadPart",
            )

    failures["limit"] = 3
    client = Tampering(client_for(seaweed), hook)
    u = uploader_for(client, bucket, retries=3)
    data = [os.urandom(5 * MiB), b"end"]
    upload(u, "ok", chunks_of(*data))
    assert body(seaweed.client(), bucket, "ok") == b"".join(data)
    assert client.calls.count("upload_part") == 5  # 3 refused + 2 accepted: only the failed part again

    failures.update(n=0, limit=100)
    with pytest.raises(botocore.exceptions.ClientError):
        upload(u, "never", chunks_of(*data))
    assert incomplete_uploads(seaweed.client(), bucket) == [], "a failed upload is aborted"


def test_a_schema_restart_aborts_the_upload_and_starts_again(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    old = [os.urandom(5 * MiB), os.urandom(5 * MiB)]
    new = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"last"]

    def stream() -> Iterator[bytes]:
        yield from old
        raise SchemaRestart("column x widened to string")

    class Restarting:
        def __init__(self) -> None:
            self.it = stream()
            self.restarted = False

        def __iter__(self) -> Restarting:
            return self

        def __next__(self) -> bytes:
            if self.restarted:
                return next(self.it)
            try:
                return next(self.it)
            except SchemaRestart:
                self.restarted, self.it = True, iter(new)
                raise

    created: list[str] = []
    aborted: list[int] = []
    u = uploader_for(client_for(seaweed), bucket)
    got = upload(u, "t.parquet", Restarting, on_created=created.append, on_aborted=lambda: aborted.append(1))
    assert len(created) == 2 and aborted == [1]
    assert got.parts == 3
    assert body(seaweed.client(), bucket, "t.parquet") == b"".join(new)
    assert incomplete_uploads(seaweed.client(), bucket) == []


def test_conditional_writes(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    c = seaweed.client()
    u = uploader_for(client_for(seaweed), bucket)
    sha1, sha2 = hashlib.sha256(b"1").hexdigest(), hashlib.sha256(b"2").hexdigest()

    # Someone else's object at the key: never overwritten.
    c.put_object(Bucket=bucket, Key="theirs", Body=b"not ours")
    with pytest.raises(KeyTaken):
        upload(u, "theirs", chunks_of(b"mine"), sha=sha1, source="a.txt")
    assert body(c, bucket, "theirs") == b"not ours"

    # Ours, same content (a crash after completing): found by HEAD, nothing written.
    first = upload(u, "a.txt", chunks_of(b"v1"), sha=sha1, source="a.txt")
    again = upload(u, "a.txt", chunks_of(b"v1"), sha=sha1, source="a.txt")
    assert again.resumed and again.etag == first.etag

    # Ours, an older version the state does not know about: replaced (If-Match on its ETag).
    newer = upload(u, "a.txt", chunks_of(b"v2"), sha=sha2, source="a.txt")
    assert body(c, bucket, "a.txt") == b"v2" and newer.etag != first.etag

    # A stale If-Match (someone changed the object since) is resolved the same way.
    latest = upload(u, "a.txt", chunks_of(b"v1"), sha=sha1, source="a.txt", if_match=first.etag)
    assert body(c, bucket, "a.txt") == b"v1" and not latest.resumed

    # Multipart with If-None-Match on an existing key: refused at complete, resolved, no leftovers.
    parts = [os.urandom(5 * MiB), b"x"]
    upload(u, "m.bin", chunks_of(*parts), sha=sha1, source="m.bin")
    redo = upload(u, "m.bin", chunks_of(*parts), sha=sha1, source="m.bin")
    assert redo.resumed
    assert incomplete_uploads(c, bucket) == []


def test_an_object_another_writer_puts_there_right_after_the_upload_is_left_alone(seaweed: S3Server) -> None:
    """The HEAD after CompleteMultipartUpload finds another writer's object (written between the
    two): the file fails as on a key taken before; that object is not deleted and replaced."""
    bucket = seaweed.new_bucket()
    c = seaweed.client()

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op == "head_object" and not seen:
            seen.append(1)
            c.put_object(Bucket=bucket, Key="m.bin", Body=b"theirs")

    seen: list[int] = []
    client = Tampering(client_for(seaweed), hook)
    u = uploader_for(client, bucket)
    with pytest.raises(KeyTaken, match="another writer"):
        upload(u, "m.bin", chunks_of(os.urandom(5 * MiB), b"x"), source="m.bin")
    assert seen and body(c, bucket, "m.bin") == b"theirs"
    assert "delete_object" not in client.calls


@pytest.mark.parametrize("then", ["crc32", "sha256", "none"])
def test_an_upload_of_an_earlier_run_is_resumed_only_when_created_as_now(
    seaweed: S3Server, then: str
) -> None:
    """A crash left a multipart upload created with ``--checksum crc32``, one part sent. The
    next run resumes it only with the same settings: another checksum (SeaweedFS refuses parts
    and completes that do not match the upload's algorithm; with none, the object would lack
    the checksum) starts a new upload and aborts the old one."""
    bucket = seaweed.new_bucket()
    raw = seaweed.client()
    data = [os.urandom(5 * MiB), b"tail"]
    sha = hashlib.sha256(b"".join(data)).hexdigest()
    earlier = uploader_for(client_for(seaweed, "crc32"), bucket)
    meta = {up.META_WRITER: "s3proc", up.META_SOURCE: "r.bin", up.META_SHA256: sha}
    kw = {"Bucket": bucket, "Key": "r.bin", "ChecksumAlgorithm": "CRC32"}
    upload_id = raw.create_multipart_upload(**kw, Metadata=meta)["UploadId"]
    raw.upload_part(**kw, UploadId=upload_id, PartNumber=1, Body=data[0])
    client = Tampering(client_for(seaweed, then), lambda op, kw: None)
    now = uploader_for(client, bucket, checksum_name=then)
    resume = Resume(upload_id, sha, earlier.upload_kind)
    upload(now, "r.bin", chunks_of(*data), sha=sha, source="r.bin", resume=resume)
    assert body(raw, bucket, "r.bin") == b"".join(data)
    assert incomplete_uploads(raw, bucket) == []
    assert client.calls.count("upload_part") == (1 if then == "crc32" else 2)  # part 1 kept, or sent again
    head = raw.head_object(Bucket=bucket, Key="r.bin", ChecksumMode="ENABLED")
    if then != "none":
        assert head.get(f"Checksum{then.upper()}"), head


def test_an_upload_aborted_by_someone_else_midway_starts_again(seaweed: S3Server) -> None:
    """A lifecycle rule or an operator's cleanup aborts the upload between two parts: the parts
    that follow get NoSuchUpload (moto answers 500), and a new upload carries the file."""
    bucket = seaweed.new_bucket()
    raw = seaweed.client()

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op == "upload_part" and kw["PartNumber"] == 2 and not seen:
            seen.append(1)
            raw.abort_multipart_upload(Bucket=bucket, Key="a.bin", UploadId=kw["UploadId"])

    seen: list[int] = []
    client = Tampering(client_for(seaweed), hook)
    data = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    upload(uploader_for(client, bucket, part_concurrency=1), "a.bin", chunks_of(*data), source="a.bin")
    assert seen and client.calls.count("create_multipart_upload") == 2
    assert body(raw, bucket, "a.bin") == b"".join(data)
    assert incomplete_uploads(raw, bucket) == []


def test_stopping_cancels_waits(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    stop = threading.Event()

    def hook(op: str, kw: dict[str, Any]) -> None:
        stop.set()
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"
        )

    u = uploader_for(Tampering(client_for(seaweed), hook), bucket, stop=stop, backoff=30)
    with pytest.raises(Cancelled):
        upload(u, "k", chunks_of(b"x"))


def test_parts_go_out_in_parallel_bounded_and_are_assembled_in_order(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    lock, now, peak = threading.Lock(), [0], [0]

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op != "upload_part":
            return
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05 * (9 - kw["PartNumber"]))  # early parts finish last
        with lock:
            now[0] -= 1

    u = uploader_for(Tampering(client_for(seaweed), hook), bucket, part_concurrency=3)
    data = [bytes([n]) * (5 * MiB) for n in range(7)] + [b"tail"]
    got = upload(u, "k", chunks_of(*data))
    assert got.parts == 8 and peak[0] == 3
    assert body(seaweed.client(), bucket, "k") == b"".join(data)


def test_a_failed_part_aborts_after_the_parts_in_flight_end(seaweed: S3Server) -> None:
    bucket = seaweed.new_bucket()
    ended: list[str] = []

    def hook(op: str, kw: dict[str, Any]) -> None:
        if op == "upload_part" and kw["PartNumber"] == 2:
            raise botocore.exceptions.ClientError(
                {
                    "Error": {"Code": "InvalidArgument", "Message": "no"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "UploadPart",
            )
        if op == "upload_part":
            time.sleep(0.3)
            ended.append(f"part {kw['PartNumber']}")
        if op == "abort_multipart_upload":
            ended.append("abort")

    u = uploader_for(Tampering(client_for(seaweed), hook), bucket, part_concurrency=4)
    with pytest.raises(botocore.exceptions.ClientError):
        upload(u, "k", chunks_of(*[os.urandom(5 * MiB) for _ in range(4)], b"end"))
    assert ended[-1] == "abort" and "part 1" in ended
    assert incomplete_uploads(seaweed.client(), bucket) == []


def test_the_start_up_probe_creates_its_upload_as_every_upload_is_created(moto: S3Server) -> None:
    """Encryption and storage class go with the probe: what S3 refuses for them shows at start-up."""
    seen: list[dict[str, Any]] = []
    client = Tampering(client_for(moto), lambda op, kw: seen.append({"op": op, **kw}))
    u = uploader_for(client, moto.new_bucket(), sse="AES256", storage_class="STANDARD_IA")
    u.probe("p/.s3proc-probe/x")
    create = next(c for c in seen if c["op"] == "create_multipart_upload")
    assert create["ServerSideEncryption"] == "AES256" and create["StorageClass"] == "STANDARD_IA"
    assert [c["op"] for c in seen] == ["create_multipart_upload", "abort_multipart_upload"]
