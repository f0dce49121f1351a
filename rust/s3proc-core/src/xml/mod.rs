//! XML: a streaming reader of repeated record elements into [`Record`]s.
//!
//! # Which elements are records
//! [`XmlOptions::record_element`] names them (a local name: every outermost
//! element of that name is a record). Otherwise the start of the document
//! decides (see [`XmlLayout::reason`]): the children of the root when they
//! repeat (`<rows><row/><row/>…`); else the first level under the root where
//! elements of one name repeat under one parent (`<export><meta/><rows><row/>
//! <row/>…`: the records are `export/rows/row`); at equal depth the most
//! repeated name wins. When nothing repeats, the root's only child is the one
//! record if it has attributes or children (a one-row export), else the root
//! itself is. Elements outside records that hold no record are skipped and
//! counted ([`XmlRecords::skipped`]), as is text between records.
//!
//! # How an element becomes a value
//! - A record's fields are its attributes, as `@name`, then its children by
//!   local name, in document order: `<r id="1"><id>2</id></r>` gives
//!   `@id = "1"`, `id = "2"`.
//! - A child without attributes or children is its text,
//!   [`Value::Untyped`], exactly as written (entities and CDATA decoded,
//!   line ends normalised to `\n`); an empty element (`<a/>`, `<a></a>`) is
//!   `Untyped("")`, never [`Value::Null`]: an absent element is the null.
//! - A child with attributes or children is a [`Value::Object`] of the same
//!   shape; its text, when not only whitespace, is a `#text` field (mixed
//!   content: the text pieces joined, the children as fields).
//! - A name seen more than once among the children of one element becomes a
//!   [`Value::List`] of the values in document order, at the place of the
//!   first. A name seen once is not a list, so a child repeated in some
//!   records only is a scalar in the others: the column builder widens it.
//! - Namespaces give local names: `x:id` and `y:id` are both `id` (and so a
//!   list when both appear under one element); `xmlns` declarations are not
//!   fields.
//!
//! # Hostile input
//! Nothing is expanded or fetched: the DTD (internal subset included) is
//! read only to be skipped, and a reference to any entity other than XML's
//! five predefined ones and character references is an [`Error::Parse`]
//! naming it (billion laughs, quadratic blow-up, external entities). Memory
//! is bounded by [`XmlOptions::max_record_bytes`]: a record, or any one piece
//! of markup outside records, that reads more input is an error, and so is
//! one whose values would take more than four times that (a record of tiny
//! elements); nesting is bounded by [`XmlOptions::max_depth`].
//!
//! # Encodings
//! UTF-8 (with or without a byte order mark), UTF-16 (by its mark or its
//! first bytes) and any encoding named by the XML declaration that
//! encoding_rs knows (WHATWG labels: `ISO-8859-1` reads as Windows-1252)
//! are read; UTF-32 and unknown names are errors, and so is invalid UTF-8 in
//! a UTF-8 document.

mod detect;
mod input;
#[cfg(test)]
mod tests;
mod tree;

use std::fmt;
use std::io::{self, Read};
use std::mem;
use std::sync::Arc;

use quick_xml::escape::{resolve_predefined_entity, EscapeError};
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::error::{Error, Result};
use crate::value::{Record, Value};
use detect::{detect, Target};
use input::Input;
use tree::{is_blank, Frame};

/// How to read an XML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlOptions {
    /// Local name of the record element; `None` finds it (see the module
    /// documentation).
    pub record_element: Option<String>,
    /// Deepest element nesting accepted, the root being depth 0.
    pub max_depth: usize,
    /// Most input bytes one record (or one piece of markup outside records)
    /// may span; its values may take at most four times that in memory.
    pub max_record_bytes: usize,
}

impl Default for XmlOptions {
    fn default() -> Self {
        Self {
            record_element: None,
            max_depth: 256,
            max_record_bytes: 16 << 20,
        }
    }
}

/// What the reader found at the start of a document (what `inspect` says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlLayout {
    /// The encoding the bytes were read in (an encoding_rs name: `UTF-8`,
    /// `UTF-16LE`, `windows-1252`, …).
    pub encoding: &'static str,
    /// Local name of the root element.
    pub root: String,
    /// Local name of the record element.
    pub record_element: String,
    /// Where records are, from the root (`rows/row`); `None` when
    /// [`XmlOptions::record_element`] named them (any depth).
    pub record_path: Option<String>,
    /// Why these elements, in words.
    pub reason: String,
}

