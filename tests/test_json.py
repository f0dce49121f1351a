"""JSON and NDJSON to Parquet: round trips against pyarrow and DuckDB, the gen_data
formats against its CSV, drift, late keys, and the whole JSONTestSuite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.json as pj
import pytest
from _util import CORPUS, GEN_DATA, convert_chunks, convert_table, parquet_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import s3proc

SUITE = CORPUS / "JSONTestSuite" / "test_parsing"
SUITE_FILES = sorted(SUITE.glob("*.json")) if SUITE.is_dir() else []

ROWS: list[dict[str, Any]] = [
    {
        "id": i,
        "name": f'n{i} é "q"\n',
        "score": i * 0.25 if i % 7 else None,
        "ok": i % 3 == 0,
        "tags": [f"t{j}" for j in range(i % 4)],
        "pos": {"x": i, "y": [i, i + 1], "deep": {"z": f"z{i}"}},
        **({"late": i} if i >= 150 else {}),
    }
    for i in range(300)
]


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def test_ndjson_round_trip_matches_pyarrow_value_by_value(tmp_path: Path) -> None:
    data = ndjson(ROWS)
    ours = convert_table(data, name="rows.ndjson")
    theirs = pj.read_json(pa.BufferReader(data))
    assert ours.column_names == theirs.column_names
    assert ours.to_pylist() == theirs.to_pylist()
    assert pa.types.is_struct(ours.schema.field("pos").type)
    assert pa.types.is_list(ours.schema.field("tags").type)


def test_json_array_round_trip_matches_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS, indent=1), encoding="utf-8")
    ours = convert_table(str(path))
    assert ours.to_pylist() == [{**{"late": None}, **r} for r in ROWS]
    rel = duckdb.sql(f"SELECT * FROM read_json('{path}', format='array')")
    theirs = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    assert ours.to_pylist() == theirs


def test_wrapper_object_and_metadata() -> None:
    data = json.dumps({"items": ROWS[:10]}).encode()
    out = convert_chunks(data, name="w.json")
    assert out.table.num_rows == 10
    md = out.metadata
    assert md["s3proc.format"] == "json"
    assert md["s3proc.records_key"] == "items"


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_gen_data_json_gives_the_csv_rows(fmt: str, tmp_path: Path) -> None:
    def gen(f: str) -> bytes:
        out = tmp_path / f"g.{f}"
        args = ["--format", f, "--rows", "3000", "--seed", "7", "--out", str(out)]
        subprocess.run([sys.executable, str(GEN_DATA), *args], check=True)
        return out.read_bytes()

    csv_table = convert_table(gen("csv"), name="g.csv")
    json_table = convert_table(gen(fmt), name=f"g.{fmt}")
    assert json_table.schema == csv_table.schema
    assert json_table.equals(csv_table)


def test_type_drift_at_row_100000_restarts_and_keeps_values() -> None:
    # Scattered values (a run of consecutive ints delta-encodes to almost nothing), so
    # chunks are handed out before the drift.
    values = [i * i * 7919 % 100_003 for i in range(100_000)]
    rows = [f'{{"n": {v}}}' for v in values] + ['{"n": 0.5}']
    data = ("\n".join(rows) + "\n").encode()
    out = convert_chunks(data, name="d.ndjson", row_group_rows=10_000, chunk_size=4096)
    assert out.restarts_seen == 1
    n = out.table.column("n")
    assert n.type == pa.float64()
    assert n[99_999].as_py() == float(values[99_999])
    assert n[100_000].as_py() == 0.5


def test_key_first_seen_at_row_1500_is_a_nullable_column() -> None:
    rows = [{"a": i, **({"b": "x"} if i == 1500 else {})} for i in range(3000)]
    table = convert_table(ndjson(rows), name="k.ndjson")
    b = table.column("b")
    assert b.null_count == 2999
    assert b[1500].as_py() == "x"


def test_big_integers_stay_exact_and_inspect_says_what_was_detected(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"v": 123456789012345678901234567890}\n{"v": 1}\n')
    assert convert_table(str(path)).column("v").to_pylist() == ["123456789012345678901234567890", "1"]
    plan = s3proc.inspect(str(path))
    assert plan["format"] == "ndjson"
    assert "extension .json" in plan["detected"]
    assert plan["columns"] == [("v", "string")]


def test_bad_line_in_the_middle_names_it() -> None:
    lines = [f'{{"a": {i}}}' for i in range(50_000)]
    lines[31_234] = '{"a": 1'
    with pytest.raises(s3proc.ParseError) as e:
        convert_chunks(("\n".join(lines) + "\n").encode(), name="m.ndjson")
    assert e.value.line == 31_235


def test_binary_with_a_json_name_is_refused_by_what_it_is() -> None:
    # Compressed content is decompressed whatever the name: a broken gzip says so.
    with pytest.raises(s3proc.SourceError, match="gzip"):
        convert_chunks(b"\x1f\x8b\x08\x00" + bytes(100), name="x.ndjson")
    with pytest.raises(s3proc.ParseError, match="PNG"):
        convert_chunks(b"\x89PNG\r\n\x1a\n" + bytes(100), name="x.ndjson")


def test_json_test_suite_is_present(corpus: Path) -> None:
    assert len(SUITE_FILES) > 300


def _is_records(path: Path) -> bool:
    doc = json.loads(path.read_bytes())
    if isinstance(doc, dict):
        return True
    return isinstance(doc, list) and all(isinstance(e, dict) for e in doc) and bool(doc)


def test_json_test_suite_n_files_are_parse_errors() -> None:
    for path in (p for p in SUITE_FILES if p.name.startswith("n_")):
        with pytest.raises(s3proc.ParseError) as e:
            convert_chunks(str(path), format="json")
        assert e.value.line >= 1, path.name


def test_json_test_suite_y_files_holding_records_convert() -> None:
    converted = 0
    for path in (p for p in SUITE_FILES if p.name.startswith("y_")):
        if not _is_records(path):
            with pytest.raises(s3proc.ParseError):
                convert_chunks(str(path), format="json")
            continue
        doc = json.loads(path.read_bytes())
        records = doc if isinstance(doc, list) else [doc]
        if not any(records):
            # No record has a field: nothing to convert, said as such.
            with pytest.raises(s3proc.ParseError, match="no record has a field"):
                convert_chunks(str(path), format="json")
            continue
        table = convert_chunks(str(path), format="json").table
        assert table.num_rows == len(records), path.name
        converted += 1
    assert converted >= 10


def test_json_test_suite_i_files_convert_or_are_parse_errors() -> None:
    outcomes = {"converted": 0, "rejected": 0}
    for path in (p for p in SUITE_FILES if p.name.startswith("i_")):
        try:
            table = convert_chunks(str(path), format="json").table
        except s3proc.ParseError:
            outcomes["rejected"] += 1
            continue
        assert table.num_rows >= 1, path.name
        outcomes["converted"] += 1
    assert sum(outcomes.values()) > 30


def test_parquet_metadata_names_the_layout() -> None:
    md = parquet_metadata(convert_chunks(b'[{"a": 1}]', name="a.json").data)
    assert md["s3proc.json_layout"] == "one JSON array of objects"


@pytest.mark.parametrize(
    "doc", [b'{"a": 1, "b": "x"}\n{\n  "a": 2,\n  "b": "y"\n}\n', b'{"a": 1, "b": "x"} {"a": 2, "b": "y"\n}']
)
def test_objects_one_after_the_other_are_not_ndjson_once_one_spans_lines(doc: bytes) -> None:
    """The first object on one line does not make the document NDJSON: the next one decides."""
    got = convert_chunks(doc, name="a.json")
    assert convert_table(doc, name="a.json").to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert parquet_metadata(got.data)["s3proc.json_layout"].startswith("JSON objects one after the other")


# ------------------------------------------------------------------ hypothesis: nested records
# A random shape (scalars, lists, structs nested a few levels), then records that follow it,
# any value null and any key absent. s3proc must give back every value: structs with the keys
# seen anywhere (absent ones null), lists as written, ints as ints, floats exactly; objects
# that never hold a key are JSON text.
KEYS = st.from_regex(r"[a-z]{1,5}", fullmatch=True)
SCALARS = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "str": st.text(max_size=8).map(lambda s: "s" + s),  # never a date: strings stay strings
    "bool": st.booleans(),
}
SHAPES = st.recursive(
    st.sampled_from(sorted(SCALARS)),
    lambda inner: st.one_of(
        inner.map(lambda s: ("list", s)),
        st.dictionaries(KEYS, inner, min_size=1, max_size=3).map(lambda d: ("struct", d)),
    ),
    max_leaves=6,
)


def values_of(shape: Any) -> st.SearchStrategy[Any]:
    if isinstance(shape, str):
        plain = SCALARS[shape]
    elif shape[0] == "list":
        plain = st.lists(values_of(shape[1]), max_size=3)
    else:
        plain = st.fixed_dictionaries({}, optional={k: values_of(v) for k, v in shape[1].items()})
    return st.one_of(st.none(), plain, plain, plain)


@st.composite
def nested_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    top = draw(st.dictionaries(KEYS, SHAPES, min_size=1, max_size=5))
    first = next(iter(top))
    record = st.fixed_dictionaries(
        {first: values_of(top[first]).filter(lambda v: v is not None)},
        optional={k: values_of(s) for k, s in top.items() if k != first},
    )
    return draw(st.lists(record, min_size=1, max_size=40))


def seen_keys(values: list[Any]) -> Any:
    """The keys a struct column shows: every key seen in any of its objects, in order."""
    dicts = [v for v in values if isinstance(v, dict)]
    lists = [x for v in values if isinstance(v, list) for x in v]
    if dicts:
        keys = dict.fromkeys(k for d in dicts for k in d)
        if not keys:
            return "{}"  # objects that never hold a key: a struct needs a field, so JSON text
        return {k: seen_keys([d[k] for d in dicts if k in d]) for k in keys}
    if lists:
        return [seen_keys(lists)]
    return None


def expected(value: Any, keys: Any) -> Any:
    if value is None:
        return None
    if keys == "{}":
        return json.dumps(value)
    if isinstance(value, dict):
        return {k: expected(value.get(k), sub) for k, sub in keys.items()}
    if isinstance(value, list):
        return [expected(x, keys[0] if keys else None) for x in value]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested_records())
def test_random_nested_records_round_trip(records: list[dict[str, Any]]) -> None:
    keys = seen_keys(records)
    table = convert_table(ndjson(records), name="random.ndjson")
    assert table.column_names == list(keys)
    assert table.to_pylist() == [expected(r, keys) for r in records]


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "xml"])
def test_a_number_no_float_holds_as_written_makes_the_column_text(fmt: str) -> None:
    """Past the float range (1e400 is not infinity), below it (1e-400 is not 0) or a subnormal
    that keeps fewer digits: the column widens to string, every value as written."""
    values = ["1.5", "1e400", "-1e400", "1e-400", "1.23456789012345e-320"]
    if fmt == "ndjson":
        data = "".join(f'{{"x": {v}}}\n' for v in values)
    elif fmt == "csv":
        data = "x\n" + "".join(f"{v}\n" for v in values)
    else:
        data = "<r>" + "".join(f"<a><x>{v}</x></a>" for v in values) + "</r>"
    table = convert_table(data.encode(), format=fmt)
    assert table.column("x").type == pa.string()
    assert table.column("x").to_pylist() == values


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"\\u0001":1}\n{"\x01":2}\n', "x.ndjson"),
        (b'[{"a\\u0009b":1},{"a\tb":2}]', "x.json"),
        (b'[{"c":[{"k\\u0000":1},{"k\x00":2}]}]', "x.json"),
        (b'[{"a\\nb":1},{"a\nb":2}]', "x.json"),
    ],
)
def test_a_raw_control_character_in_a_key_is_an_error_even_after_the_key_escaped(
    data: bytes, name: str
) -> None:
    with pytest.raises(ValueError):  # as for Python's reader
        [json.loads(line) for line in (data.splitlines() if name.endswith(".ndjson") else [data])]
    with pytest.raises(s3proc.ParseError, match="control character"):
        convert_table(data, name=name)
