//! The conversion driver for semi-structured records (JSON today; XML
//! plugs in as one more [`RecordReader`]).
//!
//! The same protocol as the CSV driver: the schema is inferred from a
//! sample (or the whole input first, with `sample_rows = None`); pieces are
//! parsed ahead on the pool by [`Pipeline`]; when a late value widens the
//! schema after chunks were handed out, the rest of the input is only
//! scanned, and the file starts again with the widened schema
//! ([`Event::Restart`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::ArrayRef;
use rayon::prelude::*;

use crate::columns::Repeats;
use crate::convert::{ConvertOptions, Event};
use crate::detect::Detected;
use crate::error::{Error, Result};
use crate::json::split::{JsonSplitter, Layout, TextPiece};
use crate::nested::{
    arrow_fields, build_array, count_list_items, scalar_bytes, transpose, FieldIndex, Shape,
};
use crate::pipeline::{Job, Pipeline};
use crate::sink::ParquetSink;
use crate::source::{file_metadata, open_text, Source, TextEncoding};
use crate::value::Record;
use crate::xml::{parse_piece as parse_xml, XmlOptions, XmlPiece, XmlRecords};

/// Bytes of input per parsing piece unless `read_size` says otherwise:
/// records take several times their text's size in memory.
const DEFAULT_READ_SIZE: usize = 1 << 20;

/// Records per XML piece.
pub const BATCH_ROWS: usize = 8192;

/// Values a converted piece holds at most, missing ones included (each leaf
/// column holds one per row of its list level, see
/// [`Shape::values_per_record`]): a sparse input, a few keys per record or
/// list item among thousands of columns, is cut into pieces of fewer records.
const PIECE_CELLS: usize = 1 << 20;

/// Records per piece however wide the schema.
const MIN_PIECE_ROWS: usize = 64;

/// Bytes read before the sample stops, whatever `sample_rows` says.
const SAMPLE_BYTES: usize = 4 << 20;

/// How records are read from the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordReader {
    /// JSON in this layout.
    Json(Layout),
    /// XML, its record element found by the reader (or named in the options).
    Xml(XmlOptions),
}

/// A record-aligned piece of input.
pub enum Piece {
    /// Text for the pool to parse.
    Json(TextPiece),
    /// Whole XML records for the pool to parse.
    Xml(XmlPiece),
}

impl Piece {
    fn bytes(&self) -> usize {
        match self {
            Piece::Json(t) => t.data.len(),
            // Counted by records (text takes a few times its size as values).
            Piece::Xml(x) => x.rows() * 64,
        }
    }
}

/// The source of pieces of one pass.
pub type Pieces = Box<dyn FnMut() -> Result<Option<Piece>> + Send>;

/// What a pass finds while reading (complete once its pieces ended).
type Found = Arc<Mutex<Notes>>;

