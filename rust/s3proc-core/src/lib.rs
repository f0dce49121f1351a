//! s3proc's core: streaming CSV/TSV and JSON to ZSTD Parquet conversion.
//!
//! This crate knows nothing of Python. [`convert::ParquetChunks`] pulls a
//! [`source::Source`] through a parallel pipeline (split, parse, build Arrow
//! columns, encode Parquet) and hands the file out as byte chunks, so that
//! memory depends on piece and row-group sizes, never on the file's size.

pub mod archive;
pub mod columns;
pub mod compress;
pub mod convert;
pub mod csv;
pub mod detect;
pub mod error;
pub mod json;
pub mod nested;
pub mod pipeline;
pub mod record_chunks;
pub mod sink;
pub mod source;
pub mod swar;
pub mod types;
pub mod value;
pub mod xml;

pub use convert::{inspect, ConvertOptions, Event, ParquetChunks, Plan};
pub use error::{Error, Result};
