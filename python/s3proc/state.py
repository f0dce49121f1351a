"""What s3proc remembers: the queue of files, what each produced in S3, uploads in flight.

One small interface (``State``) with one backend today, SQLite in WAL mode. Every method is
one transaction, committed (and, with ``synchronous=FULL``, on disk) before it returns, so
the S3 call that depends on it comes after it is durable. Five changes that nothing in S3
depends on skip the disk flush (the next durable commit carries them, as the WAL is written
in order): ``observe`` and ``claim_all`` (lost by a power cut, the file is simply seen and
claimed again), ``object_done`` and ``finish`` (lost, the file is processed again, and each
of its objects is found already in S3 by its conditional write: a 412, then a HEAD that
shows this source and content), ``forget`` (lost, the rows are forgotten again). A
PostgreSQL backend for several machines implements the same methods.

A file's life: ``pending`` (seen; waiting until it is quiet) → ``processing`` (claimed by a
worker) → ``uploaded`` | ``failed``. An object row is a key in S3 that a source (a file, or an
entry of an archive) owns: claimed before its upload starts, with the multipart upload id
while one is in flight, and with its ETag and the source's SHA-256 once it is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PENDING, PROCESSING, UPLOADED, FAILED = "pending", "processing", "uploaded", "failed"
BUSY_TIMEOUT = 30.0  # seconds a write waits for a lock another process holds on the database
STATUSES = (PENDING, PROCESSING, UPLOADED, FAILED)


# SQLite's integers are 64-bit signed: an mtime past 2262-04-11 or before 1677-09-21 (tmpfs, XFS
# and btrfs take them) is recorded as that day. Every size-and-mtime comparison goes through
# ``mtime_ns``, so both sides agree.
MAX_MTIME_NS = (1 << 63) - 1


def mtime_ns(st: os.stat_result) -> int:
    """``st``'s mtime in nanoseconds as the state records it."""
    return max(-MAX_MTIME_NS - 1, min(st.st_mtime_ns, MAX_MTIME_NS))


class StateError(Exception):
    """The state database cannot be opened or is held by another ``s3proc run``."""


class StateUnavailable(StateError):
    """The state database failed while running: locked by another process past the busy
    timeout, its disk full, an I/O error. The service stops rather than go on without it (the
    transaction that failed was rolled back: what is recorded stays consistent)."""


class KeysTaken(StateError):
    """Both keys a source asked for are owned by other sources (``claim_key``)."""


@dataclass(frozen=True)
class FileRow:
    """One watched file as the state knows it."""

    path: str  # relative to the watch dir, '/'-separated
    size: int
    mtime_ns: int
    status: str
    sha256: str | None  # content last uploaded
    attempts: int
    error: str | None
    updated_at: float


@dataclass(frozen=True)
class ObjectRow:
    """A key in S3 owned by one source."""

    key: str
    path: str
    entry: str  # archive entry name; '' for the file itself
    sha256: str | None  # source content now in S3 under this key; None: claimed, never completed
    etag: str | None
    size: int | None
    rows: int | None
    upload_id: str | None  # a multipart upload in flight
    upload_sha256: str | None = None  # the source content that upload carries (to resume it)
    upload_kind: str | None = None  # how it was created (checksum, encryption, storage class)


class State(Protocol):
    """The state interface the service depends on (one transaction per call)."""

    def observe(self, seen: Iterable[tuple[str, int, int]], now: float) -> list[tuple[str, str]]: ...
    def defer(self, path: str, until: float) -> None: ...
    def forget_pending(self, path: str) -> bool: ...
    def moved_away(self, path: str, size: int, mtime_ns: int) -> None: ...
    def ready(self, before: float, limit: int) -> list[FileRow]: ...
    def claim_all(self, files: Iterable[tuple[str, int, int]]) -> list[FileRow]: ...
    def release(self, path: str) -> None: ...
    def get(self, path: str) -> FileRow | None: ...
    def finish(self, path: str, size: int, mtime_ns: int, sha256: str) -> bool: ...
    def fail(self, path: str, error: str) -> None: ...
    def failed(self) -> list[FileRow]: ...
    def retry_failed(self, path: str) -> bool: ...
    def recover(self) -> list[FileRow]: ...
    def claim_key(self, path: str, entry: str, key: str, alternative: str) -> ObjectRow: ...
    def objects_of(self, path: str) -> list[ObjectRow]: ...
    def owner_of(self, key: str) -> ObjectRow | None: ...
    def upload_started(self, key: str, upload_id: str, sha256: str, kind: str) -> None: ...
    def upload_ended(self, key: str) -> None: ...
    def object_done(self, key: str, sha256: str, etag: str, size: int, rows: int | None) -> None: ...
    def drop_object(self, key: str) -> None: ...
    def uploads_in_flight(self) -> list[ObjectRow]: ...
    def record_skipped(self, path: str, skipped: Iterable[tuple[str, str]]) -> None: ...
    def finished_before(self, before: float, after: str, limit: int) -> list[tuple[str, str]]: ...
    def forget(self, paths: Iterable[str], before: float) -> int: ...
    def skipped(self, limit: int) -> list[tuple[str, str, str]]: ...
    def counts(self) -> dict[str, int]: ...
    def recent(self, status: str, limit: int) -> list[FileRow]: ...
    def rebuilt(self) -> bool: ...
    def bind_destination(self, destination: str) -> None:
        """Ties the state to ``destination`` (``s3://bucket/prefix``) at its first use.

        Raises:
            StateError: it records uploads to another destination: there, its files would be
                taken as uploaded and nothing sent.
        """

    def mark_rebuilt(self) -> None: ...
    def own_files(self) -> list[Path]:
        """The local files the state writes (the watcher leaves them alone)."""
        ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path         TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    stable_since REAL NOT NULL,
    status       TEXT NOT NULL,
    sha256       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_queue ON files (status, stable_since);
