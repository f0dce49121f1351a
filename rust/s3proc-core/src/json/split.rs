//! Cutting a JSON stream into record-aligned pieces, and telling from the
//! start of a document how its records are laid out.
//!
//! NDJSON is cut at newlines (a newline never occurs inside a JSON string).
//! Arrays and concatenated objects are cut between top-level values by a
//! scanner that tracks only nesting depth and string state; each piece is
//! then parsed strictly, so a piece the scanner misjudged (mismatched
//! brackets) is an error, never a wrong record.

use std::io::Read;

use super::parse::{Parser, Syntax};
use crate::error::{Error, Result};
use crate::value::Value;

/// How the records of a JSON document are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One object per line (NDJSON, JSON Lines).
    Lines,
    /// Objects one after the other, possibly spanning lines (pretty-printed
    /// concatenated objects, or one single object: one row).
    Values,
    /// The elements of one top-level array, which start after `skip` bytes
    /// of (decoded) text. With `key`, the array is the only member of a
    /// top-level object, `{"key": [...]}`.
    Array {
        /// Bytes before the first element (the `[` and what precedes it).
        skip: usize,
        /// The wrapping object's key, if any.
        key: Option<String>,
    },
}

impl Layout {
    /// In words, for `inspect` and metadata.
    pub fn describe(&self) -> String {
        match self {
            Layout::Lines => "one JSON object per line".into(),
            Layout::Values => "JSON objects one after the other (or a single object)".into(),
            Layout::Array { key: None, .. } => "one JSON array of objects".into(),
            Layout::Array { key: Some(k), .. } => {
                format!(
                    "records are the elements of the array under key {k:?} of the top-level object"
                )
            }
        }
    }
}

fn syntax_error(name: &str, e: &Syntax) -> Error {
    Error::parse(name, e.line, e.reason())
}

/// Decides the layout of a JSON document from its decoded start `head`
/// (`at_eof`: `head` is the whole document).
///
/// # Errors
/// [`Error::Parse`] for an empty document, a syntax error in the first
/// value, or a top-level value that holds no records.
pub fn detect_layout(head: &[u8], at_eof: bool, name: &str) -> Result<Layout> {
    let mut p = Parser::new(head, 1);
    match p.peek() {
        None => Err(Error::parse(
            name,
            p.line(),
            "empty JSON document: no records",
        )),
        Some(b'[') => Ok(Layout::Array {
            skip: p.pos() + 1,
            key: None,
        }),
        Some(b'{') => {
            let first_line = p.line();
            match p.value(1) {
                Ok(v) => {
                    let one_line = p.line() == first_line;
                    if !p.at_end() {
                        return Ok(if one_line && one_per_line(&mut p) {
                            Layout::Lines
                        } else {
                            Layout::Values
                        });
                    }
                    if !at_eof {
                        // The first value alone fills the head: a record
                        // longer than the head is read as concatenated values.
                        return Ok(Layout::Values);
                    }
                    // The whole document is one object: a wrapper of records, or one row.
                    if let Value::Object(fields) = &v {
                        if let [(key, Value::List(items))] = fields.as_slice() {
                            if !items.is_empty()
                                && items.iter().all(|i| matches!(i, Value::Object(_)))
                            {
                                return wrapper_layout(head, name, key.to_string());
                            }
                        }
                    }
                    Ok(Layout::Values)
                }
                Err(e) if e.eof && !at_eof => {
                    // Longer than the head: stream it if it is a wrapper.
                    let mut q = Parser::new(head, 1);
                    match wrapper_prefix(&mut q) {
                        Some(key) => wrapper_layout(head, name, key),
                        None => Ok(Layout::Values),
                    }
                }
                Err(e) => Err(syntax_error(name, &e)),
            }
        }
        Some(_) => {
            let what = match p.value(1) {
                Ok(Value::Null) => "null".to_owned(),
                Ok(Value::Bool(_)) => "a boolean".to_owned(),
                Ok(Value::Number(_)) => "a number".to_owned(),
                Ok(_) => "a string".to_owned(),
                Err(e) => return Err(syntax_error(name, &e)),
            };
            Err(Error::parse(
                name,
                1,
                format!("the top-level JSON value is {what}, not an object or an array of objects: no records"),
            ))
        }
    }
}

