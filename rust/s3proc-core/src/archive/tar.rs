//! Tar (ustar, GNU with long names and sparse files, PAX), streamed: an
//! entry's bytes are read from the archive as they are asked for, and the
//! holes of a sparse file are produced as zeros while reading.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use ::tar::{Archive, EntryType};

use super::{limit, name_from_bytes, Container, EntryKind, RawEntry, Walker};
use crate::error::Result;

/// The most bytes read between two entries: headers, GNU long names and
/// PAX records, which the tar crate holds in memory whole.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Fails a read past the bytes left, when there is a budget.
struct Metered<R> {
    inner: R,
    left: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(left) = self.left.get() {
            let Some(rest) = left.checked_sub(n as u64) else {
                return Err(limit(format!(
                    "a tar header (a long name or PAX record) over {MAX_HEADER_BYTES} bytes"
                )));
            };
            self.left.set(Some(rest));
        }
        Ok(n)
    }
}

/// Walks a tar whose (decompressed) bytes `r` gives.
pub(super) fn walk(w: &mut Walker<'_>, r: Box<dyn Read + '_>, c: &Container<'_>) -> Result<()> {
    let at = (!c.prefix.is_empty()).then_some(c.prefix);
    let left = Rc::new(Cell::new(Some(MAX_HEADER_BYTES)));
    let mut archive = Archive::new(Metered {
        inner: r,
        left: Rc::clone(&left),
    });
    let mut entries = archive.entries().map_err(|e| w.fail(at, &e))?;
    let mut last = String::new();
    loop {
        left.set(Some(MAX_HEADER_BYTES));
        let Some(entry) = entries.next() else {
            return Ok(());
        };
        left.set(None);
        let mut entry = entry.map_err(|e| {
            if last.is_empty() {
                w.fail(at, &e)
            } else {
                w.error(at, format!("after entry {last:?}: {}", w.fail(None, &e)))
            }
        })?;
        let name = name_from_bytes(&entry.path_bytes());
        let link = entry
            .link_name_bytes()
            .map(|l| name_from_bytes(&l))
            .unwrap_or_default();
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink(link),
            EntryType::Link => EntryKind::HardLink(link),
            EntryType::Char => EntryKind::Special("character device".into()),
            EntryType::Block => EntryKind::Special("block device".into()),
            EntryType::Fifo => EntryKind::Special("FIFO".into()),
            // Metadata for the entries after it, not an entry.
            EntryType::XGlobalHeader => continue,
            other => EntryKind::Special(format!("tar entry of type {:?}", other.as_byte() as char)),
        };
        let raw = RawEntry {
            name: name.clone(),
            size: Some(entry.size()),
            kind,
            drain: true,
        };
        w.entry(c, raw, &mut entry)?;
        last = name;
    }
}
