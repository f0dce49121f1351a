//! The Parquet side: encoding columns in parallel into row groups and
//! handing the file out as byte chunks as soon as they are written.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
    ArrowWriterOptions,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::columns::Column;

/// Batches queued per column before `write` waits (bounds memory).
const LANE_DEPTH: usize = 3;

/// How the Parquet file is laid out.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// ZSTD level, 1 to 22.
    pub zstd_level: i32,
    /// Most rows in one row group.
    pub row_group_rows: usize,
    /// Most Arrow (decoded, uncompressed) bytes in one row group, checked
    /// after each batch. Counting input rather than encoder state keeps the
    /// row groups, and so the file, the same on every run.
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
/// Each column is a *lane*: a queue of batches encoded in order by at most
/// one rayon task at a time. Lanes never wait for each other, so a heavy
/// column (long text) does not hold the light ones back, and `write`
/// returns as soon as the batch is queued.
///
/// # Memory
/// One row group's encoded pages (bounded by `row_group_bytes` and
/// `row_group_rows`), up to [`LANE_DEPTH`] queued batches per column, plus
/// the chunks not yet taken.
pub struct ParquetSink {
    /// The writer, set up at the first batch (see [`Self::open`]).
    open: Option<Open>,
    schema: SchemaRef,
    /// Dictionary encoding on or off, by column path (default: on).
    dictionary: Vec<(String, bool)>,
    /// The encoding of each leaf column that has one without a dictionary.
    encodings: Vec<(ColumnPath, Encoding)>,
    /// Parquet leaf columns of each top-level field.
    leaves: Vec<usize>,
    rows_in_group: usize,
    bytes_in_group: usize,
    groups: usize,
    opts: ParquetOptions,
    /// Encode in the calling thread instead of on the pool (see [`Self::inline`]).
    inline: bool,
}

/// The file being written.
struct Open {
    writer: SerializedFileWriter<ChunkQueue>,
    factory: ArrowRowGroupWriterFactory,
    lanes: Arc<Lanes>,
}

/// The number of rows a Parquet file's footer gives: `footer` is its
/// metadata, the bytes before the last 8 (length and `PAR1`).
///
/// # Errors
/// Bytes that are not a Parquet footer.
pub fn footer_rows(footer: &[u8]) -> Result<i64, ParquetError> {
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(footer)?;
    Ok(meta.file_metadata().num_rows())
}

/// Values of a column's first batch that judge its ZSTD level.
const LEVEL_SAMPLE_BYTES: usize = 64 << 10;

/// Whether ZSTD at `level` makes `sample` at least 1% smaller than level 1
/// does. On near-unique text such as UUIDs it does not: level 3 then takes
/// twice level 1's time for a slightly larger result.
fn level_pays(sample: &[u8], level: i32) -> bool {
    if level <= 1 || sample.len() < 4096 {
        return true;
    }
    let size = |l| zstd::bulk::compress(sample, l).map_or(usize::MAX, |c| c.len());
    (size(level) as f64) < 0.99 * size(1) as f64
}

/// The start of a string column's values, as one byte run; None when the
/// whole batch fits in the sample: judging would then cost more than any
/// level could save (a small file keeps the level asked for).
fn string_sample(array: &ArrayRef) -> Option<&[u8]> {
    let a = array.as_any().downcast_ref::<StringArray>()?;
    let offsets = a.value_offsets();
    let (first, last) = (*offsets.first()? as usize, *offsets.last()? as usize);
    if last - first <= LEVEL_SAMPLE_BYTES {
        return None;
    }
    a.value_data().get(first..first + LEVEL_SAMPLE_BYTES)
}

/// What `array` adds to a row group's encoded size, roughly: the memory of
/// its leaf values, less the share of the missing ones, which cost the
/// writer a definition level each (a sparse column of a wide schema would
/// otherwise close row groups of a few thousand rows, each with every
/// column's metadata).
fn present_bytes(array: &dyn Array) -> usize {
    if let Some(s) = array.as_struct_opt() {
        return s.columns().iter().map(|c| present_bytes(c.as_ref())).sum();
    }
    if let Some(l) = array.as_list_opt::<i32>() {
        return present_bytes(l.values().as_ref());
    }
    let size = array.to_data().get_slice_memory_size().unwrap_or(0);
    let rows = array.len();
    if rows == 0 {
        return 0;
    }
    size / rows * (rows - array.null_count())
}

