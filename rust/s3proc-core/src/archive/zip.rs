//! Zip: through the central directory when the archive can seek, from the
//! local headers in order when it is a stream (a zip inside another archive).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::rc::Rc;

use ::zip::read::{read_zipfile_from_stream, ZipFile};
use ::zip::result::ZipError;
use ::zip::{CompressionMethod, ZipArchive};
use libdeflater::{DecompressionError, Decompressor};

use super::{name_from_bytes, Container, Counting, EntryKind, RawEntry, Walker};
use crate::error::{Error, Result};

const LOCAL: [u8; 4] = *b"PK\x03\x04";
const CENTRAL: [u8; 4] = *b"PK\x01\x02";
const END: [u8; 4] = *b"PK\x05\x06";
const END64: [u8; 4] = *b"PK\x06\x06";
const DESCRIPTOR: [u8; 4] = *b"PK\x07\x08";

fn zip_error(w: &Walker<'_>, entry: Option<&str>, e: ZipError) -> Error {
    match e {
        ZipError::Io(io) => w.fail(entry, &io),
        ZipError::UnsupportedArchive(why) if why.contains("assword") => {
            w.error(entry, "encrypted (not supported)")
        }
        ZipError::CompressionMethodNotSupported(m) => {
            w.error(entry, format!("compression method {m} not supported"))
        }
        other => w.error(entry, other.to_string()),
    }
}

/// The file-type bits of a zip entry's Unix mode (0 when it has none).
fn file_type<R: Read + ?Sized>(file: &ZipFile<'_, R>) -> u32 {
    file.unix_mode().unwrap_or(0) & 0o170_000
}

/// Whether an entry that is not a directory is a regular file.
fn is_regular<R: Read + ?Sized>(file: &ZipFile<'_, R>) -> bool {
    matches!(file_type(file), 0 | 0o100_000)
}

/// What a zip entry is, from its attributes.
fn kind_of<R: Read + ?Sized>(file: &mut ZipFile<'_, R>) -> EntryKind {
    if file.is_dir() {
        return EntryKind::Dir;
    }
    if is_regular(file) {
        return EntryKind::File;
    }
    match file_type(file) {
        0o120_000 => {
            let mut target = Vec::new();
            // The target is the entry's data; a long one is cut for the reason.
            let _ = file.by_ref().take(1024).read_to_end(&mut target);
            EntryKind::Symlink(name_from_bytes(&target))
        }
        0o020_000 => EntryKind::Special("character device".into()),
        0o060_000 => EntryKind::Special("block device".into()),
        0o010_000 => EntryKind::Special("FIFO".into()),
        0o140_000 => EntryKind::Special("socket".into()),
        other => EntryKind::Special(format!("file of type {other:o}")),
    }
}

fn entry_name<R: Read + ?Sized>(file: &ZipFile<'_, R>) -> String {
    match file.name() {
        Ok(n) => n.into_owned(),
        Err(_) => name_from_bytes(file.name_raw()),
    }
}

/// Reports one entry the zip crate opened.
fn one<R: Read + ?Sized>(
    w: &mut Walker<'_>,
    c: &Container<'_>,
    mut file: ZipFile<'_, R>,
) -> Result<()> {
    let name = entry_name(&file);
    let kind = kind_of(&mut file);
    let raw = RawEntry {
        name,
        size: Some(file.size()),
        kind,
        drain: false,
    };
    w.entry(c, raw, &mut file)
}

