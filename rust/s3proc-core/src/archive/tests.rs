use std::io::{Read, Write};
use std::sync::Arc;

use super::*;
use crate::source::BytesSource;

fn src(name: &str, data: Vec<u8>) -> Arc<dyn Source> {
    Arc::new(BytesSource {
        data: data.into(),
        name: name.into(),
    })
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ::tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(::tar::EntryType::Regular);
        // `append_data` refuses `..`: write the raw name as a hostile tool would.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).expect("appends");
    }
    b.into_inner().expect("tar")
}

fn zip_of(files: &[(&str, &[u8])], method: ::zip::CompressionMethod) -> Vec<u8> {
    let mut z = ::zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let o = ::zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in files {
        z.start_file(*name, o).expect("starts");
        z.write_all(data).expect("writes");
    }
    z.finish().expect("zip").into_inner()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gz");
    e.finish().expect("gz")
}

/// Every entry: (name, kind, bytes of a file).
fn list(s: &dyn Source, opts: ArchiveOptions) -> Result<Vec<(String, EntryKind, Vec<u8>)>> {
    let mut out = Vec::new();
    walk(s, opts, &mut |m, data| {
        let mut bytes = Vec::new();
        if let Some(d) = data {
            d.read_to_end(&mut bytes)
                .map_err(|e| Error::io(&m.name, e))?;
        }
        out.push((m.name.clone(), m.kind.clone(), bytes));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn names_stay_inside_the_archive() {
    let n = |s: &str| normalise(s).map(|(n, _)| n);
    assert_eq!(n("../../etc/passwd").as_deref(), Ok("etc/passwd"));
    assert_eq!(n("/abs/x").as_deref(), Ok("abs/x"));
    assert_eq!(n("..\\..\\win\\x").as_deref(), Ok("win/x"));
    assert_eq!(n("C:\\data\\x.csv").as_deref(), Ok("data/x.csv"));
    assert_eq!(n("a/./b/../c").as_deref(), Ok("a/c"));
    assert_eq!(normalise("plain/x.csv").expect("ok").1, None);
    assert!(normalise("../../etc/passwd").expect("ok").1.is_some());
    assert!(n("a\0b").is_err());
    assert!(n("a\nb").is_err());
    assert!(n("..").is_err());
}

#[test]
fn tar_entries_hostile_names_links_and_duplicates() {
    let mut data = tar_of(&[
        ("../../etc/passwd", b"root"),
        ("a.csv", b"1"),
        ("a.csv", b"2"),
    ]);
    // A symlink appended by the tar crate's own builder.
    let mut b = ::tar::Builder::new(Vec::new());
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(::tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "link", "/etc/shadow").expect("link");
    let link = b.into_inner().expect("tar");
    data.truncate(data.len() - 1024);
    data.extend_from_slice(&link);
    let got = list(src("t.tar", data).as_ref(), ArchiveOptions::default()).expect("walks");
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["etc/passwd", "a.csv", "a~2.csv", "link"]);
    assert_eq!(got[2].2, b"2");
    assert_eq!(got[3].1, EntryKind::Symlink("/etc/shadow".into()));
}

#[test]
fn zip_methods_and_nesting() {
    let rows = b"a,b\n1,2\n".repeat(1000);
    let inner = zip_of(&[("orders.csv", &rows)], ::zip::CompressionMethod::Bzip2);
    let tgz = gz(&tar_of(&[("q1.zip", &inner), ("x.csv.gz", &gz(b"x\n1\n"))]));
    let outer = zip_of(
        &[("exports/pack.tgz", &tgz)],
        ::zip::CompressionMethod::Deflated,
    );
    let got = list(src("o.zip", outer).as_ref(), ArchiveOptions::default()).expect("walks");
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "exports/pack.tgz",
            "exports/pack.tgz/q1.zip",
            "exports/pack.tgz/q1.zip/orders.csv",
            "exports/pack.tgz/x.csv.gz",
        ]
    );
    assert_eq!(got[2].2, rows);
    assert_eq!(got[3].2, gz(b"x\n1\n"));
    let shallow = ArchiveOptions {
        max_depth: 2,
        ..Default::default()
    };
    let outer = zip_of(&[("p.tgz", &tgz)], ::zip::CompressionMethod::Stored);
    let err = list(src("o.zip", outer).as_ref(), shallow).expect_err("too deep");
    assert!(err.to_string().contains("max_depth"), "{err}");
}

