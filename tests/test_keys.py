"""Object keys: the contract of ``s3proc.keys`` (where in the bucket each result goes).

A raw file goes to ``{prefix}{relative path}``; a converted table gets its tabular and
compression extensions replaced by ``.parquet``; an archive entry goes under the archive's own
path. No key ever has a ``..`` or empty segment, a leading ``/`` or a control character; UTF-8 is
kept; control characters and ``%`` are percent-encoded so that the mapping stays reversible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3proc.keys import BadKey, KeyMaker, alternative, clean, normalize_prefix

# The characters a key must never contain raw: C0 controls and DEL (what S3 and its XML listings
# cannot carry); they and ``%`` appear only as ``%XX``.
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPE = re.compile(r"%C2%(?:[89][0-9A-F])|%(?:[01][0-9A-F]|7F|25)")

# Pieces that make hostile paths likely: separators of both kinds, dot segments, controls, '%'.
_PIECES = [
    *["..", ".", "", "/", "\\", "../", "..\\"],
    *["\x00", "\n", "\r", "\x7f", "\x85", "%", "%2F", "a", "é", "b c"],
]
hostile = st.lists(st.sampled_from(_PIECES) | st.text(max_size=6), max_size=8).map("".join)
# One segment: anything without a separator that is not a dot segment.
segment = st.text(min_size=1).filter(lambda s: "/" not in s and "\\" not in s and s not in (".", ".."))
safe_segment = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/\\%"), min_size=1
).filter(lambda s: s not in (".", ".."))


def _reduces_to_nothing(path: str) -> bool:
    return all(p in ("", ".", "..") for p in path.replace("\\", "/").split("/"))


def assert_safe_key(key: str) -> None:
    assert key, "empty key"
    assert not key.startswith("/"), key
    assert "//" not in key, key
    assert "\\" not in key, key
    assert not _RAW_CONTROL.search(key), key
    segments = key.split("/")
    assert all(s not in ("", ".", "..") for s in segments), key
    # Every '%' starts an escape this module made (a control character or '%' itself).
    assert key.count("%") == sum(m.count("%") for m in _ESCAPE.findall(key)), key


# ------------------------------------------------------------------ raw files
@pytest.mark.parametrize(
    ("prefix", "relpath", "key"),
    [
        ("", "a.csv", "a.csv"),
        ("", "in/2024/sales.csv.gz", "in/2024/sales.csv.gz"),
        ("landing", "in/2024/sales.csv.gz", "landing/in/2024/sales.csv.gz"),
        ("landing/", "report.pdf", "landing/report.pdf"),
        ("/a//b/", "x/y.bin", "a/b/x/y.bin"),
    ],
)
def test_raw_key_is_prefix_and_relative_path(prefix: str, relpath: str, key: str) -> None:
    assert KeyMaker(prefix).key(relpath, parquet=False) == key


@given(st.lists(safe_segment, min_size=1, max_size=5).map("/".join))
def test_raw_key_keeps_an_ordinary_path_unchanged(relpath: str) -> None:
    assert KeyMaker("p").key(relpath, parquet=False) == "p/" + relpath


def test_relative_path_is_cleaned_not_resolved() -> None:
    keys = KeyMaker("p")
    assert keys.key("../../etc/passwd", parquet=False) == "p/etc/passwd"
    assert keys.key("a/b/../c", parquet=False) == "p/a/b/c"
    assert keys.key("/abs//./x.csv", parquet=False) == "p/abs/x.csv"
    assert keys.key("win\\dir\\x.csv", parquet=False) == "p/win/dir/x.csv"


@pytest.mark.parametrize("relpath", ["", "/", ".", "..", "../..", "./\\/..", "\\"])
def test_relative_path_that_reduces_to_nothing_is_bad(relpath: str) -> None:
    with pytest.raises(BadKey, match="empty key"):
        KeyMaker("p").key(relpath, parquet=False)


# ------------------------------------------------------------------ converted tables
@pytest.mark.parametrize(
    ("relpath", "key"),
    [
        ("in/2024/sales.csv.gz", "in/2024/sales.parquet"),
        ("a.tsv", "a.parquet"),
        ("x.CSV", "x.parquet"),
        ("x.Csv.GZ", "x.parquet"),
        ("t.tab", "t.parquet"),
        ("n.ndjson", "n.parquet"),
        ("l.jsonl", "l.parquet"),
        ("j.json", "j.parquet"),
        ("m.xml", "m.parquet"),
        ("g.csv.gzip", "g.parquet"),
        ("z.jsonl.zst", "z.parquet"),
        ("z.tsv.zstd", "z.parquet"),
        ("b.xml.bz2", "b.parquet"),
        ("x.csv.xz", "x.parquet"),
        ("my.data.v2.csv", "my.data.v2.parquet"),
        ("dir.csv/inner.csv", "dir.csv/inner.parquet"),
        ("notes", "notes.parquet"),
        ("sales.gz", "sales.parquet"),
    ],
)
def test_table_key_replaces_tabular_and_compression_extensions(relpath: str, key: str) -> None:
    assert KeyMaker().key(relpath, parquet=True) == key


def test_table_key_replaces_only_one_compression_extension() -> None:
    assert KeyMaker().key("a.csv.gz.gz", parquet=True) == "a.csv.gz.parquet"
    assert KeyMaker().key("a.csv.xz.gz", parquet=True) == "a.csv.xz.parquet"


def test_table_key_has_the_prefix() -> None:
    assert KeyMaker("out").key("in/2024/sales.csv.gz", parquet=True) == "out/in/2024/sales.parquet"


# ------------------------------------------------------------------ archive entries
def test_archive_entry_goes_under_the_archive_path() -> None:
    keys = KeyMaker()
    assert (
        keys.key("exports/pack.zip", parquet=True, entry="q1/orders.csv")
        == "exports/pack.zip/q1/orders.parquet"
    )
    assert (
        keys.key("exports/pack.zip", parquet=False, entry="q1/readme.txt") == "exports/pack.zip/q1/readme.txt"
    )
    prefixed = KeyMaker("p").key("exports/pack.tar.gz", parquet=True, entry="q1/orders.csv.gz")
    assert prefixed == "p/exports/pack.tar.gz/q1/orders.parquet"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("../../etc/passwd", "pack.zip/etc/passwd"),
        ("/abs/x.txt", "pack.zip/abs/x.txt"),
        ("q1\\orders.txt", "pack.zip/q1/orders.txt"),
        ("q1/../../../x.txt", "pack.zip/q1/x.txt"),
    ],
)
def test_archive_entry_cannot_climb_out_of_the_archive(entry: str, key: str) -> None:
    assert KeyMaker().key("pack.zip", parquet=False, entry=entry) == key


@pytest.mark.parametrize("entry", ["/", "..", "../..", "./", "\\..\\"])
def test_archive_entry_that_reduces_to_nothing_is_bad(entry: str) -> None:
    with pytest.raises(BadKey):
        KeyMaker().key("pack.zip", parquet=False, entry=entry)


# ------------------------------------------------------------------ invariants
@given(hostile, hostile, st.booleans())
def test_no_key_has_dot_segments_leading_slash_double_slash_or_controls(
    relpath: str, entry: str, parquet: bool
) -> None:
    keys = KeyMaker("in\x01/100%//")
    if _reduces_to_nothing(relpath) or (entry and _reduces_to_nothing(entry)):
        with pytest.raises(BadKey):
            keys.key(relpath, parquet=parquet, entry=entry)
        return
    key = keys.key(relpath, parquet=parquet, entry=entry)
    assert_safe_key(key)
    assert key.startswith("in%01/100%25/")


@given(st.text())
def test_clean_gives_a_safe_key_or_bad_key(path: str) -> None:
    if _reduces_to_nothing(path):
        with pytest.raises(BadKey):
            clean(path)
    else:
        assert_safe_key(clean(path))


@given(hostile)
def test_clean_twice_only_escapes_the_percent_again(path: str) -> None:
    if _reduces_to_nothing(path):
        return
    once = clean(path)
    # A second pass escapes the '%' of the first, and changes nothing else.
    assert clean(once) == once.replace("%", "%25")


# ------------------------------------------------------------------ UTF-8 and escaping
@pytest.mark.parametrize(
    ("relpath", "parquet", "key"),
    [
        ("données/été.csv", False, "données/été.csv"),
        ("données/été.csv", True, "données/été.parquet"),
        ("数据/📈 report.tsv", True, "数据/📈 report.parquet"),
        ("cafe\u0301.txt", False, "cafe\u0301.txt"),  # not normalised to NFC
        ("Straße ~ (1).json", True, "Straße ~ (1).parquet"),
    ],
)
def test_utf8_names_are_kept(relpath: str, parquet: bool, key: str) -> None:
    assert KeyMaker().key(relpath, parquet=parquet) == key


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("a\nb.csv", "a%0Ab.csv"),
        ("nul\x00.txt", "nul%00.txt"),
        ("tab\there", "tab%09here"),
        ("del\x7f", "del%7F"),
        ("esc\x1b[0m", "esc%1B[0m"),
        ("100%.csv", "100%25.csv"),
        ("%41", "%2541"),
    ],
)
def test_control_characters_and_percent_are_percent_encoded(name: str, escaped: str) -> None:
    assert clean(name) == escaped
    assert unquote(escaped) == name


@given(segment)
def test_escaping_is_reversible_for_one_segment(name: str) -> None:
    key = clean(name)
    assert "/" not in key
    assert unquote(key) == name


@given(st.lists(segment, min_size=1, max_size=5))
def test_escaping_is_reversible_segment_by_segment(segments: list[str]) -> None:
    key = KeyMaker().key("/".join(segments), parquet=False)
    assert [unquote(s) for s in key.split("/")] == segments


# ------------------------------------------------------------------ prefixes
@pytest.mark.parametrize(
    ("prefix", "normal"),
    [
        ("", ""),
        ("/", ""),
        ("///", ""),
        ("a", "a/"),
        ("a/", "a/"),
        ("/a//b/", "a/b/"),
        ("a/./b/../c", "a/b/c/"),
        ("a\\b", "a/b/"),
        ("été", "été/"),
    ],
)
def test_normalize_prefix(prefix: str, normal: str) -> None:
    assert normalize_prefix(prefix) == normal


def test_key_maker_normalizes_its_prefix() -> None:
    assert KeyMaker("/a//b").prefix == "a/b/"
    assert KeyMaker("").prefix == ""


@given(hostile)
def test_normalize_prefix_gives_a_folder_or_nothing(prefix: str) -> None:
    if _reduces_to_nothing(prefix):
        assert normalize_prefix(prefix) == ""  # '.', './', '..': the bucket's root
        return
    normal = normalize_prefix(prefix)
    assert normalize_prefix(normal) == normal
    if normal:
        assert normal.endswith("/")
        assert not normal.startswith("/")
        assert "//" not in normal
        assert all(s not in (".", "..") for s in normal[:-1].split("/"))


# ------------------------------------------------------------------ alternative keys
def _tag(source: str) -> str:
    return "~" + hashlib.sha256(source.encode()).hexdigest()[:8]


def test_alternative_puts_the_source_hash_before_the_extension() -> None:
    assert alternative("x.parquet", "in/x.csv") == f"x{_tag('in/x.csv')}.parquet"
    assert re.fullmatch(r"x~[0-9a-f]{8}\.parquet", alternative("x.parquet", "s"))


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("out/2024/x.parquet", r"out/2024/x~[0-9a-f]{8}\.parquet"),
        ("exports/pack.zip/q1/orders.parquet", r"exports/pack\.zip/q1/orders~[0-9a-f]{8}\.parquet"),
        ("a/b.tar.gz", r"a/b~[0-9a-f]{8}\.tar\.gz"),
        ("dir/README", r"dir/README~[0-9a-f]{8}"),
        ("dir/.env", r"dir/\.env~[0-9a-f]{8}"),
    ],
)
def test_alternative_keeps_directory_and_extension(key: str, pattern: str) -> None:
    assert re.fullmatch(pattern, alternative(key, "src"))


def test_alternative_is_deterministic() -> None:
    first = alternative("out/x.parquet", "in/x.csv")
    assert alternative("out/x.parquet", "in/x.csv") == first
    # The same on every run: derived from SHA-256, not from Python's per-process hash().
    assert first == f"out/x{_tag('in/x.csv')}.parquet"


def test_alternative_differs_for_different_sources() -> None:
    sources = ["in/x.csv", "in/X.csv", "in/x.csv.gz", "pack.zip!x.csv", "pack.zip!q1/x.csv", "é.csv"]
    alternatives = {alternative("out/x.parquet", s) for s in sources}
    assert len(alternatives) == len(sources)
    assert "out/x.parquet" not in alternatives


@given(hostile, st.text())
def test_alternative_of_a_safe_key_is_safe_and_different(path: str, source: str) -> None:
    if _reduces_to_nothing(path):
        return
    key = clean(path)
    other = alternative(key, source)
    assert other != key
    assert_safe_key(other)
    assert other.rpartition("/")[0] == key.rpartition("/")[0]


# ------------------------------------------------------------------ templates
@pytest.fixture
def tokyo_time() -> Iterator[None]:
    """Local time far from UTC, so that a key made from local time would show."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_template_date_is_the_mtime_in_utc(tokyo_time: None) -> None:
    mtime = dt.datetime(2024, 12, 31, 23, 30, 15, tzinfo=dt.UTC).timestamp()  # 2025-01-01 in Tokyo
    keys = KeyMaker("in", "{prefix}{date:%Y/%m/%d}/{path}")
    assert keys.key("a/sales.csv", parquet=True, mtime=mtime) == "in/2024/12/31/a/sales.parquet"
    stamped = KeyMaker("", "{dir}/{stem}-{mtime:%Y%m%dT%H%M%S}{ext}")
    assert stamped.key("a/sales.csv", parquet=False, mtime=mtime) == "a/sales-20241231T233015.csv"


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("{prefix}{path}", "p/in/2024/sales.parquet"),
        ("{prefix}{name}", "p/sales.parquet"),
        ("{prefix}{dir}/{stem}{ext}", "p/in/2024/sales.parquet"),
        ("{prefix}{stem}/{date:%Y}{ext}", "p/sales/1970.parquet"),
        ("{{{path}}}", "{in/2024/sales.parquet}"),
    ],
)
def test_template_fields(template: str, key: str) -> None:
    assert KeyMaker("p", template).key("in/2024/sales.csv.gz", parquet=True) == key


