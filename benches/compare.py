"""Side-by-side: s3proc against DuckDB, polars, pyarrow (and lxml for XML) on the same input.

The peers depend on the input's format (by extension, compressed or not): CSV/TSV, NDJSON, JSON
arrays (DuckDB only), XML (lxml ``iterparse`` feeding pyarrow), and archives of CSV files
(``.tar.gz``, ``.zip``): every entry converted to its own Parquet file, against Python's
``tarfile``/``zipfile`` feeding pyarrow, and against DuckDB reading the files extracted by
Python (the extraction counted). ``--make-archives DIR`` writes such a pair (200 generated CSV
files, ~500 MB in all) and exits.

Each converter runs in its own process (so peak RSS is its own), at the same
ZSTD level, ``--repeat`` times; the median run is reported. Prints wall time,
CPU time, input MB/s, peak RSS and output size for each, and s3proc's ratios
to each peer. Nothing passes or fails on time.

    python benches/compare.py DATA.{csv,ndjson,json,xml}[.gz] [--level 3] [--repeat 3] [--only s3proc,duckdb]
    python benches/compare.py --make-archives DIR [--files 200] [--rows 13000]
    python benches/compare.py DIR/csv-200.tar.gz
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

S3PROC = """
import s3proc
assert s3proc.build_profile == "release", "benchmark a release build"
with open(OUT, "wb") as f:
    s3proc.convert(IN, f, zstd_level=LEVEL)
"""
DUCK = """
import duckdb
duckdb.sql("SET enable_progress_bar = false")
duckdb.sql(f"COPY (SELECT * FROM {READ}('{IN}')) TO '{OUT}' "
           f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {LEVEL})")
"""
# The peers for each input format, each a script that reads IN and writes OUT at LEVEL.
RUNNERS = {
    "csv": {
        "s3proc": S3PROC,
        "duckdb": DUCK.replace("{READ}", "read_csv"),
        "polars": """
import polars as pl
pl.scan_csv(IN).sink_parquet(OUT, compression="zstd", compression_level=LEVEL)
""",
        "pyarrow": """
import pyarrow.csv as pc, pyarrow.parquet as pq
reader = pc.open_csv(IN, parse_options=pc.ParseOptions(newlines_in_values=True))
with pq.ParquetWriter(OUT, reader.schema, compression="zstd", compression_level=LEVEL) as w:
    for batch in reader:
        w.write_batch(batch)
""",
    },
    "ndjson": {
        "s3proc": S3PROC,
        "duckdb": DUCK.replace("{READ}", "read_json"),
        "polars": """
import polars as pl
pl.scan_ndjson(IN).sink_parquet(OUT, compression="zstd", compression_level=LEVEL)
""",
        "pyarrow": """
import pyarrow.json as pj, pyarrow.parquet as pq
pq.write_table(pj.read_json(IN), OUT, compression="zstd", compression_level=LEVEL)
""",
    },
    "json": {
        "s3proc": S3PROC,
        "duckdb": DUCK.replace("{READ}", "read_json"),
    },
    "xml": {
        "s3proc": S3PROC,
        # The usual Python way: lxml's iterparse, records as dicts, pyarrow in batches.
        "lxml": """
from lxml import etree
import pyarrow as pa, pyarrow.parquet as pq
writer, rows = None, []
def flush():  # every value is text; the columns are the keys of the first batch's rows
    global writer
    if writer is None:
        names = dict.fromkeys(k for r in rows for k in r)
        schema = pa.schema([(n, pa.string()) for n in names])
        writer = pq.ParquetWriter(OUT, schema, compression="zstd", compression_level=LEVEL)
    writer.write_table(pa.Table.from_pylist(rows, schema=writer.schema))
    rows.clear()
for _, el in etree.iterparse(IN, events=("end",)):
    parent = el.getparent()
    if parent is None or parent.getparent() is not None:
        continue
    rows.append({**{"@" + k: v for k, v in el.attrib.items()}, **{c.tag: c.text for c in el}})
    el.clear()
    while el.getprevious() is not None:
        del parent[0]
    if len(rows) == 100_000:
        flush()
if rows:
    flush()
writer.close()
""",
    },
}


# An archive: OUT is a directory, one Parquet file per CSV entry. s3proc runs the service's code
# (s3proc.archives feeding pipeline._ship_all), with a local file in place of the upload.
ARCHIVE_S3PROC = """
import os, s3proc
from pathlib import Path
from s3proc.archives import archive_results
from s3proc.pipeline import Result, _ship_all
assert s3proc.build_profile == "release", "benchmark a release build"
def ship(r):
    with open(os.path.join(OUT, os.path.basename(r.entry) + ".parquet"), "wb") as f:
        for chunk in r.open_chunks():
            f.write(chunk)
    return None, None
_ship_all(archive_results(Path(IN), "bench", 8 << 20, {"zstd_level": LEVEL}, Result), ship)
"""
ARCHIVE_PYTHON = """
import os, tarfile, zipfile
import pyarrow.csv as pc, pyarrow.parquet as pq
def entries():
    if IN.endswith(".zip"):
        with zipfile.ZipFile(IN) as z:
            for info in z.infolist():
                if not info.is_dir():
                    with z.open(info) as f:
                        yield info.filename, f
    else:
        with tarfile.open(IN, "r|*") as t:
            for info in t:
                if info.isfile():
                    yield info.name, t.extractfile(info)
