"""Watcher and hook commands: ``watch`` (commit hand edits in the foreground) and ``hooks install``.

What belongs here: the ``watch`` command's options and its one-line reports of store events (commits, invalid edits,
quarantine), the ``hooks install`` command. What does not: watching and settling files (:mod:`gitstate.watcher`),
committing hand edits and the parse gate (:mod:`gitstate.ingest`, through the Store), finding and copying the hook
files (:mod:`gitstate.hooks`, whose names are re-exported here).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..docdiff import format_key
from ..errors import GitStateError
from ..hooks import HookResult, hook_sources, install_hooks
from ..quarantine import Quarantine
from ..watcher import DEFAULT_DEBOUNCE_MS, DEFAULT_POLL_DELAY_MS, DEFAULT_SETTLE_MS, DEFAULT_SETTLE_TIMEOUT_MS
from ._common import Context, main, open_store, pass_ctx, require_store, to_jsonable

__all__ = ["HookResult", "hook_sources", "hooks_group", "hooks_install_cmd", "install_hooks", "watch_cmd"]


logger = logging.getLogger("gitstate.cli")


def _summary(doc_list: list[str], message: str) -> str:
    """``state.json: services.gmail false -> true`` from a commit's subject (without repeating the doc)."""
    from ..messages import subject as subject_of

    subject = subject_of(message).strip() or "changed"
    docs = ", ".join(doc_list) or "(no documents)"
    if len(doc_list) == 1 and subject.startswith(f"{doc_list[0]}: "):
        subject = subject[len(doc_list[0]) + 2 :]
    return f"{docs}: {subject}"


class _Printer:
    """Turns store events into the one-line reports of ``gitstate watch``."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def _json(self, kind: str, event: Any) -> None:
        click.echo(json.dumps({"event": kind, **to_jsonable(event)}, ensure_ascii=False))

    def loaded(self, event: Any) -> None:
        if self.as_json:
            if event.recovered or event.quarantined:
                self._json("loaded", event)
            return
        if event.recovered and event.head:
            click.echo(
                f"committed {event.head[:8]} {', '.join(event.recovered)}: edits made while nothing was watching"
            )
        for doc, where in sorted(event.quarantined.items()):
            entry = Quarantine(Path(where).parent.parent).get(doc)  # where: .git/gitstate/quarantine/NAME.saved
            problem = f"{entry.where}: {entry.error}" if entry else f"{doc}: not read"
            click.echo(f"invalid edit: {problem} (kept in {where}; waits in quarantine)", err=True)

    def committed(self, event: Any) -> None:
        if self.as_json:
            self._json("committed", event)
            return
        click.echo(f"committed {event.commit[:8]} {_summary(list(event.docs), event.message)}")

    def invalid_edit(self, event: Any) -> None:
        if self.as_json:
            self._json("invalid_edit", event)
            return
        where = event.doc
        if event.line is not None:
            where += f":{event.line}"
            if event.column is not None:
                where += f":{event.column}"
        kept = f" (kept in {event.quarantined_to})" if event.quarantined_to else ""
        click.echo(f"invalid edit: {where}: {event.error}{kept}", err=True)

    def quarantine_cleared(self, event: Any) -> None:
        if self.as_json:
            self._json("quarantine_cleared", event)
            return
        if event.dropped:
            click.echo(f"quarantine: {event.doc}: edit dropped, the committed version is back on disk")
            return
        merged = ""
        if event.merged:
            keys = ", ".join(sorted({format_key(c.key) for c in event.merged}))
            merged = f", merged with what programs wrote meanwhile ({keys})"
        click.echo(f"quarantine: {event.doc} parses again{merged}; cleared")

    def external_change(self, event: Any) -> None:
        if self.as_json and event.source == "human":
            self._json("external_change", event)


@main.command("watch")
@click.option(
    "--poll",
    "force_polling",
    flag_value=True,
    default=None,
    help="Poll for changes instead of using the OS's change events (network file systems).",
)
@click.option(
    "--poll-delay-ms",
    type=click.IntRange(min=10),
    default=DEFAULT_POLL_DELAY_MS,
    show_default=True,
    help="Interval between two scans when polling.",
)
@click.option(
    "--settle-ms",
    type=click.IntRange(min=0),
    default=DEFAULT_SETTLE_MS,
    show_default=True,
    help="How long a file must stay unchanged before it is committed.",
)
@click.option(
    "--settle-timeout-ms",
    type=click.IntRange(min=0),
    default=DEFAULT_SETTLE_TIMEOUT_MS,
    show_default=True,
    help="Longest wait for a file being written to settle and parse.",
)
@click.option(
    "--debounce-ms",
    type=click.IntRange(min=0),
    default=DEFAULT_DEBOUNCE_MS,
    show_default=True,
    help="Longest time change events are grouped into one batch.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event.")
@pass_ctx
def watch_cmd(
    ctx: Context,
    force_polling: bool | None,
    poll_delay_ms: int,
    settle_ms: int,
    settle_timeout_ms: int,
    debounce_ms: int,
    as_json: bool,
) -> None:
    """Commit edits made by hand to the store's files, until interrupted (Ctrl-C or SIGTERM; exit 0).

    Each valid edit becomes a commit by you (actor "human") naming the keys that changed. An edit that does
    not parse is not committed: its content is kept aside, one line names the file, line and column, and the
    store keeps the last good version until you fix the file. Edits made while nothing was watching are
    committed at start. Editor swap/backup files and what .gitignore ignores are left alone.

    \b
    Example:
      $ gitstate -C ~/.config/my-agent watch
      committed 3f2a91c0 state.json: services.gmail false -> true
      invalid edit: state.json:3:5: invalid JSON: Expecting ',' delimiter (kept in .git/gitstate/quarantine/...)
    """
    require_store(ctx.path)
    printer = _Printer(as_json=as_json)
    handlers = {
        "loaded": printer.loaded,
        "committed": printer.committed,
        "invalid_edit": printer.invalid_edit,
        "quarantine_cleared": printer.quarantine_cleared,
        "external_change": printer.external_change,
    }
    with _library_warnings(), open_store(ctx, on=handlers) as store:
        watcher = store.watch(
            force_polling=force_polling,
            poll_delay_ms=poll_delay_ms,
            settle_ms=settle_ms,
            settle_timeout_ms=settle_timeout_ms,
            debounce_ms=debounce_ms,
        )

        def ready() -> None:
            mode = "polling" if watcher.polling else "native events"
            click.echo(f"watching {ctx.path.absolute()} ({mode}); Ctrl-C to stop", err=True)

        watcher.run(on_ready=ready)
    click.echo("stopped", err=True)


class _NotReportedAgain(logging.Filter):
    """Drops the store's log record about a quarantined edit: ``watch`` prints its own line for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "gitstate.store" and record.funcName == "_keep_aside")


