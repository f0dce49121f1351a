//! End-to-end tests of the conversion pipeline: bytes in, Parquet out, read
//! back with the parquet crate's own Arrow reader.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use s3proc_core::source::BytesSource;
use s3proc_core::{ConvertOptions, Error, Event, ParquetChunks};

fn source(data: &[u8]) -> Arc<BytesSource> {
    Arc::new(BytesSource {
        data: data.into(),
        name: "t.csv".into(),
    })
}

/// Small pieces, chunks and row groups, so every boundary is crossed.
fn small() -> ConvertOptions {
    let mut o = ConvertOptions {
        read_size: Some(4096),
        ..Default::default()
    };
    o.parquet.chunk_size = 16 * 1024;
    o.parquet.row_group_rows = 700;
    o
}

/// Runs a conversion to the end, following restarts; returns the file and
/// how many restarts were signalled.
fn convert(data: &[u8], opts: ConvertOptions) -> Result<(Vec<u8>, u32), Error> {
    let mut chunks = ParquetChunks::new(source(data), opts)?;
    let mut file = Vec::new();
    let mut restarts = 0;
    while let Some(event) = chunks.next_event()? {
        match event {
            Event::Chunk(c) => file.extend_from_slice(&c),
            Event::Restart(_) => {
                file.clear();
                restarts += 1;
            }
        }
    }
    Ok((file, restarts))
}

fn read(file: Vec<u8>) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
        .expect("valid parquet")
        .with_batch_size(1 << 20)
        .build()
        .expect("reader");
    let mut batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    // The batch size covers every file these tests write.
    assert_eq!(batches.len(), 1, "expected a single batch");
    batches.remove(0)
}

fn table(rows: usize, late: Option<(usize, &str)>) -> Vec<u8> {
    let mut s = String::from("id,score,name,when\n");
    for i in 0..rows {
        let score = match late {
            Some((at, v)) if at == i => v.to_owned(),
            _ => i.to_string(),
        };
        s.push_str(&format!(
            "{i},{score},\"n, {i}\"\"x\",2024-01-{:02}\n",
            i % 28 + 1
        ));
    }
    s.into_bytes()
}

#[test]
fn converts_with_every_boundary_crossed() {
    let (file, restarts) = convert(&table(5000, None), small()).expect("converts");
    assert_eq!(restarts, 0);
    let b = read(file);
    assert_eq!(b.num_rows(), 5000);
    let ids = b.column(0).as_primitive::<Int64Type>();
    assert!((0..5000).all(|i| ids.value(i) == i as i64));
    let names = b.column(2).as_string::<i32>();
    assert_eq!(names.value(4321), "n, 4321\"x");
    assert_eq!(b.column(3).data_type(), &DataType::Date32);
}

#[test]
fn late_drift_widens_and_restarts_once() {
    let data = table(30_000, Some((29_990, "2.5")));
    let (file, restarts) = convert(&data, small()).expect("converts");
    assert_eq!(restarts, 1);
    let b = read(file);
    let score = b.column(1).as_primitive::<Float64Type>();
    assert_eq!(score.value(29_990), 2.5);
    assert_eq!(score.value(29_989), 29_989.0);

    let data = table(30_000, Some((29_990, "N/A")));
    let b = read(convert(&data, small()).expect("converts").0);
    let score = b.column(1).as_string::<i32>();
    assert_eq!(score.value(29_990), "N/A");
    assert_eq!(score.value(7), "7");
}

#[test]
fn whole_file_inference_never_restarts() {
    let data = table(30_000, Some((29_990, "12345678901234567890")));
    let mut opts = small();
    opts.csv.sample_rows = None;
    let (file, restarts) = convert(&data, opts).expect("converts");
    assert_eq!(restarts, 0);
    let b = read(file);
    assert_eq!(
        b.column(1).as_string::<i32>().value(29_990),
        "12345678901234567890"
    );
}

#[test]
fn a_small_file_converted_from_its_sniff_equals_the_piecewise_one() {
    // Under the sniffer's sample, read whole: converted from the sniff's parse.
    let mut data = table(5000, Some((4990, "2.5")));
    data.extend_from_slice(b"5000,,,\n5001,7\n");
    let mut whole = ConvertOptions::default();
    whole.parquet.row_group_rows = 700;
    let (a, restarts) = convert(&data, whole).expect("whole");
    assert_eq!(restarts, 0);
    let (b, _) = convert(&data, small()).expect("pieces");
    let (a, b) = (read(a), read(b));
    assert_eq!(a.num_rows(), 5002);
    assert_eq!(a.schema(), b.schema());
    assert_eq!(a.columns(), b.columns());
    let score = a.column(1).as_primitive::<Float64Type>();
    assert_eq!((score.value(4990), score.value(5001)), (2.5, 7.0));
    assert!(a.column(2).is_null(5001) && a.column(3).is_null(5000));
}

#[test]
fn output_is_deterministic() {
    let data = table(20_000, Some((15_000, "x")));
    let a = convert(&data, small()).expect("a").0;
    let b = convert(&data, small()).expect("b").0;
    assert_eq!(a, b);
}

#[test]
fn stray_quote_falls_back_to_exact_splitting() {
    let mut s = String::from("h,note\n");
    for i in 0..3000 {
        s.push_str(&format!("{i},5'10\" tall\n"));
    }
    s.push_str("3000,\"quoted\nnewline\"\n");
    let b = read(convert(s.as_bytes(), small()).expect("converts").0);
    assert_eq!(b.num_rows(), 3001);
    let note = b.column(1).as_string::<i32>();
    assert_eq!(note.value(17), "5'10\" tall");
    assert_eq!(note.value(3000), "quoted\nnewline");
}

#[test]
fn ragged_rows_keep_every_field() {
    let data = b"a,b\n1,2\n3\n4,5,6\n";
    let b = read(
        convert(data, ConvertOptions::default())
            .expect("converts")
            .0,
    );
    assert_eq!(b.num_columns(), 3);
    assert_eq!(b.schema().field(2).name(), "column_3");
    assert!(b.column(1).is_null(1));
    assert_eq!(b.column(2).as_primitive::<Int64Type>().value(2), 6);
}

#[test]
fn unterminated_quote_names_the_line() {
    let mut s = String::from("a,b\n");
    for i in 0..2000 {
        s.push_str(&format!("{i},x\n"));
    }
    s.push_str("2000,\"open\nnever closed\n");
    let err = convert(s.as_bytes(), small()).expect_err("must fail");
    match err {
        Error::Parse { line, reason, .. } => {
            assert_eq!(line, 2002, "{reason}");
            assert!(reason.contains("unterminated quote"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn nul_byte_late_in_file_is_a_parse_error() {
    let mut data = table(50_000, None);
    let at = data.len() - 100;
    data[at] = 0;
    let err = convert(&data, small()).expect_err("binary");
    assert!(
        matches!(err, Error::Parse { line, .. } if line > 49_000),
        "{err}"
    );
}

#[test]
fn empty_input_is_a_parse_error() {
    assert!(matches!(
        convert(b"", ConvertOptions::default()),
        Err(Error::Parse { .. })
    ));
}