/// Walks a zip through its central directory.
pub(super) fn central<R: Read + Seek>(
    w: &mut Walker<'_>,
    reader: R,
    parent: &Container<'_>,
) -> Result<()> {
    let consumed = Rc::new(Cell::new(0));
    let c = Container {
        prefix: parent.prefix,
        depth: parent.depth,
        consumed: Rc::clone(&consumed),
    };
    let counted = Counting {
        inner: reader,
        count: consumed,
    };
    let at = (!c.prefix.is_empty()).then_some(c.prefix);
    // The zip crate loads the whole central directory: check its declared
    // size against the limit first, or a small file could claim millions.
    let mut counted = counted;
    if let Some(n) = declared_entries(&mut counted).map_err(|e| w.fail(at, &e))? {
        let left = w.opts.max_entries.saturating_sub(w.count);
        if n > left {
            let why = format!(
                "declares {n} entries, over the limit of {} entries per archive (max_entries)",
                w.opts.max_entries
            );
            return Err(w.error(at, why));
        }
    }
    let mut archive = ZipArchive::new(counted).map_err(|e| zip_error(w, at, e))?;
    if archive.has_duplicate_names() {
        // The zip crate keeps one entry per name: read them all in order
        // from their local headers instead.
        let start = archive.offset();
        let mut counted = archive.into_inner();
        counted
            .seek(io::SeekFrom::Start(start))
            .map_err(|e| w.fail(at, &e))?;
        return local(w, Box::new(counted), &c, false);
    }
    let mut spans = Spans::default();
    for i in 0..archive.len() {
        let name = match archive.name_for_index(i) {
            Some(Ok(n)) => n.into_owned(),
            _ => format!("#{i}"),
        };
        let at = Walker::join(c.prefix, &name);
        let raw = archive
            .by_index_raw(i)
            .map_err(|e| zip_error(w, Some(&at), e))?;
        let start = raw.header_start();
        let end = raw
            .data_start()
            .unwrap_or(start)
            .saturating_add(raw.compressed_size());
        if !spans.claim(start, end) {
            let why = "its bytes overlap another entry's (a zip bomb of overlapping entries)";
            return Err(w.error(Some(&at), why));
        }
        if inflates_whole(&raw) {
            let entry = RawEntry {
                name: entry_name(&raw),
                size: Some(raw.size()),
                kind: EntryKind::File,
                drain: false,
            };
            let mut data = Whole {
                packed: raw.compressed_size(),
                size: raw.size(),
                crc: raw.crc32(),
                raw: Some(raw),
                out: Cursor::new(Vec::new()),
            };
            w.entry(&c, entry, &mut data)?;
            continue;
        }
        drop(raw);
        let file = archive
            .by_index(i)
            .map_err(|e| zip_error(w, Some(&at), e))?;
        if file.encrypted() {
            return Err(w.error(Some(&at), "encrypted (not supported)"));
        }
        one(w, &c, file)?;
    }
    Ok(())
}

/// The entry count a zip's end of central directory record declares (its
/// Zip64 record's when it has one), if the record is found.
fn declared_entries<R: Read + Seek>(r: &mut R) -> io::Result<Option<u64>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let len = r.seek(io::SeekFrom::End(0))?;
    let tail_len = len.min(22 + 0xFFFF);
    r.seek(io::SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    r.seek(io::SeekFrom::Start(0))?;
    let Some(at) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(EOCD))
    else {
        return Ok(None);
    };
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([tail[i], tail[i + 1]]));
    let n = u16_at(at + 10);
    // Zip64: a locator just before, pointing at a record with 64-bit counts.
    if n == 0xFFFF && at >= 20 && tail[at - 20..].starts_with(b"PK\x06\x07") {
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&tail[at - 12..at - 4]);
        let mut record = [0u8; 40];
        r.seek(io::SeekFrom::Start(u64::from_le_bytes(offset)))?;
        let read = r.read_exact(&mut record);
        r.seek(io::SeekFrom::Start(0))?;
        if read.is_ok() && record.starts_with(b"PK\x06\x06") {
            let mut count = [0u8; 8];
            count.copy_from_slice(&record[32..40]);
            return Ok(Some(u64::from_le_bytes(count)));
        }
    }
    Ok(Some(n))
}

/// The byte ranges of the entries read so far, local header to end of data.
/// Entries never share bytes in a zip that was written, only in one made
/// to inflate the same data many times over.
#[derive(Default)]
struct Spans(BTreeMap<u64, u64>);

