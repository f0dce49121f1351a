//! Parsing a record-aligned piece of CSV/TSV into unescaped fields.
//!
//! RFC 4180 pieces take a fast path that leaves every field where it is in
//! the input, except quoted fields with doubled quotes, which are unescaped
//! into a side buffer. Anything unusual (a quote closed before other bytes,
//! a lone CR, a piece ending inside quotes) goes to csv-core, whose reading
//! is the reference for both.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::{Dialect, Escape};
use crate::source::utf8_lossless;
use crate::swar;

/// On a field's end: the field is an explicit null (`\N` in backslash TSV).
const NULL_FLAG: u32 = 1 << 31;
/// On a field's end: the record has no field here (a short, ragged row).
const MISSING_FLAG: u32 = 1 << 30;
/// On a field's start: the bytes are in the side buffer, not the input.
const SIDE_FLAG: u32 = 1 << 31;
const OFFSET: u32 = (1 << 30) - 1;
/// Largest piece these offsets can address.
pub const MAX_PIECE: usize = OFFSET as usize;

/// The fields of many records, stored column by column so that building one
/// Arrow column walks one compact array.
///
/// Each field is a `(start, end)` span of the input (or of the side buffer,
/// see [`SIDE_FLAG`]); a record shorter than the widest gets
/// [`MISSING_FLAG`] spans, or none after a column's last field (one wide
/// record must not make every later record cost its width).
#[derive(Debug)]
pub struct Records<'a> {
    input: &'a [u8],
    side: Vec<u8>,
    columns: Vec<Vec<(u32, u32)>>,
    widths: Vec<u32>,
    /// Fields of the record being read.
    current: usize,
    /// Most columns kept; a wider record marks the records too wide.
    limit: usize,
    too_wide: bool,
}

/// One field of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// The record has no field at this position (a short, ragged row).
    Missing,
    /// An explicit null (`\N` in backslash-escaped TSV).
    Null,
    /// The field's unescaped bytes.
    Value(&'a [u8]),
}

/// One column of [`Records`].
#[derive(Clone, Copy)]
pub struct ColumnView<'r> {
    spans: &'r [(u32, u32)],
    input: &'r [u8],
    side: &'r [u8],
}

impl<'r> ColumnView<'r> {
    /// The field of record `i` (records beyond the column are missing).
    #[inline]
    pub fn get(&self, i: usize) -> Field<'r> {
        let Some(&(start, end)) = self.spans.get(i) else {
            return Field::Missing;
        };
        if end & (NULL_FLAG | MISSING_FLAG) != 0 {
            return if end & NULL_FLAG != 0 {
                Field::Null
            } else {
                Field::Missing
            };
        }
        let buf = if start & SIDE_FLAG != 0 {
            self.side
        } else {
            self.input
        };
        Field::Value(&buf[(start & OFFSET) as usize..end as usize])
    }
}

impl<'a> Records<'a> {
    fn new(input: &'a [u8], limit: usize) -> Self {
        Self {
            input,
            side: Vec::new(),
            columns: Vec::new(),
            widths: Vec::new(),
            current: 0,
            limit,
            too_wide: false,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.widths.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of fields of record `i`.
    pub fn width(&self, i: usize) -> usize {
        self.widths[i] as usize
    }

    /// The widest record's field count.
    pub fn max_width(&self) -> usize {
        self.columns.len()
    }

    /// Column `j`.
    pub fn column(&self, j: usize) -> ColumnView<'_> {
        ColumnView {
            spans: self.columns.get(j).map_or(&[], Vec::as_slice),
            input: self.input,
            side: &self.side,
        }
    }

    /// Field `j` of record `i`.
    pub fn field(&self, i: usize, j: usize) -> Field<'_> {
        self.column(j).get(i)
    }

    #[inline(always)]
    fn push(&mut self, span: (u32, u32)) {
        let row = self.widths.len();
        match self.columns.get_mut(self.current) {
            Some(column) => {
                if column.len() < row {
                    column.resize(row, (0, MISSING_FLAG));
                }
                column.push(span);
            }
            None => self.push_new_column(span),
        }
        self.current += 1;
    }

    /// A new widest record: earlier records lack this field. Past the limit
    /// the field is not kept (the parse fails), so that memory stays bounded.
    #[cold]
    fn push_new_column(&mut self, span: (u32, u32)) {
        if self.columns.len() >= self.limit {
            self.too_wide = true;
            return;
        }
        // Room for the records the input may hold: each takes at least two
        // bytes per field.
        let records = self.input.len() / (2 * (self.columns.len() + 1)).max(128);
        let mut column = Vec::with_capacity(self.widths.capacity().max(records));
        column.resize(self.widths.len(), (0, MISSING_FLAG));
        column.push(span);
        self.columns.push(column);
    }

