"""End to end: ``s3proc run --once`` against a bare boto3 baseline, on one local S3 server.

What is measured, and why:

1. **Many small files** (1-100 KiB: random binary, log-like text, and CSV pieces cut from one
   ``gen_data.py`` table at record boundaries). Baseline: one thread, ``put_object`` per file,
   nothing else. s3proc does much more per file (SHA-256, SQLite state, Content-MD5 and CRC32,
   ``If-None-Match``, a verifying HEAD, CSV → Parquet), so this shows the per-file overhead.
2. **One big CSV** (default 5.5M rows, ≈1.04 GB). Baseline: DuckDB ``COPY … TO`` a local ZSTD
   Parquet file, then boto3 ``upload_file``. s3proc converts and uploads in one streaming pass.
3. **Peak RSS** of each measured process tree (psutil, every 50 ms, children included) and its
   CPU time; the S3 server is a separate process, so its memory is never counted (its CPU time
   is shown apart: on a 2-core machine it competes with the client).

Every row is its own process, timed from start to exit (interpreter start-up included), with a
fresh bucket; s3proc's state (``DIR/.s3proc``) is deleted before each run. The server is
``python -m moto.server``: it holds every object in memory (buckets are emptied after each row)
and manages about 147 PUT/s and 90 MB/s on this project's machine, so the ratios say how close
s3proc gets to what the server allows, not what it does against AWS. Nothing passes or fails.

    python benches/service.py [--small-files 2000] [--big-rows 5500000] [--work-dir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import psutil

from s3proc import _core

GEN = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "gen_data.py"
S3PROC = Path(sys.executable).with_name("s3proc")
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

PUT_LOOP = """
import os, sys, boto3
root, bucket, url = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=url)
for d, dirs, names in os.walk(root):
    dirs[:] = sorted(x for x in dirs if not x.startswith("."))
    for name in sorted(names):
        path = os.path.join(d, name)
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key=os.path.relpath(path, root), Body=f.read())
"""
DUCK_UPLOAD = """
import json, os, sys, time, boto3, duckdb
src, out, bucket, url = sys.argv[1:5]
t0 = time.perf_counter()
duckdb.sql("SET enable_progress_bar = false")
duckdb.sql(f"COPY (SELECT * FROM read_csv('{src}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
t1 = time.perf_counter()
boto3.client("s3", endpoint_url=url).upload_file(out, bucket, "big.parquet")
print(json.dumps({"convert": t1 - t0, "upload": time.perf_counter() - t1, "bytes": os.path.getsize(out)}))
"""


@dataclass
class Run:
    what: str
    wall: float
    cpu: float
    rss_mib: float
    s3_cpu: float
    start: float  # time.time() at start, to place log lines
    stdout: str
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        """Bytes s3proc uploaded, from its ``uploaded`` log lines."""
        return sum(int(x["bytes_out"]) for x in self.log if x.get("msg") == "uploaded")


class Bench:
    """One moto server (a separate process, stopped by ``close``) and the runs against it."""

    def __init__(self, work: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.work, self.url, self.env = work, f"http://127.0.0.1:{port}", {**os.environ, **CREDS}
        with open(work / "moto.log", "wb") as log:
            cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=self.env)
        self.server = psutil.Process(self.proc.pid)
        self.s3 = boto3.Session(
            CREDS["AWS_ACCESS_KEY_ID"],
            CREDS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.url)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url, timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.close()
        raise SystemExit(f"moto server did not start; see {work / 'moto.log'}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # moto busy freeing what it held
            self.proc.kill()
            self.proc.wait()

    def empty(self, bucket: str) -> int:
        """Deletes every object and the bucket (moto keeps them in memory); returns the count."""
        n = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            n += len(keys)
            if keys:
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        self.s3.delete_bucket(Bucket=bucket)
        return n

    def measure(self, what: str, cmd: list[str], bucket: str, expect: int) -> Run:
        """Runs ``cmd`` against a fresh ``bucket``, sampling its process tree's RSS every 50 ms."""
        self.s3.create_bucket(Bucket=bucket)
        os.sync()  # the last run's writes reach the disk before this one starts, not during it
        logfile = self.work / f"{bucket}.log"
        s3_before = sum(self.server.cpu_times()[:2])
        with open(logfile, "wb") as err, tempfile.TemporaryFile() as out:
            start, t0 = time.time(), time.perf_counter()
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=err)
            root, peak = psutil.Process(proc.pid), 0
            while not (done := os.wait4(proc.pid, os.WNOHANG))[0]:
                rss = 0
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
                peak = max(peak, rss)
                time.sleep(0.05)
            wall = time.perf_counter() - t0
            _, status, usage = done
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            stdout = out.read().decode()
        if proc.returncode != 0:
            tail = logfile.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{what}: exit {proc.returncode}\n$ {shlex.join(cmd)}\n{tail}")
        s3_cpu = sum(self.server.cpu_times()[:2]) - s3_before
        run = Run(what, wall, usage.ru_utime + usage.ru_stime, peak / 2**20, s3_cpu, start, stdout)
        run.log = [json.loads(x) for x in logfile.read_text().splitlines() if x.startswith("{")]
        if (got := self.empty(bucket)) != expect:
            raise SystemExit(f"{what}: {got} objects in the bucket, expected {expect}")
        return run

    def s3proc(self, what: str, watch: Path, bucket: str, extra: list[str], expect: int) -> Run:
        shutil.rmtree(watch / ".s3proc", ignore_errors=True)  # fresh state
        cmd = [str(S3PROC), "run", "--once", "--watch-dir", str(watch), "--bucket", bucket]
        cmd += ["--endpoint-url", self.url, "--quiet-period", "0", "--log-format", "json", *extra]
        print(f"$ {shlex.join(cmd)}", flush=True)
        return self.measure(what, cmd, bucket, expect)


