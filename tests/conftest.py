"""Fixtures: generated data (cached per session), the corpus folder and the CLI binary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Detailed assertion messages in the shared helpers too.
pytest.register_assert_rewrite("_util", "s3servers")

from _util import CORPUS, GEN_DATA, S3PROC_BIN, run_gen_data  # noqa: E402
from s3servers import S3Server, start_moto, start_seaweed  # noqa: E402

GenData = Callable[..., Path]


def _absent(what: str) -> None:
    # CI always has ../shared beside the clone: a missing one there is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run with ../shared beside the clone)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def gen_data(tmp_path_factory: pytest.TempPathFactory) -> GenData:
    """``gen_data(fmt, rows, seed)`` -> path of a file made by the shared generator (cached)."""
    if not GEN_DATA.is_file():
        _absent(f"the shared data generator is absent: {GEN_DATA}")
    folder = tmp_path_factory.mktemp("gen_data")
    made: dict[tuple[str, int, int], Path] = {}

    def make(fmt: str = "csv", rows: int = 2000, seed: int = 42) -> Path:
        key = (fmt, rows, seed)
        if key not in made:
            made[key] = run_gen_data(fmt, rows, seed, folder / f"data-{seed}-{rows}.{fmt}")
        return made[key]

    return make


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        _absent(f"the shared corpus is absent (expected at {CORPUS}, i.e. ../shared/corpus)")
    return CORPUS


@pytest.fixture(scope="session")
def s3proc_bin() -> Path:
    if not S3PROC_BIN.exists():
        pytest.fail(f"the s3proc console script is not installed next to the interpreter: {S3PROC_BIN}")
    return S3PROC_BIN


# ---------------------------------------------------------------------- S3 servers
@pytest.fixture(scope="session")
def moto() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (accepts wrong checksums: not for integrity tests)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on 127.0.0.1: verifies Content-MD5 and checksums, honours If-None-Match."""
    try:
        server = start_seaweed(tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    yield server
    server.stop()
