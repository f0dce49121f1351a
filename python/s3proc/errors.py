"""The exceptions s3proc raises; the compiled core raises these same classes."""

from __future__ import annotations


class S3procError(Exception):
    """Base class of every error s3proc raises on purpose."""


class ParseError(S3procError, ValueError):
    """The input is not data s3proc can convert.

    Attributes:
        source: Name of the input (its path, or the name it was given).
        line: 1-based line where the problem starts.
        reason: What is wrong, in words.
    """

    source: str
    line: int
    reason: str


class SourceError(S3procError, OSError):
    """Reading the input failed."""


class OptionError(S3procError, ValueError):
    """An option has a value s3proc cannot use."""


class ArchiveError(S3procError, ValueError):
    """An archive is corrupt, truncated, encrypted, unsupported, or past a limit.

    The archive as a whole failed: entries read before the error are not a complete
    listing of it.

    Attributes:
        archive: Name of the (outermost) archive.
        entry: Path of the entry concerned (``outer/inner`` when nested), or ``None``
            when the archive itself is at fault.
        reason: What is wrong, in words (a limit names its option).
    """

    archive: str
    entry: str | None
    reason: str


class SchemaRestart(S3procError):
    """The chunks handed out so far are void; iteration goes on from the file's first byte.

    Raised by ``ParquetChunks.__next__`` when a value late in the input did not fit
    its column's inferred type and the column was widened. The next call returns the
    first chunk of the new file. The message says which column changed and why.
    """


class InternalError(S3procError):
    """A bug in s3proc's core (a Rust panic caught at the boundary)."""


__all__ = [
    "ArchiveError",
    "InternalError",
    "OptionError",
    "ParseError",
    "S3procError",
    "SchemaRestart",
    "SourceError",
]
