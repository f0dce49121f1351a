//! End-to-end tests of the JSON path: bytes in, Parquet out, read back with
//! the parquet crate's own Arrow reader.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use s3proc_core::source::BytesSource;
use s3proc_core::{ConvertOptions, Error, Event, ParquetChunks};

fn small() -> ConvertOptions {
    let mut o = ConvertOptions {
        read_size: Some(4096),
        ..Default::default()
    };
    o.parquet.chunk_size = 16 * 1024;
    o.parquet.row_group_rows = 700;
    o
}

fn convert(name: &str, data: &[u8], opts: ConvertOptions) -> Result<(Vec<u8>, u32), Error> {
    let src = Arc::new(BytesSource {
        data: data.into(),
        name: name.into(),
    });
    let mut chunks = ParquetChunks::new(src, opts)?;
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

fn read(file: Vec<u8>) -> (RecordBatch, Vec<(String, String)>) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file)).expect("parquet");
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let reader = builder.with_batch_size(1 << 20).build().expect("reader");
    let mut batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    assert_eq!(batches.len(), 1);
    (batches.remove(0), kv)
}

fn ndjson(rows: usize, line: impl Fn(usize) -> String) -> Vec<u8> {
    (0..rows)
        .map(|i| line(i) + "\n")
        .collect::<String>()
        .into_bytes()
}

#[test]
fn ndjson_columns_match_by_name() {
    let data = ndjson(5000, |i| {
        if i % 2 == 0 {
            format!(r#"{{"id": {i}, "name": "n{i}", "ok": true}}"#)
        } else {
            format!(r#"{{"name": "n{i}", "id": {i}}}"#)
        }
    });
    let (file, restarts) = convert("t.ndjson", &data, small()).expect("converts");
    assert_eq!(restarts, 0);
    let (b, kv) = read(file);
    assert_eq!(b.num_rows(), 5000);
    let ids = b.column(0).as_primitive::<Int64Type>();
    assert!((0..5000).all(|i| ids.value(i) == i as i64));
    assert_eq!(b.column(1).as_string::<i32>().value(4999), "n4999");
    assert!(b.column(2).is_null(1));
    assert!(kv.contains(&("s3proc.format".into(), "ndjson".into())));
}

#[test]
fn late_key_and_late_float_restart_once() {
    // x is scattered (not a run that delta encoding shrinks to nothing), so
    // chunks are handed out before the late float is met.
    let x = |i: usize| (i * i * 7919) % 100_003;
    let data = ndjson(30_000, |i| match i {
        1500 => format!(r#"{{"id": {i}, "late": "here"}}"#),
        29_990 => format!(r#"{{"id": {i}, "x": 2.5}}"#),
        _ => format!(r#"{{"id": {i}, "x": {}}}"#, x(i)),
    });
    let (file, restarts) = convert("t.jsonl", &data, small()).expect("converts");
    assert_eq!(restarts, 1);
    let (b, _) = read(file);
    let names: Vec<_> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "x", "late"]);
    let seven = x(7) as f64;
    let x = b.column(1).as_primitive::<Float64Type>();
    assert_eq!(x.value(29_990), 2.5);
    assert_eq!(x.value(7), seven);
    assert!(x.is_null(1500));
    let late = b.column(2).as_string::<i32>();
    assert_eq!(late.value(1500), "here");
    assert_eq!(late.null_count(), 29_999);
}

#[test]
fn a_late_float_after_a_wide_integer_restarts_once() {
    // Integers beyond 2^53 come after the sample in pieces that convert (they
    // fit int64), at the top level, in a list and in a struct; a float comes
    // last. One restart must go straight to strings: float64 would round them.
    let wide = 123_456_789_012_345_678_i64;
    let x = |i: usize| (i * i * 7919) % 100_003;
    let data = ndjson(30_000, |i| {
        let (a, l, s) = match i {
            15_000 => (wide.to_string(), wide.to_string(), wide.to_string()),
            29_990 => ("2.5".into(), "2.5".into(), "2.5".into()),
            _ => (x(i).to_string(), i.to_string(), i.to_string()),
        };
        // Scattered text, so that chunks are handed out before row 15,000
        // in the second pass too (a restart before any chunk is invisible).
        let t = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(r#"{{"a": {a}, "l": [1, {l}], "s": {{"v": {s}}}, "t": "{t:x}"}}"#)
    });
    let mut opts = small();
    opts.csv.sample_rows = Some(100);
    let (file, restarts) = convert("t.jsonl", &data, opts).expect("converts");
    assert_eq!(restarts, 1);
    let (b, _) = read(file);
    let a = b.column(0).as_string::<i32>();
    assert_eq!(a.value(15_000), wide.to_string());
    assert_eq!(a.value(29_990), "2.5");
    assert_eq!(a.value(7), x(7).to_string());
    let l = b.column(1).as_list::<i32>().value(15_000);
    assert_eq!(l.as_string::<i32>().value(1), wide.to_string());
    let s = b.column(2).as_struct().column(0).as_string::<i32>();
    assert_eq!(s.value(15_000), wide.to_string());
    assert_eq!(s.value(29_990), "2.5");
}

#[test]
fn arrays_nested_values_and_wrappers() {
    let elems: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "tags": ["a", "b{i}"], "pos": {{"x": {i}.5, "y": null}}, "big": 123456789012345678901{i}}}"#
            )
        })
        .collect();
    for (name, doc) in [
        ("t.json", format!("[\n{}\n]\n", elems.join(",\n"))),
        ("t.json", format!("{{\"data\": [{}]}}", elems.join(","))),
        ("noext", format!("  [{}]", elems.join(","))),
    ] {
        let (file, _) = convert(name, doc.as_bytes(), small()).expect("converts");
        let (b, kv) = read(file);
        assert_eq!(b.num_rows(), 3000);
        let tags = b.column(1).as_list::<i32>();
        let t = tags.value(2999);
        assert_eq!(t.as_string::<i32>().value(1), "b2999");
        let pos = b.column(2).as_struct();
        assert_eq!(pos.column(0).as_primitive::<Float64Type>().value(3), 3.5);
        assert!(pos.column(1).is_null(3));
        assert_eq!(b.column(3).data_type(), &DataType::Utf8);
        assert_eq!(
            b.column(3).as_string::<i32>().value(12),
            "12345678901234567890112"
        );
        if doc.starts_with("{\"data\"") {
            assert!(kv.contains(&("s3proc.records_key".into(), "data".into())));
        }
    }
}

