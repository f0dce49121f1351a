"""XML to Parquet: the shared generator's XML gives the same table as its CSV, the record element
is found or named, hostile documents end in bounded time with records or a ParseError."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
from _util import convert_table

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