impl ParquetSink {
    /// A sink for `columns` (already final types) with `opts`.
    ///
    /// # Errors
    /// An invalid ZSTD level or a schema the writer refuses.
    pub fn new(columns: &[Column], opts: &ParquetOptions) -> Result<Self, ParquetError> {
        let fields = columns
            .iter()
            .map(|c| arrow_schema::Field::new(&c.name, c.ty.finalized().arrow_type(), true))
            .collect::<Vec<_>>();
        let dictionary: Vec<(String, bool)> = columns
            .iter()
            .map(|c| (c.name.clone(), c.dictionary))
            .collect();
        Self::with_fields(fields, &dictionary, opts)
    }

    /// A sink for Arrow `fields` (nested ones too); `dictionary` turns
    /// dictionary encoding on or off by column path (default: on).
    ///
    /// # Errors
    /// An invalid ZSTD level, no field, or a schema the writer refuses.
    pub fn with_fields(
        fields: Vec<arrow_schema::Field>,
        dictionary: &[(String, bool)],
        opts: &ParquetOptions,
    ) -> Result<Self, ParquetError> {
        if fields.is_empty() {
            return Err(ParquetError::General("no columns to write".into()));
        }
        let leaves: Vec<usize> = fields.iter().map(|f| leaf_count(f.data_type())).collect();
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        ZstdLevel::try_new(opts.zstd_level)?;
        let encodings = ArrowSchemaConverter::new()
            .convert(&schema)?
            .columns()
            .iter()
            .filter_map(|leaf| {
                Some((
                    leaf.path().clone(),
                    fallback_encoding(leaf.physical_type())?,
                ))
            })
            .collect();
        Ok(Self {
            open: None,
            leaves,
            schema,
            dictionary: dictionary.to_vec(),
            encodings,
            rows_in_group: 0,
            bytes_in_group: 0,
            groups: 0,
            opts: opts.clone(),
            inline: false,
        })
    }

