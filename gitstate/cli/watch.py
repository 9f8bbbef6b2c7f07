"""Watcher and hook commands: ``watch`` (commit hand edits in the foreground) and ``hooks install``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import GitStateError, StoreNotFound
from ..watcher import DEFAULT_DEBOUNCE_MS, DEFAULT_POLL_DELAY_MS, DEFAULT_SETTLE_MS, DEFAULT_SETTLE_TIMEOUT_MS
from ._common import Context, main, open_store, pass_ctx, require_store, to_jsonable

__all__ = ["HookResult", "hook_sources", "hooks_group", "hooks_install_cmd", "install_hooks", "watch_cmd"]

logger = logging.getLogger("gitstate.cli")

#: Files in ``hooks/`` that are not hooks.
_NOT_HOOKS = {"README.md", "README", "__init__.py"}


def _summary(doc_list: list[str], message: str) -> str:
    """``state.json: services.gmail false -> true`` from a commit's subject (without repeating the doc)."""
    subject = message.splitlines()[0].strip() if message.strip() else "changed"
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
            reason = Path(where + ".reason")
            problem = reason.read_text(encoding="utf-8", errors="replace").strip() if reason.exists() else doc
            if not problem.startswith(doc):
                problem = f"{doc}: {problem}"
            click.echo(f"invalid edit: {problem} (kept in {where})", err=True)

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
        return not (record.name == "gitstate.store" and record.funcName == "_quarantine")


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


# ===================================================================== hooks
@dataclass(frozen=True)
class HookResult:
    """What ``install_hooks`` did with one hook: ``installed``, ``updated`` (an older copy was replaced),
    ``unchanged``, ``replaced`` (a foreign hook was moved to ``backup``) or ``skipped`` (a foreign hook is in
    the way; pass ``force``)."""

    name: str
    path: Path
    action: str
    backup: Path | None = None


def hook_sources() -> dict[str, bytes]:
    """The hooks gitstate ships: ``gitstate/_hooks/`` inside the installed package, else the project's
    top-level ``hooks/`` directory (editable installs and source checkouts).

    Example:
        >>> sorted(hook_sources())  # doctest: +SKIP
        ['commit-msg', 'pre-commit']
    """
    from importlib import resources

    candidates: list[Any] = []
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        candidates.append(resources.files("gitstate") / "_hooks")
    candidates.append(Path(__file__).resolve().parent.parent.parent / "hooks")
    for directory in candidates:
        try:
            if not directory.is_dir():
                continue
            found = {
                e.name: e.read_bytes()
                for e in directory.iterdir()
                if e.is_file() and e.name not in _NOT_HOOKS and not e.name.startswith(".") and "." not in e.name
            }
        except OSError:
            continue
        if found:
            return found
    raise GitStateError("cannot find gitstate's hooks (gitstate/_hooks or hooks/); reinstall gitstate")


def _hooks_dir(root: Path) -> Path:
    """Where git looks for hooks: ``core.hooksPath`` when set, else ``.git/hooks``."""
    from ..repo import Repository

    try:
        repo = Repository.open(root, create=False)
    except GitStateError as e:
        raise StoreNotFound(f"no gitstate store at {root}: {e}") from e
    try:
        configured = repo.config_get("core", "hooksPath")
        git_dir = repo.git_dir
    finally:
        repo.close()
    if configured:
        path = Path(os.path.expanduser(configured))
        return path if path.is_absolute() else root / path
    return git_dir / "hooks"


def install_hooks(root: str | os.PathLike[str], *, force: bool = False) -> list[HookResult]:
    """Copy gitstate's git hooks into the store at ``root`` (``core.hooksPath`` is honoured). A hook of the
    same name that gitstate did not write is left alone unless ``force``, which moves it aside first.

    Example:
        >>> [r.action for r in install_hooks("/var/lib/agent")]  # doctest: +SKIP
        ['installed', 'installed']
    """
    root = Path(root)
    require_store(root)
    sources = hook_sources()
    target_dir = _hooks_dir(root)
    target_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    results: list[HookResult] = []
    for name, data in sorted(sources.items()):
        target = target_dir / name
        backup = None
        try:
            old: bytes | None = target.read_bytes()
        except FileNotFoundError:
            old = None
        except OSError as e:
            raise GitStateError(f"cannot read the existing hook {target}: {e.strerror}") from e
        if old == data:
            with contextlib.suppress(OSError):
                os.chmod(target, 0o755)
            results.append(HookResult(name, target, "unchanged"))
            continue
        ours = old is not None and b"gitstate" in old[:2048]
        if old is not None and not ours:
            if not force:
                results.append(HookResult(name, target, "skipped"))
                continue
            backup = target.with_name(f"{name}.before-gitstate")
            n = 1
            while backup.exists():
                n += 1
                backup = target.with_name(f"{name}.before-gitstate.{n}")
            os.replace(target, backup)
        tmp = target.with_name(f".{name}.gitstate-tmp-{os.urandom(4).hex()}")
        try:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise GitStateError(f"cannot write the hook {target}: {e.strerror}") from e
        action = "replaced" if backup else ("updated" if old is not None else "installed")
        results.append(HookResult(name, target, action, backup))
    return results


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
