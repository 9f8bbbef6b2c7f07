"""The ``ui`` command: serve a local web view of one store (see :mod:`gitstate.ui`).

What belongs here: the command line of ``gitstate ui`` (port, ``--open``, ``--watch``), opening the store in
immediate mode with the OS user as author, and serving until Ctrl-C. What does not: the server and the page
(:mod:`gitstate.ui`, :mod:`gitstate.ui.server`), watching files (:mod:`gitstate.watcher`, started by the store).
"""

from __future__ import annotations

import getpass
import socket

import click

from ._common import Context, main, open_store, pass_ctx

__all__ = ["ui_cmd"]


@main.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: any free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--watch", is_flag=True, help="Also commit hand edits of the files as they happen (as `gitstate watch`).")
@pass_ctx
def ui_cmd(ctx: Context, port: int, open_browser: bool, watch: bool) -> None:
    """Serve a local web view of the store's history on 127.0.0.1 (until Ctrl-C).

    The printed URL carries a random token; only requests presenting it are served.

    \b
    Examples:
      gitstate ui
      gitstate -C ./state ui --port 8765 --open
      gitstate ui --watch      # hand edits are committed, and shown, as they are saved
    """
    from ..ui import make_server

    # Actions taken from the page are a person's: their commits carry the OS user as author.
    with open_store(ctx, durability="immediate", author=_person(), watch=watch) as store:
        server = make_server(store, port=port)
        click.echo(f"gitstate ui serving {ctx.path} at {server.url}")
        click.echo("Press Ctrl-C to stop.")
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def _person() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"{user} <{user}@{socket.gethostname() or 'localhost'}>"