    /// Encodes every column in the calling thread: for a small input, where
    /// handing each column to the pool and waiting for it costs more than
    /// encoding it here (several files are converted at once anyway).
    #[must_use]
    pub fn inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// The writer, set up by the first call (see [`Self::start`]).
    fn open(&mut self, first: Option<&[ArrayRef]>) -> Result<&mut Open, ParquetError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.start(first)?,
        };
        Ok(self.open.insert(open))
    }

    /// Sets up the writer. A string column without a dictionary is
    /// compressed at the ZSTD level asked for only where the start of its
    /// `first` batch shows that this level pays (see [`level_pays`]);
    /// elsewhere at level 1, faster and no larger.
    fn start(&self, first: Option<&[ArrayRef]>) -> Result<Open, ParquetError> {
        let level = self.opts.zstd_level;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(level)?))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            // v1 pages: definition levels are compressed with the values (v2 keeps them
            // raw); the v2 delta encodings are kept per leaf below.
            .set_data_page_row_count_limit(1 << 20)
            .set_data_page_size_limit(2 << 20)
            .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_1_0)
            .set_created_by(format!("s3proc {}", env!("CARGO_PKG_VERSION")));
        for (path, encoding) in &self.encodings {
            props = props.set_column_encoding(path.clone(), *encoding);
        }
        for (path, on) in &self.dictionary {
            props = props.set_column_dictionary_enabled(ColumnPath::from(path.as_str()), *on);
        }
        for (j, field) in self.schema.fields().iter().enumerate() {
            let name = field.name();
            let plain = self.dictionary.iter().any(|(p, on)| p == name && !on);
            let sample = first.and_then(|a| a.get(j)).and_then(string_sample);
            if plain && sample.is_some_and(|s| !level_pays(s, level)) {
                let one = Compression::ZSTD(ZstdLevel::try_new(1)?);
                props = props.set_column_compression(ColumnPath::from(name.as_str()), one);
            }
        }
        let options = ArrowWriterOptions::new().with_properties(props.build());
        let writer = ArrowWriter::try_new_with_options(
            ChunkQueue::new(self.opts.chunk_size),
            self.schema.clone(),
            options,
        )?;
        let (writer, factory) = writer.into_serialized_writer()?;
        let lanes = Arc::new(Lanes::new(
            group_writers(factory.create_column_writers(0)?, &self.leaves),
            self.inline,
        ));
        Ok(Open {
            writer,
            factory,
            lanes,
        })
    }

    /// Queues one batch of columns (in schema order) of `rows` rows for
    /// encoding; waits only while a column already has [`LANE_DEPTH`]
    /// batches queued.
    ///
    /// # Errors
    /// Encoding errors of the Parquet writer (possibly of an earlier batch).
    pub fn write(&mut self, arrays: &[ArrayRef], rows: usize) -> Result<(), ParquetError> {
        let lanes = Arc::clone(&self.open(Some(arrays))?.lanes);
        let mut offset = 0;
        while offset < rows {
            let take = (rows - offset).min(self.opts.row_group_rows - self.rows_in_group);
            let fields = self.schema.fields();
            lanes.wait_until(|queued| queued < LANE_DEPTH)?;
            for (j, (array, field)) in arrays.iter().zip(fields.iter()).enumerate() {
                let slice = if take == rows {
                    array.clone()
                } else {
                    array.slice(offset, take)
                };
                self.bytes_in_group += present_bytes(slice.as_ref());
                Lanes::push(&lanes, j, Work::Batch(slice, field.clone()));
            }
            offset += take;
            self.rows_in_group += take;
            if self.rows_in_group >= self.opts.row_group_rows
                || self.bytes_in_group >= self.opts.row_group_bytes
            {
                self.end_group(false)?;
            }
            self.append_closed_groups()?;
        }
        Ok(())
    }

    /// Ends the row group: each lane closes its column chunk when it gets
    /// there, and goes on with the next group's writer meanwhile (none after
    /// the `last` group).
    fn end_group(&mut self, last: bool) -> Result<(), ParquetError> {
        if self.rows_in_group == 0 {
            return Ok(());
        }
        // Rows were written, so the writer is open.
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        self.groups += 1;
        let next: Vec<Option<Vec<ArrowColumnWriter>>> = if last {
            (0..self.leaves.len()).map(|_| None).collect()
        } else {
            group_writers(
                open.factory.create_column_writers(self.groups)?,
                &self.leaves,
            )
            .into_iter()
            .map(Some)
            .collect()
        };
        for (j, writer) in next.into_iter().enumerate() {
            Lanes::push(&open.lanes, j, Work::Close(writer));
        }
        self.rows_in_group = 0;
        self.bytes_in_group = 0;
        Ok(())
    }

    /// Writes every row group whose columns are all closed, in order.
    fn append_closed_groups(&mut self) -> Result<(), ParquetError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        while let Some(chunks) = open.lanes.take_closed_group()? {
            let mut group = open.writer.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut group)?;
            }
            group.close()?;
        }
        Ok(())
    }

    /// The next chunk of at least `chunk_size` bytes, if that much is ready.
    ///
    /// # Errors
    /// Encoding errors of the Parquet writer.
    pub fn take_chunk(&mut self) -> Result<Option<Vec<u8>>, ParquetError> {
        self.append_closed_groups()?;
        let size = self.opts.chunk_size;
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        let out = open.writer.inner_mut();
        Ok((out.len() >= size).then(|| out.pop(size)))
    }

    /// Writes the last row group and the footer with `metadata`; returns
    /// every byte not yet taken, in chunks.
    ///
    /// # Errors
    /// Encoding errors of the Parquet writer.
    pub fn finish(mut self, metadata: Vec<(String, String)>) -> Result<Vec<Vec<u8>>, ParquetError> {
        self.end_group(true)?;
        let lanes = Arc::clone(&self.open(None)?.lanes);
        lanes.wait_until(|queued| queued == 0)?;
        self.append_closed_groups()?;
        let size = self.opts.chunk_size;
        let open = self.open(None)?;
        for (k, v) in metadata {
            open.writer.append_key_value_metadata(KeyValue::new(k, v));
        }
        open.writer.finish()?;
        let out = open.writer.inner_mut();
        let mut chunks = Vec::new();
        while out.len() > 0 {
            let n = if out.len() >= 2 * size {
                size
            } else {
                out.len()
            };
            chunks.push(out.pop(n));
        }
        Ok(chunks)
    }
}

