"""The ``migrate`` command: run the steps a Python file defines as ``migrations = {version: fn}``."""

from __future__ import annotations

import logging

import click

from ._common import Context, emit_json, json_option, main, open_store, pass_ctx

__all__ = ["migrate_cmd"]

logger = logging.getLogger("gitstate.cli")


@main.command("migrate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the changes the steps would make; change nothing.")
@json_option
@pass_ctx
def migrate_cmd(ctx: Context, file: str, dry_run: bool, as_json: bool) -> None:
    """Run the migration steps FILE defines as ``migrations = {version: fn}``.

    Every step above the store's schema version runs, in order, after a snapshot named
    pre-migration-vCUR-to-vTARGET; each step lands as one commit, or, if one raises, nothing lands.
    A second run does nothing. Roll back with 'gitstate restore pre-migration-vCUR-to-vTARGET'.

    FILE runs in a fresh namespace (its `if __name__ == "__main__":` block does not). A step is a
    function fn(tx); tx has get/set/delete/update/append/docs.

    \b
    Examples:
      gitstate migrate migrations.py --dry-run
      gitstate migrate migrations.py
      gitstate restore pre-migration-v1-to-v2
    """
    from .. import migrate as _migrate

    steps = _migrate.load_steps(file)
    with open_store(ctx) as store:
        if dry_run:
            plan = _migrate.plan(store, steps)
            if as_json:
                emit_json(plan.to_dict())
                return
            if not plan.steps:
                click.echo(f"already at schema version {plan.current}; nothing to migrate")
                return
            snap = f" (after snapshot {plan.snapshot})" if plan.snapshot else ""
            click.echo(f"would migrate schema v{plan.current} -> v{plan.target} in {len(plan.steps)} commit(s){snap}:")
            for line in plan.lines():
                click.echo(f"  {line}")
            click.echo("dry run: nothing was changed")
            return
        result = _migrate.apply(store, steps)
    if as_json:
        emit_json(
            {
                "current": result.current,
                "target": result.target,
                "snapshot": result.snapshot,
                "commits": result.commits,
                "steps": [s.to_dict() for s in result.plan.steps],
            }
        )
        return
    if not result.commits:
        click.echo(f"already at schema version {result.current}; nothing to migrate")
        return
    if result.snapshot:
        click.echo(f"snapshot {result.snapshot}")
    for step, commit in zip(result.plan.steps, result.commits, strict=True):
        n = len(step.changes)
        click.echo(f"{commit[:8]} {step.subject} ({n} change{'s' if n != 1 else ''})")
    click.echo(f"schema version {result.target}")
    if result.snapshot:
        click.echo(f"roll back with: gitstate restore {result.snapshot}")
