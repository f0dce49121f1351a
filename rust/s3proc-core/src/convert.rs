//! The conversion entry point, [`ParquetChunks`], which detects the format
//! and hands the source to its driver; and the CSV/TSV driver: a pull-based
//! pipeline that turns a CSV/TSV source into Parquet chunks, on all cores,
//! restarting when a late value widens a column.
//!
//! A reader thread splits the input into record-aligned pieces; up to
//! [`crate::pipeline::LOOKAHEAD`] pieces are parsed at once as tasks on the rayon pool while
//! the driver hands the oldest parsed piece to the Parquet sink, whose
//! per-column lanes encode on the same pool. Nothing waits at a barrier: a
//! core that finishes its column takes the next parse task.
//!
//! Types only ever widen, and widening is a join, so pieces parsed ahead
//! with older types still give the right answer when their results are
//! joined in order.

use std::sync::Arc;

use rayon::prelude::*;

use crate::columns::{build, Column};
use crate::csv::records::{self, Field, Trouble};
use crate::csv::sniff::{sniff, sniff_then, CsvPlan};
use crate::csv::split::{RawChunk, SplitMode, Splitter};
use crate::csv::CsvOptions;
use crate::detect::{detect, Detected, Format, FormatChoice};
use crate::error::{Error, Result};
use crate::pipeline::{Job, Pipeline};
use crate::record_chunks::{sample, RecordChunks, RecordPlan, RecordReader};
use crate::sink::{ParquetOptions, ParquetSink};
use crate::source::{file_metadata, open_text, utf8_lossless, Source, TextEncoding};
use crate::types::ColumnType;
use crate::xml::XmlOptions;

/// Everything a conversion can be told.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// How the CSV is read.
    pub csv: CsvOptions,
    /// How the Parquet file is written.
    pub parquet: ParquetOptions,
    /// Bytes of input per parsing piece.
    pub read_size: Option<usize>,
    /// The input format; `None` detects it from the name and the content.
    pub format: Option<FormatChoice>,
    /// How XML is read (the record element, limits).
    pub xml: XmlOptions,
}

const DEFAULT_READ_SIZE: usize = 2 << 20;

/// Largest `max_record_bytes` accepted: a piece (a record plus what was
/// read before it) must stay within what [`records`] can address.
const MAX_RECORD_LIMIT: usize = records::MAX_PIECE.div_ceil(2);

/// What the iterator hands out.
#[derive(Debug)]
pub enum Event {
    /// The next bytes of the Parquet file.
    Chunk(Vec<u8>),
    /// Chunks already handed out are void: a value widened a column, and the
    /// file starts again from its first byte with the next chunk.
    Restart(String),
}

/// Why a pass stopped before its end.
enum Interrupt {
    /// A piece was cut inside a quoted field: split exactly instead.
    Misaligned,
}

/// A Parquet file produced chunk by chunk from a re-readable source, of
/// any supported format.
pub struct ParquetChunks {
    inner: Driver,
}

enum Driver {
    Csv(Detected, CsvChunks),
    Records(RecordChunks),
}

/// What was detected about a source (and, after a restart, widened).
#[derive(Clone, Debug)]
pub enum Plan {
    /// CSV/TSV: the detection and the sniffed plan.
    Csv(Detected, CsvPlan),
    /// Semi-structured records (JSON).
    Records(RecordPlan),
}

impl Plan {
    /// The detection's outcome.
    pub fn detected(&self) -> &Detected {
        match self {
            Plan::Csv(d, _) => d,
            Plan::Records(r) => &r.detected,
        }
    }
}