impl Spans {
    /// Records `start..end` (at least its first byte); false when it
    /// overlaps a range recorded before.
    fn claim(&mut self, start: u64, end: u64) -> bool {
        let end = end.max(start + 1);
        let before = self.0.range(..=start).next_back();
        let after = self.0.range(start..).next();
        if before.is_some_and(|(_, &e)| e > start) || after.is_some_and(|(&s, _)| s < end) {
            return false;
        }
        self.0.insert(start, end);
        true
    }
}

/// Deflated entries up to this size (both ways) are inflated in one call.
const WHOLE_BYTES: u64 = 8 << 20;

/// Whether `file`, opened raw, is a regular file to inflate in one call.
fn inflates_whole<R: Read + ?Sized>(file: &ZipFile<'_, R>) -> bool {
    file.compression() == CompressionMethod::Deflated
        && !file.encrypted()
        && !file.is_dir()
        && is_regular(file)
        && file.size() <= WHOLE_BYTES
        && file.compressed_size() <= WHOLE_BYTES
}

/// A small deflated entry, inflated by libdeflate in one call at its first
/// read (about twice a stream's speed) and checked against its CRC-32. Its
/// declared size bounds the output: more data is an error, less is a
/// truncated entry (the caller checks the size).
struct Whole<R> {
    raw: Option<R>,
    packed: u64,
    size: u64,
    crc: u32,
    out: Cursor<Vec<u8>>,
}

impl<R: Read> Read for Whole<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(raw) = self.raw.take() {
            let corrupt = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
            let mut packed = Vec::with_capacity(self.packed as usize);
            raw.take(self.packed).read_to_end(&mut packed)?;
            if (packed.len() as u64) < self.packed {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated: the archive ends inside the entry",
                ));
            }
            let mut out = vec![0u8; self.size as usize];
            let n = Decompressor::new()
                .deflate_decompress(&packed, &mut out)
                .map_err(|e| match e {
                    DecompressionError::InsufficientSpace => {
                        corrupt("corrupt: the entry inflates past its declared size")
                    }
                    DecompressionError::BadData => corrupt("corrupt: invalid deflate data"),
                })?;
            out.truncate(n);
            if crc32fast::hash(&out) != self.crc {
                return Err(corrupt("corrupt: invalid checksum (CRC-32)"));
            }
            self.out = Cursor::new(out);
        }
        self.out.read(buf)
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Whether the extra field holds a zip64 record (sizes in 8 bytes).
fn has_zip64(extra: &[u8]) -> bool {
    let mut i = 0;
    while i + 4 <= extra.len() {
        if u16_at(extra, i) == 1 {
            return true;
        }
        i += 4 + usize::from(u16_at(extra, i + 2));
    }
    false
}

/// Walks a zip from its local headers, in order (it cannot seek).
///
/// An entry whose sizes come after its data (a data descriptor) is read to
/// the end of its deflate stream, then checked against the descriptor. With
/// another method its end cannot be found: when it is the zip's first entry
/// the whole zip is read into memory (up to `max_nested_zip_bytes`) and
/// walked through its central directory instead; later on, it is an error.
pub(super) fn stream(w: &mut Walker<'_>, r: Box<dyn Read + '_>, c: &Container<'_>) -> Result<()> {
    local(w, r, c, true)
}