#[test]
fn zip_with_data_descriptors_streams_from_a_tar() {
    let rows = b"x,y\n".repeat(5000);
    for method in [
        ::zip::CompressionMethod::Deflated,
        ::zip::CompressionMethod::Stored,
    ] {
        let mut z = ::zip::ZipWriter::new_stream(Vec::new());
        let o = ::zip::write::SimpleFileOptions::default().compression_method(method);
        for name in ["a.csv", "b.csv"] {
            z.start_file(name, o).expect("starts");
            z.write_all(&rows).expect("writes");
        }
        let inner = z.finish().expect("zip").into_inner();
        let t = tar_of(&[("in.zip", &inner)]);
        let got = list(src("t.tar", t).as_ref(), ArchiveOptions::default()).expect("walks");
        let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            ["in.zip", "in.zip/a.csv", "in.zip/b.csv"],
            "{method:?}"
        );
        assert_eq!(got[2].2, rows);
    }
}

#[test]
fn limits_are_checked_on_bytes_produced() {
    let zeros = vec![0u8; 8 << 20];
    let z = zip_of(&[("z.bin", &zeros)], ::zip::CompressionMethod::Deflated);
    let ratio = ArchiveOptions {
        max_ratio: 10,
        ..Default::default()
    };
    let err = list(src("b.zip", z.clone()).as_ref(), ratio).expect_err("bomb");
    assert!(
        matches!(&err, Error::Archive { entry: Some(e), .. } if e == "z.bin"),
        "{err}"
    );
    assert!(err.to_string().contains("max_ratio"), "{err}");
    let total = ArchiveOptions {
        max_total_bytes: 1 << 20,
        ..Default::default()
    };
    let err = list(src("b.zip", z).as_ref(), total).expect_err("too big");
    assert!(err.to_string().contains("max_total_bytes"), "{err}");
    let few = ArchiveOptions {
        max_entries: 2,
        ..Default::default()
    };
    let t = tar_of(&[("a", b""), ("b", b""), ("c", b"")]);
    let err = list(src("t.tar", t).as_ref(), few).expect_err("too many");
    assert!(err.to_string().contains("max_entries"), "{err}");
}