fn check_options(opts: &ConvertOptions) -> Result<()> {
    if !(1..=22).contains(&opts.parquet.zstd_level) {
        return Err(Error::Option {
            option: "zstd_level",
            reason: "must be 1 to 22".into(),
        });
    }
    if opts.parquet.row_group_rows == 0 {
        return Err(Error::Option {
            option: "row_group_rows",
            reason: "must be positive".into(),
        });
    }
    if !(1..=MAX_CHUNK_SIZE).contains(&opts.parquet.chunk_size) {
        return Err(Error::Option {
            option: "chunk_size",
            reason: "must be 1 byte to 5 GiB (S3's largest part)".into(),
        });
    }
    let line_break = |b: u8| b == b'\n' || b == b'\r';
    if opts.csv.delimiter.is_some_and(line_break) {
        return Err(Error::Option {
            option: "delimiter",
            reason: "must not be a line break".into(),
        });
    }
    if let Some(Some(q)) = opts.csv.quote {
        if line_break(q) || opts.csv.delimiter == Some(q) {
            return Err(Error::Option {
                option: "quote",
                reason: "must be neither a line break nor the delimiter".into(),
            });
        }
    }
    if !(1024..=MAX_RECORD_LIMIT).contains(&opts.csv.max_record_bytes) {
        return Err(Error::Option {
            option: "max_record_bytes",
            reason: format!("must be 1 KiB to {} MiB", MAX_RECORD_LIMIT >> 20),
        });
    }
    if opts.csv.max_columns == 0 {
        return Err(Error::Option {
            option: "max_columns",
            reason: "must be positive".into(),
        });
    }
    if opts.read_size.is_some_and(|r| r > MAX_READ_SIZE) {
        return Err(Error::Option {
            option: "read_size",
            reason: format!("must be at most {} MiB", MAX_READ_SIZE >> 20),
        });
    }
    Ok(())
}

/// Largest `chunk_size` accepted: S3's largest part.
const MAX_CHUNK_SIZE: usize = 5 << 30;

/// Largest `read_size` accepted.
const MAX_READ_SIZE: usize = 256 << 20;

/// Detects the format of `source` and what its reader needs, without converting.
///
/// # Errors
/// As [`ParquetChunks::new`].
pub fn inspect(source: &dyn Source, opts: &ConvertOptions) -> Result<Plan> {
    check_options(opts)?;
    let detected = detect(source, opts.format, opts.csv.encoding)?;
    match detected.format.clone() {
        Format::Csv => {
            let mut plan = sniff(source, &opts.csv)?;
            for c in &mut plan.columns {
                c.ty = c.ty.finalized();
            }
            Ok(Plan::Csv(detected, plan))
        }
        Format::Json(layout) => {
            let encoding = detected.encoding;
            let mut plan = sample(source, detected, encoding, RecordReader::Json(layout), opts)?;
            plan.schema = plan.schema.finalized();
            Ok(Plan::Records(plan))
        }
        Format::Xml => {
            let reader = RecordReader::Xml(opts.xml.clone());
            let mut plan = sample(source, detected.clone(), detected.encoding, reader, opts)?;
            plan.schema = plan.schema.finalized();
            Ok(Plan::Records(plan))
        }
    }
}

impl ParquetChunks {
    /// Detects the source's format and shape and prepares the conversion.
    ///
    /// # Errors
    /// I/O errors; [`Error::Parse`] for empty or binary input, or records
    /// that do not parse; invalid options.
    pub fn new(source: Arc<dyn Source>, opts: ConvertOptions) -> Result<Self> {
        check_options(&opts)?;
        let detected = detect(source.as_ref(), opts.format, opts.csv.encoding)?;
        let inner = match detected.format.clone() {
            Format::Csv => Driver::Csv(detected, CsvChunks::new(source, opts)?),
            Format::Json(layout) => {
                let encoding = detected.encoding;
                let reader = RecordReader::Json(layout);
                let plan = sample(source.as_ref(), detected, encoding, reader, &opts)?;
                Driver::Records(RecordChunks::new(source, opts, plan)?)
            }
            Format::Xml => {
                let encoding = detected.encoding;
                let reader = RecordReader::Xml(opts.xml.clone());
                let plan = sample(source.as_ref(), detected, encoding, reader, &opts)?;
                Driver::Records(RecordChunks::new(source, opts, plan)?)
            }
        };
        Ok(Self { inner })
    }

    /// The detected (and, after a restart, widened) plan.
    pub fn plan(&self) -> Plan {
        match &self.inner {
            Driver::Csv(d, c) => Plan::Csv(d.clone(), c.plan().clone()),
            Driver::Records(r) => Plan::Records(r.plan().clone()),
        }
    }

    /// How many times the conversion started over.
    pub fn restarts(&self) -> u32 {
        match &self.inner {
            Driver::Csv(_, c) => c.restarts(),
            Driver::Records(r) => r.restarts(),
        }
    }

    /// Rows written, once the last chunk has been handed out.
    pub fn rows(&self) -> Option<u64> {
        match &self.inner {
            Driver::Csv(_, c) => c.rows(),
            Driver::Records(r) => r.rows(),
        }
    }

