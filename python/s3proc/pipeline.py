"""The life of one file, once it is complete: decide, process, upload, record, finish.

1. **Decide**: SHA-256 of the content, streamed. When every object the file produced before
   holds this content, there is nothing to do.
2. **Process**: each result of the file is a stream of chunks: a table → ``ParquetChunks``,
   anything else → its bytes. One input may give several results (archive entries, later);
   each has its own key and its own row in the state.
3. **Upload**: ``Uploader.upload`` (exactly once, verified), keys claimed in the state first.
4. **Record**: each object as it completes; then the file, unless it changed meanwhile.
5. **Finish**: keep, delete or move the file. A file that cannot be processed goes to the
   error folder with ``<name>.error.json`` beside it; the service goes on.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import botocore.exceptions

from s3proc import _core, safepath
from s3proc.archives import archive_results, converted, is_archive, source_name
from s3proc.config import move_folder
from s3proc.errors import ParseError, S3procError
from s3proc.keys import KEY_CHOICES, BadKey, KeyMaker, alternatives, is_tabular
from s3proc.logs import FileLog, for_file
from s3proc.safepath import Opened
from s3proc.state import FAILED, UPLOADED, FileRow, KeysTaken, ObjectRow, State, mtime_ns
from s3proc.uploader import (
    META_FORMAT,
    META_ROWS,
    Cancelled,
    IntegrityError,
    Resume,
    Uploaded,
    Uploader,
    UploadError,
    describe,
    unavailable,
)

HASH_BLOCK = 1 << 20
INTEGRITY_ATTEMPTS = 3
ENTRY_CONCURRENCY = 2  # an archive's small entries shipped at once (each up to HEAD_BYTES)
log = logging.getLogger("s3proc.pipeline")

PARTIAL = ".s3proc-partial-"  # a copy on its way to another filesystem (a dot name: never shipped)
ASIDE = ".s3proc-aside."  # a file taken aside to be deleted or moved, once it is known to be the one
NAME_MAX = 255
NOTE = ".error.json"  # a failed file's note, beside it in the error folder
INPUT = ".s3proc-input"  # added in the error folder to a file's name that ends like a note's


@dataclass(frozen=True)
class Settings:
    """How files are processed and where results go."""

    root: Path
    keys: KeyMaker
    error_dir: Path
    after_upload: str = "keep"  # keep | delete | move:DIR
    part_size: int = 8 << 20
    convert: dict[str, Any] = field(default_factory=dict)  # the converter's options


@dataclass
class Result:
    """One stream a file produces, and where it goes."""

    entry: str  # '' for the file itself; an archive entry's name
    parquet: bool
    open_chunks: Callable[[], Iterator[bytes]]
    rows: Callable[[], int | None] = lambda: None
    detached: bool = False  # its bytes are in memory: it can be shipped beside the next ones
    warnings: Callable[[], list[str]] = list  # what the conversion found worth a warning


@dataclass(frozen=True)
class Outcome:
    """What became of a file: ``uploaded``, ``unchanged``, ``failed``, ``requeued``, ``gone``, or
    ``unavailable`` (S3 could not be used: the file waits in the queue)."""

    status: str
    keys: tuple[str, ...] = ()
    error: str | None = None


def sha256_file(path: Path) -> str:
    """SHA-256 of a file in 1 MiB reads (hashlib releases the GIL on large updates)."""
    with open(path, "rb", buffering=0) as f:
        return _sha256(f)


def _sha256(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while block := f.read(HASH_BLOCK):
        h.update(block)
    return h.hexdigest()


def _hash_in_background(path: Path, rel: str) -> Future[str]:
    """Starts hashing ``path`` in a thread: a new file's first parts are produced meanwhile.

    Opened here: ``path`` may name a descriptor the caller closes before the thread is done
    (a file abandoned at a stop).
    """
    fut: Future[str] = Future()
    f = open(path, "rb", buffering=0)  # noqa: SIM115 (the thread closes it)

    def run() -> None:
        try:
            with f:
                fut.set_result(_sha256(f))
        except BaseException as e:
            fut.set_exception(e)

    threading.Thread(target=run, name=f"sha256 {rel}", daemon=True).start()
    return fut


def _done(sha: str) -> Future[str]:
    fut: Future[str] = Future()
    fut.set_result(sha)
    return fut


def _sha(hashing: Future[str], log: FileLog) -> str:
    sha = hashing.result()
    log.set(sha=sha[:12])
    return sha


def results(path: Path, rel: str, s: Settings, skipped: list[tuple[str, str]]) -> Iterable[Result]:
    """What ``path`` turns into: an archive → a result per file entry (converted when tabular;
    the entries it skips are appended to ``skipped``); a table → one Parquet stream; anything
    else → its bytes."""
    if is_archive(rel):
        return archive_results(path, rel, s.part_size, s.convert, Result, skipped)
    if is_tabular(rel):
        options = {**s.convert, "chunk_size": s.part_size, "name": rel}
        return [converted(Result, "", lambda: _core.ParquetChunks(path, **options), detached=False)]

    def raw() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(s.part_size):
                yield chunk

    return [Result("", False, raw)]


def process(row: FileRow, s: Settings, state: State, uploader: Uploader) -> Outcome:
    """Takes one claimed file through its whole life; never raises for bad input or S3 trouble.

    The file is looked at and read walking from the root with no link followed (``safepath``):
    a folder of its path replaced by a link is a vanished file, never read through the link.
    """
    with contextlib.ExitStack() as held:
        return _process(row, s, state, uploader, held)


def _process(
    row: FileRow, s: Settings, state: State, uploader: Uploader, held: contextlib.ExitStack
) -> Outcome:
    log = for_file(row.path, "decide")
    path = s.root / row.path
    started = time.monotonic()
    try:
        st = safepath.regular_stat(s.root, row.path)
    except OSError as e:
        log.warning("cannot look at the file (%s); it waits", e)
        state.release(row.path)
        return Outcome("requeued")
    if st is None:
        log.info("file vanished before processing")
        try:
            objs = state.objects_of(row.path)
            _end_uploads(objs, state, uploader)  # left by a crash: nothing to resume
            if mixed(row, objs):  # nothing would finish it now: withdrawn, as a failed one is
                _withdraw(row.path, state, uploader, log)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            log.warning("S3 is unavailable (%s); the file waits", describe(e))
            state.release(row.path)
            return Outcome("unavailable", error=describe(e))
        except Cancelled:
            log.warning("stopped before finishing; the file is redone at the next start")
            return Outcome("requeued")
        state.release(row.path)  # back to waiting, to be forgotten as any vanished waiting file
        state.forget_pending(row.path)
        return Outcome("gone")
    if (st.st_size, mtime_ns(st)) != (row.size, row.mtime_ns):
        state.observe([(row.path, st.st_size, mtime_ns(st))], time.time())
        state.finish(row.path, -1, -1, "")  # not the processed content: back to the queue
        return Outcome("requeued")
    done: list[tuple[Uploaded, int | None]] = []
    hashing: Future[str] | None = None
    try:
        src: Opened | None = held.enter_context(safepath.open_regular(s.root, row.path))
        if src is None or (src.st.st_size, mtime_ns(src.st), src.st.st_ino) != (
            st.st_size,
            mtime_ns(st),
            st.st_ino,
        ):
            state.finish(row.path, -1, -1, "")  # replaced since: back to the queue, looked at anew
            return Outcome("requeued")
        source = Path(src.path)  # this very file, whatever its path becomes meanwhile
        held_fd = src.fd

        def unchanged() -> bool:  # not written to in place since it was opened
            now = os.fstat(held_fd)
            return (now.st_size, mtime_ns(now)) == (st.st_size, mtime_ns(st))

        before = state.objects_of(row.path)
        hashing = (
            _hash_in_background(source, row.path) if row.size > s.part_size else _done(sha256_file(source))
        )
        # Only a path that produced objects before can be unchanged: wait for the hash. An
        # archive's objects are all there only once its processing finished (a crash can leave
        # some entries uploaded): it is unchanged only if that finish recorded this content.
        sha = hashing.result() if before else ""
        if before:
            log.set(sha=sha[:12])
        if (
            before
            and all(o.sha256 == sha for o in before)
            and (not is_archive(row.path) or row.sha256 == sha)
            and _still_stored(before, uploader)
        ):
            _end_uploads(before, state, uploader)  # of a change a crash cut short, now undone
            if not _finish(s.root, row, st, sha, state):
                log.info("changed while it was hashed; queued again", extra={"stage": "decide"})
                return Outcome("requeued")
            log.info("unchanged content: already uploaded", extra={"stage": "decide"})
            _after_upload(path, row.path, st, s, state, log)
            return Outcome("unchanged", tuple(o.key for o in before))
        log.set(stage="process")
        skipped: list[tuple[str, str]] = []
        try:
            done = _ship_all(
                _claimed(
                    results(source, row.path, s, skipped), row.path, st.st_mtime, s, state, skipped, log
                ),
                lambda r, obj: _ship(r, obj, row, hashing, s, state, uploader, log, unchanged),
            )
        finally:
            if is_archive(row.path):
                state.record_skipped(row.path, skipped)
        sha = hashing.result()
        produced = {u.key for u, _ in done}
        for stale in [o for o in before if o.key not in produced]:
            if s.keys.dated:  # an earlier version, under its own date: it stays
                _end_uploads([stale], state, uploader)
                state.drop_object(stale.key)
                log.info("kept the object of an earlier version, under its date", extra={"key": stale.key})
            elif _remove_ours(stale, state, uploader):
                log.info("deleted an object the new content no longer produces", extra={"key": stale.key})
    except Cancelled:
        log.warning("stopped before finishing; the file is redone at the next start")
        return Outcome("requeued")
    except (
        ParseError,
        S3procError,
        BadKey,
        OSError,
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
    ) as e:
        if unavailable(e):  # S3's trouble, not the file's: back to the queue
            log.warning("S3 is unavailable (%s); the file waits", describe(e))
            state.release(row.path)
            return Outcome("unavailable", error=describe(e))
        reason = _reason(e)
        # The conversion runs as its chunks are uploaded: what failed says which it was.
        s3 = isinstance(e, (UploadError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError))
        if not s3:
            log.set(stage="process")
        stage = log.extra.get("stage") if log.extra else None
        if hashing is not None:
            with contextlib.suppress(OSError):
                log.set(sha=hashing.result()[:12])
        if is_archive(row.path):
            try:
                _withdraw(row.path, state, uploader, log)
            except Cancelled:  # a stop cut the withdrawal short: the next start redoes the file
                log.warning("stopped while withdrawing the failed archive; it is redone at the next start")
                return Outcome("requeued")
        if _changed(s.root, row, st, state):  # a writer still at work: it was not the whole file
            log.warning("failed while the file changed: queued again (%s)", reason, extra={"stage": stage})
            state.finish(row.path, -1, -1, "")
            return Outcome("requeued")
        log.error("failed: %s", reason, extra={"stage": stage})
        # One kept to be resumed; if S3 or a stop prevents it, the next start aborts it.
        with contextlib.suppress(
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, Cancelled
        ):
            _end_uploads(state.objects_of(row.path), state, uploader)
        state.fail(row.path, reason)
        _to_error_dir(path, row, reason, s, log)
        return Outcome("failed", error=reason)
    if not _finish(s.root, row, st, sha, state):
        log.info("changed while it was processed; queued again")
        return Outcome("requeued", tuple(u.key for u, _ in done))
    rows = [r for _, r in done if r is not None]
    out = sum(u.size for u, _ in done)
    log.info(
        "uploaded",
        extra={
            "stage": "done",
            "rows": sum(rows) if rows else None,
            "bytes_in": row.size,
            "bytes_out": out,
            "ratio": round(out / row.size, 4) if row.size else None,
            "seconds": round(time.monotonic() - started, 3),
            "keys": [u.key for u, _ in done],
        },
    )
    _after_upload(path, row.path, st, s, state, log)
    return Outcome("uploaded", tuple(u.key for u, _ in done))


def mixed(row: FileRow, objs: Iterable[ObjectRow]) -> bool:
    """Whether ``objs``, the objects of the archive ``row``, are not all of the version whose
    processing last finished: a crash cut the processing of another short."""
    return is_archive(row.path) and any(o.sha256 not in (None, row.sha256) for o in objs)


def _changed(root: Path, row: FileRow, st: os.stat_result, state: State) -> bool:
    """Whether the file changed since it was claimed (``st``), its new size and mtime then
    recorded: a watcher event may come late, or never with --once. Deleted since: unchanged,
    what was read is what it was. Reached only through a link now (a folder of its path
    replaced by one): changed, and queued to be forgotten, lest a delete or a move after it act
    on the file behind the link."""
    now = safepath.lstat(root, row.path)
    if now is None:
        if not os.path.lexists(root / row.path):
            return False
        state.observe([(row.path, -1, -1)], time.time())
        return True
    if (now.st_size, mtime_ns(now), now.st_ino) == (st.st_size, mtime_ns(st), st.st_ino):
        return False
    state.observe([(row.path, now.st_size, mtime_ns(now))], time.time())
    return True


def _finish(root: Path, row: FileRow, st: os.stat_result, sha: str, state: State) -> bool:
    """Records the file as done with ``sha``; False (it is queued again, and what went up is
    replaced by the next pass) when it changed since it was claimed."""
    _changed(root, row, st, state)
    return state.finish(row.path, row.size, row.mtime_ns, sha)


def _end_uploads(objs: Iterable[ObjectRow], state: State, uploader: Uploader) -> None:
    """Aborts the multipart uploads the state has in flight for ``objs``."""
    for o in objs:
        if o.upload_id and uploader.abort(o.key, o.upload_id):
            state.upload_ended(o.key)


def _still_stored(objects: list[ObjectRow], uploader: Uploader) -> bool:
    """Whether S3 holds each object as s3proc recorded it (one HEAD each): one deleted or
    replaced behind s3proc's back (a lifecycle rule, a consumer) is uploaded again."""
    return all(
        (got := uploader.stored_version(o.key, source_name(o.path, o.entry))) is not None
        and got[:2] == (o.sha256, o.etag)
        for o in objects
    )


