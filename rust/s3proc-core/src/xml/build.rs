//! The records of an [`XmlPiece`]: each record's bytes read again, from its
//! start tag, into its [`Value`] tree. Runs on any thread; the reader has
//! already checked the structure (nesting, end tags, depth, size), so what
//! is left is the content: names, attributes, text, references, and the
//! memory the values take.

use std::borrow::Cow;
use std::mem;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::syntax::{attribute_error, cdata_end, first_forbidden, name_error, CDATA_END};
use super::tree::{Frame, Names};
use super::window::Lines;
use super::{
    configure, forbidden_error, normalized_value, resolve, utf8_prefix, xml_error, Here, Resolved,
    Span, XmlOptions, XmlPiece,
};
use crate::error::{Error, Result};
use crate::value::{Key, Record, Value};

/// Most child names an element remembers from the last one read in its
/// frame.
const SEEN: usize = 256;

/// Memory charged for each value besides its bytes.
const VALUE_COST: usize = mem::size_of::<(String, Value<'static>)>();

/// The records of `piece`, their text borrowed from it where it needs no
/// decoding.
///
/// # Errors
/// The first error of the document at or after the piece's first record:
/// [`Error::Parse`] for malformed content (an undefined entity, invalid
/// UTF-8, a bad attribute, a record whose values take more than four times
/// `max_record_bytes`) or structure, [`Error::Io`] for read errors.
pub fn parse_piece<'p>(
    piece: &'p XmlPiece,
    options: &XmlOptions,
    source_name: &str,
) -> Result<Vec<Record<'p>>> {
    let mut records = Vec::with_capacity(piece.rows());
    parse_into(piece, options, source_name, &mut records)?;
    Ok(records)
}

