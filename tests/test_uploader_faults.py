"""The uploader behind the fault proxy: what S3 answers for one key only, answers it rewrites,
and answers it loses."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import botocore.exceptions
import pytest
from faultproxy import FaultProxy, Rule, SseKmsByDefault
from s3servers import S3Server, body, incomplete_uploads
from test_uploader import chunks_of, client_for, upload, uploader_for

from s3proc import uploader as up
from s3proc.uploader import UploadError, unavailable

MiB = 1 << 20


def through(proxy: FaultProxy, server: S3Server) -> S3Server:
    return S3Server("proxy", proxy.endpoint, server.access_key, server.secret_key)


@pytest.fixture
def proxied(moto: S3Server) -> Iterator[tuple[FaultProxy, S3Server, str]]:
    """A proxy in front of moto (rules and rewrite set by the test), the server through it, a bucket."""
    proxy = FaultProxy(moto.endpoint)
    yield proxy, through(proxy, moto), moto.new_bucket()
    proxy.close()


def test_access_denied_for_one_key_fails_that_upload_alone(
    moto: S3Server, proxied: tuple[FaultProxy, S3Server, str]
) -> None:
    # A bucket policy that denies one prefix, or a KMS key policy: AccessDenied counted as "S3
    # unavailable" paused the whole service and retried the file for ever.
    proxy, via, bucket = proxied
    proxy.rules = [Rule("status", method="PUT", path=r"/in/secret\.(txt|bin)(\?|$)", every=1, status=403)]
    u = uploader_for(client_for(via), bucket)
    u.probe("in/.s3proc-probe/start")  # what check_bucket does at start-up
    for key, data in [("in/secret.txt", [b"x"]), ("in/secret.bin", [os.urandom(5 * MiB), b"end"])]:
        with pytest.raises(
            UploadError, match=r"^access denied for this key \(the bucket itself is writable\)"
        ):
            upload(u, key, chunks_of(*data))
    assert upload(u, "in/ok.txt", chunks_of(b"fine")).parts == 1
    probes = [path for method, path in proxy.requests if method == "POST" and path.endswith("?uploads")]
    assert len([p for p in probes if "/in/.s3proc-probe/" in p]) == 3  # start-up, then once per refusal
    assert incomplete_uploads(moto.client(), bucket) == []


def test_access_denied_everywhere_is_s3_unavailable(proxied: tuple[FaultProxy, S3Server, str]) -> None:
    proxy, via, bucket = proxied
    u = uploader_for(client_for(via), bucket)
    u.probe("in/.s3proc-probe/start")
    proxy.rules = [Rule("status", method=m, every=1, status=403) for m in ("PUT", "POST")]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        upload(u, "in/a.txt", chunks_of(b"x"))
    assert up._error_code(refused.value) == "AccessDenied" and unavailable(refused.value)


@pytest.mark.parametrize(
    ("algorithm", "header"),
    [
        ("aws:kms", "x-amz-server-side-encryption"),
        ("aws:kms:dsse", "x-amz-server-side-encryption"),
        ("AES256", "x-amz-server-side-encryption-customer-algorithm"),  # SSE-C
    ],
)
def test_etags_of_objects_encrypted_by_default_with_kms_are_not_taken_for_md5s(
    moto: S3Server, proxied: tuple[FaultProxy, S3Server, str], algorithm: str, header: str
) -> None:
    # A bucket whose default encryption is SSE-KMS (no --sse given) answers with ETags that are
    # not MD5s: every PUT and part failed the ETag check and was retried until the file failed.
    proxy, via, bucket = proxied
    proxy.translate = SseKmsByDefault(algorithm, header)
    u = uploader_for(client_for(via), bucket, retries=1)
    big = [os.urandom(5 * MiB), b"tail"]
    assert upload(u, "small", chunks_of(b"hello")).parts == 1
    assert upload(u, "big", chunks_of(*big), sha="ab" * 32).parts == 2
    # Sent again (a crash after completing): found by HEAD after the 412, not sent a third time.
    assert upload(u, "small", chunks_of(b"hello")).resumed
    assert upload(u, "big", chunks_of(*big), sha="ab" * 32).resumed
    assert [m for m, _ in proxy.requests].count("PUT") == 6, "nothing was sent twice"
    assert body(moto.client(), bucket, "big") == b"".join(big)
    assert incomplete_uploads(moto.client(), bucket) == []


def test_an_upload_made_by_a_create_whose_answer_was_lost_is_aborted(
    moto: S3Server, proxied: tuple[FaultProxy, S3Server, str]
) -> None:
    # It stayed incomplete (and billed) until the next start-up's recovery.
    proxy, via, bucket = proxied
    proxy.rules = [Rule("drop", method="POST", path=r"\?uploads$")]
    created: list[str] = []
    u = uploader_for(client_for(via), bucket)
    got = upload(u, "big.bin", chunks_of(os.urandom(5 * MiB), b"tail"), on_created=created.append)
    assert proxy.fired("drop") == 1 and got.parts == 2 and len(created) == 1
    assert incomplete_uploads(moto.client(), bucket) == []


def test_an_older_upload_of_the_key_is_not_taken_for_a_lost_create(
    seaweed: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only uploads S3 initiated while the attempts went on are aborted (SeaweedFS gives real
    # times, to the second: moto gives every upload the same).
    monkeypatch.setattr(up, "LOST_CREATE_SLACK", 1.0)
    bucket = seaweed.new_bucket()
    older = seaweed.client().create_multipart_upload(Bucket=bucket, Key="big.bin")["UploadId"]
    proxy = FaultProxy(seaweed.endpoint, [Rule("drop", method="POST", path=r"\?uploads$")])
    try:
        u = uploader_for(client_for(through(proxy, seaweed)), bucket)
        time.sleep(2.2)  # the older upload is 2 s older, as S3 times it
        upload(u, "big.bin", chunks_of(os.urandom(5 * MiB), b"tail"))
    finally:
        proxy.close()
    assert proxy.fired("drop") == 1
    assert incomplete_uploads(seaweed.client(), bucket) == [("big.bin", older)]
