//! Cutting a byte stream into record-aligned pieces that can be parsed
//! independently, on several threads.

use std::io::Read;

use csv_core::{ReadRecordResult, Reader};

use super::records::{csv_reader, find_unescaped};
use super::{Dialect, Escape};
use crate::error::{Error, Result};

/// A piece of input that starts and ends on record boundaries.
#[derive(Debug)]
pub struct RawChunk {
    /// The bytes; the last one is the record terminator.
    pub data: Vec<u8>,
    /// 0-based position of this piece in the stream.
    pub index: u64,
    /// 1-based line number of the first byte.
    pub first_line: u64,
}

impl RawChunk {
    /// The 1-based line of byte `offset` of this piece.
    pub fn line_at(&self, offset: usize, terminator: u8) -> u64 {
        // A record's recorded start may sit on the terminators that precede it.
        let mut at = offset.min(self.data.len());
        while at < self.data.len() && matches!(self.data[at], b'\r' | b'\n') {
            at += 1;
        }
        self.first_line + count_byte(&self.data[..at], terminator)
    }
}

/// How record boundaries are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMode {
    /// Quote parity: a terminator outside quotes ends a record. Exact for
    /// RFC 4180 data and fast; the parser checks every piece and asks for
    /// [`SplitMode::Serial`] when a stray quote fooled it.
    Parity,
    /// Full CSV parsing with csv-core: always exact, slower.
    Serial,
}

/// Reads a stream and hands out record-aligned pieces of about `target` bytes.
pub struct Splitter {
    reader: Box<dyn Read + Send>,
    name: String,
    dialect: Dialect,
    mode: SplitMode,
    buf: Vec<u8>,
    /// Bytes of `buf` already examined for boundaries.
    scanned: usize,
    /// Quote parity at `scanned` (parity mode).
    in_quote: bool,
    /// End of the last complete record in `buf` (0: none yet).
    boundary: usize,
    serial: Reader,
    eof: bool,
    target: usize,
    want: usize,
    max_record: usize,
    index: u64,
    line: u64,
}

impl Splitter {
    /// A splitter over `reader` cutting pieces of about `target` bytes; a
    /// record longer than `max_record` bytes is an error.
    pub fn new(
        reader: Box<dyn Read + Send>,
        name: &str,
        dialect: Dialect,
        mode: SplitMode,
        target: usize,
        max_record: usize,
    ) -> Self {
        Self {
            reader,
            name: name.to_owned(),
            serial: csv_reader(&dialect),
            dialect,
            mode,
            buf: Vec::new(),
            scanned: 0,
            in_quote: false,
            boundary: 0,
            eof: false,
            target,
            want: target,
            max_record: max_record.max(target),
            index: 0,
            line: 1,
        }
    }

