"""The ``gitstate`` command line (click only: it opens the library, calls it and formats the result).

Commands live in the modules of this package, grouped by area; each registers itself on :data:`main` when
imported, and :data:`main` imports only the module of the command that runs (``_common.COMMAND_MODULES``).
Errors from the library (:class:`~gitstate.errors.GitStateError`) become one line on stderr and exit code 1, in
one place (:class:`_Group`); usage errors exit 2.

What belongs here: :func:`run`, the entry point of ``gitstate`` and ``python -m gitstate``, and the re-export of
:data:`main`. What does not: the root group, its options and error handling (:mod:`gitstate.cli._common`), the
commands (one module per area: ``core``, ``history``, ``watch``, ``remote``, ``maintenance``, ``migrate_cmd``,
``retention``, ``quarantine``, ``gitsetup``, ``ui``), anything that reads or writes a store (the library).
"""

from __future__ import annotations

import gc

from ._common import main

__all__ = ["main", "run"]


def run() -> None:
    """The ``gitstate`` command's entry point (also ``python -m gitstate``): :data:`main`, then a quick exit.

    A command that read a long history leaves ~100,000 objects alive, and the interpreter's last garbage
    collection at exit would scan them all: a third of the wall time of ``gitstate log`` over 10,000 commits.
    They are frozen (moved out of the collector's reach) instead. ``atexit`` handlers, such as a store's final
    flush, still run, and objects are still freed; only cyclic garbage left at exit is not collected.

    Call :data:`main` (a click group) to run the CLI inside a longer-lived process.
    """
    try:
        main()
    finally:
        gc.freeze()
