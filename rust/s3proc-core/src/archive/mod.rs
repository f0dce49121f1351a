//! Archives (zip, tar, compressed tar) read as a stream of entries, nested
//! archives opened in turn, hostile names and bombs kept in check.
//!
//! [`walk`] visits every entry of an archive in archive order, recursing into
//! entries that are archives themselves (a zip in a tar.gz, a `.gz` in a
//! zip): their entries are named `outer-entry/inner-entry`. Nothing is ever
//! extracted to disk and nothing is held in memory but a zip that is nested
//! in a stream and cannot be read from its local headers (bounded by
//! [`ArchiveOptions::max_nested_zip_bytes`]).
//!
//! [`ArchiveEntries`] runs [`walk`] on a producer thread and hands the
//! entries and their bytes out through a bounded channel, for callers (the
//! Python binding, the converter) that pull rather than get called.
//!
//! # Names
//! An entry's name is normalised inside the archive's own namespace:
//! backslashes become `/`, a drive letter (`C:`) and leading `/` are dropped,
//! `.` and empty segments are dropped, `..` removes the previous segment and
//! is dropped at the root (`../../etc/passwd` → `etc/passwd`). When the name
//! changed, [`EntryMeta::note`] says so. A name with a control character (NUL
//! included), longer than an S3 key (1024 bytes) or with nothing left once
//! normalised is skipped, with the reason.
//! Of two entries with the same name, the second is renamed with `~2` before
//! its extension (`q1/orders.csv` → `q1/orders~2.csv`), the third `~3`, and
//! so on (the first unused suffix), with a note.
//!
//! # Limits
//! See [`ArchiveOptions`]: every limit is checked on bytes actually produced
//! while reading, so a header that lies about sizes cannot bypass it, and on
//! the bytes of entries the visitor skips as well. The metadata of one tar
//! entry (GNU long names, PAX records) is at most 1 MiB.

mod entries;
mod tar;
mod zip;

pub use entries::{ArchiveEntries, EntryReader, EntrySource};

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{self, Cursor, Read};
use std::rc::Rc;

use crate::compress::Codec;
use crate::error::{Error, Result};
use crate::source::Source;

/// Limits of one archive (the outermost one and everything nested in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Uncompressed bytes produced by all the entries, at every nesting
    /// level, together (default 1 TiB).
    pub max_total_bytes: u64,
    /// Bytes an entry may produce per byte its container gave for it
    /// (default 1000). Enforced once an entry has produced more than
    /// `max_ratio × 4 KiB`, so small files that compress well pass.
    pub max_ratio: u64,
    /// Entries, at every level, directories and skipped ones included
    /// (default 1,000,000).
    pub max_entries: u64,
    /// Archives nested in one another, the outermost one counting as 1
    /// (default 8).
    pub max_depth: u32,
    /// Most bytes of zips held in memory at once (a zip nested in a stream
    /// that cannot be read from its local headers, and the ones nested in
    /// it; default 256 MiB).
    pub max_nested_zip_bytes: u64,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            max_total_bytes: 1 << 40,
            max_ratio: 1000,
            max_entries: 1_000_000,
            max_depth: 8,
            max_nested_zip_bytes: 256 << 20,
        }
    }
}

/// The bytes below which [`ArchiveOptions::max_ratio`] is not enforced,
/// divided by the ratio: a 4 KiB entry may hold 4 MB at 1000:1.
const RATIO_GRACE: u64 = 4096;

/// How much of an entry is read to recognise an archive (a tar header).
const HEAD_BYTES: usize = 512;

/// What an archive (or an entry that is one) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A zip (also a `.jar` or a `.whl`).
    Zip,
    /// A tar (ustar, GNU, PAX or old-style).
    Tar,
    /// A tar inside a compressed stream.
    CompressedTar(Codec),
    /// One compressed file (only as an entry of an archive): it holds one
    /// entry, named after it without the compression extension.
    Compressed(Codec),
}

impl Format {
    /// A short name: `zip`, `tar`, `tar.gz`, `gz`...
    pub fn name(self) -> String {
        match self {
            Format::Zip => "zip".into(),
            Format::Tar => "tar".into(),
            Format::CompressedTar(c) => format!("tar.{}", c.extension()),
            Format::Compressed(c) => c.extension().into(),
        }
    }

