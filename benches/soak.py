"""Soak: ``s3proc run`` fed continuously for a long time; its memory, file descriptors and threads.

A feeder drops a steady mix of files into the watched folder (small raw files, CSV pieces, now and
then a multipart-sized file); s3proc ships them to a local moto server with ``--after-upload
delete``, and the bucket is emptied as it goes so the server's memory stays bounded. Every
``--every`` seconds s3proc's RSS, open file descriptors and threads are sampled (psutil). The
report gives the samples and the growth from the end of the warm-up to the end; a healthy service
is flat. Nothing passes or fails.

    python benches/soak.py [--minutes 30] [--rate 20] [--every 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from service import CREDS, Bench  # noqa: E402  (the moto server of the service benchmark)

S3PROC = Path(sys.executable).with_name("s3proc")


def feeder(inbox: Path, rate: float, stop: threading.Event, counts: dict[str, int]) -> None:
    rng = random.Random(1)
    n = 0
    rows = "".join(f"{i},{rng.random():.6f},name {i},2024-01-{i % 28 + 1:02d}\n" for i in range(2000))
    while not stop.is_set():
        n += 1
        d = inbox / f"d{n % 50:02d}"
        d.mkdir(exist_ok=True)
        tmp = d / f".f{n}.part"  # written under a dot name, renamed into place: atomic
        kind = rng.random()
        if kind < 0.01:
            data, name = os.urandom(12 << 20), f"f{n}.bin"
        elif kind < 0.5:
            data, name = ("id,x,name,day\n" + rows[: rng.randint(1000, len(rows))]).encode(), f"f{n}.csv"
        else:
            data, name = os.urandom(rng.randint(1 << 10, 100 << 10)), f"f{n}.bin"
        tmp.write_bytes(data)
        tmp.rename(d / name)
        counts["fed"] += 1
        stop.wait(1 / rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=20, help="Files dropped per second.")
    ap.add_argument("--every", type=float, default=10, help="Seconds between samples.")
    ap.add_argument("--warmup", type=float, default=2, help="Minutes before growth is counted.")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3proc-soak-"))
    inbox = work / "inbox"
    inbox.mkdir()
    bench = Bench(work)
    env = {**os.environ, **CREDS}
    s3 = bench.s3
    s3.create_bucket(Bucket="soak")
    cmd = [str(S3PROC), "run", "--watch-dir", str(inbox), "--bucket", "soak", "--endpoint-url", bench.url,
           "--quiet-period", "0.5", "--after-upload", "delete", "--log-format", "json",
           "--log-level", "warning"]  # fmt: skip
    log = open(work / "s3proc.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stderr=log)
    stop, counts = threading.Event(), {"fed": 0}
    threading.Thread(target=feeder, args=(inbox, args.rate, stop, counts), daemon=True).start()
    me = psutil.Process(proc.pid)
    samples: list[tuple[float, float, int, int, int]] = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            if proc.poll() is not None:
                raise SystemExit(f"s3proc exited with {proc.returncode}; see {work / 's3proc.log'}")
            with me.oneshot():
                rss = me.memory_info().rss / 2**20
                fds, threads = me.num_fds(), me.num_threads()
            pending = sum(1 for _ in inbox.rglob("f*"))
            samples.append((time.monotonic() - start, rss, fds, threads, pending))
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="soak"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket="soak", Delete={"Objects": keys})
    finally:
        stop.set()
        proc.terminate()
        code = proc.wait(timeout=60)
        bench.close()
    print(f"s3proc stopped on SIGTERM with exit status {code}")
    fed = counts["fed"]
    print(f"soak: {args.minutes:g} min, {fed} files fed ({args.rate:g}/s), sampled every {args.every:g} s")
    print(f"{'min':>6} {'RSS MiB':>8} {'fds':>5} {'threads':>7} {'waiting':>7}")
    for t, rss, fds, threads, pending in samples[:: max(1, len(samples) // 20)]:
        print(f"{t / 60:6.1f} {rss:8.1f} {fds:5d} {threads:7d} {pending:7d}")
    warm = [s for s in samples if s[0] >= args.warmup * 60] or samples
    first, last = warm[0], warm[-1]
    hours = max((last[0] - first[0]) / 3600, 1e-9)
    peak = max(s[1] for s in samples)
    print(
        f"after the warm-up: RSS {first[1]:.1f} → {last[1]:.1f} MiB (peak {peak:.1f}, "
        f"{(last[1] - first[1]) / hours:+.1f} MiB/h), fds {first[2]} → {last[2]}, "
        f"threads {first[3]} → {last[3]}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
