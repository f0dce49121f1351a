//! s3proc's core: streaming CSV/TSV to ZSTD Parquet conversion.
//!
//! This crate knows nothing of Python. [`convert::ParquetChunks`] pulls a
//! [`source::Source`] through a parallel pipeline (split, parse, build Arrow
//! columns, encode Parquet) and hands the file out as byte chunks, so that
//! memory depends on piece and row-group sizes, never on the file's size.

pub mod archive;
pub mod columns;
pub mod convert;
pub mod csv;
pub mod error;
pub mod sink;
pub mod source;
pub mod types;
pub mod value;

pub use convert::{ConvertOptions, Event, ParquetChunks};
pub use error::{Error, Result};
