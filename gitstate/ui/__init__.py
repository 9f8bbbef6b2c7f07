"""``gitstate ui``: a local web view of one store's history (timeline, documents at a point, diffs, key history,
search) with restore/undo/snapshot actions.

What belongs here: the HTTP server (standard library ``http.server``, no new dependency), its JSON endpoints and
the static page. Everything it reads or writes goes through the public :class:`gitstate.Store` API; nothing here
knows about Git objects.

What does not: the command line and opening the store (:mod:`gitstate.cli.ui`), history, restores and snapshots
themselves (the Store and :mod:`gitstate.history`). This ``__init__`` only re-exports :func:`make_server` and
:class:`UIServer` from :mod:`gitstate.ui.server`; the page's HTML, script and CSS are in ``gitstate/ui/static/``.
"""

from __future__ import annotations

from .server import UIServer, make_server

__all__ = ["UIServer", "make_server"]