    #[inline]
    fn push_input(&mut self, start: usize, end: usize) {
        self.push((start as u32, end as u32));
    }

    #[inline]
    fn push_side(&mut self, start: usize, end: usize) {
        self.push((start as u32 | SIDE_FLAG, end as u32));
    }

    fn push_null(&mut self) {
        self.push((SIDE_FLAG, NULL_FLAG));
    }

    #[inline]
    fn end_record(&mut self) {
        self.widths.push(self.current as u32);
        self.current = 0;
    }
}

/// Why a piece of input could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The input ended inside a record (an open quote), at this input offset.
    UnfinishedRecord(usize),
    /// A record has more fields than the limit.
    TooWide {
        /// The widest record's fields.
        width: usize,
        /// Its index among the records.
        record: usize,
    },
}

/// A csv-core reader for `dialect`.
pub fn csv_reader(dialect: &Dialect) -> Reader {
    ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .quote(dialect.quote.unwrap_or(b'"'))
        .quoting(dialect.quote.is_some())
        .double_quote(true)
        .terminator(if dialect.terminator == b'\n' {
            Terminator::CRLF
        } else {
            Terminator::Any(dialect.terminator)
        })
        .build()
}

/// Parses `input`, a whole number of records. With `partial_tail`, a last
/// record that the input cuts short is dropped instead of reported (used on
/// a sample read from the start of a file).
///
/// # Errors
/// [`Trouble::UnfinishedRecord`] when the input ends inside a quoted field,
/// [`Trouble::TooWide`] when a record has more than `max_columns` fields.
pub fn parse<'a>(
    input: &'a [u8],
    dialect: &Dialect,
    partial_tail: bool,
    max_columns: usize,
) -> Result<Records<'a>, Trouble> {
    if input.len() > MAX_PIECE {
        // Unreachable: the converter bounds records (and so pieces) well
        // below this. Refuse rather than store offsets that do not fit.
        return Err(Trouble::UnfinishedRecord(0));
    }
    let records = match (dialect.escape, dialect.quote) {
        (Escape::Backslash, _) => {
            parse_backslash(input, dialect.delimiter, dialect.terminator, max_columns)
        }
        (Escape::Quoted, Some(quote)) if !partial_tail && dialect.terminator == b'\n' => {
            match parse_fast(input, dialect.delimiter, quote, max_columns) {
                Some(records) => records,
                None => parse_csv_core(input, dialect, partial_tail, max_columns)?,
            }
        }
        (Escape::Quoted, _) => parse_csv_core(input, dialect, partial_tail, max_columns)?,
    };
    if records.too_wide {
        let (record, width) = (records.widths.iter().enumerate())
            .max_by_key(|(_, w)| **w)
            .map_or((0, 0), |(i, w)| (i, *w as usize));
        return Err(Trouble::TooWide { width, record });
    }
    Ok(records)
}

/// RFC 4180 with `\n` or `\r\n` line ends; `None` for anything csv-core
/// should judge (see the module docs).
fn parse_fast(input: &[u8], delimiter: u8, quote: u8, limit: usize) -> Option<Records<'_>> {
    let mut recs = Records::new(input, limit);
    let stops = Stops::new(delimiter);
    let n = input.len();
    let mut pos = 0;
    while pos < n {
        match input[pos] {
            b'\n' => {
                pos += 1;
                continue;
            }
            b'\r' if input.get(pos + 1) == Some(&b'\n') => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        loop {
            if pos < n && input[pos] == quote {
                // Quoted: up to the closing quote, doubled quotes unescaped.
                let mut from = pos + 1;
                let mut side: Option<usize> = None;
                let close = loop {
                    let q = from + memchr::memchr(quote, &input[from..])?;
                    if input.get(q + 1) != Some(&quote) {
                        break q;
                    }
                    if side.is_none() {
                        side = Some(recs.side.len());
                    }
                    recs.side.extend_from_slice(&input[from..=q]);
                    from = q + 2;
                };
                match side {
                    Some(start) => {
                        recs.side.extend_from_slice(&input[from..close]);
                        recs.push_side(start, recs.side.len());
                    }
                    None => recs.push_input(pos + 1, close),
                }
                pos = close + 1;
                match input.get(pos) {
                    Some(&b) if b == delimiter => pos += 1,
                    Some(b'\n') => {
                        pos += 1;
                        break;
                    }
                    Some(b'\r') if input.get(pos + 1) == Some(&b'\n') => {
                        pos += 2;
                        break;
                    }
                    None => break,
                    Some(_) => return None,
                }
            } else {
                let end = stops.find(input, pos);
                recs.push_input(pos, end);
                match input.get(end) {
                    Some(&b) if b == delimiter => pos = end + 1,
                    Some(b'\n') => {
                        pos = end + 1;
                        break;
                    }
                    Some(b'\r') if input.get(end + 1) == Some(&b'\n') => {
                        pos = end + 2;
                        break;
                    }
                    None => {
                        pos = end;
                        break;
                    }
                    Some(_) => return None,
                }
            }
        }
        recs.end_record();
    }
    Some(recs)
}