/// Whether each value after `p` in the head that is whole ends on the line
/// it starts on: one spanning lines (`{"a":1}` then `{\n"a": 2\n}`) makes
/// the document concatenated values, not NDJSON.
fn one_per_line(p: &mut Parser<'_>) -> bool {
    while p.peek().is_some() {
        let line = p.line();
        match p.value(1) {
            Ok(_) if p.line() != line => return false,
            Ok(_) => {}
            Err(_) => break, // cut by the head's end, or an error the reader reports
        }
    }
    true
}

/// `{ "key" : [`: the key, with the parser just after the `[`.
fn wrapper_prefix(p: &mut Parser<'_>) -> Option<String> {
    p.expect(b'{', "").ok()?;
    if p.peek() != Some(b'"') {
        return None;
    }
    let key = p.string().ok()?;
    p.expect(b':', "").ok()?;
    p.expect(b'[', "").ok()?;
    Some(key.into_owned())
}

fn wrapper_layout(head: &[u8], name: &str, key: String) -> Result<Layout> {
    let mut p = Parser::new(head, 1);
    match wrapper_prefix(&mut p) {
        Some(k) if k == key => Ok(Layout::Array {
            skip: p.pos(),
            key: Some(key),
        }),
        _ => Err(Error::internal(name, "the wrapper object was misread")),
    }
}

/// A piece of JSON text that starts and ends between records.
#[derive(Debug)]
pub struct TextPiece {
    /// The bytes.
    pub data: Vec<u8>,
    /// 1-based line of the first byte.
    pub first_line: u64,
    /// Array layout: the piece follows a `,` between elements.
    pub after_comma: bool,
    /// The piece is the last one.
    pub last: bool,
}

/// Scanner state carried across reads.
#[derive(Default)]
struct Scan {
    /// Bytes of the buffer examined.
    at: usize,
    in_string: bool,
    /// The last byte examined was a backslash inside a string.
    escaped: bool,
    depth: u32,
    /// End of the last complete top-level value (or element and its comma).
    cut: usize,
    /// Array layout: position of the closing `]`.
    end: Option<usize>,
}

/// Reads a JSON stream and hands out record-aligned pieces.
pub struct JsonSplitter {
    reader: Box<dyn Read + Send>,
    name: String,
    layout: Layout,
    buf: Vec<u8>,
    scan: Scan,
    eof: bool,
    started: bool,
    done: bool,
    after_comma: bool,
    target: usize,
    max_record: usize,
    line: u64,
}

const READ_BLOCK: usize = 256 << 10;

impl JsonSplitter {
    /// A splitter of `reader` (decoded text) laid out as `layout`, cutting
    /// pieces of about `target` bytes; a record longer than `max_record`
    /// bytes is an error.
    pub fn new(
        reader: Box<dyn Read + Send>,
        name: &str,
        layout: Layout,
        target: usize,
        max_record: usize,
    ) -> Self {
        Self {
            reader,
            name: name.to_owned(),
            layout,
            buf: Vec::new(),
            scan: Scan::default(),
            eof: false,
            started: false,
            done: false,
            after_comma: false,
            target,
            max_record,
            line: 1,
        }
    }

