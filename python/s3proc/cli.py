"""The ``s3proc`` command line."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import botocore.exceptions
import click
from click.exceptions import NoArgsIsHelpError

from s3proc import _core, logs
from s3proc.config import (
    DEFAULT_CONCURRENCY,
    FORGET_AFTER,
    ConfigError,
    RunConfig,
    check_bucket,
    check_reachable,
    load_env,
    parse_size,
)
from s3proc.convert import convert as convert_to
from s3proc.errors import S3procError
from s3proc.state import FAILED, PROCESSING, State, StateError, open_state
from s3proc.uploader import PART_CONCURRENCY, describe

F = TypeVar("F", bound=Callable[..., Any])


class EnvOption(click.Option):
    """An option that is also ``S3PROC_<NAME>`` in the environment (and so in ``.env``).

    ``empty_ok``: a variable set to nothing is the empty value (click takes it for unset), for
    an option whose empty value means something (``--quote ''``).
    """

    def __init__(self, *args: Any, empty_ok: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.empty_ok = empty_ok
        if self.envvar is None and self.name:
            self.envvar = "S3PROC_" + self.name.upper()
            self.show_envvar = True

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        if self.empty_ok and isinstance(self.envvar, str) and os.environ.get(self.envvar) == "":
            return ""
        return super().resolve_envvar_value(ctx)


def option(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*args, cls=EnvOption, **kwargs)


class _Main(click.Group):
    """Turns s3proc's errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, StateError) as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(2)
        except S3procError as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(1)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            click.echo(f"s3proc: error: S3: {describe(e)}", err=True)
            sys.exit(1)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): see main
        except OSError as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(1)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"s3proc {_core.__version__} (core: {_core.build_profile} build)")
        ctx.exit()


_UNSET = object()