#[test]
fn small_deflated_zip_entries_inflate_whole_and_are_checked() {
    let deflated = ::zip::CompressionMethod::Deflated;
    let small = b"id,v\n1,a\n".repeat(10_000);
    // Past the bound of one-call inflation: streamed.
    let large: Vec<u8> = (0..1_300_000u32)
        .flat_map(|i| format!("{i:07}\n").into_bytes())
        .collect();
    let z = zip_of(&[("s.csv", &small), ("l.csv", &large)], deflated);
    let got = list(src("z.zip", z).as_ref(), ArchiveOptions::default()).expect("walks");
    assert_eq!((got[0].2 == small, got[1].2 == large), (true, true));
    let central = |z: &[u8]| {
        z.windows(4)
            .position(|w| w == b"PK\x01\x02")
            .expect("central")
    };
    let fails = |z: Vec<u8>, why: &str| {
        let err = list(src("z.zip", z).as_ref(), ArchiveOptions::default()).expect_err(why);
        assert!(
            matches!(&err, Error::Archive { entry: Some(e), .. } if e == "s.csv"),
            "{err}"
        );
        assert!(err.to_string().contains(why), "{err}");
    };
    let mut crc = zip_of(&[("s.csv", &small)], deflated);
    let at = central(&crc) + 16;
    crc[at] ^= 1;
    fails(crc, "checksum");
    // A declared size smaller than the data, in both headers.
    let mut short = zip_of(&[("s.csv", &small)], deflated);
    for at in [central(&short) + 24, 22] {
        short[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
    }
    fails(short, "past its declared size");
}

/// An entry is what it would be dropped on its own: a zip or gzip inside a
/// file whose name says neither (a document, a NumPy archive, an SVGZ) is
/// that file's bytes, not opened, and so is a single compressed file.
#[test]
fn entries_are_opened_only_when_their_name_says_an_archive() {
    let docm = zip_of(
        &[("[Content_Types].xml", b"<Types/>")],
        ::zip::CompressionMethod::Deflated,
    );
    let svgz = gz(b"<svg/>");
    let pack = zip_of(
        &[
            ("report.docm", &docm),
            ("arrays.npz", &docm),
            ("logo.svgz", &svgz),
            ("inner.zip", &docm),
            ("notes.txt.gz", &svgz),
        ],
        ::zip::CompressionMethod::Stored,
    );
    let got = list(src("p.zip", pack).as_ref(), ArchiveOptions::default()).expect("walks");
    let names: Vec<(&str, bool)> = got
        .iter()
        .map(|g| (g.0.as_str(), g.1 == EntryKind::File))
        .collect();
    assert_eq!(
        names,
        [
            ("report.docm", true),
            ("arrays.npz", true),
            ("logo.svgz", true),
            ("inner.zip", false),
            ("inner.zip/[Content_Types].xml", true),
            ("notes.txt.gz", true),
        ]
    );
    assert_eq!(got[0].2, docm);
    assert_eq!(got[2].2, svgz);
    assert_eq!(got[5].2, svgz);
}

/// An empty tar is two blocks of zeros (tar and Python write ten): no
/// entries, alone, compressed or inside another archive.
#[test]
fn empty_tars_have_no_entries() {
    let empty = tar_of(&[]);
    assert!(empty.len() >= 1024 && empty.iter().all(|&b| b == 0));
    for (name, data) in [("e.tar", empty.clone()), ("e.tar.gz", gz(&empty))] {
        let got = list(src(name, data).as_ref(), ArchiveOptions::default()).expect(name);
        assert!(got.is_empty(), "{name}: {got:?}");
    }
    let pack = zip_of(
        &[("attachments.tar", &empty), ("report.txt", b"read me")],
        ::zip::CompressionMethod::Deflated,
    );
    let got = list(src("p.zip", pack).as_ref(), ArchiveOptions::default()).expect("walks");
    let files: Vec<(&str, &[u8])> = got
        .iter()
        .filter(|g| g.1 == EntryKind::File)
        .map(|g| (g.0.as_str(), g.2.as_slice()))
        .collect();
    assert_eq!(files, [("report.txt", &b"read me"[..])]);
    // Zeros under another name are no empty tar.
    let err = list(
        src("x.zip", vec![0; 10240]).as_ref(),
        ArchiveOptions::default(),
    )
    .expect_err("zeros");
    assert!(matches!(err, Error::Archive { .. }), "{err}");
}

#[test]
fn truncated_and_mislabelled_archives_fail() {
    let t = tar_of(&[("a.csv", &[b'x'; 5000]), ("b.csv", &[b'y'; 5000])]);
    let cut = gz(&t[..6000]);
    let err = list(src("t.tar.gz", cut).as_ref(), ArchiveOptions::default()).expect_err("cut");
    assert!(matches!(err, Error::Archive { .. }), "{err}");
    let err = list(
        src("x.zip", b"not a zip at all".to_vec()).as_ref(),
        ArchiveOptions::default(),
    )
    .expect_err("not a zip");
    assert!(matches!(err, Error::Archive { .. }), "{err}");
    let err = list(
        src("x.tar", b"not a tar".to_vec()).as_ref(),
        ArchiveOptions::default(),
    )
    .expect_err("not a tar");
    assert!(err.to_string().contains("not one"), "{err}");
}

#[test]
fn entries_on_a_thread_skip_and_report_failure_last() {
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("f{i}.csv"), vec![b'a' + (i % 26) as u8; 300_000]))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let t = tar_of(&refs);
    let entries = ArchiveEntries::open(src("t.tar", t.clone()), ArchiveOptions::default());
    let mut seen = 0;
    while let Some(m) = entries.next_entry().expect("entry") {
        if m.index % 2 == 0 {
            let mut bytes = Vec::new();
            entries
                .reader(m.index)
                .read_to_end(&mut bytes)
                .expect("reads");
            assert_eq!(bytes, files[seen].1);
        }
        seen += 1;
    }
    assert_eq!(seen, 50);
    // Re-reading an entry through its source walks the archive again.
    let entries = ArchiveEntries::open(src("t.tar", t.clone()), ArchiveOptions::default());
    let first = entries.next_entry().expect("ok").expect("first");
    let second = entries.next_entry().expect("ok").expect("second");
    let old = entries.reader(first.index).read(&mut [0u8; 4]);
    assert!(old.is_err(), "a stale entry cannot be read");
    let source = EntrySource::new(
        src("t.tar", t.clone()),
        ArchiveOptions::default(),
        &entries,
        second,
    );
    for _ in 0..2 {
        let mut bytes = Vec::new();
        source
            .open()
            .expect("opens")
            .read_to_end(&mut bytes)
            .expect("reads");
        assert_eq!(bytes, files[1].1);
    }
    let cut = gz(&t[..t.len() / 2]);
    let entries = ArchiveEntries::open(src("t.tgz", cut), ArchiveOptions::default());
    let mut n = 0;
    let err = loop {
        match entries.next_entry() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("a truncated archive must not end well"),
            Err(e) => break e,
        }
    };
    assert!(n > 0 && matches!(err, Error::Archive { .. }), "{n} {err}");
}

