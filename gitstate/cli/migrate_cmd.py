"""The ``migrate`` command: run the steps a Python file defines as ``migrations = {version: fn}``.

What belongs here: the ``migrate`` command's arguments (FILE, ``--dry-run``, ``--yaml11``) and printing the plan
or the result. What does not: loading a migration file, planning and running the steps (:mod:`gitstate.migrate`),
the YAML 1.1 conversion (:mod:`gitstate.yaml11`), rolling back (``gitstate restore``, :mod:`gitstate.cli.history`).
"""

from __future__ import annotations

import logging

import click

from ._common import Context, emit_json, json_option, main, open_store, pass_ctx

__all__ = ["migrate_cmd"]

logger = logging.getLogger("gitstate.cli")


@main.command("migrate")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--dry-run", is_flag=True, help="Print the changes the steps would make; change nothing.")
@click.option(
    "--yaml11",
    is_flag=True,
    help="Instead of steps: give the store's YAML documents the meaning a YAML 1.1 reader gave them "
    "(NO -> false, 0777 -> 511...); only those values' text changes, after a snapshot pre-yaml12.",
)
@json_option
@pass_ctx
def migrate_cmd(ctx: Context, file: str | None, dry_run: bool, yaml11: bool, as_json: bool) -> None:
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
      gitstate migrate --yaml11 --dry-run

    gitstate reads YAML with YAML 1.2 rules (yes/no/on/off are strings, 0777 is 777). With --yaml11, files
    written for an older YAML 1.1 tool keep the meaning that tool gave them: each value that reads differently
    is rewritten (comments and layout stay), in one commit; roll back with 'gitstate restore pre-yaml12'.
    """
    from .. import migrate as _migrate

    if yaml11:
        if file is not None:
            raise click.UsageError("give either FILE (migration steps) or --yaml11, not both")
        _convert_yaml11(ctx, dry_run=dry_run, as_json=as_json)
        return
    if file is None:
        raise click.UsageError("missing FILE (a Python file defining migrations = {version: fn}), or --yaml11")
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


def _convert_yaml11(ctx: Context, *, dry_run: bool, as_json: bool) -> None:
    """``migrate --yaml11``: see :func:`gitstate.yaml11.convert`."""
    from .. import yaml11

    with open_store(ctx) as store:
        done = yaml11.convert(store, dry_run=dry_run)
    if as_json:
        emit_json({**done.to_dict(), "dry_run": dry_run})
        return
    for doc, why in sorted(done.skipped.items()):
        click.echo(f"skipped {doc}: {why}", err=True)
    if not done.files:
        click.echo("no YAML document reads differently under YAML 1.1; nothing to convert")
        return
    if dry_run:
        click.echo(f"would convert {len(done.files)} YAML document(s):")
    elif done.commit is not None:
        click.echo(f"snapshot {done.snapshot}")
        click.echo(f"{done.commit[:8]} converted {len(done.files)} YAML document(s):")
    for line in done.lines():
        click.echo(f"  {line}")
    if dry_run:
        click.echo("dry run: nothing was changed")
    else:
        click.echo(f"roll back with: gitstate restore {done.snapshot}")
