"""The exception tree of gitstate.

Every error gitstate raises derives from :class:`GitStateError`, and each one says what went wrong and what the
user can do about it. Where callers expect a builtin, the error also derives from it::

    GitStateError (Exception)
    ├── InvalidPath (ValueError)        a document path that is unsafe or malformed
    ├── KeyNotFound (KeyError)          a document or key that does not exist
    ├── EncodeError (TypeError)         a value the document's codec cannot store
    ├── DecodeError (ValueError)        a file that does not parse (line and column when known)
    ├── RevisionNotFound (LookupError)  a revision (id, HEAD~N, snapshot, time) that names nothing
    ├── StoreNotFound                   no store at the path, and create=False
    ├── StoreClosed                     the store was used after close()
    ├── LockError                       the store's lock could not be taken
    ├── SaveError                       a flush failed (disk full, read-only...); pending writes are kept
    │   ├── SchemaMismatch              another process migrated the store: this program's writes are held
    │   └── GitBusy                     a git merge/rebase/... is in progress in the store: writes are held
    ├── RepositoryError                 the Git repository is damaged or unusable
    │   ├── BrokenRef                   a ref file that names no object id (never read as "no commits yet")
    │   └── ObjectUnreadable            an object that is missing or cannot be read back
    ├── UnsafeTree                      a commit names a path or entry gitstate will not write; nothing changed
    ├── RemoteError                     a push, pull or clone failed
    │   └── PushRejected                the remote moved: sync first
    ├── MergeConflict                   a merge rule of "fail" met a conflicting key
    └── MigrationError                  a migration step raised; nothing landed

Errors chain their cause (``raise ... from e``), so the dulwich or OS error stays visible in tracebacks.

What belongs here: the exception classes, their fields (``line``/``column``, ``ref``, ``sha``...) and the builtin
each one also derives from. What does not: deciding when to raise them (each module raises its own, chaining the
cause), turning them into one line on stderr (the CLI's root group in :mod:`gitstate.cli._common`), the doctor's
findings and advice (:mod:`gitstate.doctor`).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "BrokenRef",
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
    "StoreClosed",
    "StoreNotFound",
    "UnsafeTree",
]

logger = logging.getLogger("gitstate.errors")


class GitStateError(Exception):
    """Root of every error gitstate raises.

    Example:
        >>> try:
        ...     raise StoreNotFound("/nowhere")
        ... except GitStateError as e:
        ...     print(type(e).__name__)
        StoreNotFound
    """


class InvalidPath(GitStateError, ValueError):
    """A document path that is absolute, climbs out with ``..``, names ``.git``, holds control characters or
    goes through a symlink. Raised before any I/O.

    Attributes:
        path: the offending path, as given.
        reason: why it was refused.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid document path {path!r}: {reason}")


class KeyNotFound(GitStateError, KeyError):
    """A document or a key inside it that does not exist. Pass ``default=`` to ``get()`` to avoid it.

    Attributes:
        doc: the document path.
        key: the key as a tuple of parts (``()`` for the whole document).
    """

    def __init__(self, doc: str, key: tuple[str | int, ...] = (), detail: str = "") -> None:
        self.doc = doc
        self.key = key
        self.detail = detail
        super().__init__(doc, key)

    def __str__(self) -> str:
        where = self.doc if not self.key else f"{self.doc}: {'.'.join(str(p) for p in self.key)}"
        msg = f"not found: {where}"
        return f"{msg} ({self.detail})" if self.detail else msg


class EncodeError(GitStateError, TypeError):
    """A value the document's codec cannot store (raised in ``set()``, on the caller's thread)."""


class DecodeError(GitStateError, ValueError):
    """A document whose bytes do not parse with its codec.

    Attributes:
        doc: the document path.
        line: 1-based line of the error, when known.
        column: 1-based column of the error, when known.
        problem: the parser's description.
    """

    def __init__(self, doc: str, problem: str, *, line: int | None = None, column: int | None = None) -> None:
        self.doc = doc
        self.problem = problem
        self.line = line
        self.column = column
        where = doc
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {problem}")


class RevisionNotFound(GitStateError, LookupError):
    """A revision that names nothing: unknown id or prefix, ``HEAD~N`` past the root, unknown snapshot, or a time
    before the first commit."""

    def __init__(self, rev: str, detail: str = "") -> None:
        self.rev = rev
        super().__init__(f"unknown revision {rev!r}" + (f": {detail}" if detail else ""))


class StoreNotFound(GitStateError):
    """No state store at the path and ``create=False`` (or no path given and ``$GITSTATE_DIR`` unset)."""


class StoreClosed(GitStateError):
    """The store was used after ``close()``."""


class LockError(GitStateError):
    """The store's inter-process lock could not be taken in time."""