def _sample_rows(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return _UNSET  # the core's default (20,000), or the whole input where output cannot rewind
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("a row count or 'all'") from None


def converter_options(f: F) -> F:
    """The converter's options, shared by every command that reads a table."""
    options = [
        option(
            "--format",
            type=click.Choice(["csv", "tsv", "json", "ndjson", "xml"]),
            help="Input format (default: detected from the name and the content).",
        ),
        option("--delimiter", help="Field separator (default: detected)."),
        option("--quote", empty_ok=True, help="Quote character; '' turns quoting off (default: \")."),
        option(
            "--escape", type=click.Choice(["quote", "backslash"]), help="TSV escapes (default: detected)."
        ),
        option(
            "--header/--no-header", default=None, help="First line names the columns (default: detected)."
        ),
        option(
            "--null-value",
            "null_values",
            multiple=True,
            help="A value read as null; repeatable (default: empty field).",
        ),
        option("--encoding", help="utf-8, windows-1252, latin-1, utf-16le, utf-16be (default: detected)."),
        option(
            "--record-element",
            help="XML: local name of the record elements, at any depth (default: detected). What lies "
            "outside them is kept in the Parquet metadata, up to 1 MiB; past that it is dropped.",
        ),
        option(
            "--sample-rows",
            callback=_sample_rows,
            help="Rows read to infer types, or 'all' (default: 20000).",
        ),
        option("--zstd-level", type=click.IntRange(1, 22), default=3, show_default=True),
        option("--row-group-rows", type=click.IntRange(1), default=None, help="Most rows per row group."),
        option(
            "--row-group-bytes",
            type=click.IntRange(1),
            default=None,
            help="Most decoded (Arrow) bytes per row group (default 64 MiB).",
        ),
        option(
            "--max-columns",
            type=click.IntRange(1),
            default=None,
            help="Most columns a table may have; a wider one is an error (default 2000; each costs memory).",
        ),
    ]
    for add in reversed(options):
        f = add(f)
    return f


CONVERTER_OPTIONS = (
    "format",
    "delimiter",
    "quote",
    "escape",
    "header",
    "null_values",
    "encoding",
    "record_element",
    "sample_rows",
    "zstd_level",
    "row_group_rows",
    "row_group_bytes",
    "max_columns",
)


def _pop_converter_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Takes the converter's options out of ``opts``, in the core's form."""
    return _core_options({k: opts.pop(k) for k in CONVERTER_OPTIONS if k in opts})


def _core_options(opts: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in opts.items() if v is not None and v is not _UNSET and k != "null_values"}
    if opts.get("null_values"):
        out["null_values"] = list(opts["null_values"])
    if opts.get("sample_rows", _UNSET) is not _UNSET:
        out["sample_rows"] = opts["sample_rows"]
    return out


@click.group(cls=_Main, context_settings={"max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print the version and whether the core is a release build.",
)
def cli() -> None:
    """Ship files dropped into a folder to S3; tabular files become ZSTD Parquet."""


def main() -> None:
    """The console script: ``.env`` fills the environment's gaps, then the commands run. A
    usage error (an unknown flag, a bad value) is one line and exit status 2, as every other
    configuration error. A try-it run (``run --embedded-s3``) takes only its command line:
    ``S3PROC_*`` variables and ``.env`` configure a real service (its watch dir, its
    ``--after-upload delete``), which a run against a server that forgets everything must not touch."""
    args = sys.argv[1:]
    if args[:1] == ["run"] and "--embedded-s3" in args[: args.index("--") if "--" in args else None]:
        for name in [n for n in os.environ if n.startswith("S3PROC_")]:
            del os.environ[name]
    else:
        try:
            load_env()
        except ConfigError as e:
            click.echo(f"s3proc: error: {e}", err=True)
            sys.exit(2)
    try:
        rv = cli.main(standalone_mode=False)
    except NoArgsIsHelpError as e:  # `s3proc` alone, or a group without its command: the help
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:
        # `s3proc ls | head`: the reader has what it wanted. Quiet, as other tools are; stdout
        # goes to /dev/null so that the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except click.UsageError as e:
        hint = f" (see {e.ctx.command_path} --help)" if e.ctx else ""
        click.echo(f"s3proc: error: {e.format_message()}{hint}".replace("\n", " "), err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:  # Ctrl-C, or SIGTERM to `convert`: what it cleans up is cleaned up
        click.echo("Aborted!", err=True)
        sys.stdout.flush()
        # Not the interpreter's exit: a core thread may still wait in a read of the input stream
        # (stdin), and the shutdown would abort on that stream's lock ("Fatal Python error").
        os._exit(128 + _stopped_by[0])
    sys.exit(rv if isinstance(rv, int) else 0)


@cli.command()
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
    click.echo(f"format:     {plan['format']} ({plan['detected']})")
    click.echo(f"encoding:   {plan['encoding']}")
    if "layout" in plan:
        click.echo(f"layout:     {plan['layout']}")
    if "dialect" in plan:
        d = plan["dialect"]
        click.echo(
            f"dialect:    delimiter={d['delimiter']!r} quote={d['quote']!r} escape={d['escape']} "
            f"header={d['header']} null_values={d['null_values']!r}"
        )
    click.echo("columns:")
    width = max((len(n) for n, _ in plan["columns"]), default=0)
    for name, ty in plan["columns"]:
        click.echo(f"  {name:<{width}}  {ty}")


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True))
@converter_options
def convert(input: str, output: str, **opts: Any) -> None:
    """Convert INPUT (CSV/TSV, JSON/NDJSON, XML; compressed or not) to a ZSTD Parquet file OUTPUT
    ('-' for stdin / stdout).

    A file OUTPUT is written beside itself under a hidden name and renamed into place at the end,
    so a failure never destroys what was there. An INPUT that cannot be read twice (stdin, a pipe,
    a FIFO) is read once: a value that widens a column after output went out is then an error.
    """
    core = _core_options(opts)
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: nothing half-written is left
    with _input(input) as (source, name):
        core["name"] = name
        if output == "-":
            result = convert_to(source, sys.stdout.buffer, **core)
        else:
            result = _convert_to_file(source, input, Path(output), core)
    click.echo(
        f"{input}: {result.rows} rows, {len(result.plan['columns'])} columns -> {result.bytes} bytes"
        + (f" ({result.restarts} restarts)" if result.restarts else ""),
        err=True,
    )
    for warning in result.warnings:
        click.echo(f"{input}: warning: {warning}", err=True)


_stopped_by = [signal.SIGINT.value]  # the signal a KeyboardInterrupt stands for


def _interrupt(signum: int, _frame: Any) -> None:
    _stopped_by[0] = signum
    raise KeyboardInterrupt


@contextlib.contextmanager
def _input(given: str) -> Iterator[tuple[Any, str]]:
    """The source to convert and its name in messages and metadata (the name as given, without
    folders: the bytes must not depend on how the path was spelled)."""
    if given == "-":
        yield sys.stdin.buffer, "<stdin>"
        return
    try:
        st = os.stat(given)
    except OSError as e:
        raise click.UsageError(f"cannot read {given}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise click.UsageError(f"{given} is a folder")
    name = os.path.basename(given)
    if stat.S_ISREG(st.st_mode):
        yield given, name  # re-readable: the core opens it again after a late widening
        return
    with open(given, "rb") as f:  # a FIFO, a character device, /dev/stdin: read once
        yield f, name


def _convert_to_file(source: Any, input: str, output: Path, core: dict[str, Any]) -> Any:
    if input != "-" and output.exists() and os.path.samefile(input, output):
        raise click.UsageError(f"{output} is the input itself")
    partial = output.with_name(f".{output.name}.s3proc-partial-{os.getpid()}")
    try:
        with open(partial, "xb") as out:
            result = convert_to(source, out, **core)
            os.fsync(out.fileno())
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


# ---------------------------------------------------------------------- the service
def _size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_size(value)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


def where_options(f: F) -> F:
    """Where files come from and where their state is kept (every service command)."""
    options = [
        option("--watch-dir", type=click.Path(file_okay=False, path_type=Path), help="The folder to watch."),
        option("--state", help="State database (default: <watch-dir>/.s3proc/state.db)."),
        option(
            "--error-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where files that cannot be processed go (default: <watch-dir>/.s3proc/errors).",
        ),
    ]
    for add in reversed(options):
        f = add(f)
    return f


def s3_options(f: F) -> F:
    """Where results go."""
    options = [
        option("--bucket", help="The S3 bucket."),
        option("--prefix", default="", help="Folder in the bucket for every key."),
        option(
            "--key-template",
            default="{prefix}{path}",
            show_default=True,
            help="Object key template: {prefix} {path} {dir} {name} {stem} {ext} {date:%Y/%m/%d}.",
        ),
        option("--endpoint-url", help="An S3-compatible endpoint (default: AWS)."),
        option("--region", help="AWS region (default: the AWS configuration's)."),
        option(
            "--compat/--no-compat",
            default=None,
            help="Send checksums only where S3 requires one, for stores that reject botocore's newer"
            " default headers (default: on for endpoints that are not AWS).",
        ),
        option(
            "--retries", type=click.IntRange(0), default=5, show_default=True, help="Retries per request."
        ),
    ]
    for add in reversed(options):
        f = add(f)
    return f


def _existing_state(cfg: RunConfig, exclusive: bool = False) -> State:
    """The state of a watch dir that s3proc has run on: a mistyped path is an error, not a new,
    empty state."""
    if not Path(cfg.state_location.removeprefix("sqlite://")).exists():
        raise ConfigError(f"no state database at {cfg.state_location} (has s3proc run used it?)")
    return open_state(cfg.state_location, exclusive=exclusive)


def _config(opts: dict[str, Any], **more: Any) -> RunConfig:
    """The configuration of a command that works on a watch dir."""
    if opts.get("watch_dir") is None:
        raise ConfigError("no watch dir: give --watch-dir or S3PROC_WATCH_DIR")
    return RunConfig(
        watch_dir=Path(opts["watch_dir"]),
        bucket=opts.get("bucket") or "",
        prefix=opts.get("prefix") or "",
        key_template=opts.get("key_template") or "{prefix}{path}",
        endpoint_url=opts.get("endpoint_url"),
        region=opts.get("region"),
        state=opts.get("state"),
        error_dir=opts.get("error_dir"),
        compat=opts.get("compat"),
        retries=opts.get("retries", 5),
        **more,
    )


@cli.command()
@where_options
@s3_options
@option(
    "--after-upload",
    default="keep",
    show_default=True,
    help="What to do with a file once uploaded: keep, delete or move:DIR.",
)
@option(
    "--concurrency",
    type=click.IntRange(1),
    default=DEFAULT_CONCURRENCY,
    show_default="cores, at least 4",
    help="Files in flight at once.",
)
@option(
    "--part-size", default="8MiB", show_default=True, callback=_size, help="Multipart part size (min 5MiB)."
)
@option(
    "--upload-concurrency",
    type=click.IntRange(1),
    default=PART_CONCURRENCY,
    show_default=True,
    help="Parts of one file uploaded at once (each holds a part in memory).",
)
@option(
    "--quiet-period",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Seconds a file's size and mtime must be stable.",
)
@option(
    "--rescan-interval",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Seconds between full rescans (events can be missed).",
)
@option("--poll", is_flag=True, help="Poll instead of inotify (network filesystems).")
@option("--ignore", multiple=True, help="Glob of paths to ignore; repeatable.")
@option(
    "--checksum",
    type=click.Choice(["crc32", "crc32c", "sha256", "none"]),
    default="crc32",
    show_default=True,
    help="S3 additional checksum on every part and object.",
)
@option("--sse", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption.")
@option("--sse-kms-key-id", help="KMS key for --sse aws:kms.")
@option("--storage-class", help="S3 storage class (STANDARD_IA, INTELLIGENT_TIERING, …).")
@option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds files in flight get to finish on SIGTERM.",
)
@option(
    "--forget-after",
    type=click.FloatRange(0),
    default=FORGET_AFTER,
    show_default=True,
    help="Seconds after its upload that a file gone from the watch dir (deleted, moved) is "
    "forgotten by the state; what it put in S3 stays known (one row per key, ~300 bytes). "
    "0: never.",
)
@option(
    "--state-sync",
    type=click.Choice(["full", "normal"]),
    default="full",
    show_default=True,
    help="full: state survives power loss; normal: survives crashes only (faster).",
)
@option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto: console on a terminal, JSON lines otherwise.",
)
@option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@option("--once", is_flag=True, help="Process what is there, then exit (0: all uploaded, 1: some failed).")
@option("--embedded-s3", is_flag=True, help="Start an S3 server in this process to try s3proc (./inbox).")
@converter_options
def run(**opts: Any) -> None:
    """Watch a folder and ship every complete file to S3 (tables as Parquet), exactly once."""
    from s3proc.pipeline import Settings
    from s3proc.service import Schedule, Service, limit_malloc_arenas, rebuild_state

    limit_malloc_arenas()  # before any thread starts
    logs.setup(opts.pop("log_format"), opts.pop("log_level"))
    once, embedded = opts.pop("once"), opts.pop("embedded_s3")
    convert = _pop_converter_options(opts)
    server = None
    service: Service | None = None
    if embedded:
        server = _start_embedded(opts, once)
    try:
        svc_opts = {
            k: opts.pop(k)
            for k in (
                "after_upload",
                "concurrency",
                "part_size",
                "upload_concurrency",
                "quiet_period",
                "rescan_interval",
                "poll",
                "checksum",
                "sse",
                "sse_kms_key_id",
                "storage_class",
                "grace",
                "forget_after",
                "state_sync",
            )
        }
        svc_opts["ignore"] = tuple(opts.pop("ignore"))
        cfg = _config(
            opts,
            **svc_opts,
            convert=convert,
            access_key=opts.get("access_key"),
            secret_key=opts.get("secret_key"),
        )
        keys = cfg.check()
        uploader = cfg.uploader(cfg.client())
        if server is not None:
            server.create_bucket(uploader.client, cfg.bucket)
        check_bucket(uploader, keys.scope)  # before any folder or state is made
        cfg.prepare_folders()
        state = open_state(cfg.state_location, exclusive=True, synchronous=cfg.state_sync.upper())
        try:
            state.bind_destination(f"s3://{cfg.bucket}/{keys.scope}")
            if (
                not state.rebuilt()
            ):  # a first start, or a lost state database: what s3proc wrote is not redone
                rebuild_state(state, uploader, keys, cfg.watch_dir)
            settings = Settings(
                root=cfg.watch_dir.resolve(),
                keys=keys,
                error_dir=cfg.error_folder.resolve(),
                after_upload=cfg.after_upload,
                part_size=cfg.part_size,
                convert=cfg.convert,
            )
            schedule = Schedule(
                concurrency=cfg.concurrency,
                quiet_period=cfg.quiet_period,
                rescan_interval=cfg.rescan_interval,
                poll=cfg.poll,
                grace=cfg.grace,
                ignore=cfg.ignore,
                forget_after=cfg.forget_after,
            )
            service = Service(settings, schedule, state, uploader, keys.scope)
            code = service.run(once=once)
            if server is not None and once:
                _print_listing(uploader, keys.scope)
        finally:
            state.close()
    finally:
        if server is not None:
            server.stop()
    # Everything is closed and flushed: the collector's last pass at exit, over every object of
    # botocore and the converter, would free nothing the process's end does not (50 ms).
    gc.freeze()
    if service is not None and service.stuck:
        # Workers still wait for S3 and the interpreter's exit would wait for them (up to the read
        # timeout); what they leave, the next start redoes, as after a kill -9.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


def _start_embedded(opts: dict[str, Any], once: bool) -> Any:
    from s3proc.embedded import ACCESS_KEY, REGION, SECRET_KEY, EmbeddedS3

    try:
        server = EmbeddedS3()
    except RuntimeError as e:
        raise ConfigError(str(e)) from None
    opts["endpoint_url"] = server.endpoint_url
    opts["bucket"] = opts.get("bucket") or "s3proc"
    opts["region"] = opts.get("region") or REGION
    opts["access_key"], opts["secret_key"] = ACCESS_KEY, SECRET_KEY
    if opts.get("watch_dir") is None:
        opts["watch_dir"] = Path("inbox")
        opts["watch_dir"].mkdir(exist_ok=True)
    if not opts.get("state"):
        # The server keeps nothing between runs: neither does its state, a file of its own.
        state = Path(opts["watch_dir"]) / ".s3proc" / "embedded.db"
        for path in (state, state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
            path.unlink(missing_ok=True)
        opts["state"] = str(state)
    click.echo(f"s3proc: embedded S3 at {server.endpoint_url}, bucket {opts['bucket']!r} (in memory)")
    click.echo(f"s3proc: watching {opts['watch_dir']}/ — drop files there")
    if once:
        click.echo("s3proc: what arrived is listed at the end (the server stops with s3proc)")
        return server
    click.echo(
        f"s3proc: list what arrived: AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} "
        f"s3proc ls --endpoint-url {server.endpoint_url} --bucket {opts['bucket']}"
    )
    return server


def _print_listing(uploader: Any, prefix: str) -> None:
    rows = list(uploader.listing(prefix))
    click.echo(f"{len(rows)} object(s) in s3://{uploader.bucket}/{prefix}")
    width = max((len(k) for k, _, _ in rows), default=0)
    for key, size, nrows in rows:
        click.echo(f"  {key:<{width}}  {size:>12,} bytes  {'' if nrows is None else f'{nrows:,} rows'}")


@cli.command()
@s3_options
def ls(**opts: Any) -> None:
    """List the objects under the prefix with their sizes and row counts."""
    cfg = _config({**opts, "watch_dir": Path.cwd()})
    keys = cfg.check()
    uploader = cfg.uploader(cfg.client())
    check_reachable(uploader)
    _print_listing(uploader, keys.scope)


@cli.command()
@where_options
@option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="Recent failures shown.")
def status(as_json: bool, limit: int, **opts: Any) -> None:
    """Counts per status, files in flight, recent failures and skipped archive entries with their
    reasons."""
    cfg = _config({**opts, "watch_dir": opts.get("watch_dir") or (opts.get("state") and Path.cwd())})
    state = _existing_state(cfg)
    try:
        report: dict[str, Any] = {
            "counts": state.counts(),
            "in_flight": [r.path for r in state.recent(PROCESSING, 1000)],
            "failures": [
                {"path": r.path, "error": r.error, "attempts": r.attempts, "time": r.updated_at}
                for r in state.recent(FAILED, limit)
            ],
            "skipped_entries": [{"path": p, "entry": e, "reason": r} for p, e, r in state.skipped(limit)],
        }
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo("  ".join(f"{k}: {v}" for k, v in report["counts"].items()))
    shown = logs.printable  # a newline in a name must not start a line of its own
    # A service claims files a batch ahead (one scan for writers per batch): `processing` counts
    # those still in its queue too.
    for path in report["in_flight"]:
        click.echo(f"in flight or next: {shown(path)}")
    for f in report["failures"]:
        click.echo(f"failed: {shown(f['path'])}: {shown(f['error'])}")
    for k in report["skipped_entries"]:
        click.echo(f"skipped: {shown(k['path'])} entry {shown(k['entry'])}: {shown(k['reason'])}")


@cli.command()
@where_options
def retry(**opts: Any) -> None:
    """Put failed files back in the queue (moved back from the error folder)."""
    from s3proc.pipeline import restore_failed

    if opts.get("watch_dir") is None:
        raise ConfigError("no watch dir: give --watch-dir or S3PROC_WATCH_DIR (failed files go back there)")
    cfg = _config(opts)
    state = _existing_state(cfg, exclusive=True)
    try:
        back, kept, missing, stuck = restore_failed(state, cfg.watch_dir, cfg.error_folder)
    finally:
        state.close()
    click.echo(
        f"{back} file(s) queued again"
        + (f"; {kept} left in the error folder (path taken)" if kept else "")
        + (
            f"; {missing} not found in {cfg.error_folder} nor in the watch dir (left failed)"
            if missing
            else ""
        )
        + (f"; {stuck} could not be moved back (left failed)" if stuck else "")
    )


@cli.command("rebuild-state")
@where_options
@s3_options
def rebuild_state_command(**opts: Any) -> None:
    """Record in the state every object s3proc wrote under the prefix (after losing the state
    database; `s3proc run` does it by itself when it finds none)."""
    from s3proc.service import rebuild_state

    cfg = _config(opts)
    keys = cfg.check()
    uploader = cfg.uploader(cfg.client())
    check_bucket(uploader, keys.scope)
    state = open_state(cfg.state_location, exclusive=True)
    try:
        # As run does: objects of another destination recorded here would pass for this one's.
        state.bind_destination(f"s3://{cfg.bucket}/{keys.scope}")
        n = rebuild_state(state, uploader, keys, cfg.watch_dir)
    finally:
        state.close()
    click.echo(f"{n} object(s) recorded")


@cli.command()
@s3_options
@option("--watch-dir", type=click.Path(file_okay=False, path_type=Path), help="The service's folder.")
@option("--state", help="Its state database (default: <watch-dir>/.s3proc/state.db).")
@option("--dry-run", is_flag=True, help="Only list them.")
def cleanup(dry_run: bool, **opts: Any) -> None:
    """List and abort incomplete multipart uploads under the prefix.

    Given the service's watch dir or state, it refuses to run beside a running service, and
    keeps the uploads that state will resume at its next start."""
    located = bool(opts.get("watch_dir") or opts.get("state"))
    cfg = _config({**opts, "watch_dir": opts.get("watch_dir") or Path.cwd()})
    keys = cfg.check()
    uploader = cfg.uploader(cfg.client())
    check_reachable(uploader)
    kept: set[str] = set()
    if located:
        state = _existing_state(cfg, exclusive=True)  # fails while a service runs
        try:
            kept = {o.upload_id for o in state.uploads_in_flight() if o.upload_id}
        finally:
            state.close()
    n = 0
    for key, upload_id, initiated in list(uploader.incomplete(keys.scope)):
        if upload_id in kept:
            click.echo(f"keeping {key} (upload {upload_id[:16]}…): the state resumes it")
            continue
        n += 1
        click.echo(
            f"{'would abort' if dry_run else 'aborting'} {key} (upload {upload_id[:16]}…, {initiated})"
        )
        if not dry_run:
            uploader.abort(key, upload_id)
    click.echo(f"{n} incomplete upload(s) {'found' if dry_run else 'aborted'}")
