"""Maintenance commands: ``gc`` (pack and prune the repository) and ``doctor`` (health checks).

What belongs here: the two commands' options, the progress line ``gc`` shows on a terminal, and printing the
gc figures and the doctor's findings. What does not: packing and pruning (:mod:`gitstate.gc`, reached through
:meth:`gitstate.direct.StoreDirectory.gc`), the checks and their advice (:mod:`gitstate.doctor`), history
thinning (``forget``, :mod:`gitstate.cli.retention`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ._common import Context, emit_json, json_option, main, open_dir, pass_ctx, style

__all__ = ["doctor_cmd", "gc_cmd"]

logger = logging.getLogger("gitstate.cli")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _progress_display() -> tuple[Callable[[str, int, int], None] | None, Callable[[], None]]:
    """A one-line progress display on stderr when it is a terminal (none for scripts and pipes)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    state = {"last": 0.0, "shown": False}

    def show(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["last"] < 0.1 and (total == 0 or done < total):
            return
        state["last"] = now
        state["shown"] = True
        text = f"{phase}: {done:,}/{total:,} ({100 * done // total}%)" if total else f"{phase}: {done:,}"
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()

    def done() -> None:
        if state["shown"]:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    return show, done


@main.command("gc")
@click.option(
    "--prune-grace",
    "grace_s",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep unreachable objects younger than this (a writer may be using them).",
)
@json_option
@pass_ctx
def gc_cmd(ctx: Context, grace_s: float, as_json: bool) -> None:
    """Pack the history with deltas and prune what crashes left behind.

    Everything reachable from a branch, a snapshot or a remote ref is kept. A program that keeps the store open
    packs in the background already; this does a full repack now. No git binary is needed.

    \b
    Examples:
      gitstate gc
      gitstate gc --json
    """
    progress, clear = _progress_display()
    with open_dir(ctx) as d:
        try:
            stats = d.gc(progress=progress, prune_grace_s=grace_s)
        finally:
            clear()
    if as_json:
        emit_json(stats)
        return
    parts = [f"packed {stats['objects']:,} objects ({stats['deltas']:,} as deltas)"]
    if stats["loose_removed"]:
        parts.append(f"removed {stats['loose_removed']:,} loose copies")
    if stats["packs_removed"]:
        parts.append(f"merged {stats['packs_removed']} old pack(s)")
    if stats["pruned"]:
        parts.append(f"pruned {stats['pruned']:,} unreachable object(s)")
    click.echo(
        f"{', '.join(parts)}; .git {_mb(stats['size_before'])} -> {_mb(stats['size_after'])} "
        f"in {stats['duration_s']:.1f}s"
    )


_LEVEL_STYLE: dict[str, dict[str, Any]] = {
    "ok": {"fg": "green"},
    "warning": {"fg": "yellow"},
    "error": {"fg": "red", "bold": True},
}


@main.command("doctor")
@click.option("--no-remote", is_flag=True, help="Do not contact the remotes.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long each remote may take to answer.",
)
@json_option
@pass_ctx
def doctor_cmd(ctx: Context, no_remote: bool, timeout_s: float, as_json: bool) -> None:
    """Check the store's health: directory writable, disk space, repository integrity, stale locks, edits
    waiting in quarantine, last commit, snapshots, remotes reachable.

    Each problem comes with what to do. Exit status 1 when something is wrong (an error), 0 otherwise. Nothing is
    changed.

    \b
    Examples:
      gitstate doctor
      gitstate doctor --json --no-remote
    """
    from .. import doctor as _doctor

    findings = _doctor.check(ctx.path, remote_timeout_s=timeout_s, check_remotes=not no_remote)
    failed = _doctor.has_errors(findings)
    if as_json:
        emit_json({"ok": not failed, "findings": [f.to_dict() for f in findings]})
    else:
        width = max(len(f.check) for f in findings) if findings else 10
        for f in findings:
            level = style(f"{f.level:<8}", **_LEVEL_STYLE.get(f.level, {}))
            click.echo(f"{level} {f.check:<{width}}  {f.message}")
            if f.fix and f.level != "ok":
                click.echo(f"{'':<8} {'':<{width}}  fix: {f.fix}")
        warnings = sum(f.level == "warning" for f in findings)
        errors = sum(f.level == "error" for f in findings)
        summary = f"{errors} error(s), {warnings} warning(s)" if errors or warnings else "all good"
        click.echo(style(summary, **_LEVEL_STYLE["error" if errors else "warning" if warnings else "ok"]))
    if failed:
        raise click.exceptions.Exit(1)