def _remove_ours(o: ObjectRow, state: State, uploader: Uploader) -> bool:
    """Removes what s3proc made for the object row ``o``: its upload in flight, then the object
    when it holds what s3proc wrote for this source (never another writer's object, such as the
    one that made a claimed key fail); then the row. Returns whether an object was deleted."""
    _end_uploads([o], state, uploader)
    ours = uploader.stored_version(o.key, source_name(o.path, o.entry)) is not None
    if ours:
        uploader.delete(o.key)
    state.drop_object(o.key)
    return ours


def _withdraw(rel: str, state: State, uploader: Uploader, log: FileLog) -> None:
    """An archive failed part-way: none of its objects stays in S3, lest a part of it pass for
    the whole."""
    objs = state.objects_of(rel)
    for o in objs:
        with contextlib.suppress(botocore.exceptions.ClientError):
            _remove_ours(o, state, uploader)
        state.drop_object(o.key)  # S3 refusing a delete or a HEAD leaves nothing to redo
    if objs:
        log.info("withdrew the %d object(s) of the failed archive", len(objs))


def _claimed(
    results: Iterable[Result],
    rel: str,
    mtime: float,
    s: Settings,
    state: State,
    skipped: list[tuple[str, str]],
    log: FileLog,
) -> Iterator[tuple[Result, ObjectRow]]:
    """Each result with the key it claims, in order (an archive's entries are shipped two at a
    time: which of two entries mapping to one key gets the alternative must not be a race). An
    entry whose name gives no key (too long) is skipped, as links are; the file itself fails."""
    for r in results:
        try:
            wanted = s.keys.key(rel, parquet=r.parquet, mtime=mtime, entry=r.entry)
        except BadKey as e:
            if not r.entry:
                raise
            log.warning("skipped entry %s: %s", r.entry, e)
            skipped.append((r.entry, str(e)))
            continue
        obj = _claim(state, rel, r.entry, wanted)
        if obj.key != wanted:
            log.warning("another source owns %s; using %s", wanted, obj.key, extra={"key": obj.key})
        yield r, obj


