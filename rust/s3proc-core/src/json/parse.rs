//! A strict RFC 8259 parser of record-aligned JSON pieces into
//! [`Record`]s.
//!
//! Hand-written so that numbers keep their exact text, a syntax error names
//! its line and column, nesting is bounded (no stack overflow on hostile
//! input) and a duplicate key keeps its last value. UTF-8 is checked inside
//! strings only: outside them any byte that is not ASCII is a syntax error.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::swar;
use crate::value::{Key, Record, Value};

/// Deepest nesting accepted (objects and arrays, the record itself is 1).
pub const MAX_DEPTH: usize = 64;

/// Distinct keys a parser interns; past this, keys are allocated one by
/// one (a piece of objects keyed by ids must not grow the table forever).
const MAX_INTERNED: usize = 4096;

/// Values a record may hold in its objects and arrays: each is a node of a
/// tree in memory (about 128 bytes with its slot and what becomes of it,
/// measured), so a record of tiny values would cost tens of times its text
/// (2 Mi values: about 256 MiB, the bound XML records have at the default
/// `max_record_bytes`).
pub const MAX_RECORD_VALUES: usize = 2 << 20;

/// Keys of an object looked through one by one for a duplicate; past this,
/// by a hash map (an object of many keys would take quadratic time).
const FEW_KEYS: usize = 32;

/// Keys are short and chosen by the input's author only within a bounded
/// table: a fast hash (the one the CSV sniffer uses too).
type Interned = HashMap<Box<[u8]>, Key, ahash::RandomState>;

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax {
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in bytes).
    pub column: usize,
    /// What is wrong.
    pub what: String,
    /// The input ended inside a value (a truncated document).
    pub eof: bool,
}

impl Syntax {
    /// The reason as shown in [`crate::Error::Parse`].
    pub fn reason(&self) -> String {
        format!("column {}: {}", self.column, self.what)
    }
}

type PResult<T> = Result<T, Syntax>;

/// A cursor over one piece of JSON text.
pub struct Parser<'a> {
    b: &'a [u8],
    /// `b` as text, when all of it is valid UTF-8 (checked once, at SIMD
    /// speed): strings and numbers are then sliced from it with no check of
    /// their own. Otherwise each string is checked, to locate the error.
    text: Option<&'a str>,
    pos: usize,
    line: u64,
    line_start: usize,
    /// Keys seen, decoded: one [`Key`] per distinct name, so that equal
    /// keys of this parser are one pointer (see [`Parser::key`]).
    keys: Interned,
    /// Fields of the last record (capacity for the next).
    record_fields: usize,
    /// Values in containers of the record being read.
    values: usize,
}

fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Text(_) | Value::Untyped(_) => "a string",
        Value::List(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Parser<'a> {
    /// A parser of `b`, whose first byte is on line `first_line`.
    pub fn new(b: &'a [u8], first_line: u64) -> Self {
        Self {
            b,
            text: simdutf8::basic::from_utf8(b).ok(),
            pos: 0,
            line: first_line,
            line_start: 0,
            keys: Interned::default(),
            record_fields: 0,
            values: 0,
        }
    }

    /// Starts counting the values of a new record (see [`MAX_RECORD_VALUES`]).
    pub fn start_record(&mut self) {
        self.values = 0;
    }

    /// Counts one more value in a container of the record.
    fn count_value(&mut self) -> PResult<()> {
        self.values += 1;
        if self.values > MAX_RECORD_VALUES {
            return Err(self.error(format!(
                "a record of more than {MAX_RECORD_VALUES} values: not a table of records (each value costs memory as a tree)"
            )));
        }
        Ok(())
    }

    /// Byte offset reached.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Line reached.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Whether the whole input is valid UTF-8.
    pub(super) fn is_utf8(&self) -> bool {
        self.text.is_some()
    }

    /// The input from the cursor on (whitespace not skipped).
    #[inline]
    pub(super) fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or_default()
    }

    /// Moves the cursor `n` bytes on, within the line (never over a newline).
    #[inline]
    pub(super) fn skip(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.b.len());
    }

    /// Whether only whitespace is left (after skipping it).
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.pos >= self.b.len()
    }

    /// The next byte, if any (after whitespace).
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    /// An error at the current position.
    pub fn error(&self, what: impl Into<String>) -> Syntax {
        Syntax {
            line: self.line,
            column: self.pos.saturating_sub(self.line_start) + 1,
            what: what.into(),
            eof: self.pos >= self.b.len(),
        }
    }

    fn unexpected(&self, wanted: &str) -> Syntax {
        match self.b.get(self.pos) {
            None => self.error(format!(
                "unexpected end of data, expected {wanted} (truncated JSON?)"
            )),
            Some(&c) if c.is_ascii_graphic() => {
                self.error(format!("expected {wanted}, found {:?}", c as char))
            }
            Some(&c) => self.error(format!("expected {wanted}, found byte 0x{c:02x}")),
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                _ => return,
            }
        }
    }

    /// Consumes `c` (after whitespace) or fails.
    pub fn expect(&mut self, c: u8, wanted: &str) -> PResult<()> {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    /// One record: a JSON object at the top level.
    pub fn record(&mut self) -> PResult<Record<'a>> {
        self.start_record();
        self.ws();
        let line = self.line;
        let start = (self.pos, self.line_start);
        match self.value(1)? {
            Value::Object(fields) => Ok(Record { fields, line }),
            other => {
                let mut e = self.error(format!(
                    "a record must be a JSON object, found {}",
                    kind(&other)
                ));
                e.line = line;
                e.column = start.0 - start.1 + 1;
                Err(e)
            }
        }
    }

    /// One JSON value, `depth` levels deep.
    pub fn value(&mut self, depth: usize) -> PResult<Value<'a>> {
        self.ws();
        let Some(&c) = self.b.get(self.pos) else {
            return Err(self.unexpected("a value"));
        };
        match c {
            b'{' => {
                self.nest(depth)?;
                self.object(depth)
            }
            b'[' => {
                self.nest(depth)?;
                self.array(depth)
            }
            b'"' => Ok(Value::Text(self.string()?)),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.unexpected("a value")),
        }
    }

    fn nest(&self, depth: usize) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8], v: Value<'a>) -> PResult<Value<'a>> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.unexpected("a value"))
        }
    }

    /// An object key (the cursor is on its opening quote), and whether it
    /// is interned: an interned key equals another key of this parser if
    /// and only if it is the same pointer (a key equal to an interned one
    /// is always found in the table, which never drops an entry).
    fn key(&mut self) -> PResult<(Key, bool)> {
        let rest = &self.b[self.pos + 1..];
        // Most keys have no escape: their raw bytes are the decoded key, and
        // bytes already in the table passed the string checks.
        if let Some(k) = memchr::memchr2(b'"', b'\\', rest) {
            if rest[k] == b'"' {
                if let Some(key) = self.keys.get(&rest[..k]) {
                    self.pos += k + 2;
                    return Ok((Key::clone(key), true));
                }
            }
        }
        let text = self.string()?;
        if let Some(key) = self.keys.get(text.as_bytes()) {
            return Ok((Key::clone(key), true));
        }
        let key = Key::from(text);
        // Keys are matched by their raw bytes, which must then be what they
        // decode to: not a key with a control character, which raw would be
        // an error.
        if self.keys.len() >= MAX_INTERNED || key.bytes().any(|c| c < 0x20) {
            return Ok((key, false));
        }
        self.keys.insert(key.as_bytes().into(), Key::clone(&key));
        Ok((key, true))
    }

    fn object(&mut self, depth: usize) -> PResult<Value<'a>> {
        self.pos += 1;
        let mut fields: Vec<(Key, Value<'a>)> = if depth == 1 {
            Vec::with_capacity(self.record_fields)
        } else {
            Vec::new()
        };
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(fields));
        }
        let mut keys: Option<HashMap<Key, usize>> = None;
        loop {
            self.ws();
            if self.b.get(self.pos) != Some(&b'"') {
                return Err(self.unexpected("a string key"));
            }
            let (key, interned) = self.key()?;
            self.expect(b':', "':' after an object key")?;
            self.count_value()?;
            let v = self.value(depth + 1)?;
            let same = |k: &Key| Key::ptr_eq(k, &key) || (!interned && *k == key);
            // A duplicate key's last value wins; many keys are looked up by hash.
            let slot = if fields.len() <= FEW_KEYS {
                fields.iter().position(|(k, _)| same(k))
            } else {
                let index = keys.get_or_insert_with(|| {
                    (fields.iter().enumerate())
                        .map(|(i, (k, _))| (Key::clone(k), i))
                        .collect::<HashMap<Key, usize>>()
                });
                index.get(&key).copied()
            };
            match slot {
                Some(i) => fields[i].1 = v,
                None => {
                    if let Some(index) = keys.as_mut() {
                        index.insert(Key::clone(&key), fields.len());
                    }
                    fields.push((key, v));
                }
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    if depth == 1 {
                        self.record_fields = fields.len();
                    }
                    return Ok(Value::Object(fields));
                }
                _ => return Err(self.unexpected("',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> PResult<Value<'a>> {
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.count_value()?;
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.unexpected("',' or ']' in an array")),
            }
        }
    }

    fn number(&mut self) -> PResult<Value<'a>> {
        self.number_text().map(|t| Value::Number(Cow::Borrowed(t)))
    }

    /// A number's text, exactly as written (the cursor is on its first byte).
    pub(super) fn number_text(&mut self) -> PResult<&'a str> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => {
                self.pos = i;
                return Err(self.unexpected("a digit"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.unexpected("a digit after '.'"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.unexpected("a digit in the exponent"));
            }
        }
        self.pos = i;
        // Only ASCII digits, signs, `.` and `e`: valid UTF-8, borrowed as is.
        self.slice(start, i)
            .ok_or_else(|| self.error("a number that is not ASCII"))
    }

    /// The text of `b[start..end]`, when it is valid UTF-8.
    #[inline]
    fn slice(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(start..end),
            None => simdutf8::basic::from_utf8(self.b.get(start..end)?).ok(),
        }
    }

    fn hex4(&mut self) -> PResult<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let Some(d) = self.b.get(self.pos).and_then(|&c| (c as char).to_digit(16)) else {
                return Err(self.unexpected("four hex digits after \\u"));
            };
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string (the cursor is on its opening quote), unescaped: borrowed
    /// from the input when it has no escape.
    pub fn string(&mut self) -> PResult<Cow<'a, str>> {
        if let Some(text) = self.plain_string() {
            return Ok(Cow::Borrowed(text));
        }
        if self.text.is_some() {
            let mut out = String::new();
            self.string_into(&mut out)?;
            return Ok(Cow::Owned(out));
        }
        self.string_bytes()
    }

    /// A string with no escape (the cursor is on its opening quote): its
    /// text, the cursor moved past it. `None`, the cursor unmoved, for a
    /// string with an escape or anything [`Parser::string`] is to judge.
    #[inline]
    pub(super) fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let rest = self.b.get(start..)?;
        let k = plain_run(rest);
        if rest.get(k) != Some(&b'"') {
            return None;
        }
        let text = self.slice(start, start + k)?;
        self.pos = start + k + 1;
        Some(text)
    }

    /// Decodes a string (the cursor is on its opening quote) onto `out`, in
    /// an input that is valid UTF-8: each run between escapes is already
    /// text (its ends are ASCII bytes), nothing is checked again.
    ///
    /// # Errors
    /// As [`Parser::string`]; `out` then holds part of the string.
    pub(super) fn string_into(&mut self, out: &mut impl std::fmt::Write) -> PResult<()> {
        self.pos += 1;
        loop {
            let rest = &self.b[self.pos..];
            let k = plain_run(rest);
            let Some(run) = self.slice(self.pos, self.pos + k) else {
                return Err(self.error("invalid UTF-8 in a string"));
            };
            let written = out.write_str(run);
            self.pos += k;
            match rest.get(k) {
                Some(b'"') => {
                    self.pos += 1;
                    return written.map_err(|_| self.error("a string too long to hold"));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    let _ = out.write_char(c);
                }
                _ => return Err(self.string_stop()),
            }
        }
    }

    /// The error at the cursor, on a control character or the end of the
    /// input inside a string.
    fn string_stop(&mut self) -> Syntax {
        if memchr::memchr2(b'"', b'\\', &self.b[self.pos..]).is_none() {
            self.pos = self.b.len();
            return self.unexpected("the end of a string");
        }
        self.error("a control character inside a string (it must be escaped)")
    }

    /// The character of an escape (the cursor is after its backslash).
    fn escape(&mut self) -> PResult<char> {
        let Some(&e) = self.b.get(self.pos) else {
            return Err(self.unexpected("an escape"));
        };
        self.pos += 1;
        Ok(match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => {
                self.pos -= 1;
                return Err(
                    self.unexpected("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)")
                );
            }
        })
    }

    /// [`Parser::string`] in an input that is not all valid UTF-8: each
    /// string is checked, to name the first bad byte.
    fn string_bytes(&mut self) -> PResult<Cow<'a, str>> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let rest = &self.b[self.pos..];
            let k = plain_run(rest);
            if out.is_empty() && rest.get(k) == Some(&b'"') {
                // No escape: checked in place (an error is located below).
                if let Some(text) = self.slice(self.pos, self.pos + k) {
                    self.pos += k + 1;
                    return Ok(Cow::Borrowed(text));
                }
            }
            out.extend_from_slice(&rest[..k]);
            self.pos += k;
            match rest.get(k) {
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).map(Cow::Owned).map_err(|e| {
                        let mut err = self.error("invalid UTF-8 in a string");
                        err.what = format!(
                            "invalid UTF-8 in a string (byte {} of it); pass encoding= if the file is not UTF-8",
                            e.utf8_error().valid_up_to() + 1
                        );
                        err
                    });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => return Err(self.string_stop()),
            }
        }
    }

    fn unicode_escape(&mut self) -> PResult<char> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.b[self.pos..].starts_with(b"\\u") {
                return Err(self.error("a lone UTF-16 surrogate escape (\\uD800-\\uDBFF not followed by a low surrogate)"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("a UTF-16 high surrogate escape followed by something else than a low surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code)
            .ok_or_else(|| self.error("a lone UTF-16 low surrogate escape (\\uDC00-\\uDFFF)"))
    }
}

/// Length of the run at the start of `b` before its first `"`, `\` or
/// control character (all of `b` when there is none): eight bytes at a
/// time, one pass (strings are mostly short, and all three stop a run).
#[inline]
fn plain_run(b: &[u8]) -> usize {
    let stops = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
    let flags = |w| swar::equal(w, b'"') | swar::equal(w, b'\\') | swar::below(w, 0x20);
    swar::find(b, 0, flags, stops)
}

/// The records of a piece of whitespace-separated top-level objects (NDJSON,
/// or concatenated objects). With `one_per_line`, a record must end on the
/// line it starts on.
///
/// # Errors
/// The first syntax error, or a top-level value that is not an object.
pub fn values(data: &[u8], first_line: u64, one_per_line: bool) -> PResult<Vec<Record<'_>>> {
    let mut p = Parser::new(data, first_line);
    let mut out = Vec::new();
    while !p.at_end() {
        let start = p.line;
        let r = p.record().map_err(|mut e| {
            if one_per_line && e.line != start {
                // The line ended inside the record: name the record's line.
                e.what = format!(
                    "the record is not complete on its line (line {} column {}: {})",
                    e.line, e.column, e.what
                );
                e.line = start;
                e.column = 1;
            }
            e
        })?;
        if one_per_line && p.line != r.line {
            let mut e = p.error("");
            e.line = r.line;
            e.column = 1;
            e.what = "the record does not end on its line: NDJSON holds one record per line".into();
            return Err(e);
        }
        out.push(r);
    }
    Ok(out)
}

/// The records of a piece of a top-level array's elements (the brackets
/// left out). `after_comma`: the piece follows a `,`; `last`: the array's
/// closing bracket follows the piece.
///
/// # Errors
/// The first syntax error, or an element that is not an object.
pub fn elements(
    data: &[u8],
    first_line: u64,
    after_comma: bool,
    last: bool,
) -> PResult<Vec<Record<'_>>> {
    let mut p = Parser::new(data, first_line);
    let mut out = Vec::new();
    let mut want = after_comma;
    loop {
        if p.at_end() {
            if want && last {
                return Err(p.error("expected a value after ',' (a trailing comma before ']')"));
            }
            return Ok(out);
        }
        out.push(p.record()?);
        match p.peek() {
            Some(b',') => {
                p.pos += 1;
                want = true;
            }
            None if last => return Ok(out),
            _ => return Err(p.unexpected("',' or ']' after an array element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PResult<Value<'_>> {
        let mut p = Parser::new(s.as_bytes(), 1);
        let v = p.value(1)?;
        if !p.at_end() {
            return Err(p.error("trailing data"));
        }
        Ok(v)
    }

    #[test]
    fn parses_values_exactly() {
        assert_eq!(
            one(
                r#"{"a": [1, -0.5e+3, 123456789012345678901234567890], "b": "x\u00e9\ud83d\ude00\n", "a": null}"#
            ),
            Ok(Value::Object(vec![
                ("a".into(), Value::Null),
                ("b".into(), Value::Text("xé😀\n".into())),
            ]))
        );
        assert_eq!(
            one("[1, -0.5e+3, 123456789012345678901234567890]"),
            Ok(Value::List(vec![
                Value::Number("1".into()),
                Value::Number("-0.5e+3".into()),
                Value::Number("123456789012345678901234567890".into()),
            ]))
        );
    }

    #[test]
    fn a_record_of_too_many_values_is_an_error_counted_per_record() {
        let record = |n: usize| format!("{{\"a\":[{}1]}}\n", "1,".repeat(n - 2));
        // Each record holds `n` values (the field and its items): three just
        // under the bound in one piece are fine, one over it is not.
        let fine = record(MAX_RECORD_VALUES).repeat(3);
        assert_eq!(values(fine.as_bytes(), 1, true).map(|r| r.len()), Ok(3));
        let over = format!("{{\"x\":1}}\n{}", record(MAX_RECORD_VALUES + 1));
        let e = values(over.as_bytes(), 1, true).expect_err("too many values");
        assert_eq!(e.line, 2);
        assert!(e.what.contains("values"), "{}", e.what);
    }

    #[test]
    fn duplicate_keys_past_the_interned_ones() {
        // Keys beyond MAX_INTERNED are not interned: duplicates among them,
        // escaped or not, still keep the last value.
        let many: String = (0..MAX_INTERNED)
            .map(|i| format!("\"k{i}\":{i},"))
            .collect();
        let text = format!("{{{many}\"x\":1,\"\\u0078\":2,\"k1\":3,\"y\":4}}");
        let Ok(Value::Object(kv)) = one(&text) else {
            panic!("parses")
        };
        assert_eq!(kv.len(), MAX_INTERNED + 2);
        assert_eq!(kv[1], ("k1".into(), Value::Number("3".into())));
        assert_eq!(kv[MAX_INTERNED], ("x".into(), Value::Number("2".into())));
        assert_eq!(
            kv[MAX_INTERNED + 1],
            ("y".into(), Value::Number("4".into()))
        );
    }

    #[test]
    fn a_raw_control_character_in_a_key_is_an_error_after_the_key_escaped() {
        assert!(one("[{\"a\\u0001\":1},{\"a\\u0001\":2}]").is_ok());
        assert!(one("[{\"a\\u0001\":1},{\"a\u{1}\":2}]").is_err());
        assert!(one("[{\"a\\nb\":1},{\"a\nb\":2}]").is_err());
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for bad in [
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "[\"\t\"]",
            "\"\\x\"",
            "\"\\ud800\"",
            "{'a':1}",
            "[1 2]",
            "tru",
            "nul",
            "[",
            "{\"a\"",
            "\"abc",
            "NaN",
            "[\"\\uDFAA\"]",
            "\u{feff}{}",
            "{\"a\":1}}",
        ] {
            assert!(one(bad).is_err(), "{bad:?} accepted");
        }
        let deep = "[".repeat(10_000);
        assert!(one(&deep).expect_err("deep").what.contains("deeper"));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = values(b"{\"a\":1}\n{\"a\":2}\n{\"a\" 3}\n", 10, true).expect_err("bad");
        assert_eq!((e.line, e.column), (12, 6));
        let e = values(b"{\"a\":1}\n[1]\n", 1, true).expect_err("bad");
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.what.contains("array"));
        let e = values(b"{\"a\":\n1}\n", 1, true).expect_err("spans");
        assert!(e.what.contains("one record per line"));
        assert_eq!(values(b"{\"a\":\n1}{}\n", 1, false).map(|r| r.len()), Ok(2));
    }

    #[test]
    fn plain_runs_stop_where_a_byte_loop_stops() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let alphabet = [
            b'a',
            b'"',
            b'\\',
            0,
            0x1f,
            0x20,
            0x21,
            0x5c ^ 0x80,
            0xe9,
            0x7f,
            0xff,
            0x22 ^ 1,
        ];
        let mut seed = 7u64;
        for len in 0..40 {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let r = (seed >> 33) as usize;
                        // Mostly plain bytes, so that runs are long.
                        if r.is_multiple_of(8) {
                            alphabet[r / 8 % alphabet.len()]
                        } else {
                            b'a' + (r % 26) as u8
                        }
                    })
                    .collect();
                assert_eq!(plain_run(&b), naive(&b), "{b:?}");
            }
        }
    }

    #[test]
    fn array_pieces() {
        assert_eq!(
            elements(b" {}, {},", 1, false, false).map(|r| r.len()),
            Ok(2)
        );
        assert_eq!(elements(b"{} ", 1, true, true).map(|r| r.len()), Ok(1));
        assert!(elements(b" ", 1, true, true).is_err());
        assert_eq!(elements(b" ", 1, false, true).map(|r| r.len()), Ok(0));
        assert!(elements(b"{} {}", 1, false, true).is_err());
    }
}
