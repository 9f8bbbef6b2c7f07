"""Core commands: ``init``, ``get``, ``set``, ``delete``, ``docs``.

What belongs here: reading and writing documents and keys from the command line, and what a VALUE argument
means. What does not: history (:mod:`gitstate.cli.history`), output rules (:mod:`gitstate.cli._common`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from ..codecs import codec_for
from ._common import (
    Context,
    emit_json,
    json_option,
    key_param,
    main,
    open_store,
    parse_json_value,
    pass_ctx,
    to_jsonable,
)

__all__ = ["delete_cmd", "docs_cmd", "get_cmd", "init_cmd", "set_cmd", "value_from_cli"]

logger = logging.getLogger("gitstate.cli")


@main.command("init")
@click.option(
    "--setup-git",
    "setup_git",
    is_flag=True,
    help="Also make plain git merge and diff the documents key by key (what 'gitstate setup-git' does).",
)
@pass_ctx
def init_cmd(ctx: Context, setup_git: bool) -> None:
    """Make DIR a state store (creates the directory and repository if needed).

    Files already in DIR are committed as the first state; files that do not parse are left as they are and
    wait in quarantine (see 'gitstate quarantine').

    \b
    Examples:
      gitstate -C ~/.config/my-agent init
      gitstate -C ~/.config/my-agent init --setup-git
    """
    existed = (ctx.path / ".git").is_dir()
    with open_store(ctx, create=True) as store:
        head = store.head
        waiting = store.quarantined()
    what = "already a store" if existed else "initialized store"
    click.echo(f"{what} in {ctx.path.absolute()}" + (f" (HEAD {head[:8]})" if head else ""))
    if setup_git:
        from .gitsetup import report_setup_git

        report_setup_git(ctx.path)
    for entry in waiting:
        click.echo(f"quarantined {entry.where}: {entry.error}")
    if waiting:
        click.echo(
            f"{len(waiting)} file(s) did not parse and were not committed; they wait in quarantine, untouched: "
            "fix them (the next save is committed) or see 'gitstate quarantine'"
        )


@main.command("get")
@click.argument("doc")
@click.argument("key", required=False, callback=key_param)
@pass_ctx
def get_cmd(ctx: Context, doc: str, key: tuple[str, ...] | None) -> None:
    """Print the value of KEY in DOC (the whole document without KEY) as JSON.

    Text documents print as they are.

    \b
    Examples:
      gitstate get state.json services.slack
      gitstate get memory/current_work.yaml
    """
    with open_store(ctx) as store:
        value = store.get(doc, key)
    if isinstance(value, str) and key is None and not codec_for(doc).structured:
        click.echo(value, nl=not value.endswith("\n"))
    else:
        emit_json(value)


def _looks_like_json(text: str) -> bool:
    """A value meant as JSON, by its look: an object, array or quoted string (``{...}``, ``[...]``, ``"..."``)."""
    t = text.strip()
    return len(t) >= 2 and t[0] in '{["'  # an object, array or string, whole or cut short


def value_from_cli(text: str, *, as_json: bool, as_string: bool) -> Any:
    """The value a ``set`` VALUE argument means: JSON with ``--json`` (a usage error when it does not parse),
    the text itself with ``--string``, else JSON when it parses and the text otherwise, with a note on stderr when
    the text looks like JSON but is not (``{'a': 1}``)."""
    if as_string:
        return text
    try:
        return parse_json_value(text)
    except ValueError as e:
        if as_json:
            raise click.BadParameter(f"{text!r} is not valid JSON: {e}", param_hint="VALUE") from None
        if _looks_like_json(text):
            click.echo(
                f"gitstate: note: {text!r} looks like JSON but did not parse ({e}); stored as a string "
                "(--json to insist on JSON, --string to say it is a string)",
                err=True,
            )
        return text


@main.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("doc")
@click.argument("key", callback=lambda ctx, param, value: key_param(ctx, param, None if value == "." else value))
@click.argument("value")
@click.option("-m", "--message", help="Commit message subject.")
@click.option("--json", "as_json", is_flag=True, help="VALUE must be JSON (an error if it does not parse).")
@click.option("--string", "as_string", is_flag=True, help="VALUE is a string, even if it parses as JSON (42, true).")
@pass_ctx
def set_cmd(
    ctx: Context,
    doc: str,
    key: tuple[str, ...] | None,
    value: str,
    message: str | None,
    as_json: bool,
    as_string: bool,
) -> None:
    """Set KEY in DOC to VALUE and commit. VALUE is parsed as JSON, else taken as a string.

    Use '.' as KEY to replace the whole document. Negative numbers need no '--'. A VALUE that looks like JSON
    but does not parse is stored as a string, with a note on stderr: say --json or --string to be sure.

    \b
    Examples:
      gitstate set state.json services.slack true
      gitstate set state.json owner alice
      gitstate set state.json retries -3
      gitstate set --string state.json version 42
      gitstate set --json tasks/t1.json . '{"status": "open"}'
    """
    if as_json and as_string:
        raise click.UsageError("--json and --string exclude each other")
    parsed = value_from_cli(value, as_json=as_json, as_string=as_string)
    with open_store(ctx, create=True) as store:
        store.set(doc, key, parsed)
        commit = store.flush(message)
    click.echo(f"{commit[:8]} {doc}" if commit else "no change", err=commit is None)


@main.command("delete")
@click.argument("doc")
@click.argument("key", required=False, callback=key_param)
@click.option("-m", "--message", help="Commit message subject.")
@pass_ctx
def delete_cmd(ctx: Context, doc: str, key: tuple[str, ...] | None, message: str | None) -> None:
    """Delete KEY from DOC, or the whole document without KEY, and commit.

    \b
    Example:
      gitstate delete state.json meetings.old
    """
    with open_store(ctx) as store:
        store.delete(doc, key)
        commit = store.flush(message)
    click.echo(f"{commit[:8]} {doc}" if commit else "no change")


@main.command("docs")
@click.argument("prefix", required=False, default="")
@json_option
@pass_ctx
def docs_cmd(ctx: Context, prefix: str, as_json: bool) -> None:
    """List the documents in the store (optionally under PREFIX).

    \b
    Example:
      gitstate docs tasks/
    """
    with open_store(ctx) as store:
        docs = store.docs(prefix)
    if as_json:
        click.echo(json.dumps(to_jsonable(docs)))
    else:
        for d in docs:
            click.echo(d)
