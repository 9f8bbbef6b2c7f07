"""Remote commands: ``remote add|list|remove``, ``push``, ``pull``, ``sync``, ``clone``.

Long transfers show progress on stderr when it is a terminal. URLs are printed without credentials.

What belongs here: the commands' options, putting ``--username``/``--password-stdin`` into the URL the library is
given, the progress printer, and describing what a push, pull or clone did. What does not: talking to remotes,
merging, storing and redacting credentials (:mod:`gitstate.remote`, reached through the Store,
:class:`gitstate.direct.StoreDirectory` and :func:`gitstate.store.clone`), output rules
(:mod:`gitstate.cli._common`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import click

from ..errors import GitStateError
from ._common import Context, emit_json, json_option, main, open_dir, open_store, pass_ctx

__all__ = ["clone_cmd", "pull_cmd", "push_cmd", "remote_group", "sync_cmd"]


def _remote() -> Any:
    """gitstate.remote, imported on first use: it pulls in dulwich's network clients, which commands that do
    not talk to a remote should not pay for at start-up."""
    from .. import remote

    return remote


logger = logging.getLogger("gitstate.cli")

_RULES = click.Choice(["ours", "theirs", "fail"])  # gitstate.remote.MERGE_RULES (imported lazily)
on_conflict_option = click.option(
    "--on-conflict",
    type=_RULES,
    default="ours",
    show_default=True,
    help="Keys both sides changed: keep ours (record theirs), take theirs, or fail.",
)


def _progress_printer() -> Callable[[str], None] | None:
    """Progress text to stderr, only on a terminal (scripts and pipes get none)."""
    if not sys.stderr.isatty():
        return None

    def show(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    return show


def _with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with user info added (the library splits it off again and keeps it out of .git/config)."""
    if username is None and password is None:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise click.UsageError("--username/--password-stdin only apply to http(s) URLs")
    host = parts.netloc.rpartition("@")[2]
    user = quote(username or unquote(parts.username or "") or _remote().TOKEN_USERNAME, safe="")
    info = user + (f":{quote(password, safe='')}" if password is not None else "")
    return urlunsplit((parts.scheme, f"{info}@{host}", parts.path, parts.query, parts.fragment))


@main.group("remote")
def remote_group() -> None:
    """Manage the remotes a store pushes to and pulls from.

    \b
    Examples:
      gitstate remote add origin git@github.com:me/agent-state.git
      gitstate remote add backup /mnt/backup/state.git
      gitstate remote list
    """


@remote_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--username", help="User name for an http(s) remote.")
@click.option("--password-stdin", is_flag=True, help="Read the password or token of an http(s) remote from stdin.")
@pass_ctx
def remote_add_cmd(ctx: Context, name: str, url: str, username: str | None, password_stdin: bool) -> None:
    """Add remote NAME at URL (or point an existing NAME at URL).

    URL is a path, file://, git://, http(s):// or ssh:// URL, or user@host:path. Credentials in an http(s)
    URL (or given with --username/--password-stdin) are kept out of .git/config, in
    .git/gitstate/credentials.json (mode 0600); GITSTATE_REMOTE_<NAME>_USERNAME / _PASSWORD / _TOKEN in the
    environment override them.

    \b
    Examples:
      gitstate remote add origin https://git.example.com/me/state.git --username me --password-stdin
      gitstate remote add origin ssh://git@git.example.com/me/state.git
    """
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with open_store(ctx) as store:
        store.remote_add(name, _with_credentials(url, username, password))
        shown = _url_of(store, name)
    click.echo(f"remote {name} -> {shown}")


@remote_group.command("list")
@json_option
@pass_ctx
def remote_list_cmd(ctx: Context, as_json: bool) -> None:
    """List the remotes and their URLs (never with credentials).

    \b
    Example:
      gitstate remote list
    """
    with open_dir(ctx) as d:
        remotes = d.remotes()
    if as_json:
        emit_json(remotes)
        return
    for name, url in sorted(remotes.items()):
        click.echo(f"{name}\t{url}")


@remote_group.command("remove")
@click.argument("name")
@pass_ctx
def remote_remove_cmd(ctx: Context, name: str) -> None:
    """Remove remote NAME (its configuration, stored credentials and tracking refs).

    \b
    Example:
      gitstate remote remove backup
    """
    with open_dir(ctx) as d:
        d.remote_remove(name)
    click.echo(f"removed remote {name}")


def _url_of(store: Any, name: str) -> str:
    try:
        return str(store.remotes().get(name, "?"))
    except GitStateError:
        return "?"


@main.command("push")
@click.argument("remote", default="origin")
@json_option
@pass_ctx
def push_cmd(ctx: Context, remote: str, as_json: bool) -> None:
    """Push the store's history to REMOTE (default: origin). Never forced.

    If the remote has commits this store lacks, the push is rejected: run 'gitstate sync'.

    \b
    Example:
      gitstate push origin
    """
    with open_store(ctx) as store, _remote().report_progress(_progress_printer()):
        pushed = store.push(remote)
        head = store.head
        url = _url_of(store, remote)
    if as_json:
        emit_json({"remote": remote, "url": url, "pushed": pushed, "head": head})
    elif pushed:
        click.echo(f"pushed {pushed[:8]} to {remote} ({url})")
    else:
        click.echo(f"{remote} is up to date" + (f" ({head[:8]})" if head else " (nothing to push)"))


