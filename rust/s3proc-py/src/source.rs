//! Sources given from Python: a path (read in Rust) or a binary file-like
//! object (read through Python, and sought back to re-read it).

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use s3proc_core::source::{BytesSource, FileSource, Source};

/// Turns the `source` argument into a core source.
pub fn from_py(obj: &Bound<'_, PyAny>, name: Option<String>) -> PyResult<Arc<dyn Source>> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        let path: PathBuf = obj.extract()?;
        return Ok(match name {
            Some(n) => Arc::new(NamedFile(FileSource::new(path), n)),
            None => Arc::new(FileSource::new(path)),
        });
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        let data: Arc<[u8]> = b.as_bytes().into();
        return Ok(Arc::new(BytesSource {
            data,
            name: name.unwrap_or_else(|| "<bytes>".into()),
        }));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        let data: Arc<[u8]> = b.to_vec().into();
        return Ok(Arc::new(BytesSource {
            data,
            name: name.unwrap_or_else(|| "<bytes>".into()),
        }));
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
            obj: obj.clone().unbind(),
            name,
            start,
            opened: AtomicBool::new(false),
        }));
    }
    Err(crate::errors::type_error(
        "source must be a path, bytes or a binary file-like object with read()",
    ))
}

/// A path under a caller-chosen name.
struct NamedFile(FileSource, String);

impl Source for NamedFile {
    fn name(&self) -> &str {
        &self.1
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        self.0.open()
    }
}

/// A binary file-like object; re-opening seeks back to where it started.
struct PyFileLike {
    obj: Py<PyAny>,
    name: String,
    start: Option<u64>,
    opened: AtomicBool,
}

impl Source for PyFileLike {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        if self.opened.swap(true, Ordering::SeqCst) {
            let Some(start) = self.start else {
                return Err(io::Error::other(
                    "the stream is not seekable and must be read again (a late value widened a column); \
                     pass a path or a seekable file, or sample_rows=None",
                ));
            };
            Python::attach(|py| self.obj.bind(py).call_method1("seek", (start,)).map(drop))
                .map_err(io::Error::other)?;
        }
        let obj = Python::attach(|py| self.obj.clone_ref(py));
        Ok(Box::new(PyReader { obj }))
    }
}

struct PyReader {
    obj: Py<PyAny>,
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let got = self.obj.bind(py).call_method1("read", (buf.len(),))?;
            if got.is_none() {
                return Ok(0);
            }
            let bytes = got.cast::<PyBytes>().map_err(PyErr::from)?;
            let data = bytes.as_bytes();
            if data.len() > buf.len() {
                return Err(crate::errors::type_error(
                    "read(n) returned more than n bytes",
                ));
            }
            buf[..data.len()].copy_from_slice(data);
            Ok(data.len())
        })
        .map_err(|e: PyErr| io::Error::other(e))
    }
}
