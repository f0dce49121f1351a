//! Detecting encoding, dialect, header and column types from the start of a file.

use std::collections::HashSet;
use std::io::Read;

use super::records::{self, Field, Trouble};
use super::split::count_byte;
use super::{CsvOptions, Dialect, Escape, NullMarkers};
use crate::columns::{unique_names, Column, Repeats};
use crate::error::{Error, Result};
use crate::source::{open_text, utf8_lossless, Source, TextEncoding};
use crate::types::ColumnType;

/// How much of the file's start is read to detect its shape.
pub const SAMPLE_BYTES: usize = 4 << 20;

/// Delimiters tried, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// Everything the converter needs to know about a CSV/TSV source.
#[derive(Clone, Debug)]
pub struct CsvPlan {
    /// The text encoding.
    pub encoding: TextEncoding,
    /// The dialect.
    pub dialect: Dialect,
    /// Values read as null.
    pub nulls: NullMarkers,
    /// The output columns.
    pub columns: Vec<Column>,
    /// Most columns accepted (ragged rows add columns).
    pub max_columns: usize,
}

/// Reads the start of `source` and detects what `opts` leaves open.
///
/// # Errors
/// I/O errors; [`Error::Parse`] for an empty or binary file or an open quote
/// at the end of a short file.
pub fn sniff(source: &dyn Source, opts: &CsvOptions) -> Result<CsvPlan> {
    Ok(sniff_then(source, opts, |_, _| ())?.0)
}

