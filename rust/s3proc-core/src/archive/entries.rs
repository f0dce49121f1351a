//! [`walk`](super::walk) on a producer thread, pulled through a bounded
//! channel: the shape a caller that iterates (Python, the converter) needs.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::{walk, ArchiveOptions, EntryMeta};
use crate::error::{Error, Result};
use crate::source::Source;

/// Bytes per message from the producer.
const PIECE: usize = 256 << 10;
/// Messages in flight: with [`PIECE`], at most 2 MiB read ahead.
const IN_FLIGHT: usize = 8;
/// No entry is skipped (see `Shared::skip_upto`).
const NONE: u64 = u64::MAX;

enum Msg {
    Entry(EntryMeta),
    Data(Vec<u8>),
    EntryEnd,
    Done,
    Failed(Error),
}

/// What the consumer tells the producer, without waiting for it.
struct Control {
    /// The producer stops reading the data of entries up to this index
    /// (the consumer moved past them). `NONE` before the first.
    skip_upto: AtomicU64,
}

impl Control {
    fn skips(&self, index: u64) -> bool {
        let upto = self.skip_upto.load(Ordering::Relaxed);
        upto != NONE && index <= upto
    }
}

enum State {
    /// Before the first entry, or the current entry's data is all read.
    Between,
    /// The current entry's data is being read.
    Reading,
    /// The walk ended (well or not): no more entries.
    Finished,
}

/// The consumer's side of the channel.
struct Consumer {
    archive: String,
    rx: Receiver<Msg>,
    control: Arc<Control>,
    current: Option<EntryMeta>,
    state: State,
    piece: Vec<u8>,
    pos: usize,
    /// The walk's error, kept for `next_entry` once the reader saw it.
    failure: Option<Error>,
}

/// The entries of an archive, pulled one by one; their bytes read in
/// between. A producer thread owns the archive and walks it; at most
/// [`IN_FLIGHT`] pieces of [`PIECE`] bytes wait in the channel.
///
/// An entry's bytes can be read until the next entry is asked for; reading
/// an earlier entry's bytes is an error. Every call may wait for the
/// producer: call it without holding a lock the producer needs (the GIL,
/// for a Python source).
///
/// Cloning gives another handle on the same reader.
#[derive(Clone)]
pub struct ArchiveEntries {
    inner: Arc<Mutex<Consumer>>,
}

fn stopped_never() -> bool {
    false
}

impl ArchiveEntries {
    /// Starts walking `source`.
    pub fn open(source: Arc<dyn Source>, options: ArchiveOptions) -> Self {
        Self::start(source, options, NONE)
    }

