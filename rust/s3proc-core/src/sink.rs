//! The Parquet side: encoding columns in parallel into row groups and
//! handing the file out as byte chunks as soon as they are written.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::columns::Column;

/// How the Parquet file is laid out.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// ZSTD level, 1 to 22.
    pub zstd_level: i32,
    /// Most rows in one row group.
    pub row_group_rows: usize,
    /// Most encoded bytes in one row group (checked after each batch).
    pub row_group_bytes: usize,
    /// Smallest chunk handed out, except the last (S3 parts need 5 MiB).
    pub chunk_size: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_rows: 1 << 20,
            row_group_bytes: 64 << 20,
            chunk_size: 8 << 20,
        }
    }
}

/// Writes record batches as one Parquet file, column by column in parallel.
///
/// # Memory
/// One row group's encoded pages (bounded by `row_group_bytes` and
/// `row_group_rows`) plus the chunks not yet taken.
pub struct ParquetSink {
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    columns: Vec<ArrowColumnWriter>,
    rows_in_group: usize,
    groups: usize,
    opts: ParquetOptions,
    out: ChunkQueue,
}

impl ParquetSink {
    /// A sink for `columns` (already final types) with `opts`.
    ///
    /// # Errors
    /// An invalid ZSTD level or a schema the writer refuses.
    pub fn new(columns: &[Column], opts: &ParquetOptions) -> Result<Self, ParquetError> {
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| arrow_schema::Field::new(&c.name, c.ty.finalized().arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("s3proc {}", env!("CARGO_PKG_VERSION")))
            .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)));
        for c in columns {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), c.dictionary);
        }
        let options = ArrowWriterOptions::new().with_properties(props.build());
        let writer = ArrowWriter::try_new_with_options(Vec::new(), schema.clone(), options)?;
        let (writer, factory) = writer.into_serialized_writer()?;
        let columns = factory.create_column_writers(0)?;
        let mut sink = Self {
            writer,
            factory,
            schema,
            columns,
            rows_in_group: 0,
            groups: 0,
            opts: opts.clone(),
            out: ChunkQueue::default(),
        };
        sink.collect_output();
        Ok(sink)
    }

    /// Encodes one batch of columns (in schema order) of `rows` rows.
    ///
    /// # Errors
    /// Encoding errors of the Parquet writer.
    pub fn write(&mut self, arrays: &[ArrayRef], rows: usize) -> Result<(), ParquetError> {
        let mut offset = 0;
        while offset < rows {
            let take = (rows - offset).min(self.opts.row_group_rows - self.rows_in_group);
            let fields = self.schema.fields();
            self.columns
                .par_iter_mut()
                .zip(arrays.par_iter())
                .zip(fields.par_iter())
                .try_for_each(|((writer, array), field)| {
                    let slice = if take == rows { array.clone() } else { array.slice(offset, take) };
                    for leaf in compute_leaves(field, &slice)? {
                        writer.write(&leaf)?;
                    }
                    Ok::<_, ParquetError>(())
                })?;
            offset += take;
            self.rows_in_group += take;
            let bytes: usize = self.columns.iter().map(|c| c.get_estimated_total_bytes()).sum();
            if self.rows_in_group >= self.opts.row_group_rows || bytes >= self.opts.row_group_bytes {
                self.flush_group()?;
            }
        }
        Ok(())
    }

    fn flush_group(&mut self) -> Result<(), ParquetError> {
        if self.rows_in_group == 0 {
            return Ok(());
        }
        self.groups += 1;
        let next = self.factory.create_column_writers(self.groups)?;
        let writers = std::mem::replace(&mut self.columns, next);
        let chunks = writers
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<Vec<_>, _>>()?;
        let mut group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.rows_in_group = 0;
        self.collect_output();
        Ok(())
    }

    fn collect_output(&mut self) {
        let bytes = std::mem::take(self.writer.inner_mut());
        self.out.push(bytes);
    }

    /// The next chunk of at least `chunk_size` bytes, if that much is ready.
    pub fn take_chunk(&mut self) -> Option<Vec<u8>> {
        (self.out.len() >= self.opts.chunk_size).then(|| self.out.pop(self.opts.chunk_size))
    }

    /// Writes the last row group and the footer with `metadata`; returns
    /// every byte not yet taken, in chunks.
    ///
    /// # Errors
    /// Encoding errors of the Parquet writer.
    pub fn finish(mut self, metadata: Vec<(String, String)>) -> Result<Vec<Vec<u8>>, ParquetError> {
        self.flush_group()?;
        for (k, v) in metadata {
            self.writer.append_key_value_metadata(KeyValue::new(k, v));
        }
        self.writer.finish()?;
        self.collect_output();
        let mut chunks = Vec::new();
        while self.out.len() > 0 {
            let n = if self.out.len() >= 2 * self.opts.chunk_size {
                self.opts.chunk_size
            } else {
                self.out.len()
            };
            chunks.push(self.out.pop(n));
        }
        Ok(chunks)
    }

    /// Bytes held in encoded pages and queued output.
    pub fn memory_size(&self) -> usize {
        self.columns.iter().map(ArrowColumnWriter::memory_size).sum::<usize>() + self.out.len()
    }
}

/// Bytes written but not yet handed out, as a queue of segments.
#[derive(Default)]
struct ChunkQueue {
    segments: VecDeque<Vec<u8>>,
    head: usize,
    len: usize,
}

impl ChunkQueue {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.segments.push_back(bytes);
        }
    }

    /// Removes the first `n` bytes (at most `len`), copying each byte once.
    fn pop(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len);
        if self.head == 0 && self.segments.front().is_some_and(|s| s.len() == n) {
            self.len -= n;
            return self.segments.pop_front().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(seg) = self.segments.front() else { break };
            let take = (seg.len() - self.head).min(n - out.len());
            out.extend_from_slice(&seg[self.head..self.head + take]);
            self.head += take;
            if self.head == seg.len() {
                self.segments.pop_front();
                self.head = 0;
            }
        }
        self.len -= out.len();
        out
    }
}
