"""The ``s3proc`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from s3proc import _core
from s3proc.convert import convert as convert_to
from s3proc.errors import S3procError

F = TypeVar("F", bound=Callable[..., Any])


class _Main(click.Group):
    """Turns s3proc's errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except S3procError as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(1)
        except OSError as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(1)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"s3proc {_core.__version__} (core: {_core.build_profile} build)")
        ctx.exit()


def _sample_rows(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("a row count or 'all'") from None


def converter_options(f: F) -> F:
    """The converter's options, shared by every command that reads a table."""
    options = [
        click.option("--delimiter", help="Field separator (default: detected)."),
        click.option("--quote", help="Quote character; '' turns quoting off (default: \")."),
        click.option(
            "--escape", type=click.Choice(["quote", "backslash"]), help="TSV escapes (default: detected)."
        ),
        click.option(
            "--header/--no-header", default=None, help="First line names the columns (default: detected)."
        ),
        click.option(
            "--null-value",
            "null_values",
            multiple=True,
            help="A value read as null; repeatable (default: empty field).",
        ),
        click.option(
            "--encoding", help="utf-8, windows-1252, latin-1, utf-16le, utf-16be (default: detected)."
        ),
        click.option(
            "--sample-rows",
            default="20000",
            callback=_sample_rows,
            help="Rows read to infer types, or 'all'.",
        ),
        click.option("--zstd-level", type=click.IntRange(1, 22), default=3, show_default=True),
        click.option(
            "--row-group-rows", type=click.IntRange(1), default=None, help="Most rows per row group."
        ),
        click.option(
            "--row-group-bytes",
            type=click.IntRange(1),
            default=None,
            help="Most encoded bytes per row group.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _core_options(opts: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in opts.items() if v is not None and k != "null_values"}
    if opts.get("null_values"):
        out["null_values"] = list(opts["null_values"])
    if "sample_rows" in opts:
        out["sample_rows"] = opts["sample_rows"]
    return out


@click.group(cls=_Main)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print the version and whether the core is a release build.",
)
def main() -> None:
    """Ship files dropped into a folder to S3; tabular files become ZSTD Parquet."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@converter_options
def inspect(file: str, as_json: bool, **opts: Any) -> None:
    """Print the detected encoding, dialect and schema of FILE."""
    core = _core_options(opts)
    for key in ("zstd_level", "row_group_rows", "row_group_bytes"):
        core.pop(key, None)
    plan = _core.inspect(file, **core)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    d = plan["dialect"]
    click.echo(f"format:     {plan['format']}")
    click.echo(f"encoding:   {plan['encoding']}")
    click.echo(
        f"dialect:    delimiter={d['delimiter']!r} quote={d['quote']!r} escape={d['escape']} "
        f"header={d['header']} null_values={d['null_values']!r}"
    )
    click.echo("columns:")
    width = max((len(n) for n, _ in plan["columns"]), default=0)
    for name, ty in plan["columns"]:
        click.echo(f"  {name:<{width}}  {ty}")


@main.command()
@click.argument("input", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True))
@converter_options
def convert(input: str, output: str, **opts: Any) -> None:
    """Convert INPUT (CSV/TSV) to a ZSTD Parquet file OUTPUT ('-' for stdout)."""
    core = _core_options(opts)
    if output == "-":
        result = convert_to(input, sys.stdout.buffer, **core)
    else:
        try:
            with open(output, "wb") as out:
                result = convert_to(input, out, **core)
        except BaseException:
            # Never leave a half-written file that looks like a result.
            Path(output).unlink(missing_ok=True)
            raise
    click.echo(
        f"{input}: {result.rows} rows, {len(result.plan['columns'])} columns -> {result.bytes} bytes"
        + (f" ({result.restarts} restarts)" if result.restarts else ""),
        err=True,
    )