/// The bytes that end an unquoted field: the delimiter, `\n`, `\r`.
struct Stops {
    delimiter: u8,
}

impl Stops {
    fn new(delimiter: u8) -> Self {
        Self { delimiter }
    }

    /// The position of the first stop at or after `from`, or the end.
    #[inline]
    fn find(&self, input: &[u8], from: usize) -> usize {
        let d = self.delimiter;
        let flags = |w| swar::equal(w, d) | swar::equal(w, b'\n') | swar::equal(w, b'\r');
        swar::find(input, from, flags, |c| c == d || c == b'\n' || c == b'\r')
    }
}

fn parse_csv_core<'a>(
    input: &'a [u8],
    dialect: &Dialect,
    partial_tail: bool,
    limit: usize,
) -> Result<Records<'a>, Trouble> {
    let mut recs = Records::new(input, limit);
    let mut rdr = csv_reader(dialect);
    let mut out = vec![0u8; input.len() + 16];
    let mut ends_scratch = vec![0usize; 64];
    let mut ends: Vec<usize> = Vec::with_capacity(64);
    let (mut pos, mut nout, mut rec_in, mut rec_out) = (0usize, 0usize, 0usize, 0usize);
    let push = |recs: &mut Records<'a>, rec_out: usize, ends: &[usize]| {
        let mut start = rec_out;
        for &end in ends {
            recs.push_side(start, end);
            start = end;
        }
        recs.end_record();
    };
    loop {
        // The first byte goes alone: csv-core would strip a byte order mark
        // at the start of every piece, but only the file's start may have one
        // (and it is removed before parsing).
        let limit = if pos == 0 {
            input.len().min(1)
        } else {
            input.len()
        };
        let (res, nin, n, nend) =
            rdr.read_record(&input[pos..limit], &mut out[nout..], &mut ends_scratch);
        pos += nin;
        // csv-core gives field ends relative to the record's first output byte.
        ends.extend(ends_scratch[..nend].iter().map(|&e| e + rec_out));
        nout += n;
        match res {
            ReadRecordResult::InputEmpty if pos < input.len() => {}
            ReadRecordResult::InputEmpty => {
                // Ask csv-core to finish: `End` means nothing was pending.
                let (res, _, n, nend) = rdr.read_record(&[], &mut out[nout..], &mut ends_scratch);
                if res == ReadRecordResult::Record {
                    if partial_tail {
                        break;
                    }
                    if dialect.quote.is_some() {
                        return Err(Trouble::UnfinishedRecord(rec_in));
                    }
                    ends.extend(ends_scratch[..nend].iter().map(|&e| e + rec_out));
                    nout += n;
                    push(&mut recs, rec_out, &ends);
                }
                break;
            }
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends_scratch.resize(ends_scratch.len() * 2, 0),
            ReadRecordResult::Record => {
                push(&mut recs, rec_out, &ends);
                ends.clear();
                // Blank lines before the next record are skipped by csv-core.
                rec_in = pos
                    + input[pos..]
                        .iter()
                        .take_while(|b| matches!(b, b'\r' | b'\n'))
                        .count();
                rec_out = nout;
            }
            ReadRecordResult::End => break,
        }
    }
    out.truncate(nout);
    recs.side = out;
    Ok(recs)
}