def gen(rows: int, out: Path, seed: int) -> None:
    cmd = [sys.executable, str(GEN), "--rows", str(rows), "--format", "csv", "--seed", str(seed)]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)


def make_small_files(root: Path, n: int, seed: int, work: Path) -> int:
    """``n`` files of 1-100 KiB in 20 folders: a third each binary, text and CSV; returns bytes."""
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    table = work / f"pieces-{seed}.csv"
    if not table.exists():
        gen(60_000, table, seed)  # ≈11 MB, cycled through
    header, _, body = table.read_bytes().partition(b"\n")
    records, cur, odd = [], [], False  # records, not lines: a quoted field may hold a newline
    for line in body.split(b"\n")[:-1]:
        cur.append(line + b"\n")
        odd ^= line.count(b'"') % 2 == 1
        if not odd:
            records.append(b"".join(cur))
            cur = []
    words = ["GET", "POST", "/api/v1/items", "200", "404", "500", "ms", "ok", "retry", "cache", "miss"]
    text = "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(20_000)).encode()
    pos = total = 0
    for i in range(n):
        size, kind = rng.randint(1 << 10, 100 << 10), i % 3
        if kind == 0:
            parts, got = [header + b"\n"], len(header) + 1
            while got < size:
                parts.append(records[pos % len(records)])
                got, pos = got + len(parts[-1]), pos + 1
            data, ext = b"".join(parts), "csv"
        elif kind == 1:
            data, ext = rng.randbytes(size), "bin"
        else:
            at = rng.randrange(len(text) - size)
            data, ext = text[at : at + size], "log"
        path = root / f"d{i % 20:02d}" / f"f{i:05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


