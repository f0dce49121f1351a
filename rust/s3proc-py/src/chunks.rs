//! `ParquetChunks`: the converter as a Python iterator of `bytes`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use s3proc_core::{Event, ParquetChunks as Core, Plan};

use crate::errors;

/// Runs core work without the GIL, turning a panic into an error value.
pub(crate) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|p| errors::from_panic(py, p))
}

/// The converter's lock was poisoned by a panic caught earlier.
fn poisoned(py: Python<'_>) -> PyErr {
    errors::from_panic(py, Box::new("converter poisoned by an earlier panic"))
}

/// A CSV/TSV or JSON source converted to ZSTD Parquet, handed out as byte chunks.
#[pyclass(frozen, module = "s3proc._core")]
pub struct ParquetChunks {
    inner: Mutex<Core>,
}

impl ParquetChunks {
    /// Reads state under the lock, waiting for it without the GIL: a
    /// conversion in another thread may need the GIL to read its source.
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&Core) -> T + Send) -> PyResult<T> {
        detached(py, || self.inner.lock().ok().map(|core| f(&core)))?.ok_or_else(|| poisoned(py))
    }
}

#[pymethods]
impl ParquetChunks {
    #[new]
    #[pyo3(signature = (source, **options))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let opts = crate::options::parse(options)?;
        let src = crate::source::from_py(source, opts.name)?;
        let core = detached(py, move || Core::new(src, opts.convert))?
            .map_err(|e| errors::to_py(py, e))?;
        Ok(Self {
            inner: Mutex::new(core),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        // A long scan checks for signals (Ctrl-C) between pipeline steps, at
        // most every 100 ms: taking the GIL more often would slow the
        // conversion whenever another Python thread is busy.
        let mut signal: Option<PyErr> = None;
        let mut checked = Instant::now();
        let event = detached(py, || match self.inner.lock() {
            Ok(mut core) => Some(core.next_event_or_stop(&mut || {
                if checked.elapsed() < Duration::from_millis(100) {
                    return false;
                }
                checked = Instant::now();
                signal = Python::attach(|py| py.check_signals().err());
                signal.is_some()
            })),
            Err(_) => None,
        })?
        .ok_or_else(|| poisoned(py))?;
        match event {
            Err(s3proc_core::Error::Stopped) => {
                Err(signal.unwrap_or_else(|| errors::from_panic(py, Box::new("stopped"))))
            }
            Err(e) => Err(errors::to_py(py, e)),
            Ok(Some(Event::Chunk(bytes))) => Ok(Some(PyBytes::new(py, &bytes).unbind())),
            Ok(Some(Event::Restart(why))) => Err(errors::restart(py, why)),
            Ok(None) => Ok(None),
        }
    }

    /// Detected encoding, dialect and columns (widened after a restart).
    #[getter]
    fn plan<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let plan = self.with(py, Core::plan)?;
        plan_dict(py, &plan)
    }

    /// How many times chunks already handed out were voided.
    #[getter]
    fn restarts(&self, py: Python<'_>) -> PyResult<u32> {
        self.with(py, Core::restarts)
    }

    /// Rows written, once iteration has finished; else `None`.
    #[getter]
    fn rows(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.with(py, Core::rows)
    }

    /// What the conversion found worth a warning (values outside XML
    /// records, CSV bytes read as Windows-1252), once iteration has finished.
    #[getter]
    fn warnings(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |core| core.warnings().to_vec())
    }
}

/// Detects a source's format, encoding, dialect or layout and column types without converting it.
#[pyfunction]
#[pyo3(signature = (source, **options))]
pub fn inspect<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = crate::options::parse(options)?;
    let src: Arc<dyn s3proc_core::source::Source> = crate::source::from_py(source, opts.name)?;
    let convert = opts.convert;
    let plan = detached(py, move || s3proc_core::inspect(src.as_ref(), &convert))?
        .map_err(|e| errors::to_py(py, e))?;
    plan_dict(py, &plan)
}

/// The plan as a dict: `format`, `detected` (why), `encoding`, `columns`
/// `[(name, type)]`, and `dialect` (CSV) or `layout` (JSON).
fn plan_dict<'py>(py: Python<'py>, plan: &Plan) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let detected = plan.detected();
    out.set_item("format", detected.format.name())?;
    out.set_item("detected", detected.why.as_str())?;
    let plan = match plan {
        Plan::Csv(_, csv) => csv,
        Plan::Records(r) => {
            out.set_item("encoding", r.encoding.name())?;
            let columns = PyList::empty(py);
            for (name, ty) in r.columns() {
                columns.append((name, ty))?;
            }
            out.set_item("columns", columns)?;
            out.set_item("layout", r.reader.describe())?;
            return Ok(out);
        }
    };
    let d = &plan.dialect;
    let dialect = PyDict::new(py);
    dialect.set_item("delimiter", (d.delimiter as char).to_string())?;
    dialect.set_item("quote", d.quote.map(|q| (q as char).to_string()))?;
    dialect.set_item("escape", d.escape.name())?;
    dialect.set_item("terminator", (d.terminator as char).to_string())?;
    dialect.set_item("header", d.header)?;
    dialect.set_item("null_values", plan.nulls.to_strings())?;
    let columns = PyList::empty(py);
    for c in &plan.columns {
        columns.append((c.name.as_str(), c.ty.name()))?;
    }
    out.set_item("encoding", plan.encoding.name())?;
    out.set_item("dialect", dialect)?;
    out.set_item("columns", columns)?;
    Ok(out)
}