/// Metadata for the file, and warnings for whoever ships it.
#[derive(Default)]
struct Notes {
    metadata: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl RecordReader {
    /// How the records are laid out, in words (for `inspect`).
    pub fn describe(&self) -> String {
        match self {
            RecordReader::Json(layout) => layout.describe(),
            RecordReader::Xml(opts) => match &opts.record_element {
                Some(e) => format!("XML records <{e}> (named)"),
                None => "XML records (element found by the reader)".to_owned(),
            },
        }
    }

    fn pieces(
        &self,
        source: &dyn Source,
        encoding: TextEncoding,
        (read_size, rows): (usize, usize),
        max_record: usize,
    ) -> Result<(Pieces, Found)> {
        let found = Found::default();
        let pieces: Pieces = match self {
            RecordReader::Json(layout) => {
                let text = open_text(source, encoding)?;
                let mut s =
                    JsonSplitter::new(text, source.name(), layout.clone(), read_size, max_record);
                Box::new(move || Ok(s.next_piece()?.map(Piece::Json)))
            }
            // XML finds its own encoding; its reader only cuts whole records
            // out, the pool parses them.
            RecordReader::Xml(opts) => {
                let raw = source.open().map_err(|e| Error::io(source.name(), e))?;
                let mut records = XmlRecords::new(raw, source.name(), opts)?;
                let found = Arc::clone(&found);
                Box::new(move || {
                    let piece = records.next_piece(rows);
                    if piece.is_none() {
                        *found.lock().unwrap_or_else(PoisonError::into_inner) = outside(&records);
                    }
                    Ok(piece.map(Piece::Xml))
                })
            }
        };
        Ok((pieces, found))
    }

    /// The records of `piece`, borrowing from its text where they can.
    fn parse<'p>(&self, piece: &'p Piece, name: &str) -> Result<Cow<'p, [Record<'p>]>> {
        match (self, piece) {
            (RecordReader::Json(layout), Piece::Json(t)) => {
                crate::json::parse_piece(t, layout, name).map(Cow::Owned)
            }
            (RecordReader::Xml(opts), Piece::Xml(x)) => parse_xml(x, opts, name).map(Cow::Owned),
            (RecordReader::Xml(_), Piece::Json(_)) | (RecordReader::Json(_), Piece::Xml(_)) => {
                Err(Error::internal(name, "a piece of another format"))
            }
        }
    }

    fn metadata(&self) -> Vec<(String, String)> {
        match self {
            RecordReader::Json(layout) => {
                let mut out = vec![("s3proc.json_layout".to_owned(), layout.describe())];
                if let Layout::Array { key: Some(k), .. } = layout {
                    out.push(("s3proc.records_key".to_owned(), k.clone()));
                }
                out
            }
            RecordReader::Xml(opts) => opts
                .record_element
                .iter()
                .map(|e| ("s3proc.xml_record_element".to_owned(), e.clone()))
                .collect(),
        }
    }
}

/// What an XML document holds outside its records, as metadata
/// (`s3proc.xml_outside`, or `s3proc.xml_outside_dropped`, in bytes, when it
/// was too large to keep) and a warning: it may be what was meant as records.
fn outside(records: &XmlRecords) -> Notes {
    let element = &records.layout().record_element;
    let (key, value, what, size) = match (records.outside(), records.dropped()) {
        (_, n @ 1..) => ("s3proc.xml_outside_dropped", n.to_string(), "dropped", n),
        (Some(xml), _) => {
            let size = xml.len() as u64;
            (
                "s3proc.xml_outside",
                xml.to_owned(),
                "kept in the metadata",
                size,
            )
        }
        (None, _) => return Notes::default(),
    };
    Notes {
        warnings: vec![format!(
            "{size} bytes of values outside the <{element}> records {what} ({key}); \
             if the records are other elements, name them (record_element)"
        )],
        metadata: vec![(key.into(), value)],
    }
}

/// What the converter knows of a record source.
#[derive(Clone, Debug)]
pub struct RecordPlan {
    /// The detected format and why.
    pub detected: Detected,
    /// The text encoding.
    pub encoding: TextEncoding,
    /// How records are read.
    pub reader: RecordReader,
    /// The schema of the records (a root struct; finalized once converting).
    pub schema: Shape,
    /// Whether each top-level scalar column is dictionary-encoded, by name:
    /// not when its sampled values are near-unique (as for CSV).
    pub dictionary: Vec<(String, bool)>,
    /// Bytes of input per record in the sample (pieces are cut by bytes).
    pub row_bytes: usize,
    /// Items per record in the sample at each list's place (see
    /// [`Shape::values_per_record`]).
    pub list_items: HashMap<String, f64>,
}

impl RecordPlan {
    /// The top-level columns and their type names.
    pub fn columns(&self) -> Vec<(String, String)> {
        self.schema
            .fields()
            .iter()
            .map(|(k, s)| (k.clone(), s.finalized().type_name()))
            .collect()
    }
}

/// A record source converted to Parquet chunks.
pub struct RecordChunks {
    source: Arc<dyn Source>,
    opts: ConvertOptions,
    plan: Arc<RecordPlan>,
    pass: Option<Pass>,
    emitted: bool,
    restarts: u32,
    rows: Option<u64>,
    warnings: Vec<String>,
    pending: std::vec::IntoIter<Vec<u8>>,
}