impl fmt::Display for XmlLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "XML ({}), root <{}>, records <{}>",
            self.encoding, self.root, self.record_element
        )?;
        if let Some(path) = &self.record_path {
            write!(f, " at {path}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Reads `read` far enough to tell its layout (at most about 1 MiB, or
/// [`XmlOptions::max_record_bytes`] when nothing repeats early).
///
/// # Errors
/// As [`XmlRecords::new`].
pub fn describe(
    read: impl Read + Send + 'static,
    source_name: &str,
    options: &XmlOptions,
) -> Result<XmlLayout> {
    Ok(XmlRecords::new(read, source_name, options)?.layout)
}

/// The records of an XML document, read as a stream.
///
/// # Memory
/// One record's values, one read buffer (256 KiB) and, while the record
/// element is detected, the start of the document (about 1 MiB, at most
/// [`XmlOptions::max_record_bytes`]); never the whole document.
pub struct XmlRecords {
    reader: Reader<Input>,
    buf: Vec<u8>,
    state: State,
    layout: XmlLayout,
    done: bool,
}

impl XmlRecords {
    /// Opens the document in `read` (raw bytes, any supported encoding) and
    /// finds its record element.
    ///
    /// # Errors
    /// [`Error::Option`] for unusable options; [`Error::Parse`] for an
    /// unsupported encoding, or XML malformed within the part detection
    /// reads; [`Error::Io`] for read errors.
    pub fn new(
        read: impl Read + Send + 'static,
        source_name: &str,
        options: &XmlOptions,
    ) -> Result<Self> {
        if options.max_depth == 0 {
            return Err(Error::Option {
                option: "max_depth",
                reason: "must be at least 1".into(),
            });
        }
        if options.max_record_bytes < 1024 {
            return Err(Error::Option {
                option: "max_record_bytes",
                reason: "must be at least 1024".into(),
            });
        }
        let (read, encoding) = input::decode(Box::new(read), source_name)?;
        let mut reader = xml_reader(Input::new(read));
        let found = detect(&mut reader, options, source_name)?;
        let mut input = reader.into_inner();
        input.rewind();
        let layout = XmlLayout {
            encoding: encoding.name(),
            root: found.root,
            record_element: match &found.target {
                Target::Named(name) => name.clone(),
                Target::Path(path) => path.last().cloned().unwrap_or_default(),
            },
            record_path: match &found.target {
                Target::Named(_) => None,
                Target::Path(path) => Some(path.join("/")),
            },
            reason: found.reason,
        };
        Ok(Self {
            reader: xml_reader(input),
            buf: Vec::new(),
            state: State {
                source_name: source_name.to_owned(),
                max_depth: options.max_depth,
                max_record_bytes: options.max_record_bytes,
                target: found.target,
                outside: Vec::new(),
                frames: Vec::new(),
                open: 0,
                record_line: 0,
                cost: 0,
                fields_hint: 0,
                root_seen: false,
                root_closed: false,
                skipped: 0,
            },
            layout,
            done: false,
        })
    }

    /// What was found at the start of the document.
    pub fn layout(&self) -> &XmlLayout {
        &self.layout
    }

    /// Elements (with their content) and text runs outside records that
    /// held no record, so far (complete once the iterator has ended).
    pub fn skipped(&self) -> u64 {
        self.state.skipped
    }

    fn read_record(&mut self) -> Result<Option<Record>> {
        let Self {
            reader, buf, state, ..
        } = self;
        loop {
            buf.clear();
            if state.open == 0 {
                reader.get_mut().limit(state.max_record_bytes);
            }
            let event = match reader.read_event_into(buf) {
                Ok(event) => event,
                Err(e) => return Err(state.error(reader.get_ref(), e)),
            };
            match state.event(event, reader.get_ref())? {
                Step::More => {}
                Step::Record(record) => return Ok(Some(record)),
                Step::End => return Ok(None),
            }
        }
    }
}

impl Iterator for XmlRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_record().transpose();
        // After the end or an error there is nothing more to read.
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

/// What one event led to.
enum Step {
    More,
    Record(Record),
    End,
}

/// An element open outside records.
struct Outside {
    name: String,
    line: u64,
    /// Records may be below it.
    on_path: bool,
    /// A record was below it.
    had_record: bool,
    /// Children (and text runs) that held no record.
    pending: u64,
}

/// Where the reader is in the document.
struct State {
    source_name: String,
    max_depth: usize,
    max_record_bytes: usize,
    target: Target,
    outside: Vec<Outside>,
    /// Elements open inside the record: `frames[..open]` (kept for reuse).
    frames: Vec<Frame>,
    open: usize,
    record_line: u64,
    /// Estimated memory of the record's values so far.
    cost: usize,
    /// Fields of the last record (capacity for the next).
    fields_hint: usize,
    root_seen: bool,
    root_closed: bool,
    skipped: u64,
}

/// Memory charged for each value besides its bytes.
const VALUE_COST: usize = mem::size_of::<(String, Value)>();

impl State {
    fn event(&mut self, event: Event<'_>, input: &Input) -> Result<Step> {
        match event {
            Event::Start(e) => self.start(&e, input, false),
            Event::Empty(e) => self.start(&e, input, true),
            Event::End(_) => self.end(),
            Event::Text(t) => {
                if self.open > 0 {
                    let text = t.xml10_content().map_err(|_| self.utf8_error(input))?;
                    self.frames[self.open - 1].text.push_str(&text);
                    Ok(Step::More)
                } else {
                    self.outside_text(&t, input)
                }
            }
            Event::CData(c) => {
                if self.open > 0 {
                    let text = c.xml10_content().map_err(|_| self.utf8_error(input))?;
                    self.frames[self.open - 1].text.push_str(&text);
                    Ok(Step::More)
                } else {
                    self.outside_text(b"CDATA", input)
                }
            }
            Event::GeneralRef(r) => {
                let resolved = self.resolve(&r, input)?;
                if self.open > 0 {
                    let text = &mut self.frames[self.open - 1].text;
                    match resolved {
                        Resolved::Char(c) => text.push(c),
                        Resolved::Str(s) => text.push_str(s),
                    }
                    Ok(Step::More)
                } else {
                    self.outside_text(b"&", input)
                }
            }
            Event::DocType(_) if self.root_seen => {
                Err(self.parse_error(input.line(), "a DOCTYPE inside the document"))
            }
            Event::Eof => self.eof(input),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => Ok(Step::More),
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, input: &Input, empty: bool) -> Result<Step> {
        let depth = self.outside.len() + self.open;
        let line = input.line() - memchr::memchr_iter(b'\n', e).count() as u64;
        if depth >= self.max_depth {
            return Err(self.parse_error(
                line,
                format!("elements nested deeper than max_depth ({})", self.max_depth),
            ));
        }
        let name = local_name(e.local_name().into_inner(), &self.source_name, input)?;
        if self.open > 0 {
            self.push_frame(name, line);
            self.attributes(e, input)?;
            return if empty { self.end() } else { Ok(Step::More) };
        }
        if self.root_closed {
            return Err(self.parse_error(
                line,
                format!("a second root element <{name}> (a document has one root)"),
            ));
        }
        self.root_seen = true;
        let parent_on_path = self.outside.last().is_none_or(|o| o.on_path);
        let (is_record, on_path) = match &self.target {
            Target::Named(wanted) => (wanted == name, true),
            Target::Path(path) => {
                let here = parent_on_path && path.get(depth).is_some_and(|p| p == name);
                (here && depth + 1 == path.len(), here)
            }
        };
        if is_record {
            self.record_line = line;
            self.cost = 0;
            self.push_frame(name, line);
            self.frames[0].fields.reserve(self.fields_hint);
            self.attributes(e, input)?;
            return if empty { self.end() } else { Ok(Step::More) };
        }
        if empty {
            match self.outside.last_mut() {
                Some(parent) => parent.pending += 1,
                None => self.root_closed = true,
            }
        } else {
            self.outside.push(Outside {
                name: name.to_owned(),
                line,
                on_path,
                had_record: false,
                pending: 0,
            });
        }
        Ok(Step::More)
    }

    fn push_frame(&mut self, name: &str, line: u64) {
        if self.open == self.frames.len() {
            self.frames.push(Frame::default());
        }
        let frame = &mut self.frames[self.open];
        frame.name.clear();
        frame.name.push_str(name);
        frame.line = line;
        self.open += 1;
    }

    /// Adds the attributes of `e` to the innermost frame.
    fn attributes(&mut self, e: &BytesStart<'_>, input: &Input) -> Result<()> {
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.parse_error(input.line(), format!("{err}")))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let name = local_name(attr.key.local_name().into_inner(), &self.source_name, input)?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| self.error(input, err))?;
            let mut key = String::with_capacity(name.len() + 1);
            key.push('@');
            key.push_str(name);
            self.charge(key.len() + value.len())?;
            self.frames[self.open - 1]
                .fields
                .add(key, Value::Untyped(value.into_owned()));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Step> {
        if self.open > 1 {
            let frame = &mut self.frames[self.open - 1];
            let value = frame.finish();
            let key = frame.name.clone();
            self.open -= 1;
            self.charge(key.len() + value_len(&value))?;
            self.frames[self.open - 1].fields.add(key, value);
            return Ok(Step::More);
        }
        if self.open == 1 {
            self.open = 0;
            let fields = self.frames[0].finish_record();
            self.fields_hint = fields.len();
            match self.outside.last_mut() {
                Some(parent) => parent.had_record = true,
                None => self.root_closed = true,
            }
            return Ok(Step::Record(Record {
                fields,
                line: self.record_line,
            }));
        }
        // quick-xml refuses end tags that match no start tag.
        if let Some(closed) = self.outside.pop() {
            match self.outside.last_mut() {
                Some(parent) if closed.had_record => {
                    parent.had_record = true;
                    self.skipped += closed.pending;
                }
                Some(parent) => parent.pending += 1,
                None => {
                    self.root_closed = true;
                    self.skipped += closed.pending;
                }
            }
        }
        Ok(Step::More)
    }

    /// Text, CDATA or a reference outside records.
    fn outside_text(&mut self, text: &[u8], input: &Input) -> Result<Step> {
        if is_blank(text) {
            return Ok(Step::More);
        }
        match self.outside.last_mut() {
            Some(parent) => {
                parent.pending += 1;
                Ok(Step::More)
            }
            None => Err(self.parse_error(
                input.line(),
                if self.root_seen {
                    "text after the root element"
                } else {
                    "text before the root element"
                },
            )),
        }
    }

    fn resolve(&self, r: &BytesRef<'_>, input: &Input) -> Result<Resolved> {
        if let Some(c) = r.resolve_char_ref().map_err(|e| self.error(input, e))? {
            return Ok(Resolved::Char(c));
        }
        let name = r.decode().map_err(|_| self.utf8_error(input))?;
        match resolve_predefined_entity(&name) {
            Some(s) => Ok(Resolved::Str(s)),
            None => Err(self.parse_error(input.line(), undefined_entity(&name))),
        }
    }

    fn eof(&self, input: &Input) -> Result<Step> {
        let line = input.line();
        if self.open > 0 {
            let frame = &self.frames[self.open - 1];
            return Err(self.parse_error(
                line,
                format!(
                    "the input ends inside <{}> (line {}) of the record at line {}",
                    frame.name, frame.line, self.record_line
                ),
            ));
        }
        if let Some(o) = self.outside.last() {
            return Err(self.parse_error(
                line,
                format!("the input ends inside <{}> (line {})", o.name, o.line),
            ));
        }
        if !self.root_seen {
            return Err(self.parse_error(line, "no XML element: the input is empty or not XML"));
        }
        Ok(Step::End)
    }

    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.cost += VALUE_COST + bytes;
        if self.cost / 4 > self.max_record_bytes {
            return Err(self.parse_error(
                self.record_line,
                format!(
                    "the record's values take more than 4 × max_record_bytes ({} bytes)",
                    self.max_record_bytes
                ),
            ));
        }
        Ok(())
    }

    fn parse_error(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::parse(&self.source_name, line, reason)
    }

    fn utf8_error(&self, input: &Input) -> Error {
        self.parse_error(input.line(), "invalid UTF-8")
    }

    fn error(&self, input: &Input, e: impl Into<quick_xml::Error>) -> Error {
        let record = (self.open > 0).then_some((self.record_line, self.max_record_bytes));
        xml_error(&self.source_name, input, e.into(), record)
    }
}

/// A resolved reference.
enum Resolved {
    Char(char),
    Str(&'static str),
}

/// Bytes of text in a value (for the memory estimate).
fn value_len(value: &Value) -> usize {
    match value {
        Value::Untyped(s) => s.len(),
        _ => 0,
    }
}

/// The quick-xml reader over `input`, with the checks s3proc relies on.
fn xml_reader(input: Input) -> Reader<Input> {
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    config.trim_text(false);
    reader
}

/// A name as UTF-8.
fn local_name<'n>(bytes: &'n [u8], source_name: &str, input: &Input) -> Result<&'n str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::parse(source_name, input.line(), "invalid UTF-8 in a name"))
}

fn undefined_entity(name: &str) -> String {
    format!(
        "undefined entity &{name}; (only XML's predefined entities and character references \
         are read; entities declared in a DTD are never expanded)"
    )
}

/// The core error for a quick-xml error at the reader's position; `record`
/// is the line and size limit of the record being read, if any.
fn xml_error(
    source_name: &str,
    input: &Input,
    e: quick_xml::Error,
    record: Option<(u64, usize)>,
) -> Error {
    let line = input.line();
    if input.over_limit() {
        return match record {
            Some((start, limit)) => Error::parse(
                source_name,
                start,
                format!("the record is larger than max_record_bytes ({limit} bytes)"),
            ),
            None => Error::parse(
                source_name,
                line,
                "markup outside records larger than max_record_bytes",
            ),
        };
    }
    let reason = match e {
        quick_xml::Error::Io(io) => {
            let io =
                Arc::try_unwrap(io).unwrap_or_else(|io| io::Error::new(io.kind(), io.to_string()));
            return Error::io(source_name, io);
        }
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            undefined_entity(&name)
        }
        quick_xml::Error::Encoding(_) => "invalid UTF-8".into(),
        other => other.to_string(),
    };
    Error::parse(source_name, line, reason)
}