    /// What the conversion found worth a warning (values outside XML
    /// records, CSV bytes read as Windows-1252), once the last chunk has
    /// been handed out.
    pub fn warnings(&self) -> &[String] {
        match &self.inner {
            Driver::Csv(_, c) => &c.warnings,
            Driver::Records(r) => r.warnings(),
        }
    }

    /// The next event, or `None` when the file is complete.
    ///
    /// # Errors
    /// I/O, parse and encoding errors; after an error the iterator is done.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        self.next_event_or_stop(&mut || false)
    }

    /// As [`Self::next_event`], but asks `stop` between pipeline steps
    /// (every few milliseconds) whether to give up, so that a caller can
    /// honour Ctrl-C during a long scan.
    ///
    /// # Errors
    /// As [`Self::next_event`]; [`Error::Stopped`] when `stop` said so.
    pub fn next_event_or_stop(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Event>> {
        match &mut self.inner {
            Driver::Csv(_, c) => c.next_event_or_stop(stop),
            Driver::Records(r) => r.next_event_or_stop(stop),
        }
    }
}

/// The CSV/TSV driver: a CSV file produced chunk by chunk.
pub struct CsvChunks {
    source: Arc<dyn Source>,
    opts: ConvertOptions,
    plan: Arc<CsvPlan>,
    mode: SplitMode,
    pass: Option<Pass>,
    emitted: bool,
    restarts: u32,
    rows: Option<u64>,
    warnings: Vec<String>,
    pending: std::vec::IntoIter<Vec<u8>>,
}

/// One read of the source from start to end.
struct Pass {
    /// Only widening types (after a drift, or to infer from the whole file).
    scanning: bool,
    /// What changed the plan, for the restart message.
    drift: Option<String>,
    /// Join of the types of every piece seen so far.
    types: Vec<ColumnType>,
    sink: Option<ParquetSink>,
    pipeline: Pipeline<RawChunk, Result<Parsed, Interrupt>>,
    rows: u64,
    fallback_bytes: usize,
}

type ParseResult = Result<Result<Parsed, Interrupt>>;

/// A piece turned into columns.
struct Parsed {
    rows: usize,
    arrays: Option<Vec<arrow_array::ArrayRef>>,
    types: Vec<ColumnType>,
    fallback_bytes: usize,
}

impl CsvChunks {
    /// Sniffs the CSV source's shape and prepares the conversion.
    ///
    /// # Errors
    /// I/O errors; [`Error::Parse`] for empty or binary input.
    pub fn new(source: Arc<dyn Source>, opts: ConvertOptions) -> Result<Self> {
        // A file the sniffer read whole, every record of it, is converted
        // from its parse, at once: the types it gave fit every value. (An
        // explicit `read_size` asks for pieces of that size.)
        let pieces = opts.read_size.is_some();
        let (mut plan, whole) = sniff_then(source.as_ref(), &opts.csv, |plan, sample| {
            let types: Vec<ColumnType> = plan.columns.iter().map(|c| c.ty.finalized()).collect();
            sample
                .filter(|_| !pieces)
                .map(|records| build_piece(records, true, plan, &types, true, 0))
                .filter(|p| {
                    p.arrays.is_some()
                        && describe_drift(&types, &p.types, &plan.columns, 0).is_none()
                })
        })?;
        let scan_first = opts.csv.sample_rows.is_none() && whole.is_none();
        if !scan_first {
            for c in &mut plan.columns {
                c.ty = c.ty.finalized();
            }
        }
        let mut this = Self {
            source,
            opts,
            plan: Arc::new(plan),
            mode: SplitMode::Parity,
            pass: None,
            emitted: false,
            restarts: 0,
            rows: None,
            warnings: Vec::new(),
            pending: Vec::new().into_iter(),
        };
        match whole {
            Some(parsed) => this.convert_whole(parsed)?,
            None => this.pass = Some(this.start_pass(scan_first)?),
        }
        Ok(this)
    }