CREATE TABLE IF NOT EXISTS objects (
    key        TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    entry      TEXT NOT NULL DEFAULT '',
    sha256     TEXT,
    etag       TEXT,
    size       INTEGER,
    rows       INTEGER,
    upload_id  TEXT,
    updated_at REAL NOT NULL,
    upload_sha256 TEXT,
    upload_kind TEXT
);
CREATE INDEX IF NOT EXISTS objects_source ON objects (path, entry);
CREATE INDEX IF NOT EXISTS objects_in_flight ON objects (upload_id) WHERE upload_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS skipped (
    path   TEXT NOT NULL,
    entry  TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY (path, entry)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
"""

_FILE_COLS = "path, size, mtime_ns, status, sha256, attempts, error, updated_at"
_OBJECT_COLS = "key, path, entry, sha256, etag, size, rows, upload_id, upload_sha256, upload_kind"


class SqliteState:
    """The embedded backend: one SQLite file in WAL mode, shared by the worker threads.

    Args:
        path: The database file (created with its folder if missing).
        exclusive: Hold an advisory lock on the file so that a second ``s3proc run`` on the
            same state fails at start-up instead of processing files twice.
        synchronous: SQLite's ``synchronous`` pragma: ``FULL`` survives power loss,
            ``NORMAL`` survives a crash or ``kill -9`` of s3proc.
    """

    def __init__(self, path: str | os.PathLike[str], exclusive: bool = False, synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lockfd: int | None = None
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._sync = synchronous.upper()
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(objects)")}
            for column in ("upload_sha256", "upload_kind"):  # a state written by an earlier version
                if column not in columns:
                    self._db.execute(f"ALTER TABLE objects ADD COLUMN {column} TEXT")
            # A new state must be rebuilt from S3 before use; one an earlier version used knows.
            self._db.execute(
                "INSERT OR IGNORE INTO meta SELECT 'rebuilt', CASE WHEN EXISTS (SELECT 1 FROM files)"
                " OR EXISTS (SELECT 1 FROM objects) THEN '1' ELSE '0' END"
            )
        except sqlite3.Error as e:
            raise StateError(f"cannot open the state database {self.path}: {e}") from None
        if exclusive:
            # flock and SQLite's own fcntl locks do not interact, so this lock only ever
            # meets another s3proc, and it needs no file of its own.
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._db.close()
                raise StateError(f"another s3proc run is using the state database {self.path}") from None
            self._lockfd = fd

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; ``durable=False``: committed without a flush to disk."""
        lazy = not durable and self._sync in ("FULL", "EXTRA")
        with self._lock, self._failures():
            if lazy:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if lazy:
                    self._db.execute(f"PRAGMA synchronous={self._sync}")

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock, self._failures():
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            code = getattr(e, "sqlite_errorname", None)  # SQLITE_IOERR_WRITE says more than "disk I/O error"
            detail = f"{e} ({code})" if code else str(e)
            raise StateUnavailable(f"the state database {self.path} failed: {detail}") from e

    # ------------------------------------------------------------------ the queue
    def observe(self, seen: Iterable[tuple[str, int, int]], now: float) -> list[tuple[str, str]]:
        """Records what a scan or an event saw, ``(path, size, mtime_ns)`` each, in one transaction.

        New or changed content is queued. The quiet period counts from when this size and mtime
        were first seen, or from the mtime itself when that is older (a file found at start-up
        that nobody touches). A file that changes while it is processed stays ``processing``:
        ``finish()`` sees the new size and mtime and queues it again.

        Returns:
            ``(path, status)`` of the files seen that are ``uploaded`` or ``failed`` with the
            size and mtime recorded then: still where they were when that was recorded.
        """
        settled: list[tuple[str, str]] = []
        with self._tx(durable=False) as db:
            for path, size, mtime_ns in seen:
                since = min(now, mtime_ns / 1e9)
                row = db.execute("SELECT size, mtime_ns, status FROM files WHERE path=?", (path,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO files (path, size, mtime_ns, stable_since, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (path, size, mtime_ns, since, PENDING, now, now),
                    )
                elif (row[0], row[1]) == (size, mtime_ns):
                    if row[2] in (UPLOADED, FAILED):
                        settled.append((path, row[2]))
                else:
                    status = PROCESSING if row[2] == PROCESSING else PENDING
                    db.execute(
                        "UPDATE files SET size=?, mtime_ns=?, stable_since=?, status=?,"
                        " attempts=CASE WHEN ?=? THEN attempts ELSE 0 END, error=NULL, updated_at=?"
                        " WHERE path=?",
                        (size, mtime_ns, since, status, status, PROCESSING, now, path),
                    )
        return settled

    def defer(self, path: str, until: float) -> None:
        """A pending file is not ready yet (held open by a writer): look again after ``until``."""
        with self._tx() as db:
            db.execute("UPDATE files SET stable_since=? WHERE path=? AND status=?", (until, path, PENDING))

    def forget_pending(self, path: str) -> bool:
        """``path`` is gone: drop it if it was only waiting (what was uploaded stays known).

        A file uploaded before and gone while its new content waited is ``uploaded`` again, as
        its last upload left it, with no size or mtime that a file can have: should it come back,
        it is queued and its content compared with what was uploaded.

        A waiting file with a multipart upload in flight (kept by ``recover`` to be resumed)
        stays, to be claimed: its processing aborts the upload. Returns whether it was forgotten.
        """
        in_flight = "SELECT 1 FROM objects WHERE path=? AND upload_id IS NOT NULL"
        with self._tx() as db:
            if db.execute(in_flight, (path,)).fetchone():
                return False
            db.execute("DELETE FROM files WHERE path=? AND status=? AND sha256 IS NULL", (path, PENDING))
            db.execute(
                "UPDATE files SET status=?, size=-1, mtime_ns=-1, updated_at=? WHERE path=? AND status=?",
                (UPLOADED, time.time(), path, PENDING),
            )
        return True

    def moved_away(self, path: str, size: int, mtime_ns: int) -> None:
        """The uploaded file ``path`` (``size``, ``mtime_ns``) was deleted or moved away: its row
        keeps no size or mtime that a file can have, so that a file put at its path later, even
        one with that size and mtime (``cp -p``, ``rsync -t``), is queued and its content
        compared with what was uploaded."""
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE files SET size=-1, mtime_ns=-1 WHERE path=? AND status=? AND size=? AND mtime_ns=?",
                (path, UPLOADED, size, mtime_ns),
            )

    def ready(self, before: float, limit: int) -> list[FileRow]:
        """Pending files quiet since ``before``, oldest first."""
        rows = self._query(
            f"SELECT {_FILE_COLS} FROM files WHERE status=? AND stable_since<=?"
            " ORDER BY stable_since LIMIT ?",
            PENDING,
            before,
            limit,
        )
        return [FileRow(*r) for r in rows]

    def claim(self, path: str, size: int, mtime_ns: int) -> FileRow | None:
        """One file's ``claim_all`` (not part of ``State``): its row, or None."""
        got = self.claim_all([(path, size, mtime_ns)])
        return got[0] if got else None

    def claim_all(self, files: Iterable[tuple[str, int, int]]) -> list[FileRow]:
        """Marks each pending file ``(path, size, mtime_ns)`` ``processing`` if it still has this
        size and mtime, all in one transaction; returns the claimed rows."""
        now = time.time()
        claimed = []
        with self._tx(durable=False) as db:
            for path, size, mtime_ns in files:
                cur = db.execute(
                    "UPDATE files SET status=?, attempts=attempts+1, updated_at=?"
                    " WHERE path=? AND status=? AND size=? AND mtime_ns=?",
                    (PROCESSING, now, path, PENDING, size, mtime_ns),
                )
                if cur.rowcount == 1:
                    row = db.execute(f"SELECT {_FILE_COLS} FROM files WHERE path=?", (path,)).fetchone()
                    claimed.append(FileRow(*row))
        return claimed

    def release(self, path: str) -> None:
        """A claimed file that was never started goes back to the queue as it was."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET status=?, attempts=max(attempts-1, 0) WHERE path=? AND status=?",
                (PENDING, path, PROCESSING),
            )

    def get(self, path: str) -> FileRow | None:
        rows = self._query(f"SELECT {_FILE_COLS} FROM files WHERE path=?", path)
        return FileRow(*rows[0]) if rows else None

    def finish(self, path: str, size: int, mtime_ns: int, sha256: str) -> bool:
        """Marks ``path`` uploaded; False (and queued again) if it changed meanwhile."""
        now = time.time()
        with self._tx(durable=False) as db:
            cur = db.execute(
                "UPDATE files SET status=?, sha256=?, error=NULL, updated_at=?"
                " WHERE path=? AND size=? AND mtime_ns=?",
                (UPLOADED, sha256, now, path, size, mtime_ns),
            )
            if cur.rowcount == 1:
                return True
            db.execute("UPDATE files SET status=?, updated_at=? WHERE path=?", (PENDING, now, path))
            return False

    def fail(self, path: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE files SET status=?, error=?, updated_at=? WHERE path=?",
                (FAILED, error, time.time(), path),
            )

    def failed(self) -> list[FileRow]:
        """The failed files, in path order."""
        rows = self._query(f"SELECT {_FILE_COLS} FROM files WHERE status=? ORDER BY path", FAILED)
        return [FileRow(*r) for r in rows]

    def retry_failed(self, path: str) -> bool:
        """A failed file back to the queue (attempts reset); False if it is not failed."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE files SET status=?, attempts=0, error=NULL, stable_since=0, updated_at=?"
                " WHERE path=? AND status=?",
                (PENDING, time.time(), path, FAILED),
            )
        return cur.rowcount == 1

    def recover(self) -> list[FileRow]:
        """At start-up: files left ``processing`` by a crash go back to the queue."""
        with self._tx() as db:
            rows = db.execute(f"SELECT {_FILE_COLS} FROM files WHERE status=?", (PROCESSING,)).fetchall()
            db.execute(
                "UPDATE files SET status=?, stable_since=0, updated_at=? WHERE status=?",
                (PENDING, time.time(), PROCESSING),
            )
        return [FileRow(*r) for r in rows]

    # ------------------------------------------------------------------ objects
    def claim_key(self, path: str, entry: str, key: str, alternative: str) -> ObjectRow:
        """The key the source ``(path, entry)`` uploads to: its own from before, else ``key``,
        else (when another source owns ``key``) ``alternative``."""
        now = time.time()
        with self._tx() as db:
            mine = db.execute(
                f"SELECT {_OBJECT_COLS} FROM objects WHERE key IN (?, ?) AND path=? AND entry=?"
                " ORDER BY key=? DESC",
                (key, alternative, path, entry, key),
            ).fetchone()
            if mine is not None:
                return ObjectRow(*mine)
            for candidate in (key, alternative):
                row = db.execute(f"SELECT {_OBJECT_COLS} FROM objects WHERE key=?", (candidate,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO objects (key, path, entry, updated_at) VALUES (?, ?, ?, ?)",
                        (candidate, path, entry, now),
                    )
                    return ObjectRow(candidate, path, entry, None, None, None, None, None, None)
                if (row[1], row[2]) == (path, entry):
                    return ObjectRow(*row)
        raise KeysTaken(f"keys {key!r} and {alternative!r} are both owned by other sources")

    def objects_of(self, path: str) -> list[ObjectRow]:
        rows = self._query(f"SELECT {_OBJECT_COLS} FROM objects WHERE path=? ORDER BY key", path)
        return [ObjectRow(*r) for r in rows]

    def owner_of(self, key: str) -> ObjectRow | None:
        rows = self._query(f"SELECT {_OBJECT_COLS} FROM objects WHERE key=?", key)
        return ObjectRow(*rows[0]) if rows else None

    def upload_started(self, key: str, upload_id: str, sha256: str, kind: str) -> None:
        """A multipart upload of the source content ``sha256`` was created for ``key``, with
        the settings ``kind`` (``Uploader.upload_kind``)."""
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET upload_id=?, upload_sha256=?, upload_kind=?, updated_at=? WHERE key=?",
                (upload_id, sha256, kind, time.time(), key),
            )

    def upload_ended(self, key: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET upload_id=NULL, upload_sha256=NULL, upload_kind=NULL, updated_at=?"
                " WHERE key=?",
                (time.time(), key),
            )

    def object_done(self, key: str, sha256: str, etag: str, size: int, rows: int | None) -> None:
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE objects SET sha256=?, etag=?, size=?, rows=?, upload_id=NULL, upload_sha256=NULL,"
                " upload_kind=NULL,"
                " updated_at=? WHERE key=?",
                (sha256, etag, size, rows, time.time(), key),
            )

    def drop_object(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM objects WHERE key=?", (key,))

    def uploads_in_flight(self) -> list[ObjectRow]:
        rows = self._query(f"SELECT {_OBJECT_COLS} FROM objects WHERE upload_id IS NOT NULL")
        return [ObjectRow(*r) for r in rows]

    def record_skipped(self, path: str, skipped: Iterable[tuple[str, str]]) -> None:
        """The entries of archive ``path`` that its last processing skipped, with the reasons
        (links, devices, unsafe names): they replace what an earlier content left."""
        now = time.time()
        with self._tx(durable=False) as db:
            db.execute("DELETE FROM skipped WHERE path=?", (path,))
            db.executemany(
                "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)",
                [(path, entry, reason, now) for entry, reason in skipped],
            )

    def finished_before(self, before: float, after: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` files uploaded or failed, last changed before ``before``, as
        ``(path, status)`` in path order from after ``after`` (a page: the next starts after the
        last path of this one)."""
        rows = self._query(
            "SELECT path, status FROM files WHERE path>? AND status IN (?, ?) AND updated_at<?"
            " ORDER BY path LIMIT ?",
            after,
            UPLOADED,
            FAILED,
            before,
            limit,
        )
        return [(str(p), str(s)) for p, s in rows]

    def forget(self, paths: Iterable[str], before: float) -> int:
        """Drops the rows of the files in ``paths`` (gone: from the watch dir, and a failed one
        from the error folder too) that are still uploaded or failed and last changed before
        ``before``, with their archive's skipped entries; the objects they put in S3 stay known
        (a file that comes back with that content is found unchanged by its objects). Returns
        how many were dropped."""
        dropped = 0
        with self._tx(durable=False) as db:
            for path in paths:
                cur = db.execute(
                    "DELETE FROM files WHERE path=? AND status IN (?, ?) AND updated_at<?",
                    (path, UPLOADED, FAILED, before),
                )
                if cur.rowcount:
                    dropped += 1
                    db.execute("DELETE FROM skipped WHERE path=?", (path,))
        return dropped

    # ------------------------------------------------------------------ reports
    def skipped(self, limit: int) -> list[tuple[str, str, str]]:
        """(archive path, entry, reason) of skipped entries, newest first."""
        rows = self._query(
            "SELECT path, entry, reason FROM skipped ORDER BY at DESC, path, entry LIMIT ?", limit
        )
        return [(str(p), str(e), str(r)) for p, e, r in rows]

    def counts(self) -> dict[str, int]:
        got = dict(self._query("SELECT status, count(*) FROM files GROUP BY status"))
        return {s: int(got.get(s, 0)) for s in STATUSES}

    def recent(self, status: str, limit: int) -> list[FileRow]:
        rows = self._query(
            f"SELECT {_FILE_COLS} FROM files WHERE status=? ORDER BY updated_at DESC LIMIT ?", status, limit
        )
        return [FileRow(*r) for r in rows]

    def rebuilt(self) -> bool:
        """Whether the state knows what s3proc wrote under its prefix: it was rebuilt from S3
        to the end (a first start, a lost database), or made by a version before this record.
        A start that failed, or a rebuild cut short, leaves it False."""
        return self._query("SELECT value FROM meta WHERE name='rebuilt'") == [("1",)]

    def own_files(self) -> list[Path]:
        return [self.path.with_name(self.path.name + end) for end in ("", "-wal", "-shm", "-journal")]

    def mark_rebuilt(self) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('rebuilt', '1')")

    def bind_destination(self, destination: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('destination', ?)", (destination,))
            (bound,) = db.execute("SELECT value FROM meta WHERE name='destination'").fetchone()
        if bound != destination:
            raise StateError(
                f"the state database {self.path} records what was uploaded to {bound}, not to"
                f" {destination}: give the new destination a state of its own (--state)"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None


def open_state(location: str | os.PathLike[str], exclusive: bool = False, synchronous: str = "FULL") -> State:
    """Opens the state at ``location`` (a file path; URLs for other backends come later)."""
    text = os.fspath(location)
    if "://" in text and not text.startswith("sqlite://"):
        raise StateError(f"unsupported state location {text!r}: only a SQLite file path is supported")
    return SqliteState(text.removeprefix("sqlite://"), exclusive=exclusive, synchronous=synchronous)