/// As [`sniff`], and then calls `then` with the plan and, when the sample
/// was the whole input and every record of it was read for the types, its
/// parsed records (valid UTF-8, terminated, the header record included): a
/// small file needs no second parse.
///
/// # Errors
/// As [`sniff`].
pub fn sniff_then<T>(
    source: &dyn Source,
    opts: &CsvOptions,
    then: impl FnOnce(&CsvPlan, Option<&records::Records<'_>>) -> T,
) -> Result<(CsvPlan, T)> {
    let name = source.name();
    let (encoding, raw) = match opts.encoding {
        Some(e) => (e, None),
        None => {
            let (head, at_eof) = read_head(source.open().map_err(|e| Error::io(name, e))?, name)?;
            (detect_encoding(&head, at_eof), Some((head, at_eof)))
        }
    };
    // Plain UTF-8 is its own text: the head already read is the sample.
    let (text, at_eof) = match raw {
        Some(head) if encoding == TextEncoding::Utf8 => head,
        _ => read_head(open_text(source, encoding)?, name)?,
    };
    check_text(&text, name)?;
    let quote = opts.quote.unwrap_or(Some(b'"'));
    let terminator = sniff_terminator(&text, quote);
    let delimiter = match opts.delimiter {
        Some(d) => d,
        None => sniff_delimiter(&text, quote, terminator, is_tsv_name(name)),
    };
    let escape = opts
        .escape
        .unwrap_or_else(|| sniff_escape(&text, delimiter, quote));
    let mut dialect = Dialect {
        delimiter,
        quote,
        escape,
        terminator,
        header: false,
    };
    let input = sample_input(&text, at_eof, dialect.terminator);
    let sample =
        records::parse(&input, &dialect, !at_eof, opts.max_columns).map_err(|t| match t {
            Trouble::UnfinishedRecord(at) => {
                let line = 1 + count_byte(&input[..at.min(input.len())], dialect.terminator);
                Error::parse(
                    name,
                    line,
                    "quoted field is never closed (unterminated quote)",
                )
            }
            Trouble::TooWide { width, record } => {
                Error::too_many_columns(name, record as u64 + 1, width, opts.max_columns)
            }
        })?;
    if sample.is_empty() {
        return Err(Error::parse(name, 1, "empty file: no header and no rows"));
    }
    let nulls = NullMarkers::new(&opts.null_values);
    let limit = opts
        .sample_rows
        .map_or(sample.len(), |n| n.saturating_add(1).min(sample.len()));
    let value = |i: usize, j: usize| match sample.field(i, j) {
        Field::Value(v) if !nulls.is_null(v) => Some(v),
        _ => None,
    };
    let width = (0..limit).map(|i| sample.width(i)).max().unwrap_or(0);
    // What the rows below the first say of each column, read once for both
    // the header decision and the types.
    let mut below: Vec<Stats> = (0..width)
        .map(|j| {
            let mut stats = Stats::new(limit);
            (1..limit)
                .filter_map(|i| value(i, j))
                .for_each(|v| stats.add(v));
            stats
        })
        .collect();
    let first: Vec<Option<&[u8]>> = (0..sample.width(0)).map(|j| value(0, j)).collect();
    dialect.header = opts
        .header
        .unwrap_or_else(|| detect_header(&first, &below, limit));
    if !dialect.header {
        for (stats, v) in below.iter_mut().zip(&first) {
            v.iter().for_each(|v| stats.add(v));
        }
    }
    let header_names: Vec<Option<String>> = (0..width)
        .map(|j| match (dialect.header, sample.field(0, j)) {
            (true, Field::Value(v)) if !v.is_empty() => {
                // Invalid bytes (only with a forced encoding) read as Windows-1252.
                Some(String::from_utf8_lossy(&utf8_lossless(v).0).into_owned())
            }
            _ => None,
        })
        .collect();
    let columns = unique_names(&header_names)
        .into_iter()
        .zip(below)
        .map(|(name, stats)| Column {
            name,
            ty: stats.ty,
            dictionary: stats.repeats.wants_dictionary(stats.ty),
        })
        .collect();
    let plan = CsvPlan {
        encoding,
        dialect,
        nulls,
        columns,
        max_columns: opts.max_columns,
    };
    let whole = at_eof && limit == sample.len() && simdutf8::basic::from_utf8(&input).is_ok();
    let out = then(&plan, whole.then_some(&sample));
    Ok((plan, out))
}

/// Reads up to [`SAMPLE_BYTES`]; also tells whether that was the whole input.
fn read_head(reader: Box<dyn Read + Send>, name: &str) -> Result<(Vec<u8>, bool)> {
    let mut head = Vec::with_capacity(64 * 1024);
    reader
        .take(SAMPLE_BYTES as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(name, e))?;
    let at_eof = head.len() <= SAMPLE_BYTES;
    head.truncate(SAMPLE_BYTES);
    Ok((head, at_eof))
}

fn detect_encoding(head: &[u8], at_eof: bool) -> TextEncoding {
    if let Some(e) = TextEncoding::from_bom(head) {
        return e;
    }
    match simdutf8::compat::from_utf8(head) {
        Ok(_) => TextEncoding::Utf8,
        // A character cut by the end of the sample is not an error.
        Err(e) if e.error_len().is_none() && !at_eof => TextEncoding::Utf8,
        Err(_) => TextEncoding::Windows1252,
    }
}

/// Refuses binary data: a NUL byte, or many control characters.
fn check_text(text: &[u8], name: &str) -> Result<()> {
    if let Some(p) = memchr::memchr(0, text) {
        let line = 1 + count_byte(&text[..p], b'\n');
        return Err(Error::parse(
            name,
            line,
            format!("binary data (NUL byte at offset {p}): not a text table"),
        ));
    }
    let controls = text
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F)
        .count();
    if controls * 20 > text.len() {
        return Err(Error::parse(
            name,
            1,
            "binary data (control characters): not a text table",
        ));
    }
    Ok(())
}

fn is_tsv_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tsv", ".tab", ".tsv.gz", ".tsv.zst", ".tsv.bz2", ".tsv.xz"]
        .iter()
        .any(|s| lower.ends_with(s))
}

/// Picks the delimiter whose count per record is the most consistent over
/// the first records (quotes respected).
fn sniff_delimiter(text: &[u8], quote: Option<u8>, terminator: u8, prefer_tab: bool) -> u8 {
    let mut counts: Vec<[usize; 4]> = Vec::new();
    let mut current = [0usize; 4];
    let mut in_quote = false;
    for &b in text.iter().take(256 * 1024) {
        if Some(b) == quote {
            in_quote = !in_quote;
        } else if !in_quote {
            if b == terminator {
                counts.push(current);
                current = [0; 4];
                if counts.len() == 100 {
                    break;
                }
            } else if let Some(k) = DELIMITERS.iter().position(|&d| d == b) {
                current[k] += 1;
            }
        }
    }
    if counts.is_empty() {
        counts.push(current);
    }
    let mut best = (if prefer_tab { b'\t' } else { b',' }, 0usize, 0usize);
    for (k, &d) in DELIMITERS.iter().enumerate() {
        let mut freq = std::collections::HashMap::new();
        for c in &counts {
            *freq.entry(c[k]).or_insert(0usize) += 1;
        }
        let (mode, hits) = freq
            .into_iter()
            .max_by_key(|&(count, hits)| (hits, count))
            .unwrap_or((0, 0));
        if mode == 0 {
            continue;
        }
        let tab_bonus = usize::from(prefer_tab && d == b'\t');
        let score = (hits + tab_bonus, mode);
        if score > (best.1, best.2) {
            best = (d, score.0, score.1);
        }
    }
    best.0
}