/// As [`parse_piece`], the records before an error kept in `out`.
pub(super) fn parse_into<'p>(
    piece: &'p XmlPiece,
    options: &XmlOptions,
    source_name: &str,
    out: &mut Vec<Record<'p>>,
) -> Result<()> {
    let mut builder = Builder {
        source_name,
        max_record_bytes: options.max_record_bytes,
        data: &piece.data,
        valid: utf8_prefix(&piece.data),
        names: Names::new(),
        frames: Vec::new(),
        open: 0,
        record_line: 0,
        cost: 0,
        fields_hint: 0,
    };
    // XML allows no control character other than tab and line ends, and
    // neither U+FFFE nor U+FFFF, not even as references; one in a record is
    // an error of that record.
    let forbidden = first_forbidden(&piece.data);
    let check = |span: &Span| match forbidden {
        Some((at, c)) if (span.start..span.end).contains(&at) => {
            let line = Lines::new(span.start, span.line).at(&piece.data, at);
            Err(forbidden_error(source_name, line, c))
        }
        _ => Ok(()),
    };
    for span in &piece.records {
        check(span)?;
        match builder.record(span)? {
            Some(fields) => out.push(Record {
                fields,
                line: span.line,
            }),
            None => {
                return Err(Error::internal(
                    source_name,
                    format!("the XML record at line {} is cut short", span.line),
                ))
            }
        }
    }
    if let Some(span) = &piece.partial {
        check(span)?;
        builder.record(span)?;
    }
    let error = match piece.error.lock() {
        Ok(mut error) => error.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    error.map_or(Ok(()), Err)
}

/// Reads records from a piece's bytes.
struct Builder<'p, 'n> {
    source_name: &'n str,
    max_record_bytes: usize,
    data: &'p [u8],
    /// `data` up to its first byte that is not UTF-8.
    valid: &'p str,
    names: Names<'p>,
    /// Elements open inside the record: `frames[..open]` (kept for reuse).
    frames: Vec<Frame<'p>>,
    open: usize,
    record_line: u64,
    /// Estimated memory of the record's values so far.
    cost: usize,
    /// Most fields a record had so far (capacity for the next: growing the
    /// vector costs more than a few spare slots; at most 64).
    fields_hint: usize,
}

impl<'p> Builder<'p, '_> {
    /// The fields of the record in `span`; `None` when its bytes end before
    /// the record does (a partial record).
    fn record(&mut self, span: &Span) -> Result<Option<Vec<(Key, Value<'p>)>>> {
        let bytes = &self.data[span.start..span.end];
        let mut reader = Reader::from_reader(bytes);
        configure(&mut reader);
        let lines = Lines::new(span.start, span.line);
        self.record_line = span.line;
        self.cost = 0;
        self.open = 0;
        loop {
            let here = Here {
                buf: self.data,
                valid: self.valid,
                lines: &lines,
                start: span.start + reader.buffer_position() as usize,
            };
            let event = reader
                .read_event()
                .map_err(|e| xml_error(self.source_name, here.line(), e))?;
            if let Some(fields) = self.event(event, &here)? {
                return Ok(Some(fields));
            }
            if reader.buffer_position() as usize >= bytes.len() {
                for frame in &mut self.frames[..self.open] {
                    frame.clear();
                }
                self.open = 0;
                return Ok(None);
            }
        }
    }

    /// Handles one event of the record; the record's fields once it ends.
    fn event(
        &mut self,
        event: Event<'p>,
        here: &Here<'p, '_>,
    ) -> Result<Option<Vec<(Key, Value<'p>)>>> {
        match event {
            Event::Start(e) => self.start(&e, here, false),
            Event::Empty(e) => self.start(&e, here, true),
            Event::End(_) => self.end(),
            Event::Text(t) if self.open > 0 => {
                if let Some(at) = cdata_end(&t) {
                    return Err(self.parse_error(here.line_at(at), CDATA_END));
                }
                let text = here.text(&t, self.source_name)?;
                self.frames[self.open - 1].text.push(text);
                Ok(None)
            }
            Event::CData(c) if self.open > 0 => {
                let text = here.text(&c, self.source_name)?;
                self.frames[self.open - 1].text.push(text);
                Ok(None)
            }
            Event::GeneralRef(r) => {
                let resolved = resolve(&r, here, self.source_name)?;
                if self.open > 0 {
                    let text = &mut self.frames[self.open - 1].text;
                    match resolved {
                        Resolved::Char(c) => text.push_decoded(c.encode_utf8(&mut [0; 4])),
                        Resolved::Str(s) => text.push_decoded(s),
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn start(
        &mut self,
        e: &BytesStart<'p>,
        here: &Here<'p, '_>,
        empty: bool,
    ) -> Result<Option<Vec<(Key, Value<'p>)>>> {
        let name = here.text(e.local_name().into_inner(), self.source_name)?;
        if let Some(prefix) = e.name().prefix() {
            self.check_name(prefix.into_inner(), "element prefix", here)?;
        }
        // The record element's name is no key (the reader checked it); a
        // child's is most often the one its parent's frame had at this place
        // in the last record.
        let key = match self.open.checked_sub(1).map(|i| &mut self.frames[i]) {
            None => None,
            Some(parent) => {
                let nth = parent.children;
                // A child or two missing from this element is common.
                let found = parent.seen[nth.min(parent.seen.len())..]
                    .iter()
                    .take(3)
                    .position(|key| **key == *name);
                Some(match found {
                    Some(i) => {
                        parent.children = nth + i + 1;
                        Key::clone(&parent.seen[nth + i])
                    }
                    None => {
                        let source_name = self.source_name;
                        let key = self
                            .names
                            .element(name)
                            .map_err(|why| Error::parse(source_name, here.line(), why))?;
                        if parent.seen.len() < SEEN {
                            let at = nth.min(parent.seen.len());
                            parent.seen.insert(at, Key::clone(&key));
                        }
                        parent.children = nth + 1;
                        key
                    }
                })
            }
        };
        if self.open == self.frames.len() {
            self.frames.push(Frame::default());
        }
        let frame = &mut self.frames[self.open];
        frame.key = key;
        frame.children = 0;
        if self.open == 0 {
            frame.fields.reserve(self.fields_hint);
        }
        self.open += 1;
        self.attributes(e, here)?;
        if empty {
            self.end()
        } else {
            Ok(None)
        }
    }

    /// Adds the attributes of `e` to the innermost frame.
    fn attributes(&mut self, e: &BytesStart<'p>, here: &Here<'p, '_>) -> Result<()> {
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.parse_error(here.line(), format!("{err}")))?;
            if let Some(prefix) = attr.key.prefix() {
                self.check_name(prefix.into_inner(), "attribute prefix", here)?;
            }
            if let Some(why) = attribute_error(e, attr.key.into_inner(), &attr.value) {
                return Err(self.parse_error(here.line(), why));
            }
            if attr.key.as_namespace_binding().is_some() {
                self.check_name(attr.key.local_name().into_inner(), "namespace prefix", here)?;
                continue;
            }
            let name = here.text(attr.key.local_name().into_inner(), self.source_name)?;
            let raw = here.text(&attr.value, self.source_name)?;
            let value = if raw
                .bytes()
                .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
            {
                // References to resolve, whitespace to normalise.
                Cow::Owned(normalized_value(&attr, self.source_name, here.line())?)
            } else {
                raw
            };
            let key = self
                .names
                .attribute(&name)
                .map_err(|why| self.parse_error(here.line(), why))?;
            self.charge(key.len() + value.len())?;
            self.frames[self.open - 1]
                .fields
                .add(key, Value::Untyped(value));
        }
        Ok(())
    }

    /// An end tag (checked by the reader), or the end of an empty element.
    fn end(&mut self) -> Result<Option<Vec<(Key, Value<'p>)>>> {
        if self.open > 1 {
            let frame = &mut self.frames[self.open - 1];
            let value = frame.finish(&self.names);
            let key = frame.key.take();
            self.open -= 1;
            let Some(key) = key else {
                return Err(Error::internal(
                    self.source_name,
                    "an XML element without a name",
                ));
            };
            self.charge(key.len() + value_len(&value))?;
            self.frames[self.open - 1].fields.add(key, value);
            return Ok(None);
        }
        if self.open == 1 {
            self.open = 0;
            let fields = self.frames[0].finish_record(&self.names);
            self.fields_hint = self.fields_hint.max(fields.len()).min(64);
            return Ok(Some(fields));
        }
        Ok(None)
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

    /// An error unless `name` (a prefix, or a namespace binding's name) is
    /// an XML name.
    fn check_name(&self, name: &[u8], what: &str, here: &Here<'p, '_>) -> Result<()> {
        match name_error(name, what) {
            Some(why) => Err(self.parse_error(here.line(), why)),
            None => Ok(()),
        }
    }

    fn parse_error(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::parse(self.source_name, line, reason)
    }
}

/// Bytes of text in a value (for the memory estimate).
fn value_len(value: &Value<'_>) -> usize {
    match value {
        Value::Untyped(s) => s.len(),
        _ => 0,
    }
}
