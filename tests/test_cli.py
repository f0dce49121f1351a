"""The ``s3proc`` command line, run as a subprocess through the installed console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _util import assert_table_matches_text_table, duckdb_text_table, parquet_metadata, read_parquet

import s3proc


def run(bin_: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(bin_), *args], capture_output=True, timeout=300, cwd=cwd)


def assert_clean_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    """Exit 1, one line "s3proc: error: ..." on stderr, no traceback."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("s3proc: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def small_csv(gen_data) -> Path:
    return gen_data("csv", 3000, 9)


def test_version(s3proc_bin: Path) -> None:
    proc = run(s3proc_bin, "--version")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert s3proc.__version__ in out
    assert "release" in out
    assert out.count("\n") == 1


def test_inspect_prints_schema(s3proc_bin: Path, small_csv: Path) -> None:
    proc = run(s3proc_bin, "inspect", str(small_csv))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "format:" in out and "csv" in out
    assert "utf-8" in out
    plan = s3proc.inspect(small_csv)
    for name, type_ in plan["columns"]:
        shown = any(line.split() == [name, type_] for line in out.splitlines())
        assert shown, f"{name} {type_} not in\n{out}"


def test_inspect_json(s3proc_bin: Path, small_csv: Path) -> None:
    proc = run(s3proc_bin, "inspect", "--json", str(small_csv))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = s3proc.inspect(small_csv)
    assert got["format"] == want["format"]
    assert got["encoding"] == want["encoding"]
    assert got["dialect"] == want["dialect"]
    assert [tuple(c) for c in got["columns"]] == [tuple(c) for c in want["columns"]]


def test_inspect_with_options(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_bytes(b"a;b\n1;NA\n2;3\n")
    proc = run(s3proc_bin, "inspect", "--json", "--delimiter", ";", "--null-value", "NA", str(path))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["dialect"]["delimiter"] == ";"
    assert got["dialect"]["null_values"] == ["NA"]
    assert [tuple(c) for c in got["columns"]] == [("a", "int64"), ("b", "int64")]


def test_convert_writes_readable_file(s3proc_bin: Path, small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    proc = run(s3proc_bin, "convert", str(small_csv), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "3000 rows" in proc.stderr.decode()
    data = out.read_bytes()
    table = read_parquet(data)
    assert table.num_rows == 3000
    assert_table_matches_text_table(table, duckdb_text_table(small_csv))
    assert parquet_metadata(data)["s3proc.source"] == str(small_csv)


def test_convert_to_stdout(s3proc_bin: Path, small_csv: Path, tmp_path: Path) -> None:
    proc = run(s3proc_bin, "convert", str(small_csv), "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"PAR1" and proc.stdout[-4:] == b"PAR1"
    file_out = tmp_path / "out.parquet"
    assert run(s3proc_bin, "convert", str(small_csv), str(file_out)).returncode == 0
    assert read_parquet(proc.stdout).equals(read_parquet(file_out.read_bytes()))


def test_convert_to_stdout_with_late_drift(s3proc_bin: Path, tmp_path: Path) -> None:
    # stdout cannot be rewound: the types must come from the whole file, so nothing restarts.
    path = tmp_path / "drift.csv"
    body = "".join(f"{i},{i}\n" for i in range(50_000)) + "50000,N/A\n"
    path.write_text("a,b\n" + body, encoding="utf-8")
    proc = run(s3proc_bin, "convert", str(path), "-")
    assert proc.returncode == 0, proc.stderr
    table = read_parquet(proc.stdout)
    assert table.num_rows == 50_001
    assert table.column("b").to_pylist()[-1] == "N/A"
    assert table.column("b").to_pylist()[:3] == ["0", "1", "2"]


def test_convert_with_options(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"1|x|-\n2|y|3\n")
    out = tmp_path / "out.parquet"
    proc = run(
        s3proc_bin,
        "convert",
        str(path),
        str(out),
        "--delimiter",
        "|",
        "--no-header",
        "--null-value",
        "-",
        "--null-value",
        "",
        "--zstd-level",
        "5",
        "--sample-rows",
        "all",
    )
    assert proc.returncode == 0, proc.stderr
    table = read_parquet(out.read_bytes())
    assert table.column_names == ["column_1", "column_2", "column_3"]
    assert table.to_pylist() == [
        {"column_1": 1, "column_2": "x", "column_3": None},
        {"column_1": 2, "column_2": "y", "column_3": 3},
    ]


def test_convert_latin1_with_encoding_option(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "l1.csv"
    path.write_bytes("name\nZürich\n".encode("latin-1"))
    out = tmp_path / "out.parquet"
    proc = run(s3proc_bin, "convert", "--encoding", "latin-1", str(path), str(out))
    assert proc.returncode == 0, proc.stderr
    assert read_parquet(out.read_bytes()).column("name").to_pylist() == ["Zürich"]


# ------------------------------------------------------------------ errors
def test_binary_input_is_clean_error(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10)
    out = tmp_path / "out.parquet"
    line = assert_clean_error(run(s3proc_bin, "convert", str(path), str(out)))
    assert str(path) in line
    assert "line" in line


def test_empty_input_is_clean_error(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert_clean_error(run(s3proc_bin, "convert", str(path), str(tmp_path / "o.parquet")))
    assert_clean_error(run(s3proc_bin, "inspect", str(path)))


def test_unterminated_quote_is_clean_error(s3proc_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'a,b\n1,2\n3,"open\n4,5\n')
    line = assert_clean_error(run(s3proc_bin, "convert", str(path), "-"))
    assert "line 3" in line


def test_bad_option_value_is_clean_error(s3proc_bin: Path, small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    for args in (["--encoding", "klingon"], ["--delimiter", "ab"]):
        proc = run(s3proc_bin, "convert", str(small_csv), str(out), *args)
        err = proc.stderr.decode()
        assert proc.returncode != 0
        assert "Traceback" not in err, f"{args}: {err}"


def test_missing_input(s3proc_bin: Path, tmp_path: Path) -> None:
    proc = run(s3proc_bin, "convert", str(tmp_path / "nope.csv"), str(tmp_path / "o.parquet"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr.decode()


def test_failed_convert_leaves_no_output(s3proc_bin: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(b"a,b\n1,x\n" * 100_000 + b'2,"never closed\n')
    out = tmp_path / "out.parquet"
    res = subprocess.run([str(s3proc_bin), "convert", str(src), str(out)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "unterminated quote" in res.stderr
    assert not out.exists()
