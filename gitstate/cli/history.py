"""History commands: ``log``, ``show``, ``diff``, ``restore``, ``undo``, ``snapshot``, ``snapshots``, ``status``.

Read-only commands (``log``, ``show``, ``diff``, ``snapshots``, ``status``, ``restore --dry-run``) open the
store's directory (:func:`gitstate.direct.open_directory`) instead of a :class:`~gitstate.store.Store`: opening a
store commits edits found on disk, and ``status`` exists to show those edits before anything commits them.
Commands that write open the store.

What belongs here: the history commands' arguments (revisions before ``--``, documents after), their text and
JSON output (log lines, ``--stat``, coloured diffs, status lines). What does not: reading the history
(:mod:`gitstate.history` through :class:`gitstate.direct.StoreDirectory` or the Store), the graph columns of
``log --graph`` (:mod:`gitstate.cli.graph`), getting log lines out (:mod:`gitstate.cli.stream`), output rules
shared by every command (:mod:`gitstate.cli._common`).

Library modules are imported inside the commands so that ``gitstate --help`` and ``gitstate status`` start fast.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    AGE_TEXT_LIMIT_S,
    Context,
    GitArgsCommand,
    age_text,
    colour_enabled,
    emit_json,
    human_time,
    json_option,
    key_param,
    main,
    open_dir,
    open_store,
    output,
    pass_ctx,
)

if TYPE_CHECKING:
    from ..direct import StoreDirectory
    from ..docdiff import Change
    from ..history import Commit

__all__ = [
    "diff_cmd",
    "log_cmd",
    "restore_cmd",
    "show_cmd",
    "snapshot_cmd",
    "snapshots_cmd",
    "status_cmd",
    "undo_cmd",
]

logger = logging.getLogger("gitstate.cli")

_ACTOR_COLOURS = {"library": "blue", "human": "green", "restore": "magenta", "merge": "cyan", "migration": "red"}


def _paint(text: str, on: bool, **kwargs: Any) -> str:
    return click.style(text, **kwargs) if on else text


def _short_author(author: str) -> str:
    return author.split(" <", 1)[0]


def _fmt_value(value: Any) -> str:
    from ..docdiff import format_value

    return format_value(value, max_chars=120)


def _diff_line(line: str, colour: bool) -> str:
    """A line of a unified diff, coloured: added green, removed red, hunk headers cyan."""
    fg = "green" if line[:1] == "+" else "red" if line[:1] == "-" else "cyan" if line[:2] == "@@" else None
    return _paint(line, colour, fg=fg) if fg else line


def _change_lines(
    changes: list[Change], *, colour: bool, indent: str = "  ", with_doc: bool = True, text_diffs: bool = True
) -> list[str]:
    """Human lines for structured changes: ``~ key: old -> new``, ``+ key: new``, ``- key: old``; text documents
    as unified diffs."""
    from ..docdiff import MISSING, diff_text, format_key

    lines: list[str] = []
    current_doc: str | None = None
    for c in changes:
        if with_doc and c.doc != current_doc:
            current_doc = c.doc
            lines.append(_paint(c.doc, colour, bold=True))
        if not c.key and (isinstance(c.old, str) or isinstance(c.new, str)) and text_diffs:
            old = None if c.old is MISSING else c.old if isinstance(c.old, str) else _fmt_value(c.old)
            new = None if c.new is MISSING else c.new if isinstance(c.new, str) else _fmt_value(c.new)
            lines += [indent + _diff_line(ln, colour) for ln in diff_text(old, new, doc=c.doc).splitlines()]
            continue
        key = format_key(c.key) or "(document)"
        if c.op == "add":
            lines.append(indent + _paint(f"+ {key}: {_fmt_value(c.new)}", colour, fg="green"))
        elif c.op == "remove":
            lines.append(indent + _paint(f"- {key}: {_fmt_value(c.old)}", colour, fg="red"))
        else:
            lines.append(indent + _paint(f"~ {key}: {_fmt_value(c.old)} -> {_fmt_value(c.new)}", colour, fg="yellow"))
    return lines


def _ago(timestamp: float, tz_offset_s: int, now_ts: float) -> str:
    """:func:`human_time` from epoch seconds (a datetime only for dates: ``log`` prints thousands of ages)."""
    seconds = int(now_ts - timestamp)
    if 0 <= seconds < AGE_TEXT_LIMIT_S:
        return age_text(seconds)
    tz = _dt.timezone(_dt.timedelta(seconds=tz_offset_s))
    return human_time(_dt.datetime.fromtimestamp(timestamp, tz))


def _keys_text(commit: Commit) -> str:
    from ..docdiff import format_key

    by_doc: dict[str, list[str]] = {}
    for doc, key in commit.keys[:6]:
        by_doc.setdefault(doc, []).append(format_key(key) or "(document)")
    text = "; ".join(f"{d}: {', '.join(ks)}" for d, ks in by_doc.items())
    if len(commit.keys) > 6:
        text += f"; +{len(commit.keys) - 6} more"
    return text


# ===================================================================== revisions and documents
def _is_revision(d: StoreDirectory, arg: str) -> bool:
    """Without ``--``, is a bare argument a revision (or range) rather than a document? A range, or a name that
    resolves and is not a document at HEAD (git asks the same question, and wants ``--`` when both fit)."""
    from ..errors import RevisionNotFound
    from ..history import BeforeHistory

    if ".." in arg:
        return True
    if arg.endswith("/"):
        return False
    try:
        d.resolve(arg)
    except BeforeHistory:
        return True
    except RevisionNotFound:
        return False
    return d.head is None or not d.at("HEAD").exists(arg)


def _revs_and_docs(
    d: StoreDirectory, args: tuple[str, ...], after_dashes: list[str] | None
) -> tuple[list[str], list[str]]:
    """Revisions and documents from a command's arguments: before ``--`` revisions, after it documents; without
    ``--`` each argument is sorted by :func:`_is_revision` (revisions come first)."""
    if after_dashes is not None:
        return list(args), list(after_dashes)
    revs: list[str] = []
    docs: list[str] = []
    for arg in args:
        (revs if not docs and _is_revision(d, arg) else docs).append(arg)
    return revs, docs


def _stat_lines(counts: dict[str, int], unit: str) -> list[str]:
    """``--stat``: `` doc | N unit(s)`` per document, then ``N documents changed``."""
    width = max((len(doc) for doc in counts), default=0)
    lines = [f" {doc.ljust(width)} | {n} {unit}{'s' if n != 1 else ''}" for doc, n in counts.items()]
    n = len(counts)
    lines.append(f" {n} document{'s' if n != 1 else ''} changed")
    return lines


def _commit_stat(commit: Commit, docs: list[str]) -> dict[str, int]:
    """Keys changed per document of one commit (a whole-document change counts as one)."""
    counts = dict.fromkeys(docs, 0)
    for doc, _key in commit.keys:
        if doc in counts:
            counts[doc] += 1
    return {doc: max(n, 1) for doc, n in counts.items()}


# ===================================================================== log
@main.command("log", cls=GitArgsCommand)
@click.argument("args", nargs=-1, metavar="[REV | A..B] [[--] DOC]")
@click.option("-k", "--key", callback=key_param, help="Only commits that changed this key (dotted).")
@click.option("-n", "--max-count", "--limit", "limit", type=click.IntRange(min=1), help="At most N commits (or -N).")
@click.option("--oneline", is_flag=True, help="One short line per commit: id and subject.")
@click.option("--stat", is_flag=True, help="Under each commit, the documents it changed and how many keys.")
@click.option("--name-only", is_flag=True, help="Under each commit, the documents it changed.")
@click.option("--graph", is_flag=True, help="Draw the commit graph beside the log (branches and merges).")
@json_option
@pass_ctx
@click.pass_context
def log_cmd(
    cctx: click.Context,
    ctx: Context,
    args: tuple[str, ...],
    key: tuple[str | int, ...] | None,
    limit: int | None,
    oneline: bool,
    stat: bool,
    name_only: bool,
    graph: bool,
    as_json: bool,
) -> None:
    """Show the history, newest first, with actor and changed keys.

    REV starts elsewhere than HEAD; a range A..B shows the commits since A (reachable from B, not from A; either
    side defaults to HEAD). With DOC, only commits that changed that document (a path ending in / means every
    document under it); put DOC after -- when it could be read as a revision. With --key, only commits that
    changed that key, each with the value it changed from and to (who changed what, when).

    \b
    Examples:
      gitstate log -5 --oneline
      gitstate log before-upgrade..HEAD --stat
      gitstate log "2h ago".. -- state.json
      gitstate log --graph --oneline
      gitstate log state.json --key services.slack
      gitstate log --json | jq '.[0].actor'
    """
    from ..paths import validate_doc_path

    with open_dir(ctx) as d:
        revs, docs = _revs_and_docs(d, args, cctx.meta.get("gitstate.docs"))
        if len(revs) > 1 or len(docs) > 1:
            raise click.UsageError("log takes one REV or range A..B and one DOC (a path ending in / for many)")
        rev = revs[0] if revs else None
        doc = docs[0] if docs else None
        if doc is not None and not doc.endswith("/"):
            validate_doc_path(doc)
        if key or as_json:
            _log_detailed(ctx, d, doc, key, limit, rev, as_json)
            return
        from .stream import indexing_bar, stream_output  # here: `status` and `show` never load the log's output code

        colour = colour_enabled()
        make = _oneline_lines if oneline else _log_lines
        if not graph:  # streamed: each line is printed as the walk reaches its commit
            stream = _entries(d, doc, limit, rev)
            if stat or name_only:
                lines: Iterable[str] = (
                    ln for e in stream for ln in (*make(d, (e,), colour), *_details(d, e, stat, name_only))
                )
            else:
                lines = make(d, stream, colour)
            stream_output(ctx, lines)
            return
        with indexing_bar():
            entries = d.log_entries(doc, limit=limit, rev=rev)
        heads = list(make(d, entries, colour))
        details = [_details(d, e, stat, name_only) for e in entries]
    output(_with_graph(entries, heads, details))


def _entries(
    d: StoreDirectory, doc: str | None, limit: int | None, rev: str | None, *, keys: bool = False
) -> Iterator[dict[str, Any]]:
    """The log's entries one at a time (:meth:`StoreDirectory.iter_log_entries`, a generator: nothing is read
    before the first ``next``, inside :func:`~gitstate.cli.stream.stream_output`, so under its progress line)."""
    return d.iter_log_entries(doc, limit=limit, rev=rev, keys=keys)


def _details(d: StoreDirectory, e: dict[str, Any], stat: bool, name_only: bool) -> list[str]:
    """The lines under one commit of ``log --stat`` / ``--name-only`` (none without them)."""
    if not (stat or name_only):
        return []
    changed: list[str] = list(e.get("d") or [])
    return changed if name_only else _stat_lines(_commit_stat(d.commit_from_entry(e), changed), "key")


def _with_graph(entries: list[dict[str, Any]], heads: list[str], details: list[list[str]]) -> list[str]:
    """Log lines with the commit graph drawn before them (:mod:`gitstate.cli.graph`)."""
    from .graph import graph_rows

    lines: list[str] = []
    rows = graph_rows((e["c"], list(e.get("p") or [])) for e in entries)
    for row, head, more in zip(rows, heads, details, strict=True):
        lines.append(row.commit + head)
        lines.extend(row.fork)
        lines.extend(row.detail + ln for ln in more)
        lines.extend(row.join)
    return lines


def _log_detailed(
    ctx: Context,
    d: StoreDirectory,
    doc: str | None,
    key: tuple[str | int, ...] | None,
    limit: int | None,
    rev: str | None,
    as_json: bool,
) -> None:
    """``log --key`` (each commit with the changes it made to the key) and ``log --json``."""
    from .stream import indexing_bar, json_array, stream_output

    if as_json and not key:  # a JSON array streamed item by item: commits hold only strings and lists
        stream = _entries(d, doc, limit, rev, keys=True)
        stream_output(ctx, json_array(d.commit_from_entry(e).to_dict() for e in stream))
        return
    with indexing_bar():
        commits = d.log(doc, key=key, limit=limit, rev=rev)
    audit: list[list[Change]] = []
    if key:
        exact_doc = doc if doc is not None and not doc.endswith("/") else None
        audit = [c.changes(doc=exact_doc, key=key) for c in commits]
    if as_json:
        items = []
        for i, c in enumerate(commits):
            item = c.to_dict()
            if key:
                item["changes"] = [ch.to_dict() for ch in audit[i]]
            items.append(item)
        emit_json(items)
        return
    colour = colour_enabled()
    now_ts = time.time()
    lines = []
    for i, c in enumerate(commits):
        cell = _paint(f"{c.actor:<9}", colour, fg=_ACTOR_COLOURS.get(c.actor))
        when = _ago(c.timestamp, c.tz_offset_s, now_ts)
        lines.append(f"{_paint(c.short_id, colour, fg='yellow')}  {when:>16}  {cell} by {_short_author(c.author)}")
        lines.extend(_change_lines(audit[i], colour=colour, indent="    ", with_doc=False))
    output(lines)


def _oneline_lines(d: StoreDirectory, entries: Iterable[dict[str, Any]], colour: bool) -> Iterator[str]:
    """``--oneline``: the short id and the subject, as ``git log --oneline``."""
    from ..messages import subject

    for e in entries:
        message = e.get("m")
        if message is None:
            message = d.commit_message(e["c"])
        yield f"{_paint(e['c'][:8], colour, fg='yellow')} {subject(message)}"


def _log_lines(d: StoreDirectory, entries: Iterable[dict[str, Any]], colour: bool) -> Iterator[str]:
    """One line per commit: short id, age, actor, subject (plus the changed keys when the subject names no
    document). Works on raw index entries (see :meth:`gitstate.direct.StoreDirectory.log_entries`): this loop runs
    once per commit, 100,000 times for a long history."""
    now_ts = time.time()
    now_s = int(now_ts)
    actor_cells: dict[str, str] = {}
    when_cells: dict[int, str] = {}  # ages over an hour, by the hour: one text serves many commits
    from .stream import DateCells

    dates = DateCells()
    for e in entries:
        actor = e.get("actor", "human")
        cell = actor_cells.get(actor)
        if cell is None:
            cell = actor_cells[actor] = _paint(f"{actor:<9}", colour, fg=_ACTOR_COLOURS.get(actor))
        cid = e["c"]
        short = click.style(cid[:8], fg="yellow") if colour else cid[:8]
        t = e["t"]
        age = now_s - t if type(t) is int else -1
        if age >= AGE_TEXT_LIMIT_S:
            when = dates.text(t, e.get("z", 0))
        elif age >= 3600:
            when = when_cells.get(age // 3600) or when_cells.setdefault(age // 3600, f"{age_text(age):>16}")
        else:
            when = f"{_ago(t, e.get('z', 0), now_ts):>16}"
        message = e.get("m")
        if message is None:  # too long for the index: read from the commit object
            message = d.commit_message(cid)
        subject = message.partition("\n")[0]
        docs: list[str] = e.get("d") or []
        named = docs[0] + ":" in subject if len(docs) == 1 else any(f"{d}:" in subject for d in docs)
        if not named:
            commit = d.commit_from_entry(e)
            if commit.keys:
                subject += "  " + _paint(f"[{_keys_text(commit)}]", colour, dim=True)
        yield f"{short}  {when}  {cell} {subject}"


# ===================================================================== show
@main.command("show")
@click.argument("rev")
@click.argument("doc", required=False)
@click.option("-k", "--key", callback=key_param, help="With DOC: print only the value at this key.")
@json_option
@pass_ctx
def show_cmd(ctx: Context, rev: str, doc: str | None, key: tuple[str | int, ...] | None, as_json: bool) -> None:
    """Show the commit REV and its changes, or DOC as it was at REV.

    REV is a commit id or prefix, HEAD, HEAD~N, a snapshot name or a time ("2h ago", "yesterday",
    2024-05-01T10:00). DOC prints in its own format, as it was committed (YAML as YAML); --json prints its
    value as JSON, and --key one value in it.

    \b
    Examples:
      gitstate show HEAD
      gitstate show HEAD~3 config.yaml
      gitstate show "2h ago" state.json --key services.slack
    """
    if key and doc is None:
        raise click.UsageError("--key needs a DOC")
    with open_dir(ctx) as d:
        if doc is not None:
            view = d.at(rev)
            if not key and not as_json:  # the document as committed, in its own format
                data = view.raw(doc)
                text_like = not data or data.endswith(b"\n") or b"\0" in data
                click.echo(data + (b"" if text_like else b"\n"), nl=False)
                return
            value = view.get(doc, key)
            if isinstance(value, bytes):
                click.echo(value, nl=False)
            else:
                emit_json(value)
            return
        commit = d.get_commit(rev)
        changes = commit.changes()
    if as_json:
        item = commit.to_dict()
        item["changes"] = [c.to_dict() for c in changes]
        emit_json(item)
        return
    colour = colour_enabled()
    lines = [
        _paint(f"commit {commit.id}", colour, fg="yellow"),
        f"Author: {commit.author}",
        f"Date:   {commit.time.isoformat(timespec='seconds')} ({human_time(commit.time)})",
        f"Actor:  {_paint(commit.actor, colour, fg=_ACTOR_COLOURS.get(commit.actor))}",
    ]
    if len(commit.parents) > 1:
        lines.append("Merge:  " + " ".join(p[:8] for p in commit.parents))
    lines.append("")
    lines += ["    " + ln for ln in commit.message.rstrip("\n").splitlines()]
    lines.append("")
    lines += _change_lines(changes, colour=colour) or _no_value_changed(commit.docs)
    output(lines)


def _no_value_changed(docs: Any) -> list[str]:
    """What ``show`` says of a commit that changed no value: its files changed only in comments and layout."""
    from ..messages import formatting_line

    return [formatting_line(doc) for doc in docs] if docs else ["(no changes)"]


# ===================================================================== diff
@main.command("diff", cls=GitArgsCommand)
@click.argument("args", nargs=-1, metavar="[A [B] | A..B] [[--] DOC...]")
@click.option("--doc", help="Only this document (a path ending in / means every document under it).")
@click.option("--text", is_flag=True, help="Unified text diff of the files instead of key-level changes.")
@click.option("--stat", is_flag=True, help="Only the documents that changed and how many changes each.")
@click.option("--name-only", is_flag=True, help="Only the names of the documents that changed.")
@json_option
@pass_ctx
@click.pass_context
def diff_cmd(
    cctx: click.Context,
    ctx: Context,
    args: tuple[str, ...],
    doc: str | None,
    text: bool,
    stat: bool,
    name_only: bool,
    as_json: bool,
) -> None:
    """Show what changed from A (default HEAD~1) to B (default HEAD); A..B says the same.

    Key by key for JSON/YAML documents (~ changed, + added, - removed); text documents as unified diffs. DOCs
    after -- (or --doc) limit it to those documents. A time before the first commit means the empty state, and
    on a store with one commit the default shows that commit.

    \b
    Examples:
      gitstate diff
      gitstate diff HEAD~5 -- state.json
      gitstate diff before-upgrade..HEAD --stat
      gitstate diff before-upgrade HEAD --text
      gitstate diff yesterday now --json
    """
    with open_dir(ctx) as d:
        revs, docs = _revs_and_docs(d, args, cctx.meta.get("gitstate.docs"))
        if len(revs) > 2 or (len(revs) == 2 and any(".." in r for r in revs)):
            raise click.UsageError("diff takes two revisions A B, or one range A..B")
        rev_a = revs[0] if revs else "HEAD~1"
        rev_b = revs[1] if len(revs) > 1 else "HEAD"
        targets: list[str | None] = [*docs, *([doc] if doc else [])] or [None]
        if not text:
            changes = [c for t in targets for c in d.diff(rev_a, rev_b, doc=t)]
            if as_json or stat or name_only:
                _print_changes(changes, stat=stat, name_only=name_only, as_json=as_json)
            else:  # one output (one pager): the key changes, then files changed in layout only
                layout = _layout_only_lines(d, rev_a, rev_b, targets, {c.doc for c in changes})
                output(_change_lines(changes, colour=colour_enabled()) + layout)
            return
        texts: dict[str, str] = {}
        for t in targets:
            texts.update(d.text_diff(rev_a, rev_b, doc=t))
    if as_json:
        emit_json(texts)
        return
    if stat or name_only:
        counts = {path: 1 for path in texts}
        output(list(counts) if name_only else _stat_lines(counts, "file"))
        return
    colour = colour_enabled()
    lines: list[str] = []
    for body in texts.values():
        for ln in body.splitlines():
            lines.append(_paint(ln, colour, bold=True) if ln.startswith(("---", "+++")) else _diff_line(ln, colour))
    output(lines)


def _layout_only_lines(d: Any, a: str, b: str, targets: list[str | None], changed: set[str]) -> list[str]:
    """Files that differ between ``a`` and ``b`` in comments and layout only (no value changed)."""
    from ..messages import formatting_line

    files = {path for t in targets for path in d.text_diff(a, b, doc=t)}
    return [formatting_line(path) for path in sorted(files - changed)]


def _print_changes(changes: list[Change], *, stat: bool, name_only: bool, as_json: bool) -> None:
    """Key-level changes as JSON, ``--stat``, ``--name-only`` or lines."""
    if as_json:
        emit_json([c.to_dict() for c in changes])
        return
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.doc] = counts.get(c.doc, 0) + 1
    if name_only:
        output(list(counts))
    elif stat:
        output(_stat_lines(counts, "change") if counts else [])
    else:
        output(_change_lines(changes, colour=colour_enabled()))


# ===================================================================== restore / undo
@main.command("restore")
@click.argument("rev")
@click.argument("docs", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the changes it would make; change nothing.")
@click.option("-m", "--message", help="Commit message subject.")
@json_option
@pass_ctx
def restore_cmd(
    ctx: Context, rev: str, docs: tuple[str, ...], dry_run: bool, message: str | None, as_json: bool
) -> None:
    """Make DOCS (default: every document) equal to their content at REV, as a new commit.

    History is never rewritten: the restore is a new commit (yours: actor "human"), and can itself be undone.
    A document that did not exist at REV is removed.

    \b
    Examples:
      gitstate restore HEAD~3 state.json
      gitstate restore before-upgrade --dry-run
      gitstate restore "2h ago"
    """
    if dry_run:
        with open_dir(ctx) as d:
            target, changes = d.restore_preview(rev, list(docs) or None)
        if as_json:
            emit_json({"target": target, "dry_run": True, "changes": [c.to_dict() for c in changes]})
            return
        if not changes:
            click.echo(f"nothing to restore: already equal to {rev} ({target[:8]})")
            return
        click.echo(f"restoring to {rev} ({target[:8]}) would change:")
        output(_change_lines(changes, colour=colour_enabled()))
        return
    with open_store(ctx) as store:
        target = store.resolve(rev)
        commit = store.restore(rev, list(docs) or None, message, actor=store.actor)
    changed = commit.created  # not "head moved": another writer may have committed meanwhile
    if as_json:
        emit_json({"commit": commit, "target": target, "changed": changed, "docs": list(docs)})
        return
    what = ", ".join(docs) if docs else "all documents"
    if not changed:
        click.echo(f"nothing to restore: {what} already equal to {rev} ({target[:8]})")
    else:
        click.echo(f"restored {what} to {rev} ({target[:8]}) as commit {commit[:8]}")


@main.command("undo")
@json_option
@pass_ctx
def undo_cmd(ctx: Context, as_json: bool) -> None:
    """Revert the last commit as a new commit (by you: actor "human").

    Undoing again reverts the commit before it (undo commits are skipped, so this never redoes).

    \b
    Example:
      gitstate undo
    """
    with open_store(ctx) as store:
        commit = store.undo(actor=store.actor)
        info = store.get_commit(commit) if commit.created else None
    undone = None
    subject = ""
    if info is not None:
        from ..messages import UNDO_TRAILER

        undone = info.trailer(UNDO_TRAILER)
        subject = info.subject.split(": ", 1)[1] if ": " in info.subject else info.subject
    if as_json:
        emit_json({"commit": commit, "undone": undone, "changed": info is not None})
        return
    if info is None:
        click.echo("nothing changed: the last commit's changes were already reverted")
    else:
        click.echo(f"undid {(undone or '')[:8]} ({subject}) as commit {commit[:8]}")


# ===================================================================== snapshots
@main.command("snapshot")
@click.argument("name", required=False)
@click.option("-m", "--message", help="Annotation stored in the tag.")
@click.option("--delete", "-d", "delete", is_flag=True, help="Delete snapshot NAME instead (its history stays).")
@click.option(
    "--keep-last", type=click.IntRange(min=0), metavar="N", help="Then keep only the N newest snapshots of --prefix."
)
@click.option("--prefix", metavar="TEXT", help="With --keep-last: the snapshots it thins (e.g. checkpoint-).")
@click.option("--dry-run", "-n", is_flag=True, help="With --keep-last: print what would be deleted.")
@json_option
@pass_ctx
def snapshot_cmd(
    ctx: Context,
    name: str | None,
    message: str | None,
    delete: bool,
    keep_last: int | None,
    prefix: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Tag the current state as NAME (a Git tag; restore it later with 'gitstate restore NAME').

    --delete removes snapshot NAME (the commits stay in history). --keep-last N --prefix P keeps only the N
    newest snapshots whose names start with P (after making NAME, when given); others are never touched.
    `gitstate forget` never drops a snapshot.

    \b
    Examples:
      gitstate snapshot before-upgrade -m "before v2 rollout"
      gitstate snapshot --delete before-upgrade
      gitstate snapshot checkpoint-$(date +%s) --keep-last 5 --prefix checkpoint-
      gitstate snapshot --delete --keep-last 5 --prefix checkpoint-
    """
    if (keep_last is None) != (prefix is None):
        raise click.UsageError("--keep-last and --prefix go together (e.g. --keep-last 5 --prefix checkpoint-)")
    if name is None and keep_last is None:
        raise click.UsageError("give a snapshot NAME (or --keep-last N --prefix P to thin snapshots)")
    if delete and (message or (name is not None and keep_last is not None)):
        raise click.UsageError("--delete takes the NAME of a snapshot, or --keep-last N --prefix P to thin them")
    commit = deleted = None
    with open_store(ctx) as store:
        if delete and name is not None:
            deleted = store.snapshot_delete(name)
        elif name is not None:
            commit = store.snapshot(name, message)
        thinned = store.snapshots_thin(prefix or "", keep_last, dry_run=dry_run) if keep_last is not None else []
    if as_json:
        out: dict[str, object] = {"name": name, "commit": commit} if not delete else {"deleted": name}
        if delete and name is not None:
            out["commit"] = deleted
        if keep_last is not None:
            out |= {"thinned": thinned, "dry_run": dry_run}
        emit_json(out)
        return
    if deleted is not None:
        click.echo(f"deleted snapshot {name} (was {deleted[:8]}; the commit stays in history)")
    elif commit is not None:
        click.echo(f"snapshot {name} -> {commit[:8]}")
    for old in thinned:
        click.echo(f"{'would delete' if dry_run else 'deleted'} snapshot {old}")


