//! Sources given from Python: a path (read in Rust) or a binary file-like
//! object (read through Python, and sought back to re-read it).

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use s3proc_core::compress::{self, Codec};
use s3proc_core::csv::sniff::SAMPLE_BYTES;
use s3proc_core::source::{BytesSource, FileSource, Source};

/// Turns the `source` argument into a core source, decompressed on the fly
/// when its first bytes are those of a compressed file.
pub fn from_py(obj: &Bound<'_, PyAny>, name: Option<String>) -> PyResult<Arc<dyn Source>> {
    let raw = as_stored(obj, name)?;
    let py = obj.py();
    py.detach(|| compress::auto(raw))
        .map_err(|e| crate::errors::to_py(py, e))
}

/// The codec of the file at `path` (`"gzip"`, `"zstd"`, `"bzip2"`, `"xz"`),
/// found from its first bytes, or `None` when it is not compressed.
#[pyfunction]
pub fn sniff_compression(py: Python<'_>, path: PathBuf) -> PyResult<Option<&'static str>> {
    let file = FileSource::new(path);
    py.detach(|| compress::detect(&file))
        .map(|c| c.map(Codec::name))
        .map_err(|e| crate::errors::to_py(py, e))
}

/// The number of rows in a Parquet footer (the metadata before the file's
/// last 8 bytes): a `ValueError` for bytes that are not one.
#[pyfunction]
pub fn parquet_footer_rows(footer: &[u8]) -> PyResult<i64> {
    s3proc_core::sink::footer_rows(footer)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("not a Parquet footer: {e}")))
}

/// The `source` argument as it is stored, compressed or not (an archive
/// reader opens a compressed tar itself, and measures its compression
/// ratio against the compressed bytes).
pub fn as_stored(obj: &Bound<'_, PyAny>, name: Option<String>) -> PyResult<Arc<dyn Source>> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        let file = FileSource::new(obj.extract::<PathBuf>()?);
        return Ok(Arc::new(match name {
            Some(n) => file.named(n),
            None => file,
        }));
    }
    let bytes: Option<Arc<[u8]>> = if let Ok(b) = obj.cast::<PyBytes>() {
        Some(b.as_bytes().into())
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        Some(b.to_vec().into())
    } else {
        None
    };
    if let Some(data) = bytes {
        let name = name.unwrap_or_else(|| "<bytes>".into());
        return Ok(Arc::new(BytesSource { data, name }));
    }
    if obj.hasattr("read")? {
        let name = match name {
            Some(n) => n,
            None => obj
                .getattr("name")
                .ok()
                .and_then(|n| n.extract::<String>().ok())
                .unwrap_or_else(|| "<stream>".into()),
        };
        let seekable = obj.hasattr("seekable")? && obj.call_method0("seekable")?.is_truthy()?;
        let start = if seekable {
            Some(obj.call_method0("tell")?.extract::<u64>()?)
        } else {
            None
        };
        return Ok(Arc::new(PyFileLike {
            stream: Arc::new(Stream {
                obj: obj.clone().unbind(),
                read1: obj.hasattr("read1")?,
                state: Mutex::default(),
            }),
            name,
            start,
        }));
    }
    Err(crate::errors::type_error(
        "source must be a path, bytes or a binary file-like object with read()",
    ))
}

/// How much of a stream that cannot seek is kept so it can be read again:
/// enough for the sniffer's two looks at the start of the data.
const REPLAY_BYTES: usize = 2 * SAMPLE_BYTES + 1;

/// A binary file-like object. Re-opening seeks back to where it started;
/// a stream that cannot seek (a pipe) replays its first bytes from memory,
/// so it can be sniffed and then converted once.
struct PyFileLike {
    stream: Arc<Stream>,
    name: String,
    start: Option<u64>,
}

struct Stream {
    obj: Py<PyAny>,
    /// Read with `read1`, which returns what one read of the file gives
    /// (a pipe's trickle), where `read(n)` waits until it has `n` bytes.
    read1: bool,
    state: Mutex<Replay>,
}

#[derive(Default)]
struct Replay {
    opened: bool,
    /// The first bytes read from the stream, while they are all it gave.
    prefix: Vec<u8>,
    /// More than `REPLAY_BYTES` were read: the stream cannot start over.
    overrun: bool,
}

fn lock(m: &Mutex<Replay>) -> std::sync::MutexGuard<'_, Replay> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Source for PyFileLike {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let again = std::mem::replace(&mut lock(&self.stream.state).opened, true);
        match self.start {
            Some(start) if again => {
                Python::attach(|py| {
                    self.stream
                        .obj
                        .bind(py)
                        .call_method1("seek", (start,))
                        .map(drop)
                })
                .map_err(io::Error::other)?;
            }
            None if again && lock(&self.stream.state).overrun => {
                return Err(io::Error::other(
                    "the stream cannot seek and must be read again (a late value widened a column, \
                     or sample_rows=None); pass a path or a seekable file",
                ));
            }
            _ => {}
        }
        Ok(Box::new(PyReader {
            stream: Arc::clone(&self.stream),
            replay: self.start.is_none(),
            pos: 0,
        }))
    }
}

struct PyReader {
    stream: Arc<Stream>,
    /// Serve and keep the stream's first bytes (a stream that cannot seek).
    replay: bool,
    pos: usize,
}

impl PyReader {
    fn read_stream(&self, buf: &mut [u8]) -> io::Result<usize> {
        let got = Python::attach(|py| {
            // A signal that came while no read was blocked (SIGTERM to `s3proc
            // convert` on a FIFO) is handled now, not once the next read returns.
            py.check_signals()?;
            let read = if self.stream.read1 { "read1" } else { "read" };
            let got = self.stream.obj.bind(py).call_method1(read, (buf.len(),))?;
            if got.is_none() {
                return Ok(None); // io's contract: no data yet, not the end
            }
            let bytes = got.cast::<PyBytes>().map_err(|_| {
                let kind = got.get_type().name().map_or("?".into(), |n| n.to_string());
                crate::errors::type_error(format!(
                    "{read}() gave {kind}, not bytes: open the file in binary mode ('rb')"
                ))
            })?;
            let data = bytes.as_bytes();
            if data.len() > buf.len() {
                return Err(crate::errors::type_error(
                    "read(n) returned more than n bytes",
                ));
            }
            buf[..data.len()].copy_from_slice(data);
            Ok(Some(data.len()))
        })
        .map_err(io::Error::other)?;
        got.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the stream is non-blocking and had no data: pass a blocking stream",
            )
        })
    }
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.replay {
            return self.read_stream(buf);
        }
        let mut state = lock(&self.stream.state);
        if self.pos < state.prefix.len() {
            let n = buf.len().min(state.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&state.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let n = self.read_stream(buf)?;
        if !state.overrun && state.prefix.len() + n <= REPLAY_BYTES {
            state.prefix.extend_from_slice(&buf[..n]);
        } else {
            state.overrun = true;
            state.prefix = Vec::new();
        }
        self.pos += n;
        Ok(n)
    }
}
