//! Python bindings of s3proc's core, split by area. All policy lives in
//! Python; this crate only moves bytes and maps errors.

mod archive;
mod chunks;
mod errors;
mod options;
mod source;

use pyo3::prelude::*;

/// The compiled part of s3proc (`s3proc._core`).
#[pymodule]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::archive::{ArchiveEntry, ArchiveReader, EntryChunks};

    #[pymodule_export]
    use super::chunks::ParquetChunks;

    #[pymodule_export]
    use super::chunks::inspect;

    #[pymodule_export]
    use super::source::{parquet_footer_rows, sniff_compression};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        Ok(())
    }
}
