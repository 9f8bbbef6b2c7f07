"""Shared pieces of the CLI: the root group, store opening, output (JSON, colour, pager, times)."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..errors import GitStateError, StoreNotFound

if TYPE_CHECKING:
    from ..direct import StoreDirectory

__all__ = [
    "COMMAND_MODULES",
    "Context",
    "age_text",
    "emit_json",
    "human_time",
    "key_param",
    "load_all_commands",
    "main",
    "open_dir",
    "open_store",
    "output",
    "pass_ctx",
    "require_store",
    "to_jsonable",
]

logger = logging.getLogger("gitstate.cli")


class Context:
    """Options of the root command, passed to every subcommand."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory

    @property
    def path(self) -> Path:
        """The store directory: ``-C DIR``, else ``$GITSTATE_DIR``, else the current directory."""
        return Path(self.directory or os.environ.get("GITSTATE_DIR") or ".").expanduser()


pass_ctx = click.make_pass_decorator(Context)


# Which module of this package defines each top-level command. A command's module is imported only when that
# command runs (or when help lists every command), so `gitstate log` does not load the watcher, the remote code
# or click's definitions of twenty other commands. tests/test_cli.py checks this table against the modules.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("init", "get", "set", "delete", "docs"), "core"),
    **dict.fromkeys(("log", "show", "diff", "restore", "undo", "snapshot", "snapshots", "status"), "history"),
    **dict.fromkeys(("watch", "hooks"), "watch"),
    **dict.fromkeys(("remote", "push", "pull", "sync", "clone"), "remote"),
    **dict.fromkeys(("gc", "doctor"), "maintenance"),
    "migrate": "migrate_cmd",
    "forget": "retention",
    "quarantine": "quarantine",
    "ui": "ui",
}


def load_all_commands() -> None:
    """Import every command module (for help, documentation checks and shell completion)."""
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(f"{__package__}.{module}")


class _Group(click.Group):
    """The root group: loads a command's module on first use, and turns library errors into one line on stderr
    and exit 1 (no traceback)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GitStateError as e:
            click.echo(f"gitstate: error: {e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("gitstate: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `gitstate log | head`
            sys.stderr.close()
            ctx.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-C",
    "directory",
    metavar="DIR",
    help="The store directory (default: $GITSTATE_DIR, else the current directory).",
)
@click.option("-v", "--verbose", count=True, help="Log what happens (-vv for debug).")
@click.version_option(__version__, prog_name="gitstate")  # not package metadata: ~100 ms to look up
@click.pass_context
def main(ctx: click.Context, directory: str | None, verbose: int) -> None:
    """gitstate: a versioned state store whose directory is a Git repository.

    \b
    Examples:
      gitstate init
      gitstate set state.json services.slack true
      gitstate log --key services.slack
      gitstate restore HEAD~3 state.json
    """
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, format="%(name)s: %(message)s")
    ctx.obj = Context(directory)


def require_store(path: Path) -> None:
    """Raise :class:`StoreNotFound`, with the command that makes one, unless ``path`` is a store."""
    if not (path / ".git").is_dir():
        raise StoreNotFound(f"no gitstate store at {path.absolute()}; create one with 'gitstate -C {path} init'")


@contextmanager
def open_store(ctx: Context, *, create: bool = False, **options: Any) -> Iterator[Any]:
    """Open the store for one command (manual durability: the command flushes what it writes)."""
    from ..store import open as open_

    if not create:
        require_store(ctx.path)
    options.setdefault("durability", "manual")
    options.setdefault("handle_signals", False)
    store = open_(ctx.path, create=create, **options)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_dir(ctx: Context) -> Iterator[StoreDirectory]:
    """The store's directory (:func:`gitstate.direct.open_directory`), for commands that only read it or manage
    it (no recovery, nothing committed: opening a store would commit edits found on disk)."""
    require_store(ctx.path)
    from ..direct import open_directory

    with open_directory(ctx.path) as d:
        yield d


def key_param(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """Callback of a KEY argument or ``--key`` option: the dotted key as parts (None when not given)."""
    if value is None:
        return None
    if "" in value.split("."):
        raise click.BadParameter(
            f"{value!r} has an empty part: a key is names separated by single dots, as in services.slack or "
            "tasks.3.status"
        )
    return tuple(value.split("."))


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Make library values (dataclasses, dates, bytes, sentinels) printable as JSON."""
    t = type(value)
    if t in _PLAIN:  # the common cases first: `log --json` converts ~200,000 values for 10,000 commits
        return value
    if t is dict:
        return {k if type(k) is str else str(k): to_jsonable(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [to_jsonable(v) for v in value]
    import dataclasses

    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"bytes": len(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _has_non_finite(value: Any) -> bool:
    """True if a float NaN or infinity is anywhere in ``value`` (a :func:`to_jsonable` result)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                return True
        elif t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
    return False


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout.

    orjson writes it (``log --json`` of 10,000 commits: the standard library's indenting encoder is pure Python);
    the standard library takes over for what orjson cannot write the same way: integers beyond 64 bits, and NaN
    and infinities, which orjson would turn into ``null``.
    """
    import orjson

    data = to_jsonable(value)
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:
        text = None
    if text is None or ("null" in text and _has_non_finite(data)):
        text = json.dumps(data, indent=2, ensure_ascii=False)
    click.echo(text)


def output(lines: list[str]) -> None:
    """Print lines; through a pager when on a terminal and longer than the screen."""
    text = "\n".join(lines)
    if sys.stdout.isatty() and len(lines) > max(10, os.get_terminal_size().lines - 2):
        click.echo_via_pager(text + "\n")
        return
    if text:
        click.echo(text)


def style(text: str, **kwargs: Any) -> str:
    """Colour only on a terminal (click strips ANSI codes when stdout is not one)."""
    return click.style(text, **kwargs)


def human_time(when: _dt.datetime, now: _dt.datetime | None = None) -> str:
    """``3 minutes ago`` / ``2 days ago`` / the date for older times."""
    now = now or _dt.datetime.now(tz=when.tzinfo or _dt.UTC)
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return when.isoformat(timespec="seconds")
    if seconds >= AGE_TEXT_LIMIT_S:
        return when.strftime("%Y-%m-%d %H:%M")
    return age_text(seconds)


#: Ages from this many seconds on print as dates (:func:`human_time`): 31 days.
AGE_TEXT_LIMIT_S = 31 * 86400


def age_text(seconds: int) -> str:
    """``just now`` / ``42 seconds ago`` / ``3 minutes ago`` / ``5 hours ago`` / ``2 days ago`` for an age from 0
    to :data:`AGE_TEXT_LIMIT_S` seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now" if seconds < 5 else f"{seconds} seconds ago"


def parse_cli_value(text: str) -> Any:
    """A VALUE argument: JSON when it parses, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]
json_option: JsonOption = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
