"""Object keys: where in the bucket each result goes (the contract documented in the README).

- A raw file: ``{prefix}{relative path}``.
- A converted table: its relative path with the tabular and compression extensions replaced
  by ``.parquet`` (``in/2024/sales.csv.gz`` → ``in/2024/sales.parquet``).
- An archive entry: under the archive's own path (``exports/pack.zip`` entry ``q1/orders.csv``
  → ``exports/pack.zip/q1/orders.parquet``).

No key contains ``..`` as a segment, a leading ``/``, ``//`` or a control character (control
characters and ``%`` are percent-encoded, so the mapping stays reversible); UTF-8 is kept. When
two sources map to one key, the second gets the alternative key: ``~`` and 8 hex digits of the
SHA-256 of its source name before the extension, the same on every run. A key takes at most
``MAX_KEY_BYTES`` of UTF-8, so that its alternative stays within S3's 1024.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from dataclasses import dataclass, field
from urllib.parse import quote

TABULAR_EXTENSIONS = (".csv", ".tsv", ".tab", ".ndjson", ".jsonl", ".json", ".xml")
COMPRESSION_EXTENSIONS = (".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz")
DEFAULT_TEMPLATE = "{prefix}{path}"

MAX_KEY_BYTES = 1024 - len("~12345678")  # S3's limit, less room for the alternative's tag
KEY_CHOICES = 16  # alternatives a source tries for a key other sources hold
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f%]")
_FIELDS = {"prefix", "path", "dir", "name", "stem", "ext", "date", "mtime"}


class BadKey(ValueError):
    """A key template or a name that cannot give a valid key."""


def _escape(segment: str) -> str:
    return _CONTROL.sub(lambda m: quote(m.group(), safe=""), segment)


def clean(key: str) -> str:
    """``key`` made safe: no empty, ``.`` or ``..`` segments, no leading ``/``, no control bytes.

    Backslashes count as separators (Windows names in archives); ``..`` segments are dropped,
    never resolved against what came before, so nothing can climb out of its prefix.
    """
    return "/".join(_escape(p) for p in _segments(key).split("/"))


def _segments(path: str) -> str:
    """``path`` with ``/`` separators and no empty, ``.`` or ``..`` segments (nothing escaped)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise BadKey(f"{path!r} gives an empty key")
    return "/".join(parts)


def normalize_prefix(prefix: str) -> str:
    """A prefix is a folder: ``''`` or a cleaned path ending in ``/``."""
    try:
        return _segments(prefix) + "/"
    except BadKey:
        return ""  # '', '/', '.', './': the bucket's root


def _split_tabular(name: str) -> tuple[str, str, bool]:
    """``name`` without its compression extension; that without its tabular extension too; and
    whether it had a tabular one."""
    lower = name.lower()
    for ext in COMPRESSION_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            name, lower = name[: -len(ext)], lower[: -len(ext)]
            break
    for ext in TABULAR_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name, name[: -len(ext)], True
    return name, name, False


def is_tabular(name: str) -> bool:
    """Whether ``name`` says a table (``x.csv``, ``x.ndjson.gz``): such a file is converted; its
    content decides the details (format, dialect, compression), and a binary is refused."""
    return _split_tabular(name)[2]


def parquet_name(name: str) -> str:
    """``sales.csv.gz`` → ``sales.parquet``; a name with no tabular extension gets ``.parquet`` added."""
    return _split_tabular(name)[1] + ".parquet"


def alternative(key: str, source: str) -> str:
    """The deterministic second choice for ``key``: a suffix from ``source``'s name before the extension."""
    tag = "~" + hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    head, slash, name = key.rpartition("/")
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    return f"{head}{slash}{stem}{tag}{dot}{ext}"


def alternatives(key: str, source: str) -> list[str]:
    """Every key ``source`` may take when others hold ``key``, in the order it tries them: its
    ``alternative``, then that of its name with ``~2``, ``~3``… added."""
    return [alternative(key, source)] + [alternative(key, f"{source}~{n}") for n in range(2, KEY_CHOICES + 1)]


class _AnyDate:
    """Stands for any date in a template (``{date:%Y/%m/%d}``, ``{date.year}``): a mark where
    ``KeyMaker.gives`` then takes any text."""

    MARK = "\ue000"  # a private-use character: no name gives it

    def __format__(self, _spec: str) -> str:
        return self.MARK

    def __getattr__(self, _name: str) -> _AnyDate:
        return self

    def __getitem__(self, _index: object) -> _AnyDate:
        return self


