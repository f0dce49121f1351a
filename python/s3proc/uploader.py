"""Streaming uploads to S3: one object from a stream of chunks, exactly once, verified.

A stream whose first part is also its last goes up in one ``PutObject``; a longer one as a
multipart upload, each part sent as soon as it is produced (the next is produced meanwhile).
Parts are the chunk size up to part 1,000, then twice that up to part 2,000, and so on (never
past S3's 5 GiB), so the 10,000-part limit is never met below ~8 TB (at 8 MiB chunks).

Integrity: every part and object carries ``Content-MD5`` and an additional checksum that the
server verifies (``crc32`` by default); s3proc also compares each returned ETag with the MD5 it
computed where the ETag is an MD5, and checks the finished object with ``HEAD`` (size, checksum,
the source's SHA-256 in the metadata).

Exactly once: a new key is written with ``If-None-Match: *``, a key that holds an older version
of the same source with ``If-Match: <its ETag>``. A 412 is resolved by ``HEAD``: when the object
there already holds this source's content it is the result (a crash after completing left it);
when it holds another version of the same source it is replaced, conditionally again; anything
else is an error, never an overwrite.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import re
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import botocore.config
import botocore.exceptions
import botocore.session
import botocore.utils

from s3proc._core import __version__, parquet_footer_rows
from s3proc.errors import S3procError, SchemaRestart

log = logging.getLogger("s3proc.upload")

# User metadata on every object (x-amz-meta-*); values are ASCII, the path percent-encoded.
META_SOURCE = "s3proc-source"
META_SHA256 = "s3proc-source-sha256"
META_VERSION = "s3proc-version"
META_ROWS = "s3proc-rows"
META_FORMAT = "s3proc-format"
FOOTER_READ = 64 << 10  # the end of a Parquet object read for its row count (``listing``)
META_WRITER = "s3proc-writer"  # the tag that marks uploads and objects s3proc made
META_SOURCE_CUT = "s3proc-source-cut"  # the source path's SHA-256, where s3proc-source is cut
MAX_METADATA = 2048  # S3's limit on user metadata: UTF-8 bytes of every key (no x-amz-meta-) and value

PARTS_PER_STEP = 1000  # parts of one size before the size doubles
PREFETCH = 2  # chunks produced ahead of the upload
EARLY_PREFETCH = 4  # … until the upload is created (it waits for the source's SHA-256)
PART_CONCURRENCY = 4  # parts of one multipart upload in flight at once
MIN_PART = 5 << 20
MAX_PART = 5 << 30
EXPECT_CONTINUE_BYTES = 2 << 20  # smaller bodies are sent without waiting for 100 Continue
LOST_CREATE_SLACK = 2.0  # seconds: precision of an upload's Initiated time, and some more
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')
_RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "BadDigest",
    "XAmzContentSHA256Mismatch",
    "IncompleteBody",  # the connection broke in the body: fewer bytes came than Content-Length
}


class UploadError(S3procError):
    """An upload failed for good (retries exhausted, or an error retrying cannot fix)."""


class IntegrityError(UploadError):
    """What S3 stored is not what s3proc sent."""


class SourceChanged(UploadError):
    """The source was written to while it was read: what was sent is no one version of it, and
    is not published (the upload is aborted)."""


class KeyTaken(UploadError):
    """The key holds an object that is not a version of this source; s3proc never overwrites it."""


PROBE_FOLDER = ".s3proc-probe"  # under the prefix: the start-up probe's uploads (see ``Uploader.probe``)


class Cancelled(S3procError):
    """The service is stopping and this upload was abandoned (it is redone at the next start)."""


# ------------------------------------------------------------------ checksums
class _Checksum:
    """One S3 additional-checksum algorithm: name, digest function, request/response field."""

    def __init__(self, name: str):
        self.name = name
        self.field = "Checksum" + name.upper()
        self.digest: Callable[[bytes], bytes]
        if name == "crc32":
            self.digest = lambda b: zlib.crc32(b).to_bytes(4, "big")
        elif name == "sha256":
            self.digest = lambda b: hashlib.sha256(b).digest()
        elif name == "crc32c":
            self.digest = _crc32c()
        else:
            raise ValueError(f"unknown checksum {name!r}")

    def b64(self, data: bytes) -> str:
        return base64.b64encode(self.digest(data)).decode()


def _crc32c() -> Callable[[bytes], bytes]:
    try:
        import crc32c  # type: ignore[import-not-found]

        return lambda b: int(crc32c.crc32c(b)).to_bytes(4, "big")
    except ImportError:
        pass
    try:
        from awscrt import checksums  # type: ignore[import-not-found]

        return lambda b: int(checksums.crc32c(b)).to_bytes(4, "big")
    except ImportError:
        raise ValueError("--checksum crc32c needs the crc32c package (pip install crc32c)") from None


def checksum(name: str) -> _Checksum | None:
    """The checksum named by ``--checksum`` (``none``: only Content-MD5 and ETags)."""
    return None if name == "none" else _Checksum(name)


# ------------------------------------------------------------------ the client
def make_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    compat: bool,
    checksum_name: str,
    concurrency: int,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> Any:
    """A botocore S3 client (what boto3 hands out); botocore makes one attempt (s3proc retries).

    ``compat`` (stores that reject botocore's newer default checksum headers and trailers) and
    ``--checksum none`` send checksums only where the operation requires one.

    Bodies are not SHA-256 signed, even over plain HTTP: every body s3proc sends carries a
    Content-MD5 (and, unless ``--checksum none``, an additional checksum) in signed headers,
    which S3 verifies; the payload hash would read every byte once more for no extra safety.
    """
    when = "when_required" if compat or checksum_name == "none" else "when_supported"
    config = botocore.config.Config(
        # One attempt in all (botocore's ``max_attempts`` counts retries: 1 was a second
        # attempt that s3proc never saw, e.g. a CreateMultipartUpload sent again).
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, 2 * concurrency),
        connect_timeout=10,
        read_timeout=120,
        request_checksum_calculation=when,
        response_checksum_validation=when,
        s3={"payload_signing_enabled": False, **({"addressing_style": "path"} if endpoint_url else {})},
        user_agent_extra=f"s3proc/{__version__}",
    )
    # botocore's own session: the same credential chain and configuration as boto3's, without
    # importing boto3 and s3transfer (a tenth of a second at every start).
    client = botocore.session.get_session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )
    client.meta.events.register_last("before-call.s3", _expect_continue_for_large_bodies)
    return client


def _expect_continue_for_large_bodies(params: dict[str, Any], **_: Any) -> None:
    """botocore asks for ``100 Continue`` before every body: a round trip more per request,
    worth it only where a refusal saves sending much. Kept from 2 MiB, as the AWS SDK for Go."""
    body = params.get("body")
    if params["headers"].get("Expect") and body is not None:
        size = botocore.utils.determine_content_length(body)
        if size is not None and size < EXPECT_CONTINUE_BYTES:
            del params["headers"]["Expect"]


def _error_code(e: BaseException) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def _status(e: BaseException) -> int:
    if isinstance(e, botocore.exceptions.ClientError):
        return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return 0


def retryable(e: BaseException) -> bool:
    """Throttling, 5xx, connection trouble and corrupted bodies: worth sending again."""
    if isinstance(
        e, IntegrityError | botocore.exceptions.HTTPClientError | botocore.exceptions.ConnectionError
    ):
        return True
    if isinstance(e, botocore.exceptions.ClientError):
        return _error_code(e) in _RETRY_CODES or _status(e) >= 500 or _status(e) == 429
    return False


# Errors about S3 itself (the endpoint, the bucket, the credentials), not about the file: the file
# waits for S3 to come back instead of going to the error folder.
_UNAVAILABLE_CODES = {
    "NoSuchBucket",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AccountProblem",
}


# Credentials that cannot be had right now (a credential_process, SSO, the instance metadata
# service or STS failing for a moment; none configured yet): botocore raises these before any
# request is sent. Looked up by name: some are newer than the oldest botocore s3proc supports.
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(botocore.exceptions, name)
    for name in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "TokenRetrievalError",
        "NoAuthTokenError",
        "SSOError",  # SSOTokenLoadError, UnauthorizedSSOTokenError
        "LoginError",  # `aws login` sessions
        "RefreshWithMFAUnsupportedError",
        "MetadataRetrievalError",
    )
    if hasattr(botocore.exceptions, name)
)


def unavailable(e: BaseException) -> bool:
    """S3 cannot be used right now (retries spent on throttling, 5xx or connection trouble; the
    bucket gone; credentials refused or not to be had): nothing is wrong with the file being
    uploaded."""
    if isinstance(e, IntegrityError):
        return False
    if isinstance(e, botocore.exceptions.ClientError):
        return _error_code(e) in _UNAVAILABLE_CODES or retryable(e)
    if isinstance(e, _CREDENTIAL_ERRORS):
        return True
    return isinstance(e, botocore.exceptions.BotoCoreError) and retryable(e)


def _etag(value: str) -> str:
    return value.strip('"')


def _etag_is_md5(response: dict[str, Any]) -> bool:
    """Whether the ETag of this answer (PUT, part, HEAD) can be the MD5 of the content: not
    for SSE-KMS or DSSE-KMS (``aws:kms``, ``aws:kms:dsse``; a bucket's default encryption
    applies it without s3proc asking) nor for SSE-C."""
    sse = str(response.get("ServerSideEncryption") or "")
    return not sse.startswith("aws:kms") and not response.get("SSECustomerAlgorithm")


# ------------------------------------------------------------------ metadata
def _metadata_size(meta: dict[str, str]) -> int:
    """Size as S3 counts it against ``MAX_METADATA``: UTF-8 bytes of the keys and values."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())


def source_metadata(source: str, room: int) -> dict[str, str]:
    """The ``s3proc-source`` entry for ``source`` in at most ``room`` bytes of metadata.

    The path is percent-encoded (UTF-8, ``/`` kept). When that does not fit, it is cut after
    the last whole character that leaves room for ``s3proc-source-cut``, which holds the
    SHA-256 (hex) of the whole path's UTF-8: s3proc still knows its object by it.
    """
    whole = quote(source, safe="/")
    if len(META_SOURCE) + len(whole) <= room:
        return {META_SOURCE: whole}
    room -= len(META_SOURCE) + len(META_SOURCE_CUT) + 64
    cut, used = [], 0
    for ch in source:  # one character at a time: an escape or a UTF-8 sequence is never split
        piece = quote(ch, safe="/")
        if used + len(piece) > room:
            break
        cut.append(piece)
        used += len(piece)
    return {META_SOURCE: "".join(cut), META_SOURCE_CUT: hashlib.sha256(source.encode()).hexdigest()}


def _ours(meta: dict[str, str], source: str) -> bool:
    """Whether an object's metadata says s3proc wrote it for ``source``."""
    return meta.get(META_WRITER) == "s3proc" and _is_source(meta, source)


def _is_source(meta: dict[str, str], source: str) -> bool:
    """Whether an object's metadata names ``source`` (whole, or cut with its SHA-256)."""
    cut = meta.get(META_SOURCE_CUT)
    if cut is not None:
        return cut == hashlib.sha256(source.encode()).hexdigest()
    return unquote(meta.get(META_SOURCE, "")) == source


# ------------------------------------------------------------------ one object
@dataclass(frozen=True)
class Resume:
    """A multipart upload an earlier run left in flight, the source content it carries and how
    it was created (``Uploader.upload_kind``)."""

    upload_id: str
    sha256: str
    kind: str | None


@dataclass(frozen=True)
class Uploaded:
    """What a finished upload left in S3."""

    key: str
    etag: str
    size: int
    parts: int  # 0: it was already there (a crash after completing), 1: one PutObject
    resumed: bool = False


@dataclass
class _Sent:
    """Running digests of what went out, in part order, for checking the finished object."""

    size: int = 0
    md5s: list[bytes] = field(default_factory=list)
    sums: list[bytes] = field(default_factory=list)

    def add(self, size: int, md5: bytes, digest: bytes | None) -> None:
        self.size += size
        self.md5s.append(md5)
        if digest is not None:
            self.sums.append(digest)


def part_groups(chunks: Iterator[bytes], max_part: int = MAX_PART) -> Iterator[bytes]:
    """Chunks joined into parts: one chunk each for 1,000 parts, then two, four, …, but never
    past ``max_part`` bytes (S3's maximum part): a part ends where one more chunk of the size
    of its last would not fit, or before a chunk that does not fit (a chunk larger than
    ``max_part`` is a part of its own).

    Nothing of a part is kept here once it is handed out: neither the part nor its chunks.
    """
    number = 0
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if pending and size + len(chunk) > max_part:
            number, size = number + 1, 0
            yield _take(pending)
        pending.append(chunk)
        size += len(chunk)
        full = len(pending) >= 1 << (number // PARTS_PER_STEP) or size + len(chunk) > max_part
        del chunk  # the part may be all this chunk: not held while the consumer sends it
        if full:
            number, size = number + 1, 0
            yield _take(pending)
    if pending:
        yield _take(pending)


def _take(pending: list[bytes]) -> bytes:
    """The chunks in ``pending`` as one part; ``pending`` is emptied (a joined part is then
    the only copy of its bytes)."""
    part = pending[0] if len(pending) == 1 else b"".join(pending)
    pending.clear()
    return part


class _Prefetch:
    """Runs an iterator in a thread, ``limit`` items ahead, so producing overlaps uploading.

    The limit starts at ``EARLY_PREFETCH``, so production goes on while the upload waits for
    the source's SHA-256 (needed to create it), and drops to ``PREFETCH`` once it is created.
    Exceptions reach the consumer in order; after a ``SchemaRestart`` the producer goes on,
    since the iterator goes on with the new file. ``close()`` stops the producer.
    """

    _END = object()

    def __init__(self, it: Iterator[bytes], name: str):
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.limit = EARLY_PREFETCH
        self._thread = threading.Thread(target=self._run, args=(it,), name=f"produce {name}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._items) < self.limit)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _run(self, it: Iterator[bytes]) -> None:
        while True:
            try:
                item: Any = next(it)
            except StopIteration:
                self._put(self._END)
                return
            except SchemaRestart as e:
                item = e
            except BaseException as e:
                self._put(e)
                return
            if not self._put(item):
                return
            del item  # queued: not kept while the next one is produced

    def narrow(self) -> None:
        """From now on only ``PREFETCH`` items ahead."""
        self.limit = PREFETCH

    def __iter__(self) -> _Prefetch:
        return self

    def __next__(self) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items))
            item = self._items[0]
            if item is not self._END:  # the end stays at the end
                self._items.popleft()
                self._cond.notify_all()
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, bytes)
        return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)


