"""The two log formats: JSON lines for services, readable lines on a terminal."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from s3proc.logs import ConsoleFormatter, JsonFormatter, for_file


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("s3proc.file", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_console_line_stays_one_line_whatever_the_names_hold() -> None:
    """A newline in a file name must not start a line of its own; an escape sequence must not
    reach the terminal. The JSON format escapes them by itself."""
    name = "bad\nfile\x1b[31m.csv"
    record = _record("failed: %s", name, path=name, stage="process")
    line = ConsoleFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert "failed: bad\\nfile\\x1b[31m.csv" in line and "path=bad\\nfile\\x1b[31m.csv" in line
    assert json.loads(JsonFormatter().format(record))["path"] == name


def test_a_summary_line_keeps_its_fields_when_they_have_no_value() -> None:
    """A raw file has no rows, an empty one no ratio: JSON says null, the console leaves them out."""
    log = for_file("raw.bin", "done")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("s3proc.file")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log.info("uploaded", extra={"rows": None, "ratio": None, "bytes_in": 0})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["rows"] is None and line["ratio"] is None and line["path"] == "raw.bin"
    assert "rows" not in ConsoleFormatter().format(records[0])


def test_other_libraries_warnings_are_lines_of_the_same_format() -> None:
    """urllib3 or botocore warning: a JSON line like s3proc's own, not plain text among them."""
    code = (
        "import logging; from s3proc import logs; logs.setup('json', 'info');"
        " logging.getLogger('urllib3.connectionpool').warning('Connection pool is full');"
        " logging.getLogger('s3proc.x').info('ours')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(r["logger"], r["msg"]) for r in lines] == [
        ("urllib3.connectionpool", "Connection pool is full"),
        ("s3proc.x", "ours"),
    ]
