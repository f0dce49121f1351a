//! Deciding what a source holds before any format reads it: its name's
//! extension, its magic bytes and its first non-space byte.
//!
//! Binary data with a tabular name is refused here, naming what it looks
//! like, so that no reader ever turns it into a valid-looking Parquet file.

use std::io::Read;

use crate::error::{Error, Result};
use crate::json::split::Layout;
use crate::source::{open_text, Source, TextEncoding};

/// Bytes of the decoded start of a source read to decide its format.
pub const HEAD_BYTES: usize = 4 << 20;

/// The tabular formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// CSV or TSV (the dialect is sniffed by [`crate::csv::sniff`]).
    Csv,
    /// JSON: newline-delimited, concatenated, one array or one object.
    Json(Layout),
    /// XML.
    Xml,
}

/// What the caller may force (the `format` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatChoice {
    /// CSV/TSV.
    Csv,
    /// Any JSON layout (detected from the content).
    Json,
    /// One JSON value per line.
    Ndjson,
    /// XML.
    Xml,
}

impl FormatChoice {
    /// Parses a user-given format name.
    ///
    /// # Errors
    /// [`Error::Option`] for a name that is not a format.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => FormatChoice::Csv,
            "json" => FormatChoice::Json,
            "ndjson" | "jsonl" => FormatChoice::Ndjson,
            "xml" => FormatChoice::Xml,
            _ => {
                return Err(Error::Option {
                    option: "format",
                    reason: format!("unknown format {name:?} (use csv, tsv, json, ndjson or xml)"),
                })
            }
        })
    }
}

/// The outcome of detection: the format and why it was chosen.
#[derive(Clone, Debug)]
pub struct Detected {
    /// The format.
    pub format: Format,
    /// In words, for `inspect` (for example "extension .ndjson").
    pub why: String,
    /// The text encoding: the one forced, or the byte order mark's, or UTF-8
    /// (CSV sniffs its own).
    pub encoding: TextEncoding,
}

impl Format {
    /// A short name, as in metadata (`csv`, `ndjson`, `json`, `xml`).
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json(Layout::Lines) => "ndjson",
            Format::Json(_) => "json",
            Format::Xml => "xml",
        }
    }
}

/// Magic numbers of data that is not a text table.
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x5d\x00\x00", "lzma-compressed data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"Rar!\x1a\x07", "a rar archive"),
    (b"PAR1", "a Parquet file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1", "an Arrow IPC file"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an OLE2 document (old Excel/Word)",
    ),
];

/// What binary data `head` (the raw first bytes) looks like, if its magic
/// number says.
pub fn binary_kind(head: &[u8]) -> Option<String> {
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return Some((*what).to_owned());
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return Some("a tar archive".into());
    }
    // Text with NUL bytes but no known magic number is left to the format's
    // reader, which names the line (CSV) or the line and column (JSON).
    None
}

fn extension(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    base.rsplit_once('.')
        .map(|(_, e)| e.to_owned())
        .unwrap_or_default()
}

/// Decides the format of `source` (`choice` forces one; `encoding` is the
/// forced text encoding, if any).
///
/// # Errors
/// I/O errors; [`Error::Parse`] for binary data, an empty source, or a
/// JSON start that is not a record, an array or an object.
pub fn detect(
    source: &dyn Source,
    choice: Option<FormatChoice>,
    encoding: Option<TextEncoding>,
) -> Result<Detected> {
    let name = source.name();
    let io = |e| Error::io(name, e);
    let mut raw = Vec::with_capacity(4096);
    source
        .open()
        .map_err(io)?
        .take(4096)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let utf16 = matches!(
        encoding,
        Some(TextEncoding::Utf16Le | TextEncoding::Utf16Be)
    );
    if let Some(what) = binary_kind(&raw).filter(|_| !utf16) {
        return Err(Error::parse(
            name,
            1,
            format!("binary data, not a text table: looks like {what}"),
        ));
    }
    let ext = extension(name);
    let by_ext = match ext.as_str() {
        "ndjson" | "jsonl" | "ldjson" => Some(FormatChoice::Ndjson),
        "json" | "geojson" => Some(FormatChoice::Json),
        "xml" => Some(FormatChoice::Xml),
        "csv" | "tsv" | "tab" | "psv" => Some(FormatChoice::Csv),
        _ => None,
    };
    let encoding = encoding
        .or_else(|| TextEncoding::from_bom(&raw))
        .unwrap_or(TextEncoding::Utf8);
    let mut head = None;
    let (choice, why) = match (choice, by_ext) {
        (Some(c), _) => (c, "the format option".to_owned()),
        (None, Some(c)) => (c, format!("extension .{ext}")),
        (None, None) => match first_byte(head.insert(read_head(source, encoding)?).0.as_slice()) {
            Some(b'{' | b'[') => (FormatChoice::Json, "content starts with { or [".into()),
            Some(b'<') => (FormatChoice::Xml, "content starts with <".into()),
            _ => (FormatChoice::Csv, "no other format matched".into()),
        },
    };
    let format = match choice {
        FormatChoice::Csv => Format::Csv,
        FormatChoice::Xml => Format::Xml,
        FormatChoice::Ndjson => Format::Json(Layout::Lines),
        FormatChoice::Json => {
            let (head, at_eof) = match head {
                Some(h) => h,
                None => read_head(source, encoding)?,
            };
            let layout = crate::json::split::detect_layout(&head, at_eof, name)?;
            return Ok(Detected {
                why: format!("{why}; {}", layout.describe()),
                format: Format::Json(layout),
                encoding,
            });
        }
    };
    Ok(Detected {
        format,
        why,
        encoding,
    })
}

fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Up to [`HEAD_BYTES`] of the decoded text; also whether that is all of it.
pub fn read_head(source: &dyn Source, encoding: TextEncoding) -> Result<(Vec<u8>, bool)> {
    let mut head = Vec::with_capacity(64 * 1024);
    open_text(source, encoding)?
        .take(HEAD_BYTES as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(source.name(), e))?;
    let at_eof = head.len() <= HEAD_BYTES;
    head.truncate(HEAD_BYTES);
    Ok((head, at_eof))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BytesSource;

    fn detect_bytes(name: &str, data: &[u8]) -> Result<Detected> {
        let src = BytesSource {
            data: data.into(),
            name: name.into(),
        };
        detect(&src, None, None)
    }

    #[test]
    fn names_binary_data() {
        for (data, what) in [
            (&b"\x28\xb5\x2f\xfd\x00\x00"[..], "zstd"),
            (b"\x1f\x8b\x08\x00", "gzip"),
            (b"PK\x03\x04xx", "zip"),
        ] {
            let err = detect_bytes("x.csv", data).expect_err("binary").to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn extension_then_content() {
        let f = |n: &str, d: &[u8]| detect_bytes(n, d).expect("detects").format;
        assert_eq!(f("a.ndjson", b"{\"a\":1}\n"), Format::Json(Layout::Lines));
        assert_eq!(
            f("a.json", b"{\"a\":1}\n{\"a\":2}\n"),
            Format::Json(Layout::Lines)
        );
        assert_eq!(f("a.csv", b"a,b\n1,2\n"), Format::Csv);
        assert_eq!(f("a", b"  <?xml version='1.0'?><a/>"), Format::Xml);
        assert!(matches!(
            f("data", b"[{\"a\":1}]"),
            Format::Json(Layout::Array { .. })
        ));
    }
}
