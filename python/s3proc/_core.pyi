"""Type stubs of the compiled core (``s3proc._core``)."""

import os
from collections.abc import Iterator
from typing import IO, Any, Literal, TypedDict, Unpack, final

__all__ = [
    "ArchiveEntry",
    "ArchiveReader",
    "EntryChunks",
    "ParquetChunks",
    "__version__",
    "build_profile",
    "inspect",
    "parquet_footer_rows",
    "sniff_compression",
]

__version__: str
build_profile: str  # "release" or "debug"

class ConvertOptions(TypedDict, total=False):
    format: str | None  # csv, tsv, json, ndjson, xml; None: detected from the name and the content
    record_element: str | None  # XML: the element that is one record; None: found by the reader
    delimiter: str | None  # one ASCII character; None: detected
    quote: str | None  # one character, "" for no quoting; default '"'
    escape: str | None  # "quote" (RFC 4180) or "backslash" (PostgreSQL text TSV); None: detected
    header: bool | None  # None: detected
    null_values: list[str]  # values read as null; default [""] (the empty field)
    encoding: str | None  # utf-8, windows-1252/latin-1, utf-16le/be; None: detected
    sample_rows: int | None  # rows read to infer types (default 20000); None: the whole file first
    max_record_bytes: int  # longest record accepted (default 64 MiB)
    max_columns: int  # most (leaf) columns accepted (default 2,000)
    zstd_level: int  # 1..22, default 3
    row_group_rows: int  # default 1,048,576
    row_group_bytes: int  # Arrow (decoded) bytes per row group, default 64 MiB
    chunk_size: int  # bytes per chunk (all but the last), default 8 MiB
    read_size: int  # input bytes per parsing piece, default 2 MiB (CSV), 1 MiB (JSON, XML)
    name: str  # the source's name in errors and metadata

Source = str | os.PathLike[str] | bytes | bytearray | IO[bytes]

@final
class ParquetChunks:
    """A CSV/TSV or JSON source converted to ZSTD Parquet, as an iterator of ``bytes``.

    Concatenating the chunks gives the Parquet file. Every chunk but the last
    has exactly ``chunk_size`` bytes. ``__next__`` releases the GIL while it
    reads, parses and encodes. When a late value widens a column after chunks
    were handed out, ``__next__`` raises ``s3proc.SchemaRestart``; the chunks
    so far are void and the next call starts the new file from its first byte.
    """

    def __new__(cls, source: Source, **options: Unpack[ConvertOptions]) -> ParquetChunks: ...
    def __iter__(self) -> ParquetChunks: ...
    def __next__(self) -> bytes: ...
    @property
    def plan(self) -> dict[str, Any]: ...
    @property
    def restarts(self) -> int: ...
    @property
    def rows(self) -> int | None: ...
    @property
    def warnings(self) -> list[str]: ...

def inspect(source: Source, **options: Unpack[ConvertOptions]) -> dict[str, Any]:
    """Detected ``format``, why (``detected``), ``encoding``, ``columns`` ``[(name, type), ...]``,
    and the CSV ``dialect`` or the JSON ``layout``."""

def sniff_compression(path: str | os.PathLike[str]) -> str | None:
    """The codec of the file at ``path`` from its first bytes: "gzip", "zstd", "bzip2",
    "xz", or ``None`` when it is not compressed (whatever its name says).

    Sources given to ``ParquetChunks`` and ``inspect`` are decompressed on the fly;
    this tells a caller beforehand, without reading more than a few bytes.
    """

def parquet_footer_rows(footer: bytes) -> int:
    """The number of rows a Parquet footer gives (the metadata before a file's last 8 bytes);
    ``ValueError`` for bytes that are not one."""

class ArchiveOptions(TypedDict, total=False):
    max_total_bytes: int  # uncompressed bytes of all entries, all levels (default 1 TiB)
    max_ratio: int  # bytes out per byte in, per entry, past ratio x 4 KiB (default 1000)
    max_entries: int  # entries at all levels, skipped ones included (default 1,000,000)
    max_depth: int  # archives nested in one another, the outer one counting 1 (default 8)
    max_nested_zip_bytes: int  # largest nested zip held in memory when it cannot stream (256 MiB)
    name: str  # the archive's name in errors

@final
class ArchiveReader:
    """The entries of a zip, tar or compressed tar, in archive order (nested ones included).

    Each ``__next__`` returns the next ``ArchiveEntry``; an entry is valid until the next
    one is requested (reading a stale entry's chunks raises ``RuntimeError``). A producer
    thread owns the archive; ``__next__`` and chunk reads release the GIL while waiting.
    When the archive is corrupt, truncated, encrypted or past a limit, ``__next__``
    raises ``s3proc.ArchiveError``, possibly after some entries: the archive as a whole
    failed.
    """

    def __new__(cls, source: Source, **options: Unpack[ArchiveOptions]) -> ArchiveReader: ...
    def __iter__(self) -> ArchiveReader: ...
    def __next__(self) -> ArchiveEntry: ...
    @property
    def name(self) -> str: ...

@final
class ArchiveEntry:
    """One entry: a file (read it with ``chunks``), an archive (its entries follow,
    named ``this-name/inner``) or a skipped entry (``reason`` says why)."""

    @property
    def name(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def size(self) -> int | None: ...
    @property
    def kind(self) -> Literal["file", "archive", "skipped"]: ...
    @property
    def format(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def note(self) -> str | None: ...
    def chunks(self, chunk_size: int = ...) -> EntryChunks:
        """The entry's bytes (``chunk_size`` default 1 MiB), once: a second call is a
        ``RuntimeError`` (the archive is read as a stream)."""

@final
class EntryChunks(Iterator[bytes]):
    """A file entry's bytes in chunks of ``chunk_size`` (the last one shorter)."""

    def __iter__(self) -> EntryChunks: ...
    def __next__(self) -> bytes: ...
