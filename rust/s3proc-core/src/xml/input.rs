//! The bytes under quick-xml: the document's encoding, line counting, a
//! bound on how much one record may read, and the replay of the prefix that
//! record detection looked at.

use std::io::{self, BufRead, Read};

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

use crate::error::{Error, Result};
use crate::source::transcode;

/// How much of the start the encoding sniffer looks at (the XML declaration
/// must fit in it to be honoured).
const SNIFF: usize = 1024;

/// Opens `read` as UTF-8: a byte order mark is dropped, and UTF-16 (by its
/// mark or its first bytes) or the encoding named by the XML declaration is
/// transcoded while streaming. Returns the reader and the encoding found.
///
/// # Errors
/// [`Error::Parse`] for UTF-32, for a declared encoding that encoding_rs does
/// not know or that contradicts the bytes; [`Error::Io`] for read errors.
pub(super) fn decode(
    mut read: Box<dyn Read + Send>,
    source_name: &str,
) -> Result<(Box<dyn Read + Send>, &'static Encoding)> {
    let mut head = Vec::with_capacity(SNIFF);
    (&mut read)
        .take(SNIFF as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(source_name, e))?;
    let refuse = |reason: String| Err(Error::parse(source_name, 1, reason));
    let (encoding, skip) = match head.as_slice() {
        [0, 0, 0xFE, 0xFF, ..]
        | [0xFF, 0xFE, 0, 0, ..]
        | [0, 0, 0, b'<', ..]
        | [b'<', 0, 0, 0, ..] => {
            return refuse("UTF-32 XML is not supported (convert it to UTF-8)".into())
        }
        [0xEF, 0xBB, 0xBF, ..] => (UTF_8, 3),
        [0xFF, 0xFE, ..] => (UTF_16LE, 2),
        [0xFE, 0xFF, ..] => (UTF_16BE, 2),
        [b'<', 0, b'?', 0, ..] => (UTF_16LE, 0),
        [0, b'<', 0, b'?', ..] => (UTF_16BE, 0),
        _ => match declared_encoding(&head) {
            None => (UTF_8, 0),
            Some(label) => match Encoding::for_label(label) {
                // The bytes so far read as ASCII, so a UTF-16 label lies.
                Some(enc) if enc == UTF_16LE || enc == UTF_16BE => {
                    return refuse(format!(
                        "the XML declaration names encoding {:?} but the bytes are not UTF-16",
                        String::from_utf8_lossy(label)
                    ))
                }
                Some(enc) => (enc, 0),
                None => {
                    return refuse(format!(
                        "unsupported encoding {:?} in the XML declaration",
                        String::from_utf8_lossy(label)
                    ))
                }
            },
        },
    };
    head.drain(..skip);
    if encoding != UTF_16LE && encoding != UTF_16BE {
        let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        if let Some(at) = head.iter().position(|b| !blank(b)) {
            if head[at] != b'<' {
                let line = 1 + memchr::memchr_iter(b'\n', &head[..at]).count() as u64;
                return Err(Error::parse(
                    source_name,
                    line,
                    "not XML: the document does not start with '<'",
                ));
            }
        }
    }
    let joined: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(read));
    Ok(if encoding == UTF_8 {
        (joined, UTF_8)
    } else {
        (transcode(joined, encoding), encoding)
    })
}

/// The `encoding` pseudo-attribute of an XML declaration at the start of
/// `head` (after an optional UTF-8 byte order mark).
fn declared_encoding(head: &[u8]) -> Option<&[u8]> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let decl = head.strip_prefix(b"<?xml")?;
    let decl = &decl[..memchr::memmem::find(decl, b"?>")?];
    let at = memchr::memmem::find(decl, b"encoding")?;
    let rest = decl[at + b"encoding".len()..].trim_ascii_start();
    let rest = rest.strip_prefix(b"=")?.trim_ascii_start();
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let value = &rest[1..];
    Some(&value[..memchr::memchr(quote, value)?])
}

/// A buffered reader that keeps everything it reads (record detection reads
/// the start of the document this way, then [`Input::into_parts`] hands the
/// kept bytes to the [`super::window::Window`] that reads them again), counts
/// lines and refuses to read past a limit.
pub(super) struct Input {
    inner: Box<dyn Read + Send>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    newlines: u64,
    /// Reading fails once `pos` passes this.
    limit_at: usize,
    /// The last failure was the limit, not the source.
    over_limit: bool,
}

impl Input {
    /// Reads `inner`.
    pub(super) fn new(inner: Box<dyn Read + Send>) -> Self {
        Self {
            inner,
            buf: vec![0; 64 * 1024],
            pos: 0,
            end: 0,
            eof: false,
            newlines: 0,
            limit_at: usize::MAX,
            over_limit: false,
        }
    }

    /// Everything read so far, the rest of the source, and whether the
    /// source has ended.
    pub(super) fn into_parts(mut self) -> (Vec<u8>, Box<dyn Read + Send>, bool) {
        self.buf.truncate(self.end);
        (self.buf, self.inner, self.eof)
    }

    /// 1-based line of the next byte to be read.
    pub(super) fn line(&self) -> u64 {
        self.newlines + 1
    }

    /// Bytes handed out so far.
    pub(super) fn consumed(&self) -> u64 {
        self.pos as u64
    }

    /// Allows at most about `bytes` bytes to be read in all.
    pub(super) fn limit(&mut self, bytes: usize) {
        self.limit_at = bytes;
    }

    /// Whether the last read failed on the limit.
    pub(super) fn over_limit(&self) -> bool {
        self.over_limit
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end && !self.eof {
            if self.pos > self.limit_at {
                self.over_limit = true;
                return Err(io::Error::other("size limit reached"));
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            self.eof = n == 0;
            self.end += n;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.pos);
        let taken = &self.buf[self.pos..self.pos + amt];
        self.newlines += memchr::memchr_iter(b'\n', taken).count() as u64;
        self.pos += amt;
    }
}
