"""Text encodings: Windows-1252/Latin-1, UTF-16 with a byte order mark, UTF-8 with a BOM."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from _util import assert_table_matches_rows, convert_chunks, convert_table

import s3proc

HEADER = ["city", "note", "n"]
ROWS = [["Zürich", "café", "1"], ["São Paulo", "€ 5", "2"], ["Köln", "naïve “quoted”", "3"]]


def _text(rows=ROWS, header=HEADER, newline: str = "\n") -> str:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return newline.join(lines) + newline


def test_windows_1252_detected_and_decoded() -> None:
    data = _text().encode("cp1252")
    assert b"\x80" in data  # the euro sign, which Latin-1 lacks
    plan = s3proc.inspect(data)
    assert plan["encoding"] == "windows-1252"
    out = convert_chunks(data)
    assert_table_matches_rows(out.table, HEADER, ROWS)
    assert out.metadata["s3proc.encoding"] == "windows-1252"


def test_latin1_detected_and_decoded() -> None:
    rows = [["Zürich", "café", "1"], ["Ærø", "½ price", "2"]]
    data = _text(rows).encode("latin-1")
    out = convert_chunks(data)
    assert_table_matches_rows(out.table, HEADER, rows)
    assert out.metadata["s3proc.encoding"] == "windows-1252"


@pytest.mark.parametrize("name", ["latin-1", "windows-1252", "cp1252"])
def test_encoding_option(name: str) -> None:
    rows = [["Zürich", "café", "1"]]
    data = _text(rows).encode("latin-1")
    out = convert_chunks(data, encoding=name)
    assert_table_matches_rows(out.table, HEADER, rows)
    assert out.metadata["s3proc.encoding"] == "windows-1252"


def test_latin1_header_name() -> None:
    data = "Straße,Größe\nx,1\n".encode("cp1252")
    assert convert_table(data).column_names == ["Straße", "Größe"]


def test_late_cp1252_bytes_in_utf8_file_are_kept(tmp_path: Path) -> None:
    # The first 4 MiB are ASCII, so the file is read as UTF-8; a Windows-1252 byte much
    # later must not be lost or turned into U+FFFD.
    n = 200_000
    head = "".join(f"{i},plain text value {i:08d}\n" for i in range(n))
    path = tmp_path / "late.csv"
    path.write_bytes(b"id,text\n" + head.encode() + "999999,café €\n".encode("cp1252"))
    assert path.stat().st_size > 4 << 20
    out = convert_chunks(path)
    table = out.table
    assert table.num_rows == n + 1
    assert table.column("text")[-1].as_py() == "café €"
    assert "utf-8" in out.metadata["s3proc.encoding"]
    assert "windows-1252" in out.metadata["s3proc.encoding"]
    # The service logs it: "café €" took 2 bytes that are not UTF-8.
    assert out.iterator.warnings == ["2 bytes that are not utf-8 read as windows-1252 (s3proc.encoding)"]


@pytest.mark.parametrize(
    ("bom", "codec"),
    [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")],
    ids=["le", "be"],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_utf16_with_bom(bom: bytes, codec: str, newline: str) -> None:
    rows = [*ROWS, ["日本", "😀 emoji, with comma".replace(",", ";"), "4"]]
    data = bom + _text(rows, newline=newline).encode(codec)
    plan = s3proc.inspect(data)
    assert plan["encoding"] == codec.replace("-le", "le").replace("-be", "be")
    assert plan["dialect"]["delimiter"] == ","
    out = convert_chunks(data)
    assert_table_matches_rows(out.table, HEADER, rows)
    assert out.metadata["s3proc.encoding"] == plan["encoding"]


def test_utf16_quoted_fields() -> None:
    text = 'a,b\n1,"x, ""y""\nz"\n2,ü\n'
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    assert convert_table(data).to_pylist() == [{"a": 1, "b": 'x, "y"\nz'}, {"a": 2, "b": "ü"}]


def test_utf16_large_file_crosses_pieces(tmp_path: Path) -> None:
    n = 100_000
    text = "id,name\n" + "".join(f"{i},Zürich {i}\n" for i in range(n))
    path = tmp_path / "u16.csv"
    path.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    table = convert_table(path, read_size=64 * 1024)
    assert table.num_rows == n
    assert table.column("id").to_pylist() == list(range(n))
    assert table.column("name").to_pylist() == [f"Zürich {i}" for i in range(n)]


def test_utf8_bom_stripped_from_first_column_name() -> None:
    data = codecs.BOM_UTF8 + "id,name\n1,café\n".encode()
    table = convert_table(data)
    assert table.column_names == ["id", "name"]
    assert table.to_pylist() == [{"id": 1, "name": "café"}]


def test_utf8_bom_without_header() -> None:
    data = codecs.BOM_UTF8 + b"1,2\n3,4\n"
    table = convert_table(data, header=False)
    assert table.column("column_1").to_pylist() == [1, 3]


@pytest.mark.parametrize("header", [True, False])
def test_utf8_bom_stripped_when_utf8_is_given(header: bool) -> None:
    data = codecs.BOM_UTF8 + (b"id,b\n" if header else b"") + b"1,2\n3,4\n"
    table = convert_table(data, encoding="utf-8", header=header)
    assert table.column(0).to_pylist() == [1, 3]
    assert table.column_names[0] == ("id" if header else "column_1")


def test_utf8_plain() -> None:
    rows = [["Zürich", "日本 😀", "1"]]
    out = convert_chunks(_text(rows).encode())
    assert out.metadata["s3proc.encoding"] == "utf-8"
    assert_table_matches_rows(out.table, HEADER, rows)


@pytest.mark.parametrize("read_size", [4096, 5000, 65536])
@pytest.mark.parametrize("codec", ["cp1252", "utf-16-le"])
def test_transcoded_input_with_small_pieces(codec: str, read_size: int) -> None:
    # Transcoded text is cut into pieces of read_size bytes; no character may be lost at a cut.
    n = 5000
    rows = [[str(i), f"Zürich {i}", "€"] for i in range(n)]
    text = "id,name,sym\n" + "".join(",".join(r) + "\n" for r in rows)
    data = (codecs.BOM_UTF16_LE if codec == "utf-16-le" else b"") + text.encode(codec)
    table = convert_table(data, read_size=read_size)
    assert_table_matches_rows(table, ["id", "name", "sym"], rows)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfea",  # a BOM and half a code unit
        b"\xfe\xff\x00",
        codecs.BOM_UTF16_LE + "a,b\n1,2\n".encode("utf-16-le") + b"x",  # cut short by one byte
        codecs.BOM_UTF16_BE + "a,b\n1,2\n".encode("utf-16-be") + b"\xd8",  # half a surrogate
    ],
    ids=["le_half_unit", "be_half_unit", "le_odd_tail", "be_odd_tail"],
)
def test_truncated_utf16_is_not_a_crash(data: bytes) -> None:
    # A UTF-16 file with an odd number of bytes: a clean ParseError, or the data read with
    # the broken tail replaced; never an InternalError (a panic in the core).
    try:
        table = convert_table(data)
    except s3proc.ParseError:
        return
    if len(data) > 8:
        assert table.column_names[:2] == ["a", "b"]
        assert [str(v) for v in table.to_pylist()[0].values()][:2] == ["1", "2"]


LONE_LE = b"\x00\xd8"  # a high surrogate without its low half, in UTF-16LE


@pytest.mark.parametrize(
    ("data", "name", "line"),
    [
        (
            codecs.BOM_UTF16_LE + "a,b\n1,x".encode("utf-16-le") + LONE_LE + "y\n".encode("utf-16-le"),
            "x.csv",
            2,
        ),
        (
            codecs.BOM_UTF16_LE + '[{"a":"x'.encode("utf-16-le") + LONE_LE + '"}]'.encode("utf-16-le"),
            "x.json",
            1,
        ),
        (
            codecs.BOM_UTF16_LE
            + '{"a":1}\n{"a":"x'.encode("utf-16-le")
            + LONE_LE
            + '"}\n'.encode("utf-16-le"),
            "x.ndjson",
            2,
        ),
        (
            codecs.BOM_UTF16_LE
            + "<r>\n<i>a".encode("utf-16-le")
            + LONE_LE
            + "</i><i>x</i></r>".encode("utf-16-le"),
            "x.xml",
            2,
        ),
        (b'<?xml version="1.0" encoding="shift_jis"?><r><i>\x82\xff</i><i>x</i></r>', "x.xml", 1),
        (codecs.BOM_UTF16_BE + "a,b\n1,2\n".encode("utf-16-be") + b"\xd8", "x.csv", 3),  # an odd last byte
    ],
    ids=["csv", "json", "ndjson", "xml", "xml-shift_jis", "csv-odd-tail"],
)
def test_malformed_text_in_another_encoding_is_a_parse_error(data: bytes, name: str, line: int) -> None:
    """Bytes that are no character of the file's encoding are an error with the line, as invalid
    UTF-8 is: they used to become U+FFFD, a value changed without a word."""
    with pytest.raises(s3proc.ParseError, match="malformed") as err:
        convert_table(data, name=name)
    assert err.value.line == line and err.value.source == name
