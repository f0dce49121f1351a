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

from s3proc.state import State, StateUnavailable

log = logging.getLogger("s3proc.watch")

IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload")
IGNORED_PREFIXES = (".", "~$")


class Filter:
    """Which paths under the watch dir are files to ship.

    Ignored: anything under a dot-folder, dotfiles, ``*.tmp``, ``*.part``, ``*.crdownload``,
    ``~$*`` (office lock files), the ``ignore`` globs (matched against the relative path and
    the name), and the folders and files s3proc itself writes to (``excluded``). A name that is not valid
    UTF-8 cannot become an S3 key (nor a row of the state): it is left where it is, with a
    warning the first time it is seen.
    """

    def __init__(self, root: Path, ignore: Iterable[str] = (), excluded: Iterable[Path] = ()):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.ignore = tuple(ignore)
        self.excluded = tuple(os.path.abspath(p) for p in excluded)
        self._warned: set[str] = set()

    def skip_dir(self, abspath: str) -> bool:
        name = os.path.basename(abspath)
        return name.startswith(".") or any(
            abspath == e or abspath.startswith(e + os.sep) for e in self.excluded
        )

    def wanted(self, rel: str) -> bool:
        parts = rel.split("/")
        name = parts[-1]
        if any(p.startswith(".") for p in parts[:-1]):
            return False
        if name.startswith(IGNORED_PREFIXES) or name.lower().endswith(IGNORED_SUFFIXES):
            return False
        if any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in self.ignore):
            return False
        full = os.path.join(self.root, rel)
        return not any(full == e or full.startswith(e + os.sep) for e in self.excluded)

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
                log.warning("left alone: the name %s is not valid UTF-8, so it cannot be an S3 key", shown)
            return None
        return rel

    def linked(self, abspath: str) -> bool:
        """Whether ``abspath`` lies under a symlink to a folder: an event path can (watchfiles
        follows the tree's links), a scan never does."""
        parent = os.path.dirname(abspath)
        inside = os.path.normpath(os.path.join(self.real_root, os.path.relpath(parent, self.root)))
        return os.path.realpath(parent) != inside


def scan(root: Path, flt: Filter) -> Iterator[tuple[str, int, int]]:
    """Every regular file under ``root`` that ``flt`` wants: ``(relative path, size, mtime_ns)``.

    Symlinks are not followed (a link could point anywhere, including into the tree).
    """
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            log.warning("cannot list %s: %s", folder, e.strerror or e)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not flt.skip_dir(entry.path):
                        stack.append(entry.path)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                rel = flt.relative(entry.path)
                if rel is None:
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone between listing and stat
            yield rel, st.st_size, st.st_mtime_ns


def rescan(
    root: Path,
    flt: Filter,
    state: State,
    batch: int = 2000,
    settled: Callable[[list[tuple[str, str]]], None] | None = None,
) -> int:
    """Records everything a full scan finds, in batches of one transaction each; ``settled``
    gets, batch by batch, the files found as they were when recorded uploaded or failed
    (``(path, status)``, see ``State.observe``)."""
    seen = 0
    items: list[tuple[str, int, int]] = []
    for item in scan(root, flt):
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


class Watcher(threading.Thread):
    """Feeds watchfiles' events into the state until ``stop`` is set.

    ``poll`` forces polling (network filesystems); when inotify cannot watch the tree (the
    ``max_user_watches`` limit), the watcher says so once and falls back to polling. Once its
    watches are set it scans the tree once more: a file that arrived between the start-up scan
    and then sent no event, and would otherwise wait for the next periodic rescan.
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

    def run(self) -> None:
        poll = self.poll
        while not self.stop.is_set():
            ready = False
            try:
                for changes in watchfiles.watch(
                    self.root,
                    watch_filter=None,
                    stop_event=self.stop,
                    force_polling=poll,
                    poll_delay_ms=500,
                    debounce=200,
                    step=50,
                    rust_timeout=1000,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    if not ready:
                        # The first batch (or timeout) means the watches are set: what arrived
                        # between the start-up scan and now sent no event.
                        ready = True
                        rescan(self.root, self.flt, self.state)
                    self._handle(changes)
                return
            except StateUnavailable as e:
                self.on_failure(e)
                return
            except Exception as e:  # notify's errors come as plain exceptions
                if poll:
                    log.error("watching %s failed: %s; relying on rescans", self.root, e)
                    return
                log.warning("cannot watch %s with inotify (%s); polling instead", self.root, e)
                poll = True

    def _handle(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        seen: list[tuple[str, int, int]] = []
        for change, abspath in changes:
            rel = self.flt.relative(abspath)
            if rel is None or self.flt.linked(abspath):
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
                    seen.extend(scan(Path(abspath), self.flt))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.append((rel, st.st_size, st.st_mtime_ns))
        if seen:
            self.state.observe(seen, time.time())


def regular_stat(path: Path) -> os.stat_result | None:
    """``lstat`` of a file to ship; None when there is none at ``path`` any more: gone, a folder
    on its way made a file, or replaced by what is not a regular file (a folder, a link, a FIFO).

    Raises:
        OSError: it cannot be looked at for now (permissions).
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def open_for_writing(candidates: dict[tuple[int, int], str]) -> set[tuple[int, int]] | None:
    """Those of ``candidates`` (``(st_dev, st_ino)`` → file name) that some process holds open
    for writing.

    Read from ``/proc/*/fd``: an fd is looked at further (stat, then its ``fdinfo`` flags) only
    when its path ends with a candidate's name, so the scan never touches unrelated files (a
    stat can hang on a dead network mount) and costs a readlink per open file. A writer that
    holds a candidate open under another hard link's name is not seen. None where ``/proc``
    cannot be read (the check is then skipped). Processes whose fds this user cannot see are
    left out.
    """
    if not candidates:
        return set()
    names = set(candidates.values())
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
