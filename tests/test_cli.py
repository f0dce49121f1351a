"""The ``s3proc`` command line, run as a subprocess through the installed console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_s3proc_alone_prints_its_help(s3proc_bin: Path) -> None:
    proc = run(s3proc_bin)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.startswith("Usage: s3proc") and "\nCommands:\n" in err and "s3proc: error" not in err


def test_a_reader_that_goes_away_is_no_error(s3proc_bin: Path, small_csv: Path) -> None:
    """`s3proc inspect FILE | head -1`: the pipe closes before s3proc writes."""
    proc = subprocess.Popen(
        [s3proc_bin, "inspect", str(small_csv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert err == "", err


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
    assert parquet_metadata(data)["s3proc.source"] == small_csv.name


def test_convert_prints_the_warnings_of_the_conversion(s3proc_bin: Path, tmp_path: Path) -> None:
    doc = tmp_path / "export.xml"
    doc.write_bytes(b"<d><made>2024-01-01</made><r>1</r><r>2</r></d>")
    proc = run(s3proc_bin, "convert", str(doc), str(tmp_path / "out.parquet"))
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.decode().splitlines()[-1]
    assert last.startswith(f"{doc}: warning: ") and "outside the <r> records kept" in last, last


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


@pytest.mark.parametrize("where", ["flag", "environment", ".env"])
def test_an_empty_quote_turns_quoting_off_everywhere(s3proc_bin: Path, tmp_path: Path, where: str) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b'a,b\n"x,y\n')
    out = tmp_path / "out.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3PROC_")}
    flags = ["--quote", ""] if where == "flag" else []
    if where == "environment":
        env["S3PROC_QUOTE"] = ""
    if where == ".env":
        (tmp_path / ".env").write_text("S3PROC_QUOTE=\n")
    cmd = [str(s3proc_bin), "convert", str(path), str(out), *flags]
    proc = subprocess.run(cmd, capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert read_parquet(out.read_bytes()).to_pylist() == [{"a": '"x', "b": "y"}]


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
    assert "bin.csv" in line
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


# ------------------------------------------------------------- inputs and outputs that bite
def test_convert_refuses_an_output_that_is_the_input(
    s3proc_bin: Path, small_csv: Path, tmp_path: Path
) -> None:
    src = tmp_path / "x.csv"
    src.write_bytes(small_csv.read_bytes())
    (tmp_path / "link.parquet").symlink_to(src)
    for out in ("x.csv", str(src), "./x.csv", "link.parquet"):
        proc = run(s3proc_bin, "convert", "x.csv" if out != str(src) else "./x.csv", out, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert b"is the input itself" in proc.stderr
        assert src.read_bytes() == small_csv.read_bytes(), f"{out}: the input was touched"


def test_a_failed_convert_leaves_an_existing_output_as_it_was(s3proc_bin: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_bytes(b"a,b\n1,x\n" * 100_000 + b'2,"never closed\n')
    out = tmp_path / "out.parquet"
    out.write_bytes(b"what was there before")
    assert_clean_error(run(s3proc_bin, "convert", str(src), str(out)))
    assert out.read_bytes() == b"what was there before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.parquet"]


def test_inputs_that_cannot_be_read_twice(s3proc_bin: Path, small_csv: Path, tmp_path: Path) -> None:
    want = read_parquet(run(s3proc_bin, "convert", str(small_csv), "-").stdout)
    data = small_csv.read_bytes()

    def piped(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(s3proc_bin), "convert", *args], input=data, capture_output=True, timeout=120
        )

    for args in (("-", "-"), ("/dev/stdin", "-"), ("-", str(tmp_path / "o.parquet"))):
        proc = piped(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        got = read_parquet(proc.stdout if args[1] == "-" else (tmp_path / "o.parquet").read_bytes())
        assert got.equals(want), args
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{small_csv}' > '{fifo}'"])
    proc = run(s3proc_bin, "convert", str(fifo), "-")
    writer.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert read_parquet(proc.stdout).equals(want)


def test_a_late_widening_on_a_pipe_is_a_clear_error(s3proc_bin: Path, tmp_path: Path) -> None:
    # Past what the core keeps to replay a stream (16 MiB), after chunks went out.
    rows = b"".join(b"%d,%d,%024x\n" % (i, i, i * 2654435761) for i in range(700_000))
    proc = subprocess.run(
        [str(s3proc_bin), "convert", "-", str(tmp_path / "o.parquet")],
        input=b"a,b,pad\n" + rows + b"x,N/A,\n",
        capture_output=True,
    )
    line = assert_clean_error(proc)
    assert "<stdin>" in line and "read again" in line
    assert not list(tmp_path.iterdir())


def test_a_restart_into_dev_null(s3proc_bin: Path, tmp_path: Path) -> None:
    src = tmp_path / "drift.csv"
    src.write_bytes(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(60_000)) + b"x,N/A\n")
    with open(os.devnull, "wb") as null:
        proc = subprocess.run(
            [str(s3proc_bin), "convert", str(src), "-"], stdout=null, stderr=subprocess.PIPE
        )
    assert proc.returncode == 0, proc.stderr


def test_sigterm_leaves_no_output(s3proc_bin: Path, tmp_path: Path) -> None:
    # The input trickles in through a FIFO, so SIGTERM lands while the conversion runs.
    fifo, out = tmp_path / "in.csv", tmp_path / "out.parquet"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time\nf = open({str(fifo)!r}, 'w')\nf.write('a,b\\n' + '1,2\\n' * 500000)\n"
            "f.flush()\nwhile True:\n    f.write('3,4\\n'); f.flush(); time.sleep(0.01)",
        ]
    )
    try:
        proc = subprocess.Popen([str(s3proc_bin), "convert", str(fifo), str(out)], stderr=subprocess.PIPE)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        writer.kill()
        writer.wait()
    # 128 + SIGTERM, as a shell reports it; the interpreter's exit aborted now and then (-6) on
    # the lock of the stream a core thread still read.
    assert proc.returncode == 143 and b"Traceback" not in err and b"Fatal" not in err, (proc.returncode, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_source_metadata_is_the_name_not_the_path(s3proc_bin: Path, small_csv: Path, tmp_path: Path) -> None:
    outs = []
    for given in (str(small_csv), f"./{small_csv.name}"):
        proc = run(s3proc_bin, "convert", given, "-", cwd=small_csv.parent)
        outs.append(proc.stdout)
    assert parquet_metadata(outs[0])["s3proc.source"] == small_csv.name
    assert outs[0] == outs[1], "the bytes do not depend on how the path was spelled"