@dataclass(frozen=True)
class KeyMaker:
    """Turns a source's relative path into its object key.

    Args:
        prefix: Folder in the bucket (normalised to end in ``/``).
        template: ``str.format`` template over ``prefix``, ``path`` (the mapped relative path),
            ``dir``, ``name``, ``stem``, ``ext`` and ``date``/``mtime`` (the source's mtime, UTC,
            a ``datetime``: ``{date:%Y/%m/%d}``).
    """

    prefix: str = ""
    template: str = DEFAULT_TEMPLATE
    #: The template holds the source's date: each version of a file has a key of its own.
    dated: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        try:
            fields = [(f, s, c) for _, f, s, c in string.Formatter().parse(self.template) if f is not None]
        except ValueError as e:
            raise BadKey(f"bad key template {self.template!r}: {e}") from None
        names = {f.split(".")[0].split("[")[0] for f, _, _ in fields}
        unknown = names - _FIELDS
        if unknown:
            raise BadKey(f"key template {self.template!r}: unknown field(s) {', '.join(sorted(unknown))}")
        # A field, not the text: '{{path}}' is the literal '{path}', the same key for every file.
        if not any(f in ("path", "name", "stem") and not s and not c for f, s, c in fields):
            raise BadKey(f"key template {self.template!r} must contain {{path}}, {{name}} or {{stem}}")
        self.key("a/b.csv", parquet=True)  # a format spec that fits no field fails here, at start-up
        object.__setattr__(self, "dated", bool(names & {"date", "mtime"}))

    @property
    def scope(self) -> str:
        """What every key begins with, to list them by: the prefix as keys hold it (``%`` and
        control characters escaped) when the template begins with it, else the whole bucket."""
        if not self.prefix or not self.template.startswith("{prefix}"):
            return ""
        return clean(self.prefix) + "/"

    def key(self, relpath: str, *, parquet: bool, mtime: float = 0.0, entry: str = "") -> str:
        """The key of ``relpath`` (or of ``entry`` inside the archive ``relpath``)."""
        try:
            when = dt.datetime.fromtimestamp(mtime, dt.UTC)
        except (ValueError, OverflowError, OSError):  # past year 9999 (a file system may hold one)
            when = (
                dt.datetime.max.replace(tzinfo=dt.UTC)
                if mtime > 0
                else dt.datetime.min.replace(tzinfo=dt.UTC)
            )
        return self._key(relpath, parquet, entry, when)

    def gives(self, key: str, relpath: str, entry: str, source: str) -> bool:
        """Whether ``key`` is one this key maker gives the source ``(relpath, entry)`` (named
        ``source``), at any mtime: its own or one of its ``alternatives``. A state rebuilt from
        a bucket that several services share takes only its own service's objects."""
        for parquet in (True, False):
            try:
                wanted = self._key(relpath, parquet, entry, _AnyDate() if self.dated else None)
            except BadKey:
                continue
            # Every alternative has a "~": most keys need no alternatives computed.
            for k in (wanted, *(alternatives(wanted, source) if "~" in key else ())):
                if k == key or (self.dated and re.fullmatch(re.escape(k).replace(_AnyDate.MARK, ".+"), key)):
                    return True
        return False

    def _key(self, relpath: str, parquet: bool, entry: str, when: object) -> str:
        path = _segments(relpath) + ("/" + _segments(entry) if entry else "")
        if parquet:
            head, slash, name = path.rpartition("/")
            path = head + slash + parquet_name(name)
        head, _, name = path.rpartition("/")
        stem, dot, ext = name.partition(".")
        try:
            key = self.template.format(
                prefix=self.prefix,
                path=path,
                dir=head,
                name=name,
                stem=stem,
                ext=dot + ext,
                date=when,
                mtime=when,
            )
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
            raise BadKey(f"key template {self.template!r}: {e}") from None
        key = clean(key)
        if (size := len(key.encode("utf-8", "surrogateescape"))) > MAX_KEY_BYTES:
            raise BadKey(f"its key would take {size} bytes; s3proc makes keys of up to {MAX_KEY_BYTES}")
        return key
