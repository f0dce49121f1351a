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
//! counted ([`XmlRecords::skipped`]), as is text between records; what
//! holds a value among them is kept ([`XmlRecords::outside`]).
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

mod build;
mod detect;
mod input;
mod syntax;
#[cfg(test)]
mod tests;
mod tree;
mod window;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::mem;
use std::sync::{Arc, Mutex};

use quick_xml::escape::{resolve_predefined_entity, EscapeError};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesEnd, BytesRef, BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, XmlVersion};

use crate::error::{Error, Result};
use crate::value::Record;
use detect::{detect, Target};
use input::Input;
use syntax::{attribute_error, cdata_end, first_forbidden, name_error, CDATA_END};
use tree::is_blank;
use window::{Lines, Window};

pub use build::parse_piece;

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
/// Reading is in two steps, so that the costly one runs in parallel: this
/// reader only finds where records start and end (quick-xml's tokens,
/// checked for nesting, end tags, depth and size), and hands the bytes of
/// whole records out in an [`XmlPiece`]; [`parse_piece`] turns a piece into
/// records (names, attributes, text, references and their errors). The
/// [`Iterator`] does both, one piece after the other.
///
/// # Memory
/// A window of the input (1 MiB, more while a larger record passes, at
/// most [`XmlOptions::max_record_bytes`] beyond it), the bytes of the piece
/// being gathered, and, while the record element is detected, the start of
/// the document (about 1 MiB, at most `max_record_bytes`); never the whole
/// document.
pub struct XmlRecords {
    window: Window,
    scan: Scan,
    layout: XmlLayout,
    options: XmlOptions,
    /// Records of the last piece, not yet handed out by the iterator.
    queue: VecDeque<Record<'static>>,
    /// The error that follows the queued records.
    error: Option<Error>,
    /// No more pieces.
    done: bool,
}

/// The bytes of whole records, cut from the document by [`XmlRecords`], to
/// be read by [`parse_piece`] (on any thread).
#[derive(Default)]
pub struct XmlPiece {
    /// The records' bytes, one after the other (what lies between them is
    /// not kept).
    data: Vec<u8>,
    records: Vec<Span>,
    /// The start of a record that the error cut short: read for an error
    /// of its own, which comes first in the document.
    partial: Option<Span>,
    /// The error that ends the document after these records (taken by the
    /// piece's one parse).
    error: Mutex<Option<Error>>,
}

/// One record's bytes in a piece, and the line of its first byte.
struct Span {
    start: usize,
    end: usize,
    line: u64,
}

impl XmlPiece {
    /// Records in the piece (the one cut short not counted).
    pub fn rows(&self) -> usize {
        self.records.len()
    }

    fn push(&mut self, bytes: &[u8], line: u64) -> Span {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        Span {
            start,
            end: self.data.len(),
            line,
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.partial.is_none() && self.data.is_empty()
    }
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
            scan: Scan {
                source_name: source_name.to_owned(),
                max_depth: options.max_depth,
                max_record_bytes: options.max_record_bytes,
                target: found.target,
                outside: Vec::new(),
                qnames: Vec::new(),
                record_qname: Vec::new(),
                fast: false,
                ranges: Vec::new(),
                open: 0,
                record_line: 0,
                root_seen: false,
                root_closed: false,
                seen: false,
                skipped: 0,
                kept: Vec::new(),
                blank: Vec::new(),
                dropped: 0,
            },
            layout,
            options: options.clone(),
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
        self.scan.skipped
    }

