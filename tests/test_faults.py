"""S3 faults on the wire: a proxy between ``s3proc run`` and moto's server fails, resets, drops,
stalls and corrupts requests; every object still ends exactly once with the right content.

moto stores a corrupted body without complaint (it checks neither Content-MD5 nor checksums), so
the corruption cases prove s3proc's own check: each part's ETag against the MD5 it sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from faultproxy import FaultProxy, Rule
from s3servers import S3Server, body, incomplete_uploads, objects, run_once, s3proc_args

MiB = 1 << 20
PARTS = r"partNumber="
COMPLETE = r"uploadId=(?!.*partNumber)"


@pytest.fixture(params=["moto", "seaweed"])
def server(request: pytest.FixtureRequest) -> S3Server:
    """moto stores corrupted bodies (only s3proc's check can catch them); SeaweedFS refuses them
    (BadDigest) and answers a repeated CompleteMultipartUpload with NoSuchUpload."""
    s: S3Server = request.getfixturevalue(request.param)
    return s


@pytest.fixture
def proxy(server: S3Server) -> Iterator[tuple[FaultProxy, S3Server]]:
    p = FaultProxy(server.endpoint)
    yield p, S3Server("proxy", p.endpoint, server.access_key, server.secret_key)
    p.close()


def _drop_files(watch: Path, gen_data) -> dict[str, bytes]:
    files = {f"raw/{i:02d}.bin": os.urandom(20_000 + i * 1000) for i in range(12)}
    files["big/blob.bin"] = os.urandom(13 * MiB)  # three 5 MiB parts
    files["tables/orders.csv"] = gen_data("csv", 3000, 4).read_bytes()
    for rel, data in files.items():
        (watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (watch / rel).write_bytes(data)
    return files


def _check_objects(server: S3Server, bucket: str, files: dict[str, bytes]) -> None:
    c = server.client()
    got = objects(c, bucket)
    want = {k.replace(".csv", ".parquet") for k in files}
    assert set(got) == want
    for rel, data in files.items():
        if rel.endswith(".csv"):
            table = pq.read_table(pa.BufferReader(body(c, bucket, rel.replace(".csv", ".parquet"))))
            expect = pacsv.read_csv(pa.BufferReader(data))
            assert table.num_rows == expect.num_rows
            for name in ("order_id", "customer"):
                if name in expect.column_names:
                    assert table.column(name).to_pylist() == expect.column(name).to_pylist()
        else:
            assert hashlib.sha256(body(c, bucket, rel)).hexdigest() == hashlib.sha256(data).hexdigest(), rel
    assert incomplete_uploads(c, bucket) == []


def test_errors_resets_drops_stalls_and_corruption_are_survived(
    server: S3Server, proxy: tuple[FaultProxy, S3Server], tmp_path: Path, gen_data
) -> None:
    fp, via = proxy
    bucket = server.new_bucket()
    watch = tmp_path / "in"
    files = _drop_files(watch, gen_data)
    fp.rules += [
        Rule("status", status=503, nth=2, every=6),  # SlowDown on PUTs
        Rule("status", status=500, nth=3, every=7),
        Rule("reset", nth=4, every=9),  # connection closed before an answer
        Rule("corrupt", nth=5, every=8),  # one flipped byte: moto stores it
        Rule("drop", nth=6, every=11),  # done upstream, the answer lost
        Rule("stall", nth=1, seconds=1.5),
        Rule("corrupt", path=PARTS, nth=2),  # a damaged part of the big file
        Rule("status", method="POST", path=COMPLETE, status=500, nth=1),
        Rule("drop", method="POST", path=COMPLETE, nth=2),  # completed, answer lost
        # … and the retry told the upload is gone, as MinIO says after a completion.
        Rule("status", method="POST", path=COMPLETE, status=404, nth=3),
    ]
    run = run_once(via, bucket, watch, "--part-size", "5MiB", "--retries", "6")
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("drop", "POST") in {(a, m) for a, m, _ in fp.log}, fp.log
    for action in ("status", "reset", "corrupt", "drop", "stall"):
        assert fp.fired(action) >= 1, (action, fp.log)
    warnings = " ".join(r.get("msg", "") for r in run.logs if r.get("level") == "warning")
    if server.name == "moto":
        assert "is not the MD5" in warnings, "s3proc itself caught the corrupted bodies"
    else:
        assert "BadDigest" in warnings, "SeaweedFS refused the corrupted bodies"
    assert len(run.lines("uploaded")) == len(files)
    _check_objects(server, bucket, files)

    # Nothing left to do: a second run uploads nothing.
    again = run_once(via, bucket, watch)
    assert again.returncode == 0 and not again.lines("uploaded")


def test_a_killed_upload_resumes_from_the_parts_already_there(
    server: S3Server, proxy: tuple[FaultProxy, S3Server], tmp_path: Path
) -> None:
    fp, via = proxy
    bucket = server.new_bucket()
    watch = tmp_path / "in"
    watch.mkdir()
    data = os.urandom(12 * 5 * MiB + 123)  # 13 parts of 5 MiB
    (watch / "big.bin").write_bytes(data)
    fp.rules.append(Rule("hang", path=r"partNumber=8$", seconds=120))  # part 8 never arrives
    args = [*s3proc_args(via, bucket, watch, "--part-size", "5MiB"), "--once"]
    proc = subprocess.Popen(args, env=via.env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not fp.log or len(_parts(server, bucket)) < 7:
            assert time.monotonic() < deadline and proc.poll() is None, fp.requests
            time.sleep(0.1)
        time.sleep(0.5)  # parts sent beside the hanging one land too
    finally:
        proc.kill()
        proc.wait()
    there = _parts(server, bucket)
    assert 7 <= len(there) < 13 and 8 not in there
    fp.rules.clear()
    fp.requests.clear()

    run = run_once(via, bucket, watch, "--part-size", "5MiB")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.lines("kept 1 multipart upload(s) of the last run, to resume"), run.stderr
    sent = sorted(int(m.group(1)) for _, p in fp.requests if (m := re.search(r"partNumber=(\d+)", p)))
    assert sent == sorted(set(range(1, 14)) - set(there)), "only the missing parts were sent"
    resumed = [r for r in run.logs if r.get("msg", "").startswith("resumed the upload of an earlier run")]
    assert resumed and f"{len(there)} of 13 part(s)" in resumed[0]["msg"]
    c = server.client()
    assert hashlib.sha256(body(c, bucket, "big.bin")).hexdigest() == hashlib.sha256(data).hexdigest()
    assert incomplete_uploads(c, bucket) == []


def _parts(server: S3Server, bucket: str) -> set[int]:
    c = server.client()
    ups = c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if not ups:
        return set()
    got = c.list_parts(Bucket=bucket, Key=ups[0]["Key"], UploadId=ups[0]["UploadId"])
    return {p["PartNumber"] for p in got.get("Parts", [])}


@pytest.mark.parametrize("server", ["moto"], indirect=True)
@pytest.mark.parametrize("change", ["truncated", "deleted", "rewritten"])
def test_a_file_changed_while_it_is_uploaded(
    server: S3Server, proxy: tuple[FaultProxy, S3Server], tmp_path: Path, change: str
) -> None:
    """While part 2 of a file is on its way, the file is truncated, deleted or rewritten. The run
    ends with exit 0 and S3 holds what the folder holds: the new content (a changed file is
    processed again and replaces the object), or, for a file deleted after it was claimed
    complete, the content it had."""
    fp, via = proxy
    bucket = server.new_bucket()
    watch = tmp_path / "in"
    watch.mkdir()
    path = watch / "f.bin"
    old = os.urandom(4 * 5 * MiB)
    path.write_bytes(old)
    fp.rules.append(Rule("stall", path=PARTS, nth=2, seconds=2.0))
    proc = subprocess.Popen(
        [*s3proc_args(via, bucket, watch, "--part-size", "5MiB"), "--once"],
        env=via.env(),
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not fp.log:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    new = os.urandom(3 * MiB)
    if change == "truncated":
        with open(path, "r+b") as f:
            f.truncate(1 * MiB)
        new = old[: 1 * MiB]
    elif change == "deleted":
        path.unlink()
    else:
        tmp = watch / ".f.bin.part"
        tmp.write_bytes(new)
        tmp.rename(path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    c = server.client()
    want = old if change == "deleted" else new
    assert hashlib.sha256(body(c, bucket, "f.bin")).hexdigest() == hashlib.sha256(want).hexdigest()
    head = c.head_object(Bucket=bucket, Key="f.bin")
    assert head["Metadata"]["s3proc-source-sha256"] == hashlib.sha256(want).hexdigest()
    assert incomplete_uploads(c, bucket) == []