def describe_log(run: Run, files: int) -> str:
    """Where s3proc's time went, from its JSON log: start-up, per-file seconds, the end."""
    up = [r for r in run.log if r.get("msg") == "uploaded"]
    bad = sum(r.get("level") in ("warning", "error") for r in run.log)

    def at(r: dict[str, Any]) -> float:  # seconds since the process started
        t = datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        return t.timestamp() - run.start

    scan = next((at(r) for r in run.log if str(r["msg"]).startswith("scanned")), float("nan"))
    secs = sorted(float(r["seconds"]) for r in up)
    return (
        f"  {run.what}: {len(up)}/{files} uploaded, {run.sent / 1e6:.1f} MB sent, {bad} warnings/errors\n"
        f"    scan done at {scan:.2f} s, first upload done at {at(up[0]):.2f} s, last at {at(up[-1]):.2f} s,"
        f" exit at {run.wall:.2f} s\n"
        f"    per-file seconds: sum {sum(secs):.1f}, median {statistics.median(secs):.3f},"
        f" p95 {secs[int(0.95 * (len(secs) - 1))]:.3f}, max {secs[-1]:.3f}"
    )


def duck_upload(bench: Bench, cmd: list[str], out: Path) -> Run:
    run = bench.measure("DuckDB COPY + boto3 upload_file", cmd, "duck", 1)
    out.unlink()
    return run


def median_run(runs: list[Run]) -> Run:
    """One row for several rounds: the median run's log, median times, the highest peak."""
    mid = sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]
    return Run(
        mid.what,
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        max(r.rss_mib for r in runs),
        statistics.median(r.s3_cpu for r in runs),
        mid.start,
        mid.stdout,
        mid.log,
    )


