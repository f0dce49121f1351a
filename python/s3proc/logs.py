"""Structured logs: JSON lines for services, readable lines on a terminal.

Every line about a file carries its ``path``, the first 12 hex digits of its SHA-256 (``sha``)
and its ``stage``; pass them as ``extra`` or use ``for_file``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

# The fields of the file the current thread works on: lines logged deeper down (the uploader's
# retries, say) carry them too.
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("s3proc_file", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The line's own fields; a field given as None is JSON's null (a summary line keeps its
    shape: ``rows`` of a raw file)."""
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    current = _current.get()
    return {**current, **fields} if current else fields


# Control characters as Python writes them in a string's repr (a newline in a file name must not
# start a line of its own, an escape sequence must not reach the terminal).
_SHOWN = {c: repr(chr(c))[1:-1] for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(value: Any) -> str:
    """``value`` as text with its control characters escaped."""
    return str(value).translate(_SHOWN)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01 info  message  path=… key=…``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = "  ".join(f"{k}={printable(v)}" for k, v in _fields(record).items() if v is not None)
        text = f"{stamp} {record.levelname.lower():<7} {printable(record.getMessage())}" + (
            f"  {extras}" if extras else ""
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(fmt: str = "auto", level: str = "info") -> None:
    """Sends s3proc's logs to stderr: ``json``, ``console``, or ``auto`` (console on a terminal)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    ours = logging.getLogger("s3proc")
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    # Other libraries' warnings (urllib3's full connection pool, say) in the same format: a
    # line of plain text in a stream of JSON lines would break its reader.
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.WARNING)
    # botocore and moto are chatty at INFO; their warnings still show.
    for name in ("botocore", "boto3", "urllib3", "werkzeug", "watchfiles"):
        logging.getLogger(name).setLevel(logging.WARNING)


class FileLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines carry one file's ``path``, ``sha`` and ``stage``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

    def set(self, **fields: Any) -> None:
        """Updates the fields every following line carries (e.g. ``stage``, ``sha``)."""
        assert isinstance(self.extra, dict)
        self.extra.update(fields)


def for_file(path: str, stage: str = "detect") -> FileLog:
    """The logger for one file; until the next call in this thread, every s3proc line carries its fields."""
    fields: dict[str, Any] = {"path": path, "stage": stage}
    _current.set(fields)
    return FileLog(logging.getLogger("s3proc.file"), fields)


def clear_file() -> None:
    """This thread no longer works on a file."""
    _current.set(None)