    /// What lies outside the records and holds a value, as XML: the
    /// document with its records taken out, and with them the elements
    /// that hold nothing else, comments, processing instructions and blank
    /// text (`<export><meta><tag>a</tag></meta></export>`). A value is text
    /// (a reference, CDATA), an attribute, or an element with nothing in
    /// it. `None` when nothing holds a value. Complete once the document
    /// has ended; at most [`MAX_OUTSIDE_BYTES`]: past that, a document
    /// whose record element was found is an error, and one whose record
    /// element was named keeps nothing of it (see [`Self::dropped`]).
    pub fn outside(&self) -> Option<&str> {
        let kept =
            (self.scan.dropped == 0 && !self.scan.kept.is_empty()).then_some(&self.scan.kept);
        // Every piece was checked as UTF-8 when kept.
        kept.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Bytes outside the records, holding values, not kept by
    /// [`Self::outside`] because they were more than [`MAX_OUTSIDE_BYTES`].
    pub fn dropped(&self) -> u64 {
        self.scan.dropped
    }

    /// The next `rows` records' bytes (fewer at the end of the document);
    /// `None` once the document and its error, if any, were handed out. An
    /// error (of the document or of reading it) is the last piece's, after
    /// its records: the pieces before it are read first, in order, and an
    /// error among their records comes first.
    pub fn next_piece(&mut self, rows: usize) -> Option<XmlPiece> {
        if self.done {
            return None;
        }
        let mut piece = XmlPiece::default();
        loop {
            if self.fast(&mut piece, rows.max(1)) {
                break;
            }
            match self.pass(&mut piece, rows.max(1)) {
                Ok(Pass::Stop) => break,
                Ok(Pass::Refill | Pass::Fast) => {}
                Ok(Pass::End) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    piece.error = Mutex::new(Some(e));
                    return Some(piece);
                }
            }
        }
        (!piece.is_empty()).then_some(piece)
    }

    /// Right after a record, cuts out the records that follow it as long as
    /// they are plain (siblings of the same name, made of tags, text and
    /// references only: nothing quick-xml could find wrong or read in
    /// another way), moving the safe point past them; anything else is left
    /// to [`XmlRecords::pass`]. Returns whether the piece is full.
    fn fast(&mut self, piece: &mut XmlPiece, rows: usize) -> bool {
        let Self { window, scan, .. } = self;
        if !scan.fast || scan.outside.is_empty() || scan.root_closed {
            return false;
        }
        let buf = &window.buf[..window.end];
        let mut stack = mem::take(&mut scan.ranges);
        loop {
            let start = window.safe
                + buf[window.safe..]
                    .iter()
                    .position(|b| !is_blank(&[*b]))
                    .unwrap_or(buf.len() - window.safe);
            let Some(end) = plain_record(buf, start, &scan.record_qname, scan, &mut stack) else {
                break;
            };
            if end == buf.len() && !window.eof {
                break;
            }
            let line = window.lines.at(&window.buf, start);
            let span = piece.push(&buf[start..end], line);
            piece.records.push(span);
            window.safe = end;
            if piece.records.len() >= rows {
                scan.ranges = stack;
                return true;
            }
        }
        scan.ranges = stack;
        false
    }