def _claim(state: State, rel: str, entry: str, wanted: str) -> ObjectRow:
    """The key the source ``(rel, entry)`` uploads to: its own from before, else ``wanted``,
    else the first free of its alternatives, in an order that is the same on every run
    (``alternative`` of the source's name, then of the name with ``~2``, ``~3``… added)."""
    source = source_name(rel, entry)
    first, *more = alternatives(wanted, source)
    try:
        return state.claim_key(rel, entry, wanted, first)
    except KeysTaken:  # both taken by other sources (the alternative by a name that gives it)
        pass
    own = {o.key for o in state.objects_of(rel) if o.entry == entry}
    for key in [k for k in more if k in own] + more:
        with contextlib.suppress(KeysTaken):
            return state.claim_key(rel, entry, key, key)
    raise BadKey(f"{wanted} and its {KEY_CHOICES} alternatives are all taken by other sources")


def _ship_all(
    results: Iterable[tuple[Result, ObjectRow]],
    ship: Callable[[Result, ObjectRow], tuple[Uploaded, int | None]],
) -> list[tuple[Uploaded, int | None]]:
    """Ships ``results`` in order. Detached ones (an archive's small entries, read into memory)
    go ``ENTRY_CONCURRENCY`` at a time, so that converting and uploading one overlaps the next;
    any other waits for those in flight and is shipped alone, before the next result is taken.
    On an error the others in flight end before it is raised."""
    done: list[tuple[Uploaded, int | None]] = []
    flight: deque[Future[tuple[Uploaded, int | None]]] = deque()
    with ThreadPoolExecutor(ENTRY_CONCURRENCY, thread_name_prefix="s3proc-entry") as pool:
        for r, obj in results:
            while flight and (not r.detached or len(flight) >= ENTRY_CONCURRENCY):
                done.append(flight.popleft().result())
            if r.detached:
                flight.append(pool.submit(contextvars.copy_context().run, ship, r, obj))
            else:
                done.append(ship(r, obj))
        done.extend(f.result() for f in flight)
    return done


