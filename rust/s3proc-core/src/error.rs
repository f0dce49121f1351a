//! The one error type of the core, with the context a person needs to act.

use std::io;

/// Everything that can go wrong while reading or converting a source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not data s3proc can convert: the file, the line and why.
    #[error("{source_name}: line {line}: {reason}")]
    Parse {
        /// Name of the source (a path, or the name given by the caller).
        source_name: String,
        /// 1-based physical line where the problem starts.
        line: u64,
        /// What is wrong, in words.
        reason: String,
    },
    /// Reading the source failed.
    #[error("{source_name}: {error}")]
    Io {
        /// Name of the source.
        source_name: String,
        /// The underlying I/O error (it may carry a Python exception).
        #[source]
        error: io::Error,
    },
    /// An option has a value the converter cannot use.
    #[error("invalid option {option}: {reason}")]
    Option {
        /// The option's name, as the caller spells it.
        option: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Encoding Parquet failed (a bug or a limit of the writer, not bad input).
    #[error("{source_name}: writing Parquet failed: {error}")]
    Parquet {
        /// Name of the source.
        source_name: String,
        /// The writer's error.
        #[source]
        error: parquet::errors::ParquetError,
    },
    /// An archive is corrupt, truncated, encrypted, unsupported, or past a
    /// limit: the archive as a whole failed, whatever entries came before.
    #[error("{archive}: {}{reason}", entry.as_ref().map(|e| format!("entry {e:?}: ")).unwrap_or_default())]
    Archive {
        /// Name of the (outermost) archive.
        archive: String,
        /// Path of the entry concerned, nested entries as `outer/inner`;
        /// `None` when the archive itself is at fault.
        entry: Option<String>,
        /// What is wrong, in words.
        reason: String,
    },
    /// The caller asked to stop (for example on Ctrl-C).
    #[error("stopped")]
    Stopped,
    /// A bug: a worker thread panicked or vanished.
    #[error("{source_name}: internal error: {what}")]
    Internal {
        /// Name of the source.
        source_name: String,
        /// What happened.
        what: String,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::Parse`] for `source_name` at `line`.
    pub fn parse(source_name: &str, line: u64, reason: impl Into<String>) -> Self {
        Error::Parse {
            source_name: source_name.to_owned(),
            line,
            reason: reason.into(),
        }
    }

    /// The [`Error::Parse`] of a table wider than `max_columns`.
    pub fn too_many_columns(source_name: &str, line: u64, columns: usize, max: usize) -> Self {
        Error::parse(
            source_name,
            line,
            format!(
                "{columns} columns, more than max_columns ({max}): not a table with a fixed set of columns, or raise the limit"
            ),
        )
    }

    /// An [`Error::Parquet`] for `source_name`.
    pub fn parquet(source_name: &str, error: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            source_name: source_name.to_owned(),
            error,
        }
    }

    /// An [`Error::Internal`] for `source_name`.
    pub fn internal(source_name: &str, what: impl Into<String>) -> Self {
        Error::Internal {
            source_name: source_name.to_owned(),
            what: what.into(),
        }
    }

    /// An [`Error::Archive`] about `entry` of `archive` (or the archive itself).
    pub fn archive(archive: &str, entry: Option<&str>, reason: impl Into<String>) -> Self {
        Error::Archive {
            archive: archive.to_owned(),
            entry: entry.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] for `source_name`; a [`Malformed`] read is the
    /// [`Error::Parse`] it stands for.
    pub fn io(source_name: &str, mut error: io::Error) -> Self {
        if error.get_ref().is_some_and(|e| e.is::<Malformed>()) {
            let kind = error.kind();
            match error.into_inner().map(|e| e.downcast::<Malformed>()) {
                Some(Ok(m)) => return Error::parse(source_name, m.line, m.reason),
                Some(Err(other)) => error = io::Error::new(kind, other),
                None => error = io::Error::from(kind),
            }
        }
        Error::Io {
            source_name: source_name.to_owned(),
            error,
        }
    }
}

/// Text that a reader (a transcoder) cannot read: carried in an
/// [`io::Error`] through readers that know nothing of lines, it becomes an
/// [`Error::Parse`] in [`Error::io`].
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Malformed {
    /// 1-based line of the text where it is.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}