/// [`stream`], and whether it may fall back to the central directory.
fn local(
    w: &mut Walker<'_>,
    r: Box<dyn Read + '_>,
    c: &Container<'_>,
    central_ok: bool,
) -> Result<()> {
    let mut input = BufReader::with_capacity(64 << 10, r);
    let at = (!c.prefix.is_empty()).then_some(c.prefix);
    let mut first = true;
    loop {
        let mut sig = [0u8; 4];
        input.read_exact(&mut sig).map_err(|e| w.fail(at, &e))?;
        match sig {
            LOCAL => {}
            CENTRAL | END | END64 => return Ok(()),
            _ => return Err(w.error(at, "corrupt: a local file header was expected")),
        }
        let mut header = vec![0u8; 30];
        header[..4].copy_from_slice(&sig);
        input
            .read_exact(&mut header[4..])
            .map_err(|e| w.fail(at, &e))?;
        let flags = u16_at(&header, 6);
        let method = u16_at(&header, 8);
        let name_len = usize::from(u16_at(&header, 26));
        let extra_len = usize::from(u16_at(&header, 28));
        let mut rest = vec![0u8; name_len + extra_len];
        input.read_exact(&mut rest).map_err(|e| w.fail(at, &e))?;
        let name = name_from_bytes(&rest[..name_len]);
        let full = Walker::join(c.prefix, &name);
        if flags & 1 != 0 {
            return Err(w.error(Some(&full), "encrypted (not supported)"));
        }
        header.extend_from_slice(&rest);
        if flags & 8 == 0 {
            let mut chained = Cursor::new(header).chain(&mut input);
            let opened = read_zipfile_from_stream(&mut chained);
            match opened {
                Ok(Some(file)) => one(w, c, file)?,
                Ok(None) => return Err(w.error(Some(&full), "corrupt local header")),
                Err(e) => return Err(zip_error(w, Some(&full), e)),
            };
        } else if method == 8 {
            described(w, c, &mut input, name, has_zip64(&rest[name_len..]))?;
        } else if first && central_ok {
            // The zips held by the levels around this one count too.
            let bound = w.opts.max_nested_zip_bytes.saturating_sub(w.held);
            let mut whole = header;
            let room = bound.saturating_sub(whole.len() as u64).saturating_add(1);
            input
                .by_ref()
                .take(room)
                .read_to_end(&mut whole)
                .map_err(|e| w.fail(at, &e))?;
            if whole.len() as u64 > bound {
                return Err(w.error(
                    at,
                    format!(
                        "a zip nested in a stream whose entries cannot be read in order \
                         is held in memory, and this one (with those that hold it) is over \
                         the limit of {} bytes (max_nested_zip_bytes)",
                        w.opts.max_nested_zip_bytes
                    ),
                ));
            }
            let size = whole.len() as u64;
            w.held += size;
            let walked = central(w, Cursor::new(whole), c);
            w.held -= size;
            return walked;
        } else {
            return Err(w.error(
                Some(&full),
                format!(
                    "compression method {method} with sizes after the data cannot be read \
                     from a stream past the zip's first entry"
                ),
            ));
        }
        first = false;
    }
}

/// Counts and checksums what passes through it.
struct Checked<R> {
    inner: R,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A deflated entry whose CRC and sizes follow its data.
fn described<R: BufRead>(
    w: &mut Walker<'_>,
    c: &Container<'_>,
    input: &mut R,
    name: String,
    zip64: bool,
) -> Result<()> {
    let full = Walker::join(c.prefix, &name);
    let kind = if name.ends_with('/') {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    let mut data = Checked {
        inner: flate2::bufread::DeflateDecoder::new(&mut *input),
        crc: crc32fast::Hasher::new(),
        size: 0,
    };
    let raw = RawEntry {
        name,
        size: None,
        kind,
        drain: true,
    };
    w.entry(c, raw, &mut data)?;
    let (crc, size) = (data.crc.finalize(), data.size);
    let mut d = [0u8; 24];
    let len = if zip64 { 20 } else { 12 };
    input
        .read_exact(&mut d[..4])
        .map_err(|e| w.fail(Some(&full), &e))?;
    // The descriptor's own signature is optional.
    let signed = d[..4] == DESCRIPTOR;
    let end = if signed { len + 4 } else { len };
    input
        .read_exact(&mut d[4..end])
        .map_err(|e| w.fail(Some(&full), &e))?;
    let d = if signed { &d[4..] } else { &d[..] };
    let stored = if zip64 {
        u64::from_le_bytes([d[12], d[13], d[14], d[15], d[16], d[17], d[18], d[19]])
    } else {
        u64::from(u32_at(d, 8))
    };
    let want = if zip64 { size } else { size & 0xffff_ffff };
    if u32_at(d, 0) != crc || stored != want {
        return Err(w.error(
            Some(&full),
            "corrupt: the data does not match its data descriptor (CRC or size)",
        ));
    }
    Ok(())
}
