"""No temporary files, ever: converting leaves no file behind in the temp folder or beside the input."""

from __future__ import annotations

import codecs
import io
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from _util import convert_chunks, read_parquet
from s3servers import s3proc_args

import s3proc


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty temp, input and output folders; TMPDIR (for Rust and Python) points at the temp one."""
    d = {name: tmp_path / name for name in ("tmp", "in", "out")}
    for p in d.values():
        p.mkdir()
    monkeypatch.setenv("TMPDIR", str(d["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert tempfile.gettempdir() == str(d["tmp"])
    return d


def _drift_csv(path: Path) -> None:
    # Random padding keeps the Parquet output large, so chunks go out before the late "N/A".
    rng = random.Random(5)
    body = "".join(f"{i},{i},{rng.getrandbits(96):024x}\n" for i in range(50_000)) + "x,N/A,\n"
    path.write_text("a,b,pad\n" + body, encoding="utf-8")


def test_in_process_conversions_leave_no_files(dirs: dict[str, Path]) -> None:
    src = dirs["in"] / "data.csv"
    _drift_csv(src)
    u16 = dirs["in"] / "u16.csv"
    u16.write_bytes(codecs.BOM_UTF16_LE + "a,b\n1,Zürich\n".encode("utf-16-le"))
    before = {k: listing(v) for k, v in dirs.items()}

    s3proc.inspect(src)
    out = convert_chunks(src, chunk_size=64 * 1024, read_size=64 * 1024, row_group_rows=4096)
    assert out.restarts_seen >= 1
    convert_chunks(src, sample_rows=None)
    convert_chunks(u16)
    with open(src, "rb") as f:
        convert_chunks(f)
    with open(dirs["out"] / "out.parquet", "wb") as f:
        s3proc.convert(src, f, chunk_size=64 * 1024, row_group_rows=4096)
    s3proc.convert(src, io.BytesIO())

    assert listing(dirs["tmp"]) == before["tmp"] == set()
    assert listing(dirs["in"]) == before["in"]
    assert listing(dirs["out"]) == {"out.parquet"}
    assert read_parquet((dirs["out"] / "out.parquet").read_bytes()).num_rows == 50_001


def test_failed_conversion_leaves_no_files(dirs: dict[str, Path]) -> None:
    src = dirs["in"] / "bad.csv"
    src.write_bytes(b"a,b\n" + b"1,2\n" * 300_000 + b"3,\x00\n")
    before = listing(dirs["in"])
    with pytest.raises(s3proc.ParseError):
        convert_chunks(src)
    assert listing(dirs["tmp"]) == set()
    assert listing(dirs["in"]) == before


def test_cli_leaves_no_files(dirs: dict[str, Path], s3proc_bin: Path, gen_data) -> None:
    src = dirs["in"] / "data.csv"
    src.write_bytes(gen_data("csv", 30_000, 4).read_bytes())
    drift = dirs["in"] / "drift.csv"
    _drift_csv(drift)
    before_in = listing(dirs["in"])
    env = {**os.environ, "TMPDIR": str(dirs["tmp"])}
    for args in (
        ["inspect", str(src)],
        ["convert", str(src), str(dirs["out"] / "a.parquet")],
        ["convert", str(drift), str(dirs["out"] / "b.parquet")],
        ["convert", str(drift), "-"],
    ):
        proc = subprocess.run(
            [str(s3proc_bin), *args], env=env, capture_output=True, timeout=300, cwd=dirs["out"]
        )
        assert proc.returncode == 0, (args, proc.stderr)
    assert listing(dirs["tmp"]) == set()
    assert listing(dirs["in"]) == before_in
    assert listing(dirs["out"]) == {"a.parquet", "b.parquet"}


# ------------------------------------------------------------------ the service, under strace
_WRITES = re.compile(
    r"^\d+\s+(?P<call>openat|open|creat|mkdir|mkdirat|rename|renameat2?|link|linkat|symlink|symlinkat)"
    r"\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)"
)


def _written(trace: Path, cwd: Path) -> list[tuple[str, Path]]:
    """``(call, path)`` for every file opened for writing or created, and every name made."""
    out = []
    for line in trace.read_text(errors="replace").splitlines():
        m = _WRITES.match(line)
        if not m or int(m.group("ret")) < 0:
            continue
        call, args = m.group("call"), m.group("args")
        if call.startswith("open") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args):
            continue
        names = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
        if call.startswith("open") or call.startswith("creat") or call.startswith("mkdir"):
            names = names[:1]
        elif call.startswith(("rename", "link", "symlink")):
            names = names[-1:]  # the name created
        out += [(call, cwd / n) for n in names]
    return out


def test_the_service_writes_nothing_but_its_state_and_the_error_folder(
    moto, gen_data, tmp_path: Path
) -> None:
    """``s3proc run`` under ``strace -f``: raw, multipart and converted files, a late type drift
    (a restart) and a bad file. The only files it may create or open for writing are the state
    database (and SQLite's WAL, shared-memory and journal files beside it) and, for the bad file,
    the error folder. ``.ci/run`` installs strace."""
    strace = shutil.which("strace")
    if strace is None:
        assert not os.environ.get("CI"), "CI must install strace (see .ci/run)"
        pytest.skip("strace is not installed")
    watch = tmp_path / "in"
    (watch / "sub").mkdir(parents=True)
    (watch / "t.csv").write_bytes(gen_data("csv", 20_000, 3).read_bytes())
    _drift_csv(watch / "drift.csv")
    (watch / "sub" / "big.bin").write_bytes(os.urandom(11 << 20))
    (watch / "a.txt").write_text("hello")
    (watch / "bad.csv").write_bytes(b'a,b\n1,"never closed\n')
    bucket = moto.new_bucket()
    trace = tmp_path / "trace.txt"
    calls = "openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat"
    cmd = [strace, "-f", "-qq", "-e", f"trace={calls}", "-o", str(trace)]
    env = {**moto.env(), "PYTHONDONTWRITEBYTECODE": "1"}
    args = [*s3proc_args(moto, bucket, watch, "--part-size", "5MiB"), "--once"]
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]  # bad.csv went to the error folder
    own = watch / ".s3proc"
    allowed = {own, own / "errors", own / "errors" / "bad.csv", own / "errors" / "bad.csv.error.json"}
    allowed |= {own / f"state.db{s}" for s in ("", "-wal", "-shm", "-journal")}
    written = _written(trace, tmp_path)
    assert written, "strace saw nothing: the test proves nothing"
    assert {own / "state.db", own / "errors" / "bad.csv.error.json"} <= {p for _, p in written}
    stray = [(c, str(p)) for c, p in written if p.resolve() not in {a.resolve() for a in allowed}]
    assert stray == [], stray