    /// Whether this is a tar, compressed or not.
    pub fn is_tar(self) -> bool {
        matches!(self, Format::Tar | Format::CompressedTar(_))
    }

    /// The format a file name announces, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let ends = |exts: &[&str]| exts.iter().any(|e| n.ends_with(e));
        Some(if ends(&[".zip", ".jar", ".whl"]) {
            Format::Zip
        } else if ends(&[".tar"]) {
            Format::Tar
        } else if ends(&[".tar.gz", ".tgz"]) {
            Format::CompressedTar(Codec::Gzip)
        } else if ends(&[".tar.bz2", ".tbz2", ".tbz"]) {
            Format::CompressedTar(Codec::Bzip2)
        } else if ends(&[".tar.xz", ".txz"]) {
            Format::CompressedTar(Codec::Xz)
        } else if ends(&[".tar.zst", ".tzst"]) {
            Format::CompressedTar(Codec::Zstd)
        } else if ends(&[".gz"]) {
            Format::Compressed(Codec::Gzip)
        } else if ends(&[".bz2"]) {
            Format::Compressed(Codec::Bzip2)
        } else if ends(&[".xz"]) {
            Format::Compressed(Codec::Xz)
        } else if ends(&[".zst"]) {
            Format::Compressed(Codec::Zstd)
        } else {
            return None;
        })
    }
}

/// Whether `head` starts a zip: a local file header, or the end record of
/// an empty zip.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

/// Whether `head` starts with a block of zeros: a tar's end-of-archive
/// marker, all that an empty tar holds.
fn is_tar_end(head: &[u8]) -> bool {
    head.get(..512)
        .is_some_and(|end| end.iter().all(|&b| b == 0))
}

/// Whether `head` is a tar header: the ustar magic at offset 257, or an
/// old-style header whose checksum is right.
pub fn is_tar(head: &[u8]) -> bool {
    let Some(block) = head.get(..512) else {
        return false;
    };
    if &block[257..262] == b"ustar" {
        return true;
    }
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(u8::is_ascii_digit)
        .collect();
    let Some(stored) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| u32::from_str_radix(d, 8).ok())
    else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

/// What the head of a stream showed.
enum Sniffed<'a> {
    /// An archive, and a reader of its data (decompressed for a compressed
    /// tar or file) from its first byte.
    Archive(Format, Box<dyn Read + 'a>),
    /// A plain file, and a reader of it from its first byte.
    Plain(Box<dyn Read + 'a>),
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn peek<'a>(mut r: Box<dyn Read + 'a>) -> io::Result<(Vec<u8>, Box<dyn Read + 'a>)> {
    let mut head = vec![0u8; HEAD_BYTES];
    let n = read_full(&mut r, &mut head)?;
    head.truncate(n);
    let again = Box::new(Cursor::new(head.clone()).chain(r));
    Ok((head, again))
}

/// The most bytes a decoder reads at once from an archive. What it has read
/// and not yet decoded counts as the current entry's compressed bytes, so an
/// entry whose bytes all came in one read looks as if it had none: with
/// 16 KiB and the default limit it is stopped past 256:1 (4 MB), not at the
/// 16:1 that the decoder's 256 KiB reads allowed (a CSV compresses 30:1).
const SIP: usize = 16 << 10;

/// Hands out at most [`SIP`] bytes per read.
struct Sips<R>(R);

impl<R: Read> Read for Sips<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(SIP);
        self.0.read(&mut buf[..n])
    }
}

