"""Dialects and shapes: delimiters, TSV escapes, header, ragged rows, column names, line endings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pytest
from _util import (
    assert_table_matches_rows,
    assert_table_matches_text_table,
    convert_chunks,
    convert_table,
    duckdb_text_table,
    json_dialect,
)

import s3proc

ROWS = [
    ["1", "Zürich, CH", "2.5", "true"],
    ["2", 'say "hi"', "-1", "false"],
    ["3", "", "", ""],
    ["4", "multi\nline", "1e3", "TRUE"],
    ["5", "a;b|c\td", "0.125", "false"],
]
HEADER = ["id", "name", "x", "flag"]


def _write(delimiter: str, rows=ROWS, header=HEADER, lineterminator: str = "\n") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


# ------------------------------------------------------------------ delimiter sniffing
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_delimiter_is_detected(delimiter: str) -> None:
    data = _write(delimiter)
    plan = s3proc.inspect(data)
    assert plan["dialect"]["delimiter"] == delimiter
    assert plan["dialect"]["header"] is True
    assert [c[0] for c in plan["columns"]] == HEADER
    out = convert_chunks(data)
    assert_table_matches_rows(out.table, HEADER, ROWS)
    assert json_dialect(out.metadata)["delimiter"] == delimiter


@pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_detected_delimiter_with_decimal_commas_in_text(delimiter: str) -> None:
    rows = [[str(i), f"{i},5", f"a,b,{i}"] for i in range(50)]
    data = _write(delimiter, rows=rows, header=["k", "v", "w"])
    assert s3proc.inspect(data)["dialect"]["delimiter"] == delimiter
    assert_table_matches_rows(convert_table(data), ["k", "v", "w"], rows)


# ------------------------------------------------------------------ TSV
def test_backslash_tsv_equals_csv_of_same_rows(gen_data) -> None:
    tsv = gen_data("tsv", 2000, 3)
    csv_path = gen_data("csv", 2000, 3)
    plan = s3proc.inspect(tsv)
    assert plan["dialect"]["delimiter"] == "\t"
    assert plan["dialect"]["escape"] == "backslash"
    from_tsv = convert_table(tsv)
    from_csv = convert_table(csv_path)
    assert from_tsv.schema == from_csv.schema
    assert from_tsv.num_rows == 2000
    for name in from_csv.column_names:
        assert from_tsv.column(name).equals(from_csv.column(name)), name
    # The generated comments have embedded newlines (escaped as \n in the TSV).
    assert any("\n" in (c or "") for c in from_tsv.column("comment").to_pylist())
    assert_table_matches_text_table(from_tsv, duckdb_text_table(csv_path))


def test_backslash_tsv_escapes_and_null() -> None:
    data = b"a\tb\tc\nx\\ty\t\\N\tback\\\\slash\nline\\nbreak\tcr\\rhere\t\\N\n"
    plan = s3proc.inspect(data)
    assert plan["dialect"]["escape"] == "backslash"
    table = convert_table(data)
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [
        {"a": "x\ty", "b": None, "c": "back\\slash"},
        {"a": "line\nbreak", "b": "cr\rhere", "c": None},
    ]


def test_postgres_text_dump_with_values_that_start_with_a_quote() -> None:
    """``\\N`` says it is PostgreSQL's text format: a quote is a character there, even where a
    value looks quoted (quoting would merge rows 3 to 5)."""
    data = (
        b'id\ttitle\tnote\n1\t\\N\tone\\ntwo\n2\t"Hello" she said\t\\N\n'
        b'3\t"Oops\tx\n4\tlast\t\\N\n5\t"fine"\ty\n'
    )
    assert s3proc.inspect(data, name="dump.tsv")["dialect"]["escape"] == "backslash"
    table = convert_table(data, name="dump.tsv")
    assert table.column("title").to_pylist() == [None, '"Hello" she said', '"Oops', "last", '"fine"']
    assert table.column("note").to_pylist() == ["one\ntwo", None, "x", None, "y"]


def test_windows_paths_in_a_plain_tsv_are_kept_as_written() -> None:
    """``\\U`` or ``\\q`` is no escape of any text format: the backslashes are text."""
    rows = [["1", "C:\\temp\\new.txt"], ["2", "C:\\Users\\bob"], ["3", "D:\\reports\\2024\\q1.xlsx"]]
    data = _write("\t", rows=rows, header=["id", "path"])
    assert s3proc.inspect(data)["dialect"]["escape"] == "quote"
    assert_table_matches_rows(convert_table(data), ["id", "path"], rows)


def test_octal_escapes_give_utf8_or_windows_1252_bytes() -> None:
    data = b"id\tname\n1\tcaf\\351\n2\tcaf\\303\\251\n3\t\\N\n"
    assert convert_table(data).column("name").to_pylist() == ["café", "café", None]


def test_backslash_tsv_forced_by_option() -> None:
    data = b"a\tb\n1\tp\\tq\n2\t\\N\n"
    table = convert_table(data, delimiter="\t", escape="backslash", header=True)
    assert table.to_pylist() == [{"a": 1, "b": "p\tq"}, {"a": 2, "b": None}]


def test_quoted_tsv() -> None:
    rows = [["1", "tab\there"], ["2", "new\nline"], ["3", 'quote"d'], ["4", "back\\slash"]]
    data = _write("\t", rows=rows, header=["id", "text"])
    plan = s3proc.inspect(data)
    assert plan["dialect"]["delimiter"] == "\t"
    assert plan["dialect"]["escape"] == "quote"
    assert_table_matches_rows(convert_table(data), ["id", "text"], rows)


def test_tsv_name_prefers_tab(tmp_path: Path) -> None:
    path = tmp_path / "one.tsv"
    path.write_bytes(b"name\nx\ny\n")
    assert s3proc.inspect(path)["dialect"]["delimiter"] == "\t"


# ------------------------------------------------------------------ options override detection
def test_delimiter_option_overrides() -> None:
    data = b"a;b,c\n1;2,3\n4;5,6\n"
    table = convert_table(data, delimiter=";")
    assert table.column_names == ["a", "b,c"]
    assert table.column("b,c").to_pylist() == ["2,3", "5,6"]


def test_quote_option_overrides() -> None:
    data = b"a,b\n'x, y',1\n'it''s',2\n"
    table = convert_table(data, quote="'")
    assert table.column("a").to_pylist() == ["x, y", "it's"]
    assert table.column("b").to_pylist() == [1, 2]


def test_quoting_off() -> None:
    # quote="": a quote is an ordinary character, and a comma always separates.
    data = b'a,b\n"x",1\n"y,z",2\n'
    table = convert_table(data, quote="")
    assert table.column_names == ["a", "b", "column_3"]
    assert table.column("a").to_pylist() == ['"x"', '"y']
    assert table.column("b").to_pylist() == ["1", 'z"']
    assert table.column("column_3").to_pylist() == [None, 2]


def test_header_option_false() -> None:
    data = b"a,b\n1,2\n"
    table = convert_table(data, header=False)
    assert table.column_names == ["column_1", "column_2"]
    assert table.column("column_1").to_pylist() == ["a", "1"]


def test_header_option_true_on_numeric_first_row() -> None:
    data = b"1,2\n3,4\n5,6\n"
    assert s3proc.inspect(data)["dialect"]["header"] is False
    table = convert_table(data, header=True)
    assert table.column_names == ["1", "2"]
    assert table.column("1").to_pylist() == [3, 5]


def test_null_values_option() -> None:
    data = b"a,b,c\n1,NA,x\n2,,-\nNA,3,y\n"
    table = convert_table(data, null_values=["NA", "-"])
    assert table.schema.field("a").type == pa.int64()
    assert table.column("a").to_pylist() == [1, 2, None]
    # "" is no longer a null marker: the empty field is an empty string.
    assert table.schema.field("b").type == pa.string()
    assert table.column("b").to_pylist() == [None, "", "3"]
    assert table.column("c").to_pylist() == ["x", None, "y"]
    assert (
        convert_chunks(data, null_values=["NA", "-"])
        .metadata["s3proc.dialect"]
        .endswith('"null_values":["NA","-"]}')
    )


def test_null_values_option_keeps_empty_as_null_when_listed() -> None:
    table = convert_table(b"a,b\n1,N/A\n2,\n3,7\n", null_values=["", "N/A"])
    assert table.schema.field("b").type == pa.int64()
    assert table.column("b").to_pylist() == [None, None, 7]


# ------------------------------------------------------------------ ragged rows and names
def test_short_rows_give_nulls() -> None:
    data = b"a,b,c\n1,2,3\n4,5\n6\n7,8,9\n"
    table = convert_table(data)
    assert table.to_pylist() == [
        {"a": 1, "b": 2, "c": 3},
        {"a": 4, "b": 5, "c": None},
        {"a": 6, "b": None, "c": None},
        {"a": 7, "b": 8, "c": 9},
    ]


def test_long_rows_add_named_columns() -> None:
    data = b"a,b\n1,2\n3,4,x\n5,6,y,z\n"
    table = convert_table(data)
    assert table.column_names == ["a", "b", "column_3", "column_4"]
    assert table.column("column_3").to_pylist() == [None, "x", "y"]
    assert table.column("column_4").to_pylist() == [None, None, "z"]
    assert table.column("a").to_pylist() == [1, 3, 5]


def test_extra_column_name_does_not_clash() -> None:
    data = b"column_3,b\n1,2\n3,4,x\n"
    table = convert_table(data)
    assert len(set(table.column_names)) == 3
    assert table.column_names[:2] == ["column_3", "b"]
    assert table.column(2).to_pylist() == [None, "x"]


def test_blank_and_duplicate_header_names() -> None:
    data = b"a,,a,b,,a\n1,2,3,4,5,6\n"
    table = convert_table(data, header=True)
    assert table.column_names == ["a", "column_2", "a_2", "b", "column_5", "a_3"]
    assert table.to_pylist() == [{"a": 1, "column_2": 2, "a_2": 3, "b": 4, "column_5": 5, "a_3": 6}]


def test_a_blank_name_in_a_header_over_typed_columns() -> None:
    table = convert_table(b"id,,name\n1,2,x\n3,4,y\n")
    assert table.to_pylist() == [{"id": 1, "column_2": 2, "name": "x"}, {"id": 3, "column_2": 4, "name": "y"}]


def test_names_are_deterministic() -> None:
    data = b"x,x,,x_2\n1,2,3,4\n"
    first = convert_table(data, header=True).column_names
    assert first == convert_table(data, header=True).column_names
    assert len(set(first)) == 4
    assert first[0] == "x" and first[2] == "column_3"


# ------------------------------------------------------------------ line endings, header-only
def test_header_only_file() -> None:
    table = convert_table(b"a,b,c\n")
    assert table.num_rows == 0
    assert table.column_names == ["a", "b", "c"]
    assert all(f.type == pa.string() for f in table.schema)


def test_header_only_without_newline() -> None:
    table = convert_table(b"name,amount")
    assert table.num_rows == 0
    assert table.column_names == ["name", "amount"]
    assert all(f.type == pa.string() for f in table.schema)


def test_crlf_without_final_newline() -> None:
    table = convert_table(b"a,b\r\n1,x\r\n2,y")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_crlf_values_have_no_stray_cr() -> None:
    table = convert_table(b"a,b\r\n1,x\r\n2,y\r\n")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert json_dialect(convert_chunks(b"a,b\r\n1,x\r\n").metadata)["terminator"] == "\n"


def test_final_line_without_newline_kept() -> None:
    table = convert_table(b"a,b\n1,x\n2,y")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_final_quoted_field_without_newline_kept() -> None:
    table = convert_table(b'a,b\n1,"x\ny"')
    assert table.to_pylist() == [{"a": 1, "b": "x\ny"}]


def test_cr_only_line_endings() -> None:
    table = convert_table(b"a,b\r1,x\r2,y\r")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_blank_lines_between_records() -> None:
    table = convert_table(b"a,b\n1,x\n\n2,y\n\n")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_single_column_with_nulls() -> None:
    # Python's csv writes a lone empty field as "" so that it is not a blank line.
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows([["v"], ["1"], [""], ["3"]])
    table = convert_table(buf.getvalue().encode(), header=True)
    assert table.column("v").to_pylist() == [1, None, 3]


# ------------------------------------------------------------------ pieces: the same table whatever the cut
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
@pytest.mark.parametrize("read_size", [4096, 10_000, 65_536])
def test_small_pieces_give_same_table(gen_data, fmt: str, read_size: int) -> None:
    path = gen_data(fmt, 20_000, 8)
    assert convert_table(path, read_size=read_size).equals(convert_table(path))


def test_stray_quotes_in_unquoted_fields(tmp_path: Path) -> None:
    # A quote inside an unquoted field is a literal character; it must not upset how the
    # file is cut into pieces (5'10" style values, over many pieces).
    rows = [[str(i), f"5'{i % 12}\"", f'"quoted, {i}"', f'x"y{i}'] for i in range(20_000)]
    text = "id,height,q,odd\n" + "".join(
        f'{r[0]},{r[1]},"{r[2].replace(chr(34), chr(34) * 2)}",{r[3]}\n' for r in rows
    )
    path = tmp_path / "stray.csv"
    path.write_text(text, encoding="utf-8")
    for read_size in (4096, 65_536, None):
        opts = {} if read_size is None else {"read_size": read_size}
        table = convert_table(path, **opts)
        assert_table_matches_rows(table, ["id", "height", "q", "odd"], rows)


def test_cr_only_file_with_a_quoted_lf(tmp_path: Path) -> None:
    """The line end is the first one outside quotes: the LF in a value is no line end."""
    rows = [[str(i), "multi\nline" if i == 3 else f"n{i}"] for i in range(20_000)]
    path = tmp_path / "cr.csv"
    path.write_bytes(_write(",", rows=rows, header=["id", "note"], lineterminator="\r"))
    assert s3proc.inspect(path)["dialect"]["terminator"] == "\r"
    table = convert_table(path, read_size=4096, max_record_bytes=64 * 1024)
    assert_table_matches_rows(table, ["id", "note"], rows)


def test_cr_only_file_with_quoted_cr_over_many_pieces(tmp_path: Path) -> None:
    rows = [[str(i), f"a\rb {i}"] for i in range(20_000)]
    text = "id,text\r" + "".join(f'{r[0]},"{r[1]}"\r' for r in rows)
    path = tmp_path / "cr.csv"
    path.write_bytes(text.encode())
    assert s3proc.inspect(path)["dialect"]["terminator"] == "\r"
    table = convert_table(path, read_size=4096)
    assert_table_matches_rows(table, ["id", "text"], rows)