struct Pass {
    scanning: bool,
    drift: Option<String>,
    schema: Shape,
    sink: Option<ParquetSink>,
    pipeline: Pipeline<Piece, Parsed>,
    rows: u64,
    found: Found,
}

struct Parsed {
    rows: usize,
    schema: Shape,
    arrays: Option<Vec<ArrayRef>>,
    /// The line where the piece's records start (where the schema widened).
    line: u64,
}

impl Parsed {
    /// A piece whose values all fit `schema`; the schema notes the integer
    /// columns that now hold a value beyond 2^53.
    fn converted(rows: usize, schema: &Shape, arrays: Vec<ArrayRef>) -> Self {
        let mut schema = schema.clone();
        schema.note_wide_ints(&arrays);
        Parsed {
            rows,
            schema,
            arrays: Some(arrays),
            line: 0,
        }
    }
}

/// Reads the first records of `source` and infers their schema (not yet
/// finalized), reading at most `sample_rows` records (all with `None`) and
/// about [`SAMPLE_BYTES`] bytes.
///
/// # Errors
/// I/O and parse errors of the records read.
pub fn sample(
    source: &dyn Source,
    detected: Detected,
    encoding: TextEncoding,
    reader: RecordReader,
    opts: &ConvertOptions,
) -> Result<RecordPlan> {
    let read_size = opts.read_size.unwrap_or(DEFAULT_READ_SIZE).max(4096);
    let (mut pieces, _) = reader.pieces(
        source,
        encoding,
        (read_size, BATCH_ROWS),
        opts.csv.max_record_bytes,
    )?;
    let mut schema = Shape::root();
    let mut repeats: Vec<Repeats> = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    let mut list_items = HashMap::new();
    let limit = opts.csv.sample_rows.unwrap_or(usize::MAX);
    while rows < limit && bytes < SAMPLE_BYTES {
        let Some(piece) = pieces()? else { break };
        bytes += piece.bytes();
        let records = reader.parse(&piece, source.name())?;
        let take = &records[..records.len().min(limit - rows)];
        schema.widen_records(take);
        let (columns, max) = (schema.columns(), opts.csv.max_columns);
        if columns > max {
            let line = take.first().map_or(1, |r| r.line);
            return Err(Error::too_many_columns(source.name(), line, columns, max));
        }
        take.iter()
            .for_each(|r| count_list_items(&r.fields, &mut list_items));
        repeats.resize_with(schema.fields().len(), || Repeats::new(limit));
        let mut index = FieldIndex::default();
        for (j, (k, v)) in take.iter().flat_map(|r| r.fields.iter().enumerate()) {
            let at = index.locate(schema.fields(), j, k);
            if let (Some(at), Some(v)) = (at, scalar_bytes(Some(v))) {
                repeats[at].add(v);
            }
        }
        rows += take.len();
    }
    let dictionary = schema
        .fields()
        .iter()
        .zip(&repeats)
        .filter_map(|((name, shape), counts)| match shape.finalized() {
            Shape::Scalar(t) => Some((name.clone(), counts.wants_dictionary(t))),
            _ => None,
        })
        .collect();
    Ok(RecordPlan {
        detected,
        encoding,
        reader,
        schema,
        dictionary,
        row_bytes: bytes.checked_div(rows).map_or(usize::MAX, |b| b + 1),
        list_items: (list_items.into_iter())
            .map(|(place, n)| (place, n as f64 / rows.max(1) as f64))
            .collect(),
    })
}

impl RecordChunks {
    /// Prepares the conversion of `source` as `plan` (from [`sample`]).
    ///
    /// # Errors
    /// I/O errors of starting the first pass.
    pub fn new(
        source: Arc<dyn Source>,
        opts: ConvertOptions,
        mut plan: RecordPlan,
    ) -> Result<Self> {
        let scan_first = opts.csv.sample_rows.is_none() || plan.schema.fields().is_empty();
        if !scan_first {
            plan.schema = plan.schema.finalized();
        }
        let mut this = Self {
            source,
            opts,
            plan: Arc::new(plan),
            pass: None,
            emitted: false,
            restarts: 0,
            rows: None,
            warnings: Vec::new(),
            pending: Vec::new().into_iter(),
        };
        this.pass = Some(this.start_pass(scan_first)?);
        Ok(this)
    }