/// Recognises an archive by its magic bytes, then by `name`. A name that
/// announces an archive the bytes do not hold is an error (`Err(reason)`
/// inside `Ok`), never a guess. A `nested` entry is what it would be if
/// dropped on its own: opened only when its name says an archive (a
/// `.docx`, `.npz` or `.svgz` is a file, and so is a single compressed
/// file such as `orders.csv.gz` or `app.log.gz`, its bytes as they are:
/// whoever ships it converts or uploads it as it would the file alone).
fn sniff<'a>(
    r: Box<dyn Read + 'a>,
    name: &str,
    nested: bool,
) -> io::Result<std::result::Result<Sniffed<'a>, String>> {
    let by_name = Format::from_name(name);
    if nested && matches!(by_name, None | Some(Format::Compressed(_))) {
        return Ok(Ok(Sniffed::Plain(r)));
    }
    let tar_named = by_name.is_some_and(Format::is_tar);
    let (head, r) = peek(r)?;
    if is_zip(&head) {
        return Ok(Ok(Sniffed::Archive(Format::Zip, r)));
    }
    if is_tar(&head) || (tar_named && is_tar_end(&head)) {
        return Ok(Ok(Sniffed::Archive(Format::Tar, r)));
    }
    if let Some(codec) = Codec::from_magic(&head) {
        let (inner, decoded) = peek(Box::new(codec.decode(Sips(r), name)))?;
        if is_tar(&inner) || (tar_named && is_tar_end(&inner)) {
            return Ok(Ok(Sniffed::Archive(Format::CompressedTar(codec), decoded)));
        }
        if let Some(f @ (Format::Zip | Format::Tar | Format::CompressedTar(_))) = by_name {
            return Ok(Err(format!(
                "named like a {} but it is a {} stream that does not hold one",
                f.name(),
                codec.name()
            )));
        }
        return Ok(Ok(Sniffed::Archive(Format::Compressed(codec), decoded)));
    }
    match by_name {
        Some(f @ (Format::Zip | Format::Tar | Format::CompressedTar(_))) => Ok(Err(format!(
            "named like a {} but its bytes are not one",
            f.name()
        ))),
        _ => Ok(Ok(Sniffed::Plain(r))),
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its bytes can be read.
    File,
    /// An archive: its entries follow, named under this one's name.
    Archive(Format),
    /// A directory (skipped: nothing to read).
    Dir,
    /// A symbolic link to the target (never followed; skipped).
    Symlink(String),
    /// A hard link to the target (never followed; skipped).
    HardLink(String),
    /// A device, a FIFO or an unknown type (skipped).
    Special(String),
    /// An entry whose name cannot be used (skipped); the reason.
    BadName(String),
}

impl EntryKind {
    /// Why the entry is skipped; `None` for a file or an archive.
    pub fn skip_reason(&self) -> Option<String> {
        match self {
            EntryKind::File | EntryKind::Archive(_) => None,
            EntryKind::Dir => Some("directory".into()),
            EntryKind::Symlink(t) => Some(format!("symbolic link to {t:?}, not followed")),
            EntryKind::HardLink(t) => Some(format!("hard link to {t:?}, not followed")),
            EntryKind::Special(what) => Some(format!("{what}, not a regular file")),
            EntryKind::BadName(why) => Some(why.clone()),
        }
    }
}

/// One entry as [`walk`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Position in the walk (0-based, nested entries included): the same
    /// archive always gives the same numbers.
    pub index: u64,
    /// The normalised, unique path (`outer-entry/inner-entry` when nested).
    pub name: String,
    /// Uncompressed size, when the archive says it (a claim, not checked
    /// before reading).
    pub size: Option<u64>,
    /// What the entry is.
    pub kind: EntryKind,
    /// How the name was changed (normalised, renamed as a duplicate).
    pub note: Option<String>,
}

/// An entry as a container (zip, tar) describes it, before normalisation.
struct RawEntry {
    name: String,
    size: Option<u64>,
    kind: EntryKind,
    /// The container reads the entry to its end to go on (a tar entry, a
    /// zip entry whose size comes after its data): what the visitor leaves
    /// is read here, through the limits, and not by the container, where
    /// the bytes would escape them.
    drain: bool,
}

/// One archive level being walked.
struct Container<'p> {
    /// Path of the archive entry holding this level ("" for the outermost).
    prefix: &'p str,
    /// 1 for the outermost archive.
    depth: u32,
    /// Bytes read so far from this level's (compressed) input.
    consumed: Rc<Cell<u64>>,
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: io::Seek> io::Seek for Counting<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The limits, checked on every read of an entry's bytes.
struct Guard<'a> {
    inner: &'a mut dyn Read,
    total: Rc<Cell<u64>>,
    consumed: Rc<Cell<u64>>,
    start: u64,
    produced: u64,
    /// The size the header declared, checked at the end (a short entry
    /// is a truncated archive).
    expect: Option<u64>,
    opts: ArchiveOptions,
}

