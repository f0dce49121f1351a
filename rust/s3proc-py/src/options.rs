//! Keyword options shared by `ParquetChunks` and `inspect`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use s3proc_core::csv::Escape;
use s3proc_core::source::TextEncoding;
use s3proc_core::ConvertOptions;

use crate::errors::type_error;

/// Options parsed from keyword arguments, and the source's display name.
pub struct Parsed {
    pub convert: ConvertOptions,
    pub name: Option<String>,
}

fn one_byte(option: &str, value: &str) -> PyResult<u8> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(type_error(format!(
            "{option} must be one ASCII character, got {value:?}"
        ))),
    }
}

/// Parses `**options`; an unknown name is a `TypeError`.
pub fn parse(options: Option<&Bound<'_, PyDict>>) -> PyResult<Parsed> {
    let mut c = ConvertOptions::default();
    let mut name = None;
    let Some(options) = options else {
        return Ok(Parsed { convert: c, name });
    };
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        let none = value.is_none();
        match key.as_str() {
            "delimiter" => {
                c.csv.delimiter = if none {
                    None
                } else {
                    Some(one_byte("delimiter", &value.extract::<String>()?)?)
                }
            }
            "quote" => {
                c.csv.quote = if none {
                    None
                } else {
                    let q: String = value.extract()?;
                    Some(if q.is_empty() {
                        None
                    } else {
                        Some(one_byte("quote", &q)?)
                    })
                }
            }
            "escape" => {
                c.csv.escape = match value.extract::<Option<String>>()?.as_deref() {
                    None | Some("auto") => None,
                    Some("quote") => Some(Escape::Quoted),
                    Some("backslash") => Some(Escape::Backslash),
                    Some(other) => {
                        return Err(type_error(format!(
                            "escape must be 'quote', 'backslash' or None, got {other:?}"
                        )))
                    }
                }
            }
            "header" => c.csv.header = value.extract()?,
            "null_values" => c.csv.null_values = value.extract()?,
            "encoding" => {
                c.csv.encoding = match value.extract::<Option<String>>()? {
                    None => None,
                    Some(e) => {
                        Some(TextEncoding::from_name(&e).map_err(|e| type_error(e.to_string()))?)
                    }
                }
            }
            "sample_rows" => c.csv.sample_rows = value.extract()?,
            "max_record_bytes" => c.csv.max_record_bytes = value.extract()?,
            "zstd_level" => c.parquet.zstd_level = value.extract()?,
            "row_group_rows" => c.parquet.row_group_rows = value.extract()?,
            "row_group_bytes" => c.parquet.row_group_bytes = value.extract()?,
            "chunk_size" => c.parquet.chunk_size = value.extract()?,
            "read_size" => c.read_size = value.extract()?,
            "name" => name = value.extract()?,
            other => return Err(type_error(format!("unknown option {other:?}"))),
        }
    }
    Ok(Parsed { convert: c, name })
}