    fn fill(&mut self, want: usize) -> Result<()> {
        while !self.eof && self.buf.len() < want {
            let old = self.buf.len();
            self.buf.resize(old + READ_BLOCK.max(want - old), 0);
            let n = loop {
                match self.reader.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(Error::io(&self.name, e));
                    }
                }
            };
            self.buf.truncate(old + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    /// Takes the first `n` bytes of the buffer as a piece.
    fn emit(&mut self, n: usize, last: bool) -> TextPiece {
        let rest = self.buf.split_off(n);
        let data = std::mem::replace(&mut self.buf, rest);
        // (The lines layout never scans: its `at` stays 0.)
        self.scan.at = self.scan.at.saturating_sub(n);
        self.scan.cut -= n.min(self.scan.cut);
        let first_line = self.line;
        self.line += memchr::memchr_iter(b'\n', &data).count() as u64;
        let after_comma = std::mem::replace(&mut self.after_comma, data.last() == Some(&b','));
        self.done = last;
        TextPiece {
            data,
            first_line,
            after_comma,
            last,
        }
    }

    /// The next piece, or `None` after the last.
    ///
    /// # Errors
    /// I/O errors; [`Error::Parse`] for a record longer than the limit, an
    /// array never closed, or data after the end of the array.
    pub fn next_piece(&mut self) -> Result<Option<TextPiece>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            if let Layout::Array { skip, .. } = self.layout {
                self.fill(skip)?;
                let skipped = skip.min(self.buf.len());
                self.line += memchr::memchr_iter(b'\n', &self.buf[..skipped]).count() as u64;
                self.buf.drain(..skipped);
            }
        }
        let mut want = self.target;
        loop {
            self.fill(want)?;
            match self.layout {
                Layout::Lines => {
                    if self.eof {
                        if self.buf.iter().all(u8::is_ascii_whitespace) {
                            self.done = true;
                            return Ok(None);
                        }
                        return Ok(Some(self.emit(self.buf.len(), true)));
                    }
                    let from = self.target.min(self.buf.len());
                    let cut = memchr::memchr(b'\n', &self.buf[from..])
                        .map(|p| p + from)
                        .or_else(|| memchr::memrchr(b'\n', &self.buf[..from]));
                    if let Some(p) = cut {
                        return Ok(Some(self.emit(p + 1, false)));
                    }
                }
                Layout::Values | Layout::Array { .. } => {
                    self.scan_buffer();
                    if let Some(end) = self.scan.end {
                        self.check_trailer(end)?;
                        return Ok(Some(self.emit(end, true)));
                    }
                    if self.eof {
                        if matches!(self.layout, Layout::Array { .. }) {
                            return Err(Error::parse(
                                &self.name,
                                self.line + memchr::memchr_iter(b'\n', &self.buf).count() as u64,
                                "the top-level array is never closed (truncated JSON?)",
                            ));
                        }
                        if self.buf.iter().all(u8::is_ascii_whitespace) {
                            self.done = true;
                            return Ok(None);
                        }
                        return Ok(Some(self.emit(self.buf.len(), true)));
                    }
                    if self.scan.cut > 0 {
                        return Ok(Some(self.emit(self.scan.cut, false)));
                    }
                }
            }
            if self.buf.len() > self.max_record {
                return Err(Error::parse(
                    &self.name,
                    self.line,
                    format!(
                        "a record longer than max_record_bytes ({} bytes): not a table of records, or raise the limit",
                        self.max_record
                    ),
                ));
            }
            want = self.buf.len() + READ_BLOCK;
        }
    }

    /// Advances the scanner over the unread part of the buffer.
    fn scan_buffer(&mut self) {
        let array = matches!(self.layout, Layout::Array { .. });
        let b = &self.buf;
        let s = &mut self.scan;
        let mut i = s.at;
        while i < b.len() {
            if s.in_string {
                if s.escaped {
                    s.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &b[i..]) {
                    None => {
                        i = b.len();
                        break;
                    }
                    Some(k) => {
                        i += k;
                        if b[i] == b'\\' {
                            s.escaped = true;
                        } else {
                            s.in_string = false;
                        }
                        i += 1;
                        continue;
                    }
                }
            }
            match b[i] {
                b'"' => s.in_string = true,
                b'{' | b'[' => s.depth += 1,
                c @ (b'}' | b']') => {
                    if s.depth == 0 {
                        if array && c == b']' {
                            s.end = Some(i);
                            s.at = i;
                            return;
                        }
                    } else {
                        s.depth -= 1;
                    }
                    if s.depth == 0 && !array {
                        s.cut = i + 1;
                    }
                }
                b',' if array && s.depth == 0 => s.cut = i + 1,
                _ => {}
            }
            i += 1;
            if s.cut >= self.target {
                break;
            }
        }
        s.at = i;
    }

    /// After the array's `]` at `end`: only whitespace, or for a wrapper
    /// the object's closing brace.
    fn check_trailer(&mut self, end: usize) -> Result<()> {
        let wrapper = matches!(self.layout, Layout::Array { key: Some(_), .. });
        let mut closed = !wrapper;
        let mut line = self.line + memchr::memchr_iter(b'\n', &self.buf[..end]).count() as u64;
        let mut at = end + 1;
        loop {
            while let Some(&c) = self.buf.get(at) {
                match c {
                    b'\n' => line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    b'}' if !closed => closed = true,
                    _ => {
                        let what = if closed {
                            "data after the end of the JSON document".to_owned()
                        } else {
                            "the object holding the records' array has other members after it: \
                             only {\"key\": [...]} is streamed"
                                .to_owned()
                        };
                        return Err(Error::parse(&self.name, line, what));
                    }
                }
                at += 1;
            }
            if self.eof {
                break;
            }
            // What was checked is dropped: a trailer of any length (a bomb of
            // spaces) costs one block of memory.
            self.buf.truncate(end + 1);
            at = end + 1;
            self.fill(end + 1 + READ_BLOCK)?;
        }
        if !closed {
            return Err(Error::parse(
                &self.name,
                line,
                "the object holding the records' array is never closed (truncated JSON?)",
            ));
        }
        self.buf.truncate(end + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(data: &str, layout: Layout, target: usize) -> Result<Vec<TextPiece>> {
        let mut s = JsonSplitter::new(
            Box::new(std::io::Cursor::new(data.as_bytes().to_vec())),
            "t",
            layout,
            target,
            1 << 20,
        );
        let mut out = Vec::new();
        while let Some(p) = s.next_piece()? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn layouts() {
        let l = |s: &str| detect_layout(s.as_bytes(), true, "t");
        assert!(matches!(l("{\"a\":1}\n{\"a\":2}"), Ok(Layout::Lines)));
        assert!(matches!(
            l(" [ {}]"),
            Ok(Layout::Array { skip: 2, key: None })
        ));
        assert!(matches!(l("{\n\"a\": 1\n}\n{\"a\":2}"), Ok(Layout::Values)));
        assert!(matches!(l("{\"a\":1}\n{\n\"a\": 2\n}"), Ok(Layout::Values)));
        assert!(matches!(l("{\"a\":1} {\"a\":2\n}"), Ok(Layout::Values)));
        assert!(matches!(
            l("{\"a\":1}\n{\"a\":2}\n{\"a\":"),
            Ok(Layout::Lines)
        ));
        assert!(matches!(l("{\"a\": 1}"), Ok(Layout::Values)));
        assert!(matches!(l("{\"a\": [1]}"), Ok(Layout::Values)));
        match l("{\"data\": [{\"x\":1}]}") {
            Ok(Layout::Array {
                skip: 10,
                key: Some(k),
            }) => assert_eq!(k, "data"),
            other => panic!("{other:?}"),
        }
        assert!(l("12").is_err());
        assert!(l("").is_err());
        assert!(l("{\"a\" 1}").is_err());
    }

    #[test]
    fn array_pieces_are_element_aligned() {
        let doc: String = format!(
            "[{}]",
            (0..500)
                .map(|i| format!("{{\"a\":{i},\"s\":\"x,]}}\\\"[{{\"}}"))
                .collect::<Vec<_>>()
                .join(",\n")
        );
        let ps = pieces(&doc, Layout::Array { skip: 1, key: None }, 64).expect("splits");
        assert!(ps.len() > 10);
        let mut n = 0;
        for p in &ps {
            let recs = super::super::parse::elements(&p.data, p.first_line, p.after_comma, p.last)
                .expect("parses");
            for r in recs {
                assert_eq!(r.fields[0].1, Value::Number(n.to_string().into()));
                assert_eq!(r.line, n + 1);
                n += 1;
            }
        }
        assert_eq!(n, 500);
        assert!(pieces("[{}, {}", Layout::Array { skip: 1, key: None }, 4).is_err());
        assert!(pieces("[{}] x", Layout::Array { skip: 1, key: None }, 4).is_err());
        let key = Some("k".to_owned());
        assert!(pieces(
            "{\"k\":[{}]} ",
            Layout::Array {
                skip: 6,
                key: key.clone()
            },
            4
        )
        .is_ok());
        assert!(pieces(
            "{\"k\":[{}], \"b\": 1}",
            Layout::Array {
                skip: 6,
                key: key.clone()
            },
            4
        )
        .is_err());
        assert!(pieces("{\"k\":[{}]", Layout::Array { skip: 6, key }, 4).is_err());
    }
}