impl Read for Guard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some(want) = self.expect.filter(|&w| w != self.produced) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "truncated: the entry ends after {} of its {want} bytes",
                        self.produced
                    ),
                ));
            }
            return Ok(0);
        }
        self.produced += n as u64;
        let total = self.total.get() + n as u64;
        self.total.set(total);
        let o = &self.opts;
        if total > o.max_total_bytes {
            return Err(limit(format!(
                "over the limit of {} uncompressed bytes per archive (max_total_bytes)",
                o.max_total_bytes
            )));
        }
        let packed = self.consumed.get().saturating_sub(self.start);
        if self.produced > o.max_ratio.saturating_mul(packed.max(RATIO_GRACE)) {
            return Err(limit(format!(
                "compression ratio over {}:1 ({} bytes out of {packed}) (max_ratio)",
                o.max_ratio, self.produced
            )));
        }
        Ok(n)
    }
}

fn limit(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// Called with each entry; `data` is `Some` for a file, whose bytes it may
/// read (all, some or none) before returning.
pub type Visitor<'v> = dyn FnMut(&EntryMeta, Option<&mut dyn Read>) -> Result<()> + 'v;

/// Walks an archive: the state shared by every level.
struct Walker<'v> {
    archive: String,
    opts: ArchiveOptions,
    total: Rc<Cell<u64>>,
    count: u64,
    /// Bytes of nested zips held in memory by the levels open now (their sum
    /// is what `max_nested_zip_bytes` bounds).
    held: u64,
    /// Every name given so far (as [`name_key`]s: 16 bytes a name).
    seen: HashSet<u128>,
    /// For a duplicated name, the next suffix to try.
    next_suffix: HashMap<u128, u64>,
    visit: &'v mut Visitor<'v>,
}

/// Visits every entry of the archive `source`, in archive order, nested
/// archives included (see the module's documentation).
///
/// # Errors
/// [`Error::Archive`] when the source is not an archive, is corrupt,
/// truncated, encrypted or uses an unsupported method, or passes a limit;
/// [`Error::Io`] when the source cannot be opened; whatever `visit`
/// returns (a read error of `data` is reported as an [`Error::Archive`]
/// about that entry). Entries already visited are then not a complete
/// listing of the archive.
pub fn walk(source: &dyn Source, opts: ArchiveOptions, visit: &mut Visitor<'_>) -> Result<()> {
    let name = source.name().to_owned();
    let mut w = Walker {
        archive: name.clone(),
        opts,
        total: Rc::new(Cell::new(0)),
        count: 0,
        held: 0,
        seen: HashSet::new(),
        next_suffix: HashMap::new(),
        visit,
    };
    let consumed = Rc::new(Cell::new(0));
    let top = Container {
        prefix: "",
        depth: 1,
        consumed: Rc::clone(&consumed),
    };
    if Format::from_name(&name) == Some(Format::Zip) {
        // Through the central directory, which also finds a zip after
        // leading bytes (a self-extracting archive); not a zip: an error.
        if let Some(seekable) = source.open_seekable().map_err(|e| Error::io(&name, e))? {
            return zip::central(&mut w, seekable, &top);
        }
    }
    let raw = source.open().map_err(|e| Error::io(&name, e))?;
    let counted = Box::new(Counting {
        inner: raw,
        count: consumed,
    });
    let sniffed = sniff(counted, &name, false).map_err(|e| w.fail(None, &e))?;
    match sniffed {
        Err(reason) => Err(w.error(None, reason)),
        Ok(Sniffed::Plain(_) | Sniffed::Archive(Format::Compressed(_), _)) => {
            Err(w.error(None, "not an archive (zip, tar or compressed tar)"))
        }
        Ok(Sniffed::Archive(Format::Zip, r)) => match source.open_seekable() {
            Ok(Some(seekable)) => {
                drop(r);
                zip::central(&mut w, seekable, &top)
            }
            Ok(None) => zip::stream(&mut w, r, &top),
            Err(e) => Err(Error::io(&name, e)),
        },
        Ok(Sniffed::Archive(format, mut r)) => {
            w.level(format, Box::new(&mut r), &top)?;
            let mut guard = w.guard(&top, &mut r, None);
            w.read_rest(&mut guard, None, format.is_tar())
        }
    }
}