    /// Writes the whole file from one parsed piece.
    fn convert_whole(&mut self, parsed: Parsed) -> Result<()> {
        let name = self.source.name();
        let mut sink = ParquetSink::new(&self.plan.columns, &self.opts.parquet)
            .map_err(|e| Error::parquet(name, e))?;
        if is_small(parsed.rows, self.plan.columns.len()) {
            sink = sink.inline();
        }
        if let Some(arrays) = &parsed.arrays {
            sink.write(arrays, parsed.rows)
                .map_err(|e| Error::parquet(name, e))?;
        }
        let metadata = self.metadata(parsed.rows as u64, parsed.fallback_bytes);
        let chunks = sink
            .finish(metadata)
            .map_err(|e| Error::parquet(self.source.name(), e))?;
        self.pending = chunks.into_iter();
        self.rows = Some(parsed.rows as u64);
        Ok(())
    }

    /// The detected (and, after a restart, widened) shape of the source.
    pub fn plan(&self) -> &CsvPlan {
        &self.plan
    }

    /// How many times the conversion started over.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Rows written, once the last chunk has been handed out.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }

    fn start_pass(&self, scanning: bool) -> Result<Pass> {
        let name = self.source.name().to_owned();
        let reader = open_text(self.source.as_ref(), self.plan.encoding)?;
        let read_size = self.opts.read_size.unwrap_or(DEFAULT_READ_SIZE).max(4096);
        let mut splitter = Splitter::new(
            reader,
            &name,
            self.plan.dialect.clone(),
            self.mode,
            read_size,
            self.opts.csv.max_record_bytes,
        );
        let sink = if scanning {
            None
        } else {
            Some(
                ParquetSink::new(&self.plan.columns, &self.opts.parquet)
                    .map_err(|e| Error::parquet(self.source.name(), e))?,
            )
        };
        let pipeline = Pipeline::start(&name, move || splitter.next_chunk())?;
        Ok(Pass {
            scanning,
            drift: None,
            types: self.plan.columns.iter().map(|c| c.ty).collect(),
            sink,
            pipeline,
            rows: 0,
            fallback_bytes: 0,
        })
    }

