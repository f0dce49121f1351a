//! Keyword options shared by `ParquetChunks` and `inspect`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use s3proc_core::csv::Escape;
use s3proc_core::detect::FormatChoice;
use s3proc_core::source::TextEncoding;
use s3proc_core::ConvertOptions;

use crate::errors::{option_error, type_error};

/// Options parsed from keyword arguments, and the source's display name.
pub struct Parsed {
    pub convert: ConvertOptions,
    pub name: Option<String>,
}

fn one_byte(py: Python<'_>, option: &str, value: &str) -> PyResult<u8> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(option_error(
            py,
            option,
            format!("must be one ASCII character, got {value:?}"),
        )),
    }
}

/// Extracts an option's value; a wrong type or range is an `OptionError`.
pub fn get<'py, T: FromPyObjectOwned<'py>>(key: &str, value: &Bound<'py, PyAny>) -> PyResult<T> {
    value.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        option_error(value.py(), key, e.value(value.py()).to_string())
    })
}

/// Parses `**options`; an unknown name is a `TypeError`.
pub fn parse(options: Option<&Bound<'_, PyDict>>) -> PyResult<Parsed> {
    let mut c = ConvertOptions::default();
    let mut name = None;
    let Some(options) = options else {
        return Ok(Parsed { convert: c, name });
    };
    let py = options.py();
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        let k = key.as_str();
        let none = value.is_none();
        match k {
            "delimiter" => {
                c.csv.delimiter = match get::<Option<String>>(k, &value)? {
                    None => None,
                    Some(d) => Some(one_byte(py, k, &d)?),
                }
            }
            "quote" => {
                c.csv.quote = match get::<Option<String>>(k, &value)? {
                    None => None,
                    Some(q) if q.is_empty() => Some(None),
                    Some(q) => Some(Some(one_byte(py, k, &q)?)),
                }
            }
            "escape" => {
                c.csv.escape = match get::<Option<String>>(k, &value)?.as_deref() {
                    None | Some("auto") => None,
                    Some("quote") => Some(Escape::Quoted),
                    Some("backslash") => Some(Escape::Backslash),
                    Some(other) => {
                        let why = format!("must be 'quote', 'backslash' or None, got {other:?}");
                        return Err(option_error(py, k, why));
                    }
                }
            }
            "header" => c.csv.header = get(k, &value)?,
            "null_values" if value.is_instance_of::<PyString>() => {
                return Err(option_error(
                    py,
                    k,
                    format!(
                        "a list of strings, e.g. [{}], not one string",
                        value.repr()?
                    ),
                ));
            }
            "null_values" => c.csv.null_values = get(k, &value)?,
            "encoding" => {
                c.csv.encoding = match get::<Option<String>>(k, &value)? {
                    None => None,
                    Some(e) => {
                        Some(TextEncoding::from_name(&e).map_err(|e| crate::errors::to_py(py, e))?)
                    }
                }
            }
            "sample_rows" => c.csv.sample_rows = get(k, &value)?,
            "max_record_bytes" => c.csv.max_record_bytes = get(k, &value)?,
            "max_columns" => c.csv.max_columns = get(k, &value)?,
            "zstd_level" => c.parquet.zstd_level = get(k, &value)?,
            "row_group_rows" => c.parquet.row_group_rows = get(k, &value)?,
            "row_group_bytes" => c.parquet.row_group_bytes = get(k, &value)?,
            "chunk_size" => c.parquet.chunk_size = get(k, &value)?,
            "read_size" => c.read_size = if none { None } else { Some(get(k, &value)?) },
            "format" => {
                c.format = match get::<Option<String>>(k, &value)?.as_deref() {
                    None | Some("auto") => None,
                    Some(f) => {
                        Some(FormatChoice::from_name(f).map_err(|e| crate::errors::to_py(py, e))?)
                    }
                }
            }
            "record_element" => c.xml.record_element = get(k, &value)?,
            "name" => name = get(k, &value)?,
            other => return Err(type_error(format!("unknown option {other:?}"))),
        }
    }
    Ok(Parsed { convert: c, name })
}