#[test]
fn mixed_nested_values_become_json_text() {
    let data = b"{\"v\": {\"a\": 1}}\n{\"v\": [1, 2]}\n{\"v\": \"s\"}\n{\"v\": null}\n";
    let (b, _) = read(
        convert("t.ndjson", data, ConvertOptions::default())
            .expect("ok")
            .0,
    );
    let v = b.column(0).as_string::<i32>();
    assert_eq!(
        (v.value(0), v.value(1), v.value(2)),
        ("{\"a\":1}", "[1,2]", "\"s\"")
    );
    assert!(v.is_null(3));
}

#[test]
fn single_object_is_one_row_and_pretty_values_are_rows() {
    let (b, _) = read(
        convert(
            "t.json",
            b"{\n \"a\": 1,\n \"b\": [1]\n}\n",
            ConvertOptions::default(),
        )
        .expect("ok")
        .0,
    );
    assert_eq!(b.num_rows(), 1);
    let (b, _) = read(
        convert(
            "t.json",
            b"{\n \"a\": 1\n}\n{\n \"a\": 2\n}",
            ConvertOptions::default(),
        )
        .expect("ok")
        .0,
    );
    assert_eq!(b.num_rows(), 2);
}

fn parse_error(name: &str, data: &[u8]) -> (u64, String) {
    match convert(name, data, small()) {
        Err(Error::Parse { line, reason, .. }) => (line, reason),
        Err(other) => panic!("not a parse error: {other}"),
        Ok(_) => panic!(
            "accepted {:?}",
            String::from_utf8_lossy(&data[..data.len().min(80)])
        ),
    }
}

#[test]
fn errors_name_the_line() {
    let mut data = ndjson(20_000, |i| format!(r#"{{"id": {i}}}"#));
    data.extend_from_slice(b"{\"id\": 1,}\n{\"id\": 2}\n");
    let (line, reason) = parse_error("t.ndjson", &data);
    assert_eq!(line, 20_001, "{reason}");
    let mut truncated = b"[".to_vec();
    truncated.extend(ndjson(2000, |i| format!(r#"{{"id": {i}}},"#)));
    let (_, reason) = parse_error("t.json", &truncated);
    assert!(reason.contains("never closed"), "{reason}");
    let (line, reason) = parse_error("t.ndjson", b"{\"a\": \"\xff\"}\n");
    assert_eq!(line, 1);
    assert!(reason.contains("UTF-8"), "{reason}");
    let deep = format!("[{{\"a\": {}{}}}]", "[".repeat(100), "]".repeat(100));
    let (_, reason) = parse_error("t.json", deep.as_bytes());
    assert!(reason.contains("deeper"), "{reason}");
    let (_, reason) = parse_error("t.json", &[b'['; 100_000]);
    assert!(reason.contains("never closed"), "{reason}");
    let (_, reason) = parse_error("t.json", b"[1, 2]");
    assert!(reason.contains("object"), "{reason}");
    let (line, _) = parse_error("t.xml", b"<a>\n<b>1</c>\n</a>");
    assert_eq!(line, 2, "XML is read by its own reader, errors with a line");
    let (_, reason) = parse_error("t.ndjson", b"\x28\xb5\x2f\xfd\x04\x00");
    assert!(reason.contains("zstd"), "{reason}");
    parse_error("t.json", b"[]");
    parse_error("t.json", b"{}");
}