    /// Starts walking `source` without reading the data of the entries
    /// before `index` (to reach entry `index` again).
    fn start(source: Arc<dyn Source>, options: ArchiveOptions, skip_upto: u64) -> Self {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let control = Arc::new(Control {
            skip_upto: AtomicU64::new(skip_upto),
        });
        let archive = source.name().to_owned();
        let ctl = Arc::clone(&control);
        let spawned = thread::Builder::new()
            .name("s3proc-archive".into())
            .spawn(move || {
                // One buffer for the whole walk: a piece sent is a copy of
                // what was read, so a tiny entry costs a tiny allocation.
                let mut scratch = vec![0u8; PIECE];
                let mut visit = |meta: &EntryMeta, data: Option<&mut dyn Read>| -> Result<()> {
                    let gone = || Error::Stopped;
                    tx.send(Msg::Entry(meta.clone())).map_err(|_| gone())?;
                    if let Some(data) = data {
                        while !ctl.skips(meta.index) {
                            let n = super::read_full(data, &mut scratch)
                                .map_err(|e| Error::io(&meta.name, e))?;
                            if n == 0 {
                                break;
                            }
                            tx.send(Msg::Data(scratch[..n].to_vec()))
                                .map_err(|_| gone())?;
                        }
                    }
                    tx.send(Msg::EntryEnd).map_err(|_| gone())
                };
                let end = match walk(source.as_ref(), options, &mut visit) {
                    Ok(()) => Msg::Done,
                    Err(Error::Stopped) => return,
                    Err(e) => Msg::Failed(e),
                };
                let _ = tx.send(end);
            });
        let (state, failure) = match spawned {
            Ok(_) => (State::Between, None),
            Err(e) => (
                State::Finished,
                Some(Error::internal(&archive, e.to_string())),
            ),
        };
        Self {
            inner: Arc::new(Mutex::new(Consumer {
                archive,
                rx,
                control,
                current: None,
                state,
                piece: Vec::new(),
                pos: 0,
                failure,
            })),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Consumer>> {
        self.inner
            .lock()
            .map_err(|_| Error::internal("archive", "archive reader poisoned by a panic"))
    }

    /// The next entry, or `None` at the end of a complete archive.
    ///
    /// # Errors
    /// The [`Error::Archive`] (or other error) that ended the walk: the
    /// archive as a whole failed, whatever entries came before.
    pub fn next_entry(&self) -> Result<Option<EntryMeta>> {
        self.next_entry_or_stop(&mut stopped_never)
    }

    /// [`Self::next_entry`], giving up with [`Error::Stopped`] when `stop`
    /// (asked every 100 ms while waiting) says so.
    ///
    /// # Errors
    /// As [`Self::next_entry`]; [`Error::Stopped`].
    pub fn next_entry_or_stop(&self, stop: &mut dyn FnMut() -> bool) -> Result<Option<EntryMeta>> {
        self.lock()?.next_entry(stop)
    }

    /// Reads the bytes of entry `index` (the current one) into `buf`; 0 at
    /// its end.
    ///
    /// # Errors
    /// [`Error::Option`] when `index` is not the current entry (the reader
    /// moved on); the walk's error when it failed while reading this entry.
    pub fn read(
        &self,
        index: u64,
        buf: &mut [u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<usize> {
        self.lock()?.read(index, buf, stop)
    }

    /// The next chunk of entry `index`'s bytes: `max` bytes, fewer only at
    /// the entry's end (empty there).
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn read_chunk(
        &self,
        index: u64,
        max: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<u8>> {
        self.lock()?.read_chunk(index, max, stop)
    }

    /// A [`Read`] of entry `index`'s bytes, valid while it is the current
    /// entry.
    pub fn reader(&self, index: u64) -> EntryReader {
        EntryReader {
            entries: self.clone(),
            index,
        }
    }
}

impl Consumer {
    fn recv(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Msg> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => return Ok(m),
                Err(RecvTimeoutError::Timeout) => {
                    if stop() {
                        return Err(Error::Stopped);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.state = State::Finished;
                    return Err(Error::internal(
                        &self.archive,
                        "the archive reader thread ended",
                    ));
                }
            }
        }
    }

    fn finish(&mut self, e: Error) -> Error {
        self.state = State::Finished;
        self.current = None;
        e
    }

    /// Drops the rest of the current entry's data, up to its end.
    fn drain(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<()> {
        loop {
            match self.recv(stop)? {
                Msg::Data(_) => {}
                Msg::EntryEnd => {
                    self.state = State::Between;
                    return Ok(());
                }
                Msg::Failed(e) => return Err(self.finish(e)),
                Msg::Done | Msg::Entry(_) => {
                    let e = Error::internal(&self.archive, "entry data out of order");
                    return Err(self.finish(e));
                }
            }
        }
    }

    fn next_entry(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<EntryMeta>> {
        if let State::Reading = self.state {
            if let Some(cur) = &self.current {
                self.control.skip_upto.store(cur.index, Ordering::Relaxed);
            }
            self.drain(stop)?;
        }
        if let State::Finished = self.state {
            return match self.failure.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        self.current = None;
        self.piece = Vec::new();
        self.pos = 0;
        loop {
            match self.recv(stop)? {
                Msg::Entry(meta) => {
                    self.state = State::Reading;
                    // Reaching an entry again: the ones before are passed over.
                    if self.control.skips(meta.index) {
                        self.drain(stop)?;
                        continue;
                    }
                    self.current = Some(meta.clone());
                    return Ok(Some(meta));
                }
                Msg::Done => {
                    self.state = State::Finished;
                    return Ok(None);
                }
                Msg::Failed(e) => return Err(self.finish(e)),
                Msg::Data(_) | Msg::EntryEnd => {}
            }
        }
    }

    /// Makes the current piece hold unread bytes of entry `index`; `false`
    /// at the entry's end.
    fn fill(&mut self, index: u64, stop: &mut dyn FnMut() -> bool) -> Result<bool> {
        if self.current.as_ref().is_none_or(|c| c.index != index) {
            return Err(Error::Option {
                option: "entry",
                reason: format!(
                    "entry #{index} of {} is no longer valid: the reader has moved past it",
                    self.archive
                ),
            });
        }
        while self.pos == self.piece.len() {
            if !matches!(self.state, State::Reading) {
                return Ok(false);
            }
            match self.recv(stop)? {
                Msg::Data(d) => {
                    self.piece = d;
                    self.pos = 0;
                }
                Msg::EntryEnd => self.state = State::Between,
                Msg::Failed(e) => {
                    // The reader sees the error; `next_entry` reports it again.
                    let copy = duplicate(&e);
                    self.failure = Some(e);
                    self.state = State::Finished;
                    return Err(copy);
                }
                Msg::Done | Msg::Entry(_) => {
                    let e = Error::internal(&self.archive, "entry data out of order");
                    return Err(self.finish(e));
                }
            }
        }
        Ok(true)
    }

    fn read(
        &mut self,
        index: u64,
        buf: &mut [u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<usize> {
        if !self.fill(index, stop)? {
            return Ok(0);
        }
        let n = buf.len().min(self.piece.len() - self.pos);
        buf[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    fn read_chunk(
        &mut self,
        index: u64,
        max: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < max && self.fill(index, stop)? {
            let n = (max - out.len()).min(self.piece.len() - self.pos);
            if out.is_empty() && self.pos == 0 && n == self.piece.len() {
                // A whole piece: handed over, not copied.
                out = std::mem::take(&mut self.piece);
                continue;
            }
            out.extend_from_slice(&self.piece[self.pos..self.pos + n]);
            self.pos += n;
        }
        Ok(out)
    }
}

/// A second error saying what `e` says (errors are not `Clone`).
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Archive {
            archive,
            entry,
            reason,
        } => Error::Archive {
            archive: archive.clone(),
            entry: entry.clone(),
            reason: reason.clone(),
        },
        Error::Io { source_name, error } => {
            Error::io(source_name, io::Error::new(error.kind(), error.to_string()))
        }
        other => Error::internal("archive", other.to_string()),
    }
}

/// The bytes of one entry of an [`ArchiveEntries`], as a [`Read`]: valid
/// until the reader moves to a later entry.
pub struct EntryReader {
    entries: ArchiveEntries,
    index: u64,
}

impl Read for EntryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.entries
            .read(self.index, buf, &mut stopped_never)
            .map_err(io::Error::other)
    }
}

/// An archive entry as a [`Source`] the converter can open again.
///
/// The first [`Source::open`] reads the entry where the reader that found
/// it stands (no second pass). Each later one (a conversion restarted after
/// a late type drift) walks the archive again from its start up to the
/// entry, reading the data of no entry before it but decompressing what
/// lies before it in a compressed tar: a tar or a zip nested in a stream
/// cannot be read from the middle, and no entry is held in memory or on
/// disk.
pub struct EntrySource {
    archive: Arc<dyn Source>,
    options: ArchiveOptions,
    meta: EntryMeta,
    name: String,
    live: Mutex<Option<EntryReader>>,
}

impl EntrySource {
    /// Entry `meta` (the current one of `entries`, which walks `archive`
    /// with `options`).
    pub fn new(
        archive: Arc<dyn Source>,
        options: ArchiveOptions,
        entries: &ArchiveEntries,
        meta: EntryMeta,
    ) -> Self {
        let name = format!("{}/{}", archive.name(), meta.name);
        let live = Mutex::new(Some(entries.reader(meta.index)));
        Self {
            archive,
            options,
            meta,
            name,
            live,
        }
    }
}

impl Source for EntrySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let live = self.live.lock().ok().and_then(|mut l| l.take());
        if let Some(reader) = live {
            return Ok(Box::new(reader));
        }
        let again = ArchiveEntries::start(
            Arc::clone(&self.archive),
            self.options,
            self.meta.index.wrapping_sub(1),
        );
        match again.next_entry().map_err(io::Error::other)? {
            Some(m) if m == self.meta => Ok(Box::new(again.reader(m.index))),
            _ => Err(io::Error::other(format!(
                "{}: the archive changed since entry {:?} was read",
                self.archive.name(),
                self.meta.name
            ))),
        }
    }
}