    /// The detected (and, after a restart, widened) plan.
    pub fn plan(&self) -> &RecordPlan {
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

    /// What the reading found worth a warning (values outside XML
    /// records), once the last chunk has been handed out.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn start_pass(&self, scanning: bool) -> Result<Pass> {
        let name = self.source.name();
        let read_size = self.opts.read_size.unwrap_or(DEFAULT_READ_SIZE);
        let per_record = self.plan.schema.values_per_record(&self.plan.list_items);
        let rows =
            ((PIECE_CELLS as f64 / per_record.max(1.0)) as usize).clamp(MIN_PIECE_ROWS, BATCH_ROWS);
        let size = read_size
            .min(rows.saturating_mul(self.plan.row_bytes))
            .max(4096);
        let (pieces, found) = self.plan.reader.pieces(
            self.source.as_ref(),
            self.plan.encoding,
            (size, rows),
            self.opts.csv.max_record_bytes,
        )?;
        let sink = if scanning {
            None
        } else {
            Some(
                ParquetSink::with_fields(
                    arrow_fields(&self.plan.schema),
                    &self.plan.dictionary,
                    &self.opts.parquet,
                )
                .map_err(|e| Error::parquet(name, e))?,
            )
        };
        Ok(Pass {
            scanning,
            drift: None,
            schema: self.plan.schema.clone(),
            sink,
            pipeline: Pipeline::start(name, pieces)?,
            rows: 0,
            found,
        })
    }