def _pull(ctx: Context, remote: str, on_conflict: str, *, then_push: bool, as_json: bool) -> dict[str, Any]:
    """``pull`` (and with ``then_push``, ``sync``): run it, print what happened, and return that."""
    with open_store(ctx) as store:
        result = _pull_store(store, remote, on_conflict, then_push=then_push)
    if as_json:
        emit_json(result)
    else:
        _print_pull(result)
    return result


def _pull_store(store: Any, remote: str, on_conflict: str, *, then_push: bool) -> dict[str, Any]:
    """Run pull (and push) and describe what happened for printing."""
    seen: list[Any] = []
    off = store.on("external_change", lambda e: seen.append(e) if e.source == "merge" else None)
    try:
        with _remote().report_progress(_progress_printer()):
            store.flush()
            before = store.head
            after = store.pull(remote, on_conflict=on_conflict)
            # A fast-forward lands exactly on the fetched commit; a merge makes a new one.
            fetched = store.remote_tracking(remote)
            kind = "none" if after == before else "fast-forward" if after == fetched else "merge"
            pushed = store.push(remote) if then_push else None
    finally:
        off()
    conflicts = [c for e in seen for c in e.overwritten]
    changes = [c for e in seen for c in e.changes]
    return {
        "remote": remote,
        "kind": kind,
        "head": after,
        "previous": before,
        "pushed": pushed,
        "conflicts": conflicts,
        "changes": len(changes),
        "rule": on_conflict,
    }


def _print_pull(result: dict[str, Any]) -> None:
    kind, remote = result["kind"], result["remote"]
    head = (result["head"] or "")[:8]
    if kind == "none":
        click.echo(f"already up to date with {remote}")
    elif kind == "fast-forward":
        click.echo(f"fast-forward {(result['previous'] or '(empty)')[:8]}..{head} from {remote}")
    else:
        n = len(result["conflicts"])
        click.echo(
            f"merged {remote} as {head}" + (f", {n} conflict(s) resolved by rule '{result['rule']}':" if n else "")
        )
        for c in result["conflicts"]:
            click.echo(f"  {c.describe()}" if hasattr(c, "describe") else f"  {c}")
    if result.get("pushed"):
        click.echo(f"pushed {result['pushed'][:8]} to {remote}")


@main.command("pull")
@click.argument("remote", default="origin")
@on_conflict_option
@json_option
@pass_ctx
def pull_cmd(ctx: Context, remote: str, on_conflict: str, as_json: bool) -> None:
    """Fetch REMOTE and merge its changes: a fast-forward when possible, else a merge commit whose documents
    are merged key by key.

    \b
    Examples:
      gitstate pull
      gitstate pull origin --on-conflict theirs
    """
    _pull(ctx, remote, on_conflict, then_push=False, as_json=as_json)


@main.command("sync")
@click.argument("remote", default="origin")
@on_conflict_option
@json_option
@pass_ctx
def sync_cmd(ctx: Context, remote: str, on_conflict: str, as_json: bool) -> None:
    """Pull from REMOTE, then push to it: afterwards both hold the same history.

    \b
    Example:
      gitstate sync
    """
    result = _pull(ctx, remote, on_conflict, then_push=True, as_json=as_json)
    if not as_json and not result["pushed"]:
        click.echo(f"{remote} is up to date")


@main.command("clone")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--allow-empty", is_flag=True, help="Clone a remote that has no branches yet (gives an empty store with origin)."
)
@click.option(
    "--setup-git",
    "setup_git",
    is_flag=True,
    help="Also make plain git merge and diff the documents key by key (what 'gitstate setup-git' does).",
)
@json_option
def clone_cmd(url: str, directory: Path, allow_empty: bool, setup_git: bool, as_json: bool) -> None:
    """Make DIRECTORY a store from the remote at URL (remote 'origin').

    A remote with no branches is an error (check the URL) unless --allow-empty is given.

    \b
    Examples:
      gitstate clone git://backup.lan/state.git ~/.local/state/agent
      gitstate clone https://me:TOKEN@git.example.com/me/state.git state
      gitstate clone --allow-empty git://backup.lan/new.git state
      gitstate clone --setup-git /srv/state.git state   # then plain 'git pull' merges key by key
    """
    from ..store import clone

    with _remote().report_progress(_progress_printer()):
        store = clone(url, directory, allow_empty=allow_empty, durability="manual", handle_signals=False)
    try:
        head, docs = store.head, store.docs()
    finally:
        store.close()
    shown = _remote().redact_url(url)
    if as_json:
        emit_json({"url": shown, "path": str(directory.absolute()), "head": head, "docs": len(docs)})
    else:
        click.echo(
            f"cloned {shown} into {directory}"
            + (f" ({head[:8]}, {len(docs)} document(s))" if head else " (empty remote: an empty store with origin set)")
        )
    if setup_git:
        from .gitsetup import report_setup_git

        report_setup_git(directory, quiet=as_json)
