"""Archives through the service: every entry of a zip or tar (nested ones too) is one result.

The core's ``ArchiveReader`` walks the archive as a stream (nothing is extracted to disk); each
file entry becomes a ``Result`` uploaded under ``<archive path>/<entry name>``, tabular entries
converted to Parquet like files dropped on their own. An entry up to ``HEAD_BYTES`` is read
into memory, so its result no longer needs the reader. A larger one is read through
``EntryStream``, a file-like object that can be rewound: a rewind past its first ``HEAD_BYTES``
opens the archive again and walks it to the same entry. That is what a conversion restart after
a late type drift, or an upload started again after a 409, needs; it costs a second pass over
the archive up to the entry, never a temporary file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

from s3proc import _core
from s3proc.keys import COMPRESSION_EXTENSIONS, is_tabular

log = logging.getLogger("s3proc.archive")

ARCHIVE_EXTENSIONS = (".zip", ".jar", ".whl", ".tar", ".tgz", ".tbz2", ".tbz", ".txz", ".tzst")
_TAR_COMPRESSED = tuple(".tar" + ext for ext in COMPRESSION_EXTENSIONS)


def is_archive(name: str) -> bool:
    """Whether ``name`` says an archive (``x.zip``, ``x.tar.gz``, ``x.tgz``, …)."""
    lower = name.lower()
    return lower.endswith(ARCHIVE_EXTENSIONS) or lower.endswith(_TAR_COMPRESSED)


def source_name(path: str, entry: str) -> str:
    """How an object's metadata names its source: the path, or ``path!entry`` for an archive's
    entry."""
    return f"{path}!{entry}" if entry else path


def split_source(source: str, exists: Callable[[str], bool]) -> tuple[str, str]:
    """``(path, entry)`` of a ``source_name``: at the first ``!`` after an archive's name, unless
    the whole is a file that ``exists`` (a ``!`` in a plain file's name is no entry)."""
    if not exists(source):
        at = source.find("!")
        while at > 0:
            if is_archive(source[:at]):
                return source[:at], source[at + 1 :]
            at = source.find("!", at + 1)
    return source, ""


# The converter reads the start of its input twice (sniffing) before it reads it through: an
# entry keeps that much of its start in memory, so those rewinds cost no walk of the archive
# (the binding's replay bound for streams, twice the sniffer's 4 MiB sample).
HEAD_BYTES = (8 << 20) + 1


class EntryStream(io.RawIOBase):
    """The bytes of entry ``index`` of the archive at ``path``; ``seek(0)`` reads it again.

    A rewind while no more than ``HEAD_BYTES`` were read is served from memory; a later one
    (a conversion restart) opens the archive again and walks it to the entry.
    """

    def __init__(self, path: Path, index: int, first: Any, chunk_size: int, options: dict[str, Any]):
        self._path, self._index, self._size, self._options = path, index, chunk_size, options
        self._reader: Any = None  # the ArchiveReader of a re-read, kept alive while it is read
        self._start(first)

    def _start(self, entry: Any) -> None:
        self._chunks: Iterator[bytes] = iter(entry.chunks(self._size))
        self._buf = memoryview(b"")  # the rest of the chunk last taken from the entry
        self._read = 0  # bytes taken from the entry so far
        self._head: bytearray | None = bytearray()  # all of them, while there are few
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR and offset == 0:
            return self._pos
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("an archive entry can only be rewound")
        if self._head is not None:
            self._pos = 0
        else:
            self._reader = _core.ArchiveReader(self._path, **self._options)
            self._start(next(e for e in self._reader if e.index == self._index))
        return 0

    def readinto(self, b: Any) -> int:
        if self._head is not None and self._pos < self._read:  # after a rewind
            n = min(len(b), self._read - self._pos)
            b[:n] = self._head[self._pos : self._pos + n]
            self._pos += n
            return n
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        if self._head is not None:
            if self._read + n <= HEAD_BYTES:
                self._head += b[:n]
            else:
                self._head = None
        self._read += n
        self._pos += n
        return n


def archive_results(
    path: Path,
    rel: str,
    part_size: int,
    convert: dict[str, Any],
    make: Callable[..., Any],
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[Any]:
    """The results of the archive at ``path``, one per file entry, in archive order.

    ``make(entry, parquet, open_chunks, rows, detached=...)`` builds the caller's result;
    ``detached`` says that its bytes are in memory (entries up to ``HEAD_BYTES``), so it can be
    shipped after the reader has moved on; any other entry must be shipped before the next one
    is taken. Skipped entries (links, devices, unsafe names) are logged and appended to
    ``skipped`` as (entry, reason). An ``ArchiveError``
    from the reader, after any number of entries, means the archive as a whole failed.
    """
    options: dict[str, Any] = {"name": rel}
    for entry in _core.ArchiveReader(path, **options):
        if entry.kind == "skipped":
            log.warning(
                "skipped entry %s: %s", entry.name, entry.reason, extra={"path": rel, "stage": "process"}
            )
            if skipped is not None:
                skipped.append((entry.name, entry.reason or ""))
            continue
        if entry.note:  # a name normalised, kept inside the archive, or a duplicate's suffix
            log.warning("entry %s: %s", entry.name, entry.note, extra={"path": rel, "stage": "process"})
        if entry.kind != "file":
            continue  # a nested archive: its entries follow
        name = f"{rel}/{entry.name}"
        tabular = is_tabular(entry.name)
        if entry.size is not None and entry.size <= HEAD_BYTES:
            # Small: read now, so the result no longer needs the reader (it can be converted
            # and uploaded while the next entries are read) and a restart re-reads memory.
            data = b"".join(entry.chunks(1 << 20))
            yield _result(make, entry.name, tabular, name, partial(bytes, data), part_size, convert, True)
            continue
        stream = EntryStream(path, entry.index, entry, part_size, options)

        def rewound(stream: EntryStream = stream) -> Any:
            stream.seek(0)
            return stream

        yield _result(make, entry.name, tabular, name, rewound, part_size, convert, False)


def converted(make: Callable[..., Any], entry: str, open_chunks: Callable[[], Any], detached: bool) -> Any:
    """``make``'s result for a conversion that ``open_chunks()`` starts (again at each upload
    attempt); its rows and warnings are those of the latest."""
    latest: list[Any] = []

    def parquet() -> Any:
        latest[:] = [open_chunks()]
        return latest[0]

    return make(
        entry,
        True,
        parquet,
        lambda: latest[0].rows if latest else None,
        detached=detached,
        warnings=lambda: latest[0].warnings if latest else [],
    )


def _result(
    make: Callable[..., Any],
    entry: str,
    tabular: bool,
    name: str,
    source: Callable[[], Any],
    part_size: int,
    convert: dict[str, Any],
    detached: bool,
) -> Any:
    """``make``'s result for an entry whose bytes ``source()`` gives from the start (bytes, or
    a rewound ``EntryStream``); ``detached`` when they are in memory."""
    if tabular:
        options = {**convert, "chunk_size": part_size, "name": name}
        return converted(
            make, entry, lambda: _core.ParquetChunks(cast(IO[bytes], source()), **options), detached
        )

    def raw() -> Iterator[bytes]:
        whole = source()
        if isinstance(whole, bytes):
            yield from (whole[i : i + part_size] for i in range(0, len(whole), part_size))
            return
        buffered = io.BufferedReader(whole, 1 << 20)  # full parts: only the last is short
        while chunk := buffered.read(part_size):
            yield chunk

    return make(entry, False, raw, lambda: None, detached=detached)