/// The line end: `\r` when the first one outside quotes is a lone `\r`
/// (a quoted value may hold a `\n`), else `\n` (CRLF too) unless the
/// sample has `\r` and no `\n` at all.
fn sniff_terminator(text: &[u8], quote: Option<u8>) -> u8 {
    let mut quoted = false;
    for (i, &b) in text.iter().enumerate() {
        if Some(b) == quote {
            quoted = !quoted;
        } else if !quoted && b == b'\r' && text.get(i + 1).is_some_and(|&c| c != b'\n') {
            return b'\r';
        } else if !quoted && b == b'\n' {
            break;
        }
    }
    if memchr::memchr(b'\n', text).is_some() || memchr::memchr(b'\r', text).is_none() {
        b'\n'
    } else {
        b'\r'
    }
}

/// Backslash escapes (the text format of PostgreSQL, MySQL and Hive, and
/// "linear TSV") for a TSV whose sample shows them, where every backslash
/// starts an escape those formats write: `C:\Users\bob` is plain text,
/// kept as written. A field that is `\N`, their null, decides for escapes;
/// without one, quoted fields decide for quoting, unless a field that
/// starts with a quote is not a quoted field (`"Hello" she said`): quoting
/// would merge rows there.
fn sniff_escape(text: &[u8], delimiter: u8, quote: Option<u8>) -> Escape {
    if delimiter != b'\t' {
        return Escape::Quoted;
    }
    let ends_field = |i: usize| {
        text.get(i)
            .is_none_or(|c| matches!(c, b'\t' | b'\n' | b'\r'))
    };
    let (mut escapes, mut null) = (false, false);
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &text[i..]) {
        let at = i + p;
        let Some(&c) = text.get(at + 1) else {
            break; // the sample ends inside an escape
        };
        match c {
            b'N' if (at == 0 || ends_field(at - 1)) && ends_field(at + 2) => null = true,
            b't' | b'n' | b'r' | b'\\' => escapes = true,
            b'b' | b'f' | b'v' | b'Z' | b'0'..=b'7' | b'\t' | b'\n' | b'\r' => {}
            _ => return Escape::Quoted,
        }
        i = at + 2;
    }
    if null {
        return Escape::Backslash;
    }
    match quote.map(|q| quoting(text, q)) {
        _ if !escapes => Escape::Quoted,
        Some(Quoting {
            clean: true,
            broken: false,
        }) => Escape::Quoted,
        _ => Escape::Backslash,
    }
}

/// What the fields of a TSV sample that start with a quote are.
struct Quoting {
    /// Some is a quoted field: the quote closes before a tab or a line end.
    clean: bool,
    /// Some is not: its quote closes before another character, or never.
    broken: bool,
}

/// Reads the fields of a TSV sample that start with `quote`, in one pass.
fn quoting(text: &[u8], quote: u8) -> Quoting {
    let mut found = Quoting {
        clean: false,
        broken: false,
    };
    let mut i = 0;
    while i < text.len() {
        if text[i] == quote {
            // A quoted field: the next quote that is not doubled closes it.
            let mut j = i + 1;
            loop {
                match memchr::memchr(quote, &text[j..]) {
                    None => {
                        found.broken = true;
                        return found;
                    }
                    Some(p) if text.get(j + p + 1) == Some(&quote) => j += p + 2,
                    Some(p) => {
                        j += p + 1;
                        break;
                    }
                }
            }
            match text.get(j) {
                None | Some(b'\t' | b'\n' | b'\r') => found.clean = true,
                Some(_) => found.broken = true,
            }
            i = j;
        }
        // To the next field.
        match memchr::memchr3(b'\t', b'\n', b'\r', &text[i..]) {
            Some(p) => i += p + 1,
            None => break,
        }
    }
    found
}

/// The sample to parse: a file read whole gets its missing final terminator.
fn sample_input(text: &[u8], at_eof: bool, terminator: u8) -> std::borrow::Cow<'_, [u8]> {
    let mut input = std::borrow::Cow::Borrowed(text);
    if at_eof && !text.is_empty() && text.last() != Some(&terminator) {
        input.to_mut().push(terminator);
    }
    input
}

