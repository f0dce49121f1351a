//! The fast path of JSON conversion: a piece's records parsed straight into
//! the columns of a known (finalized) schema, with no [`Value`] tree for
//! scalar columns.
//!
//! Most pieces of a file hold records whose values fit the schema inferred
//! from its sample. For those, building a tree of every record, transposing
//! it into columns and parsing each value's text again is most of the
//! conversion's CPU. Here each top-level value is parsed once and appended
//! to its column's Arrow builder; only a column of lists, structs or mixed
//! JSON keeps its values as trees (built by [`build_array`], as before).
//!
//! The fast path only ever says yes or "not here": anything unusual (a
//! syntax error, a key the schema lacks, a duplicate key, a value that does
//! not fit its column, invalid UTF-8) makes [`columns`] return `None`, and
//! the caller parses the piece again the ordinary way, which widens the
//! schema or reports the error with its line and column. So errors and
//! drift handling stay in one place, and the arrays built here equal the
//! ones the ordinary path builds for the same piece.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::ArrayRef;

use super::parse::Parser;
use super::split::{Layout, TextPiece};
use crate::nested::{build_array, holds, Shape};
use crate::types::{
    parse_bool, parse_date, parse_f64, parse_i64, parse_naive_timestamp, parse_timestamp,
    ColumnType,
};
use crate::value::Value;

/// The top-level columns of the records of `piece` (laid out as `layout`)
/// in the finalized `schema`, and the number of rows; `None` when the piece
/// is not a plain case for which this is known to equal the ordinary path.
pub fn columns(
    piece: &TextPiece,
    layout: &Layout,
    schema: &Shape,
) -> Option<(usize, Vec<ArrayRef>)> {
    // Offsets of Arrow strings are i32: a larger piece goes the ordinary way.
    if piece.data.len() >= i32::MAX as usize {
        return None;
    }
    let mut p = Parser::new(&piece.data, piece.first_line);
    if !p.is_utf8() {
        return None;
    }
    let rows_hint = memchr::memchr_iter(b'\n', &piece.data).count() + 1;
    let mut direct = Direct::new(schema, rows_hint);
    match layout {
        Layout::Lines | Layout::Values => {
            let one_per_line = *layout == Layout::Lines;
            while let Some(c) = p.peek() {
                if c != b'{' {
                    return None;
                }
                let line = p.line();
                direct.record(&mut p)?;
                if one_per_line && p.line() != line {
                    return None;
                }
            }
        }
        Layout::Array { .. } => {
            let mut want = piece.after_comma;
            loop {
                match p.peek() {
                    None if want && piece.last => return None,
                    None => break,
                    Some(b'{') => direct.record(&mut p)?,
                    Some(_) => return None,
                }
                match p.peek() {
                    Some(b',') => {
                        p.skip(1);
                        want = true;
                    }
                    None if piece.last => break,
                    _ => return None,
                }
            }
        }
    }
    let rows = direct.rows;
    Some((rows, direct.finish()?))
}

