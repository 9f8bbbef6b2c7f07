"""The ``gitstate`` command line (click only: it opens the library, calls it and formats the result).

Commands live in the modules of this package, grouped by area; each registers itself on :data:`main`. Errors from
the library (:class:`~gitstate.errors.GitStateError`) become one line on stderr and exit code 1, in one place
(:class:`_Group`); usage errors exit 2.
"""

from __future__ import annotations

import importlib
import logging

from ._common import main

__all__ = ["main"]

logger = logging.getLogger("gitstate.cli")

# Area modules register their commands on `main` when imported.
for _area in ("core", "history", "watch", "remote", "maintenance", "migrate_cmd"):
    try:
        importlib.import_module(f"{__name__}.{_area}")
    except ModuleNotFoundError as _e:  # an area not built yet
        if _e.name != f"{__name__}.{_area}":
            raise