impl Walker<'_> {
    /// An [`Error::Archive`] about `entry` (or the archive itself).
    fn error(&self, entry: Option<&str>, reason: impl Into<String>) -> Error {
        Error::archive(&self.archive, entry, reason)
    }

    /// An I/O error while reading `entry` (or the archive's structure).
    fn fail(&self, entry: Option<&str>, e: &io::Error) -> Error {
        let reason = match e.kind() {
            io::ErrorKind::UnexpectedEof if !e.to_string().starts_with("truncated") => {
                format!("truncated ({e})")
            }
            _ => e.to_string(),
        };
        self.error(entry, reason)
    }

    /// Walks one archive level whose (decompressed) data `r` holds.
    fn level(&mut self, format: Format, r: Box<dyn Read + '_>, c: &Container<'_>) -> Result<()> {
        match format {
            Format::Zip => zip::stream(self, r, c),
            Format::Tar | Format::CompressedTar(_) => tar::walk(self, r, c),
            // A single compressed file is an entry, not a level (see [`sniff`]).
            Format::Compressed(_) => Err(self.error(
                (!c.prefix.is_empty()).then_some(c.prefix),
                "not an archive (zip, tar or compressed tar)",
            )),
        }
    }

    fn join(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// The first name not yet used: `name`, else `stem~2.ext`, `stem~3.ext`...
    /// (each duplicated name remembers where its search stopped). A
    /// compression extension keeps the one before it: `a~2.csv.gz`, still
    /// a compressed table.
    fn unique(&mut self, name: String) -> (String, Option<String>) {
        let key = name_key(&name);
        if self.seen.insert(key) {
            return (name, None);
        }
        let seg = name.rfind('/').map_or(0, |i| i + 1);
        let base = Codec::from_name(&name[seg..]).map_or(name.len(), |(_, stem)| seg + stem.len());
        let dot = name[seg..base]
            .rfind('.')
            .filter(|&i| i > 0)
            .map(|i| seg + i);
        let (stem, ext) = name.split_at(dot.unwrap_or(base));
        let n = self.next_suffix.entry(key).or_insert(2);
        loop {
            let candidate = format!("{stem}~{n}{ext}");
            *n += 1;
            if self.seen.insert(name_key(&candidate)) {
                return (candidate, Some(format!("duplicate name {name:?}, renamed")));
            }
        }
    }

    /// Reads the bytes of container `c` that `data` gives through the limits
    /// (`expect`: the size the container declared).
    fn guard<'a>(
        &self,
        c: &Container<'_>,
        data: &'a mut dyn Read,
        expect: Option<u64>,
    ) -> Guard<'a> {
        Guard {
            inner: data,
            total: Rc::clone(&self.total),
            consumed: Rc::clone(&c.consumed),
            start: c.consumed.get(),
            produced: 0,
            expect,
            opts: self.opts,
        }
    }

    /// Reads what is left of `r` through the limits: an entry whose
    /// container reads it to its end anyway, or an archive level's data
    /// after its last entry, so that the codec and the container holding it
    /// check their own checksums (a gzip or zstd trailer, a zip entry's
    /// CRC-32), which a damaged archive would otherwise pass. After a tar's
    /// end (`tar_end`) only zero blocks may follow: anything else (a second
    /// archive appended) would be skipped unread, so it is an error.
    fn read_rest(&self, r: &mut dyn Read, at: Option<&str>, tar_end: bool) -> Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(at, &e)),
            };
            if tar_end && buf[..n].iter().any(|&b| b != 0) {
                return Err(self.error(
                    at,
                    "data after the end of the tar archive (an archive appended to it would \
                     not be read)",
                ));
            }
        }
    }

    fn emit(&mut self, meta: &EntryMeta, data: Option<&mut dyn Read>) -> Result<()> {
        (self.visit)(meta, data).map_err(|e| match e {
            Error::Io { error, .. } => self.fail(Some(&meta.name), &error),
            other => other,
        })
    }

    /// Reports one entry of container `c`, opening it when it is an archive.
    fn entry(&mut self, c: &Container<'_>, raw: RawEntry, data: &mut dyn Read) -> Result<()> {
        self.count += 1;
        let index = self.count - 1;
        if self.count > self.opts.max_entries {
            let at = Self::join(c.prefix, &raw.name);
            return Err(self.error(
                Some(&at),
                format!(
                    "over the limit of {} entries per archive (max_entries)",
                    self.opts.max_entries
                ),
            ));
        }
        let mut guard = self.guard(c, data, raw.size);
        let (name, kind, mut note) = match normalise(&raw.name) {
            Ok((name, note)) => (name, raw.kind, note),
            Err(why) => {
                let shown: String = raw.name.chars().take(256).collect();
                (
                    shown.escape_debug().to_string(),
                    EntryKind::BadName(why),
                    None,
                )
            }
        };
        let full = Self::join(c.prefix, &name);
        if kind != EntryKind::File {
            let meta = EntryMeta {
                index,
                name: full,
                size: raw.size,
                kind,
                note,
            };
            self.emit(&meta, None)?;
            if raw.drain {
                self.read_rest(&mut guard, Some(&meta.name), false)?;
            }
            return Ok(());
        }
        let inner_consumed = Rc::new(Cell::new(0));
        let counted = Box::new(Counting {
            inner: &mut guard,
            count: Rc::clone(&inner_consumed),
        });
        let sniffed = sniff(counted, &name, true).map_err(|e| self.fail(Some(&full), &e))?;
        let (full, dup) = self.unique(full);
        note = match (note, dup) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let mut meta = EntryMeta {
            index,
            name: full,
            size: raw.size,
            kind: EntryKind::File,
            note,
        };
        match sniffed {
            Err(reason) => Err(self.error(Some(&meta.name), reason)),
            Ok(Sniffed::Plain(mut r)) => {
                self.emit(&meta, Some(&mut r))?;
                if raw.drain {
                    self.read_rest(&mut r, Some(&meta.name), false)?;
                }
                Ok(())
            }
            Ok(Sniffed::Archive(format, r)) => {
                if c.depth >= self.opts.max_depth {
                    return Err(self.error(
                        Some(&meta.name),
                        format!(
                            "archives nested over the limit of {} levels (max_depth)",
                            self.opts.max_depth
                        ),
                    ));
                }
                meta.kind = EntryKind::Archive(format);
                self.emit(&meta, None)?;
                let inner = Container {
                    prefix: &meta.name,
                    depth: c.depth + 1,
                    consumed: inner_consumed,
                };
                let mut r = r;
                if format == Format::Zip {
                    zip::stream(self, Box::new(&mut r), &inner)?;
                } else {
                    self.level(format, Box::new(&mut r), &inner)?;
                }
                self.read_rest(&mut r, Some(&meta.name), format.is_tar())
            }
        }
    }
}