def _ship(
    r: Result,
    obj: ObjectRow,
    row: FileRow,
    hashing: Future[str],
    s: Settings,
    state: State,
    uploader: Uploader,
    log: FileLog,
    unchanged: Callable[[], bool],
) -> tuple[Uploaded, int | None]:
    """Uploads one result to its claimed key and records it; not when the source was written to
    meanwhile (``unchanged``)."""
    source = source_name(row.path, r.entry)
    log.set(stage="upload")
    if_match = obj.etag if obj.sha256 else None
    # An upload a crash left in flight goes on from the parts already there.
    resume = (
        Resume(obj.upload_id, obj.upload_sha256, obj.upload_kind)
        if obj.upload_id and obj.upload_sha256
        else None
    )
    for attempt in range(INTEGRITY_ATTEMPTS):
        try:
            up = uploader.upload(
                obj.key,
                r.open_chunks,
                source=source,
                sha256=lambda: _sha(hashing, log),
                metadata=lambda: (
                    {META_FORMAT: "parquet" if r.parquet else "raw"}
                    | ({META_ROWS: str(n)} if (n := r.rows()) is not None else {})
                ),
                if_match=if_match,
                on_created=lambda upload_id: state.upload_started(
                    obj.key, upload_id, hashing.result(), uploader.upload_kind
                ),
                on_aborted=lambda: state.upload_ended(obj.key),
                inline=row.size <= s.part_size,
                resume=resume if attempt == 0 else None,
                unchanged=unchanged,
            )
            break
        except IntegrityError as e:
            if attempt + 1 == INTEGRITY_ATTEMPTS:
                raise
            log.warning("integrity check failed, uploading again: %s", e, extra={"key": obj.key})
            if_match = None  # the bad object was removed
    rows = r.rows()
    for warning in r.warnings():
        log.warning(warning, extra={"key": obj.key})
    state.object_done(obj.key, hashing.result(), up.etag, up.size, rows)
    return up, rows


