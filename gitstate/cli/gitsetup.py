"""Commands that connect the user's own git to gitstate: ``setup-git``, and ``merge-driver`` / ``textconv``,
which git runs (hidden from the command list). The work is done by :mod:`gitstate.gitmerge`.

What belongs here: the click commands ``setup-git``, ``merge-driver`` and ``textconv``, their options and output
(:func:`report_setup_git` also serves ``init --setup-git`` and ``clone --setup-git``). What does not: what git is
told and how a document is merged or printed (:func:`gitstate.gitmerge.setup_git`,
:func:`~gitstate.gitmerge.merge_driver`, :func:`~gitstate.gitmerge.textconv`), output rules
(:mod:`gitstate.cli._common`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._common import Context, emit_json, json_option, main, pass_ctx, require_store

__all__ = ["merge_driver_cmd", "setup_git_cmd", "textconv_cmd"]


@main.command("setup-git")
@click.option(
    "--command",
    default="gitstate",
    show_default=True,
    help="How git should run gitstate (an absolute path if gitstate is not on git's PATH).",
)
@json_option
@pass_ctx
def setup_git_cmd(ctx: Context, command: str, as_json: bool) -> None:
    """Make plain git merge and diff the store's JSON/YAML documents key by key.

    Writes .gitattributes and the store's LOCAL git config (.git/config): `git merge`, `git pull` and
    `git rebase` then merge documents with the same rules as `gitstate sync`, and `git diff` / `git log -p`
    show key-level changes. gitstate itself never runs anything from repository config.

    \b
    Examples:
      gitstate setup-git
      git pull            # documents now merge key by key
    """
    from ..gitmerge import setup_git

    require_store(ctx.path)
    result = setup_git(ctx.path, command=command)
    if as_json:
        emit_json(
            {
                "attributes": str(result.attributes),
                "attributes_changed": result.attributes_changed,
                "config": str(result.config),
                "settings": result.settings,
            }
        )
        return
    _print_result(result)


def report_setup_git(path: Path, command: str = "gitstate", *, quiet: bool = False) -> None:
    """Run :func:`gitstate.gitmerge.setup_git` for the store at ``path`` and print what it wrote (unless
    ``quiet``), for ``init --setup-git`` and ``clone --setup-git``."""
    from ..gitmerge import setup_git

    result = setup_git(path, command=command)
    if not quiet:
        _print_result(result)


def _print_result(result: Any) -> None:
    state = "updated" if result.attributes_changed else "already set up"
    click.echo(f"{result.attributes}: {state}")
    for name, value in result.settings.items():
        click.echo(f"{result.config}: {name} = {value}")


@main.command("merge-driver", hidden=True)
@click.argument("base", type=click.Path(exists=True, dir_okay=False))
@click.argument("ours", type=click.Path(exists=True, dir_okay=False))
@click.argument("theirs", type=click.Path(exists=True, dir_okay=False))
@click.argument("path")
def merge_driver_cmd(base: str, ours: str, theirs: str, path: str) -> None:
    """git's merge driver (%O %A %B %P): merge a document key by key into OURS; exit 1 on a conflict.

    Git runs this (after `gitstate setup-git`); it merges with the rules of `gitstate sync` and writes the result
    in OURS's own layout. A key both sides changed differently is a conflict: both values are in the file
    between <<<<<<< and >>>>>>> and git reports the file as conflicted.

    \b
    Example (what git runs for state.json during a merge):
      gitstate merge-driver .merge_file_base .merge_file_ours .merge_file_theirs state.json
    """
    from ..gitmerge import merge_driver

    status = merge_driver(base, ours, theirs, path)
    if status:
        click.echo(f"gitstate: {path}: conflicting values; both are in the file between <<<<<<< and >>>>>>>", err=True)
    sys.exit(status)


@main.command("textconv", hidden=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def textconv_cmd(file: str) -> None:
    """git's diff textconv: print a document as one `key: value` line per leaf.

    Git runs this for `git diff` / `git log -p` after `gitstate setup-git`, so changes read key by key.

    \b
    Example:
      gitstate textconv state.json
    """
    from ..gitmerge import textconv

    click.echo(textconv(file), nl=False)