class SaveError(GitStateError):
    """A flush failed (disk full, read-only directory, permission denied). The pending writes stay in memory and
    the next flush retries them.

    Attributes:
        pending: number of writes still pending.
        docs: when only some documents failed (they could not be encoded), those documents; the others' writes
            were committed.
        commit: the commit the other documents' writes went into, if any.
    """

    def __init__(
        self, message: str, *, pending: int = 0, docs: tuple[str, ...] = (), commit: str | None = None
    ) -> None:
        self.pending = pending
        self.docs = docs
        self.commit = commit
        super().__init__(message)


class SchemaMismatch(SaveError):
    """The store's schema version is not the one this program writes: another process (or a pull, or a restore)
    migrated it while the program ran, or old code opened a newer store. Nothing was committed; pending writes
    stay in memory.

    What to do: restart the program with code for the store's schema, or drop the pending writes
    (``store.discard_pending()``) or check they fit, then ``store.expect_schema(found)``.

    Attributes:
        expected: the version the program works with.
        found: the version the store is at.
        pending: writes that were not committed.
    """

    def __init__(self, message: str, *, expected: int, found: int, pending: int = 0) -> None:
        self.expected = expected
        self.found = found
        super().__init__(message, pending=pending)


class GitBusy(SaveError):
    """A git operation (merge, rebase, cherry-pick, revert, bisect, or conflicts left in the index) is in
    progress in the store directory: git owns the work tree and the index until the user finishes it, so nothing
    was written. The pending writes stay in memory; the background flusher commits them on top of the result
    once git is done.

    What to do: finish the operation (``git merge --continue`` / ``git commit``, ``git rebase --continue``...)
    or abort it (``git merge --abort``...), then flush again.

    Attributes:
        operation: what git is doing (``merge``, ``rebase``, ``cherry-pick``, ``revert``, ``bisect``,
            ``detached HEAD``, ``unmerged index``).
        pending: writes held.
    """

    def __init__(self, message: str, *, operation: str, pending: int = 0) -> None:
        self.operation = operation
        super().__init__(message, pending=pending)


class RepositoryError(GitStateError):
    """The Git repository is damaged or in a state gitstate cannot use."""


class BrokenRef(RepositoryError):
    """A ref file that exists but names no object id (empty, zero-filled, garbage): a repository fault, never
    read as "no commits yet" (that would start a new root commit over the existing history).

    Attributes:
        ref: the ref, e.g. ``refs/heads/main``.
        problem: what is wrong with it.
    """

    def __init__(self, message: str, *, ref: str, problem: str) -> None:
        super().__init__(message)
        self.ref = ref
        self.problem = problem


class ObjectUnreadable(RepositoryError):
    """An object that is missing or cannot be read back (a corrupt loose file, a damaged pack).

    Attributes:
        sha: the object's id.
    """

    def __init__(self, message: str, *, sha: str) -> None:
        super().__init__(message)
        self.sha = sha


class UnsafeTree(GitStateError):
    """A commit (fetched, pulled, merged, restored or undone) names a tree entry that gitstate will not write to
    the work tree: a path that is absolute, climbs out with ``..``, names ``.git`` in any spelling, holds control
    characters, goes through a symlink or lies under ``.gitstate/`` without being the store's own metadata; or an
    entry that is a symlink, a submodule (gitlink) or an executable file. The whole operation was refused before
    anything was written: the work tree, the index and the branch are as they were.

    Attributes:
        entry: the offending path (as the tree spells it).
        reason: why it was refused.
    """

    def __init__(self, entry: str, reason: str, *, more: int = 0, what: str = "") -> None:
        self.entry = entry
        self.reason = reason
        self.more = more
        others = f" (and {more} other unsafe entr{'y' if more == 1 else 'ies'})" if more else ""
        super().__init__(
            f"refusing {what or 'to write the tree'}: entry {entry!r} {reason}{others}. Nothing was changed; "
            "fix the commit where it was made (remove or rename the entry) and try again"
        )


class RemoteError(GitStateError):
    """A push, pull, clone or connection to a remote failed. URLs in the message never carry credentials."""


class PushRejected(RemoteError):
    """The remote branch moved since the last pull; run ``sync`` (pull, then push)."""


class MergeConflict(GitStateError):
    """A merge with rule ``"fail"`` met keys that both sides changed.

    Attributes:
        conflicts: the conflicting keys with both values.
    """

    def __init__(self, message: str, conflicts: list[Any] | None = None) -> None:
        self.conflicts = conflicts or []
        super().__init__(message)


class MigrationError(GitStateError):
    """A migration step raised. The branch and the files are as they were before the migration; the
    pre-migration snapshot stays (``forget`` never drops a snapshot; only deleting it removes it).

    Attributes:
        version: the step that failed.
        snapshot: the name of the pre-migration snapshot that was kept, or None when none was taken (an empty
            store, or a dry run); the message says which.
    """

    def __init__(self, message: str, *, version: int | None = None, snapshot: str | None = None) -> None:
        self.version = version
        self.snapshot = snapshot
        super().__init__(message)
