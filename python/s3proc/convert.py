"""Converting one input to a local Parquet file (what ``s3proc convert`` does)."""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from typing import IO, Any

from s3proc._core import ParquetChunks
from s3proc.errors import SchemaRestart


def _is_regular_file(out: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(out.fileno()).st_mode) and out.seekable()
    except (OSError, ValueError, io.UnsupportedOperation):
        return out.seekable()  # an in-memory stream


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote."""

    rows: int
    bytes: int
    restarts: int
    plan: dict[str, Any]
    warnings: tuple[str, ...] = ()  # what the conversion found worth a warning


def convert(source: str | os.PathLike[str] | IO[bytes], out: IO[bytes], **options: Any) -> ConvertResult:
    """Converts ``source`` to Parquet, writing it to the binary stream ``out``.

    A regular file ``out`` is rewound when a late value widens a column. Anything else (a
    pipe, a terminal, ``/dev/null``) gets a file whose types were inferred from the whole
    input first (unless ``sample_rows`` is given), so nothing already written ever has to be
    taken back. A source that cannot be read twice (a pipe) is read once, with types from the
    first ``sample_rows``: a later value that does not fit them is then a ``SourceError``.

    Args:
        source: A path, bytes, or a binary file-like object.
        out: Where the Parquet bytes go.
        **options: The converter's options (see ``ParquetChunks``).

    Returns:
        The row count, bytes written, restarts, the detected plan and the warnings.
    """
    seekable = _is_regular_file(out)
    rereadable = isinstance(source, str | os.PathLike | bytes | bytearray | memoryview) or source.seekable()
    if not seekable and rereadable:
        options.setdefault("sample_rows", None)
    chunks = ParquetChunks(source, **options)
    start = out.tell() if seekable else 0
    written = 0
    while True:
        try:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
            break
        except SchemaRestart:
            if not seekable:
                raise
            out.seek(start)
            out.truncate()
            written = 0
    out.flush()
    return ConvertResult(
        rows=chunks.rows or 0,
        bytes=written,
        restarts=chunks.restarts,
        plan=chunks.plan,
        warnings=tuple(chunks.warnings),
    )
