"""Files under the watch dir reached without following a link.

``root / rel`` follows every link on the way: a folder of the tree replaced by a link after its
file was queued would have s3proc read (ship, delete) the file of the same name wherever the
link points. Here each folder of ``rel`` is opened from the one before with ``O_NOFOLLOW``, so a
link anywhere below the root ends the walk; the root itself may be a link (the watch dir can be
given through one). What is read is read from the descriptor the walk opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # O_PATH: x, not r, needed
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Not there (ENOENT), or not reached without a link: a folder on the way that is a link or no
# folder (ENOTDIR: O_DIRECTORY with O_NOFOLLOW refuses a link so), the file itself a link (ELOOP).
_NOT_HERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_FD_PATHS = os.path.isdir("/proc/self/fd")
T = TypeVar("T")


def open_dir(root: Path, rel_dir: str) -> int:
    """A descriptor (``O_PATH``) of the folder ``rel_dir`` ('' for the root) under ``root``,
    no link followed below ``root``; the caller closes it.

    Raises:
        OSError: ENOENT, ENOTDIR (a folder on the way is a link or not a folder), EACCES.
    """
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel_dir.split("/") if rel_dir else ():
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, "not a plain relative path", rel_dir)
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _in_folder(root: Path, rel: str, call: Callable[[int, str], T]) -> T | None:
    """``call(dir_fd, name)`` with the folder holding ``root/rel`` opened without a link and the
    file's name; None when nothing is there that way (gone, under a link, a link itself).

    Raises:
        OSError: it cannot be looked at for now (permissions).
    """
    folder, _, name = rel.rpartition("/")
    try:
        fd = open_dir(root, folder)
    except OSError as e:
        if e.errno in _NOT_HERE:
            return None
        raise
    try:
        return call(fd, name)
    except OSError as e:
        if e.errno in _NOT_HERE:
            return None
        raise
    finally:
        os.close(fd)


def lstat(root: Path, rel: str) -> os.stat_result | None:
    """``lstat`` of ``root/rel`` reached without a link; None when there is nothing there that
    way (gone, or a folder on the way replaced by a link or a file).

    Raises:
        OSError: it cannot be looked at for now (permissions).
    """
    return _in_folder(root, rel, lambda fd, name: os.stat(name, dir_fd=fd, follow_symlinks=False))


def regular_stat(root: Path, rel: str) -> os.stat_result | None:
    """``lstat`` of a file to ship, ``root/rel`` reached without a link; None when there is no
    regular file there that way: gone, a folder on its way made a file or replaced by a link,
    or the file replaced by what is not a regular file (a folder, a link, a FIFO).

    Raises:
        OSError: it cannot be looked at for now (permissions).
    """
    st = lstat(root, rel)
    return st if st is not None and stat.S_ISREG(st.st_mode) else None


class Opened:
    """A regular file held open: ``fd``, its ``st`` at opening, and ``path``, a name that opens
    this very file again (``/proc/self/fd/N``) for readers that take a path (the core reopens
    its source at a conversion restart), valid while it is held."""

    def __init__(self, fd: int, st: os.stat_result, fallback: Path):
        self.fd, self.st = fd, st
        # Without /proc (no Linux container lacks it), the walked path: checked, not held.
        self.path = f"/proc/self/fd/{fd}" if _FD_PATHS else str(fallback)


@contextlib.contextmanager
def open_regular(root: Path, rel: str) -> Iterator[Opened | None]:
    """``root/rel`` opened for reading, reached without a link; None when no regular file is
    there that way (as ``regular_stat``: gone, replaced, under a link). Closed on exit.

    Raises:
        OSError: it cannot be opened (permissions).
    """

    def opened(dfd: int, name: str) -> tuple[int, os.stat_result] | None:
        # Looked at before it is opened: opening a FIFO or a device has effects of its own.
        before = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return (os.open(name, _FILE_FLAGS, dir_fd=dfd), before) if stat.S_ISREG(before.st_mode) else None

    found = _in_folder(root, rel, opened)
    if found is None:
        yield None
        return
    fd, before = found
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            yield None  # replaced between the look and the opening
            return
        os.set_blocking(fd, True)
        yield Opened(fd, st, root / rel)
    finally:
        os.close(fd)


def inside(root: Path, rel: str) -> bool:
    """Whether the folder holding ``root/rel`` is, right now, the folder ``rel`` names inside the
    root, no link on the way (the file itself is not looked at). A check before a path-based
    delete or move: the race between it and the call remains, where ``open_dir`` and a
    ``dir_fd`` call (``os.unlink(name, dir_fd=...)``) leave none."""
    folder = rel.rpartition("/")[0]
    if not folder:
        return True
    return os.path.realpath(root / folder) == os.path.join(os.path.realpath(root), folder)
