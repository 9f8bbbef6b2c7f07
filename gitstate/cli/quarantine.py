"""``gitstate quarantine``: hand edits that did not pass the gate, waiting for a human.

What belongs here: listing, showing and dropping entries through :class:`gitstate.direct.StoreDirectory`. What does
not: the entries themselves (:mod:`gitstate.quarantine`), the gate that sends an edit there (the store's ingest,
:mod:`gitstate.ingest`), the guarded write of the last good version (:mod:`gitstate.worktree`).
"""

from __future__ import annotations

import datetime as _dt

import click

from ._common import Context, emit_json, human_time, json_option, main, open_dir, pass_ctx

__all__ = ["quarantine_cmd"]


def _since(when: float) -> str:
    return human_time(_dt.datetime.fromtimestamp(when, _dt.UTC))


@main.group("quarantine", invoke_without_command=True)
@json_option
@click.pass_context
def quarantine_cmd(cctx: click.Context, as_json: bool) -> None:
    """List hand edits kept aside because they did not parse (or failed the gate).

    While an edit waits, the file on disk is left exactly as it was saved and programs' writes to that document
    are committed to history only; saving a version that parses merges it with them and clears the entry.

    \b
    Examples:
      gitstate quarantine
      gitstate quarantine show settings.yaml
      gitstate quarantine drop settings.yaml
    """
    if cctx.invoked_subcommand is not None:
        return
    ctx = cctx.find_object(Context)
    assert ctx is not None
    with open_dir(ctx) as d:
        entries = d.quarantined()
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    if not entries:
        click.echo("nothing in quarantine")
        return
    for e in entries:
        click.echo(f"{e.where}  since {_since(e.since)}  {e.error}")


@quarantine_cmd.command("show")
@click.argument("doc")
@pass_ctx
def quarantine_show(ctx: Context, doc: str) -> None:
    """Print the saved text of DOC's quarantined edit and why it was kept aside.

    \b
    Example:
      gitstate quarantine show settings.yaml
    """
    with open_dir(ctx) as d:
        entry = next((e for e in d.quarantined() if e.doc == doc), None)
        if entry is None:
            raise click.ClickException(f"{doc} is not in quarantine (see 'gitstate quarantine')")
        text = d.quarantine_text(doc)
    click.echo(f"# {entry.where}: {entry.error} (since {_since(entry.since)})", err=True)
    click.echo(text.decode("utf-8", "replace"), nl=not text.endswith(b"\n"))


@quarantine_cmd.command("drop")
@click.argument("doc")
@pass_ctx
def quarantine_drop(ctx: Context, doc: str) -> None:
    """Give up DOC's quarantined edit: put the last good version (with what programs wrote since) back on disk.

    \b
    Example:
      gitstate quarantine drop settings.yaml
    """
    with open_dir(ctx) as d:
        if not d.quarantine_drop(doc):
            raise click.ClickException(f"{doc} is not in quarantine (see 'gitstate quarantine')")
    click.echo(f"{doc}: put the committed version back on disk; its quarantined edit is dropped")