    /// Scans the window from its safe point to its end, adding the records
    /// that end in it to `piece`; a record (or event) cut by the window's
    /// end is dropped, the window refilled, and its bytes are scanned again
    /// by the next pass. On an error inside a record, the record's start is
    /// the piece's partial record.
    fn pass(&mut self, piece: &mut XmlPiece, rows: usize) -> Result<Pass> {
        let Self { window, scan, .. } = self;
        let base = window.safe;
        let slice = &window.buf[base..window.end];
        let mut reader = Reader::from_reader(slice);
        configure(&mut reader);
        // The scan holds everything before `done`, the record being read
        // starts at `record_start` (both relative to `base`).
        let mut done = 0;
        let mut record_start = 0;
        let mut start;
        scan.fast = false;
        let outcome = loop {
            start = reader.buffer_position() as usize;
            let here = Here {
                buf: &window.buf,
                valid: "",
                lines: &window.lines,
                start: base + start,
            };
            let in_record = scan.open > 0;
            let result = match reader.read_event() {
                Ok(Event::Eof) if !window.eof => break Ok(Pass::Refill),
                // quick-xml fails at the end of the slice when markup is
                // cut: only more input tells whether it is really broken.
                Err(_) if !window.eof && reader.buffer_position() as usize + 16 >= slice.len() => {
                    break Ok(Pass::Refill)
                }
                Err(e) => Err(scan.error(&here, e)),
                Ok(event) => {
                    let end = reader.buffer_position() as usize;
                    if end == slice.len() && !window.eof {
                        // Text (or a reference) may go on after the window.
                        break Ok(Pass::Refill);
                    }
                    if end - if in_record { record_start } else { start } > scan.max_record_bytes {
                        Err(scan.too_large(here.line()))
                    } else {
                        scan.event(event, &here, &slice[start..end])
                    }
                }
            };
            let end = reader.buffer_position() as usize;
            match result {
                Ok(Step::More) if scan.open > 0 && !in_record => record_start = start,
                Ok(Step::More) if scan.open == 0 => done = end,
                Ok(Step::More) => {}
                Ok(Step::Record) => {
                    done = end;
                    let from = if in_record { record_start } else { start };
                    let span = piece.push(&slice[from..end], scan.record_line);
                    piece.records.push(span);
                    if piece.records.len() >= rows {
                        break Ok(Pass::Stop);
                    }
                    scan.fast = true;
                    break Ok(Pass::Fast);
                }
                Ok(Step::End) => break Ok(Pass::End),
                Err(e) => {
                    if in_record {
                        piece.partial =
                            Some(piece.push(&slice[record_start..start], scan.record_line));
                    }
                    break Err(e);
                }
            }
        };
        window.safe = base + done;
        let outcome = outcome?;
        if outcome == Pass::Refill {
            // Where the record being read is, from the safe point (which a
            // refill moves the bytes with). Outside a record, `record_start`
            // is an old one's, before the safe point.
            let cut = (scan.open > 0).then(|| {
                (
                    base + record_start - window.safe,
                    base + start - window.safe,
                )
            });
            let refilled = window
                .refill(scan.max_record_bytes)
                .map_err(|e| Error::io(&scan.source_name, e));
            let failed = match refilled {
                Ok(true) => None,
                Ok(false) => {
                    let line = window.lines.at(&window.buf, window.safe);
                    Some(scan.too_large(line))
                }
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                if let Some(cut) = cut {
                    let bytes = &window.buf[window.safe + cut.0..window.safe + cut.1];
                    piece.partial = Some(piece.push(bytes, scan.record_line));
                }
                return Err(e);
            }
            scan.rollback();
        }
        Ok(outcome)
    }
}

impl Iterator for XmlRecords {
    type Item = Result<Record<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.queue.pop_front() {
                return Some(Ok(record));
            }
            if let Some(e) = self.error.take() {
                return Some(Err(e));
            }
            let piece = self.next_piece(BATCH)?;
            let mut records = Vec::new();
            // The records before the error are handed out first.
            let parsed =
                build::parse_into(&piece, &self.options, &self.scan.source_name, &mut records);
            self.queue
                .extend(records.into_iter().map(Record::into_owned));
            if let Err(e) = parsed {
                self.error = Some(e);
            }
        }
    }
}

/// Records per piece of the iterator.
const BATCH: usize = 128;

/// Most bytes of [`XmlRecords::outside`].
pub const MAX_OUTSIDE_BYTES: usize = 1 << 20;

/// How a pass ended.
#[derive(PartialEq, Eq)]
enum Pass {
    /// The piece is full.
    Stop,
    /// The window ends inside an event or a record: read more.
    Refill,
    /// The document ended.
    End,
    /// A record ended: [`XmlRecords::fast`] may take the next ones.
    Fast,
}

/// What one event led to.
enum Step {
    More,
    /// A record ended.
    Record,
    End,
}

/// Where the event being handled is: its line, and its bytes as text.
struct Here<'a, 'l> {
    buf: &'a [u8],
    /// Of `buf`, a part known to be UTF-8 (from the first byte up to the
    /// first that is not, or nothing).
    valid: &'a str,
    lines: &'l Lines,
    start: usize,
}