@contextlib.contextmanager
def _library_warnings() -> Iterator[None]:
    """Without ``-v``, show gitstate's warnings (polling fallback, failed commits) as ``gitstate: ...`` lines on
    stderr, minus those ``watch`` already reports as events."""
    if logging.getLogger().handlers:  # -v configured logging: show everything as configured
        yield
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("gitstate: %(message)s"))
    handler.addFilter(_NotReportedAgain())
    lib = logging.getLogger("gitstate")
    lib.addHandler(handler)
    propagate, lib.propagate = lib.propagate, False
    try:
        yield
    finally:
        lib.removeHandler(handler)
        lib.propagate = propagate


@main.group("hooks")
def hooks_group() -> None:
    """Git hooks for people who commit to a state repository with plain git.

    \b
    Hooks:
      pre-commit  refuse staged JSON/YAML that does not parse (file, line and column),
                  text that is not UTF-8 or holds conflict markers, and editor swap/backup files
      commit-msg  add the trailer "Gitstate-Actor: human" so gitstate's log shows who made the commit
    """


@hooks_group.command("install")
@click.option("--force", is_flag=True, help="Replace hooks of the same name (the old ones are kept aside).")
@pass_ctx
def hooks_install_cmd(ctx: Context, force: bool) -> None:
    """Install gitstate's git hooks into the store (the library itself never runs repository hooks).

    \b
    Example:
      gitstate -C ~/.config/my-agent hooks install
    """
    require_store(ctx.path)
    results = install_hooks(ctx.path, force=force)
    skipped = []
    for r in results:
        if r.action == "skipped":
            skipped.append(r)
            click.echo(f"skipped {r.name}: {r.path} exists and is not gitstate's (use --force to replace it)", err=True)
        elif r.action == "replaced":
            click.echo(f"installed {r.name} -> {r.path} (the previous hook is in {r.backup})")
        else:
            click.echo(f"{r.action} {r.name} -> {r.path}")
    if skipped:
        raise GitStateError(f"{len(skipped)} hook(s) not installed; rerun with --force to replace them")