def medians(rounds: list[list[Run]], ratio: Callable[[Run, Run], float]) -> list[tuple[Run, list[float]]]:
    """Each row's median run, with its ratio to the peer (the first row) in every round."""
    rows = [median_run([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    return [(row, [ratio(r[0], r[i]) for r in rounds]) for i, row in enumerate(rows)]


def table(title: str, unit: str, rows: list[tuple[Run, float, list[float]]]) -> None:
    print(
        f"\n{title}\n{'what':<34} {'wall s':>7} {'cpu s':>6} {unit:>8} {'peak MiB':>8} {'S3 cpu s':>8}  ratio"
    )
    for r, rate, xs in rows:
        each = f"  ({' '.join(f'{x:.2f}' for x in xs)})" if len(xs) > 1 and len(set(xs)) > 1 else ""
        print(
            f"{r.what:<34} {r.wall:7.2f} {r.cpu:6.2f} {rate:8.1f} {r.rss_mib:8.0f} {r.s3_cpu:8.2f}"
            f" {statistics.median(xs):5.2f}x{each}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small-files", type=int, default=2000)
    ap.add_argument("--big-rows", type=int, default=5_500_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work-dir", type=Path, help="Kept, and generated inputs reused (default: a temp dir).")
    ap.add_argument(
        "--also", action="append", default=[], help="More s3proc run flags, for another row of each."
    )
    ap.add_argument("--only", choices=("small", "big"), help="Run one of the two measurements.")
    ap.add_argument("--repeat", type=int, default=1, help="Rounds of every row, interleaved (default 1).")
    args = ap.parse_args()
    if _core.build_profile != "release":
        raise SystemExit(f"s3proc's core is a {_core.build_profile} build: benchmark a release build")
    if not GEN.exists() or not S3PROC.exists():
        raise SystemExit(f"need {GEN} and {S3PROC}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="s3proc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    small, big = work / "small", work / "big"
    n, nbytes = args.small_files, make_small_files(small, args.small_files, args.seed, work)
    big.mkdir(exist_ok=True)
    csv = big / f"data-{args.big_rows}-{args.seed}.csv"
    for stale in big.iterdir():  # the watch dir holds only this CSV
        if stale != csv:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    if not csv.exists():
        print(f"generating {csv} …", flush=True)
        gen(args.big_rows, csv, args.seed)
    mb = csv.stat().st_size / 1e6
    print(f"small: {n} files, {nbytes / 1e6:.1f} MB in {small}; big: {csv} ({mb:.1f} MB)")
    bench = Bench(work)
    # Each round runs every row once, peers next to s3proc: on a noisy machine a ratio is only
    # meaningful between runs close in time, so each round gives its own ratios.
    also = [(f"s3proc {a}", shlex.split(a)) for a in args.also]
    small_rows: list[Callable[[], Run]] = []
    if args.only != "big":
        loop = [sys.executable, "-c", PUT_LOOP, str(small), "put-loop", bench.url]
        variants = [
            ("s3proc run --once", []),
            ("s3proc --state-sync normal", ["--state-sync", "normal"]),
            *also,
        ]
        small_rows = [partial(bench.measure, "boto3 put_object loop (1 thread)", loop, "put-loop", n)]
        small_rows += [
            partial(bench.s3proc, w, small, f"small-{i}", x, n) for i, (w, x) in enumerate(variants)
        ]
    big_rows: list[Callable[[], Run]] = []
    if args.only != "small":
        out = work / "duck.parquet"
        cmd = [sys.executable, "-c", DUCK_UPLOAD, str(csv), str(out), "duck", bench.url]
        variants = [("s3proc run --once", []), *also]
        big_rows = [partial(duck_upload, bench, cmd, out)]
        big_rows += [partial(bench.s3proc, w, big, f"big-{i}", x, 1) for i, (w, x) in enumerate(variants)]
    small_rounds: list[list[Run]] = []
    big_rounds: list[list[Run]] = []
    try:
        print(f"S3: moto.server at {bench.url} (pid {bench.proc.pid}); load {os.getloadavg()}", flush=True)
        for r in range(args.repeat):
            # Odd rounds run the rows in reverse order: whatever one run leaves behind (a warmer
            # server, pages still to write back) then weighs on both sides alike.
            step = 1 if r % 2 == 0 else -1
            for rows, rounds in ((small_rows, small_rounds), (big_rows, big_rounds)):
                if rows:
                    rounds.append([run() for run in rows[::step]][::step])
    finally:
        bench.close()

    print(f"\nload average at the end {os.getloadavg()} ({os.cpu_count()} cores)")
    if args.repeat > 1:
        print(f"{args.repeat} rounds: wall, CPU and S3 CPU are medians, peak RSS the highest; each ratio is")
        print("the median of the rounds' own ratios (listed after it)")
    speeds = []
    if small_rounds:
        rows = medians(small_rounds, lambda peer, r: peer.wall / r.wall)
        title = f"small files: {n} files, {nbytes / 1e6:.1f} MB (ratio: files/s against the boto3 loop)"
        table(title, "files/s", [(r, n / r.wall, x) for r, x in rows])
        base, *mine = (r for r, _ in rows)
        speeds += [(r, "small files", "put_object loop", nbytes / base.wall) for r in mine]
    if big_rounds:
        rows = medians(big_rounds, lambda peer, r: r.wall / peer.wall)
        title = f"one big CSV: {mb:.1f} MB, {args.big_rows:,} rows (ratio: seconds against DuckDB + upload)"
        table(title, "MB/s in", [(r, mb / r.wall, x) for r, x in rows])
        duck, *mine = (r for r, _ in rows)
        d = json.loads(duck.stdout)
        print(
            f"  DuckDB: convert {d['convert']:.2f} s, upload_file {d['upload']:.2f} s "
            f"({d['bytes'] / 1e6:.1f} MB, {d['bytes'] / 1e6 / d['upload']:.1f} MB/s)"
        )
        speeds += [(r, "big CSV", "upload_file", d["bytes"] / d["upload"]) for r in mine]
    print("\nupload speed of s3proc (bytes sent / wall) against bare boto3 on the same server")
    for r, what, peer, speed in speeds:
        rate = r.sent / r.wall
        print(f"  {what + ', ' + r.what:<40} {rate / 1e6:6.1f} MB/s = {rate / speed:.2f}x of {peer}")
    print("\ns3proc's own log")
    for r, what, _, _ in speeds:
        print(describe_log(r, n if what == "small files" else 1))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