impl<'a> Here<'a, '_> {
    fn line(&self) -> u64 {
        self.line_at(0)
    }

    /// The line of the byte `at` bytes after the start.
    fn line_at(&self, at: usize) -> u64 {
        self.lines.at(self.buf, self.start + at)
    }

    /// `bytes` (a part of `buf`) as the text it is, borrowed from `buf`
    /// when it is in the valid part; or an error.
    fn text(&self, bytes: &[u8], source_name: &str) -> Result<Cow<'a, str>> {
        let offset = (bytes.as_ptr() as usize).wrapping_sub(self.valid.as_ptr() as usize);
        if let Some(text) = offset
            .checked_add(bytes.len())
            .and_then(|end| self.valid.get(offset..end))
        {
            return Ok(Cow::Borrowed(text));
        }
        // Not in the valid part: owned (an unusual value), or invalid.
        Ok(Cow::Owned(self.str(bytes, source_name)?.to_owned()))
    }

    /// `bytes` as text, or an error.
    fn str<'b>(&self, bytes: &'b [u8], source_name: &str) -> Result<&'b str> {
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
    /// Its start tag is in [`Scan::kept`].
    kept: bool,
}

/// Where the scan is in the document.
struct Scan {
    source_name: String,
    max_depth: usize,
    max_record_bytes: usize,
    target: Target,
    outside: Vec<Outside>,
    /// Qualified names of the elements open inside the record,
    /// `qnames[..open]` (the buffers kept for reuse), to check end tags.
    qnames: Vec<Vec<u8>>,
    /// Qualified name of the last record's element.
    record_qname: Vec<u8>,
    /// The scan is right after a record (see [`XmlRecords::fast`]).
    fast: bool,
    /// Room for [`plain_record`]'s open elements.
    ranges: Vec<(usize, usize)>,
    open: usize,
    record_line: u64,
    root_seen: bool,
    root_closed: bool,
    /// An event was read.
    seen: bool,
    skipped: u64,
    /// The document without its records, cut to what holds a value (see
    /// [`XmlRecords::outside`]).
    kept: Vec<u8>,
    /// Blank text outside records not yet kept (see [`Scan::outside_text`]).
    blank: Vec<u8>,
    /// Bytes of it over [`MAX_OUTSIDE_BYTES`], not kept (when the record
    /// element was named; found, it is an error).
    dropped: u64,
}

impl Scan {
    /// Takes in one event, `raw` its bytes.
    fn event(&mut self, event: Event<'_>, here: &Here<'_, '_>, raw: &[u8]) -> Result<Step> {
        let first = !mem::replace(&mut self.seen, true);
        match event {
            // Blank text before a tag not kept is not kept either.
            Event::Start(e) => self
                .start(&e, here, false, raw)
                .inspect(|_| self.blank.clear()),
            Event::Empty(e) => self
                .start(&e, here, true, raw)
                .inspect(|_| self.blank.clear()),
            Event::End(e) => self.end(&e, here, raw).inspect(|_| self.blank.clear()),
            // Inside records, text and references are the parser's.
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) if self.open > 0 => {
                Ok(Step::More)
            }
            Event::Text(t) => self.outside_text(&t, here, raw, true),
            Event::CData(_) => self.outside_text(b"CDATA", here, raw, false),
            Event::GeneralRef(r) => {
                resolve(&r, here, &self.source_name)?;
                self.outside_text(b"&", here, raw, false)
            }
            Event::Decl(_) if !(first && here.start == 0) => Err(self.parse_error(
                here.line(),
                "an XML declaration that is not at the very start of the document",
            )),
            Event::DocType(_) if self.root_seen => {
                Err(self.parse_error(here.line(), "a DOCTYPE inside the document"))
            }
            Event::Eof => self.eof(here),
            Event::PI(_) | Event::Comment(_) if self.open == 0 => {
                self.check(raw, here).map(|()| Step::More)
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => Ok(Step::More),
        }
    }