/// The encoding of a leaf column without a dictionary (or whose dictionary
/// outgrew its page): deltas for integers, dates and timestamps and for
/// byte arrays (near-unique strings share prefixes); plain otherwise
/// (doubles; booleans bit-packed).
fn fallback_encoding(t: PhysicalType) -> Option<Encoding> {
    match t {
        PhysicalType::INT32 | PhysicalType::INT64 => Some(Encoding::DELTA_BINARY_PACKED),
        PhysicalType::BYTE_ARRAY => Some(Encoding::DELTA_BYTE_ARRAY),
        _ => None,
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        // A sink dropped half-way (a restart) leaves no work queued behind.
        for lane in self.open.iter().flat_map(|o| &o.lanes.lanes) {
            if let Ok(mut lane) = lane.try_lock() {
                lane.queue.clear();
            }
        }
    }
}

/// The per-column encoding queues.
struct Lanes {
    lanes: Vec<Mutex<Lane>>,
    /// Work is done in the thread that queues it, not on the pool.
    inline: bool,
    /// Signalled whenever a lane finishes a piece of work.
    progress: Condvar,
    progress_lock: Mutex<()>,
}

/// What a lane is asked to do, in order.
enum Work {
    /// Encode this column slice.
    Batch(ArrayRef, arrow_schema::FieldRef),
    /// Close the column chunks of the current row group; go on with these
    /// writers (none after the last group).
    Close(Option<Vec<ArrowColumnWriter>>),
}

struct Lane {
    /// The writers of the field's leaf columns; `None` while a task is using them.
    writer: Option<Vec<ArrowColumnWriter>>,
    queue: VecDeque<Work>,
    /// Work queued or being done.
    queued: usize,
    busy: bool,
    /// Closed chunks of row groups not yet written to the file.
    closed: VecDeque<Vec<ArrowColumnChunk>>,
    error: Option<ParquetError>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a lane is caught and stored as an error, so a poisoned
    // lock still guards consistent data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Lanes {
    fn new(writers: Vec<Vec<ArrowColumnWriter>>, inline: bool) -> Self {
        Self {
            inline,
            lanes: writers
                .into_iter()
                .map(|writer| {
                    Mutex::new(Lane {
                        writer: Some(writer),
                        queue: VecDeque::new(),
                        queued: 0,
                        busy: false,
                        closed: VecDeque::new(),
                        error: None,
                    })
                })
                .collect(),
            progress: Condvar::new(),
            progress_lock: Mutex::new(()),
        }
    }

    fn push(this: &Arc<Self>, j: usize, work: Work) {
        let mut lane = lock(&this.lanes[j]);
        lane.queue.push_back(work);
        lane.queued += 1;
        if lane.busy {
            return;
        }
        lane.busy = true;
        drop(lane);
        if this.inline {
            this.drain(j);
        } else {
            let lanes = Arc::clone(this);
            rayon::spawn(move || lanes.drain(j));
        }
    }

