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
mod window;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::mem;
use std::sync::Arc;

use quick_xml::escape::{resolve_predefined_entity, EscapeError};
use quick_xml::events::{BytesEnd, BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::error::{Error, Result};
use crate::value::{Key, Record, Value};
use detect::{detect, Target};
use input::Input;
use tree::{is_blank, Frame};
use window::{Lines, Window};

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
/// A window of the input (1 MiB, more while a larger record passes, at
/// most [`XmlOptions::max_record_bytes`] beyond it), the values of the
/// records that end in it (read a window at a time), and, while the record
/// element is detected, the start of the document (about 1 MiB, at most
/// `max_record_bytes`); never the whole document.
pub struct XmlRecords {
    window: Window,
    state: State,
    layout: XmlLayout,
    /// Records read from the window, not yet handed out.
    queue: VecDeque<Record<'static>>,
    /// The error that follows the queued records.
    error: Option<Error>,
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
        let mut reader = Reader::from_reader(Input::new(read));
        configure(&mut reader);
        let found = detect(&mut reader, options, source_name)?;
        let (kept, rest, eof) = reader.into_inner().into_parts();
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
            window: Window::new(kept, rest, eof),
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
            queue: VecDeque::new(),
            error: None,
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

    /// Parses the window from its safe point to its end, queueing the
    /// records that end in it; a record (or event) cut by the window's end
    /// is dropped, the window refilled, and its bytes are parsed again by the
    /// next pass. Returns whether there is more to read.
    ///
    /// A pass queues at most [`BATCH`] records (allocating many records
    /// before freeing any slows the allocator down) and validates the first
    /// [`VALIDATED`] bytes as UTF-8 at once, so that the names and text in
    /// them need no check of their own.
    fn pass(&mut self) -> Result<bool> {
        let Self {
            window,
            state,
            queue,
            ..
        } = self;
        let base = window.safe;
        let slice = &window.buf[base..window.end];
        let valid = utf8_prefix(&slice[..slice.len().min(VALIDATED)]);
        let mut reader = Reader::from_reader(slice);
        configure(&mut reader);
        // The state holds everything before `done`, the record being read
        // starts at `record_start` (both relative to `base`).
        let mut done = 0;
        let mut record_start = 0;
        let outcome = loop {
            let start = reader.buffer_position() as usize;
            let here = Here {
                buf: &window.buf,
                valid,
                lines: &window.lines,
                start: base + start,
            };
            let event = match reader.read_event() {
                Ok(Event::Eof) if !window.eof => break Ok(Pass::Refill),
                Ok(event) => event,
                // quick-xml fails at the end of the slice when markup is
                // cut: only more input tells whether it is really broken.
                Err(_) if !window.eof && reader.buffer_position() as usize + 16 >= slice.len() => {
                    break Ok(Pass::Refill)
                }
                Err(e) => break Err(state.error(&here, e)),
            };
            let end = reader.buffer_position() as usize;
            if end == slice.len() && !window.eof {
                // Text (or a reference) may go on after the window.
                break Ok(Pass::Refill);
            }
            let in_record = state.open > 0;
            if end - if in_record { record_start } else { start } > state.max_record_bytes {
                break Err(state.too_large(here.line()));
            }
            match state.event(event, &here) {
                Ok(Step::More) if state.open > 0 && !in_record => record_start = start,
                Ok(Step::More) if state.open == 0 => done = end,
                Ok(Step::More) => {}
                Ok(Step::Record(record)) => {
                    done = end;
                    queue.push_back(record);
                    if queue.len() == BATCH {
                        break Ok(Pass::Stop);
                    }
                }
                Ok(Step::End) => break Ok(Pass::End),
                Err(e) => break Err(e),
            }
        };
        window.safe = base + done;
        let outcome = outcome?;
        if outcome == Pass::Refill {
            let grew = window
                .refill(state.max_record_bytes)
                .map_err(|e| Error::io(&state.source_name, e))?;
            if !grew {
                let line = window.lines.at(&window.buf, window.safe);
                return Err(state.too_large(line));
            }
            state.rollback();
        }
        Ok(outcome != Pass::End)
    }
}

impl Iterator for XmlRecords {
    type Item = Result<Record<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.queue.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return self.error.take().map(Err);
            }
            match self.pass() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                // The records before the error were handed out first.
                Err(e) => {
                    self.done = true;
                    if self.queue.is_empty() {
                        return Some(Err(e));
                    }
                    self.error = Some(e);
                }
            }
        }
    }
}