@main.command("snapshots")
@json_option
@pass_ctx
def snapshots_cmd(ctx: Context, as_json: bool) -> None:
    """List snapshots (Git tags), oldest first.

    \b
    Example:
      gitstate snapshots --json
    """
    with open_dir(ctx) as d:
        snaps = d.snapshots()
    if as_json:
        emit_json(snaps)
        return
    colour = colour_enabled()
    now = _dt.datetime.now(_dt.UTC)
    width = max((len(s.name) for s in snaps), default=0)
    lines = [
        f"{_paint(s.name.ljust(width), colour, bold=True)}  {_paint(s.commit[:8], colour, fg='yellow')}  "
        f"{human_time(s.time, now):>16}  {s.message}"
        for s in snaps
    ]
    if not lines:
        click.echo("no snapshots yet; make one with 'gitstate snapshot NAME'", err=True)
    output(lines)


# ===================================================================== status
@main.command("status")
@json_option
@pass_ctx
def status_cmd(ctx: Context, as_json: bool) -> None:
    """Show HEAD, the last commit (time, actor), files edited but not committed, snapshots and how far the
    store is ahead of or behind its remotes (as of the last fetch).

    \b
    Examples:
      gitstate status
      gitstate -C ~/.config/my-agent status --json
    """
    with open_dir(ctx) as d:
        head = d.head
        commit = d.get_commit(head) if head else None
        waiting = d.quarantined()
        uncommitted = [u for u in d.uncommitted() if u["doc"] not in {q.doc for q in waiting}]
        snaps = d.snapshots()
        remotes = d.remotes_status()
        branch = d.branch
        root = d.root
        git_busy = d.git_operation()
        policy = d.retention_policy()
        budget = d.budget() if policy is not None else None
        # Read now: a commit's changed keys are loaded lazily, and the repository is closed after this block.
        head_info = commit.to_dict() if commit and as_json else None
    if as_json:
        emit_json(
            {
                "path": str(root),
                "branch": branch,
                "head": head_info,
                "uncommitted": uncommitted,
                "quarantined": [q.to_dict() for q in waiting],
                "snapshots": snaps,
                "remotes": remotes,
                "git_operation": git_busy,
                "retention": None if policy is None else policy.to_json(),
                "history": None if budget is None else _budget_json(budget),
            }
        )
        return
    colour = colour_enabled()
    lines = [f"store      {root} (branch {branch})"]
    if commit is None:
        lines.append("HEAD       (no commits yet)")
    else:
        actor = _paint(commit.actor, colour, fg=_ACTOR_COLOURS.get(commit.actor))
        lines.append(
            f"HEAD       {_paint(commit.short_id, colour, fg='yellow')}  {human_time(commit.time)}  "
            f"{actor}  {commit.subject}"
        )
    if git_busy:
        from ..direct import git_operation_advice

        lines.append(
            _paint(f"git        git {git_busy} in progress: writes held", colour, fg="red")
            + f" (open stores commit them once it is finished: {git_operation_advice(git_busy)})"
        )
    lines += _edited_lines(uncommitted, waiting, colour)
    if snaps:
        last = snaps[-1]
        lines.append(f"snapshots  {len(snaps)} (latest: {last.name}, {human_time(last.time)})")
    else:
        lines.append("snapshots  none")
    for name, info in remotes.items():
        if not info.get("fetched"):
            text = f"{name}: not fetched yet"
        elif "error" in info:
            text = f"{name}: {info['error']}"
        else:
            text = f"{name}: {info['ahead']} ahead, {info['behind']} behind"
        push = info.get("push")
        if isinstance(push, dict):  # remote.py's background push state, when it is there
            if push.get("last_error"):
                text += "; " + _paint(f"last push failed: {push['last_error']}", colour, fg="red")
            elif isinstance(push.get("last_success"), _dt.datetime):
                text += f"; last push {human_time(push['last_success'])}"
        lines.append(f"remote     {text}")
    if not remotes:
        lines.append("remote     none")
    if policy is not None and budget is not None:
        lines += _budget_lines(policy, budget, colour)
    output(lines)


