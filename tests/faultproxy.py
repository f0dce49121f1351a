"""A fault-injecting HTTP proxy between s3proc and a test S3 server, on 127.0.0.1.

Requests are forwarded unchanged (the SigV4 signature covers the Host header, which the proxy
keeps; the test servers do not check it against their own port) unless a rule picks them:

- ``status``: answer with an S3 error (``500 InternalError``, ``503 SlowDown``, ``404
  NoSuchUpload``) without forwarding;
- ``reset``: read the request, then close the connection without an answer;
- ``corrupt``: flip one byte of the body and forward it with its headers unchanged (moto stores
  it: only s3proc's own ETag-against-MD5 check can notice);
- ``stall``: wait, then forward; ``hang``: wait, then close without forwarding;
- ``drop``: forward, then close the connection without passing the answer on (the request took
  effect; the client cannot know).

Rules apply to the n-th request (counted from 1, by each rule on its own) whose method and path
match, so a test says exactly which requests fail.

``translate`` changes every forwarded request and answer: ``SseKmsByDefault`` makes the server
answer as a bucket whose default encryption is SSE-KMS does (ETags that are not MD5s).
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlparse

_ERRORS = {500: "InternalError", 503: "SlowDown", 404: "NoSuchUpload", 403: "AccessDenied"}

Headers = list[tuple[str, str]]


class Translation(Protocol):
    """Changes what passes the proxy: a request before it is forwarded, an answer after."""

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes: ...

    def answer(
        self, method: str, path: str, status: int, headers: Headers, body: bytes
    ) -> tuple[Headers, bytes]: ...


class SseKmsByDefault:
    """Answers as a bucket whose default encryption is SSE-KMS (or ``algorithm`` in ``header``:
    ``x-amz-server-side-encryption-customer-algorithm`` for SSE-C): the header on every answer
    that carries an ETag or creates an upload, and every ETag (header, or ``<ETag>`` in an XML
    body) an opaque one, not the MD5 of the content (a ``-N`` suffix kept). The opaque ETags a
    client sends back (``If-Match``, CompleteMultipartUpload's parts) reach the server as its own.
    """

    _HEX = re.compile(r"[0-9a-f]{32}")

    def __init__(self, algorithm: str = "aws:kms", header: str = "x-amz-server-side-encryption"):
        self.algorithm, self.header = algorithm, header
        self._real: dict[str, str] = {}  # opaque ETag -> the server's (same length: bodies keep theirs)
        self._lock = threading.Lock()

    def _opaque(self, m: re.Match[str]) -> str:
        fake = hashlib.md5(b"opaque " + m.group().encode()).hexdigest()
        with self._lock:
            self._real[fake] = m.group()
        return fake

    def _back(self, m: re.Match[str]) -> str:
        with self._lock:
            return self._real.get(m.group(), m.group())

    def _etags(self, body: bytes, swap: Callable[[re.Match[str]], str]) -> bytes:
        return re.sub(
            rb"<ETag>(.*?)</ETag>",
            lambda m: b"<ETag>" + self._HEX.sub(swap, m.group(1).decode()).encode() + b"</ETag>",
            body,
        )

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        for k, v in headers.items():
            if k.lower() in ("if-match", "if-none-match"):
                headers[k] = self._HEX.sub(self._back, v)
        return self._etags(body, self._back) if method == "POST" else body  # not through parts' bytes

    def answer(
        self, method: str, path: str, status: int, headers: Headers, body: bytes
    ) -> tuple[Headers, bytes]:
        if status >= 300:
            return headers, body
        out = [(k, self._HEX.sub(self._opaque, v) if k.lower() == "etag" else v) for k, v in headers]
        if any(k.lower() == "etag" for k, _ in out) or (method == "POST" and path.endswith("?uploads")):
            out.append((self.header, self.algorithm))
        return out, self._etags(body, self._opaque)


@dataclass
class Rule:
    """Fault ``action`` on the ``nth`` request (and every ``every`` after it) matching ``method``
    and the ``path`` regex (query string included)."""

    action: str  # status | reset | corrupt | stall | hang | drop
    method: str = "PUT"
    path: str = ".*"
    nth: int = 1
    every: int = 0  # 0: only once
    status: int = 503
    seconds: float = 1.0
    seen: int = 0
    fired: int = 0

    def picks(self, method: str, path: str) -> bool:
        if method != self.method or not re.search(self.path, path):
            return False
        self.seen += 1
        n = self.seen - self.nth
        hit = n == 0 or (self.every > 0 and n > 0 and n % self.every == 0)
        self.fired += hit
        return hit


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # faults: (action, method, path)
    requests: list[tuple[str, str]] = field(default_factory=list)  # every request: (method, path)
    outage: bool = False  # while set, every request's connection is reset: S3 is gone
    translate: Translation | None = None  # changes what is forwarded (see ``SseKmsByDefault``)

    def __post_init__(self) -> None:
        up = urlparse(self.upstream)
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.outage:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                with lock:
                    proxy.requests.append((self.command, self.path))
                    # Every rule counts every request it matches; the first that fires acts.
                    hits = [r for r in proxy.rules if r.picks(self.command, self.path)]
                    rule = hits[0] if hits else None
                    if rule:
                        proxy.log.append((rule.action, self.command, self.path))
                if rule and rule.action == "status":
                    code = _ERRORS.get(rule.status, "InternalError")
                    xml = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                if rule and rule.action == "hang":
                    time.sleep(rule.seconds)
                if rule and rule.action in ("reset", "hang"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule and rule.action == "corrupt" and body:
                    flipped = bytearray(body)
                    flipped[len(flipped) // 2] ^= 0xFF
                    body = bytes(flipped)
                if rule and rule.action == "stall":
                    time.sleep(rule.seconds)
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    if proxy.translate is not None:
                        body = proxy.translate.request(self.command, self.path, headers, body)
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if rule and rule.action == "drop":  # done upstream, the answer lost on the way
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                answer = resp.getheaders()
                if proxy.translate is not None:
                    answer, data = proxy.translate.answer(self.command, self.path, resp.status, answer, data)
                self.send_response(resp.status)
                for k, v in answer:
                    if k.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                        "date",
                        "server",
                    ):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fired(self, action: str) -> int:
        return sum(1 for a, _, _ in self.log if a == action)
