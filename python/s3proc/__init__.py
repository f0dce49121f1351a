"""s3proc: ship what lands in a folder to S3, tabular files as ZSTD Parquet."""

from __future__ import annotations

from s3proc._core import ArchiveReader, ParquetChunks, __version__, build_profile, inspect
from s3proc.convert import ConvertResult, convert
from s3proc.errors import (
    ArchiveError,
    InternalError,
    OptionError,
    ParseError,
    S3procError,
    SchemaRestart,
    SourceError,
)

__all__ = [
    "ArchiveError",
    "ArchiveReader",
    "ConvertResult",
    "InternalError",
    "OptionError",
    "ParquetChunks",
    "ParseError",
    "S3procError",
    "SchemaRestart",
    "SourceError",
    "__version__",
    "build_profile",
    "convert",
    "inspect",
]
