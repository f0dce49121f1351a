"""Local faults under the real daemon: a file it may not read, the error folder going away while
it runs, and the whole shared corpus dropped at once among good files.

The tests run as root, and root reads any file whatever its mode. ``setpriv`` runs s3proc as
root without the two capabilities that let it ignore file modes (``CAP_DAC_OVERRIDE``,
``CAP_DAC_READ_SEARCH``): a ``chmod 000`` file is then as unreadable to it as to any user.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _util import assert_parquet_holds, state_rows
from s3servers import Daemon, S3Server, body, incomplete_uploads, objects, run_once

from s3proc.keys import KeyMaker, is_tabular

NO_DAC = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def _usable(wrap: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``wrap``, a command to run s3proc under, when it works here; else the test is skipped."""
    if shutil.which(wrap[0]) is None:
        pytest.skip(f"{wrap[0]} (util-linux) is not installed: cannot {what}")
    probe = subprocess.run([*wrap, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot {what} here: {probe.stderr.decode(errors='replace').strip()}")
    return wrap


def _no_dac() -> tuple[str, ...]:
    return _usable(NO_DAC, "drop CAP_DAC_OVERRIDE")


def error_note(errors: Path, rel: str) -> dict:
    assert (errors / rel).is_file(), f"{rel} is not in the error folder"
    note: dict = json.loads((errors / (rel + ".error.json")).read_text())
    assert note["source"] == rel and note["reason"], note
    return note


def test_a_file_it_may_not_read_goes_to_the_error_folder_with_the_reason(
    moto: S3Server, tmp_path: Path
) -> None:
    wrap = _no_dac()
    watch = tmp_path / "inbox"
    (watch / "sub").mkdir(parents=True)
    (watch / "ok.txt").write_text("fine\n")
    (watch / "t.csv").write_text("a,b\n1,x\n2,y\n")
    for rel in ("secret.csv", "sub/locked.bin"):
        (watch / rel).write_bytes(b"id\n1\n" * 1000)
        (watch / rel).chmod(0)
    bucket = moto.new_bucket()

    run = run_once(moto, bucket, watch, wrap=wrap)

    assert run.returncode == 1, run.stderr  # two files went to the error folder
    client = moto.client()
    assert set(objects(client, bucket)) == {"ok.txt", "t.parquet"}
    assert body(client, bucket, "ok.txt") == b"fine\n"
    errors = watch / ".s3proc" / "errors"
    for rel in ("secret.csv", "sub/locked.bin"):
        assert not (watch / rel).exists()
        assert "Permission denied" in error_note(errors, rel)["reason"]
    failed = dict(state_rows(watch, "SELECT path, error FROM files WHERE status='failed'"))
    assert set(failed) == {"secret.csv", "sub/locked.bin"}
    assert all("Permission denied" in e for e in failed.values()), failed
    assert incomplete_uploads(client, bucket) == []


def test_the_error_folder_gone_while_running(moto: S3Server, tmp_path: Path) -> None:
    """The error folder is replaced by a file under the running service: a bad file then cannot
    go there; it stays where it is, failed with its reason, and the service goes on. Once the
    folder is back, the next bad file goes there as usual."""
    watch = tmp_path / "inbox"
    watch.mkdir()
    errors = watch / ".s3proc" / "errors"
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.2", "--rescan-interval", "3600")  # events only
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        shutil.rmtree(errors)
        errors.write_text("not a folder any more\n")
        (watch / "bad.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(2000))
        (watch / "good1.txt").write_text("one\n")
        d.wait_for(
            lambda: any(r["msg"].startswith("cannot move the file to the error folder") for r in d.lines())
        )
        d.wait_for(lambda: "good1.txt" in d.uploaded())
        assert (watch / "bad.csv").is_file(), "the file stays where it was"
        time.sleep(1)
        assert d.proc.poll() is None, "the service goes on"

        errors.unlink()
        errors.mkdir()
        (watch / "bad2.csv").write_bytes(b"\x00\x01\x02" * 500)
        (watch / "good2.txt").write_text("two\n")
        d.wait_for(lambda: "good2.txt" in d.uploaded() and (errors / "bad2.csv.error.json").exists())
    finally:
        code = d.stop()
    assert code == 0, d.log.read_text()[-3000:]
    assert set(objects(moto.client(), bucket)) == {"good1.txt", "good2.txt"}
    failed = dict(state_rows(watch, "SELECT path, error FROM files WHERE status='failed'"))
    assert set(failed) == {"bad.csv", "bad2.csv"} and all(failed.values()), failed
    error_note(errors, "bad2.csv")
    assert (watch / "bad.csv").is_file() and not (errors / "bad.csv").exists()
    # `s3proc retry` queues the one left in place too; with the folder back it lands there.
    assert (
        subprocess.run(
            [str(Path(os.sys.executable).parent / "s3proc"), "retry", "--watch-dir", str(watch)],
            capture_output=True,
        ).returncode
        == 0
    )
    again = run_once(moto, bucket, watch)
    assert again.returncode == 1, again.stderr
    error_note(errors, "bad.csv")
    assert not (watch / "bad.csv").exists()


# ------------------------------------------------------------------------- what inotify misses
# A user namespace has its own inotify limits (/proc/sys/user/*): 50 watches for the whole tree.
FEW_WATCHES = ("unshare", "--user", "--map-root-user", "sh", "-c",
               'echo 50 > /proc/sys/user/max_inotify_watches && exec "$@"', "sh")  # fmt: skip


def _few_watches() -> tuple[str, ...]:
    return _usable(FEW_WATCHES, "set an inotify limit")


@pytest.mark.parametrize("made_while_running", [False, True], ids=["at-start", "while-running"])
def test_past_the_inotify_watch_limit_the_watcher_says_so_and_polls(
    moto: S3Server, tmp_path: Path, made_while_running: bool
) -> None:
    """100 folders, 50 inotify watches: the watcher says so and polls, and a file written in
    each folder is found in seconds, not at the next rescan (an hour here). notify stopped
    adding watches without an error reaching s3proc: nothing was said, and half the files
    waited for the rescan."""
    wrap = _few_watches()
    watch = tmp_path / "inbox"
    watch.mkdir()
    first = 10 if made_while_running else 100
    for i in range(first):
        (watch / f"d{i}").mkdir()
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.5", "--rescan-interval", "3600", wrap=wrap)
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # the watches are set
        for i in range(first, 100):
            (watch / f"d{i}").mkdir()
        time.sleep(1.5)
        want = {f"d{i}/f.txt" for i in range(100)}
        for rel in want:
            (watch / rel).write_text(rel)
        d.wait_for(lambda: want <= d.uploaded(), timeout=20)
    finally:
        assert d.stop() == 0, d.log.read_text()[-3000:]
    said = [r["msg"] for r in d.lines() if r.get("logger") == "s3proc.watch" and r["level"] == "warning"]
    assert len(said) == 1 and "polling instead" in said[0] and "max_user_watches" in said[0], said


def test_a_folder_it_may_not_read_leaves_the_others_watched(moto: S3Server, tmp_path: Path) -> None:
    """notify stops watching the tree at a folder it may not read (the folders after it in its
    walk sent no event); the rest is watched or polled, and their files are found in seconds."""
    wrap = _no_dac()
    watch = tmp_path / "inbox"
    watch.mkdir()
    (watch / "locked").mkdir()
    (watch / "locked" / "inner.txt").write_text("unreadable\n")
    for i in range(20):
        (watch / f"d{i}").mkdir()
    (watch / "locked").chmod(0)
    bucket = moto.new_bucket()
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.5", "--rescan-interval", "3600", wrap=wrap)
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        time.sleep(1.5)  # the watches are set
        want = {f"d{i}/f.txt" for i in range(20)}
        for rel in want:
            (watch / rel).write_text(rel)
        d.wait_for(lambda: want <= d.uploaded(), timeout=20)
    finally:
        code = d.stop()
        (watch / "locked").chmod(0o755)
    assert code == 0, d.log.read_text()[-3000:]
    assert set(objects(moto.client(), bucket)) == want
    assert any(r["msg"].startswith("cannot list") for r in d.lines())


# ---------------------------------------------------------------------- the bad input flood
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_whole_corpus_at_once_while_good_files_keep_coming(moto: S3Server, tmp_path: Path, corpus: Path,
                                                               gen_data) -> None:  # fmt: skip
    """Every file of ../shared/corpus (457 files: JSON test suites, CSV, XML, zips and tars,
    good and hostile) is dropped at once into the running daemon while generated CSV and NDJSON
    files keep arriving. Each corpus file ends either uploaded (its objects, and only those,
    carry it as their source) or in the error folder with a reason, never both, never neither;
    every generated file is uploaded and equal to its own conversion; raw files are byte for
    byte; the service never stops, and SIGTERM ends it with status 0."""
    watch = tmp_path / "inbox"
    watch.mkdir()
    bucket = moto.new_bucket()
    client = moto.client()
    copied = sorted(f"corpus/{p.relative_to(corpus)}" for p in corpus.rglob("*") if p.is_file())
    good = {f"live/f{i}.{fmt}": gen_data(fmt, 500 + 50 * i, 100 + i).read_bytes()
            for i in range(6) for fmt in [("csv", "ndjson")[i % 2]]}  # fmt: skip
    total = len(copied) + len(good)
    # No rescan comes to the rescue: the events alone must find every file of the copied tree.
    d = Daemon(moto, bucket, watch, "--quiet-period", "0.3", "--concurrency", "4",
               "--rescan-interval", "3600")  # fmt: skip
    try:
        d.wait_for(lambda: any("scanned" in r["msg"] for r in d.lines()))
        shutil.copytree(corpus, watch / "corpus")
        (watch / "live").mkdir()
        for rel, data in good.items():  # real files keep flowing meanwhile, renamed into place
            (watch / (rel + ".part")).write_bytes(data)
            os.replace(watch / (rel + ".part"), watch / rel)
            time.sleep(0.25)

        def settled() -> bool:
            counts = dict(state_rows(watch, "SELECT status, count(*) FROM files GROUP BY status"))
            return counts.get("uploaded", 0) + counts.get("failed", 0) == total

        d.wait_for(settled, timeout=45)
        assert d.proc.poll() is None
    finally:
        code = d.stop()
    assert code == 0, d.log.read_text()[-3000:]

    statuses = dict(state_rows(watch, "SELECT path, status FROM files"))
    assert set(statuses) == {*copied, *good}, "every file seen, nothing else"
    errors = watch / ".s3proc" / "errors"
    heads = objects(client, bucket)
    by_source = Counter(unquote(h["Metadata"]["s3proc-source"]).split("!", 1)[0] for h in heads.values())
    assert set(by_source) <= {p for p, s in statuses.items() if s == "uploaded"}, "an object of a failed file"
    keys = KeyMaker()
    outcome = Counter()
    for rel in copied:
        in_errors = (errors / rel).exists()
        if statuses[rel] == "failed":
            outcome["failed"] += 1
            assert in_errors and not (watch / rel).exists(), rel
            error_note(errors, rel)
            continue
        outcome["uploaded"] += 1
        assert not in_errors and (watch / rel).is_file(), rel
        data = (watch / rel).read_bytes()
        if rel.endswith((".zip", ".tar")):
            continue  # its entries: keys under its path (an empty archive has none)
        key = keys.key(rel, parquet=is_tabular(rel))
        assert by_source[rel] == 1 and unquote(heads[key]["Metadata"]["s3proc-source"]) == rel, rel
        if not is_tabular(rel):
            assert _sha256(body(client, bucket, key)) == _sha256(data), rel
    for key, head in heads.items():
        src = unquote(head["Metadata"]["s3proc-source"])
        if "!" in src:
            path = src.split("!", 1)[0]
            assert key.startswith(path + "/"), (key, src)
    # The judgement of the files that are surely good or surely bad, known without s3proc.
    for rel in copied:
        name = rel.rsplit("/", 1)[-1]
        if not is_tabular(name) and not rel.endswith((".zip", ".tar")):
            assert statuses[rel] == "uploaded", f"{rel}: a raw file cannot be bad"
        if "csv-spectrum" in rel and rel.endswith(".csv"):
            assert statuses[rel] == "uploaded", rel
    for rel, data in good.items():
        assert statuses[rel] == "uploaded", rel
        key = keys.key(rel, parquet=True)
        assert_parquet_holds(key, pq.read_table(pa.BufferReader(body(client, bucket, key))), rel, data)
    assert incomplete_uploads(client, bucket) == []
    fatal = ("internal error", "stopping:")
    assert not [r for r in d.lines() if r["level"] == "error" and r["msg"].startswith(fatal)]
    print(f"corpus: {len(copied)} files, {dict(outcome)}; {len(heads)} objects")
    assert outcome["failed"] and outcome["uploaded"], "the corpus holds good and bad files"
