"""The uploader behind the fault proxy: what S3 answers for one key only."""

from __future__ import annotations

import os
from collections.abc import Iterator

import botocore.exceptions
import pytest
from faultproxy import FaultProxy, Rule
from s3servers import S3Server, incomplete_uploads
from test_uploader import chunks_of, client_for, upload, uploader_for

from s3proc import uploader as up
from s3proc.uploader import UploadError, unavailable

MiB = 1 << 20


def through(proxy: FaultProxy, server: S3Server) -> S3Server:
    return S3Server("proxy", proxy.endpoint, server.access_key, server.secret_key)


@pytest.fixture
def proxied(moto: S3Server) -> Iterator[tuple[FaultProxy, S3Server, str]]:
    """A proxy in front of moto (rules set by the test), the server through it, a bucket."""
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