/// PostgreSQL/MySQL text format: no quoting, `\t` `\n` `\\` and friends
/// escaped with a backslash, `\N` for null.
fn parse_backslash(input: &[u8], delimiter: u8, terminator: u8, limit: usize) -> Records<'_> {
    let mut recs = Records::new(input, limit);
    let mut line_start = 0;
    while line_start < input.len() {
        let line_end = find_unescaped(input, line_start, terminator).unwrap_or(input.len());
        let mut line = &input[line_start..line_end];
        if terminator == b'\n' && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if !line.is_empty() {
            let mut field_start = 0;
            loop {
                // `\<delimiter>` is a delimiter inside a value (MySQL, PostgreSQL).
                let field_end = find_unescaped(line, field_start, delimiter).unwrap_or(line.len());
                let field = &line[field_start..field_end];
                if field == b"\\N" {
                    recs.push_null();
                } else {
                    let start = recs.side.len();
                    if unescape_into(field, &mut recs.side)
                        && std::str::from_utf8(&recs.side[start..]).is_err()
                    {
                        // Bytes from octal escapes that are not UTF-8 are read
                        // as Windows-1252, as a stray byte in the text is.
                        let (text, _) = utf8_lossless(&recs.side[start..]);
                        recs.side.truncate(start);
                        recs.side.extend_from_slice(&text);
                    }
                    recs.push_side(start, recs.side.len());
                }
                if field_end == line.len() {
                    break;
                }
                field_start = field_end + 1;
            }
            recs.end_record();
        }
        line_start = line_end + 1;
    }
    recs
}

/// The next `byte` at or after `from` that is not escaped by a backslash.
pub fn find_unescaped(input: &[u8], from: usize, byte: u8) -> Option<usize> {
    let mut at = from;
    loop {
        let p = at + memchr::memchr(byte, &input[at..])?;
        let slashes = input[from..p]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if slashes % 2 == 0 {
            return Some(p);
        }
        at = p + 1;
    }
}