def _reason(e: BaseException) -> str:
    if isinstance(e, ParseError):
        return str(e)
    if isinstance(e, botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError):
        return f"S3: {describe(e)}"
    if isinstance(e, OSError) and not isinstance(e, S3procError):
        return f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
    return str(e)


def settle(row: FileRow, s: Settings, state: State) -> None:
    """Does what a stop (a kill -9) cut short after ``row`` was recorded: the after-upload
    action of an uploaded file, the move to the error folder (with its note) of a failed one.
    Only for the file as it was recorded (same size and mtime), still at its path."""
    path = s.root / row.path
    try:
        st = safepath.regular_stat(s.root, row.path)  # no link followed on the way
    except OSError:
        return
    if st is None or (st.st_size, mtime_ns(st)) != (row.size, row.mtime_ns):
        return
    log = for_file(row.path, "finish")
    if row.status == FAILED:
        log.info("moving the failed file to the error folder, as the last run did not")
        _to_error_dir(path, row, row.error or "failed", s, log)
    elif row.status == UPLOADED and s.after_upload != "keep":
        log.info("after-upload %s of the uploaded file, as the last run did not", s.after_upload)
        _after_upload(path, row.path, st, s, state, log)


def _after_upload(path: Path, rel: str, st: os.stat_result, s: Settings, state: State, log: FileLog) -> None:
    """Deletes or moves the file that was processed (``st``), not what a producer may have put
    at its path since (a new version, renamed into place after the last check for changes):
    the file is first renamed aside to a private name in its folder and compared there. Once
    it is gone, its row keeps no size or mtime a file can have (see ``State.moved_away``)."""
    move = move_folder(s.after_upload)
    if s.after_upload != "delete" and move is None:
        return
    try:
        try:
            taken = _take(path, st)
        except FileNotFoundError:  # gone already: nothing to delete or move
            state.moved_away(rel, st.st_size, mtime_ns(st))
            return
        if taken is None:
            log.info("replaced since it was processed: the new version is left to be processed")
            return
        try:
            if move is None:
                taken.unlink()
            else:
                _move(taken, move / rel)
        except OSError:
            if taken != path:
                _put_back(taken, path)
            raise
        state.moved_away(rel, st.st_size, mtime_ns(st))
    except OSError as e:
        log.warning("after-upload %s failed: %s", s.after_upload, e)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, mtime_ns(a)) == (b.st_dev, b.st_ino, b.st_size, mtime_ns(b))


