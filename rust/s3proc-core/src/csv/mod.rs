//! CSV and TSV: dialects, sniffing, splitting and parsing.

pub mod records;
pub mod sniff;
pub mod split;

/// How fields protect delimiters and terminators inside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// RFC 4180: quoted fields, a quote doubled inside them.
    Quoted,
    /// PostgreSQL/MySQL text format: `\t`, `\n`, `\\` escapes, `\N` null, no quotes.
    Backslash,
}

impl Escape {
    /// The name used in options and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Escape::Quoted => "quote",
            Escape::Backslash => "backslash",
        }
    }
}

/// The shape of a delimited text file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// Field separator.
    pub delimiter: u8,
    /// Quote character; `None` when fields are never quoted.
    pub quote: Option<u8>,
    /// Quoting or backslash escapes.
    pub escape: Escape,
    /// Record terminator: `\n` (also ending `\r\n`) or `\r` alone.
    pub terminator: u8,
    /// Whether the first record holds the column names.
    pub header: bool,
}

/// Text values that mean "no value".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NullMarkers {
    empty: bool,
    others: Vec<Vec<u8>>,
}

impl NullMarkers {
    /// Markers from a list of strings (`""` is the empty field).
    pub fn new(values: &[String]) -> Self {
        Self {
            empty: values.iter().any(String::is_empty),
            others: values
                .iter()
                .filter(|v| !v.is_empty())
                .map(|v| v.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Whether `v` is null.
    #[inline]
    pub fn is_null(&self, v: &[u8]) -> bool {
        if v.is_empty() {
            return self.empty;
        }
        !self.others.is_empty() && self.others.iter().any(|m| m == v)
    }

    /// The markers as strings, for metadata.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.empty {
            out.push(String::new());
        }
        out.extend(
            self.others
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned()),
        );
        out
    }
}

/// Options of the CSV reader; `None` means "detect".
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// Field separator.
    pub delimiter: Option<u8>,
    /// Quote character; `Some(None)` turns quoting off.
    pub quote: Option<Option<u8>>,
    /// Quoting or backslash escapes.
    pub escape: Option<Escape>,
    /// Whether the first record is a header.
    pub header: Option<bool>,
    /// Values read as null. Default: the empty field.
    pub null_values: Vec<String>,
    /// Text encoding.
    pub encoding: Option<crate::source::TextEncoding>,
    /// Records read to infer types before converting; `None` reads the
    /// whole file first (two passes, never a restart).
    pub sample_rows: Option<usize>,
    /// Longest record accepted, in bytes; longer is an error (bounds memory).
    pub max_record_bytes: usize,
    /// Most columns (Parquet leaf columns) accepted; more is an error
    /// (bounds memory: each column holds its own buffers).
    pub max_columns: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: None,
            escape: None,
            header: None,
            null_values: vec![String::new()],
            encoding: None,
            sample_rows: Some(20_000),
            max_record_bytes: 64 << 20,
            max_columns: 2_000,
        }
    }
}
