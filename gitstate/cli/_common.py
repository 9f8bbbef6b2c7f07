"""Shared pieces of the CLI: the root group, store opening, output (JSON, colour, pager, times).

What belongs here: what every command module uses (the root group and its options, opening a store or its
directory, printing JSON and lines, colour and pager rules, git-style argument handling). What does not: a
command's own formatting (its module), anything that reads or writes a store (the library).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
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
    "DEFAULT_PAGER",
    "Context",
    "GitArgsCommand",
    "age_text",
    "colour_enabled",
    "emit_json",
    "human_time",
    "key_param",
    "load_all_commands",
    "main",
    "open_dir",
    "open_store",
    "output",
    "pager_command",
    "parse_cli_value",
    "parse_json_value",
    "pass_ctx",
    "require_store",
    "stdout_is_terminal",
    "to_jsonable",
]

logger = logging.getLogger("gitstate.cli")


class Context:
    """Options of the root command, passed to every subcommand."""

    def __init__(self, directory: str | None, *, no_pager: bool = False) -> None:
        self.directory = directory
        self.no_pager = no_pager

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
    **dict.fromkeys(("setup-git", "merge-driver", "textconv"), "gitsetup"),
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
@click.option("--no-pager", is_flag=True, help="Do not pipe long output into a pager ($GITSTATE_PAGER, $PAGER, less).")
@click.version_option(__version__, prog_name="gitstate")  # not package metadata: ~100 ms to look up
@click.pass_context
def main(ctx: click.Context, directory: str | None, verbose: int, no_pager: bool) -> None:
    """gitstate: a versioned state store whose directory is a Git repository.

    Revisions are taken as git takes them: ids and prefixes, HEAD~N, snapshot names, times ("2h ago",
    "yesterday"), and ranges A..B for log and diff. On a terminal, long output goes through a pager
    ($GITSTATE_PAGER, else $PAGER, else "less -FRX"; --no-pager to skip it) and is coloured unless NO_COLOR is set.

    \b
    Examples:
      gitstate init
      gitstate set state.json services.slack true
      gitstate log --oneline -5
      gitstate diff yesterday..now -- state.json
      gitstate restore HEAD~3 state.json

    \b
    Shell completion (bash; for zsh or fish use zsh_source or fish_source):
      eval "$(_GITSTATE_COMPLETE=bash_source gitstate)"     # in ~/.bashrc
    """
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, format="%(name)s: %(message)s")
    ctx.obj = Context(directory, no_pager=no_pager)


def require_store(path: Path) -> None:
    """Raise :class:`StoreNotFound`, with the command that makes one, unless ``path`` is a store."""
    if not (path / ".git").is_dir():
        raise StoreNotFound(f"no gitstate store at {path.absolute()}; create one with 'gitstate -C {path} init'")


@contextmanager
def open_store(ctx: Context, *, create: bool = False, **options: Any) -> Iterator[Any]:
    """Open the store for one command (manual durability: the command flushes what it writes). Commands are
    typed by a person: they write as actor ``human``, with the user's git identity (user.name/user.email, as
    git would sign a commit here) as author when one is configured."""
    from ..identity import git_identity
    from ..store import open as open_

    if not create:
        require_store(ctx.path)
    options.setdefault("actor", "human")
    if "author" not in options:
        identity = git_identity(ctx.path)
        if identity is not None:
            options["author"] = identity
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


#: The pager when neither ``$GITSTATE_PAGER`` nor ``$PAGER`` is set (git's choice: quit if one screen, keep
#: colours, leave the text on the screen).
DEFAULT_PAGER = "less -FRX"


def stdout_is_terminal() -> bool:
    """True when stdout is a terminal (colour and the pager are only for terminals, as in git)."""
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


def colour_enabled() -> bool:
    """Colour on: stdout is a terminal and ``$NO_COLOR`` is unset or empty (https://no-color.org)."""
    return stdout_is_terminal() and not os.environ.get("NO_COLOR")


def pager_command(env: Mapping[str, str], *, terminal: bool, no_pager: bool) -> str | None:
    """The pager to run, or None: only on a terminal and without ``--no-pager``; ``$GITSTATE_PAGER``, else
    ``$PAGER``, else :data:`DEFAULT_PAGER`; an empty value or ``cat`` means none.

    Example:
        >>> pager_command({"PAGER": "more"}, terminal=True, no_pager=False)
        'more'
        >>> pager_command({"PAGER": "more"}, terminal=False, no_pager=False) is None
        True
    """
    if not terminal or no_pager:
        return None
    for name in ("GITSTATE_PAGER", "PAGER"):
        if name in env:
            value = env[name].strip()
            return None if value in ("", "cat") else value
    return DEFAULT_PAGER


def _no_pager_asked() -> bool:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return bool(obj and obj.no_pager)


def _page(command: str, text: str) -> bool:
    """Pipe ``text`` into the pager; False when the pager could not be started (then the caller prints)."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)  # the user's pager command line
    except OSError:
        return False
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode("utf-8", "replace"))
        proc.stdin.close()
    except BrokenPipeError:  # the user quit the pager early
        pass
    return proc.wait() != 127  # 127: the shell found no such command


def output(lines: list[str]) -> None:
    """Print lines; through the pager on a terminal (see :func:`pager_command`)."""
    text = "\n".join(lines)
    if not text:
        return
    pager = pager_command(os.environ, terminal=stdout_is_terminal(), no_pager=_no_pager_asked())
    if pager is not None and _page(pager, text + "\n"):
        return
    click.echo(text, color=True if colour_enabled() else None)


_DASH_NUMBER = re.compile(r"^-(\d+)$")


class GitArgsCommand(click.Command):
    """A command that takes arguments as git does: what follows ``--`` is documents (kept apart in
    ``ctx.meta["gitstate.docs"]``; None when there is no ``--``), and ``-N`` means ``-n N``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Split off the documents after ``--`` and rewrite ``-N``, then parse as click does."""
        docs: list[str] | None = None
        if "--" in args:
            i = args.index("--")
            args, docs = args[:i], args[i + 1 :]
        ctx.meta["gitstate.docs"] = docs
        rewritten: list[str] = []
        for arg in args:
            m = _DASH_NUMBER.match(arg)
            rewritten += ["-n", m.group(1)] if m else [arg]
        return super().parse_args(ctx, rewritten)


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
        return parse_json_value(text)
    except ValueError:
        return text


def parse_json_value(text: str) -> Any:
    """``text`` as JSON (Python's reading of it), or :class:`ValueError`."""
    return json.loads(text)


JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]
json_option: JsonOption = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