/// Where one column's values go.
enum Values<'a> {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Naive(TimestampMicrosecondBuilder),
    Utc(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    /// Lists, structs and JSON text: the values as trees (a missing one as
    /// null), built at the end.
    Tree(Vec<Value<'a>>),
}

/// One top-level column.
struct Lane<'s, 'a> {
    name: &'s str,
    /// The name as a key without escapes is written, if it can be.
    raw: Option<RawKey>,
    shape: &'s Shape,
    /// The scalar type (for a tree, unused).
    ty: ColumnType,
    values: Values<'a>,
    /// The mark of the last record that had this key.
    seen: usize,
}

struct Direct<'s, 'a> {
    lanes: Vec<Lane<'s, 'a>>,
    /// Each column by its name as written without escapes, for a schema of
    /// many columns (looking through them one by one would cost every key
    /// the schema's width).
    by_name: Option<HashMap<&'s [u8], usize>>,
    rows: usize,
}

/// Columns looked through one by one; past this, by a hash map.
const FEW_COLUMNS: usize = 64;

impl<'s, 'a> Direct<'s, 'a> {
    fn new(schema: &'s Shape, rows: usize) -> Self {
        let lanes = schema
            .fields()
            .iter()
            .map(|(name, shape)| {
                let ty = match shape {
                    Shape::Scalar(t) => *t,
                    _ => ColumnType::Utf8,
                };
                let values = match shape {
                    Shape::Scalar(t) => match t {
                        ColumnType::Boolean => Values::Bool(BooleanBuilder::with_capacity(rows)),
                        ColumnType::Int64 | ColumnType::WideInt64 => {
                            Values::Int(Int64Builder::with_capacity(rows))
                        }
                        ColumnType::Float64 => Values::Float(Float64Builder::with_capacity(rows)),
                        ColumnType::Date => Values::Date(Date32Builder::with_capacity(rows)),
                        ColumnType::Timestamp => {
                            Values::Naive(TimestampMicrosecondBuilder::with_capacity(rows))
                        }
                        ColumnType::TimestampTz => {
                            Values::Utc(TimestampMicrosecondBuilder::with_capacity(rows))
                        }
                        ColumnType::Utf8 => {
                            Values::Text(StringBuilder::with_capacity(rows, rows * 8))
                        }
                        // Not in a finalized schema: left to `build_array`.
                        ColumnType::Null => Values::Tree(Vec::with_capacity(rows)),
                    },
                    _ => Values::Tree(Vec::with_capacity(rows)),
                };
                Lane {
                    name,
                    raw: RawKey::new(name),
                    shape,
                    ty,
                    values,
                    seen: 0,
                }
            })
            .collect::<Vec<_>>();
        let by_name = (lanes.len() > FEW_COLUMNS).then(|| {
            (lanes.iter().enumerate())
                .filter(|(_, l)| l.raw.is_some())
                .map(|(j, l)| (l.name.as_bytes(), j))
                .collect()
        });
        Self {
            lanes,
            by_name,
            rows: 0,
        }
    }

    /// One record (the cursor is on its `{`).
    fn record(&mut self, p: &mut Parser<'a>) -> Option<()> {
        p.start_record();
        p.skip(1);
        let mark = self.rows + 1;
        let mut next = 0;
        if p.peek()? == b'}' {
            p.skip(1);
        } else {
            loop {
                if p.peek()? != b'"' {
                    return None;
                }
                let j = self.column(p, next)?;
                let lane = &mut self.lanes[j];
                if lane.seen == mark {
                    // A duplicate key: the last value wins, which a builder
                    // cannot do.
                    return None;
                }
                lane.seen = mark;
                if p.peek()? != b':' {
                    return None;
                }
                p.skip(1);
                p.peek()?;
                lane.fill(self.rows);
                lane.push(p)?;
                next = j + 1;
                match p.peek()? {
                    b',' => p.skip(1),
                    b'}' => {
                        p.skip(1);
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.rows += 1;
        Some(())
    }

    /// The column of the key under the cursor (on its opening quote), looked
    /// for first at `hint` (keys usually come in the same order); moves the
    /// cursor past the key.
    fn column(&self, p: &mut Parser<'a>, hint: usize) -> Option<usize> {
        let key = p.rest().get(1..)?;
        let is = |l: &Lane| l.raw.as_ref().is_some_and(|r| r.matches(key));
        let j = match self.lanes.get(hint) {
            Some(l) if is(l) => hint,
            _ => match self.find(key, is) {
                Some(j) => j,
                None => {
                    // Escaped, or not a column: decoded and compared.
                    let key = p.string().ok()?;
                    return self.lanes.iter().position(|l| *l.name == *key);
                }
            },
        };
        p.skip(self.lanes[j].name.len() + 2);
        Some(j)
    }

    /// The column whose name `key` (the input after a key's opening quote)
    /// starts with, as written without escapes.
    fn find(&self, key: &[u8], is: impl Fn(&Lane) -> bool) -> Option<usize> {
        let Some(by_name) = &self.by_name else {
            return self.lanes.iter().position(is);
        };
        let end = memchr::memchr2(b'"', b'\\', key)?;
        (key[end] == b'"')
            .then(|| by_name.get(&key[..end]).copied())
            .flatten()
    }
}

/// A column name as a key without escapes is written, closing quote
/// included, in 8-byte words (the last one masked): most keys are matched
/// with one or two compares.
struct RawKey {
    words: Box<[(u64, u64)]>,
    text: Box<[u8]>,
}

impl RawKey {
    /// `None` for a name that needs escapes (a quote, backslash or control
    /// character): such keys are decoded and compared.
    fn new(name: &str) -> Option<Self> {
        if name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
            return None;
        }
        let text: Box<[u8]> = name.bytes().chain([b'"']).collect();
        let words = text
            .chunks(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                let mut mask = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                mask[..chunk.len()].fill(0xff);
                (u64::from_le_bytes(word), u64::from_le_bytes(mask))
            })
            .collect();
        Some(Self { words, text })
    }

    /// Whether `key` (the input after a key's opening quote) starts with
    /// this name and its closing quote.
    #[inline]
    fn matches(&self, key: &[u8]) -> bool {
        for (i, &(word, mask)) in self.words.iter().enumerate() {
            let Some(bytes) = key.get(i * 8..i * 8 + 8) else {
                // Near the end of the piece.
                return key.starts_with(&self.text);
            };
            let Ok(bytes) = <[u8; 8]>::try_from(bytes) else {
                return false;
            };
            if u64::from_le_bytes(bytes) & mask != word {
                return false;
            }
        }
        true
    }
}

/// The integer of at most 18 digits at the start of `b` and its length, in
/// one pass; `None` for anything else (longer, a leading zero, a fraction,
/// an exponent, not a number), which the full parser judges. What it
/// accepts is a JSON number whose [`parse_i64`] is this value.
#[inline]
fn small_int(b: &[u8]) -> Option<(i64, usize)> {
    let neg = b.first() == Some(&b'-');
    let start = usize::from(neg);
    let mut v: i64 = 0;
    let mut i = start;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        if i - start == 18 {
            return None;
        }
        v = v * 10 + i64::from(d);
        i += 1;
    }
    let digits = i - start;
    if digits == 0
        || (digits > 1 && b[start] == b'0')
        || matches!(b.get(i), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    Some((if neg { -v } else { v }, i))
}

/// A scalar value (the cursor is on its first byte); `None` for an object,
/// an array, or anything the ordinary parser is to judge.
#[inline]
fn scalar<'a>(p: &mut Parser<'a>) -> Option<Value<'a>> {
    let rest = p.rest();
    let (v, n) = match rest.first()? {
        b'"' => return p.string().ok().map(Value::Text),
        b'-' | b'0'..=b'9' => {
            return p
                .number_text()
                .ok()
                .map(|t| Value::Number(Cow::Borrowed(t)))
        }
        b't' if rest.starts_with(b"true") => (Value::Bool(true), 4),
        b'f' if rest.starts_with(b"false") => (Value::Bool(false), 5),
        b'n' if rest.starts_with(b"null") => (Value::Null, 4),
        _ => return None,
    };
    p.skip(n);
    Some(v)
}

/// A scalar's text as a string column holds it.
fn text<'v>(v: &'v Value<'_>) -> Option<&'v str> {
    match v {
        Value::Bool(true) => Some("true"),
        Value::Bool(false) => Some("false"),
        Value::Number(s) | Value::Text(s) | Value::Untyped(s) => Some(s),
        Value::Null | Value::List(_) | Value::Object(_) => None,
    }
}

impl<'a> Lane<'_, 'a> {
    /// Parses the value under the cursor into the column; `None` when it
    /// does not fit (the same judgement as [`build_array`]'s).
    #[inline]
    fn push(&mut self, p: &mut Parser<'a>) -> Option<()> {
        let rest = p.rest();
        // The usual pairs of column and value first, each as the general
        // case below would judge it (`holds` is true for them).
        match (&mut self.values, *rest.first()?) {
            (Values::Tree(values), _) => values.push(p.value(2).ok()?),
            (_, b'n') if rest.starts_with(b"null") => {
                p.skip(4);
                self.push_null();
            }
            (Values::Int(a), b'-' | b'0'..=b'9') => {
                let v = match small_int(rest) {
                    Some((v, n)) => {
                        p.skip(n);
                        v
                    }
                    None => parse_i64(p.number_text().ok()?.as_bytes())?,
                };
                a.append_value(v);
            }
            (Values::Float(a), b'-' | b'0'..=b'9') => {
                let s = p.number_text().ok()?;
                if !holds(ColumnType::Float64, &Value::Number(Cow::Borrowed(s))) {
                    return None;
                }
                a.append_value(parse_f64(s.as_bytes())?);
            }
            (Values::Text(a), b'"') => {
                p.string_into(a).ok()?;
                a.append_value("");
            }
            (Values::Date(a), b'"') => a.append_value(parse_date(p.string().ok()?.as_bytes())?),
            (Values::Naive(a), b'"') => {
                a.append_value(parse_naive_timestamp(p.string().ok()?.as_bytes())?);
            }
            (Values::Utc(a), b'"') => {
                let s = p.string().ok()?;
                a.append_value(parse_timestamp(s.as_bytes()).filter(|t| t.1)?.0);
            }
            _ => return self.push_other(p),
        }
        Some(())
    }

    /// Any other scalar value, judged as [`build_array`] judges it.
    fn push_other(&mut self, p: &mut Parser<'a>) -> Option<()> {
        let v = scalar(p)?;
        if matches!(v, Value::Null) {
            self.push_null();
            return Some(());
        }
        if !holds(self.ty, &v) {
            return None;
        }
        let s = text(&v)?;
        let b = s.as_bytes();
        match &mut self.values {
            Values::Bool(a) => a.append_value(parse_bool(b)?),
            Values::Int(a) => a.append_value(parse_i64(b)?),
            Values::Float(a) => a.append_value(parse_f64(b)?),
            Values::Date(a) => a.append_value(parse_date(b)?),
            Values::Naive(a) => a.append_value(parse_naive_timestamp(b)?),
            Values::Utc(a) => a.append_value(parse_timestamp(b).filter(|t| t.1)?.0),
            Values::Text(a) => a.append_value(s),
            Values::Tree(_) => return None,
        }
        Some(())
    }

    /// Missing values (nulls) until the column holds `rows` values: a
    /// column costs the records that have its key, and its missing values
    /// are added in runs.
    fn fill(&mut self, rows: usize) {
        let n = rows.saturating_sub(self.len());
        if n == 0 {
            return;
        }
        match &mut self.values {
            Values::Bool(a) => a.append_nulls(n),
            Values::Int(a) => a.append_nulls(n),
            Values::Float(a) => a.append_nulls(n),
            Values::Date(a) => a.append_nulls(n),
            Values::Naive(a) | Values::Utc(a) => a.append_nulls(n),
            Values::Text(a) => a.append_nulls(n),
            Values::Tree(values) => values.resize_with(rows, || Value::Null),
        }
    }

    /// The values the column holds.
    fn len(&self) -> usize {
        match &self.values {
            Values::Bool(a) => a.len(),
            Values::Int(a) => a.len(),
            Values::Float(a) => a.len(),
            Values::Date(a) => a.len(),
            Values::Naive(a) | Values::Utc(a) => a.len(),
            Values::Text(a) => a.len(),
            Values::Tree(values) => values.len(),
        }
    }

    fn push_null(&mut self) {
        self.fill(self.len() + 1);
    }

    fn finish(self) -> Option<ArrayRef> {
        Some(match self.values {
            Values::Bool(mut a) => Arc::new(a.finish()),
            Values::Int(mut a) => Arc::new(a.finish()),
            Values::Float(mut a) => Arc::new(a.finish()),
            Values::Date(mut a) => Arc::new(a.finish()),
            Values::Naive(mut a) => Arc::new(a.finish()),
            Values::Utc(mut a) => Arc::new(a.finish().with_timezone("UTC")),
            Values::Text(mut a) => Arc::new(a.finish()),
            Values::Tree(values) => {
                let refs: Vec<Option<&Value>> = values.iter().map(Some).collect();
                build_array(self.shape, &refs)?
            }
        })
    }
}