    fn start(
        &mut self,
        e: &BytesStart<'_>,
        here: &Here<'_, '_>,
        empty: bool,
        raw: &[u8],
    ) -> Result<Step> {
        let depth = self.outside.len() + self.open;
        if depth >= self.max_depth {
            return Err(self.parse_error(
                here.line(),
                format!("elements nested deeper than max_depth ({})", self.max_depth),
            ));
        }
        if self.open > 0 {
            if !empty {
                self.push_qname(e.name().into_inner());
            }
            return Ok(Step::More);
        }
        // Inside records the builder checks characters and names; here the
        // records' own and those of the markup outside them.
        self.check(raw, here)?;
        if let Some(why) = name_error(e.name().into_inner(), "element") {
            return Err(self.parse_error(here.line(), why));
        }
        let name = here.str(e.local_name().into_inner(), &self.source_name)?;
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
            self.record_qname.clear();
            self.record_qname.extend_from_slice(e.name().into_inner());
            if empty {
                return Ok(self.record_end());
            }
            self.push_qname(e.name().into_inner());
            return Ok(Step::More);
        }
        // An empty element is a value; so are attributes.
        let mut value = empty;
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.parse_error(here.line(), format!("{err}")))?;
            let key = attr.key.into_inner();
            if let Some(why) =
                name_error(key, "attribute").or_else(|| attribute_error(e, key, &attr.value))
            {
                return Err(self.parse_error(here.line(), why));
            }
            value = true;
            if attr.value.contains(&b'&') {
                normalized_value(&attr, &self.source_name, here.line())?;
            }
        }
        if value {
            self.keep(raw, here, false)?;
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
                kept: value,
            });
        }
        Ok(Step::More)
    }

    /// Adds `raw` (markup or text outside records that holds a value) to
    /// [`Scan::kept`], after the start tags of the elements it is in that
    /// are not yet there, and the blank text before it in its element.
    /// The `>` of a text is escaped: taking records (or comments) out may
    /// have put it right after `]]`.
    fn keep(&mut self, raw: &[u8], here: &Here<'_, '_>, text: bool) -> Result<()> {
        let raw = here.str(raw, &self.source_name)?.as_bytes();
        let escaped;
        let raw = if text && raw.contains(&b'>') {
            escaped = raw.iter().fold(Vec::new(), |mut out, &b| {
                match b {
                    b'>' => out.extend_from_slice(b"&gt;"),
                    _ => out.push(b),
                }
                out
            });
            &escaped
        } else {
            raw
        };
        let mut kept = mem::take(&mut self.kept);
        let mut add = |bytes: &[&[u8]]| {
            let len: usize = bytes.iter().map(|b| b.len()).sum();
            if self.dropped == 0 && kept.len() + len <= MAX_OUTSIDE_BYTES {
                bytes.iter().for_each(|b| kept.extend_from_slice(b));
            } else {
                self.dropped += (mem::take(&mut kept).len() + len) as u64;
            }
        };
        // The elements kept are the outermost ones: the first not kept is
        // found from the innermost (most often kept already).
        let from = self
            .outside
            .iter()
            .rposition(|o| o.kept)
            .map_or(0, |i| i + 1);
        for open in &mut self.outside[from..] {
            open.kept = true;
            add(&[b"<", &open.qname, b">"]);
        }
        add(&[&self.blank, raw]);
        self.blank.clear();
        self.kept = kept;
        if self.dropped > 0 && matches!(self.target, Target::Path(_)) {
            return Err(self.parse_error(
                here.line(),
                format!(
                    "more than {} KiB outside the records would be lost (this and what comes \
                     before); name the record element (record_element) to convert the records \
                     without it",
                    MAX_OUTSIDE_BYTES >> 10
                ),
            ));
        }
        Ok(())
    }

    /// An error for a character XML does not allow in `raw` (the bytes of
    /// an event outside records), at its line.
    fn check(&self, raw: &[u8], here: &Here<'_, '_>) -> Result<()> {
        match first_forbidden(raw) {
            Some((at, c)) => Err(forbidden_error(&self.source_name, here.line_at(at), c)),
            None => Ok(()),
        }
    }

    fn push_qname(&mut self, qname: &[u8]) {
        if self.open == self.qnames.len() {
            self.qnames.push(Vec::new());
        }
        let name = &mut self.qnames[self.open];
        name.clear();
        name.extend_from_slice(qname);
        self.open += 1;
    }

    fn end(&mut self, e: &BytesEnd<'_>, here: &Here<'_, '_>, raw: &[u8]) -> Result<Step> {
        let open = match self.open {
            0 => self.outside.last().map(|o| o.qname.as_slice()),
            n => Some(self.qnames[n - 1].as_slice()),
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
        if self.open > 1 {
            self.open -= 1;
            return Ok(Step::More);
        }
        if self.open == 1 {
            self.open = 0;
            return Ok(self.record_end());
        }
        // An element with nothing in it is a value, as if empty: its start
        // tag is kept.
        let last = self.outside.last();
        if last.is_some_and(|o| !o.had_record && o.pending == 0 && !o.kept) {
            self.keep(b"", here, false)?;
        }
        if let Some(closed) = self.outside.pop() {
            if closed.kept {
                self.keep(raw, here, false)?;
            }
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

    fn record_end(&mut self) -> Step {
        match self.outside.last_mut() {
            Some(parent) => parent.had_record = true,
            None => self.root_closed = true,
        }
        Step::Record
    }

    /// Forgets the record being read (it will be read again).
    fn rollback(&mut self) {
        self.open = 0;
    }

    /// Text (`is_text`), CDATA or a reference outside records.
    fn outside_text(
        &mut self,
        text: &[u8],
        here: &Here<'_, '_>,
        raw: &[u8],
        is_text: bool,
    ) -> Result<Step> {
        let Some(first) = text.iter().position(|b| !is_blank(&[*b])) else {
            // Blank text is kept when a value or an end tag kept follows it
            // in its element (`&lt; &gt;` is not `<>`), not before a tag
            // (records, indentation). Past the most that is kept, it is
            // kept, and so too much.
            if !self.outside.is_empty() {
                if self.blank.len() + raw.len() > MAX_OUTSIDE_BYTES {
                    self.keep(raw, here, false)?;
                } else {
                    self.blank.extend_from_slice(raw);
                }
            }
            return Ok(Step::More);
        };
        self.check(raw, here)?;
        if let Some(at) = is_text.then(|| cdata_end(raw)).flatten() {
            return Err(self.parse_error(here.line_at(at), CDATA_END));
        }
        match self.outside.last_mut() {
            Some(parent) => {
                parent.pending += 1;
                self.keep(raw, here, is_text)?;
                Ok(Step::More)
            }
            None => Err(self.parse_error(
                here.line_at(first),
                if self.root_seen {
                    "text after the root element"
                } else {
                    "text before the root element"
                },
            )),
        }
    }

    fn eof(&self, here: &Here<'_, '_>) -> Result<Step> {
        let line = here.line();
        if self.open > 0 {
            let qname = &self.qnames[self.open - 1];
            return Err(self.parse_error(
                line,
                format!(
                    "the input ends inside <{}> in the record at line {}",
                    String::from_utf8_lossy(QName(qname).local_name().into_inner()),
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

    fn parse_error(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::parse(&self.source_name, line, reason)
    }

    fn error(&self, here: &Here<'_, '_>, e: impl Into<quick_xml::Error>) -> Error {
        xml_error(&self.source_name, here.line(), e.into())
    }
}

/// The end of the record at `buf[start..]` if it is plain: its element is
/// named `qname`; it has only start, end and empty-element tags, text, and
/// references closed by `;`; its end tags repeat their start tag's name
/// exactly; it is within `max_depth` and `max_record_bytes` and ends in
/// `buf`. `None` for anything else (left to quick-xml).
fn plain_record(
    buf: &[u8],
    start: usize,
    qname: &[u8],
    scan: &Scan,
    stack: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    stack.clear();
    if buf.get(start) != Some(&b'<') {
        return None;
    }
    let limit = start.saturating_add(scan.max_record_bytes);
    let mut pos = start;
    loop {
        // At a `<`.
        match *buf.get(pos + 1)? {
            b'/' => {
                let (at, len) = stack.pop()?;
                let close = pos + 2 + len;
                if buf.get(pos + 2..close)? != &buf[at..at + len] || *buf.get(close)? != b'>' {
                    return None;
                }
                pos = close + 1;
                if stack.is_empty() {
                    return (pos <= limit).then_some(pos);
                }
            }
            b'!' | b'?' => return None,
            _ => {
                if scan.outside.len() + stack.len() >= scan.max_depth {
                    return None;
                }
                // quick-xml's rule: the first `>` outside quotes ends the tag.
                let mut quote = None;
                let gt = pos
                    + 1
                    + memchr::memchr3_iter(b'>', b'\'', b'"', &buf[pos + 1..]).find(|&i| {
                        let b = buf[pos + 1 + i];
                        match quote {
                            None if b == b'>' => true,
                            None => {
                                quote = Some(b);
                                false
                            }
                            Some(q) => {
                                if q == b {
                                    quote = None;
                                }
                                false
                            }
                        }
                    })?;
                let content = &buf[pos + 1..gt];
                let (content, empty) = match content.strip_suffix(b"/") {
                    Some(c) => (c, true),
                    None => (content, false),
                };
                let name_len = content
                    .iter()
                    .position(|b| is_blank(&[*b]))
                    .unwrap_or(content.len());
                let name = &content[..name_len];
                if name.is_empty()
                    || !name
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b) || b >= 0x80)
                    || (pos == start && name != qname)
                {
                    return None;
                }
                if !empty {
                    stack.push((pos + 1, name_len));
                }
                pos = gt + 1;
                if stack.is_empty() {
                    return (pos <= limit).then_some(pos);
                }
            }
        }
        if pos > limit {
            return None;
        }
        // Text up to the next tag; each reference must end before another
        // `&` (or the tag).
        let lt = pos + memchr::memchr(b'<', &buf[pos..])?;
        let text = &buf[pos..lt];
        for amp in memchr::memchr_iter(b'&', text) {
            let after = &text[amp + 1..];
            if memchr::memchr2(b';', b'&', after).is_none_or(|i| after[i] != b';') {
                return None;
            }
        }
        pos = lt;
    }
}

/// A resolved reference.
enum Resolved {
    Char(char),
    Str(&'static str),
}

/// A character reference or one of the predefined entities; any other
/// entity is an error.
fn resolve(r: &BytesRef<'_>, here: &Here<'_, '_>, source_name: &str) -> Result<Resolved> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| xml_error(source_name, here.line(), e))?
    {
        // Neither a control character nor U+FFFE, U+FFFF is an XML Char.
        check_chars(c.encode_utf8(&mut [0; 4]), source_name, here.line())?;
        return Ok(Resolved::Char(c));
    }
    let name = r
        .decode()
        .map_err(|_| Error::parse(source_name, here.line(), "invalid UTF-8"))?;
    match resolve_predefined_entity(&name) {
        Some(s) => Ok(Resolved::Str(s)),
        None => Err(Error::parse(
            source_name,
            here.line(),
            undefined_entity(&name),
        )),
    }
}

/// The longest valid UTF-8 start of `bytes`.
fn utf8_prefix(bytes: &[u8]) -> &str {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => simdutf8::basic::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
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

/// An attribute's value with its references resolved and its whitespace
/// normalised; an error for a character XML does not allow in it.
fn normalized_value(attr: &Attribute<'_>, source_name: &str, line: u64) -> Result<String> {
    let value = attr
        .normalized_value(XmlVersion::Implicit1_0)
        .map_err(|err| xml_error(source_name, line, err))?
        .into_owned();
    check_chars(&value, source_name, line)?;
    Ok(value)
}

/// An error for a character XML does not allow in `text` (resolved from
/// references).
fn check_chars(text: &str, source_name: &str, line: u64) -> Result<()> {
    match first_forbidden(text.as_bytes()) {
        Some((_, c)) => Err(forbidden_error(source_name, line, c)),
        None => Ok(()),
    }
}

/// The error for a character XML does not allow (a control character,
/// U+FFFE, U+FFFF).
fn forbidden_error(source_name: &str, line: u64, c: char) -> Error {
    let what = if c < ' ' {
        "control character"
    } else {
        "character"
    };
    let why = format!("{what} U+{:04X}, which XML does not allow", u32::from(c));
    Error::parse(source_name, line, why)
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
