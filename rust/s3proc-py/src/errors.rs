//! Core errors as the Python exceptions of `s3proc.errors`.

use std::any::Any;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use s3proc_core::Error;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An instance of `s3proc.errors.<class>` built from `args`.
fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = ERRORS
        .get_or_try_init(py, || py.import("s3proc.errors").map(Bound::unbind))
        .and_then(|m| m.bind(py).getattr(class))
        .and_then(|cls| cls.call1((message,)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// Maps a core error to its Python exception; a Python exception raised by
/// a file-like source comes back unchanged.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::Parse {
            source_name,
            line,
            reason,
        } => {
            let exc = raise(
                py,
                "ParseError",
                format!("{source_name}: line {line}: {reason}"),
            );
            let value = exc.value(py);
            let _ = value.setattr("source", source_name);
            let _ = value.setattr("line", line);
            let _ = value.setattr("reason", reason);
            exc
        }
        Error::Io { source_name, error } => {
            if error.get_ref().is_some_and(|e| e.is::<PyErr>()) {
                if let Some(inner) = error.into_inner() {
                    if let Ok(py_err) = inner.downcast::<PyErr>() {
                        return *py_err;
                    }
                }
                return raise(py, "SourceError", format!("{source_name}: read failed"));
            }
            raise(py, "SourceError", format!("{source_name}: {error}"))
        }
        Error::Option { option, reason } => raise(
            py,
            "OptionError",
            format!("invalid option {option}: {reason}"),
        ),
        Error::Archive {
            archive,
            entry,
            reason,
        } => {
            let message = Error::Archive {
                archive: archive.clone(),
                entry: entry.clone(),
                reason: reason.clone(),
            }
            .to_string();
            let exc = raise(py, "ArchiveError", message);
            let value = exc.value(py);
            let _ = value.setattr("archive", archive);
            let _ = value.setattr("entry", entry);
            let _ = value.setattr("reason", reason);
            exc
        }
        e @ Error::Parquet { .. } => raise(py, "S3procError", e.to_string()),
        e @ (Error::Internal { .. } | Error::Stopped) => raise(py, "InternalError", e.to_string()),
    }
}

/// A panic caught at the boundary: never let it cross into Python.
pub fn from_panic(py: Python<'_>, payload: Box<dyn Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    raise(
        py,
        "InternalError",
        format!("internal error in s3proc's core (please report): {what}"),
    )
}

/// The exception raised when chunks already handed out are void.
pub fn restart(py: Python<'_>, why: String) -> PyErr {
    raise(py, "SchemaRestart", why)
}

/// An `s3proc.OptionError` for option `key`.
pub fn option_error(py: Python<'_>, key: &str, why: String) -> PyErr {
    raise(py, "OptionError", format!("invalid option {key}: {why}"))
}

/// A `TypeError` for bad arguments.
pub fn type_error(msg: impl Into<String>) -> PyErr {
    PyTypeError::new_err(msg.into())
}