/// Normalises an entry name inside the archive (see the module's
/// documentation): the name and a note when it changed, or why the entry
/// must be skipped.
pub fn normalise(raw: &str) -> std::result::Result<(String, Option<String>), String> {
    if raw.len() > MAX_NAME_BYTES {
        return Err(format!(
            "name of {} bytes is longer than an S3 key can be ({MAX_NAME_BYTES} bytes)",
            raw.len()
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(format!(
            "name \"{}\" holds a control character",
            raw.escape_debug()
        ));
    }
    let slashed = raw.replace('\\', "/");
    let b = slashed.as_bytes();
    let (rest, drive) = if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        (&slashed[2..], true)
    } else {
        (slashed.as_str(), false)
    };
    let mut parts: Vec<&str> = Vec::new();
    let mut escaped = drive || rest.starts_with('/');
    for seg in rest.split('/') {
        match seg {
            "" | "." => {}
            ".." => escaped |= parts.pop().is_none(),
            s => parts.push(s),
        }
    }
    let clean = parts.join("/");
    if clean.is_empty() {
        return Err(format!(
            "name \"{}\" is empty once normalised",
            raw.escape_debug()
        ));
    }
    let note = if escaped {
        Some(format!(
            "path {raw:?} pointed outside the archive, kept as {clean:?}"
        ))
    } else if clean != raw.trim_end_matches('/') {
        Some(format!("name {raw:?} normalised to {clean:?}"))
    } else {
        None
    };
    Ok((clean, note))
}

/// The longest entry name (an S3 key's limit): a longer one is skipped.
const MAX_NAME_BYTES: usize = 1024;

/// A name's 128-bit hash: the set of names given holds these, so a million
/// long names cost 16 MB, not their length.
fn name_key(name: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, name).hash(&mut h);
        u128::from(h.finish())
    };
    half(0) << 64 | half(1)
}

/// Decodes a name that is not valid UTF-8 byte by byte (see
/// [`crate::source::utf8_lossless`]).
fn name_from_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(&crate::source::utf8_lossless(bytes).0).into_owned(),
    }
}

#[cfg(test)]
mod tests;