for name, f in entries():
    table = pc.read_csv(f, parse_options=pc.ParseOptions(newlines_in_values=True))
    pq.write_table(table, os.path.join(OUT, os.path.basename(name) + ".parquet"),
                   compression="zstd", compression_level=LEVEL)
"""
ARCHIVE_DUCK = """
import os, tarfile, zipfile, duckdb
extracted = os.path.join(OUT, "extracted")
if IN.endswith(".zip"):
    with zipfile.ZipFile(IN) as z:
        z.extractall(extracted)
else:
    with tarfile.open(IN) as t:
        t.extractall(extracted, filter="data")
duckdb.sql("SET enable_progress_bar = false")
for root, _, files in os.walk(extracted):
    for name in files:
        path = os.path.join(root, name)
        out = os.path.join(OUT, name + ".parquet")
        duckdb.sql(f"COPY (SELECT * FROM read_csv('{path}')) TO '{out}' "
                   f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {LEVEL})")
        os.unlink(path)
"""
ARCHIVE = {"s3proc": ARCHIVE_S3PROC, "python": ARCHIVE_PYTHON, "duckdb": ARCHIVE_DUCK}
RUNNERS["tar.gz"] = RUNNERS["zip"] = ARCHIVE


def make_archives(work: str, files: int, rows: int) -> None:
    """``csv-N.tar.gz`` and ``csv-N.zip`` of N generated CSV files (seeds 1..N) in ``work``."""
    import tarfile
    import zipfile
    from pathlib import Path

    gen = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "gen_data.py"
    csvs = Path(work) / f"csv-{files}"
    csvs.mkdir(parents=True, exist_ok=True)
    for seed in range(1, files + 1):
        out = csvs / f"part-{seed:04d}.csv"
        if not out.exists():
            cmd = [sys.executable, str(gen), "--rows", str(rows), "--format", "csv", "--seed", str(seed)]
            subprocess.run([*cmd, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    names = sorted(csvs.iterdir())
    with tarfile.open(f"{csvs}.tar.gz", "w:gz") as t:
        for p in names:
            t.add(p, arcname=f"export/{p.name}")
    with zipfile.ZipFile(f"{csvs}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for p in names:
            z.write(p, arcname=f"export/{p.name}")
    total = sum(p.stat().st_size for p in names)
    print(f"{csvs}.tar.gz and {csvs}.zip: {len(names)} CSV files, {total / 1e6:.0f} MB")


def input_format(path: str) -> str:
    name = path.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".zip"):
        return "zip"
    for ext in (".gz", ".zst", ".bz2", ".xz"):
        name = name.removesuffix(ext)
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if name.endswith(".json"):
        with open(path, "rb") as f:
            return "json" if f.read(64).lstrip()[:1] == b"[" else "ndjson"
    return "xml" if name.endswith(".xml") else "csv"


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mib: float
    out_bytes: int


def run_once(tool: str, script: str, src: str, level: int, out_dir: str) -> Run:
    archive = input_format(src) in ("tar.gz", "zip")
    out = os.path.join(out_dir, tool if archive else f"{tool}.parquet")
    if archive:
        os.mkdir(out)
    code = f"IN={src!r}\nOUT={out!r}\nLEVEL={level}\n" + script
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{tool} failed with status {status}")
    if archive:
        size = sum(e.stat().st_size for e in os.scandir(out) if e.is_file())
        shutil.rmtree(out)
    else:
        size = os.path.getsize(out)
        os.unlink(out)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--make-archives", metavar="DIR", help="Write csv-N.tar.gz and .zip in DIR; exit.")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rows", type=int, default=13000, help="Rows per generated CSV (~190 bytes each).")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", help="Comma-separated tools (default: every peer for the format).")
    args = ap.parse_args()
    if args.make_archives:
        return make_archives(args.make_archives, args.files, args.rows)
    if not args.data:
        ap.error("give DATA or --make-archives DIR")
    fmt = input_format(args.data)
    peers = RUNNERS[fmt]
    tools = args.only.split(",") if args.only else list(peers)
    mb = os.path.getsize(args.data) / 1e6
    results: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.data))) as out_dir:
        runs: dict[str, list[Run]] = {t: [] for t in tools}
        for _ in range(args.repeat):  # interleaved, so drift in machine load hits everyone
            for tool in tools:
                runs[tool].append(run_once(tool, peers[tool], args.data, args.level, out_dir))
        for tool, rs in runs.items():
            med = statistics.median(r.wall for r in rs)
            results[tool] = min(rs, key=lambda r: abs(r.wall - med))
    print(f"input: {args.data} ({fmt}, {mb:.1f} MB), zstd level {args.level}, median of {args.repeat}")
    print(f"{'tool':<8} {'wall s':>7} {'cpu s':>7} {'MB/s':>7} {'peak MiB':>9} {'out MB':>8}")
    for tool, r in results.items():
        print(
            f"{tool:<8} {r.wall:7.2f} {r.cpu:7.2f} {mb / r.wall:7.1f} "
            f"{r.rss_mib:9.0f} {r.out_bytes / 1e6:8.1f}"
        )
    mine = results.get("s3proc")
    if mine:
        for tool, r in results.items():
            if tool != "s3proc":
                print(
                    f"s3proc vs {tool:<8} speed {r.wall / mine.wall:4.2f}x  cpu {mine.cpu / r.cpu:4.2f}x  "
                    f"rss {mine.rss_mib / r.rss_mib:4.2f}x  size {mine.out_bytes / r.out_bytes:4.2f}x"
                )


if __name__ == "__main__":
    main()