class _Inline:
    """The ``_Prefetch`` interface without the thread."""

    def __init__(self, it: Iterator[bytes]):
        self._it = it

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._it)

    def narrow(self) -> None:
        pass

    def close(self) -> None:
        pass


class Uploader:
    """Uploads streams of chunks to one bucket, with retries, conditions and verification.

    Args:
        client: A boto3 S3 client (see ``make_client``).
        bucket: The bucket.
        checksum_name: ``crc32``, ``crc32c``, ``sha256`` or ``none``.
        retries: Attempts after the first for each request (a failed part is retried alone).
        part_concurrency: Parts of one multipart upload sent at once (each holds one part in
            memory).
        sse: ``AES256`` (SSE-S3), ``aws:kms`` (SSE-KMS) or None.
        kms_key_id: The KMS key for ``aws:kms``.
        storage_class: Passed through (``STANDARD_IA``, ``GLACIER_IR``, …).
        stop: Set when the service must stop now: waits end and the upload is abandoned.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        checksum_name: str = "crc32",
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sse: str | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        part_concurrency: int = PART_CONCURRENCY,
        stop: threading.Event | None = None,
    ):
        self.client = client
        self.bucket = bucket
        self.checksum = checksum(checksum_name)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stop = stop or threading.Event()
        self.part_concurrency = part_concurrency
        self._extra: dict[str, str] = {}
        if sse:
            self._extra["ServerSideEncryption"] = sse
        if kms_key_id:
            self._extra["SSEKMSKeyId"] = kms_key_id
        if storage_class:
            self._extra["StorageClass"] = storage_class
        # What an upload is created with besides its key and metadata: an upload an earlier run
        # created otherwise (another --checksum, --sse, --storage-class) is not resumed.
        self.upload_kind = " ".join(
            [f"checksum={self.checksum.name if self.checksum else 'none'}"]
            + [f"{k}={v}" for k, v in sorted(self._extra.items())]
        )
        # SSE-KMS and DSSE-KMS ETags are not MD5s of the content (asked for here; a bucket's
        # default encryption shows in each answer instead, see ``_etag_is_md5``).
        self._etags_are_md5 = not (sse or "").startswith("aws:kms")
        # Where the start-up probe wrote (see ``probe``): probed again to tell an AccessDenied
        # for one key from a bucket that refuses everything.
        self._probe_folder = PROBE_FOLDER

    # -------------------------------------------------------------- requests
    def call(self, op: str, **kwargs: Any) -> Any:
        """One S3 request, retried with exponential backoff and full jitter when retryable."""
        return self._retry(op, getattr(self.client, op), kwargs)

    def _retry(self, op: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise Cancelled(f"{op} {kwargs.get('Key', '')}: stopping")
            try:
                return fn(**kwargs)
            except Exception as e:
                if not retryable(e) or attempt == self.retries:
                    raise
                delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
                log.warning(
                    "retrying %s after %s (attempt %d of %d, in %.2fs)",
                    op,
                    describe(e),
                    attempt + 1,
                    self.retries,
                    delay,
                    extra={"key": kwargs.get("Key"), "stage": "upload"},
                )
                if self.stop.wait(delay):
                    raise Cancelled(f"{op} {kwargs.get('Key', '')}: stopping") from e
        raise AssertionError("unreachable")

    def _send(self, op: str, body: bytes, **kwargs: Any) -> tuple[dict[str, Any], bytes, bytes | None]:
        """``PutObject``/``UploadPart`` of ``body`` with Content-MD5 and the checksum; ETag checked.

        Returns the response, the MD5 and the checksum digest (None for ``--checksum none``).
        """
        md5 = hashlib.md5(body).digest()
        kwargs["ContentMD5"] = base64.b64encode(md5).decode()
        digest = self.checksum.digest(body) if self.checksum else None
        if self.checksum and digest is not None:
            kwargs[self.checksum.field] = base64.b64encode(digest).decode()

        def send(**kw: Any) -> dict[str, Any]:
            got: dict[str, Any] = getattr(self.client, op)(Body=body, **kw)
            m = _MD5_ETAG.match(got.get("ETag", ""))
            if self._etags_are_md5 and _etag_is_md5(got) and m and m.group(1) != md5.hex():
                if op == "put_object":
                    # A server that does not check Content-MD5 stored a damaged body under our
                    # metadata: the next attempt replaces exactly that object.
                    kwargs.pop("IfNoneMatch", None)
                    kwargs["IfMatch"] = got["ETag"]
                raise IntegrityError(f"{op} {kw['Key']}: ETag {m.group(1)} is not the MD5 {md5.hex()} sent")
            return got

        return self._retry(op, send, kwargs), md5, digest

    # -------------------------------------------------------------- one object
    def upload(
        self,
        key: str,
        open_chunks: Callable[[], Iterator[bytes]],
        *,
        source: str,
        sha256: str | Callable[[], str],
        metadata: Callable[[], dict[str, str]],
        if_match: str | None,
        on_created: Callable[[str], None] = lambda _id: None,
        on_aborted: Callable[[], None] = lambda: None,
        inline: bool = False,
        resume: Resume | None = None,
        unchanged: Callable[[], bool] = lambda: True,
    ) -> Uploaded:
        """Uploads the stream ``open_chunks()`` to ``key``, exactly once.

        Args:
            key: The object key.
            open_chunks: Opens the stream (again after a 409 conflict). A ``SchemaRestart``
                from it aborts the multipart upload and starts a new one from the chunks
                that follow.
            source: The source's name (its relative path; with the entry for archives).
            sha256: The SHA-256 of the source's content, or a function that waits for it: it
                is first needed when the object or upload is created, so hashing can overlap
                producing the first parts.
            metadata: More user metadata (rows, format), asked for when the object or upload is
                created: a stream that fits in one part has been read to its end by then.
            if_match: The ETag of the object this replaces, or None for a new key.
            on_created: Called with the upload id right after CreateMultipartUpload, before
                the first part: the state makes it durable there.
            on_aborted: Called after a multipart upload was aborted.
            inline: Produce the chunks in this thread: for a source smaller than a part, which
                goes up in one PUT, so there is nothing to overlap.
            resume: A multipart upload of this key left by an earlier run. When it carries the
                same source content, it goes on: each part already on the server (ListParts)
                whose size and MD5 match the part produced now is not sent again. Otherwise it
                is aborted.
            unchanged: Whether the source is still as it was when reading began: asked before
                the object is written (PutObject, CompleteMultipartUpload).

        Raises:
            KeyTaken: The key holds something that is not a version of this source.
            IntegrityError: The stored object does not match what was sent (it is removed).
            SourceChanged: ``unchanged()`` said no; nothing was written.
            UploadError, botocore errors: retries exhausted or a request S3 refuses.
        """
        sha = sha256 if callable(sha256) else lambda: sha256

        def meta() -> dict[str, str]:
            rest = {META_WRITER: "s3proc", META_VERSION: __version__, META_SHA256: sha(), **metadata()}
            return {**source_metadata(source, MAX_METADATA - _metadata_size(rest)), **rest}

        try:
            # Each round reads the stream afresh: after a 409 conflict, or to replace an older
            # version of this source found behind a 412.
            for _round in range(5):
                chunks = _Inline(open_chunks()) if inline else _Prefetch(open_chunks(), key)
                try:
                    while True:
                        try:
                            return self._upload(
                                key, source, chunks, meta, if_match, on_created, on_aborted, resume, unchanged
                            )
                        except SchemaRestart as e:
                            log.info("restarting the upload: %s", e, extra={"key": key, "stage": "upload"})
                        finally:
                            resume = None  # used (or aborted) by the first attempt
                except _Precondition as p:
                    done = self._resolve_precondition(key, source, sha(), p.etag)
                    if isinstance(done, Uploaded):
                        return done
                    if_match = done or None
                except _Conflict as c:
                    log.info("%s; uploading again", c, extra={"key": key, "stage": "upload"})
                finally:
                    chunks.close()
            raise UploadError(f"{key}: conditional writes kept conflicting")
        except botocore.exceptions.ClientError as e:
            # A policy can deny some keys only (a bucket policy on a prefix, a KMS key policy):
            # retrying, or pausing the service for it, would never end. The bucket answering
            # the start-up probe again tells that case from a bucket that refuses everything.
            if _error_code(e) == "AccessDenied" and self._writable():
                raise UploadError(
                    f"access denied for this key (the bucket itself is writable): {describe(e)}"
                ) from e
            raise

    def _upload(
        self,
        key: str,
        source: str,
        chunks: _Prefetch | _Inline,
        meta: Callable[[], dict[str, str]],
        if_match: str | None,
        on_created: Callable[[str], None],
        on_aborted: Callable[[], None],
        resume: Resume | None,
        unchanged: Callable[[], bool],
    ) -> Uploaded:
        def check_source() -> None:
            if not unchanged():
                raise SourceChanged(f"{source} was written to while it was uploaded; not published")

        cond = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        parts = part_groups(chunks)
        try:
            first = next(parts, b"")
            second = next(parts, None)
        except BaseException:
            # A restart or a parse error before the upload could go on: nothing will resume it.
            if resume is not None and self.abort(key, resume.upload_id):
                on_aborted()
            raise
        sent = _Sent()
        have: dict[int, tuple[int, str]] = {}  # parts already on the server: size, ETag
        upload_id: str | None = None
        if resume is not None:
            if second is not None and (resume.sha256, resume.kind) == (meta()[META_SHA256], self.upload_kind):
                have = self._parts_on_server(key, resume.upload_id) or {}
                upload_id = resume.upload_id if have else None
            if upload_id is None and self.abort(key, resume.upload_id):
                on_aborted()
        if second is None:
            check_source()
            try:
                got, md5, digest = self._send(
                    "put_object", first, Bucket=self.bucket, Key=key, Metadata=meta(), **cond, **self._extra
                )
            except botocore.exceptions.ClientError as e:
                _raise_condition(e, etag=hashlib.md5(first).hexdigest() if self._etags_are_md5 else None)
                raise
            sent.add(len(first), md5, digest)
            etag = _etag(got["ETag"])
            if self._etags_are_md5 and _etag_is_md5(got) and etag == sent.md5s[0].hex():
                # The response already proves it: S3's MD5 of what it stored is ours, and the
                # write was atomic with our metadata. A HEAD would add a round trip, no facts.
                echoed = got.get(self.checksum.field) if self.checksum else None
                if echoed is None or echoed in self._object_checksums(sent, 1):
                    return Uploaded(key=key, etag=etag, size=sent.size, parts=1)
            return self._verify(key, source, sent, etag, sha256=meta()[META_SHA256], parts=1)

        create: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Metadata": meta(), **self._extra}
        if self.checksum:
            create["ChecksumAlgorithm"] = self.checksum.name.upper()
        if upload_id is None:
            attempts = 0
            began = time.monotonic()

            def create_upload(**kw: Any) -> dict[str, Any]:
                nonlocal attempts
                attempts += 1
                got: dict[str, Any] = self.client.create_multipart_upload(**kw)
                return got

            upload_id = str(self._retry("create_multipart_upload", create_upload, create)["UploadId"])
            on_created(upload_id)
            if attempts > 1:
                self._abort_lost_creates(key, upload_id, time.monotonic() - began)
        chunks.narrow()
        skipped = 0
        completed = False
        # Parts go out ``part_concurrency`` at a time; they are settled in order.
        in_flight: deque[Future[tuple[dict[str, Any], bytes, bytes | None]]] = deque()
        done: list[dict[str, Any]] = []

        def settle() -> None:
            got, md5, digest = in_flight.popleft().result()
            number = len(done) + 1
            part = {"PartNumber": number, "ETag": got["ETag"]}
            if self.checksum and digest is not None:
                part[self.checksum.field] = base64.b64encode(digest).decode()
            sent.add(sizes.popleft(), md5, digest)
            done.append(part)

        sizes: deque[int] = deque()
        # From here on a part is referenced only until it is sent: not by these names, nor by
        # the chain (parts 1 and 2 would stay in memory for the whole upload).
        ahead = [first, second]
        del first, second
        try:
            for number, body in enumerate(_chain(ahead, parts), start=1):
                while len(in_flight) >= self.part_concurrency:
                    settle()
                sizes.append(len(body))
                if number in have:
                    md5 = hashlib.md5(body).digest()
                    if have[number] == (len(body), md5.hex()):
                        digest = self.checksum.digest(body) if self.checksum else None
                        done_before: Future[Any] = Future()
                        done_before.set_result(({"ETag": f'"{md5.hex()}"'}, md5, digest))
                        in_flight.append(done_before)
                        skipped += 1
                        del body
                        continue
                in_flight.append(
                    _in_thread(
                        f"part {number} {key}",
                        self._send,
                        "upload_part",
                        body,
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                    )
                )
                del body  # its request holds it until sent; not this loop while the next is made
            while in_flight:
                settle()
            if skipped:
                log.info(
                    "resumed the upload of an earlier run: %d of %d part(s) were already there",
                    skipped,
                    len(done),
                    extra={"key": key, "stage": "upload"},
                )
            check_source()
            try:
                got = self.call(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                    **cond,
                )
            except botocore.exceptions.ClientError as e:
                multipart = hashlib.md5(b"".join(sent.md5s)).hexdigest() + f"-{len(sent.md5s)}"
                _raise_condition(e, upload_id, multipart if self._etags_are_md5 else None)
                got = self._completed_meanwhile(key, e, create["Metadata"])
            completed = True
        except botocore.exceptions.ClientError as e:
            if _error_code(e) == "NoSuchUpload":  # a lifecycle rule, an operator's cleanup
                raise _Conflict("the multipart upload was aborted by someone else") from e
            raise
        finally:
            if not completed:
                # No part may land after the abort: wait for those already on their way.
                wait(in_flight)
                if self.abort(key, upload_id):
                    on_aborted()
        return self._verify(
            key, source, sent, _etag(got["ETag"]), sha256=create["Metadata"][META_SHA256], parts=len(done)
        )

    def _parts_on_server(self, key: str, upload_id: str) -> dict[int, tuple[int, str]] | None:
        """``{part number: (size, MD5 hex)}`` of an upload's parts (ListParts, every page);
        None when the upload is gone. Parts whose ETag is not an MD5 are left out."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
        out: dict[int, tuple[int, str]] = {}
        while True:
            try:
                page = self.call("list_parts", **kwargs)
            except botocore.exceptions.ClientError as e:
                if _error_code(e) in ("NoSuchUpload", "404") or _status(e) == 404:
                    return None
                raise
            for p in page.get("Parts", []):
                m = _MD5_ETAG.match(p.get("ETag", ""))
                if m and self._etags_are_md5:
                    out[int(p["PartNumber"])] = (int(p["Size"]), m.group(1))
            if not page.get("IsTruncated"):
                return out
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    def _completed_meanwhile(
        self, key: str, e: botocore.exceptions.ClientError, meta: dict[str, str]
    ) -> dict[str, Any]:
        """A retried CompleteMultipartUpload that finds its upload gone: the first attempt did
        complete it (its answer was lost) when the object now carries this upload's metadata.
        Re-raises ``e`` otherwise. The caller's HEAD verification checks the rest."""
        if _error_code(e) != "NoSuchUpload":
            raise e
        head = self._head(key)
        stored = head.get("Metadata", {}) if head else {}
        if not head or any(stored.get(k) != meta.get(k) for k in (META_SOURCE, META_SOURCE_CUT, META_SHA256)):
            raise e
        return {"ETag": head["ETag"]}

    def _resolve_precondition(self, key: str, source: str, sha256: str, sent: str | None) -> Uploaded | str:
        """After a 412: our result already there, or the ETag of an object to replace.

        ``sent`` is the ETag that what was just sent would have (None where ETags are not
        MD5s, as for an object the HEAD shows encrypted with SSE-KMS or SSE-C). An object of
        this source and content whose ETag differs is replaced: a damaged
        body that a server stored unverified (a crash, or retries spent, came before s3proc
        could replace it), or the same content in other parts. The refused upload was aborted
        already; replacing means uploading again with If-Match.
        """
        head = self._head(key)
        if head is None:
            # It was deleted since: upload again as a new key.
            log.info("conditional write refused and the key is now empty", extra={"key": key})
            return ""
        meta = head.get("Metadata", {})
        etag = _etag(head["ETag"])
        if _is_source(meta, source) and meta.get(META_SHA256) == sha256:
            if sent is None or etag == sent or not _etag_is_md5(head):
                log.info("already uploaded (found by HEAD)", extra={"key": key, "stage": "upload"})
                return Uploaded(key=key, etag=etag, size=int(head["ContentLength"]), parts=0, resumed=True)
            log.warning(
                "the object of this content has ETag %s, not %s as sent: replacing it",
                etag,
                sent,
                extra={"key": key, "stage": "upload"},
            )
            return etag
        if _ours(meta, source):
            log.info("replacing an older version of this source", extra={"key": key, "stage": "upload"})
            return etag
        raise KeyTaken(
            f"{key} already holds an object that s3proc did not write for {source}; it is never overwritten"
        )

    def stored_version(self, key: str, source: str) -> tuple[str, str, int, int | None] | None:
        """What s3proc last wrote to ``key`` for ``source``: ``(source SHA-256, ETag, size, rows)``.

        None when the key is empty or holds an object s3proc did not write for ``source``.
        """
        head = self._head(key)
        if head is None:
            return None
        meta = head.get("Metadata", {})
        sha = meta.get(META_SHA256)
        if not _ours(meta, source) or not sha:
            return None
        rows = meta.get(META_ROWS)
        return sha, _etag(head["ETag"]), int(head["ContentLength"]), int(rows) if rows else None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.call(
                "head_object", Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
            return head
        except botocore.exceptions.ClientError as e:
            if _status(e) == 404 or _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _verify(self, key: str, source: str, sent: _Sent, etag: str, sha256: str, parts: int) -> Uploaded:
        """HEAD the finished object: its size, checksum and metadata must be what was sent.

        An object that is not right is deleted when it is s3proc's for ``source`` (damaged on
        the way); one that another writer put there since the upload ended is left alone."""
        head = self._head(key)
        problems = []
        if head is None:
            problems.append("it is missing")
        else:
            if int(head["ContentLength"]) != sent.size:
                problems.append(f"size {head['ContentLength']} instead of {sent.size}")
            if head.get("Metadata", {}).get(META_SHA256) != sha256:
                problems.append("its source SHA-256 metadata differs")
            stored = head.get(self.checksum.field) if self.checksum else None
            if self.checksum and stored:
                want = self._object_checksums(sent, parts)
                if stored not in want:
                    problems.append(f"{self.checksum.field} {stored} instead of {' or '.join(sorted(want))}")
            if _etag(head["ETag"]) != etag:
                problems.append(f"ETag {_etag(head['ETag'])} instead of {etag}")
        if problems:
            if head is not None:
                meta = head.get("Metadata", {})
                if not _ours(meta, source):
                    raise KeyTaken(
                        f"{key} holds an object that another writer put there right after s3proc's"
                        f" upload of {source}; it is never overwritten"
                    )
                self.call("delete_object", Bucket=self.bucket, Key=key)
            raise IntegrityError(f"{key}: the stored object is not what was sent: {'; '.join(problems)}")
        return Uploaded(key=key, etag=etag, size=sent.size, parts=parts)

    def _object_checksums(self, sent: _Sent, parts: int) -> set[str]:
        """The checksums S3 may report for what was sent.

        One part: its checksum. Several: the composite (checksum of the part checksums) with
        ``-N`` as AWS and SeaweedFS write it, or without as moto does. (s3proc creates its
        uploads as ``COMPOSITE``, the default, so a whole-object value is never expected.)
        """
        assert self.checksum is not None
        if parts == 1:
            return {base64.b64encode(sent.sums[0]).decode()}
        composite = base64.b64encode(self.checksum.digest(b"".join(sent.sums))).decode()
        return {composite, f"{composite}-{parts}"}

    def probe(self, key: str) -> None:
        """Creates a multipart upload of ``key`` as every upload is created (encryption and
        storage class included), then aborts it: what S3 would refuse shows at start-up.

        The folder of ``key`` is remembered: an upload refused with AccessDenied probes there
        again (``_writable``).
        """
        self._probe_folder = key.rpartition("/")[0]
        upload_id = self.call("create_multipart_upload", Bucket=self.bucket, Key=key, **self._extra)[
            "UploadId"
        ]
        # Already gone is fine: another start's recovery aborts the probes it finds (those a
        # crash left); the upload was created, which is what the probe asks.
        self.abort(key, upload_id)

    def _writable(self) -> bool:
        """Whether the probe succeeds now, in the folder of the last one (the start-up probe's)."""
        folder = f"{self._probe_folder}/" if self._probe_folder else ""
        try:
            self.probe(f"{folder}{uuid.uuid4().hex}")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log.info("the bucket probe failed too: %s", describe(e), extra={"stage": "upload"})
            return False
        return True

    def _abort_lost_creates(self, key: str, upload_id: str, took: float) -> None:
        """After a CreateMultipartUpload that needed more than one attempt, aborts the uploads
        of exactly ``key`` that an earlier attempt created although its answer was lost.

        Those are the other uploads of ``key`` that S3 initiated at most ``took`` seconds (how
        long the attempts took, plus ``LOST_CREATE_SLACK`` for the timestamps' precision)
        before ``upload_id``: an older upload of the key (someone else's) is left alone.
        Trouble here is only logged: the start-up recovery aborts what is left.
        """
        try:
            mine = [u for u in self.incomplete(key) if u[0] == key]
            initiated = {uid: when for _key, uid, when in mine}
            ours = initiated.get(upload_id)
            lost = 0
            for _key, other, when in mine:
                if other == upload_id:
                    continue
                if ours is not None and when is not None:
                    gap = (ours - when).total_seconds()
                    if not -LOST_CREATE_SLACK <= gap <= took + LOST_CREATE_SLACK:
                        continue
                if self.abort(key, other):
                    lost += 1
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log.warning(
                "could not look for uploads of lost CreateMultipartUpload answers: %s",
                describe(e),
                extra={"key": key, "stage": "upload"},
            )
            return
        if lost:
            log.info(
                "aborted %d upload(s) created by an attempt whose answer was lost",
                lost,
                extra={"key": key, "stage": "upload"},
            )

    def abort(self, key: str, upload_id: str) -> bool:
        """Aborts a multipart upload; one that is already gone (completed or aborted) is fine.

        Returns False when the service is stopping and the upload was left for the clean-up at
        the next start (the state must keep its id until then).
        """
        try:
            self.call("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id)
        except botocore.exceptions.ClientError as e:
            if _error_code(e) not in ("NoSuchUpload", "404") and _status(e) != 404:
                raise
        except Cancelled:
            return False
        return True

    def incomplete(self, prefix: str) -> Iterator[tuple[str, str, Any]]:
        """Every incomplete multipart upload under ``prefix``: ``(key, upload id, initiated)``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self.call("list_multipart_uploads", **kwargs)
            for u in page.get("Uploads", []):
                yield u["Key"], u["UploadId"], u.get("Initiated")
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def ours(self, prefix: str, threads: int = 16) -> Iterator[tuple[str, str, str, str, int, int | None]]:
        """Every object under ``prefix`` that s3proc wrote: ``(key, source, source SHA-256, ETag,
        size, rows)``, from its metadata (one HEAD per object, ``threads`` at a time). An object
        whose source path was cut (see ``source_metadata``) is left out: its path is unknown."""

        def one(key: str) -> tuple[str, str, str, str, int, int | None] | None:
            head = self._head(key)
            meta = (head or {}).get("Metadata", {})
            if not head or meta.get(META_WRITER) != "s3proc" or not meta.get(META_SHA256):
                return None
            if META_SOURCE_CUT in meta:
                return None
            rows = meta.get(META_ROWS)
            source = unquote(meta.get(META_SOURCE, ""))
            etag, size = _etag(head["ETag"]), int(head["ContentLength"])
            return key, source, meta[META_SHA256], etag, size, int(rows) if rows else None

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        with ThreadPoolExecutor(max_workers=threads) as pool:
            while True:
                page = self.call("list_objects_v2", **kwargs)
                for got in pool.map(one, [o["Key"] for o in page.get("Contents", [])]):
                    if got is not None:
                        yield got
                if not page.get("IsTruncated"):
                    return
                kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def listing(self, prefix: str) -> Iterator[tuple[str, int, int | None]]:
        """``(key, size, rows)`` of every object under ``prefix``; rows from s3proc's metadata,
        or from the footer of a Parquet object whose metadata was written before its rows were
        counted (a multipart upload's)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self.call("list_objects_v2", **kwargs)
            for o in page.get("Contents", []):
                key, size = o["Key"], int(o["Size"])
                meta = (self._head(key) or {}).get("Metadata", {})
                rows = int(meta[META_ROWS]) if meta.get(META_ROWS) else None
                if rows is None and meta.get(META_FORMAT) == "parquet":
                    rows = self._footer_rows(key, size)
                yield key, size, rows
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _footer_rows(self, key: str, size: int) -> int | None:
        """The rows a Parquet object's footer gives: one ranged GET of its last 64 KiB (a second
        for a larger footer); None when it has none."""

        def tail(n: int) -> bytes:
            got = self.call("get_object", Bucket=self.bucket, Key=key, Range=f"bytes=-{n}")
            return bytes(got["Body"].read())

        end = tail(min(size, FOOTER_READ))
        if len(end) < 12 or end[-4:] != b"PAR1":
            return None
        need = int.from_bytes(end[-8:-4], "little") + 8
        if need > len(end):
            end = tail(need) if need <= size else b""
        try:
            return parquet_footer_rows(end[-need:-8]) if len(end) >= need else None
        except ValueError:
            return None

    def delete(self, key: str) -> None:
        self.call("delete_object", Bucket=self.bucket, Key=key)


class _Precondition(Exception):
    """A conditional write was refused; ``etag`` is what the refused content's ETag would be."""

    def __init__(self, etag: str | None = None):
        super().__init__(etag)
        self.etag = etag


class _Conflict(Exception):
    """The upload cannot go on (another write to the key won, or the upload was aborted by
    someone else): a new one may."""

    def __init__(self, reason: str = "conflicting write to the key"):
        super().__init__(reason)


def _raise_condition(
    e: botocore.exceptions.ClientError, upload_id: str | None = None, etag: str | None = None
) -> None:
    code = _error_code(e)
    # If-Match on a key that is gone is a 404 NoSuchKey on AWS: the object to replace was
    # deleted behind our back; the HEAD that resolves a 412 finds the key empty.
    if _status(e) == 412 or code in ("PreconditionFailed", "NoSuchKey"):
        raise _Precondition(etag) from e
    if code == "ConditionalRequestConflict" or (_status(e) == 409 and upload_id):
        raise _Conflict() from e


def _in_thread(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn(*args, **kwargs)`` in a daemon thread (a stuck request never delays exit), with the
    caller's logging context."""
    future: Future[Any] = Future()
    run = copy_context().run

    def target() -> None:
        try:
            future.set_result(run(fn, *args, **kwargs))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def _chain(ahead: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    """The parts in ``ahead``, then ``rest``; a part of ``ahead`` is let go once handed out."""
    while ahead:
        yield ahead.pop(0)
    yield from rest


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def describe(e: BaseException) -> str:
    """A one-line account of an S3 or connection error, with no password of a URL in it."""
    if isinstance(e, botocore.exceptions.ClientError):
        err = e.response.get("Error", {})
        text = f"{err.get('Code', _status(e))}: {err.get('Message', '')}".strip(": ")
    else:
        text = f"{type(e).__name__}: {e}"
    return _USERINFO.sub("…@", text)