/// Walks `s`, reading no entry's bytes (a consumer that skips them all).
fn skim(s: &dyn Source, opts: ArchiveOptions) -> Result<Vec<String>> {
    let mut names = Vec::new();
    walk(s, opts, &mut |m, _| {
        names.push(m.name.clone());
        Ok(())
    })?;
    Ok(names)
}

#[test]
fn bytes_of_skipped_entries_count_towards_the_limits() {
    let zeros = vec![0u8; 8 << 20];
    let tgz = gz(&tar_of(&[("z.bin", &zeros), ("b.csv", b"1")]));
    let total = ArchiveOptions {
        max_total_bytes: 1 << 20,
        ..Default::default()
    };
    let err = skim(src("t.tar.gz", tgz.clone()).as_ref(), total).expect_err("too big");
    assert!(err.to_string().contains("max_total_bytes"), "{err}");
    let ratio = ArchiveOptions {
        max_ratio: 10,
        ..Default::default()
    };
    let err = skim(src("t.tar.gz", tgz.clone()).as_ref(), ratio).expect_err("bomb");
    assert!(err.to_string().contains("max_ratio"), "{err}");
    // Skipped or not, a tar entry's bytes are checked the same way: a
    // symlink that declares data counts too.
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(::tar::EntryType::Symlink);
    h.set_size(zeros.len() as u64);
    h.set_path("l").expect("name");
    h.set_link_name("x").expect("target");
    h.set_cksum();
    let mut b = ::tar::Builder::new(Vec::new());
    b.append(&h, zeros.as_slice()).expect("appends");
    let t = b.into_inner().expect("tar");
    let err = skim(src("l.tar.gz", gz(&t)).as_ref(), total).expect_err("too big");
    assert!(err.to_string().contains("max_total_bytes"), "{err}");
    assert_eq!(
        skim(src("t.tar.gz", tgz).as_ref(), ArchiveOptions::default()).expect("walks"),
        ["z.bin", "b.csv"]
    );
}

