//! Tar (ustar, GNU with long names and sparse files, PAX), streamed: an
//! entry's bytes are read from the archive as they are asked for, and the
//! holes of a sparse file are produced as zeros while reading.

use std::io::Read;

use ::tar::{Archive, EntryType};

use super::{name_from_bytes, Container, EntryKind, RawEntry, Walker};
use crate::error::Result;

/// Walks a tar whose (decompressed) bytes `r` gives.
pub(super) fn walk(w: &mut Walker<'_>, r: Box<dyn Read + '_>, c: &Container<'_>) -> Result<()> {
    let at = (!c.prefix.is_empty()).then_some(c.prefix);
    let mut archive = Archive::new(r);
    let entries = archive.entries().map_err(|e| w.fail(at, &e))?;
    let mut last = String::new();
    for entry in entries {
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
            drain: false,
        };
        w.entry(c, raw, &mut entry)?;
        last = name;
    }
    Ok(())
}
