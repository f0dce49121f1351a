//! Parsing a record-aligned piece of CSV/TSV into unescaped fields.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::{Dialect, Escape};

/// Marks a field end whose field is an explicit null (`\N` in backslash TSV).
const NULL_FLAG: u32 = 1 << 31;

/// Unescaped fields of many records, stored compactly.
///
/// For record `i`, `bounds[idx[i]]` is where its bytes start in `data` and
/// `bounds[idx[i] + 1 .. idx[i + 1]]` are the ends of its fields.
#[derive(Debug, Default)]
pub struct Records {
    data: Vec<u8>,
    bounds: Vec<u32>,
    idx: Vec<u32>,
    /// Byte offset in the parsed input where each record starts (for line numbers).
    starts: Vec<u32>,
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

impl Records {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.idx.len().saturating_sub(1)
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of fields of record `i`.
    pub fn width(&self, i: usize) -> usize {
        (self.idx[i + 1] - self.idx[i] - 1) as usize
    }

    /// The widest record's field count.
    pub fn max_width(&self) -> usize {
        (0..self.len()).map(|i| self.width(i)).max().unwrap_or(0)
    }

    /// Field `j` of record `i`.
    #[inline]
    pub fn field(&self, i: usize, j: usize) -> Field<'_> {
        let base = self.idx[i] as usize;
        let last = self.idx[i + 1] as usize;
        if base + 1 + j >= last {
            return Field::Missing;
        }
        let start = if j == 0 {
            self.bounds[base]
        } else {
            self.bounds[base + j] & !NULL_FLAG
        };
        let end = self.bounds[base + 1 + j];
        if end & NULL_FLAG != 0 {
            Field::Null
        } else {
            Field::Value(&self.data[start as usize..end as usize])
        }
    }

    /// Byte offset in the parsed input where record `i` starts.
    pub fn input_offset(&self, i: usize) -> usize {
        self.starts[i] as usize
    }

    fn begin(&mut self, input_len: usize) {
        self.data = Vec::with_capacity(input_len + 16);
        self.idx.push(0);
    }

    fn push_record(&mut self, input_start: usize, data_start: usize, ends: &[u32]) {
        self.bounds.push(data_start as u32);
        self.bounds.extend_from_slice(ends);
        self.idx.push(self.bounds.len() as u32);
        self.starts.push(input_start as u32);
    }
}

/// Why a piece of input could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The input ended inside a record (an open quote), at this input offset.
    UnfinishedRecord(usize),
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
/// [`Trouble::UnfinishedRecord`] when the input ends inside a quoted field.
pub fn parse(input: &[u8], dialect: &Dialect, partial_tail: bool) -> Result<Records, Trouble> {
    if input.len() >= NULL_FLAG as usize {
        return Err(Trouble::UnfinishedRecord(0));
    }
    match dialect.escape {
        Escape::Quoted => parse_quoted(input, dialect, partial_tail),
        Escape::Backslash => Ok(parse_backslash(
            input,
            dialect.delimiter,
            dialect.terminator,
        )),
    }
}

fn parse_quoted(input: &[u8], dialect: &Dialect, partial_tail: bool) -> Result<Records, Trouble> {
    let mut recs = Records::default();
    recs.begin(input.len());
    let mut rdr = csv_reader(dialect);
    let mut out = vec![0u8; input.len() + 16];
    let mut ends_scratch = vec![0usize; 64];
    let mut ends: Vec<u32> = Vec::with_capacity(64);
    let (mut pos, mut nout, mut rec_in, mut rec_out) = (0usize, 0usize, 0usize, 0usize);
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
        ends.extend(ends_scratch[..nend].iter().map(|&e| (e + rec_out) as u32));
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
                    ends.extend(ends_scratch[..nend].iter().map(|&e| (e + rec_out) as u32));
                    nout += n;
                    recs.push_record(rec_in, rec_out, &ends);
                }
                break;
            }
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends_scratch.resize(ends_scratch.len() * 2, 0),
            ReadRecordResult::Record => {
                recs.push_record(rec_in, rec_out, &ends);
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
    recs.data = out;
    Ok(recs)
}

/// PostgreSQL/MySQL text format: no quoting, `\t` `\n` `\\` and friends
/// escaped with a backslash, `\N` for null.
fn parse_backslash(input: &[u8], delimiter: u8, terminator: u8) -> Records {
    let mut recs = Records::default();
    recs.begin(input.len());
    let mut ends: Vec<u32> = Vec::with_capacity(64);
    let mut line_start = 0;
    while line_start < input.len() {
        let line_end = find_unescaped(input, line_start, terminator).unwrap_or(input.len());
        let mut line = &input[line_start..line_end];
        if terminator == b'\n' && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if !line.is_empty() {
            let data_start = recs.data.len();
            ends.clear();
            for field in line.split(|&b| b == delimiter) {
                if field == b"\\N" {
                    ends.push(recs.data.len() as u32 | NULL_FLAG);
                } else {
                    unescape_into(field, &mut recs.data);
                    ends.push(recs.data.len() as u32);
                }
            }
            recs.push_record(line_start, data_start, &ends);
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

fn unescape_into(field: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &field[i..]) {
        out.extend_from_slice(&field[i..i + p]);
        i += p + 1;
        let Some(&c) = field.get(i) else {
            out.push(b'\\');
            return;
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
                i += n - 1;
            }
            other => out.push(other),
        }
    }
    out.extend_from_slice(&field[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let res = parse(b"a,b\n\"open,x\n", &dialect(b',', Escape::Quoted), false);
        assert_eq!(res.err(), Some(Trouble::UnfinishedRecord(4)));
        let r = parse(b"a,b\n\"open,x\n", &dialect(b',', Escape::Quoted), true).expect("partial");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn leading_bom_bytes_are_data_inside_a_piece() {
        let r = parse(
            "\u{feff}x,y\n".as_bytes(),
            &dialect(b',', Escape::Quoted),
            false,
        )
        .expect("parses");
        assert_eq!(r.field(0, 0), Field::Value("\u{feff}x".as_bytes()));
    }

    #[test]
    fn backslash_tsv() {
        let r = parse(
            b"a\\tb\t\\N\tc\\\\d\\n\r\n\\101\tx\\\ny\n",
            &dialect(b'\t', Escape::Backslash),
            false,
        )
        .expect("parses");
        assert_eq!(r.field(0, 0), Field::Value(b"a\tb"));
        assert_eq!(r.field(0, 1), Field::Null);
        assert_eq!(r.field(0, 2), Field::Value(b"c\\d\n"));
        assert_eq!(r.field(0, 3), Field::Missing);
        assert_eq!(r.field(1, 0), Field::Value(b"A"));
        assert_eq!(r.field(1, 1), Field::Value(b"x\ny"));
    }
}
