"""Retention commands: ``forget`` (thin old local history, restic-style).

What belongs here: parsing the ``--keep-*`` options and printing a plan. What does not: the rules, the plan and the
cut, which live in :mod:`gitstate.retention`: this module only calls the public API (:mod:`gitstate.direct`, and
:meth:`Store.set_retention_policy` for ``--save``); applying a saved policy in the background
(:mod:`gitstate.gc.retain`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ._common import Context, emit_json, json_option, main, open_dir, open_store, pass_ctx

__all__ = ["forget_cmd"]


_RULES = (
    ("last", "N commits older than the window"),
    ("hourly", "commit of each of the last N hours that have commits"),
    ("daily", "commit of each of the last N days"),
    ("weekly", "commit of each of the last N weeks"),
    ("monthly", "commit of each of the last N months"),
    ("yearly", "commit of each of the last N years"),
)


def _keep_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, what in reversed(_RULES):
        f = click.option(
            f"--keep-{name}", name, type=click.IntRange(min=0), default=0, metavar="N", help=f"Keep the last {what}."
        )(f)
    return f


@main.command("forget")
@click.option(
    "--keep-within",
    "within",
    metavar="DURATION",
    help="Keep every commit within this of the newest one, untouched (e.g. 7d, 48h, 2w, 6m, 1y).",
)
@_keep_options
@click.option("--dry-run", "-n", is_flag=True, help="Print what would be kept and dropped; change nothing.")
@click.option("--include-unpushed", is_flag=True, help="Drop old commits even when no remote has them.")
@click.option("--save", is_flag=True, help="Store these rules with the store (.gitstate/retention.json).")
@click.option(
    "--prune",
    is_flag=True,
    help="Run gc afterwards and prune what was dropped at once (like git gc --prune=now: run no plain git "
    "command in the store meanwhile), so the space is reclaimed now.",
)
@json_option
@pass_ctx
def forget_cmd(
    ctx: Context,
    within: str | None,
    last: int,
    hourly: int,
    daily: int,
    weekly: int,
    monthly: int,
    yearly: int,
    dry_run: bool,
    include_unpushed: bool,
    save: bool,
    prune: bool,
    as_json: bool,
) -> None:
    """Thin local history older than a window, as restic and borg do.

    Commits within --keep-within of the newest commit stay exactly as they are (same ids, so push, pull and
    sync go on without --force). Older history is thinned to one point per kept hour, day, week, month or year:
    the state at the end of that period, kept on refs/gitstate/kept with a message saying what it replaced.
    Snapshots always stay readable. Nothing on a remote changes: a remote that holds the whole history keeps
    it. Without rules, the policy stored with the store is used.

    \b
    Examples:
      gitstate forget --keep-within 7d --keep-hourly 48 --keep-daily 30 --dry-run
      gitstate forget --keep-within 7d --keep-daily 30 --keep-weekly 12 --keep-monthly 24 --save --prune
      gitstate forget                       # apply the stored policy
    """
    from ..retention import Policy

    rules = {"last": last, "hourly": hourly, "daily": daily, "weekly": weekly, "monthly": monthly, "yearly": yearly}
    given = within is not None or any(rules.values())
    with open_dir(ctx) as d:
        stored = d.retention_policy()
        policy = Policy(keep_within=within, budget_mb=stored.budget_mb if stored else None, **rules) if given else None
        if save and policy is None:
            raise click.UsageError("--save needs rules to save (e.g. --keep-within 7d --keep-daily 30)")
        plan = d.forget(policy, dry_run=dry_run, include_unpushed=include_unpushed)
        stats = d.gc(prune_grace_s=0) if prune and plan.applied and plan.changes_anything else None
    saved = None
    if save and policy is not None and not dry_run:
        with open_store(ctx) as store:
            saved = store.set_retention_policy(policy)
    if as_json:
        emit_json(
            {
                "applied": plan.applied,
                "policy": plan.policy.to_json(),
                "window": plan.window,
                "dropped": plan.dropped,
                "unpushed": plan.unpushed,
                "held": dict(plan.held),
                "points": [
                    {
                        "id": p.id,
                        "original": p.original,
                        "time": p.time,
                        "rules": list(p.reasons),
                        "replaces": p.replaces,
                        "docs": list(p.docs),
                    }
                    for p in plan.points
                ],
                "gc": stats,
                "saved": saved,
            }
        )
        return
    for line in plan.lines():
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing changed")
    elif plan.changes_anything:
        click.echo(f"forgot {plan.dropped:,} commits; kept {len(plan.points)} points on refs/gitstate/kept")
        if stats is not None:
            click.echo(f"gc: .git {stats['size_before'] / 1e6:.1f} MB -> {stats['size_after'] / 1e6:.1f} MB")
        else:
            click.echo("run 'gitstate gc' (or forget --prune) to reclaim the space")
    if save and dry_run:
        click.echo("dry run: the policy was not saved")
    elif save:
        state = f"committed as {saved[:8]}" if saved else "already stored"
        click.echo(f"saved the policy in .gitstate/retention.json ({state}); the background packer applies it")