/// Most records one pass queues.
const BATCH: usize = 128;
/// Bytes of the window a pass validates as UTF-8 in one go (about
/// [`BATCH`] records of common sizes).
const VALIDATED: usize = 64 * 1024;

/// How a pass ended.
#[derive(PartialEq, Eq)]
enum Pass {
    /// The batch is full.
    Stop,
    /// The window ends inside an event or a record: read more.
    Refill,
    /// The document ended.
    End,
}

/// What one event led to.
enum Step {
    More,
    Record(Record<'static>),
    End,
}

/// Where the event being handled is: its line, and its bytes as text.
struct Here<'a> {
    buf: &'a [u8],
    /// The window's bytes from the pass's start, up to the first that is
    /// not UTF-8.
    valid: &'a str,
    lines: &'a Lines,
    start: usize,
}

impl<'a> Here<'a> {
    fn line(&self) -> u64 {
        self.lines.at(self.buf, self.start)
    }

    /// `bytes` (a part of the window) as the text it is, or an error.
    fn text<'b>(&self, bytes: &'b [u8], source_name: &str) -> Result<&'b str>
    where
        'a: 'b,
    {
        let offset = (bytes.as_ptr() as usize).wrapping_sub(self.valid.as_ptr() as usize);
        if let Some(text) = offset
            .checked_add(bytes.len())
            .and_then(|end| self.valid.get(offset..end))
        {
            return Ok(text);
        }
        // Not in the valid part: owned (an unusual value), or invalid.
        std::str::from_utf8(bytes)
            .map_err(|_| Error::parse(source_name, self.line(), "invalid UTF-8"))
    }
}

/// An element open outside records.
struct Outside {
    /// Qualified name, to check the end tag.
    qname: Vec<u8>,
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
    /// Most fields a record had so far (capacity for the next: growing the
    /// vector costs more than a few spare slots; at most 64).
    fields_hint: usize,
    root_seen: bool,
    root_closed: bool,
    skipped: u64,
}