def test_template_output_is_cleaned() -> None:
    keys = KeyMaker("", "/{dir}//../{name}")
    assert keys.key("top.txt", parquet=False) == "top.txt"
    assert keys.key("a/b.txt", parquet=False) == "a/b.txt"


@pytest.mark.parametrize("template", ["{prefix}{path}{nope}", "{bucket}/{path}", "{0}{path}", "{}{path}"])
def test_template_with_unknown_field_is_bad(template: str) -> None:
    with pytest.raises(BadKey, match="unknown field"):
        KeyMaker("", template)


@pytest.mark.parametrize(
    "template", ["{prefix}{date}", "{prefix}{dir}{ext}", "static", "{{path}}", "{prefix}{{name}}"]
)
def test_template_without_path_name_or_stem_is_bad(template: str) -> None:
    with pytest.raises(BadKey, match=r"must contain \{path\}, \{name\} or \{stem\}"):
        KeyMaker("", template)


@pytest.mark.parametrize("template", ["{path", "{prefix}}{path}", "{path!z}"])
def test_malformed_template_is_bad(template: str) -> None:
    with pytest.raises(BadKey):
        KeyMaker("", template).key("a.csv", parquet=False)


@pytest.mark.parametrize(
    "template",
    ["{path}{path.nope}", "{path}-{name:%Y}", "{path}{date:{nope}}", "{path}{ext:d}", "{path}{date[0]}"],
)
def test_template_that_fails_when_formatting_is_refused_when_made(template: str) -> None:
    """Found at start-up (a configuration error), not at the first file (which would fail)."""
    with pytest.raises(BadKey, match="key template"):
        KeyMaker("", template)


@pytest.mark.parametrize(
    ("prefix", "template", "scope"),
    [
        ("in%box", "{prefix}{path}", "in%25box/"),
        ("a\tb/c", "{prefix}{date:%Y}/{path}", "a%09b/c/"),
        ("p", "{date:%Y}/{prefix}{path}", ""),
        ("", "{prefix}{path}", ""),
    ],
)
def test_the_scope_is_what_every_key_begins_with(prefix: str, template: str, scope: str) -> None:
    """Uploads and objects are listed under the prefix as keys hold it (escaped), or the whole
    bucket when the template does not begin with the prefix."""
    keys = KeyMaker(prefix, template)
    assert keys.scope == scope
    assert keys.key("x/y.csv", parquet=True, mtime=1e9).startswith(scope)