    /// Works through lane `j`'s queue until it is empty (runs on the pool,
    /// or in the caller's thread when inline).
    /// The writer is taken out of the lane while it works, so the driver can
    /// queue more work meanwhile.
    fn drain(&self, j: usize) {
        loop {
            let (work, writer) = {
                let mut lane = lock(&self.lanes[j]);
                let work = if lane.error.is_none() {
                    lane.queue.pop_front()
                } else {
                    None
                };
                let next = match (work, lane.writer.take()) {
                    (Some(work), Some(writer)) => Some((work, writer)),
                    (Some(_), None) => {
                        lane.error = Some(ParquetError::General(
                            "a column lane lost its writer".into(),
                        ));
                        None
                    }
                    (None, writer) => {
                        lane.writer = writer;
                        None
                    }
                };
                let Some(next) = next else {
                    // Done: nothing queued, or an error stops this lane.
                    lane.queue.clear();
                    lane.queued = 0;
                    lane.busy = false;
                    drop(lane);
                    self.notify();
                    return;
                };
                next
            };
            let mut writer = Some(writer);
            let mut closed = None;
            let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), ParquetError> {
                match work {
                    Work::Batch(array, field) => {
                        if let Some(writers) = writer.as_mut() {
                            let leaves = compute_leaves(&field, &array)?;
                            if leaves.len() != writers.len() {
                                return Err(ParquetError::General(
                                    "a column's leaves do not match its writers".into(),
                                ));
                            }
                            for (leaf, w) in leaves.iter().zip(writers.iter_mut()) {
                                w.write(leaf)?;
                            }
                        }
                    }
                    Work::Close(next) => {
                        if let Some(done) = writer.take() {
                            closed = Some(
                                done.into_iter()
                                    .map(ArrowColumnWriter::close)
                                    .collect::<Result<Vec<_>, _>>()?,
                            );
                        }
                        writer = next;
                    }
                }
                Ok(())
            }))
            .unwrap_or_else(|_| Err(ParquetError::General("a column encoder panicked".into())));
            let mut lane = lock(&self.lanes[j]);
            lane.writer = writer;
            lane.queued -= 1;
            lane.closed.extend(closed);
            if let Err(e) = result {
                lane.error = Some(e);
            }
            drop(lane);
            self.notify();
        }
    }

    fn notify(&self) {
        let _guard = lock(&self.progress_lock);
        self.progress.notify_all();
    }

    /// Waits until every lane's queue length satisfies `ok`; reports the
    /// first encoding error.
    fn wait_until(&self, ok: impl Fn(usize) -> bool) -> Result<(), ParquetError> {
        let mut guard = lock(&self.progress_lock);
        loop {
            let mut all = true;
            for lane in &self.lanes {
                let mut lane = lock(lane);
                if let Some(e) = lane.error.take() {
                    return Err(e);
                }
                all &= ok(lane.queued);
            }
            if all {
                return Ok(());
            }
            guard = self
                .progress
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The oldest row group's chunks, once every column has closed it.
    fn take_closed_group(&self) -> Result<Option<Vec<ArrowColumnChunk>>, ParquetError> {
        let mut lanes: Vec<_> = self.lanes.iter().map(lock).collect();
        if let Some(e) = lanes.iter_mut().find_map(|l| l.error.take()) {
            return Err(e);
        }
        if lanes.iter().any(|l| l.closed.is_empty()) {
            return Ok(None);
        }
        Ok(Some(
            lanes
                .iter_mut()
                .filter_map(|l| l.closed.pop_front())
                .flatten()
                .collect(),
        ))
    }
}

/// How many Parquet leaf columns a field of type `ty` has.
fn leaf_count(ty: &arrow_schema::DataType) -> usize {
    use arrow_schema::DataType;
    match ty {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => leaf_count(f.data_type()),
        _ => 1,
    }
}

/// The leaf writers (in schema order) grouped by top-level field.
fn group_writers(writers: Vec<ArrowColumnWriter>, leaves: &[usize]) -> Vec<Vec<ArrowColumnWriter>> {
    let mut it = writers.into_iter();
    leaves
        .iter()
        .map(|&n| it.by_ref().take(n).collect())
        .collect()
}

/// Bytes written but not yet handed out, as a queue of segments of
/// `chunk_size` bytes: a full segment is handed out as it is, so each byte
/// is copied once on its way in and never again.
struct ChunkQueue {
    segments: VecDeque<Vec<u8>>,
    segment: usize,
    head: usize,
    len: usize,
}

impl std::io::Write for ChunkQueue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = match self.segments.back() {
                Some(last) if last.len() < self.segment => self.segment - last.len(),
                _ => {
                    // Grown as written past 64 MiB: a chunk size of gigabytes is
                    // not taken up front.
                    self.segments
                        .push_back(Vec::with_capacity(self.segment.min(64 << 20)));
                    self.segment
                }
            };
            let n = room.min(rest.len());
            if let Some(last) = self.segments.back_mut() {
                last.extend_from_slice(&rest[..n]);
            }
            rest = &rest[n..];
        }
        self.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChunkQueue {
    fn new(segment: usize) -> Self {
        Self {
            segments: VecDeque::new(),
            segment,
            head: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
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
            let Some(seg) = self.segments.front() else {
                break;
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Text from a small xorshift generator (fixed seed).
    fn text(words: &[&str], n: usize) -> Vec<u8> {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::new();
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(words[(seed % words.len() as u64) as usize].as_bytes());
        }
        out
    }

    #[test]
    fn an_inline_sink_writes_what_the_pooled_one_writes() {
        use arrow_array::{Int64Array, StringArray};
        let fields = vec![
            arrow_schema::Field::new("n", arrow_schema::DataType::Int64, true),
            arrow_schema::Field::new("s", arrow_schema::DataType::Utf8, true),
        ];
        let opts = ParquetOptions {
            row_group_rows: 1000,
            chunk_size: 4096,
            ..ParquetOptions::default()
        };
        let words = ["alpha ", "beta ", "gamma "];
        let write = |sink: ParquetSink| {
            let mut sink = sink;
            let mut out = Vec::new();
            for b in 0..5i64 {
                let n: ArrayRef = Arc::new(Int64Array::from_iter_values((0..700).map(|i| i * b)));
                let s: ArrayRef = Arc::new(StringArray::from_iter_values(
                    (0..700).map(|i| words[(i + b as usize) % 3].repeat(i % 7)),
                ));
                sink.write(&[n, s], 700).expect("writes");
                while let Some(chunk) = sink.take_chunk().expect("chunk") {
                    out.extend(chunk);
                }
            }
            for chunk in sink.finish(vec![]).expect("finishes") {
                out.extend(chunk);
            }
            out
        };
        let pooled = write(ParquetSink::with_fields(fields.clone(), &[], &opts).expect("sink"));
        let inline = write(
            ParquetSink::with_fields(fields, &[], &opts)
                .expect("sink")
                .inline(),
        );
        assert!(pooled.len() > 4096 && pooled.starts_with(b"PAR1"));
        assert_eq!(pooled, inline);
    }

    #[test]
    fn a_higher_level_is_kept_only_where_it_pays() {
        // Random hex (UUIDs): level 3 is no smaller than level 1.
        let hex: Vec<&str> = "0123456789abcdef-"
            .split("")
            .filter(|s| !s.is_empty())
            .collect();
        assert!(!level_pays(&text(&hex, 60_000), 3));
        // Prose from a small vocabulary: level 3 is clearly smaller.
        let prose = [
            "the ", "parcel ", "arrived ", "late, ", "refund ", "ok. ", "size ",
        ];
        assert!(level_pays(&text(&prose, 12_000), 3));
        // Too little to judge, or nothing above level 1 asked for.
        assert!(level_pays(&text(&hex, 1000), 3));
        assert!(level_pays(&text(&hex, 60_000), 1));
        // A column whose first batch fits in the sample is not judged at all.
        let column = |n: usize| -> ArrayRef {
            Arc::new(arrow_array::StringArray::from_iter_values(
                (0..n).map(|i| format!("{i:08}")),
            ))
        };
        assert!(string_sample(&column(1000)).is_none());
        let large = column(20_000);
        let sample = string_sample(&large).expect("a sample");
        assert_eq!(sample.len(), LEVEL_SAMPLE_BYTES);
        assert!(sample.starts_with(b"0000000000000001"));
    }
}