    /// The next event, or `None` when the file is complete.
    ///
    /// # Errors
    /// I/O, parse and encoding errors; after an error the iterator is done.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        self.next_event_or_stop(&mut || false)
    }

    /// As [`Self::next_event`], but asks `stop` between pipeline steps
    /// (every few milliseconds) whether to give up, so that a caller can
    /// honour Ctrl-C during a long scan.
    ///
    /// # Errors
    /// As [`Self::next_event`]; [`Error::Stopped`] when `stop` said so.
    pub fn next_event_or_stop(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Event>> {
        let result = self.advance(stop);
        if result.is_err() {
            self.pass = None;
        }
        result
    }

    fn advance(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Event>> {
        loop {
            if stop() {
                return Err(Error::Stopped);
            }
            if let Some(chunk) = self.pending.next() {
                return Ok(Some(Event::Chunk(chunk)));
            }
            let Some(pass) = self.pass.as_mut() else {
                return Ok(None);
            };
            let ready = match pass.sink.as_mut() {
                Some(sink) => sink
                    .take_chunk()
                    .map_err(|e| Error::parquet(self.source.name(), e))?,
                None => None,
            };
            if let Some(chunk) = ready {
                self.emitted = true;
                return Ok(Some(Event::Chunk(chunk)));
            }
            if !pass.finished() {
                match self.step()? {
                    None => continue,
                    Some(Interrupt::Misaligned) if self.mode == SplitMode::Serial => {
                        return Err(Error::internal(
                            self.source.name(),
                            "exact splitting produced a piece that does not parse",
                        ));
                    }
                    Some(Interrupt::Misaligned) => {
                        self.mode = SplitMode::Serial;
                        let scanning = self.pass.as_ref().is_some_and(|p| p.scanning);
                        let why = "a quote inside an unquoted field: splitting exactly".to_owned();
                        if let Some(ev) = self.restart(scanning, why)? {
                            return Ok(Some(ev));
                        }
                        continue;
                    }
                }
            }
            let Some(pass) = self.pass.take() else {
                return Ok(None);
            };
            if pass.scanning {
                let why = pass
                    .drift
                    .clone()
                    .unwrap_or_else(|| "types inferred from the whole file".into());
                self.adopt(&pass.types);
                if let Some(ev) = self.restart(false, why)? {
                    return Ok(Some(ev));
                }
                continue;
            }
            self.rows = Some(pass.rows);
            let metadata = self.metadata(pass.rows, pass.fallback_bytes);
            let sink = pass.sink.ok_or_else(|| {
                Error::internal(self.source.name(), "a converting pass without a sink")
            })?;
            let chunks = sink
                .finish(metadata)
                .map_err(|e| Error::parquet(self.source.name(), e))?;
            self.pending = chunks.into_iter();
        }
    }

    /// Takes the widened types (and any new columns) into the plan.
    fn adopt(&mut self, types: &[ColumnType]) {
        let old = self.plan.columns.len();
        let names: Vec<Option<String>> = self
            .plan
            .columns
            .iter()
            .map(|c| Some(c.name.clone()))
            .chain((old..types.len()).map(|_| None))
            .collect();
        let names = crate::columns::unique_names(&names);
        let mut columns: Vec<Column> = Vec::with_capacity(types.len());
        for (j, ty) in types.iter().enumerate() {
            let dictionary = self.plan.columns.get(j).is_none_or(|c| c.dictionary);
            columns.push(Column {
                name: names[j].clone(),
                ty: ty.finalized(),
                dictionary,
            });
        }
        Arc::make_mut(&mut self.plan).columns = columns;
    }

    /// Starts a new pass; tells the caller when chunks were already out.
    fn restart(&mut self, scanning: bool, why: String) -> Result<Option<Event>> {
        self.pass = Some(self.start_pass(scanning)?);
        if std::mem::take(&mut self.emitted) {
            self.restarts += 1;
            return Ok(Some(Event::Restart(why)));
        }
        Ok(None)
    }

    /// One pipeline step: start parsing the pieces read so far (up to
    /// [`crate::pipeline::LOOKAHEAD`]), then take the oldest parsed piece and encode it.
    fn step(&mut self) -> Result<Option<Interrupt>> {
        let name = self.source.name();
        let Some(pass) = self.pass.as_mut() else {
            return Ok(None);
        };
        let convert = !pass.scanning;
        let types = pass.types.clone();
        let mut job = |raw: RawChunk| -> Job<Result<Parsed, Interrupt>> {
            let plan = Arc::clone(&self.plan);
            let types = types.clone();
            let name = name.to_owned();
            Box::new(move || parse_piece(&raw, &plan, &types, convert, &name))
        };
        let Some(parsed) = pass.pipeline.step(&mut job)? else {
            return Ok(None);
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(i) => return Ok(Some(i)),
        };
        let first_row = pass.rows;
        pass.rows += parsed.rows as u64;
        pass.fallback_bytes += parsed.fallback_bytes;
        let before = pass.types.clone();
        for (j, ty) in parsed.types.iter().enumerate() {
            match pass.types.get_mut(j) {
                Some(t) => *t = t.join(*ty),
                None => pass.types.push(*ty),
            }
        }
        if pass.scanning {
            if pass.drift.is_none() {
                pass.drift = describe_drift(&before, &pass.types, &self.plan.columns, first_row);
            }
            return Ok(None);
        }
        if let Some(why) = describe_drift(&before, &pass.types, &self.plan.columns, first_row) {
            pass.scanning = true;
            pass.sink = None;
            pass.drift = Some(why);
            return Ok(None);
        }
        let (Some(sink), Some(arrays)) = (pass.sink.as_mut(), parsed.arrays) else {
            // Never drop rows quietly: values that fit no array must widen a column.
            let what = format!(
                "rows from {} were not encoded and no column widened",
                first_row + 1
            );
            return Err(Error::internal(name, what));
        };
        sink.write(&arrays, parsed.rows)
            .map_err(|e| Error::parquet(name, e))?;
        Ok(None)
    }

    /// The file's metadata; a warning when bytes were read as Windows-1252.
    fn metadata(&mut self, rows: u64, fallback: usize) -> Vec<(String, String)> {
        let mut encoding = self.plan.encoding.name().to_owned();
        if fallback > 0 {
            self.warnings = vec![format!(
                "{fallback} bytes that are not {encoding} read as windows-1252 (s3proc.encoding)"
            )];
            encoding = format!("{encoding} (with {fallback} bytes read as windows-1252)");
        }
        let d = &self.plan.dialect;
        let dialect = format!(
            "{{\"delimiter\":{},\"quote\":{},\"escape\":\"{}\",\"terminator\":{},\"header\":{},\"null_values\":{}}}",
            json_str(&(d.delimiter as char).to_string()),
            d.quote.map_or("null".to_owned(), |q| json_str(&(q as char).to_string())),
            d.escape.name(),
            json_str(&(d.terminator as char).to_string()),
            d.header,
            format_args!(
                "[{}]",
                self.plan.nulls.to_strings().iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",")
            ),
        );
        let dialect = vec![("s3proc.dialect".into(), dialect)];
        file_metadata(self.source.as_ref(), "csv", dialect, encoding, rows)
    }
}

