"""XML to Parquet: the shared generator's XML gives the same table as its CSV, the record element
is found or named, hostile documents end in bounded time with records or a ParseError."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pytest
from _util import convert_bytes, convert_chunks, convert_table, parquet_metadata, read_parquet

import s3proc


def _same_as_csv(xml: pa.Table, csv: pa.Table) -> None:
    assert xml.num_rows == csv.num_rows
    for name in csv.column_names:
        got = name if name in xml.column_names else f"@{name}"  # gen_data writes the id as an attribute
        assert xml.column(got).type == csv.column(name).type, name
        assert xml.column(got).to_pylist() == csv.column(name).to_pylist(), name


@pytest.mark.parametrize("rows", [1, 3000])
def test_generated_xml_is_the_same_table_as_its_csv(gen_data, rows: int) -> None:
    _same_as_csv(convert_table(gen_data("xml", rows, 8)), convert_table(gen_data("csv", rows, 8)))


def test_attributes_lists_nesting_and_the_record_element_option() -> None:
    doc = (
        b'<?xml version="1.0"?><export><meta><made>2024-01-01</made></meta>'
        b"<items>"
        b'<item id="1"><name>a &amp; b</name><tag>x</tag><tag>y</tag><dim><w>2</w><h>3</h></dim></item>'
        b'<item id="2"><name><![CDATA[<c>]]></name><tag>z</tag><tag>w</tag><dim><w>4</w><h>5</h></dim></item>'
        b"</items></export>"
    )
    t = convert_table(doc, record_element="item")
    assert t.column("@id").to_pylist() == [1, 2]
    assert t.column("name").to_pylist() == ["a & b", "<c>"]
    assert t.column("tag").to_pylist() == [["x", "y"], ["z", "w"]]  # repeated children: a list
    assert t.column("dim").to_pylist() == [{"w": 2, "h": 3}, {"w": 4, "h": 5}]
    assert convert_table(doc).column("@id").to_pylist() == [1, 2]  # found without the option


OUTSIDE_RECORDS = [
    # 3 tags outnumber the 2 rows at the same depth: the tags are the records
    b"<export><meta><tag>a</tag><tag>b</tag><tag>c</tag></meta>"
    b"<rows><row><id>1</id><v>x</v></row><row><id>2</id><v>y</v></row></rows></export>",
    # two repeated kinds under the root: the more repeated one wins
    b"<catalog><book>A</book><book>B</book><magazine>M1</magazine><magazine>M2</magazine>"
    b"<magazine>M3</magazine></catalog>",
    # interleaved, a tie: the first seen wins
    b"<r><i>1</i><j>2</j><i>3</i><j>4</j></r>",
    # the record name under a second parent is off the path found
    b"<r><x><i>1</i><i>2</i></x><y><i>3</i><i>4</i></y></r>",
    # a header, attributes on the root
    b'<feed v="2"><generated>2024-01-01</generated><e><n>1</n></e><e><n>2</n></e></feed>',
]


@pytest.mark.parametrize("doc", OUTSIDE_RECORDS)
def test_every_value_outside_the_records_is_kept_in_the_metadata(doc: bytes) -> None:
    def values(root: ET.Element) -> list[str]:
        return [v for e in root.iter() for v in [*e.attrib.values(), e.text] if v and v.strip()]

    converted = convert_chunks(doc, name="x.xml")
    data = converted.data
    t, metadata = read_parquet(data), parquet_metadata(data)
    size = len(metadata["s3proc.xml_outside"].encode())
    [warning] = converted.iterator.warnings
    assert warning.startswith(f"{size} bytes of values outside the <") and "kept in the metadata" in warning
    outside = ET.fromstring(metadata["s3proc.xml_outside"])
    in_columns = {str(v) for c in t.columns for v in c.to_pylist() if v is not None}
    lost = [v for v in values(ET.fromstring(doc)) if v not in in_columns and v not in values(outside)]
    assert not lost, (t.to_pylist(), metadata)


@pytest.mark.parametrize(
    ("inner", "text"),
    [
        (b"&lt; &gt;", "< >"),  # blank text between references
        (b"<![CDATA[a]]> <![CDATA[b]]>", "a b"),
        (b" &#233;\n", " \u00e9\n"),  # before the first value, before the end tag
        (b"]]<r>3</r>>", "]]>"),  # a record taken out between `]]` and `>`
        (b"]]<!-- c -->>", "]]>"),
    ],
)
def test_text_outside_the_records_keeps_its_value_and_stays_well_formed(inner: bytes, text: str) -> None:
    data = convert_bytes(b"<d><m>" + inner + b"</m><r>1</r><r>2</r></d>", name="x.xml", record_element="r")
    outside = ET.fromstring(parquet_metadata(data)["s3proc.xml_outside"])
    assert outside.find("m").text == text


def test_a_document_of_records_only_has_no_outside_metadata() -> None:
    converted = convert_chunks(
        b"<rows>\n  <row><a>1</a></row><!-- c -->\n  <row><a>2</a></row>\n</rows>", name="x.xml"
    )
    data = converted.data
    assert read_parquet(data).num_rows == 2 and converted.iterator.warnings == []
    assert not [k for k in parquet_metadata(data) if k.startswith("s3proc.xml_outside")]


def test_more_than_a_mib_outside_records_is_an_error_unless_the_record_element_is_named() -> None:
    doc = b"<d><notes>" + b"a long note " * 100_000 + b"</notes><rows><r>1</r><r>2</r></rows></d>"
    with pytest.raises(
        s3proc.ParseError, match="line 1: more than 1024 KiB outside the records would be lost"
    ):
        convert_table(doc, name="x.xml")
    data = convert_bytes(doc, name="x.xml", record_element="r")
    assert read_parquet(data).column("#text").to_pylist() == [1, 2]
    assert int(parquet_metadata(data)["s3proc.xml_outside_dropped"]) == len(doc) - len(
        b"<rows><r>1</r><r>2</r></rows>"
    )


@pytest.mark.parametrize(
    "doc",
    [
        b"<r><i>\x01</i><i>x</i></r>",  # a control character in text
        b"<r><i>1</i>\x00<i>2</i></r>",  # a NUL byte between records
        b"<r><i>&#x1;</i><i>2</i></r>",  # a reference to a character XML does not allow
        b' <?xml version="1.0"?><r><i>1</i><i>2</i></r>',  # the declaration not at the start
        b'<r><i a="&#1;">1</i><i>2</i></r>',  # a record's attribute
        b'<d a="&#x1f;"><r>1</r><r>2</r></d>',  # an attribute outside records
        b'<d><m k="x\x1fy"/><r>1</r><r>2</r></d>',
        b"<d><m\x01/><r>1</r><r>2</r></d>",  # in a name
        b"<d><!-- \x01 --><r>1</r><r>2</r></d>",  # in a comment
    ],
)
def test_what_xml_does_not_allow_is_a_parse_error_as_for_an_independent_reader(doc: bytes) -> None:
    with pytest.raises(ET.ParseError):
        ET.fromstring(doc)
    with pytest.raises(s3proc.ParseError, match=r"line 1: .*(control character|not at the very start)"):
        convert_table(doc, name="x.xml")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"<r><i><1a>x</1a></i><i>2</i></r>", "element name `1a`"),
        (b"<r><i 1a='x'>1</i><i>2</i></r>", "attribute name `1a`"),
        (b"<d><-m>x</-m><r>1</r><r>2</r></d>", "element name `-m`"),
        (b"<r><i a='x<y'>1</i><i>2</i></r>", "`<` in the value of attribute `a`"),
        (b"<d v='<'><r>1</r><r>2</r></d>", "`<` in the value of attribute `v`"),
        (b"<r><i a='1'b='2'>1</i><i>2</i></r>", "no whitespace before attribute `b`"),
        (b"<r><i>x]]>y</i><i>2</i></r>", "`]]>` in text"),
        (b"<d>x]]><r>1</r><r>2</r></d>", "`]]>` in text"),
    ],
)
def test_names_attributes_and_text_xml_does_not_allow_are_parse_errors(doc: bytes, reason: str) -> None:
    with pytest.raises(ET.ParseError):
        ET.fromstring(doc)
    with pytest.raises(s3proc.ParseError, match=f"line 1: {re.escape(reason)}"):
        convert_table(doc, name="x.xml")


def test_malformed_xml_names_the_line() -> None:
    with pytest.raises(s3proc.ParseError, match="line 3"):
        convert_table(b"<r>\n<a>1</a>\n<a>2</b>\n</r>\n", format="xml")


def test_hostile_documents_end_quickly_with_records_or_a_parse_error(corpus: Path) -> None:
    folder = corpus / "defusedxml-xmltestdata" / "xmltestdata"
    files = sorted(folder.glob("*.xml"))
    assert len(files) >= 10
    bombs = {"cyclic", "external", "external_file", "quadratic", "xmlbomb", "xmlbomb2"}
    for f in files:
        start = time.monotonic()
        try:
            convert_table(f)
            converted = True
        except s3proc.ParseError as e:
            converted = False
            assert f.name in str(e)
        assert time.monotonic() - start < 10, f"{f.name} took too long"
        if f.stem in bombs:
            assert not converted, f"{f.name}: an entity bomb must never be expanded"
