"""``s3proc run``: start-up recovery, the scheduler that feeds ready files to workers, shutdown.

Start-up, before any new work: files left ``processing`` by a crash go back to the queue,
and every incomplete multipart upload under the prefix that this state started (its upload id
is recorded, or its key is one the state claimed: a crash can come between the two) is
aborted; their files are redone. The objects of those files are looked up (HEAD): a crash
between S3 completing a new version and the state recording it leaves the state naming the
version before, which would pass a file changed back to that content as already uploaded.
Then a full scan, the watcher, and the loop: every tick, the oldest quiet files are checked
(same size and mtime as recorded, nobody writing) and handed to at most ``concurrency``
workers.

SIGTERM/SIGINT/SIGHUP: no new files; files in flight get ``grace`` seconds to finish, then their
uploads are abandoned (left ``processing``, so the next start redoes them).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from s3proc import logs
from s3proc.archives import is_archive, source_name, split_source
from s3proc.config import FORGET_AFTER, move_folder
from s3proc.keys import KeyMaker
from s3proc.pipeline import Outcome, Settings, error_path, mixed, process, settle, undo_cut_moves
from s3proc.safepath import regular_stat
from s3proc.state import (
    FAILED,
    PENDING,
    PROCESSING,
    UPLOADED,
    FileRow,
    KeysTaken,
    State,
    StateUnavailable,
    mtime_ns,
)
from s3proc.uploader import PROBE_FOLDER, Uploader, describe
from s3proc.watcher import Filter, Watcher, open_for_writing, rescan

log = logging.getLogger("s3proc.service")

TICK = 0.2
M_ARENA_MAX = -8  # glibc's mallopt parameter
STUCK_WAIT = 2.0  # seconds for abandoned workers to stop, past the grace period
FORGET_PAGE = 10_000  # files looked at per rescan for being gone
BACKLOG = 16  # files claimed ahead per worker slot: one /proc scan claims up to this many
PAUSE_MIN, PAUSE_MAX = 5.0, 60.0  # seconds without new files while S3 is unavailable


@dataclass(frozen=True)
class Schedule:
    """When files are looked at."""

    concurrency: int = 4
    quiet_period: float = 2.0
    rescan_interval: float = 60.0
    poll: bool = False
    grace: float = 30.0
    ignore: tuple[str, ...] = ()
    forget_after: float = FORGET_AFTER  # 0: never


def limit_malloc_arenas() -> bool:
    """Caps glibc's malloc arenas at the core count (``MALLOC_ARENA_MAX``), unless the
    environment sets it; returns whether the cap was applied.

    glibc gives each thread that allocates its own arena, up to eight per core, and memory
    freed into one arena serves only the threads on it: chunks made on the converter's threads
    and freed on the upload threads keep RSS some 20 MiB higher for the same work (1 GB CSV:
    peak 229-255 MiB capped, 250-281 MiB not, 7 runs each), and a long-running service creeps.
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, os.cpu_count() or 2))
    except (OSError, AttributeError):
        return False


def recover(state: State, uploader: Uploader, prefix: str) -> None:
    """Undoes what a crash left: files ``processing`` are queued; the multipart uploads they had
    in flight are kept, to go on from their last part when the file is processed again; other
    incomplete uploads of ours are aborted."""
    redo = state.recover()
    if redo:
        log.info("queued %d file(s) left in flight by the last run", len(redo), extra={"stage": "recover"})
    redo_paths = {r.path for r in redo}
    owned = {o.upload_id: o for o in state.uploads_in_flight()}
    kept: set[str] = set()
    aborted = foreign = 0
    probes = 0
    for key, upload_id, _initiated in uploader.incomplete(prefix):
        mine = owned.get(upload_id)
        if key.startswith(f"{prefix}{PROBE_FOLDER}/"):
            # A start-up probe a crash cut short (one another process still has in flight
            # loses nothing: its abort finding the upload gone is fine).
            uploader.abort(key, upload_id)
            probes += 1
        elif mine is not None and mine.key == key and mine.path in redo_paths and mine.upload_sha256:
            kept.add(upload_id)
        elif mine is not None or state.owner_of(key) is not None:
            uploader.abort(key, upload_id)
            aborted += 1
        else:
            foreign += 1
    for o in owned.values():
        if o.upload_id not in kept:
            state.upload_ended(o.key)  # gone from the server, or aborted just now
    if kept:
        log.info(
            "kept %d multipart upload(s) of the last run, to resume", len(kept), extra={"stage": "recover"}
        )
    resynced = 0
    for row in redo:
        for o in state.objects_of(row.path):
            if o.sha256 is None:
                continue  # never recorded complete: uploaded with If-None-Match, a 412 says the rest
            got = uploader.stored_version(o.key, source_name(o.path, o.entry))
            if got is not None and got[:2] != (o.sha256, o.etag):
                state.object_done(o.key, *got)
                resynced += 1
    if resynced:
        log.info(
            "%d object(s) held a version the last run completed but never recorded; state updated",
            resynced,
            extra={"stage": "recover"},
        )
    if aborted:
        log.info(
            "aborted %d incomplete multipart upload(s) of the last run", aborted, extra={"stage": "recover"}
        )
    if probes:
        log.info("aborted %d bucket probe upload(s) a crash left", probes, extra={"stage": "recover"})
    if foreign:
        log.info(
            "%d incomplete multipart upload(s) under the prefix were not started by this state;"
            " left alone (`s3proc cleanup` lists and aborts them)",
            foreign,
            extra={"stage": "recover"},
        )