def _edited_lines(uncommitted: list[dict[str, str]], waiting: list[Any], colour: bool) -> list[str]:
    """``status`` lines for files edited but not committed, and for those waiting in quarantine."""
    lines: list[str] = []
    if uncommitted:
        lines.append(
            f"edited     {len(uncommitted)} file(s) not committed yet "
            "(a running store or 'gitstate watch' commits them):"
        )
        for u in uncommitted:
            lines.append(f"             {_paint(u['state'] + ':', colour, fg='red'):<10} {u['doc']}")
    else:
        lines.append("edited     nothing uncommitted")
    if waiting:
        lines.append(
            _paint(f"quarantine {len(waiting)} file(s) did not parse", colour, fg="red")
            + ", kept as saved; programs' writes are committed beside them (see 'gitstate quarantine'):"
        )
        for q in waiting:
            since = human_time(_dt.datetime.fromtimestamp(q.since, _dt.UTC))
            lines.append(f"             {q.where}  since {since}  {q.error}")
    return lines


def _budget_json(budget: Any) -> dict[str, Any]:
    """The history's size against its budget, for ``status --json``."""
    return {
        "size": budget.size,
        "budget": budget.budget,
        "growth_per_day": budget.growth_per_day,
        "days_left": budget.days_left,
        "warning": budget.warning,
    }


def _budget_lines(policy: Any, budget: Any, colour: bool) -> list[str]:
    """``status`` lines for a store with a retention policy: size, budget, growth; the warning in red."""
    size = budget.line().removeprefix("history ")
    lines = [f"history    {size}; retention: {policy.describe()}"]
    if budget.warning:
        lines.append("           " + _paint(budget.warning, colour, fg="red"))
    return lines
