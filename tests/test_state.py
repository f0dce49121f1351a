"""The state database: ``s3proc.state.SqliteState`` and ``open_state``.

A file's life is ``pending`` → ``processing`` → ``uploaded`` | ``failed``; object rows say which
source owns which key. Every call is one committed transaction, so a second connection to the
same file sees it at once, and so does the next run.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from s3proc.state import (
    FAILED,
    PENDING,
    PROCESSING,
    STATUSES,
    UPLOADED,
    FileRow,
    ObjectRow,
    SqliteState,
    StateError,
    StateUnavailable,
    open_state,
)

S = 1_000_000_000  # nanoseconds in a second
T0 = 1_700_000_000.0  # a "now" for the tests, in seconds


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "s3proc.db"


@pytest.fixture
def state(db: Path) -> Iterator[SqliteState]:
    s = SqliteState(db)
    yield s
    s.close()


@pytest.fixture
def peek(db: Path) -> Iterator[Callable[[], SqliteState]]:
    """``peek()`` -> a second, independent connection to the same database (closed at the end)."""
    opened: list[SqliteState] = []

    def open_second() -> SqliteState:
        opened.append(SqliteState(db))
        return opened[-1]

    yield open_second
    for s in opened:
        s.close()


def _paths(rows: list[FileRow]) -> list[str]:
    return [r.path for r in rows]


def _row(state: SqliteState, path: str) -> FileRow:
    row = state.get(path)
    assert row is not None, f"no row for {path!r}"
    return row


def _owner(state: SqliteState, key: str) -> ObjectRow:
    obj = state.owner_of(key)
    assert obj is not None, f"nobody owns {key!r}"
    return obj


def _uploaded(
    state: SqliteState, path: str, size: int = 10, mtime: float = T0 - 100, sha: str = "s1"
) -> None:
    state.observe([(path, size, int(mtime * S))], T0)
    assert state.claim(path, size, int(mtime * S)) is not None
    assert state.finish(path, size, int(mtime * S), sha)


# ------------------------------------------------------------------ observe and ready
def test_observe_inserts_pending_rows(state: SqliteState) -> None:
    state.observe([("a.csv", 10, 5 * S), ("dir/b.csv", 20, 6 * S)], T0)
    a = state.get("a.csv")
    assert a == FileRow("a.csv", 10, 5 * S, PENDING, None, 0, None, T0)
    assert state.get("dir/b.csv") == FileRow("dir/b.csv", 20, 6 * S, PENDING, None, 0, None, T0)
    assert state.get("c.csv") is None
    assert state.counts() == {PENDING: 2, PROCESSING: 0, UPLOADED: 0, FAILED: 0}


def test_observe_of_a_new_file_counts_the_quiet_period_from_now(state: SqliteState) -> None:
    state.observe([("new.csv", 1, int((T0 + 50) * S))], T0)  # mtime ahead of the clock: now counts
    assert state.ready(before=T0 - 1, limit=10) == []
    assert _paths(state.ready(before=T0, limit=10)) == ["new.csv"]


def test_observe_of_an_old_file_counts_the_quiet_period_from_its_mtime(state: SqliteState) -> None:
    state.observe([("old.csv", 1, int((T0 - 3600) * S))], T0)
    assert state.ready(before=T0 - 3601, limit=10) == []
    assert _paths(state.ready(before=T0 - 3600, limit=10)) == ["old.csv"]


def test_ready_returns_only_quiet_files_oldest_first_up_to_limit(state: SqliteState) -> None:
    state.observe([(f"f{i}", 1, int((T0 - 10 * i) * S)) for i in range(5)], T0)
    assert _paths(state.ready(before=T0 - 25, limit=10)) == ["f4", "f3"]
    assert _paths(state.ready(before=T0, limit=3)) == ["f4", "f3", "f2"]
    assert state.ready(before=T0, limit=0) == []


def test_ready_skips_files_that_are_not_pending(state: SqliteState) -> None:
    old = int((T0 - 100) * S)
    state.observe([("p", 1, old), ("c", 1, old), ("u", 1, old), ("f", 1, old)], T0)
    state.claim("c", 1, old)
    _uploaded(state, "u", size=1, mtime=T0 - 100)
    state.claim("f", 1, old)
    state.fail("f", "boom")
    assert _paths(state.ready(before=T0, limit=10)) == ["p"]


def test_unchanged_reobserve_does_nothing(state: SqliteState) -> None:
    mtime = int((T0 + 1000) * S)  # stable_since = T0, not the mtime
    state.observe([("a", 10, mtime)], T0)
    state.observe([("a", 10, mtime)], T0 + 5000)
    assert state.get("a") == FileRow("a", 10, mtime, PENDING, None, 0, None, T0)
    assert _paths(state.ready(before=T0, limit=10)) == ["a"]  # the quiet period did not restart


def test_unchanged_reobserve_of_an_uploaded_file_does_nothing(state: SqliteState) -> None:
    _uploaded(state, "a")
    before = state.get("a")
    state.observe([("a", 10, int((T0 - 100) * S))], T0 + 10)
    assert state.get("a") == before
    assert before is not None and before.status == UPLOADED


def test_changed_pending_file_restarts_its_quiet_period(state: SqliteState) -> None:
    state.observe([("a", 10, int((T0 - 100) * S))], T0)
    assert _paths(state.ready(before=T0 - 50, limit=10)) == ["a"]
    state.observe([("a", 20, int((T0 + 5) * S))], T0 + 10)
    assert state.ready(before=T0 + 4, limit=10) == []
    assert _paths(state.ready(before=T0 + 5, limit=10)) == ["a"]
    row = _row(state, "a")
    assert (row.size, row.mtime_ns, row.updated_at) == (20, int((T0 + 5) * S), T0 + 10)


@pytest.mark.parametrize(("size", "mtime"), [(11, T0 - 100), (10, T0 - 99)], ids=["size", "mtime"])
def test_changed_uploaded_file_is_pending_again_with_attempts_reset(
    state: SqliteState, size: int, mtime: float
) -> None:
    _uploaded(state, "a", size=10, mtime=T0 - 100)
    state.observe([("a", size, int(mtime * S))], T0 + 1)
    row = _row(state, "a")
    assert (row.status, row.attempts, row.size, row.mtime_ns) == (PENDING, 0, size, int(mtime * S))
    assert row.sha256 == "s1"  # still what is in S3


def test_changed_failed_file_is_pending_again_without_its_error(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    state.claim("a", 10, 5 * S)
    state.fail("a", "bad row")
    state.observe([("a", 11, 6 * S)], T0 + 1)
    row = _row(state, "a")
    assert (row.status, row.attempts, row.error) == (PENDING, 0, None)


def test_change_while_processing_keeps_processing_and_finish_requeues(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    assert state.claim("a", 10, 5 * S) is not None
    state.observe([("a", 30, 7 * S)], T0 + 1)
    row = _row(state, "a")
    assert (row.status, row.size, row.attempts) == (PROCESSING, 30, 1)
    assert state.ready(before=T0 + 1e9, limit=10) == []  # nobody else picks it up meanwhile

    assert state.finish("a", 10, 5 * S, "old-sha") is False
    row = _row(state, "a")
    assert (row.status, row.size, row.mtime_ns, row.sha256) == (PENDING, 30, 7 * S, None)
    assert state.claim("a", 30, 7 * S) is not None  # the new content is processed next


def test_observe_is_one_transaction(state: SqliteState) -> None:
    with pytest.raises(ValueError):
        state.observe([("a", 1, S), ("b",)], T0)  # type: ignore[list-item]
    assert state.get("a") is None
    state.observe([("a", 1, S)], T0)  # and the state is still usable
    assert state.get("a") is not None


def test_observe_accepts_a_generator(state: SqliteState) -> None:
    state.observe(((f"g{i}", i, i * S) for i in range(3)), T0)
    assert state.counts()[PENDING] == 3


# ------------------------------------------------------------------ claim and finish
def test_claim_needs_the_same_size_and_mtime(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    assert state.claim("a", 11, 5 * S) is None
    assert state.claim("a", 10, 5 * S + 1) is None
    assert state.claim("missing", 10, 5 * S) is None
    row = _row(state, "a")
    assert (row.status, row.attempts) == (PENDING, 0)


def test_claim_all_claims_in_one_go_what_claim_would(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S), ("b", 20, 5 * S), ("c", 30, 5 * S)], T0)
    assert state.claim("c", 30, 5 * S) is not None  # already processing
    got = state.claim_all([("a", 10, 5 * S), ("b", 21, 5 * S), ("c", 30, 5 * S), ("missing", 1, S)])
    assert [(r.path, r.status, r.attempts) for r in got] == [("a", PROCESSING, 1)]
    assert _row(state, "b").status == PENDING  # changed since it was seen
    assert state.claim_all([]) == []


def test_claim_succeeds_once_and_counts_the_attempt(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    row = state.claim("a", 10, 5 * S)
    assert row is not None
    assert (row.path, row.size, row.mtime_ns, row.status, row.attempts) == ("a", 10, 5 * S, PROCESSING, 1)
    assert state.claim("a", 10, 5 * S) is None
    assert state.get("a") == row


def test_claim_from_many_threads_succeeds_once(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    got: list[FileRow | None] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        got.append(state.claim("a", 10, 5 * S))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in got) == 1
    row = _row(state, "a")
    assert row.attempts == 1


def test_claim_of_an_uploaded_or_failed_file_fails(state: SqliteState) -> None:
    _uploaded(state, "u", size=1, mtime=1)
    state.observe([("f", 1, S)], T0)
    state.claim("f", 1, S)
    state.fail("f", "x")
    assert state.claim("u", 1, S) is None
    assert state.claim("f", 1, S) is None


def test_finish_marks_uploaded_with_the_sha(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    state.claim("a", 10, 5 * S)
    assert state.finish("a", 10, 5 * S, "abc123") is True
    row = _row(state, "a")
    assert (row.status, row.sha256, row.error, row.attempts) == (UPLOADED, "abc123", None, 1)


def test_finish_with_other_size_requeues(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    state.claim("a", 10, 5 * S)
    assert state.finish("a", -1, -1, "") is False
    row = _row(state, "a")
    assert (row.status, row.sha256) == (PENDING, None)


def test_finish_of_an_unknown_file_is_false(state: SqliteState) -> None:
    assert state.finish("nope", 1, 1, "x") is False
    assert state.get("nope") is None


# ------------------------------------------------------------------ fail, retry, recover
def test_fail_records_the_error(state: SqliteState) -> None:
    state.observe([("a", 10, 5 * S)], T0)
    state.claim("a", 10, 5 * S)
    state.fail("a", "line 3: bad quote")
    row = _row(state, "a")
    assert (row.status, row.error, row.attempts) == (FAILED, "line 3: bad quote", 1)


def test_retry_failed_requeues_one_failed_file_at_a_time(state: SqliteState) -> None:
    state.observe([("f1", 1, S), ("f2", 2, S), ("p", 3, int((T0 + 50) * S))], T0)
    for path, size in (("f1", 1), ("f2", 2)):
        state.claim(path, size, S)
        state.fail(path, f"{path} broke")
    _uploaded(state, "u", size=4, mtime=1)

    assert [(r.path, r.status, r.error, r.attempts) for r in state.failed()] == [
        ("f1", FAILED, "f1 broke", 1),
        ("f2", FAILED, "f2 broke", 1),
    ]
    assert state.retry_failed("f1")
    assert _row(state, "f2").status == FAILED  # each is queued only once its file is back
    assert state.retry_failed("f2")
    for path in ("f1", "f2"):
        row = _row(state, path)
        assert (row.status, row.error, row.attempts) == (PENDING, None, 0)
    assert sorted(_paths(state.ready(before=0, limit=10))) == ["f1", "f2"]  # no quiet period
    assert state.get("u") is not None and _row(state, "u").status == UPLOADED
    assert state.failed() == [] and not state.retry_failed("f1") and not state.retry_failed("u")


def test_failed_file_can_be_uploaded_after_retry(state: SqliteState) -> None:
    state.observe([("a", 1, S)], T0)
    state.claim("a", 1, S)
    state.fail("a", "S3: slow down")
    state.retry_failed("a")
    row = state.claim("a", 1, S)
    assert row is not None and row.attempts == 1
    assert state.finish("a", 1, S, "sha")
    row = _row(state, "a")
    assert (row.status, row.error) == (UPLOADED, None)


def test_recover_requeues_what_a_crash_left_processing(state: SqliteState) -> None:
    old = int((T0 - 100) * S)
    state.observe([("c1", 1, old), ("c2", 2, old), ("p", 3, int((T0 + 50) * S))], T0)
    state.claim("c1", 1, old)
    state.claim("c2", 2, old)
    _uploaded(state, "u", size=4, mtime=1)

    was = state.recover()
    assert sorted((r.path, r.status, r.attempts) for r in was) == [
        ("c1", PROCESSING, 1),
        ("c2", PROCESSING, 1),
    ]
    assert sorted(_paths(state.ready(before=0, limit=10))) == ["c1", "c2"]
    row = _row(state, "c1")
    assert (row.status, row.attempts) == (PENDING, 1)  # attempts kept
    assert _row(state, "u").status == UPLOADED
    assert state.recover() == []


# ------------------------------------------------------------------ forget and defer
def test_forget_pending_removes_only_never_uploaded_pending_files(state: SqliteState) -> None:
    state.observe([("new", 1, S), ("busy", 1, S), ("bad", 1, S)], T0)
    state.claim("busy", 1, S)
    state.claim("bad", 1, S)
    state.fail("bad", "x")
    _uploaded(state, "done", size=1, mtime=1)
    _uploaded(state, "changed", size=1, mtime=1)
    state.observe([("changed", 2, 2 * S)], T0)  # pending again, but its old content is in S3

    for path in ("new", "busy", "bad", "done", "changed", "missing"):
        state.forget_pending(path)
    assert state.get("new") is None
    for path in ("busy", "bad", "done", "changed"):
        assert state.get(path) is not None, path


def test_finished_files_are_paged_in_path_order_and_forgotten_only_while_finished_and_old(
    state: SqliteState,
) -> None:
    for path in ("d", "b", "a", "c", "e"):
        _uploaded(state, path)
    state.observe([("p", 1, S)], T0)  # pending
    state.observe([("x", 1, S)], T0)
    state.claim("x", 1, S)
    state.fail("x", "bad")
    state.record_skipped("b", [("link", "a symlink")])
    state.claim_key("b", "", "k/b", "k/b~2")
    state.object_done("k/b", "s1", "etag", 10, None)
    later, earlier = time.time() + 60, time.time() - 60
    assert state.finished_before(earlier, "", 10) == [], "finished since"
    done = "uploaded"
    assert state.finished_before(later, "", 2) == [("a", done), ("b", done)]
    assert state.finished_before(later, "b", 2) == [("c", done), ("d", done)]
    assert state.finished_before(later, "d", 9) == [("e", done), ("x", "failed")]

    state.observe([("c", 11, S)], T0)  # changed since it was listed: pending again
    assert state.forget(["a", "c", "p", "x", "missing"], earlier) == 0, "too recent"
    assert state.forget(["b", "c", "p", "x", "missing"], later) == 2
    assert state.get("b") is None and state.get("x") is None and state.skipped(10) == []
    assert _owner(state, "k/b").sha256 == "s1", "what it put in S3 stays known"
    assert [state.get(p) is not None for p in ("a", "c", "d", "e", "p")] == [True] * 5


def test_defer_pushes_a_pending_file_out_of_ready(state: SqliteState) -> None:
    state.observe([("a", 1, int((T0 - 100) * S)), ("b", 1, int((T0 - 90) * S))], T0)
    state.defer("a", T0 + 60)
    assert _paths(state.ready(before=T0, limit=10)) == ["b"]
    assert _paths(state.ready(before=T0 + 60, limit=10)) == ["b", "a"]


def test_defer_leaves_a_file_that_is_not_pending_alone(state: SqliteState) -> None:
    state.observe([("a", 1, int((T0 - 100) * S))], T0)
    state.claim("a", 1, int((T0 - 100) * S))
    state.defer("a", T0 + 60)
    assert state.finish("a", -1, -1, "") is False  # back to the queue, quiet since before
    assert _paths(state.ready(before=T0, limit=10)) == ["a"]


# ------------------------------------------------------------------ object keys
def test_claim_key_first_source_gets_the_key(state: SqliteState) -> None:
    obj = state.claim_key("in/x.csv", "", "out/x.parquet", "out/x~1.parquet")
    assert obj == ObjectRow("out/x.parquet", "in/x.csv", "", None, None, None, None, None)
    assert state.owner_of("out/x.parquet") == obj
    assert state.owner_of("out/x~1.parquet") is None


def test_claim_key_same_source_gets_its_row_back(state: SqliteState) -> None:
    state.claim_key("in/x.csv", "", "out/x.parquet", "out/x~1.parquet")
    state.object_done("out/x.parquet", "sha", "etag", 123, 7)
    again = state.claim_key("in/x.csv", "", "out/x.parquet", "out/x~1.parquet")
    assert again == ObjectRow("out/x.parquet", "in/x.csv", "", "sha", "etag", 123, 7, None)
    assert len(state.objects_of("in/x.csv")) == 1


def test_claim_key_other_source_gets_the_alternative(state: SqliteState) -> None:
    state.claim_key("in/x.csv", "", "out/x.parquet", "out/x~1.parquet")
    other = state.claim_key("in/x.csv.gz", "", "out/x.parquet", "out/x~2.parquet")
    assert other == ObjectRow("out/x~2.parquet", "in/x.csv.gz", "", None, None, None, None, None)
    assert state.claim_key("in/x.csv.gz", "", "out/x.parquet", "out/x~2.parquet") == other
    assert _owner(state, "out/x.parquet").path == "in/x.csv"


def test_claim_key_source_is_path_and_entry(state: SqliteState) -> None:
    state.claim_key("pack.zip", "a.csv", "k", "k~a")
    other = state.claim_key("pack.zip", "b.csv", "k", "k~b")
    assert (other.key, other.path, other.entry) == ("k~b", "pack.zip", "b.csv")


def test_claim_key_third_source_is_an_error(state: SqliteState) -> None:
    state.claim_key("a", "", "k", "k~x")
    state.claim_key("b", "", "k", "k~x")
    with pytest.raises(StateError, match=r"'k' and 'k~x' are both owned by other sources"):
        state.claim_key("c", "", "k", "k~x")
    assert state.objects_of("c") == []


def test_dropped_key_can_be_claimed_by_another_source(state: SqliteState) -> None:
    state.claim_key("a", "", "k", "k~a")
    state.drop_object("k")
    assert state.owner_of("k") is None
    assert state.objects_of("a") == []
    assert state.claim_key("b", "", "k", "k~b").key == "k"


def test_upload_in_flight_is_recorded_until_it_ends(state: SqliteState) -> None:
    state.claim_key("a", "", "k1", "k1~")
    state.claim_key("b", "", "k2", "k2~")
    assert state.uploads_in_flight() == []
    state.upload_started("k1", "upload-1", "sha-a", "kind")
    assert state.uploads_in_flight() == [
        ObjectRow("k1", "a", "", None, None, None, None, "upload-1", "sha-a", "kind")
    ]
    assert _owner(state, "k1").upload_id == "upload-1"
    state.upload_ended("k1")
    assert state.uploads_in_flight() == []
    assert state.owner_of("k1") == ObjectRow("k1", "a", "", None, None, None, None, None)


def test_object_done_records_the_result_and_ends_the_upload(state: SqliteState) -> None:
    state.claim_key("a", "", "k", "k~")
    state.upload_started("k", "upload-1", "sha", "kind")
    state.object_done("k", "sha", '"etag-2"', 4096, None)
    assert state.owner_of("k") == ObjectRow("k", "a", "", "sha", '"etag-2"', 4096, None, None)
    assert state.uploads_in_flight() == []


def test_objects_of_lists_a_source_file_and_its_entries_by_key(state: SqliteState) -> None:
    state.claim_key("pack.zip", "z.csv", "pack.zip/z.parquet", "x")
    state.claim_key("pack.zip", "a.csv", "pack.zip/a.parquet", "y")
    state.claim_key("other.csv", "", "other.parquet", "z")
    assert [(o.key, o.entry) for o in state.objects_of("pack.zip")] == [
        ("pack.zip/a.parquet", "a.csv"),
        ("pack.zip/z.parquet", "z.csv"),
    ]
    assert state.objects_of("nothing") == []
    assert state.owner_of("nothing") is None


# ------------------------------------------------------------------ reports
def test_counts_has_every_status(state: SqliteState) -> None:
    assert state.counts() == dict.fromkeys(STATUSES, 0)
    state.observe([("p1", 1, S), ("p2", 1, S), ("c", 1, S), ("f", 1, S)], T0)
    state.claim("c", 1, S)
    state.claim("f", 1, S)
    state.fail("f", "x")
    _uploaded(state, "u", size=1, mtime=1)
    assert state.counts() == {PENDING: 2, PROCESSING: 1, UPLOADED: 1, FAILED: 1}


def test_recent_is_newest_first_of_one_status(state: SqliteState) -> None:
    state.observe([("old", 1, S)], T0)
    state.observe([("mid", 1, S)], T0 + 1)
    state.observe([("new", 1, S)], T0 + 2)
    _uploaded(state, "u", size=1, mtime=1)
    assert _paths(state.recent(PENDING, 10)) == ["new", "mid", "old"]
    assert _paths(state.recent(PENDING, 2)) == ["new", "mid"]
    assert _paths(state.recent(UPLOADED, 10)) == ["u"]
    assert state.recent(FAILED, 10) == []


# ------------------------------------------------------------------ durability
def test_every_call_is_visible_to_another_connection_at_once(
    state: SqliteState, peek: Callable[[], SqliteState]
) -> None:
    state.observe([("a", 10, 5 * S), ("b", 1, S)], T0)
    assert peek().get("a") == _row(state, "a")

    state.defer("a", T0 + 60)
    assert _paths(peek().ready(before=T0, limit=10)) == ["b"]

    assert state.claim("a", 10, 5 * S) is not None
    assert _row(peek(), "a").status == PROCESSING

    state.claim_key("a", "", "k", "k~")
    assert peek().owner_of("k") is not None

    state.upload_started("k", "u1", "sha", "kind")
    assert [o.upload_id for o in peek().uploads_in_flight()] == ["u1"]

    state.upload_ended("k")
    assert peek().uploads_in_flight() == []

    state.object_done("k", "sha", "etag", 5, 2)
    assert _owner(peek(), "k").etag == "etag"

    assert state.finish("a", 10, 5 * S, "sha")
    assert _row(peek(), "a").sha256 == "sha"

    state.drop_object("k")
    assert peek().owner_of("k") is None

    state.observe([("c", 1, S)], T0)
    state.claim("c", 1, S)
    state.fail("c", "broke")
    assert _row(peek(), "c").status == FAILED

    state.retry_failed("c")
    assert _row(peek(), "c").status == PENDING

    state.claim("c", 1, S)
    state.recover()
    assert _row(peek(), "c").status == PENDING

    state.forget_pending("b")
    assert peek().get("b") is None
    assert peek().counts() == state.counts()


def test_state_survives_close_and_reopen(db: Path) -> None:
    first = SqliteState(db)
    first.observe([("a", 10, 5 * S), ("b", 2, S)], T0)
    first.claim("a", 10, 5 * S)
    first.claim_key("a", "", "k", "k~")
    first.upload_started("k", "upload-9", "sha", "kind")
    first.close()

    again = SqliteState(db)
    try:
        row = _row(again, "a")
        assert (row.size, row.mtime_ns, row.status, row.attempts) == (10, 5 * S, PROCESSING, 1)
        assert [o.upload_id for o in again.uploads_in_flight()] == ["upload-9"]
        assert _paths(again.recover()) == ["a"]
        assert again.counts()[PENDING] == 2
    finally:
        again.close()


def test_database_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    s = SqliteState(path)
    s.close()
    assert path.is_file()


# ------------------------------------------------------------------ opening
def test_exclusive_twice_is_refused_with_a_clear_message(db: Path) -> None:
    first = SqliteState(db, exclusive=True)
    try:
        with pytest.raises(StateError, match=r"another s3proc run is using the state database .*s3proc\.db"):
            SqliteState(db, exclusive=True)
        with pytest.raises(StateError, match="another s3proc run"):
            open_state(db, exclusive=True)
        reader = SqliteState(db)  # status, ls: no lock needed
        try:
            first.observe([("a", 1, S)], T0)
            assert reader.get("a") is not None
            reader.observe([("b", 1, S)], T0)
            assert first.get("b") is not None
        finally:
            reader.close()
    finally:
        first.close()
    second = SqliteState(db, exclusive=True)  # the lock goes with close()
    second.close()


def test_exclusive_on_different_files_is_fine(tmp_path: Path) -> None:
    a = SqliteState(tmp_path / "a.db", exclusive=True)
    b = SqliteState(tmp_path / "b.db", exclusive=True)
    a.close()
    b.close()


def test_open_state_refuses_other_backends() -> None:
    with pytest.raises(StateError, match=r"unsupported state location 'postgresql://x'"):
        open_state("postgresql://x")


@pytest.mark.parametrize("form", ["path", "str", "url"])
def test_open_state_takes_a_path_or_sqlite_url(db: Path, form: str) -> None:
    location = {"path": db, "str": str(db), "url": f"sqlite://{db}"}[form]
    s = open_state(location)
    try:
        assert isinstance(s, SqliteState)
        s.observe([("a", 1, S)], T0)
    finally:
        s.close()
    assert db.is_file()


def test_a_file_that_is_not_a_database_is_a_state_error(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not SQLite\n" * 512)
    with pytest.raises(StateError, match="cannot open the state database"):
        SqliteState(bad)


# ------------------------------------------------------------------ scale
def test_a_large_queue(state: SqliteState) -> None:
    n, batch = 100_000, 10_000
    for start in range(0, n, batch):
        state.observe(
            ((f"d{i % 100}/f{i}.csv", i, (i + 1) * S) for i in range(start, start + batch)),
            T0 + start,
        )
    assert state.counts()[PENDING] == n
    ready = state.ready(before=T0, limit=10)
    assert _paths(ready) == [f"d{i % 100}/f{i}.csv" for i in range(10)]  # the oldest mtimes
    assert state.claim(ready[0].path, ready[0].size, ready[0].mtime_ns) is not None
    assert len(state.ready(before=T0, limit=10)) == 10


def test_a_database_locked_past_the_busy_timeout_is_a_state_failure_and_stays_consistent(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3proc.state as st

    monkeypatch.setattr(st, "BUSY_TIMEOUT", 0.2)
    state = SqliteState(db)
    state.observe([("a.csv", 10, 1 * S)], T0)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    with pytest.raises(StateUnavailable, match="locked"):
        state.claim("a.csv", 10, 1 * S)
    assert state.get("a.csv") is not None  # WAL: readers go on beside a writer
    other.execute("ROLLBACK")
    other.close()
    row = state.get("a.csv")
    assert row is not None and row.status == PENDING, "the failed claim left nothing behind"
    assert state.claim("a.csv", 10, 1 * S) is not None
    state.close()


def test_a_new_state_is_not_rebuilt_until_a_rebuild_ends(tmp_path: Path) -> None:
    """A state that a failed start left empty still asks for a rebuild from S3; one an earlier
    version used (rows, no record) does not."""
    db = tmp_path / "state.db"
    s = SqliteState(db)
    assert not s.rebuilt()
    s.close()
    s = SqliteState(db)  # opened again: still not rebuilt
    assert not s.rebuilt()
    s.mark_rebuilt()
    assert s.rebuilt()
    s.observe([("a.csv", 1, 1)], 0)
    s.close()
    raw = sqlite3.connect(db)
    raw.execute("DELETE FROM meta WHERE name='rebuilt'")  # as an earlier version left it
    raw.commit()
    raw.close()
    s = SqliteState(db)
    assert s.rebuilt()
    s.close()