/// What the sample says of one column.
struct Stats {
    ty: ColumnType,
    repeats: Repeats,
}

impl Stats {
    fn new(rows: usize) -> Self {
        Self {
            ty: ColumnType::default(),
            repeats: Repeats::new(rows),
        }
    }

    fn add(&mut self, v: &[u8]) {
        self.ty = self.ty.widen_for(v);
        self.repeats.add(v);
    }
}

/// Whether the first record names the columns: it does when some column
/// has typed values below and a first value that is not of that type.
fn detect_header(first: &[Option<&[u8]>], below: &[Stats], limit: usize) -> bool {
    let all_text = first
        .iter()
        .all(|v| v.is_some_and(|v| ColumnType::Null.widen_for(v) == ColumnType::Utf8));
    if limit <= 1 {
        return all_text;
    }
    let (mut for_header, mut for_data) = (0, 0);
    for (v, stats) in first.iter().zip(below) {
        match (stats.ty, v) {
            // A blank first value says nothing: a header may leave a name
            // blank, data may have a null.
            (ColumnType::Utf8 | ColumnType::Null, _) | (_, None) => {}
            (t, Some(v)) if t.widen_for(v) == t => for_data += 1,
            _ => for_header += 1,
        }
    }
    if for_header + for_data > 0 {
        return for_header > 0 && for_data == 0;
    }
    // Every column is text: a first row of distinct non-empty words is a header.
    let distinct: HashSet<_> = first.iter().flatten().collect();
    all_text && distinct.len() == first.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_delimiters() {
        assert_eq!(
            sniff_delimiter(b"a;b;c\n1;2,5;3\n", Some(b'"'), b'\n', false),
            b';'
        );
        assert_eq!(
            sniff_delimiter(b"a\tb\n\"x,y\"\tz\n", Some(b'"'), b'\n', false),
            b'\t'
        );
        assert_eq!(
            sniff_delimiter(b"a|b\n1|2\n", Some(b'"'), b'\n', false),
            b'|'
        );
        assert_eq!(
            sniff_delimiter(b"single\nx\n", Some(b'"'), b'\n', true),
            b'\t'
        );
    }

    #[test]
    fn finds_the_line_end_outside_quotes() {
        let q = Some(b'"');
        assert_eq!(sniff_terminator(b"a,b\r1,\"x\ny\"\r2,z\r", q), b'\r');
        assert_eq!(sniff_terminator(b"a,\"x\ry\"\n1,2\n", q), b'\n');
        assert_eq!(sniff_terminator(b"a,b\r\n1,2\r\n", q), b'\n');
        assert_eq!(sniff_terminator(b"a,b\r1,2\r", q), b'\r');
        assert_eq!(sniff_terminator(b"a,b\r", q), b'\r');
        assert_eq!(sniff_terminator(b"a,b", q), b'\n');
    }

    #[test]
    fn detects_backslash_tsv() {
        let escape = |text: &[u8]| sniff_escape(text, b'\t', Some(b'"'));
        assert_eq!(escape(b"a\tb\nx\\ty\t\\N\n"), Escape::Backslash);
        assert_eq!(escape(b"a\tb\nx\\ty\t1\n"), Escape::Backslash);
        // A quoted field, and backslashes that may be text.
        assert_eq!(escape(b"a\tb\n\"x\\ty\"\t1\n"), Escape::Quoted);
        // \N is their null: a value that merely starts with a quote is text.
        assert_eq!(escape(b"a\tb\n\"fine\"\t\\N\n"), Escape::Backslash);
        assert_eq!(
            escape(b"a\tb\n\"Hi\" she said\tx\\ny\n\"ok\"\t1\n"),
            Escape::Backslash
        );
        assert_eq!(escape(b"a\tb\n\"open\tx\\ny\n"), Escape::Backslash);
        // Windows paths: \U is no escape, so nothing is.
        assert_eq!(escape(b"p\nC:\\temp\\new.txt\nC:\\Users\n"), Escape::Quoted);
        assert_eq!(escape(b"p\nC:\\Users\\x\t\\N\n"), Escape::Quoted);
        assert_eq!(escape(b"a\tb\nx\t\\"), Escape::Quoted);
        assert_eq!(sniff_escape(b"a,b\n", b',', Some(b'"')), Escape::Quoted);
    }
}
