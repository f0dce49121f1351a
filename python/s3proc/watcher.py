"""Finding files: events from watchfiles, full rescans, and the checks that say a file is complete.

watchfiles drops the kernel's queue-overflow event and network filesystems send no events at
all, so events are only a fast path: a full rescan at start-up and every ``rescan_interval``
finds whatever they missed. Everything found goes into the state's queue; nothing is held in
Python. A file is ready when its size and mtime have been stable for the quiet period (the
state keeps when they were first seen) and no process has it open for writing.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import watchfiles

from s3proc.state import State, StateUnavailable, mtime_ns

log = logging.getLogger("s3proc.watch")

IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload")
IGNORED_PREFIXES = (".", "~$")
POLL_INTERVAL = 1.0  # seconds between the starts of two polling passes, at least
RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds before a failed watch is started again
RETRY_RESET = 60.0  # a watch that ran this long before failing starts again after RETRY_MIN


class Filter:
    """Which paths under the watch dir are files to ship.

    Ignored: dotfiles, ``*.tmp``, ``*.part``, ``*.crdownload``, ``~$*`` (office lock files),
    the ``ignore`` globs (matched against the relative path and the name), and the folders and
    files s3proc itself writes to (``excluded``). A folder whose name is ignored ignores all it
    holds (as in ``.gitignore``): a dot-folder, a ``batch.tmp/`` being filled before its rename.
    A name that is not valid UTF-8 cannot become an S3 key (nor a row of the state): it is left
    where it is, with a warning the first time it is seen.
    """

    def __init__(self, root: Path, ignore: Iterable[str] = (), excluded: Iterable[Path] = ()):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.ignore = tuple(ignore)
        self.excluded = tuple(os.path.abspath(p) for p in excluded)
        self._warned: set[str] = set()

    def _ignored(self, rel: str) -> bool:
        """Whether the file or folder ``rel`` is ignored by its own name or path."""
        name = rel.rpartition("/")[2]
        return (
            name.startswith(IGNORED_PREFIXES)
            or name.lower().endswith(IGNORED_SUFFIXES)
            or any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in self.ignore)
        )

    def _excluded(self, full: str) -> bool:
        return any(full == e or full.startswith(e + os.sep) for e in self.excluded)

    def skip_dir(self, abspath: str) -> bool:
        """Whether a scan passes over the folder ``abspath`` (the folders holding it were not)."""
        rel = os.path.relpath(abspath, self.root).replace(os.sep, "/")
        return self._ignored(rel) or self._excluded(abspath)

    def wanted(self, rel: str) -> bool:
        parts = rel.split("/")
        if any(self._ignored("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            return False
        return not self._excluded(os.path.join(self.root, rel))

    def relative(self, abspath: str) -> str | None:
        try:
            rel = os.path.relpath(abspath, self.root)
        except ValueError:
            return None
        if rel.startswith(".." + os.sep) or rel == "..":
            return None
        rel = rel.replace(os.sep, "/")
        if not self.wanted(rel):
            return None
        try:
            rel.encode()
        except UnicodeEncodeError:
            if rel not in self._warned and len(self._warned) < 10_000:
                self._warned.add(rel)
                shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                log.warning(
                    "left alone: the name %s is not valid UTF-8, so it cannot be an S3 key",
                    shown,
                    extra={"path": shown, "stage": "detect"},
                )
            return None
        return rel

    def unlinked(self, abspath: str) -> str | None:
        """``abspath`` named without the links on its way (an event path can have some:
        watchfiles follows the tree's links, a scan never does): itself when there are none; when a
        link to a folder of the tree leads to it (inotify gives a folder one watch, whose events
        may come under a link's path), its place under the root by the folder's real path, so
        that it is never read through the link; None when the link leads outside the tree."""
        parent = os.path.dirname(abspath)
        real = os.path.realpath(parent)
        inside = os.path.normpath(os.path.join(self.real_root, os.path.relpath(parent, self.root)))
        if real == inside:
            return abspath
        rel = os.path.relpath(real, self.real_root)
        if rel == ".." or rel.startswith(".." + os.sep):
            return None
        return os.path.normpath(os.path.join(self.root, rel, os.path.basename(abspath)))


def _files(
    root: Path, flt: Filter, folders: list[tuple[str, int]] | None = None, warned: set[str] | None = None
) -> Iterator[os.DirEntry[str]]:
    """The regular files under ``root`` outside the folders ``flt`` skips, no link followed (a
    link could point anywhere, including into the tree). A folder that cannot be listed is
    passed over with a warning (once, for those in ``warned``, when given)."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
            if folders is not None:
                folders.append((folder, os.lstat(folder).st_ino))
        except OSError as e:
            if warned is None or (folder not in warned and len(warned) < 10_000):
                log.warning("cannot list %s: %s", folder, e.strerror or e)
                if warned is not None:
                    warned.add(folder)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not flt.skip_dir(entry.path):
                        stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry
            except OSError:
                continue  # gone between listing and looking


def scan(
    root: Path, flt: Filter, folders: list[tuple[str, int]] | None = None
) -> Iterator[tuple[str, int, int]]:
    """Every regular file under ``root`` that ``flt`` wants: ``(relative path, size, mtime_ns)``.

    Symlinks are not followed (a link could point anywhere, including into the tree). Each
    folder listed is appended to ``folders`` (when given) as ``(path, st_ino)``.
    """
    for entry in _files(root, flt, folders):
        rel = flt.relative(entry.path)
        if rel is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # gone between listing and stat
        yield rel, st.st_size, mtime_ns(st)


def rescan(
    root: Path,
    flt: Filter,
    state: State,
    batch: int = 2000,
    settled: Callable[[list[tuple[str, str]]], None] | None = None,
    folders: list[tuple[str, int]] | None = None,
) -> int:
    """Records everything a full scan finds, in batches of one transaction each; ``settled``
    gets, batch by batch, the files found as they were when recorded uploaded or failed
    (``(path, status)``, see ``State.observe``); ``folders``: as ``scan``."""
    seen = 0
    items: list[tuple[str, int, int]] = []
    for item in scan(root, flt, folders):
        items.append(item)
        if len(items) >= batch:
            found = state.observe(items, time.time())
            if settled is not None and found:
                settled(found)
            seen += len(items)
            items = []
    if items:
        found = state.observe(items, time.time())
        if settled is not None and found:
            settled(found)
        seen += len(items)
    return seen


def inotify_watched() -> set[int] | None:
    """The inodes this process's inotify instances watch, from ``/proc/self/fdinfo``; None when
    it has none (or ``/proc`` cannot be read): then nothing can be told."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found: set[int] | None = None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                lines = [line for line in info if line.startswith("inotify ")]
        except OSError:
            continue
        found = found if found is not None else set()
        for line in lines:  # inotify wd:1 ino:8a2c sdev:800001 mask:...
            ino = next((f[4:] for f in line.split() if f.startswith("ino:")), None)
            if ino is not None:
                found.add(int(ino, 16))
    return found


class Unwatched(Exception):
    """inotify does not watch every folder s3proc can list."""

    def __init__(self, missing: int, folders: int):
        super().__init__(f"{missing} of the {folders} folders it can read are not watched")


def check_watched(folders: list[tuple[str, int]], settle: float = 0.2) -> None:
    """Raises ``Unwatched`` when a folder of ``folders`` (``(path, st_ino)``, listed by a scan)
    that is still there has no inotify watch.

    notify (watchfiles' engine) stops adding watches at ``fs.inotify.max_user_watches``, or at
    a folder it may not read, without a word: at start-up watchfiles drops the error with those
    of unreadable folders, and folders made later are watched by notify's own thread, whose
    errors are dropped too. A folder just made may be watched a moment later: those missing
    are looked at once more after ``settle`` seconds.
    """
    watched = inotify_watched()
    if watched is None or not folders:
        return
    missing = [(p, ino) for p, ino in folders if ino not in watched]
    if not missing:
        return
    time.sleep(settle)
    watched = inotify_watched() or set()
    still = []
    for path, ino in missing:
        if ino in watched:
            continue
        try:
            if os.lstat(path).st_ino == ino:
                still.append(path)
        except OSError:
            continue  # gone: not watched, rightly
    if still:
        raise Unwatched(len(still), len(folders))


class Watcher(threading.Thread):
    """Feeds watchfiles' events into the state until ``stop`` is set.

    ``poll`` forces polling (network filesystems); when inotify cannot watch the tree (the
    ``max_user_watches`` limit: every folder s3proc lists, at start and as folders come, is
    checked for a watch), the watcher says so once and falls back to polling. Once its watches
    are set it scans the tree once more: a file that arrived between the start-up scan and
    then sent no event, and would otherwise wait for the next periodic rescan.

    Polling is s3proc's own scan (``_poll``): watchfiles' poller follows links and gives up
    for good at a link loop or a folder it may not read. An error of the watch is taken as
    passing: it is logged and the watch starts again after a pause (1 s, doubling up to 60 s,
    back to 1 s once a watch ran for a minute).
    """

    def __init__(
        self,
        root: Path,
        flt: Filter,
        state: State,
        stop: threading.Event,
        poll: bool = False,
        on_failure: Callable[[StateUnavailable], None] = lambda _e: None,
    ):
        super().__init__(name="watcher", daemon=True)
        self.root, self.flt, self.state, self.stop, self.poll = root, flt, state, stop, poll
        self.on_failure = on_failure
        self._ready = False  # the current watch is set (an error after it is a passing one)

    def run(self) -> None:
        poll = self.poll
        pause = RETRY_MIN
        while not self.stop.is_set():
            self._ready = False
            started = time.monotonic()
            try:
                if poll:
                    self._poll()
                else:
                    self._inotify()
                return
            except StateUnavailable as e:
                self.on_failure(e)
                return
            except Unwatched as e:
                log.warning(
                    "inotify cannot watch %s: %s (the fs.inotify.max_user_watches limit, or a folder"
                    " it may not read); polling instead",
                    self.root,
                    e,
                )
                poll = True
                continue
            except Exception as e:  # notify's errors come as plain exceptions
                if not poll and not self._ready:  # inotify cannot be had at all
                    log.warning("cannot watch %s with inotify (%s); polling instead", self.root, e)
                    poll = True
                    continue
                if time.monotonic() - started >= RETRY_RESET:
                    pause = RETRY_MIN
                log.warning("watching %s failed: %s; watching again in %.0f s", self.root, e, pause)
            if self.stop.wait(pause):
                return
            pause = min(RETRY_MAX, pause * 2)

    def _inotify(self) -> None:
        for changes in watchfiles.watch(
            self.root,
            watch_filter=None,
            stop_event=self.stop,
            force_polling=False,
            debounce=200,
            step=50,
            rust_timeout=1000,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            if not self._ready:
                # The first batch (or timeout) means the watches are set: what arrived
                # between the start-up scan and now sent no event.
                self._ready = True
                folders: list[tuple[str, int]] = []
                rescan(self.root, self.flt, self.state, folders=folders)
                check_watched(folders)
            self._handle(changes)

    def _poll(self) -> None:
        """Scans the tree again ``POLL_INTERVAL`` seconds after each pass (four times the pass's
        length when that is longer: polling takes at most a fifth of a core) and records the
        files whose size or mtime changed since the pass before; a file gone is forgotten if it
        was only waiting. No link is followed: a loop cannot stop it; a folder it may not read
        is passed over, said once. What was seen of each path is held in memory (a few hundred
        bytes a file), the name filter applied once per path."""
        known: dict[str, tuple[str | None, int, int]] = {}  # path -> (rel or None: ignored, size, mtime)
        warned: set[str] = set()
        while True:
            began = time.monotonic()
            now: dict[str, tuple[str | None, int, int]] = {}
            changed: list[tuple[str, int, int]] = []
            for entry in _files(self.root, self.flt, warned=warned):
                was = known.get(entry.path)
                rel = self.flt.relative(entry.path) if was is None else was[0]
                if rel is None:
                    now[entry.path] = (None, 0, 0)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                seen = now[entry.path] = (rel, st.st_size, mtime_ns(st))
                if seen != was:
                    changed.append((rel, st.st_size, mtime_ns(st)))
                if len(changed) >= 2000:
                    self.state.observe(changed, time.time())
                    changed = []
            if changed:
                self.state.observe(changed, time.time())
            for path in known.keys() - now.keys():
                if (rel := known[path][0]) is not None:
                    self.state.forget_pending(rel)
            known = now
            self._ready = True
            if self.stop.wait(max(POLL_INTERVAL, 4 * (time.monotonic() - began))):
                return

    def _handle(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        seen: list[tuple[str, int, int]] = []
        folders: list[tuple[str, int]] = []
        for change, event_path in changes:
            # An event under a link to a folder of the tree counts for that folder's own path.
            abspath = self.flt.unlinked(event_path)
            rel = None if abspath is None else self.flt.relative(abspath)
            if abspath is None or rel is None:
                continue
            try:
                st = os.lstat(abspath)
            except OSError:
                if change == watchfiles.Change.deleted:
                    self.state.forget_pending(rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                if change == watchfiles.Change.added and not self.flt.skip_dir(abspath):
                    # A folder made or moved in: what was written in it before its watch was
                    # set, or came with it, sends no event of its own.
                    seen.extend(scan(Path(abspath), self.flt, folders))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.append((rel, st.st_size, mtime_ns(st)))
        if seen:
            self.state.observe(seen, time.time())
        check_watched(folders)


def open_for_writing(candidates: dict[tuple[int, int], set[str]]) -> set[tuple[int, int]] | None:
    """Those of ``candidates`` (``(st_dev, st_ino)`` → the file names it has among the files
    looked at: one per hard link queued) that some process holds open for writing.

    Read from ``/proc/*/fd``: an fd is looked at further (stat, then its ``fdinfo`` flags) only
    when its path ends with one of a candidate's names, so the scan never touches unrelated
    files (a stat can hang on a dead network mount) and costs a readlink per open file. A writer
    that holds a candidate open under a name none of the candidates has (a hard link outside the
    watch dir) is not seen. None where ``/proc`` cannot be read (the check is then skipped).
    Processes whose fds this user cannot see are left out.
    """
    if not candidates:
        return set()
    names = set().union(*candidates.values())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    found: set[tuple[int, int]] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith("/") or target.rpartition("/")[2] not in names:
                    continue  # sockets, pipes, anon inodes, other files
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_dev, st.st_ino) not in candidates:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next((line.split()[1] for line in info if line.startswith("flags:")), "0")
                if int(flags, 8) & (os.O_WRONLY | os.O_RDWR):
                    found.add((st.st_dev, st.st_ino))
            except (OSError, ValueError, IndexError):
                continue
    return found