def _take(path: Path, st: os.stat_result) -> Path | None:
    """``path`` renamed aside (``.s3proc-aside.<name>``, a dot name: never shipped) if it is the
    file of ``st``, and that name; None (the file left, or put back, at ``path``) if it is not."""
    aside = path.with_name(ASIDE + path.name)
    if len(os.fsencode(aside.name)) > _name_max(path.parent):  # no room for the prefix: compared in place
        return path if _same_file(os.lstat(path), st) else None
    os.rename(path, aside)
    if _same_file(os.lstat(aside), st):
        return aside
    _put_back(aside, path)
    return None


def _put_back(aside: Path, path: Path) -> None:
    """A file taken aside goes back to ``path``, unless a newer file is there already (then it
    was replaced twice meanwhile: the newer one is what the path holds)."""
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this filesystem
        if not os.path.lexists(path):
            os.rename(aside, path)
            return
    os.unlink(aside)


def _name_max(folder: Path) -> int:
    """The longest name (bytes) the filesystem of ``folder`` (or of its nearest existing
    ancestor: it may not be made yet) takes."""
    for f in (folder, *folder.parents):
        try:
            return os.pathconf(f, "PC_NAME_MAX")
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            break
    return NAME_MAX


def _suffixed(path: Path, suffix: str) -> Path:
    """``path`` with ``suffix`` added to its name. Where that would pass the filesystem's name
    limit, the name's stem is cut (after a whole character) and ``~`` and a short hash of the
    whole name put in its place, its extension kept: the same name always gives the same one."""
    name = path.name + suffix
    limit = _name_max(path.parent)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    ext = path.suffix if len(os.fsencode(path.suffix)) <= 16 else ""
    tag = "~" + hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    room = limit - len(os.fsencode(tag + ext + suffix))
    stem = os.fsencode(path.name[: len(path.name) - len(ext)])[: max(room, 0)]
    return path.with_name(stem.decode("utf-8", "ignore") + tag + ext + suffix)


def _free(dest: Path, notes: bool = False) -> Path:
    """``dest``, or ``dest.1``, ``dest.2``… (cut to fit, see ``_suffixed``) the first that is
    not taken; with ``notes``, nor its note's name (in the error folder, beside each file)."""
    target, n = dest, 0
    while target.exists() or (notes and _note(target).exists()):
        n += 1
        target = _suffixed(dest, f".{n}")
    return target


