"""Memory: converting streams, so the peak RSS is bounded and does not grow with the input.

Slow (a 1 GB input): run with ``python -m pytest tests -m slow``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _util import run_gen_data

pytestmark = pytest.mark.slow

MiB = 1 << 20
LIMIT = 256 * MiB  # the bound
BENCH = Path("/root/data/bench.csv")  # the 5.5 M-row benchmark file, when it was made already
BIG_ROWS = 5_500_000  # about 1.04 GB
SMALL_ROWS = 1_100_000  # about 200 MB


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("memory")


@pytest.fixture(scope="module")
def big_csv(data_dir: Path) -> Path:
    if BENCH.is_file() and BENCH.stat().st_size > 1_000_000_000:
        return BENCH
    return run_gen_data("csv", BIG_ROWS, 42, data_dir / "big.csv")


@pytest.fixture(scope="module")
def small_csv(data_dir: Path) -> Path:
    return run_gen_data("csv", SMALL_ROWS, 42, data_dir / "small.csv")


def peak_rss(s3proc_bin: Path, src: Path, out: Path) -> int:
    """Converts in a child process; returns the child's peak RSS in bytes."""
    with open(out.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen([str(s3proc_bin), "convert", str(src), str(out)], stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, out.with_suffix(".log").read_text(errors="replace")[-2000:]
    return usage.ru_maxrss * 1024  # KiB on Linux


def test_peak_rss_is_bounded_and_flat(
    s3proc_bin: Path, big_csv: Path, small_csv: Path, data_dir: Path
) -> None:
    assert big_csv.stat().st_size > 900_000_000
    assert 150_000_000 < small_csv.stat().st_size < 300_000_000
    out = data_dir / "out.parquet"
    try:
        # The peak varies a little from run to run with thread timing: take the highest of two.
        small = max(peak_rss(s3proc_bin, small_csv, out) for _ in range(2))
        big = max(peak_rss(s3proc_bin, big_csv, out) for _ in range(2))
    finally:
        out.unlink(missing_ok=True)
    report = (
        f"peak RSS: {small / MiB:.0f} MiB for {small_csv.stat().st_size / 1e6:.0f} MB, "
        f"{big / MiB:.0f} MiB for {big_csv.stat().st_size / 1e6:.0f} MB"
    )
    print(report)
    assert small < LIMIT, report
    assert big < LIMIT, report
    assert max(big, small) <= 1.2 * min(big, small), f"memory grows with the input: {report}"