/// A GNU long-name entry holding `len` bytes, then a file.
fn long_name_tar(len: usize) -> Vec<u8> {
    let mut h = ::tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(::tar::EntryType::GNULongName);
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = ::tar::Builder::new(Vec::new());
    b.append(&h, vec![b'n'; len].as_slice()).expect("appends");
    let mut f = ::tar::Header::new_gnu();
    f.set_size(1);
    f.set_mode(0o644);
    f.set_entry_type(::tar::EntryType::Regular);
    f.as_old_mut().name[..5].copy_from_slice(b"x.csv");
    f.set_cksum();
    b.append(&f, &b"1"[..]).expect("appends");
    b.into_inner().expect("tar")
}

#[test]
fn long_names_and_pax_headers_are_bounded() {
    // A 16 MiB name compresses to a few KB: it must not be read whole.
    let err = skim(
        src("n.tar.gz", gz(&long_name_tar(16 << 20))).as_ref(),
        ArchiveOptions::default(),
    )
    .expect_err("a 16 MiB name");
    assert!(err.to_string().contains("header"), "{err}");
    // A name longer than an S3 key is skipped with the reason; the archive goes on.
    let mut reasons = Vec::new();
    walk(
        src("n.tar", long_name_tar(5000)).as_ref(),
        ArchiveOptions::default(),
        &mut |m, _| {
            reasons.push(m.kind.skip_reason());
            Ok(())
        },
    )
    .expect("walks");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].as_deref().unwrap_or("").contains("1024"),
        "{reasons:?}"
    );
}

#[test]
fn many_duplicate_names_are_renamed_in_linear_time() {
    let mut files: Vec<(&str, &[u8])> = vec![("a~3.csv", b"x")];
    files.extend(std::iter::repeat_n(("a.csv", &b"1"[..]), 20_000));
    files.push(("a~3.csv", b"y"));
    let names = skim(
        src("d.tar", tar_of(&files)).as_ref(),
        ArchiveOptions::default(),
    )
    .expect("walks");
    assert_eq!(names.len(), 20_002);
    assert_eq!(
        names[..5],
        ["a~3.csv", "a.csv", "a~2.csv", "a~4.csv", "a~5.csv"]
    );
    assert_eq!(names[20_000], "a~20001.csv");
    assert_eq!(names[20_001], "a~3~2.csv");
}

#[test]
fn zip_entries_with_the_same_name_are_all_read() {
    let stored = ::zip::CompressionMethod::Stored;
    let mut z = zip_of(&[("a.csv", b"first"), ("b.csv", b"second")], stored);
    // Same length: rename b.csv to a.csv in the local and central headers.
    for at in 0..z.len() - 5 {
        if &z[at..at + 5] == b"b.csv" {
            z[at] = b'a';
        }
    }
    let got = list(src("d.zip", z).as_ref(), ArchiveOptions::default()).expect("walks");
    let got: Vec<(&str, &[u8])> = got
        .iter()
        .map(|(n, _, d)| (n.as_str(), d.as_slice()))
        .collect();
    assert_eq!(got, [("a.csv", &b"first"[..]), ("a~2.csv", &b"second"[..])]);
    // A compressed table keeps its two extensions: still a compressed table.
    let t = tar_of(&[("d/a.csv.gz", b"1"), ("d/a.csv.gz", b"2")]);
    let got = list(src("d.tar", t).as_ref(), ArchiveOptions::default()).expect("walks");
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["d/a.csv.gz", "d/a~2.csv.gz"]);
}

#[test]
fn the_ratio_of_an_entry_is_not_misjudged_by_read_ahead() {
    // Entries of 4.6 MB at about 50:1, well under the limit: they must
    // read, though the decoder reads the compressed bytes of several of
    // them ahead at once.
    let block: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dense = block.repeat(4500);
    let names: Vec<String> = (0..6).map(|i| format!("d{i}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &dense[..])).collect();
    let tgz = gz(&tar_of(&files));
    assert!(6 * dense.len() > 30 * tgz.len(), "{}", tgz.len());
    let got = list(src("t.tar.gz", tgz).as_ref(), ArchiveOptions::default()).expect("walks");
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|(_, _, d)| *d == dense));
}
