"""gitstate: a versioned state store whose state directory is a Git repository.

Programs write state (toggles, sessions, task queues, agent memory) through the library; writes land in memory at
once and each debounced flush becomes one Git commit. History gives backups, rollback, pre-migration snapshots and
an audit trail; a watcher commits hand edits; a Git remote gives off-machine backup and sharing.

What belongs here: the public names (``__all__``: :func:`open`, :func:`clone`, :class:`Store`, :func:`aopen`,
:class:`AsyncStore`, the history and diff records, the exception tree, ``__version__``), loaded on first use by
the module's ``__getattr__`` so that ``import gitstate`` pays only for :mod:`gitstate.errors`. What does not: any
implementation (the store in :mod:`gitstate.store`, the async API in :mod:`gitstate.aio`, history in
:mod:`gitstate.history`, the command line in :mod:`gitstate.cli`); the README's "How it works" maps the layers.

Example:
    >>> import gitstate, tempfile
    >>> with gitstate.open(tempfile.mkdtemp()) as store:
    ...     store.set("state.json", "services.slack", True)
    ...     store.get("state.json", "services.slack")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    BrokenRef,
    DecodeError,
    EncodeError,
    GitBusy,
    GitStateError,
    InvalidPath,
    KeyNotFound,
    LockError,
    MergeConflict,
    MigrationError,
    ObjectUnreadable,
    PushRejected,
    RemoteError,
    RepositoryError,
    RevisionNotFound,
    SaveError,
    SchemaMismatch,
    StoreClosed,
    StoreNotFound,
    UnsafeTree,
)

if TYPE_CHECKING:
    from .aio import AsyncStore, aopen
    from .docdiff import Change, Conflict
    from .history import Commit, Snapshot
    from .store import Store, clone, open

__all__ = [
    "AsyncStore",
    "BrokenRef",
    "Change",
    "Commit",
    "Conflict",
    "DecodeError",
    "EncodeError",
    "GitBusy",
    "GitStateError",
    "InvalidPath",
    "KeyNotFound",
    "LockError",
    "MergeConflict",
    "MigrationError",
    "ObjectUnreadable",
    "PushRejected",
    "RemoteError",
    "RepositoryError",
    "RevisionNotFound",
    "SaveError",
    "SchemaMismatch",
    "Snapshot",
    "Store",
    "StoreClosed",
    "StoreNotFound",
    "UnsafeTree",
    "__version__",
    "aopen",
    "clone",
    "open",
]

__version__ = "0.1.0"


_LAZY = {
    "open": "store",
    "Store": "store",
    "clone": "store",
    "Change": "docdiff",
    "Conflict": "docdiff",
}


def __getattr__(name: str) -> object:
    # Everything beyond the exception tree loads on first use, so `import gitstate` (and the CLI's start-up)
    # only pays for what it touches.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in ("Commit", "Snapshot"):
        from . import history

        return getattr(history, name)
    if name in ("aopen", "AsyncStore"):
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'gitstate' has no attribute {name!r}")