impl Direct<'_, '_> {
    fn finish(self) -> Option<Vec<ArrayRef>> {
        let rows = self.rows;
        (self.lanes.into_iter())
            .map(|mut lane| {
                lane.fill(rows);
                lane.finish()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;
    use crate::nested::transpose;

    fn piece(text: &str) -> TextPiece {
        TextPiece {
            data: text.as_bytes().to_vec(),
            first_line: 1,
            after_comma: false,
            last: true,
        }
    }

    /// The schema of `text` and the arrays the ordinary path builds for it.
    fn ordinary(text: &str, schema: Option<&Shape>) -> (Shape, Option<Vec<ArrayRef>>) {
        let records = parse::values(text.as_bytes(), 1, true).expect("valid");
        let schema = schema.cloned().unwrap_or_else(|| {
            let mut s = Shape::root();
            s.widen_records(&records);
            s.finalized()
        });
        let objects: Vec<_> = records.iter().map(|r| Some(r.fields.as_slice())).collect();
        let arrays = transpose(schema.fields(), &objects).and_then(|columns| {
            columns
                .iter()
                .zip(schema.fields())
                .map(|(values, (_, shape))| build_array(shape, values))
                .collect()
        });
        (schema, arrays)
    }

    #[test]
    fn builds_what_the_tree_path_builds() {
        let docs = [
            concat!(
                r#"{"i": 1, "f": 2.5, "s": "a\"b\u00e9\ud83d\ude00", "b": true, "d": "2024-02-29", "t": "2024-01-01T10:00:00Z", "n": "2024-01-01 10:00"}"#,
                "\n",
                r#"  {"n": null, "t": "2024-01-01T11:00:00+02:00", "d": null, "b": false, "s": 12.50, "f": -0.0, "i": -9007199254740993}  "#,
                "\n\n",
                r#"{"s": true, "\u0069": 7}"#,
                "\n{}\r\n",
                r#"{"f": 1e300, "s": "", "n": "2024-01-01"}"#,
                "\n"
            ),
            concat!(
                r#"{"l": [1, 2], "o": {"x": [true], "y": "z"}, "j": 1, "e": {}}"#,
                "\n",
                r#"{"l": null, "o": {"y": "w"}, "j": [1, {"a": "b"}], "e": null}"#,
                "\n",
                r#"{"j": "s", "k": null}"#,
                "\n"
            ),
            "{\"ключ\": \"значение\", \"a\\\\b\": 1, \"a\\\"b\": 2}\n{\"a\\\\b\": 3}\n",
        ];
        for doc in docs {
            let (schema, want) = ordinary(doc, None);
            let want = want.expect("the ordinary path builds it");
            let (rows, got) = columns(&piece(doc), &Layout::Lines, &schema).expect("fast");
            assert_eq!(rows, want[0].len(), "{doc}");
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_data(), w.to_data(), "{doc}");
            }
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_know() {
        let (schema, _) = ordinary("{\"a\": 1, \"s\": \"x\", \"d\": \"2024-01-01\"}\n", None);
        let fast = |text: &str, layout: &Layout| columns(&piece(text), layout, &schema);
        assert!(fast("{\"a\": 2}\n{\"s\": \"y\"}\n", &Layout::Lines).is_some());
        for bad in [
            "{\"a\": 1, \"a\": 2}\n",
            "{\"a\": 1, \"z\": 2}\n",
            "{\"a\": 1.5}\n",
            "{\"a\": \"1\"}\n",
            "{\"a\": true}\n",
            "{\"a\": [1]}\n",
            "{\"a\": 9223372036854775808}\n",
            "{\"d\": \"2024-02-30\"}\n",
            "{\"d\": 20240101}\n",
            "{\"a\":\n1}\n",
            "{\"a\": 01}\n",
            "{\"a\": 1,}\n",
            "{\"a\": 1}}\n",
            "{\"s\": \"\t\"}\n",
            "{\"s\": \"\\x\"}\n",
            "{\"s\": nul}\n",
            "[1]\n",
            "{\"a\": 1} x\n",
            "{\"a\": 1",
        ] {
            assert!(fast(bad, &Layout::Lines).is_none(), "{bad:?}");
        }
        let invalid = TextPiece {
            data: b"{\"s\": \"\xff\"}\n".to_vec(),
            ..piece("")
        };
        assert!(columns(&invalid, &Layout::Lines, &schema).is_none());
        assert!(fast("{\"a\":\n1}{\"a\": 2} {\"a\": 3}", &Layout::Values).is_some());
    }

    #[test]
    fn small_ints_are_what_the_parser_and_parse_i64_make_of_them() {
        for text in [
            "0",
            "-0",
            "7,",
            "-12}",
            "123456789012345678 ",
            "1234567890123456789",
            "-999999999999999999",
            "01",
            "-",
            "1.5",
            "2e3",
            "3E1",
            "-x",
            "",
            "9223372036854775807",
            "12x",
        ] {
            let full = Parser::new(text.as_bytes(), 1)
                .number_text()
                .ok()
                .and_then(|t| Some((parse_i64(t.as_bytes())?, t.len())));
            // `None` is always safe: the full parser then judges.
            if let Some(got) = small_int(text.as_bytes()) {
                assert_eq!(Some(got), full, "{text:?}");
            }
        }
    }

    #[test]
    fn small_ints_take_the_usual_ones() {
        assert_eq!(small_int(b"7,"), Some((7, 1)));
        assert_eq!(small_int(b"-12}"), Some((-12, 3)));
        assert_eq!(small_int(b"0 "), Some((0, 1)));
        assert_eq!(small_int(b"01"), None);
    }

    #[test]
    fn raw_keys_match_whole_names() {
        let k = RawKey::new("customer_id").expect("plain");
        assert!(k.matches(b"customer_id\":1"));
        assert!(k.matches(b"customer_id\""));
        assert!(!k.matches(b"customer_id2\":1"));
        assert!(!k.matches(b"customer_i\":1, \"x\": 2"));
        assert!(!k.matches(b"customer_id"));
        let k = RawKey::new("a").expect("plain");
        assert!(k.matches(b"a\":"));
        assert!(!k.matches(b"ab\":"));
        assert!(RawKey::new("a\\b").is_none());
        assert!(RawKey::new("a\"b").is_none());
    }

    #[test]
    fn array_pieces_follow_the_ordinary_rules() {
        let (schema, _) = ordinary("{\"a\": 1}\n", None);
        let part = |text: &str, after_comma: bool, last: bool| {
            let p = TextPiece {
                after_comma,
                last,
                ..piece(text)
            };
            let layout = Layout::Array { skip: 0, key: None };
            columns(&p, &layout, &schema).map(|(rows, _)| rows)
        };
        assert_eq!(part(" {\"a\": 1},\n{},", false, false), Some(2));
        assert_eq!(part("{\"a\": 2} ", true, true), Some(1));
        assert_eq!(part(" ", false, true), Some(0));
        assert_eq!(part(" ", true, true), None);
        assert_eq!(part("{} {}", false, true), None);
        assert_eq!(part("{},", false, true), None);
    }
}