/// Memory charged for each value besides its bytes.
const VALUE_COST: usize = mem::size_of::<(String, Value<'static>)>();

impl State {
    fn event(&mut self, event: Event<'_>, here: &Here<'_>) -> Result<Step> {
        match event {
            Event::Start(e) => self.start(&e, here, false),
            Event::Empty(e) => self.start(&e, here, true),
            Event::End(e) => self.end(Some(&e), here),
            Event::Text(t) => {
                if self.open > 0 {
                    let text = here.text(&t, &self.source_name)?;
                    push_normalized(&mut self.frames[self.open - 1].text, text);
                    Ok(Step::More)
                } else {
                    self.outside_text(&t, here)
                }
            }
            Event::CData(c) => {
                if self.open > 0 {
                    let text = here.text(&c, &self.source_name)?;
                    push_normalized(&mut self.frames[self.open - 1].text, text);
                    Ok(Step::More)
                } else {
                    self.outside_text(b"CDATA", here)
                }
            }
            Event::GeneralRef(r) => {
                let resolved = self.resolve(&r, here)?;
                if self.open > 0 {
                    let text = &mut self.frames[self.open - 1].text;
                    match resolved {
                        Resolved::Char(c) => text.push(c),
                        Resolved::Str(s) => text.push_str(s),
                    }
                    Ok(Step::More)
                } else {
                    self.outside_text(b"&", here)
                }
            }
            Event::DocType(_) if self.root_seen => {
                Err(self.parse_error(here.line(), "a DOCTYPE inside the document"))
            }
            Event::Eof => self.eof(here),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => Ok(Step::More),
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, here: &Here<'_>, empty: bool) -> Result<Step> {
        let depth = self.outside.len() + self.open;
        if depth >= self.max_depth {
            return Err(self.parse_error(
                here.line(),
                format!("elements nested deeper than max_depth ({})", self.max_depth),
            ));
        }
        let name = self.name(e.local_name().into_inner(), here)?;
        if self.open > 0 {
            self.push_frame(name, e.name().into_inner());
            self.attributes(e, here)?;
            return if empty {
                self.end(None, here)
            } else {
                Ok(Step::More)
            };
        }
        if self.root_closed {
            return Err(self.parse_error(
                here.line(),
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
            self.record_line = here.line();
            self.cost = 0;
            self.push_frame(name, e.name().into_inner());
            self.frames[0].fields.reserve(self.fields_hint);
            self.attributes(e, here)?;
            return if empty {
                self.end(None, here)
            } else {
                Ok(Step::More)
            };
        }
        if empty {
            match self.outside.last_mut() {
                Some(parent) => parent.pending += 1,
                None => self.root_closed = true,
            }
        } else {
            self.outside.push(Outside {
                qname: e.name().into_inner().to_vec(),
                line: here.line(),
                on_path,
                had_record: false,
                pending: 0,
            });
        }
        Ok(Step::More)
    }

    fn push_frame(&mut self, name: &str, qname: &[u8]) {
        if self.open == self.frames.len() {
            self.frames.push(Frame::default());
        }
        let frame = &mut self.frames[self.open];
        frame.name.clear();
        frame.name.push_str(name);
        frame.qname.clear();
        frame.qname.extend_from_slice(qname);
        self.open += 1;
    }

    /// Adds the attributes of `e` to the innermost frame.
    fn attributes(&mut self, e: &BytesStart<'_>, here: &Here<'_>) -> Result<()> {
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.parse_error(here.line(), format!("{err}")))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let name = self.name(attr.key.local_name().into_inner(), here)?;
            let raw = here.text(&attr.value, &self.source_name)?;
            let value = if raw
                .bytes()
                .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
            {
                // References to resolve, whitespace to normalise.
                attr.normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|err| self.error(here, err))?
            } else {
                raw.into()
            };
            let mut key = String::with_capacity(name.len() + 1);
            key.push('@');
            key.push_str(name);
            self.charge(key.len() + value.len())?;
            self.frames[self.open - 1]
                .fields
                .add(key.into(), Value::Untyped(value.into_owned().into()));
        }
        Ok(())
    }

    /// An end tag (`None` after an empty-element tag, which needs no check).
    fn end(&mut self, e: Option<&BytesEnd<'_>>, here: &Here<'_>) -> Result<Step> {
        if let Some(e) = e {
            let open = match self.open {
                0 => self.outside.last().map(|o| o.qname.as_slice()),
                n => Some(self.frames[n - 1].qname.as_slice()),
            };
            let found = e.name().into_inner();
            if open != Some(found) {
                let found = String::from_utf8_lossy(found);
                return Err(self.parse_error(
                    here.line(),
                    match open {
                        Some(open) => format!(
                            "expected </{}>, found </{found}>",
                            String::from_utf8_lossy(open)
                        ),
                        None => format!("</{found}> closes no open element"),
                    },
                ));
            }
        }
        if self.open > 1 {
            let frame = &mut self.frames[self.open - 1];
            let value = frame.finish();
            let key: Key = frame.name.as_str().into();
            self.open -= 1;
            self.charge(key.len() + value_len(&value))?;
            self.frames[self.open - 1].fields.add(key, value);
            return Ok(Step::More);
        }
        if self.open == 1 {
            self.open = 0;
            let fields = self.frames[0].finish_record();
            self.fields_hint = self.fields_hint.max(fields.len()).min(64);
            match self.outside.last_mut() {
                Some(parent) => parent.had_record = true,
                None => self.root_closed = true,
            }
            return Ok(Step::Record(Record {
                fields,
                line: self.record_line,
            }));
        }
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

    /// Forgets the record being read (it will be read again).
    fn rollback(&mut self) {
        for frame in &mut self.frames[..self.open] {
            frame.fields.take();
            frame.text.clear();
        }
        self.open = 0;
        self.cost = 0;
    }

    /// Text, CDATA or a reference outside records.
    fn outside_text(&mut self, text: &[u8], here: &Here<'_>) -> Result<Step> {
        let Some(first) = text.iter().position(|b| !is_blank(&[*b])) else {
            return Ok(Step::More);
        };
        match self.outside.last_mut() {
            Some(parent) => {
                parent.pending += 1;
                Ok(Step::More)
            }
            None => Err(self.parse_error(
                here.lines.at(here.buf, here.start + first),
                if self.root_seen {
                    "text after the root element"
                } else {
                    "text before the root element"
                },
            )),
        }
    }

    fn resolve(&self, r: &BytesRef<'_>, here: &Here<'_>) -> Result<Resolved> {
        if let Some(c) = r.resolve_char_ref().map_err(|e| self.error(here, e))? {
            return Ok(Resolved::Char(c));
        }
        let name = r.decode().map_err(|_| self.utf8_error(here))?;
        match resolve_predefined_entity(&name) {
            Some(s) => Ok(Resolved::Str(s)),
            None => Err(self.parse_error(here.line(), undefined_entity(&name))),
        }
    }

    fn eof(&self, here: &Here<'_>) -> Result<Step> {
        let line = here.line();
        if self.open > 0 {
            return Err(self.parse_error(
                line,
                format!(
                    "the input ends inside <{}> in the record at line {}",
                    self.frames[self.open - 1].name,
                    self.record_line
                ),
            ));
        }
        if let Some(o) = self.outside.last() {
            return Err(self.parse_error(
                line,
                format!(
                    "the input ends inside <{}> (line {})",
                    String::from_utf8_lossy(&o.qname),
                    o.line
                ),
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

    /// What must be read next is larger than max_record_bytes.
    fn too_large(&self, line: u64) -> Error {
        if self.open > 0 {
            self.parse_error(
                self.record_line,
                format!(
                    "the record is larger than max_record_bytes ({} bytes)",
                    self.max_record_bytes
                ),
            )
        } else {
            self.parse_error(
                line,
                format!(
                    "markup outside records larger than max_record_bytes ({} bytes)",
                    self.max_record_bytes
                ),
            )
        }
    }

    fn name<'n>(&self, bytes: &'n [u8], here: &Here<'n>) -> Result<&'n str> {
        here.text(bytes, &self.source_name)
    }

    fn parse_error(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::parse(&self.source_name, line, reason)
    }

    fn utf8_error(&self, here: &Here<'_>) -> Error {
        self.parse_error(here.line(), "invalid UTF-8")
    }

    fn error(&self, here: &Here<'_>, e: impl Into<quick_xml::Error>) -> Error {
        xml_error(&self.source_name, here.line(), e.into())
    }
}

/// Appends `text` with its line ends normalised (`\r\n` and `\r` to `\n`).
fn push_normalized(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = memchr::memchr(b'\r', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        out.push('\n');
        rest = &rest[at + 1..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    out.push_str(rest);
}

/// The longest valid UTF-8 start of `bytes`.
fn utf8_prefix(bytes: &[u8]) -> &str {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => simdutf8::basic::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// A resolved reference.
enum Resolved {
    Char(char),
    Str(&'static str),
}

/// Bytes of text in a value (for the memory estimate).
fn value_len(value: &Value<'_>) -> usize {
    match value {
        Value::Untyped(s) => s.len(),
        _ => 0,
    }
}

/// The checks s3proc relies on. End tags are checked by the reader itself:
/// a slice reader is made anew for each window, so quick-xml does not see
/// the elements opened before it.
fn configure<R>(reader: &mut Reader<R>) {
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    config.trim_text(false);
}

fn undefined_entity(name: &str) -> String {
    format!(
        "undefined entity &{name}; (only XML's predefined entities and character references \
         are read; entities declared in a DTD are never expanded)"
    )
}

/// The core error for a quick-xml error at `line`.
fn xml_error(source_name: &str, line: u64, e: quick_xml::Error) -> Error {
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