impl Pass {
    fn finished(&self) -> bool {
        self.pipeline.finished()
    }
}

/// Parses one piece into columns (or only widens types when `convert` is off).
fn parse_piece(
    raw: &RawChunk,
    plan: &CsvPlan,
    types: &[ColumnType],
    convert: bool,
    name: &str,
) -> ParseResult {
    let term = plan.dialect.terminator;
    if let Some(p) = memchr::memchr(0, &raw.data) {
        return Err(Error::parse(
            name,
            raw.line_at(p, term),
            "binary data (NUL byte): not a text table",
        ));
    }
    let mut fallback_bytes = 0;
    let fixed;
    let mut data = &raw.data[..];
    if matches!(plan.encoding, TextEncoding::Utf8 | TextEncoding::Utf8Bom)
        && simdutf8::basic::from_utf8(data).is_err()
    {
        let (bytes, n) = utf8_lossless(data);
        fixed = bytes;
        data = &fixed;
        fallback_bytes = n;
    }
    let records = match records::parse(data, &plan.dialect, false, plan.max_columns) {
        Ok(r) => r,
        Err(Trouble::UnfinishedRecord(_)) => return Ok(Err(Interrupt::Misaligned)),
        Err(Trouble::TooWide { width, .. }) => {
            let line = raw.first_line;
            return Err(Error::too_many_columns(name, line, width, plan.max_columns));
        }
    };
    let first = raw.index == 0;
    Ok(Ok(build_piece(
        &records,
        first,
        plan,
        types,
        convert,
        fallback_bytes,
    )))
}

/// Cells (rows × columns) of a piece small enough to build and encode in
/// the calling thread: below about 1 MiB of CSV, the pool's hand-offs cost
/// more than they save, and the service converts several files at once.
const INLINE_CELLS: usize = 1 << 16;

fn is_small(rows: usize, width: usize) -> bool {
    rows.saturating_mul(width) < INLINE_CELLS
}

/// Turns a piece's records into columns of `types` (widened where a value
/// does not fit), or only widens them when `convert` is off.
fn build_piece(
    records: &records::Records<'_>,
    first: bool,
    plan: &CsvPlan,
    types: &[ColumnType],
    convert: bool,
    fallback_bytes: usize,
) -> Parsed {
    let skip = usize::from(first && plan.dialect.header);
    let rows = records.len().saturating_sub(skip);
    let width = types.len().max(records.max_width());
    let nulls = &plan.nulls;
    let one = |j: usize| {
        let ty = types.get(j).copied().unwrap_or(ColumnType::Null);
        let column = records.column(j);
        build(
            ty,
            rows,
            |i| match column.get(i + skip) {
                Field::Value(v) if !nulls.is_null(v) => Some(v),
                _ => None,
            },
            convert,
        )
    };
    let built: Vec<_> = if is_small(rows, width) {
        (0..width).map(one).collect()
    } else {
        (0..width).into_par_iter().map(one).collect()
    };
    let new_types: Vec<ColumnType> = built.iter().map(|b| b.ty).collect();
    let arrays = built
        .into_iter()
        .map(|b| b.array)
        .collect::<Option<Vec<_>>>();
    Parsed {
        rows,
        arrays,
        types: new_types,
        fallback_bytes,
    }
}

/// Says what changed the physical schema, if anything did.
fn describe_drift(
    before: &[ColumnType],
    after: &[ColumnType],
    columns: &[Column],
    first_row: u64,
) -> Option<String> {
    if after.len() > before.len() {
        return Some(format!(
            "rows from about row {} have {} fields, more than the {} columns: extra columns added",
            first_row + 1,
            after.len(),
            before.len()
        ));
    }
    before
        .iter()
        .zip(after)
        .enumerate()
        .find_map(|(j, (b, a))| {
            (b.finalized().arrow_type() != a.finalized().arrow_type()).then(|| {
                let name = columns.get(j).map_or("?", |c| c.name.as_str());
                format!(
                    "column {name:?} widened from {} to {} by a value after row {}",
                    b.name(),
                    a.finalized().name(),
                    first_row
                )
            })
        })
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
