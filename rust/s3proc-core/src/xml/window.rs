//! The bytes of the main pass: a window over the input that quick-xml reads
//! as a slice (events borrow from it, nothing is copied), moved on and
//! refilled between records.

use std::cell::Cell;
use std::io::{self, Read};

/// Bytes read from the source at a time.
const CHUNK: usize = 1 << 20;

/// Line numbers of positions in the window, counted as they are asked for
/// (in cells: the parser asks while it borrows the window's bytes).
pub(super) struct Lines {
    pos: Cell<usize>,
    line: Cell<u64>,
}

impl Lines {
    /// Lines from `buf[pos]`, which is on line `line`.
    pub(super) fn new(pos: usize, line: u64) -> Self {
        Self {
            pos: Cell::new(pos),
            line: Cell::new(line),
        }
    }

    /// 1-based line of `buf[pos]` (`buf` is the window's buffer).
    pub(super) fn at(&self, buf: &[u8], pos: usize) -> u64 {
        let (from, line) = (self.pos.get(), self.line.get());
        let line = if pos >= from {
            line + memchr::memchr_iter(b'\n', &buf[from..pos]).count() as u64
        } else {
            line - memchr::memchr_iter(b'\n', &buf[pos..from]).count() as u64
        };
        self.pos.set(pos);
        self.line.set(line);
        line
    }
}

/// A buffer of the input from the first byte not yet done with.
pub(super) struct Window {
    inner: Box<dyn Read + Send>,
    /// The input from `buf[safe]` to `buf[end]`.
    pub(super) buf: Vec<u8>,
    /// The reader's state holds everything before this.
    pub(super) safe: usize,
    pub(super) end: usize,
    /// The source has no more bytes.
    pub(super) eof: bool,
    pub(super) lines: Lines,
}

impl Window {
    /// A window holding `kept` (the start of the input, already read), then
    /// the rest of `inner`.
    pub(super) fn new(kept: Vec<u8>, inner: Box<dyn Read + Send>, eof: bool) -> Self {
        let end = kept.len();
        let mut buf = kept;
        buf.resize(end.max(CHUNK), 0);
        Self {
            inner,
            buf,
            safe: 0,
            end,
            eof,
            lines: Lines::new(0, 1),
        }
    }

    /// Reads more input after `end`, first dropping what is before `safe`
    /// if room is needed. Returns `false`, reading nothing, when the bytes
    /// from `safe` on are already more than `max` and the buffer is full.
    ///
    /// # Errors
    /// Read errors of the source.
    pub(super) fn refill(&mut self, max: usize) -> io::Result<bool> {
        if self.end == self.buf.len() && self.safe > 0 {
            self.lines.at(&self.buf, self.safe);
            self.buf.copy_within(self.safe..self.end, 0);
            self.end -= self.safe;
            self.lines.pos.set(self.lines.pos.get() - self.safe);
            self.safe = 0;
            if self.buf.len() > CHUNK && self.end < CHUNK / 2 {
                // A large record has passed: give its room back.
                self.buf.truncate(CHUNK);
                self.buf.shrink_to_fit();
            }
        }
        if self.end == self.buf.len() {
            if self.end > max {
                return Ok(false);
            }
            let grown = (self.buf.len() * 2).min(max + CHUNK);
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.eof = n == 0;
        self.end += n;
        Ok(true)
    }
}