/// Appends `field` with its escapes undone to `out`; says whether an octal
/// escape gave a byte that is not ASCII (the result may not be UTF-8).
fn unescape_into(field: &[u8], out: &mut Vec<u8>) -> bool {
    let mut high = false;
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &field[i..]) {
        out.extend_from_slice(&field[i..i + p]);
        i += p + 1;
        let Some(&c) = field.get(i) else {
            out.push(b'\\');
            return high;
        };
        i += 1;
        match c {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b'v' => out.push(0x0B),
            b'0'..=b'7' => {
                let digits = field[i - 1..]
                    .iter()
                    .take(3)
                    .take_while(|d| (b'0'..=b'7').contains(d));
                let n = digits.clone().count();
                let v = digits.fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push((v & 0xFF) as u8);
                high |= v & 0x80 != 0;
                i += n - 1;
            }
            other => out.push(other),
        }
    }
    out.extend_from_slice(&field[i..]);
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_are_found_where_a_byte_loop_finds_them() {
        // Every byte value around every stop, at every alignment.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for delimiter in [b',', b'\t', b';', b'|', 0x80, 0xff] {
            let stops = Stops::new(delimiter);
            for _ in 0..2000 {
                let len = (seed % 40) as usize;
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        match seed % 16 {
                            0 => delimiter,
                            1 => b'\n',
                            2 => b'\r',
                            _ => (seed >> 8) as u8,
                        }
                    })
                    .collect();
                for from in 0..=len {
                    let want = (from..len)
                        .find(|&i| [delimiter, b'\n', b'\r'].contains(&input[i]))
                        .unwrap_or(len);
                    assert_eq!(stops.find(&input, from), want, "{input:?} from {from}");
                }
            }
        }
    }

    fn dialect(delimiter: u8, escape: Escape) -> Dialect {
        Dialect {
            delimiter,
            quote: Some(b'"'),
            escape,
            terminator: b'\n',
            header: false,
        }
    }

    fn rows(r: &Records) -> Vec<Vec<Option<String>>> {
        (0..r.len())
            .map(|i| {
                (0..r.width(i))
                    .map(|j| match r.field(i, j) {
                        Field::Value(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quoted_fields_and_crlf() {
        let r = parse(
            b"a,\"b,\"\"c\"\"\r\nd\"\r\n\r\n1,2\n",
            &dialect(b',', Escape::Quoted),
            false,
            usize::MAX,
        )
        .expect("parses");
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            rows(&r),
            vec![vec![s("a"), s("b,\"c\"\r\nd")], vec![s("1"), s("2")]]
        );
    }

    #[test]
    fn open_quote_is_reported() {
        let res = parse(
            b"a,b\n\"open,x\n",
            &dialect(b',', Escape::Quoted),
            false,
            usize::MAX,
        );
        assert_eq!(res.err(), Some(Trouble::UnfinishedRecord(4)));
        let r = parse(
            b"a,b\n\"open,x\n",
            &dialect(b',', Escape::Quoted),
            true,
            usize::MAX,
        )
        .expect("partial");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn leading_bom_bytes_are_data_inside_a_piece() {
        let r = parse(
            "\u{feff}x,y\n".as_bytes(),
            &dialect(b',', Escape::Quoted),
            false,
            usize::MAX,
        )
        .expect("parses");
        assert_eq!(r.field(0, 0), Field::Value("\u{feff}x".as_bytes()));
    }

    /// The fast path must read every piece exactly as csv-core does, or
    /// hand it over: checked on random pieces over a hostile alphabet.
    #[test]
    fn fast_path_agrees_with_csv_core() {
        let d = dialect(b',', Escape::Quoted);
        let alphabet = [b'a', b'b', b',', b'"', b'\n', b'\r', b' '];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut fast_cases = 0;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 14) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|k| alphabet[((seed >> (3 * k % 60)) % alphabet.len() as u64) as usize])
                .collect();
            input.push(b'\n');
            let Some(fast) = parse_fast(&input, b',', b'"', usize::MAX) else {
                continue;
            };
            fast_cases += 1;
            let reference = parse_csv_core(&input, &d, false, usize::MAX);
            let Ok(reference) = reference else {
                panic!(
                    "fast path accepted what csv-core refuses: {:?}",
                    String::from_utf8_lossy(&input)
                );
            };
            assert_eq!(
                rows(&fast),
                rows(&reference),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        assert!(fast_cases > 10_000, "{fast_cases}");
    }

    #[test]
    fn backslash_tsv() {
        let r = parse(
            b"a\\tb\t\\N\tc\\\\d\\n\r\n\\101\tx\\\ny\n",
            &dialect(b'\t', Escape::Backslash),
            false,
            usize::MAX,
        )
        .expect("parses");
        assert_eq!(r.field(0, 0), Field::Value(b"a\tb"));
        assert_eq!(r.field(0, 1), Field::Null);
        assert_eq!(r.field(0, 2), Field::Value(b"c\\d\n"));
        assert_eq!(r.field(0, 3), Field::Missing);
        assert_eq!(r.field(1, 0), Field::Value(b"A"));
        assert_eq!(r.field(1, 1), Field::Value(b"x\ny"));
    }

    #[test]
    fn a_record_wider_than_the_limit_is_refused_in_bounded_memory() {
        let mut input = b"a,b\n1,2\n".to_vec();
        input.extend(b"1,".repeat(1 << 20));
        input.extend(b"1\n3,4\n".repeat(1000));
        let t = parse(&input, &dialect(b',', Escape::Quoted), false, 100).expect_err("too wide");
        assert!(
            matches!(
                t,
                Trouble::TooWide {
                    width: 1_048_577,
                    record: 2
                }
            ),
            "{t:?}"
        );
        let ok =
            parse(b"a,b\n1,2,3\n4\n", &dialect(b',', Escape::Quoted), false, 3).expect("3 fit");
        assert_eq!((ok.max_width(), ok.len()), (3, 3));
        assert_eq!(ok.field(2, 2), Field::Missing);
    }

    #[test]
    fn octal_escapes_give_utf8_or_windows_1252() {
        let r = parse(
            b"caf\\303\\251\tcaf\\351\n",
            &dialect(b'\t', Escape::Backslash),
            false,
            usize::MAX,
        )
        .expect("parses");
        assert_eq!(r.field(0, 0), Field::Value("caf\u{e9}".as_bytes()));
        assert_eq!(r.field(0, 1), Field::Value("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn an_escaped_delimiter_is_part_of_the_value() {
        // MySQL's INTO OUTFILE and PostgreSQL's COPY write a delimiter inside a
        // value as a backslash and the delimiter; `\\` before one ends the value.
        let r = parse(
            b"1\ta\\\tb\t5\n2\tc\\\\\t6\n3,x\\,y,7\n",
            &dialect(b'\t', Escape::Backslash),
            false,
            usize::MAX,
        )
        .expect("parses");
        assert_eq!(r.field(0, 1), Field::Value(b"a\tb"));
        assert_eq!(r.field(0, 2), Field::Value(b"5"));
        assert_eq!(r.field(0, 3), Field::Missing);
        assert_eq!(r.field(1, 1), Field::Value(b"c\\"));
        assert_eq!(r.field(1, 2), Field::Value(b"6"));
        let c = parse(
            b"x\\,y,7\n",
            &dialect(b',', Escape::Backslash),
            false,
            usize::MAX,
        )
        .expect("parses");
        assert_eq!(c.field(0, 0), Field::Value(b"x,y"));
        assert_eq!(c.field(0, 1), Field::Value(b"7"));
    }
}