def rebuild_state(state: State, uploader: Uploader, keys: KeyMaker, root: Path) -> int:
    """Records every object s3proc wrote under the keys' scope (from its metadata), so that a
    lost state database costs no upload: a file whose content is already there is found
    unchanged. Only an object at a key that ``keys`` gives its source is taken: another
    service's, in the same bucket, is not this one's to replace or delete. Returns how many
    objects were recorded."""
    n = 0
    others = 0
    for key, source, sha, etag, size, rows in uploader.ours(keys.scope):
        path, entry = split_source(source, lambda p: (root / p).exists())
        if not keys.gives(key, path, entry, source):
            others += 1
            continue
        try:
            state.claim_key(path, entry, key, key)
        except KeysTaken:
            continue  # the state already gives this key to another source
        state.object_done(key, sha, etag, size, rows)
        n += 1
    state.mark_rebuilt()
    log.info("state rebuilt from S3: %d object(s) recorded", n, extra={"stage": "recover"})
    if others:
        log.info(
            "left %d object(s) of s3proc whose keys this key template does not give (another service's)",
            others,
            extra={"stage": "recover"},
        )
    return n


class Service:
    """The daemon: watcher, scheduler and workers around one state and one uploader."""

    def __init__(self, settings: Settings, schedule: Schedule, state: State, uploader: Uploader, prefix: str):
        self.s, self.sched, self.state, self.uploader, self.prefix = (
            settings,
            schedule,
            state,
            uploader,
            prefix,
        )
        self.flt = Filter(settings.root, schedule.ignore, excluded=self._own_paths())
        self.stopping = threading.Event()  # no new files
        self.hurry = threading.Event()  # a second stop: no grace period either
        self.watch_stop = threading.Event()
        self._wake = threading.Event()  # a worker finished, or a stop was asked for
        self.failed = 0
        self.uploaded = 0
        self.fatal: StateUnavailable | None = None  # the state failed: stop, say why
        self.pause = 0.0  # S3 unavailable: seconds of the current pause (0: none)
        self.paused_until = 0.0
        self.gave_up = False  # --once: S3 stayed unavailable through every pause
        self.stuck = 0  # files whose worker still waited for S3 past the grace period
        self.once = False
        self._forget_from = ""  # where the next look for gone files starts, in path order

    def _forget_gone(self) -> None:
        """Forgets the files uploaded or failed ``forget_after`` ago and gone since from the watch
        dir (and a failed one from the error folder), a page of ``FORGET_PAGE`` rows at a time
        (one per rescan, going round the table), so that the state of a service that deletes or
        moves what it uploaded, or whose error folder is emptied, keeps one row per key it
        wrote (about 300 bytes each), not one per file it ever saw as well: a source keeps its
        key for good (see ``pipeline._claim``)."""
        if not self.sched.forget_after:
            return
        before = time.time() - self.sched.forget_after
        page = self.state.finished_before(before, self._forget_from, FORGET_PAGE)
        self._forget_from = page[-1][0] if len(page) == FORGET_PAGE else ""
        gone = [
            p
            for p, status in page
            if not os.path.lexists(self.s.root / p)
            and (status != FAILED or not os.path.lexists(error_path(self.s.error_dir, p)))
        ]
        if gone and (n := self.state.forget(gone, before)):
            log.info("forgot %d file(s) gone from the watch dir", n, extra={"stage": "forget"})

    def _settle(self, found: list[tuple[str, str]]) -> None:
        """Files a scan found as they were recorded uploaded or failed: what a crash cut short
        after the record (the after-upload action, the move to the error folder) is done now."""
        keep = self.s.after_upload == "keep"
        for path, status in found:
            if status == FAILED or (status == UPLOADED and not keep):
                row = self.state.get(path)
                if row is not None and row.status == status:
                    settle(row, self.s, self.state)
                    logs.clear_file()

    def _undo_cut_moves(self) -> None:
        """Undoes the moves a crash cut short (to the error or move folder, or back into the watch
        dir by ``s3proc retry``): half-made copies removed, files taken aside put back."""
        folders = [self.s.root, self.s.error_dir]
        if (move := move_folder(self.s.after_upload)) is not None:
            folders.append(move)
        if n := sum(undo_cut_moves(f) for f in folders):
            log.info("undid %d move(s) a crash cut short", n, extra={"stage": "recover"})

    def _own_paths(self) -> list[Path]:
        """What s3proc itself writes: the error and move folders, the state's files."""
        paths = [self.s.error_dir, *self.state.own_files()]
        if (move := move_folder(self.s.after_upload)) is not None:
            paths.append(move)
        return [p.resolve() for p in paths]

    def _fail_service(self, e: StateUnavailable) -> None:
        if self.fatal is None:
            self.fatal = e
            log.error("stopping: %s", e)
        self.stopping.set()
        self._wake.set()

    def request_stop(self, signum: int = 0, _frame: FrameType | None = None) -> None:
        """A first stop lets files in flight finish (``--grace``); a second one abandons them at
        once (the next start redoes them, as after a ``kill -9``)."""
        if not self.stopping.is_set():
            log.info("stopping: finishing files in flight (grace %.0fs)", self.sched.grace)
        elif not self.hurry.is_set():
            log.warning("stopping now: files in flight are left for the next start")
            self.hurry.set()
        self.stopping.set()
        self._wake.set()

    def run(self, once: bool = False) -> int:
        """Runs until stopped (or, with ``once``, until the queue is empty).

        Returns:
            With ``once``: 0 when every file was uploaded, 1 when any went to the error folder,
            S3 stayed unavailable or a stop came first (the files left stay queued for the next
            run). Running
            until stopped: 0 (a stop is the expected end; the files that failed are in the
            state, the log and the error folder).
        """
        self.once = once
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self.request_stop)
        recover(self.state, self.uploader, self.prefix)
        self._undo_cut_moves()
        found = rescan(self.s.root, self.flt, self.state, settled=self._settle)
        log.info("scanned %s: %d file(s)", self.s.root, found, extra={"stage": "detect"})
        self._forget_gone()
        watcher = None
        if not once:
            watcher = Watcher(
                self.s.root, self.flt, self.state, self.watch_stop, self.sched.poll, self._fail_service
            )
            watcher.start()
        inflight: dict[Future[Outcome], str] = {}
        backlog: deque[FileRow] = deque()  # claimed, waiting for a worker
        last_scan = time.monotonic()
        last_claim = 0.0
        pool = ThreadPoolExecutor(self.sched.concurrency, thread_name_prefix="worker")
        try:
            try:
                while not self.stopping.is_set():
                    self._reap(inflight)
                    # One /proc scan claims a batch; a batch at most every tick, more often
                    # only when workers would otherwise idle.
                    low = len(backlog) < self.sched.concurrency
                    # While S3 is unavailable no file starts, claimed ones included.
                    paused = self.gave_up or time.monotonic() < self.paused_until
                    if low and not paused and (not backlog or time.monotonic() - last_claim >= TICK):
                        backlog.extend(self._ready(BACKLOG * self.sched.concurrency - len(backlog)))
                        last_claim = time.monotonic()
                    while backlog and not paused and len(inflight) < self.sched.concurrency:
                        row = backlog.popleft()
                        fut = pool.submit(self._work, row)
                        fut.add_done_callback(lambda _f: self._wake.set())
                        inflight[fut] = row.path
                    if (
                        once
                        and not inflight
                        and (self.gave_up or (not backlog and self.state.counts()["pending"] == 0))
                    ):
                        break
                    if time.monotonic() - last_scan >= self.sched.rescan_interval:
                        rescan(self.s.root, self.flt, self.state, settled=self._settle)
                        self._forget_gone()
                        last_scan = time.monotonic()
                    self._wake.wait(TICK)
                    self._wake.clear()
            except StateUnavailable as e:
                self._fail_service(e)
            finally:
                self.watch_stop.set()
                with contextlib.suppress(StateUnavailable):  # recovery redoes them at the next start
                    for row in backlog:
                        self.state.release(row.path)
                self._drain(inflight)
        finally:
            # A worker still waiting for S3 past the grace period is not waited for.
            pool.shutdown(wait=not self.stuck, cancel_futures=True)
        if watcher:
            watcher.join(timeout=5)
        if self.fatal is not None:
            raise self.fatal
        left = 0
        if once and self.stopping.is_set():
            counts = self.state.counts()
            left = counts.get(PENDING, 0) + counts.get(PROCESSING, 0)
            if left:
                log.info("stopped with %d file(s) left for the next run", left)
        return 1 if once and (self.failed or self.gave_up or left) else 0

    def _ready(self, limit: int) -> list[FileRow]:
        """Claims up to ``limit`` files that are complete: quiet, unchanged, nobody writing."""
        now = time.time()
        rows = self.state.ready(now - self.sched.quiet_period, limit * 4)
        if not rows:
            return []
        current: list[tuple[FileRow, os.stat_result]] = []
        complete: list[tuple[str, int, int]] = []
        for row in rows:
            try:
                st = regular_stat(self.s.root, row.path)
            except OSError:  # cannot be looked at for now: again after the quiet period
                self.state.defer(row.path, now)
                continue
            if st is None:
                # A worker aborts its upload in flight, or withdraws what a crash left of an archive.
                cut = is_archive(row.path) and mixed(row, self.state.objects_of(row.path))
                if cut or not self.state.forget_pending(row.path):
                    complete.append((row.path, row.size, row.mtime_ns))
                continue
            if (st.st_size, mtime_ns(st)) != (row.size, row.mtime_ns):
                self.state.observe([(row.path, st.st_size, mtime_ns(st))], now)
                continue
            current.append((row, st))
        # Hard links are rows of one inode: a writer holds it under one of their names.
        names: dict[tuple[int, int], set[str]] = {}
        for row, st in current:
            names.setdefault((st.st_dev, st.st_ino), set()).add(row.path.rpartition("/")[2])
        writers = open_for_writing(names)
        for row, st in current:
            if len(complete) >= limit:
                break
            if writers is not None and (st.st_dev, st.st_ino) in writers:
                self.state.defer(row.path, now)
                continue
            complete.append((row.path, row.size, row.mtime_ns))
        return self.state.claim_all(complete)

    def _work(self, row: FileRow) -> Outcome:
        try:
            return process(row, self.s, self.state, self.uploader)
        except StateUnavailable as e:
            self._fail_service(e)
            return Outcome("requeued")
        except Exception as e:  # a bug: say so, mark the file failed (s3proc retry), keep going
            log.exception("internal error processing %s: %s", row.path, describe(e), extra={"path": row.path})
            self.state.fail(row.path, f"internal error: {describe(e)}")
            return Outcome("failed", error=str(e))
        finally:
            logs.clear_file()

    def _reap(self, inflight: dict[Future[Outcome], str]) -> None:
        for fut in [f for f in inflight if f.done()]:
            inflight.pop(fut)
            outcome = fut.result()
            if outcome.status == "failed":
                self.failed += 1
            elif outcome.status in ("uploaded", "unchanged"):
                self.uploaded += 1
                self.pause = 0.0
            elif outcome.status == "unavailable":
                self._pause(outcome.error or "")

    def _pause(self, why: str) -> None:
        """S3 cannot be used: no new file for a while (5 s, doubling to 60 s); with ``--once``,
        give up after the longest pause (the files stay queued for the next run)."""
        if time.monotonic() < self.paused_until:
            return  # files in flight when it began say the same
        if self.pause >= PAUSE_MAX and self.once:
            self.gave_up = True
            log.error("S3 is still unavailable (%s); leaving the queue for the next run", why)
            return
        self.pause = min(PAUSE_MAX, max(PAUSE_MIN, self.pause * 2))
        self.paused_until = time.monotonic() + self.pause
        log.warning("S3 is unavailable (%s): no new file for %.0f s", why, self.pause)

    def _drain(self, inflight: dict[Future[Outcome], str]) -> None:
        """Waits up to the grace period for files in flight, then abandons their uploads; a worker
        waiting for an answer from S3 cannot be stopped, and is left behind (``stuck``)."""
        deadline = time.monotonic() + self.sched.grace
        while inflight and time.monotonic() < deadline and not self.hurry.is_set():
            self._reap(inflight)
            time.sleep(TICK / 2)
        if inflight:
            log.warning("grace period over: abandoning %d file(s) in flight", len(inflight))
            self.uploader.stop.set()
            deadline = time.monotonic() + STUCK_WAIT
            while inflight and time.monotonic() < deadline:
                self._reap(inflight)
                time.sleep(TICK / 2)
        if inflight:
            self.stuck = len(inflight)
            log.warning("%d file(s) still waiting for an answer from S3: left for the next start", self.stuck)
