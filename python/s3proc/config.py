"""Configuration of ``s3proc run``: checked once, at start-up, before any file is touched.

Every flag is also ``S3PROC_<NAME>`` in the environment or in a ``.env`` file; flags win over
the environment, the environment over ``.env``, ``.env`` over defaults (``load_env`` fills
only what the environment lacks, and click reads flags before environment variables).
Anything wrong ends in ``ConfigError``: one line, exit status 2.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import botocore.exceptions

from s3proc import _core
from s3proc.errors import OptionError
from s3proc.keys import BadKey, KeyMaker
from s3proc.uploader import (
    MAX_PART,
    MIN_PART,
    PART_CONCURRENCY,
    PROBE_FOLDER,
    Uploader,
    checksum,
    describe,
    make_client,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


class ConfigError(Exception):
    """The configuration cannot work; the message is the one line the user sees."""


def move_folder(after_upload: str) -> Path | None:
    """The folder of ``--after-upload move:DIR``; None for keep and delete."""
    return Path(after_upload[5:]) if after_upload.startswith("move:") else None


def load_env(path: str | os.PathLike[str] = ".env") -> None:
    """Reads ``.env`` into the environment, never overriding what is already set; a line that is
    not ``NAME=VALUE`` (or a comment) is a ``ConfigError``, not a setting silently lost."""
    from dotenv import load_dotenv
    from dotenv.parser import parse_stream

    if not Path(path).is_file():
        return
    try:
        with open(path, encoding="utf-8") as f:
            bad = [b.original.line for b in parse_stream(f) if b.error]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    if bad:
        raise ConfigError(f"{path}, line {bad[0]}: not NAME=VALUE")
    load_dotenv(path, override=False)


def parse_size(text: str | int) -> int:
    """``8MiB``, ``8M``, ``8388608`` → bytes (K, M, G, T are powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"not a size: {text!r} (e.g. 8MiB, 16M, 10485760)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def shown_url(url: str) -> str:
    """``url`` with whatever comes before its host's last ``@`` (a user, a password) cut out."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    return head + sep + ("…@" + rest.rpartition("@")[2] if "@" in rest else rest)


def _check_endpoint(url: str) -> None:
    parsed = urlparse(url)
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:
        port_ok = False
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
        raise ConfigError(f"--endpoint-url {shown_url(url)}: give http(s)://HOST[:PORT]")


def is_aws(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return True
    host = urlparse(endpoint_url).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


# Files in flight: the core count, but at least 4. Conversion uses every core within one file
# anyway; small files are bound by round trips to S3, not by CPU (measured: 2 in flight gave
# 0.8x the files/s of a bare one-thread boto3 loop, 4 gave 1.4x, on 2 cores).
DEFAULT_CONCURRENCY = max(4, os.cpu_count() or 1)


FORGET_AFTER = 7 * 86400.0  # seconds after its upload that a file gone from the watch dir is forgotten


@dataclass
class RunConfig:
    """Everything ``s3proc run`` was told, after defaults."""

    watch_dir: Path
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    state: str | None = None  # default: <watch_dir>/.s3proc/state.db
    error_dir: Path | None = None  # default: <watch_dir>/.s3proc/errors
    after_upload: str = "keep"
    concurrency: int = DEFAULT_CONCURRENCY
    part_size: int = 8 << 20
    upload_concurrency: int = PART_CONCURRENCY
    quiet_period: float = 2.0
    rescan_interval: float = 60.0
    poll: bool = False
    ignore: tuple[str, ...] = ()
    checksum: str = "crc32"
    compat: bool | None = None  # None: on for endpoints that are not AWS
    retries: int = 5
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    key_template: str = "{prefix}{path}"
    grace: float = 30.0
    forget_after: float = FORGET_AFTER
    state_sync: str = "full"
    convert: dict[str, Any] = field(default_factory=dict)
    access_key: str | None = None  # only for the embedded server; otherwise the AWS chain
    secret_key: str | None = None

    def check(self) -> KeyMaker:
        """Checks what can be checked without S3; returns the key maker."""
        if not self.bucket:
            raise ConfigError("no bucket: give --bucket or S3PROC_BUCKET")
        if not self.watch_dir.is_dir():
            raise ConfigError(f"the watch dir {self.watch_dir} does not exist or is not a folder")
        if not os.access(self.watch_dir, os.R_OK | os.X_OK):
            raise ConfigError(f"the watch dir {self.watch_dir} cannot be read")
        if self.after_upload not in ("keep", "delete") and not (
            self.after_upload.startswith("move:") and len(self.after_upload) > 5
        ):
            raise ConfigError(f"--after-upload {self.after_upload!r}: use keep, delete or move:DIR")
        if not MIN_PART <= self.part_size <= MAX_PART:
            raise ConfigError(f"--part-size {self.part_size}: S3 parts are 5 MiB to 5 GiB")
        if self.concurrency < 1 or self.upload_concurrency < 1:
            raise ConfigError("--concurrency and --upload-concurrency must be at least 1")
        if self.sse_kms_key_id and self.sse not in (None, "aws:kms"):
            raise ConfigError("--sse-kms-key-id needs --sse aws:kms")
        for name in ("quiet_period", "rescan_interval", "grace", "forget_after"):
            if not math.isfinite(seconds := getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} {seconds}: give a number of seconds")
        if self.endpoint_url is not None:
            _check_endpoint(self.endpoint_url)
        watch = self.watch_dir.resolve()
        for flag, folder in self._folders():
            if watch.is_relative_to(folder.resolve()):
                raise ConfigError(f"{flag} {folder} holds the watch dir: nothing in it would be shipped")
        try:
            _core.ParquetChunks(b"a\n1\n", name="options", **self.convert)
        except OptionError as e:
            raise ConfigError(str(e)) from None
        try:
            checksum(self.checksum)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        try:
            return KeyMaker(prefix=self.prefix, template=self.key_template)
        except BadKey as e:
            raise ConfigError(str(e)) from None

    def _folders(self) -> list[tuple[str, Path]]:
        """The folders s3proc moves files into, with the flag that names each."""
        folders = [("--error-dir", self.error_folder)]
        if (move := move_folder(self.after_upload)) is not None:
            folders.append(("--after-upload move:", move))
        return folders

    def prepare_folders(self) -> None:
        """The error folder and the move folder exist (made now) and can be written, or
        ``ConfigError``."""
        for flag, folder in self._folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"{flag} {folder} cannot be made: {e.strerror}") from None
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {folder} is not writable")

    @property
    def state_location(self) -> str:
        return self.state or str(self.watch_dir / ".s3proc" / "state.db")

    @property
    def error_folder(self) -> Path:
        return self.error_dir or self.watch_dir / ".s3proc" / "errors"

    def client(self) -> Any:
        """The S3 client, or ``ConfigError`` for an endpoint or region botocore refuses."""
        compat = (not is_aws(self.endpoint_url)) if self.compat is None else self.compat
        try:
            return make_client(
                endpoint_url=self.endpoint_url,
                region=self.region,
                compat=compat,
                checksum_name=self.checksum,
                concurrency=self.concurrency * self.upload_concurrency,
                access_key=self.access_key,
                secret_key=self.secret_key,
            )
        except (ValueError, botocore.exceptions.BotoCoreError) as e:
            raise ConfigError(f"no S3 client for --endpoint-url/--region: {describe(e)}") from None

    def uploader(self, client: Any) -> Uploader:
        return Uploader(
            client,
            self.bucket,
            checksum_name=self.checksum,
            retries=self.retries,
            sse=self.sse or ("aws:kms" if self.sse_kms_key_id else None),
            kms_key_id=self.sse_kms_key_id,
            storage_class=self.storage_class,
            part_concurrency=self.upload_concurrency,
        )


def check_bucket(uploader: Uploader, prefix: str) -> None:
    """The bucket exists and s3proc may write under the prefix (a multipart upload, aborted)."""
    check_reachable(uploader)
    bucket = uploader.bucket
    probe = f"{prefix}{PROBE_FOLDER}/{uuid.uuid4().hex}"
    try:
        uploader.probe(probe)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        raise ConfigError(
            f"bucket {bucket!r} is not writable under {prefix or '/'!r}: {describe(e)}"
        ) from None


def check_reachable(uploader: Uploader) -> None:
    """The bucket exists and answers (with retries), or ``ConfigError``."""
    bucket = uploader.bucket
    try:
        uploader.call("head_bucket", Bucket=bucket)
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError("no AWS credentials found (environment, ~/.aws, .env or instance role)") from None
    except botocore.exceptions.ClientError as e:
        code = describe(e)
        if "404" in code or "NoSuchBucket" in code or "NotFound" in code:
            raise ConfigError(f"bucket {bucket!r} does not exist") from None
        raise ConfigError(f"bucket {bucket!r} cannot be reached: {code}") from None
    except botocore.exceptions.BotoCoreError as e:
        raise ConfigError(f"S3 cannot be reached: {describe(e)}") from None
