//! `ArchiveReader`: the entries of an archive as a Python iterator, each
//! entry's bytes as an iterator of `bytes` chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use s3proc_core::archive::{ArchiveEntries, ArchiveOptions, EntryKind, EntryMeta};
use s3proc_core::source::Source;
use s3proc_core::Error;

use crate::errors;
use crate::options::get;

/// Runs `f` without the GIL, giving it a `stop` callback that checks for
/// signals (Ctrl-C) at most every 100 ms; maps the outcome to Python.
fn pull<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&mut dyn FnMut() -> bool) -> s3proc_core::Result<T> + Send,
) -> PyResult<T> {
    let mut signal: Option<PyErr> = None;
    let mut checked = Instant::now();
    let got = crate::chunks::detached(py, || {
        f(&mut || {
            if checked.elapsed() < Duration::from_millis(100) {
                return false;
            }
            checked = Instant::now();
            signal = Python::attach(|py| py.check_signals().err());
            signal.is_some()
        })
    })?;
    match got {
        Ok(v) => Ok(v),
        Err(Error::Stopped) => {
            Err(signal.unwrap_or_else(|| errors::from_panic(py, Box::new("stopped"))))
        }
        // The reader moved on: a mistake of the caller, not of the archive.
        Err(Error::Option {
            option: "entry",
            reason,
        }) => Err(PyRuntimeError::new_err(reason)),
        Err(e) => Err(errors::to_py(py, e)),
    }
}

fn parse(options: Option<&Bound<'_, PyDict>>) -> PyResult<(ArchiveOptions, Option<String>)> {
    let mut o = ArchiveOptions::default();
    let mut name = None;
    for (key, value) in options.into_iter().flat_map(|d| d.iter()) {
        let key: String = key.extract()?;
        let k = key.as_str();
        match k {
            "max_total_bytes" => o.max_total_bytes = get(k, &value)?,
            "max_ratio" => o.max_ratio = get(k, &value)?,
            "max_entries" => o.max_entries = get(k, &value)?,
            "max_depth" => o.max_depth = get(k, &value)?,
            "max_nested_zip_bytes" => o.max_nested_zip_bytes = get(k, &value)?,
            "name" => name = get(k, &value)?,
            other => return Err(errors::type_error(format!("unknown option {other:?}"))),
        }
    }
    Ok((o, name))
}

/// The entries of a zip, tar or compressed tar, in archive order.
#[pyclass(frozen, module = "s3proc._core")]
pub struct ArchiveReader {
    entries: ArchiveEntries,
    source: Arc<dyn Source>,
    options: ArchiveOptions,
}

impl ArchiveReader {
    /// The archive's source and options: with an entry's metadata, what
    /// `s3proc_core::archive::EntrySource::new` needs to make the entry a
    /// source the converter can open (and re-open on a restart).
    #[allow(dead_code)]
    pub fn parts(&self) -> (&ArchiveEntries, &Arc<dyn Source>, ArchiveOptions) {
        (&self.entries, &self.source, self.options)
    }
}

#[pymethods]
impl ArchiveReader {
    #[new]
    #[pyo3(signature = (source, **options))]
    fn new(source: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let (options, name) = parse(options)?;
        let source = crate::source::as_stored(source, name)?;
        let entries = ArchiveEntries::open(Arc::clone(&source), options);
        Ok(Self {
            entries,
            source,
            options,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<ArchiveEntry>> {
        let entries = &self.entries;
        let meta = pull(py, |stop| entries.next_entry_or_stop(stop))?;
        Ok(meta.map(|meta| ArchiveEntry {
            entries: self.entries.clone(),
            meta,
            read: AtomicBool::new(false),
        }))
    }

    /// The archive's name (its path, or the name it was given).
    #[getter]
    fn name(&self) -> &str {
        self.source.name()
    }
}

/// One entry of an `ArchiveReader`, valid until the next one is asked for.
#[pyclass(frozen, module = "s3proc._core")]
pub struct ArchiveEntry {
    entries: ArchiveEntries,
    meta: EntryMeta,
    /// Whether `chunks` was called: the archive is a stream, read once.
    read: AtomicBool,
}

#[pymethods]
impl ArchiveEntry {
    /// Normalised, unique path inside the archive (`outer/inner` when nested).
    #[getter]
    fn name(&self) -> &str {
        &self.meta.name
    }

    /// Position in the walk, nested entries included.
    #[getter]
    fn index(&self) -> u64 {
        self.meta.index
    }

    /// Uncompressed size as the archive declares it, if it does.
    #[getter]
    fn size(&self) -> Option<u64> {
        self.meta.size
    }

    /// "file", "archive" (its entries follow) or "skipped" (see `reason`).
    #[getter]
    fn kind(&self) -> &'static str {
        match self.meta.kind {
            EntryKind::File => "file",
            EntryKind::Archive(_) => "archive",
            _ => "skipped",
        }
    }

    /// For an archive: "zip", "tar", "tar.gz", "gz"...; else `None`.
    #[getter]
    fn format(&self) -> Option<String> {
        match self.meta.kind {
            EntryKind::Archive(f) => Some(f.name()),
            _ => None,
        }
    }

    /// Why a skipped entry is skipped; else `None`.
    #[getter]
    fn reason(&self) -> Option<String> {
        self.meta.kind.skip_reason()
    }

    /// How the name was changed (normalised, renamed as a duplicate), if it was.
    #[getter]
    fn note(&self) -> Option<&str> {
        self.meta.note.as_deref()
    }

    /// The entry's bytes as chunks of `chunk_size` bytes (the last shorter).
    #[pyo3(signature = (chunk_size = 1 << 20))]
    fn chunks(&self, chunk_size: usize) -> PyResult<EntryChunks> {
        if chunk_size == 0 {
            return Err(PyValueError::new_err("chunk_size must be at least 1"));
        }
        if self.meta.kind != EntryKind::File {
            return Err(PyValueError::new_err(format!(
                "entry {:?} is not a file: it has no bytes to read",
                self.meta.name
            )));
        }
        if self.read.swap(true, Ordering::SeqCst) {
            // A second iterator would go on where the first stopped: a short copy, silently.
            return Err(PyRuntimeError::new_err(format!(
                "entry {:?} was read already: an archive is read as a stream, each entry once \
                 (open a new ArchiveReader to read it again)",
                self.meta.name
            )));
        }
        Ok(EntryChunks {
            entries: self.entries.clone(),
            index: self.meta.index,
            chunk_size,
        })
    }

    fn __repr__(&self) -> String {
        format!("<ArchiveEntry {:?} {}>", self.meta.name, self.kind())
    }
}

/// The bytes of an entry, as an iterator of `bytes`.
#[pyclass(frozen, module = "s3proc._core")]
pub struct EntryChunks {
    entries: ArchiveEntries,
    index: u64,
    chunk_size: usize,
}

#[pymethods]
impl EntryChunks {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        let (entries, index, size) = (&self.entries, self.index, self.chunk_size);
        let chunk = pull(py, |stop| entries.read_chunk(index, size, stop))?;
        Ok((!chunk.is_empty()).then(|| PyBytes::new(py, &chunk).unbind()))
    }
}