def _move(src: Path, dest: Path) -> Path:
    """Moves ``src`` to ``dest`` (``dest.1``, ``dest.2``… if taken); across filesystems too,
    never leaving a part of the file under a name of its own.

    Across filesystems the file is copied to a hidden name beside ``dest``
    (``.s3proc-partial-<hex>``, which the watcher ignores and the next start removes), flushed
    to disk, renamed into place, and only then is ``src`` removed: a crash leaves ``src`` whole
    where it was, and at most both copies whole.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = _free(dest)
    try:
        os.rename(src, target)
        return target
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    partial = target.with_name(f"{PARTIAL}{uuid.uuid4().hex}")
    try:
        shutil.copyfile(src, partial, follow_symlinks=False)
        shutil.copystat(src, partial, follow_symlinks=False)
        _fsync(partial)
        os.rename(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    _fsync(target.parent)  # the new name is durable before the only other copy goes
    os.unlink(src)
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def undo_cut_moves(folder: Path) -> int:
    """Undoes the moves a crash cut short in ``folder`` and below: removes the copies left
    half-made (see ``_move``) and puts back the files taken aside to be deleted or moved (see
    ``_after_upload``; the next scan finds them). Dot folders and links are not entered.
    Returns how many were removed or put back."""
    done = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        stack.append(entry.path)
                elif not entry.is_file(follow_symlinks=False):
                    continue
                elif entry.name.startswith(PARTIAL):
                    os.unlink(entry.path)
                    done += 1
                elif entry.name.startswith(ASIDE) and len(entry.name) > len(ASIDE):
                    home = os.path.join(os.path.dirname(entry.path), entry.name[len(ASIDE) :])
                    if os.path.lexists(home):  # a newer file there: this one is left, said
                        log.warning("%s is left: %s holds a newer file", entry.path, home)
                        continue
                    os.rename(entry.path, home)
                    done += 1
            except OSError:
                continue
    return done


def _note(path: Path) -> Path:
    return _suffixed(path, NOTE)


def error_path(error_dir: Path, rel: str) -> Path:
    """Where the failed file ``rel`` is kept in ``error_dir``: at its own path, but for a name
    ending in ``.error.json`` (the notes' suffix, which no file there may have: a note must never
    be written over a file, nor brought back as one) or in ``.s3proc-input``, which gets
    ``.s3proc-input`` added. Two paths never share a place: only names that end in
    ``.s3proc-input`` there have it added."""
    path = error_dir / rel
    if path.name.lower().endswith((NOTE, INPUT)):
        path = _suffixed(path, INPUT)
    return path


def _to_error_dir(path: Path, row: FileRow, reason: str, s: Settings, log: FileLog) -> None:
    """The file to the error folder, with ``<name>.error.json`` (reason, time, version) beside it.

    The latest failure of a path is at its own name (see ``error_path``), the one ``s3proc
    retry`` brings back: an earlier one still there moves aside to ``<name>.1`` (its note with it).
    """
    dest = error_path(s.error_dir, row.path)
    try:
        # Replaced by a folder (say), or its folder by a link: not this file any more.
        if safepath.regular_stat(s.root, row.path) is None:
            log.warning("not moved to the error folder: no longer a file")
            return
        if dest.exists() or _note(dest).exists():
            older = _free(dest, notes=True)
            if dest.exists():
                dest.rename(older)
            if _note(dest).exists():
                _note(dest).rename(_note(older))
        target = _move(path, dest)
    except OSError as e:
        log.error("cannot move the file to the error folder: %s", e)
        return
    note = {
        "source": row.path,
        "reason": reason,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "attempts": row.attempts,
        "s3proc_version": _core.__version__,
    }
    try:
        _note(target).write_text(json.dumps(note, indent=2) + "\n")
    except OSError as e:  # the reason is still in the state and the log
        log.error("moved to the error folder, but its note cannot be written: %s", e)
        return
    log.info("moved to the error folder", extra={"error_path": str(target)})


def restore_failed(state: State, root: Path, error_dir: Path) -> tuple[int, int, int, int]:
    """Failed files back to the queue, moved back from the error folder where their path is free.

    One file at a time, each moved back before its row is queued again: an interruption leaves
    the files not yet moved back failed, for the next ``s3proc retry`` (a file moved back whose
    row is still failed goes to the error folder again at the next start).

    Returns:
        How many were queued again; how many stay in the error folder because a new file now has
        their path (that one is queued instead); how many are in neither place (they stay
        failed: queued, they would be forgotten as deleted); how many could not be moved back
        (they stay failed, the reason logged).
    """
    for folder in (root, error_dir):
        undo_cut_moves(folder)
    back = kept = missing = stuck = 0
    for row in state.failed():
        src, dest = error_path(error_dir, row.path), root / row.path
        if src.exists() and dest.exists():
            kept += 1
        elif src.exists():
            try:
                _move(src, dest)
            except OSError as e:
                log.warning("cannot move %s back from the error folder: %s", row.path, e)
                stuck += 1
                continue
            _note(src).unlink(missing_ok=True)
            back += 1
        elif dest.exists():
            back += 1
        else:
            missing += 1
            continue
        state.retry_failed(row.path)
    return back, kept, missing, stuck