    /// The next piece, or `None` at the end of the stream.
    ///
    /// # Errors
    /// I/O errors, a record longer than the limit, and (serial mode) a
    /// quoted field left open at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        loop {
            self.fill()?;
            self.scan();
            let cut = if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                if self.buf.last() != Some(&self.dialect.terminator) {
                    self.buf.push(self.dialect.terminator);
                    self.scan();
                }
                if self.mode == SplitMode::Serial && self.serial_has_open_record() {
                    let line =
                        self.line + count_byte(&self.buf[..self.boundary], self.dialect.terminator);
                    return Err(Error::parse(
                        &self.name,
                        line,
                        "quoted field is never closed (unterminated quote)",
                    ));
                }
                self.buf.len()
            } else if self.boundary > 0 {
                self.boundary
            } else if self.buf.len() >= self.max_record {
                return Err(Error::parse(
                    &self.name,
                    self.line,
                    format!(
                        "a record is longer than {} bytes (max_record_bytes)",
                        self.max_record
                    ),
                ));
            } else {
                // One record is larger than a piece: read further.
                self.want = (self.want * 2).min(self.max_record);
                continue;
            };
            let mut rest = Vec::with_capacity(self.target.max(self.buf.len() - cut) + 64);
            rest.extend_from_slice(&self.buf[cut..]);
            let mut data = std::mem::replace(&mut self.buf, rest);
            data.truncate(cut);
            self.scanned -= cut;
            self.boundary = 0;
            self.want = self.target;
            let chunk = RawChunk {
                index: self.index,
                first_line: self.line,
                data,
            };
            self.index += 1;
            self.line += count_byte(&chunk.data, self.dialect.terminator);
            return Ok(Some(chunk));
        }
    }

    /// At the end of the input: whether csv-core still holds a record that
    /// no terminator closed (the data ends inside a quoted field).
    fn serial_has_open_record(&mut self) -> bool {
        if self.dialect.escape == Escape::Backslash || self.dialect.quote.is_none() {
            return false;
        }
        let (res, _, _, _) = self
            .serial
            .read_record(&[], &mut [0u8; 4096], &mut [0usize; 256]);
        res == ReadRecordResult::Record
    }

    fn fill(&mut self) -> Result<()> {
        if self.eof || self.buf.len() >= self.want {
            return Ok(());
        }
        let want = self.want - self.buf.len();
        self.buf.reserve_exact(want);
        // read_to_end reads into the spare capacity without zeroing it first.
        let n = (&mut self.reader)
            .take(want as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| Error::io(&self.name, e))?;
        self.eof = n < want;
        Ok(())
    }

    /// Advances `scanned` to the end of `buf`, updating `boundary`.
    fn scan(&mut self) {
        let t = self.dialect.terminator;
        let buf = &self.buf;
        match (self.mode, self.dialect.escape, self.dialect.quote) {
            (_, Escape::Backslash, _) => {
                // From the start of the unfinished record, so that a backslash
                // just before the previous read's end still escapes.
                let mut from = self.boundary;
                while let Some(p) = find_unescaped(buf, from, t) {
                    self.boundary = p + 1;
                    from = p + 1;
                }
            }
            (SplitMode::Parity, Escape::Quoted, Some(q)) => {
                let mut i = self.scanned;
                while let Some(p) = memchr::memchr2(q, t, &buf[i..]) {
                    let p = i + p;
                    if buf[p] == q {
                        self.in_quote = !self.in_quote;
                    } else if !self.in_quote {
                        self.boundary = p + 1;
                    }
                    i = p + 1;
                }
            }
            (_, Escape::Quoted, None) => {
                if let Some(p) = memchr::memrchr(t, &buf[self.scanned..]) {
                    self.boundary = self.scanned + p + 1;
                }
            }
            (SplitMode::Serial, Escape::Quoted, Some(_)) => {
                let mut out = [0u8; 4096];
                let mut ends = [0usize; 256];
                let mut i = self.scanned;
                while i < buf.len() {
                    let (res, nin, _, _) = self.serial.read_record(&buf[i..], &mut out, &mut ends);
                    i += nin;
                    if res == ReadRecordResult::Record {
                        self.boundary = i;
                    }
                }
                // csv-core may end a CRLF record before its '\n': keep the
                // boundary after the whole terminator.
                if self.boundary < buf.len() && buf[self.boundary] == b'\n' && t == b'\n' {
                    self.boundary += 1;
                }
            }
        }
        self.scanned = buf.len();
    }
}

/// How many times `byte` occurs in `data`.
pub fn count_byte(data: &[u8], byte: u8) -> u64 {
    memchr::memchr_iter(byte, data).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], mode: SplitMode, target: usize) -> Result<Vec<Vec<u8>>> {
        let dialect = Dialect {
            delimiter: b',',
            quote: Some(b'"'),
            escape: Escape::Quoted,
            terminator: b'\n',
            header: false,
        };
        split_with(input, dialect, mode, target)
    }

    fn split_with(
        input: &[u8],
        dialect: Dialect,
        mode: SplitMode,
        target: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut s = Splitter::new(
            Box::new(std::io::Cursor::new(input.to_vec())),
            "t",
            dialect,
            mode,
            target,
            1 << 20,
        );
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk()? {
            out.push(c.data);
        }
        Ok(out)
    }

    #[test]
    fn cuts_only_between_records() {
        let input = b"a,\"x\ny\"\nb,\"\"\"\n\"\nc,d";
        for mode in [SplitMode::Parity, SplitMode::Serial] {
            for target in 1..12 {
                let got = pieces(input, mode, target).expect("splits");
                assert_eq!(got.concat(), b"a,\"x\ny\"\nb,\"\"\"\n\"\nc,d\n");
                for p in &got {
                    assert!(p.ends_with(b"\n"));
                    assert!(
                        p.iter().filter(|&&b| b == b'"').count() % 2 == 0,
                        "{mode:?} {target}"
                    );
                }
            }
        }
    }

    #[test]
    fn escaped_newline_across_reads_stays_in_its_record() {
        let dialect = Dialect {
            delimiter: b'\t',
            quote: None,
            escape: Escape::Backslash,
            terminator: b'\n',
            header: false,
        };
        for target in 1..8 {
            let input = b"a\\\nb\nc\n";
            let got =
                split_with(input, dialect.clone(), SplitMode::Parity, target).expect("splits");
            assert_eq!(got.concat(), input);
            for piece in &got {
                assert!(
                    !piece.ends_with(b"\\\n"),
                    "cut after an escaped newline (target {target})"
                );
            }
        }
    }

    #[test]
    fn serial_reports_open_quote() {
        let err = pieces(b"a,b\nc,\"d\n", SplitMode::Serial, 4).expect_err("open quote");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