    /// As [`crate::ParquetChunks::next_event_or_stop`].
    ///
    /// # Errors
    /// I/O, parse and encoding errors; [`Error::Stopped`].
    pub fn next_event_or_stop(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Event>> {
        let result = self.advance(stop);
        if result.is_err() {
            self.pass = None;
        }
        result
    }

    fn advance(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Event>> {
        let name = self.source.name().to_owned();
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
            if let Some(sink) = pass.sink.as_mut() {
                if let Some(chunk) = sink.take_chunk().map_err(|e| Error::parquet(&name, e))? {
                    self.emitted = true;
                    return Ok(Some(Event::Chunk(chunk)));
                }
            }
            if !pass.pipeline.finished() {
                self.step()?;
                continue;
            }
            let Some(pass) = self.pass.take() else {
                return Ok(None);
            };
            if pass.scanning {
                if pass.schema.fields().is_empty() {
                    return Err(Error::parse(
                        &name,
                        1,
                        "no record has a field: nothing to convert",
                    ));
                }
                let why = pass
                    .drift
                    .unwrap_or_else(|| "types inferred from the whole input".into());
                Arc::make_mut(&mut self.plan).schema = pass.schema.finalized();
                self.pass = Some(self.start_pass(false)?);
                if std::mem::take(&mut self.emitted) {
                    self.restarts += 1;
                    return Ok(Some(Event::Restart(why)));
                }
                continue;
            }
            self.rows = Some(pass.rows);
            let sink = pass
                .sink
                .ok_or_else(|| Error::internal(&name, "a converting pass without a sink"))?;
            let chunks = sink
                .finish(self.metadata(pass.rows, &pass.found))
                .map_err(|e| Error::parquet(&name, e))?;
            self.pending = chunks.into_iter();
        }
    }

    /// Hands the next pieces to the pool and takes in the oldest result.
    fn step(&mut self) -> Result<()> {
        let name = self.source.name().to_owned();
        let plan = Arc::clone(&self.plan);
        let Some(pass) = self.pass.as_mut() else {
            return Ok(());
        };
        let convert = !pass.scanning;
        let schema = Arc::new(pass.schema.clone());
        let mut job = |piece: Piece| -> Job<Parsed> {
            let plan = Arc::clone(&plan);
            let schema = Arc::clone(&schema);
            let name = name.clone();
            Box::new(move || parse_piece(&plan.reader, piece, &schema, convert, &name))
        };
        let Some(parsed) = pass.pipeline.step(&mut job)? else {
            return Ok(());
        };
        let first_row = pass.rows;
        pass.rows += parsed.rows as u64;
        let before = pass.schema.clone();
        pass.schema.join(&parsed.schema);
        let (columns, max) = (pass.schema.columns(), self.opts.csv.max_columns);
        if columns > max {
            return Err(Error::too_many_columns(&name, parsed.line, columns, max));
        }
        let drift = || describe_drift(&before, &pass.schema, first_row);
        if pass.scanning {
            if pass.drift.is_none() {
                pass.drift = drift();
            }
            return Ok(());
        }
        if let Some(why) = drift() {
            pass.scanning = true;
            pass.sink = None;
            pass.drift = Some(why);
            return Ok(());
        }
        let (Some(sink), Some(arrays)) = (pass.sink.as_mut(), parsed.arrays) else {
            let what = format!(
                "rows from {} were not encoded and no column widened",
                first_row + 1
            );
            return Err(Error::internal(&name, what));
        };
        sink.write(&arrays, parsed.rows)
            .map_err(|e| Error::parquet(&name, e))
    }

    fn metadata(&mut self, rows: u64, found: &Found) -> Vec<(String, String)> {
        let mut own = self.plan.reader.metadata();
        let mut notes = found.lock().unwrap_or_else(PoisonError::into_inner);
        own.append(&mut notes.metadata);
        self.warnings = mem::take(&mut notes.warnings);
        drop(notes);
        file_metadata(
            self.source.as_ref(),
            self.plan.detected.format.name(),
            own,
            self.plan.encoding.name().to_owned(),
            rows,
        )
    }
}

/// Parses one piece and, when converting, builds its columns. Only when a
/// value does not fit (or when scanning) is `schema` widened for the piece:
/// a piece that fits the schema has nothing to widen it. A JSON piece is
/// first tried on the fast path ([`crate::json::direct`]), which builds the
/// columns with no tree of values, or gives up on the piece.
fn parse_piece(
    reader: &RecordReader,
    piece: Piece,
    schema: &Shape,
    convert: bool,
    name: &str,
) -> Result<Parsed> {
    if let (true, RecordReader::Json(layout), Piece::Json(text)) = (convert, reader, &piece) {
        if let Some((rows, arrays)) = crate::json::direct::columns(text, layout, schema) {
            return Ok(Parsed::converted(rows, schema, arrays));
        }
    }
    let records = reader.parse(&piece, name)?;
    let rows = records.len();
    if convert {
        if let Some(arrays) = build_columns(schema, &records) {
            return Ok(Parsed::converted(rows, schema, arrays));
        }
    }
    let mut widened = schema.clone();
    widened.widen_records(&records);
    let arrays = if convert && widened.finalized().same_layout(schema) {
        build_columns(schema, &records)
    } else {
        None
    };
    Ok(Parsed {
        rows,
        schema: widened,
        arrays,
        line: records.first().map_or(1, |r| r.line),
    })
}

/// The top-level columns of `records` in the (finalized) `schema`, built
/// on the pool; `None` when a value does not fit it.
fn build_columns(schema: &Shape, records: &[Record<'_>]) -> Option<Vec<ArrayRef>> {
    let objects: Vec<_> = records.iter().map(|r| Some(r.fields.as_slice())).collect();
    transpose(schema.fields(), &objects)?
        .par_iter()
        .zip(schema.fields())
        .map(|(values, (_, shape))| build_array(shape, values))
        .collect()
}

/// Says what changed the written schema, if anything did.
fn describe_drift(before: &Shape, after: &Shape, first_row: u64) -> Option<String> {
    let (b, a) = (before.finalized(), after.finalized());
    if b.same_layout(&a) {
        return None;
    }
    for (k, s) in a.fields() {
        match b.fields().iter().find(|(n, _)| n == k) {
            None => {
                return Some(format!(
                    "a new key {k:?} appeared after row {first_row}: column added"
                ))
            }
            Some((_, old)) if !old.same_layout(s) => {
                return Some(format!(
                    "column {k:?} widened from {} to {} by a value after row {first_row}",
                    old.type_name(),
                    s.type_name()
                ))
            }
            Some(_) => {}
        }
    }
    Some(format!("the schema widened after row {first_row}"))
}
