"""The one guarded path to the work tree: every write or delete of a file in the store goes through :func:`apply`.

Trees reach the work tree from places gitstate does not control: a fetched or merged commit, an old commit
that a restore or an undo brings back, a commit a human made with plain git. Whatever a tree names, gitstate
writes only what the API itself could write, and it checks *every* entry of an operation before it touches
anything: one bad entry refuses the whole operation with :class:`~gitstate.errors.UnsafeTree`, naming it.

An entry is refused when

* its path fails :func:`gitstate.paths.validate_doc_path` (absolute, ``..``, ``.git`` in any case or spelling
  including ``GIT~1`` and trailing dots/spaces, NUL or control characters, backslashes...), or a tree entry name
  holds a ``/`` or is empty (the path would not mean what the tree says);
* it lies under ``.gitstate/`` and is not one of the store's own metadata files
  (:data:`gitstate.paths.METADATA_DOCS`);
* it goes through a symlink (or a non-directory) in the work tree, or lands on something that is not a regular
  file;
* it is a symlink (mode ``120000``), a submodule/gitlink (``160000``), an executable (``100755``) or any mode
  other than a plain file or a directory. A state store holds data: an executable is refused rather than
  written without its mode (which would leave ``git status`` showing a mode change) or with it (a file the
  next ``./x`` runs).

Trees are checked with :func:`check_trees` BEFORE a ref moves (pull, merge, restore, undo, clone), so a refused
tree leaves the branch, the index and the work tree as they were; only the remote-tracking ref and the fetched
objects stay (they are what was fetched, not what the store holds). The cost follows the change: subtrees equal
on both sides are skipped without being read.

What belongs here: the entry checks (:func:`check_path`, :func:`check_paths`, :func:`check_trees`,
:func:`tree_changes`), :func:`apply` (the writer of work-tree files; :func:`start_apply` runs it beside other
work) and :func:`checkout` from one tree to another.
What does not: path syntax and the atomic file write (:mod:`gitstate.paths`), reading trees and the Git index
(:mod:`gitstate.repo`), deciding what to write: the flusher, ingest, history (restore, undo) and remotes (pull,
clone) call in.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Final

from .errors import InvalidPath, UnsafeTree
from .paths import METADATA_DOCS, atomic_write, fsync_dirs, is_metadata_path, remove_file, validate_doc_path
from .repo import FILE_MODE, Repository

__all__ = ["Content", "Entry", "apply", "check_path", "check_paths", "check_trees", "checkout", "tree_changes"]

logger = logging.getLogger("gitstate.worktree")

#: A tree entry: (mode, object id).
Entry = tuple[int, str]
#: New content of a file: bytes, a function that reads them (so a big checkout holds one file at a time), or None
#: to delete the file.
Content = bytes | Callable[[], bytes] | None

_MODE_NAMES: Final = {
    0o120000: "is a symlink; symlinks are not written to the store",
    0o160000: "is a submodule (gitlink); submodules are not supported in a store",
    0o100755: "is an executable file; a store holds data, not programs (make it non-executable: "
    "git update-index --chmod=-x)",
}


def check_path(doc: str, mode: int | None = None) -> None:
    """Refuse a path (and, for a tree entry, its ``mode``) that may not be written to or deleted from the work
    tree. Pure: touches no file.

    Raises:
        UnsafeTree: see the module docstring for the rules.

    Example:
        >>> check_path("state.json", 0o100644)
        >>> check_path(".git/config")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gitstate.errors.UnsafeTree: refusing to write the tree: entry '.git/config' '.git' is reserved ...
    """
    try:
        validate_doc_path(doc)
    except InvalidPath as e:
        raise UnsafeTree(doc, e.reason) from e
    if is_metadata_path(doc) and doc not in METADATA_DOCS:
        raise UnsafeTree(doc, "lies under .gitstate/, which holds only gitstate's own metadata")
    if mode is not None and mode != FILE_MODE:
        raise UnsafeTree(doc, _MODE_NAMES.get(mode, f"has the unsupported mode {mode:o}"))


def tree_changes(
    repo: Repository, old_tree: str | None, new_tree: str | None
) -> dict[str, tuple[Entry | None, Entry | None]]:
    """Every non-directory entry, of any mode, that differs between two trees: path -> (old entry, new entry),
    None where a side lacks it (:meth:`Repository.changed_entries`). Equal subtrees are skipped unread.

    Raises:
        UnsafeTree: a tree entry name is empty or holds a ``/`` (the path would not say what the tree holds).
    """
    bad: list[str] = []
    out = repo.changed_entries(old_tree, new_tree, bad_names=bad)
    if bad:
        raise UnsafeTree(min(bad), "is not a valid tree entry name (empty, or holds a '/')", more=len(bad) - 1)
    return out


def check_trees(
    repo: Repository,
    old_tree: str | None,
    new_tree: str | None,
    *,
    what: str,
    selected: Callable[[str], bool] | None = None,
) -> dict[str, tuple[Entry | None, Entry | None]]:
    """Check every entry that going from ``old_tree`` to ``new_tree`` would write or delete (only the paths
    ``selected`` accepts, when given); returns :func:`tree_changes` for them.

    Raises:
        UnsafeTree: the first bad entry (in path order), with the count of the others; ``what`` names the
            refused operation in the message.
    """
    try:
        changes = tree_changes(repo, old_tree, new_tree)
    except UnsafeTree as e:
        raise UnsafeTree(e.entry, e.reason, more=e.more, what=what) from e
    if selected is not None:
        changes = {p: c for p, c in changes.items() if selected(p)}
    check_paths(((p, e[0] if e else None) for p, c in changes.items() for e in c), what=what)
    return changes


def check_paths(entries: Iterable[tuple[str, int | None]], *, what: str) -> None:
    """Check (path, tree entry mode or None) pairs with :func:`check_path`. Pure: touches no file.

    Raises:
        UnsafeTree: the first bad entry in path order, with the count of the others; ``what`` names the
            refused operation in the message.
    """
    first: UnsafeTree | None = None
    bad: set[str] = set()
    for path, mode in entries:
        try:
            check_path(path, mode)
        except UnsafeTree as e:
            bad.add(path)
            if first is None or path < first.entry:
                first = e
    if first is not None:
        raise UnsafeTree(first.entry, first.reason, more=len(bad) - 1, what=what) from first


def _check_on_disk(root: Path, doc: str, *, write: bool, deleting: set[str]) -> None:
    """Refuse a path that goes through a symlink or a file, or lands on something other than a regular file.
    A file (or directory) that this same operation deletes may stand in the way: it is gone by then."""
    parts = doc.split("/")
    current = root
    for i, part in enumerate(parts):
        current = current / part
        prefix = "/".join(parts[: i + 1])
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise UnsafeTree(doc, f"{'/'.join(parts[:i])!r} is not a directory in the work tree") from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeTree(doc, f"{prefix!r} is a symlink in the work tree; symlinks are not followed")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            if prefix in deleting:
                return
            raise UnsafeTree(doc, f"{prefix!r} is a file in the work tree, not a directory")
        if last and not stat.S_ISREG(st.st_mode):
            if write and stat.S_ISDIR(st.st_mode) and any(d.startswith(doc + "/") for d in deleting):
                return
            raise UnsafeTree(doc, "exists in the work tree and is not a regular file")


def apply(
    root: Path,
    files: Mapping[str, Content],
    *,
    modes: Mapping[str, int] | None = None,
    fsync: bool = True,
    what: str = "to write the work tree",
) -> None:
    """THE writer of work-tree files: check every path of ``files`` (path -> content, None deletes), with its
    tree entry mode from ``modes`` when it comes from a tree, and what is on disk at it; then delete, then write
    (atomically, 0600 for new files). Nothing is touched unless every entry passes.

    Raises:
        UnsafeTree: an entry may not be written or deleted (named in the message); nothing was changed.
        OSError: the disk failed while writing (earlier files of the batch may be written).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> apply(root, {"a/b.json": b"{}\\n"}); (root / "a" / "b.json").read_bytes()
        b'{}\\n'
        >>> apply(root, {"a/b.json": None, "../x.json": b"1"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gitstate.errors.UnsafeTree: refusing to write the work tree: entry '../x.json' '..' is not allowed...
        >>> (root / "a" / "b.json").exists()
        True
    """
    modes = modes or {}
    check_paths(((p, modes.get(p)) for p in files), what=what)
    deleting = {p for p, c in files.items() if c is None}
    try:
        for p, c in sorted(files.items()):
            _check_on_disk(root, p, write=c is not None, deleting=deleting)
    except UnsafeTree as e:
        raise UnsafeTree(e.entry, e.reason, what=what) from e
    # Deletes first, deepest first: a file that becomes a directory (or the reverse) makes room for itself.
    # Each file is fsynced as it is written; each directory once, at the end (a restore of many files in one
    # directory: one directory fsync, not one per file).
    dirs: set[Path] = set()
    for p in sorted(deleting, key=lambda d: (-d.count("/"), d)):
        remove_file(root, p, fsync=fsync, dirs=dirs)
    for p, c in sorted(files.items()):
        if c is not None:
            atomic_write(root, p, c if isinstance(c, bytes) else c(), fsync=fsync, dirs=dirs)
    fsync_dirs(dirs)


#: From this many bytes on, :func:`start_apply` writes in a thread of its own.
BACKGROUND_BYTES: Final = 1 << 20


class Applying:
    """A :func:`apply` that :func:`start_apply` started: :meth:`wait` for its outcome, :meth:`join` to be sure
    it is over (whatever its outcome)."""

    def __init__(self, thread: threading.Thread | None, outcome: list[BaseException]) -> None:
        self._thread = thread
        self._outcome = outcome

    def join(self) -> None:
        """Return once the write is over; raises nothing."""
        if self._thread is not None:
            self._thread.join()

    def wait(self) -> None:
        """Return once the write is over; raise what :func:`apply` raised."""
        self.join()
        if self._outcome:
            raise self._outcome[0]


def start_apply(root: Path, files: Mapping[str, bytes | None], *, fsync: bool = True) -> Applying:
    """:func:`apply` of ``files``, in a thread when they hold at least :data:`BACKGROUND_BYTES` (writing a big
    file releases the interpreter's lock, so a flush compresses and hashes the commit's objects meanwhile), else
    right here. A write in a thread raises what it raises from :meth:`Applying.wait`; one made here raises it
    from this call, as :func:`apply` does."""
    if sum(len(c) for c in files.values() if c is not None) < BACKGROUND_BYTES:
        apply(root, files, fsync=fsync)
        return Applying(None, [])
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            apply(root, files, fsync=fsync)
        except BaseException as e:  # handed to wait(), in the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=run, name="gitstate-worktree", daemon=True)
    thread.start()
    return Applying(thread, outcome)


def checkout(
    repo: Repository,
    old_tree: str | None,
    new_tree: str,
    *,
    fsync: bool = True,
    what: str,
    keep: AbstractSet[str] = frozenset(),
) -> dict[str, str | None]:
    """Bring the work tree from ``old_tree`` to ``new_tree`` through :func:`apply`, after checking every
    changed entry; returns the changed paths -> new blob id (None: deleted), for the index. The files of
    ``keep`` (quarantined documents: a human's save that does not parse) are left as they are.

    Raises:
        UnsafeTree: an entry of either tree may not be written or deleted; nothing was changed.
    """
    changes = check_trees(repo, old_tree, new_tree, what=what)

    def reader(sha: str) -> Callable[[], bytes]:
        return lambda: repo.read_blob(sha)

    files: dict[str, Content] = {
        p: None if new is None else reader(new[1]) for p, (_, new) in changes.items() if p not in keep
    }
    apply(repo.root, files, modes={p: new[0] for p, (_, new) in changes.items() if new}, fsync=fsync, what=what)
    return {p: None if new is None else new[1] for p, (_, new) in changes.items()}
