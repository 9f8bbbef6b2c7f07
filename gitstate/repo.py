"""The Git repository under a store: :class:`Repository`, the one door to Git's on-disk formats (with dulwich).

What belongs here: the front of the class: opening and creating, HEAD and the branch, refs (read, compare-and-swap
update through Git's lock files, packed-refs, reflog), tags and commits of changed files. The rest of the class
lives in modules of one job each, which :class:`Repository` inherits: ``repo_objects`` (objects, blob/tree/commit
caches, trees), ``repo_index`` (the Git index and the work-tree scan), ``repo_lock`` (the store's write lock and
stale lock files); merge bases and ancestry are in ``ancestry``. What does not: documents and codecs (the store),
the history index (``history_index.py``), remotes (``remote/``).

What it does, and the traps it avoids (see ARCHITECTURE.md):

* **No porcelain.** Commits are built from blobs: only the trees on the changed paths are rebuilt, so a flush
  costs the same in a store of ten files or ten thousand. Nothing from the repository's config or hooks is ever
  executed (dulwich's porcelain runs ``post-commit`` hooks and ``filter.*.clean`` commands).
* **One writer at a time, across processes.** :meth:`Repository.lock` takes an ``flock`` on
  ``.git/gitstate.lock`` for the whole read-modify-write, and the branch moves with a compare-and-swap through
  Git's own lock-file protocol, so real ``git`` running beside us is respected too. gitstate keeps its own ref
  update (not dulwich's) for the fsync of the ref file and its directory before a commit is reported.
* **Durable.** Loose objects, refs and the directories that hold them are fsynced before a commit is reported.
* **Stale locks.** A ``*.lock`` file left by a killed process is removed only when provably stale: we hold the
  store lock, and no live process has the file open.
* **Index kept cheap.** The Git index is parsed once and updated entry by entry, then written with one join, so
  ``git status`` stays clean without dulwich's O(n) index writer on every flush.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import BrokenRef, ObjectUnreadable, RepositoryError, RevisionNotFound
from .paths import fsync_dir
from .repo_index import OWN_EXCLUDE, GitIndex, RepositoryIndex, index_has_conflicts
from .repo_lock import RepositoryLock
from .repo_objects import (
    EMPTY_TREE,
    FILE_MODE,
    HEX40,
    CommitInfo,
    TagInfo,
    blob_id,
    fmt_person,
    load_cache,
    save_cache,
    warn_once,
)
from .repo_trees import TreePatcher

if TYPE_CHECKING:  # dulwich is imported where objects are touched: `gitstate log` reads refs and the index only
    from dulwich.objects import ShaFile, Tree

    from .repo_packs import Deflating  # and zlib: loaded by the first durable flush, not by `gitstate log`

__all__ = [
    "EMPTY_TREE",
    "FILE_MODE",
    "BrokenRef",
    "CommitInfo",
    "ObjectUnreadable",
    "Repository",
    "TagInfo",
    "blob_id",
    "git_operation_advice",
    "git_operation_in_progress",
    "index_has_conflicts",
]


logger = logging.getLogger("gitstate.repo")

#: In ``.git/gitstate/``: what each tag object says, by object id (see Repository.tags).
TAGS_FILE: Final = "tags.json"
#: What HEAD may name (git's ref rules, narrowed): a repair writes this ref, so it must stay inside refs/heads/.
_BRANCH_REF: Final = re.compile(r"refs/heads/[A-Za-z0-9_][A-Za-z0-9._/-]*")


#: Files and directories git leaves in ``.git`` while an operation waits for the user, and what they mean.
_GIT_OPERATION_MARKERS: Final = (
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("MERGE_HEAD", "merge"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("BISECT_LOG", "bisect"),
)


def git_operation_in_progress(git_dir: Path) -> str | None:
    """The git operation under way in ``git_dir`` (``merge``, ``rebase``, ``cherry-pick``, ``revert``,
    ``bisect``), ``detached HEAD`` when HEAD is not on a branch, ``unmerged index`` when the index holds conflict
    stages (a ``git stash pop`` that conflicted), or None. A few ``stat`` calls, plus one read of the index.

    Example:
        >>> import tempfile
        >>> git_operation_in_progress(Repository.open(tempfile.mkdtemp()).git_dir) is None
        True
    """
    op = _git_state_files(git_dir)
    if op is not None:
        return op
    try:
        data = (git_dir / "index").read_bytes()
    except OSError:
        return None
    return "unmerged index" if index_has_conflicts(data) else None


def _git_state_files(git_dir: Path) -> str | None:
    """The operation git's state files in ``git_dir`` name (markers, then a detached HEAD), or None."""
    markers, head_path = _state_file_paths(os.fspath(git_dir))
    for path, op in markers:
        if os.path.lexists(path):
            return op
    try:
        with open(head_path, "rb") as f:
            head = f.read()
    except OSError:
        head = b"ref: "
    return None if head.startswith(b"ref: ") else "detached HEAD"


@functools.lru_cache(maxsize=64)
def _state_file_paths(git_dir: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """The marker files' paths in ``git_dir`` and HEAD's, joined once (every flush checks them)."""
    markers = tuple((os.path.join(git_dir, name), op) for name, op in _GIT_OPERATION_MARKERS)
    return markers, os.path.join(git_dir, "HEAD")


def git_operation_advice(operation: str) -> str:
    """How a user finishes or abandons ``operation`` (a value of :func:`git_operation_in_progress`)."""
    if operation in ("merge", "cherry-pick", "revert", "rebase"):
        return (
            f"resolve the conflicts, 'git add' the files, then 'git {operation} --continue' (or 'git commit'); "
            f"or give up with 'git {operation} --abort'"
        )
    if operation == "bisect":
        return "end it with 'git bisect reset'"
    if operation == "detached HEAD":
        return "check out the store's branch again ('git switch main')"
    return "resolve the conflicts and 'git add' the files (or 'git checkout -- FILE' to drop them)"


class RefUpdate:
    """A ref's lock file taken and written by :meth:`Repository.lock_ref`: :meth:`install` moves the ref to the new
    id (rename, then the directory's fsync), :meth:`abandon` removes the lock. One of the two must be called."""

    def __init__(
        self, repo: Repository, ref: str, path: Path, lock: Path, fd: int, new: str | None, *, fsync: bool
    ) -> None:
        self._repo, self.ref, self._path, self._lock, self._fd, self.new = repo, ref, path, lock, fd, new
        self._fsync = fsync
        self._syncing: threading.Thread | None = None
        self._sync_error: list[BaseException] = []

    def write(self, *, in_thread: bool = False) -> None:
        """Write the new id into the lock file and fsync it, here or (``in_thread``) in a thread that
        :meth:`install` waits for."""
        if self.new is None:
            return
        os.write(self._fd, f"{self.new}\n".encode())
        if not self._fsync:
            return
        if in_thread:
            self._syncing = threading.Thread(target=self._sync, name="gitstate-ref-fsync", daemon=True)
            self._syncing.start()
        else:
            os.fsync(self._fd)

    def _sync(self) -> None:
        try:
            os.fsync(self._fd)
        except BaseException as e:  # handed to install(), which raises it in the caller's thread
            self._sync_error.append(e)

    def _close(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def install(self) -> None:
        """Move the ref (once the lock file is on disk): rename the lock over it, fsync the directory; a deletion
        removes the loose ref and its line in ``packed-refs``."""
        try:
            self._close()
            if self._sync_error:
                raise self._sync_error[0]
            if self.new is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path)
                os.unlink(self._lock)
                self._repo._remove_packed_ref(self.ref)
            else:
                if self.ref == self._repo.branch_ref:
                    self._repo.last_branch_write = self.new
                os.replace(self._lock, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._lock)
            raise
        if self._fsync:
            fsync_dir(self._path.parent)

    def abandon(self) -> None:
        """Give the lock back without moving the ref."""
        with contextlib.suppress(OSError):
            self._close()
        with contextlib.suppress(OSError):
            os.unlink(self._lock)


class Repository(RepositoryIndex, RepositoryLock):
    """A Git repository used as a state store. Thread-safe; use :meth:`lock` around read-modify-write.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp(), create=True)
        >>> repo.head() is None
        True
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git_dir = root / ".git"
        self.meta_dir = self.git_dir / "gitstate"
        self._mutex = threading.RLock()  # dulwich objects are not thread-safe; held only around object access
        self._write_mutex = threading.RLock()  # threads of this process queue here before the flock
        self._lock_owner: int | None = None
        self._lock_depth = 0
        self._lock_fd: int | None = None
        #: The last id this handle wrote to the branch (see Store._maybe_refresh: a reader must not mistake a
        #: commit its own flush is still recording for another process's).
        self.last_branch_write: str | None = None
        if not os.path.isdir(self.git_dir / "objects"):
            raise RepositoryError(f"{root}: cannot open the Git object store: {self.git_dir / 'objects'} is missing")
        self._object_store: Any = None  # opened on first object access (see _objects)
        self._tree_cache: OrderedDict[str, Tree] = OrderedDict()
        self._tree_patcher = TreePatcher()
        self._paths_cache: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._blob_cache: OrderedDict[str, bytes] = OrderedDict()  # blob id -> content (see BLOB_CACHE_BYTES)
        self._blob_cache_bytes = 0
        self._commit_cache: OrderedDict[str, CommitInfo] = OrderedDict()
        self._shallow_cache = None
        self._shallow_serial = -1  # the lock hold in which .git/shallow was last checked (see _shallow_ids)
        self._lock_serial = 0
        self.index = GitIndex(self.git_dir / "index")
        self._index_behind = False
        # Index updates not yet written (path -> (blob id, stat) or None for a removal): see sync_index().
        self._deferred: dict[bytes, tuple[str, os.stat_result | None] | None] = {}
        self._conflicts_checked: tuple[int, int, int] | None = None  # index stamp of the last conflict scan
        self._index_conflicts = False
        self.branch_ref = self._read_head_symref()

    # ----------------------------------------------------------------- creation
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True, branch: str = "main") -> Repository:
        """Open the repository at ``path``; create it (0700 directories) when missing and ``create``.

        Raises:
            RepositoryError: ``path`` exists but is not a usable repository (a bare one, a file...).
        """
        root = Path(path).absolute()
        git_dir = root / ".git"
        if git_dir.is_file():
            raise RepositoryError(
                f"{root}: .git is a file (a linked worktree or submodule); gitstate needs its own repository"
            )
        if not git_dir.is_dir():
            if not create:
                raise RepositoryError(f"{root}: not a gitstate store (no .git directory)")
            cls._init(root, branch)
        repo = cls(root)
        repo.meta_dir.mkdir(mode=0o700, exist_ok=True)
        return repo

    @staticmethod
    def _init(root: Path, branch: str) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        git_dir = root / ".git"
        tmp = root / f".git{'.gitstate-tmp-'}{os.urandom(4).hex()}"
        tmp.mkdir(mode=0o700)
        for d in (
            "objects",
            "objects/info",
            "objects/pack",
            "refs",
            "refs/heads",
            "refs/tags",
            "info",
            "gitstate",
        ):
            (tmp / d).mkdir(mode=0o700)
        files = {
            "HEAD": f"ref: refs/heads/{branch}\n",
            "config": "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
            "\tlogallrefupdates = false\n",
            "description": "gitstate state store\n",
            "info/exclude": "# gitstate's own temp files\n" + OWN_EXCLUDE.decode() + "\n",
        }
        for name, text in files.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, git_dir)  # all or nothing: a crash never leaves half a repository
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            if not git_dir.is_dir():
                raise
        fsync_dir(root)

    def _read_head_symref(self) -> str:
        try:
            head = (self.git_dir / "HEAD").read_text().strip()
        except OSError as e:
            raise RepositoryError(f"{self.root}: cannot read .git/HEAD: {e}") from e
        if HEX40.fullmatch(head):
            for state in ("rebase-merge", "rebase-apply"):  # mid-rebase: the branch git will move at the end
                with contextlib.suppress(OSError):
                    name = (self.git_dir / state / "head-name").read_text().strip()
                    if _BRANCH_REF.fullmatch(name):
                        return name
            raise RepositoryError(
                f"{self.root}: HEAD is detached ({head[:12]}); check out a branch with "
                "'git -C <store> switch <branch>' first"
            )
        ref = head[5:].strip() if head.startswith("ref: ") else ""
        if not _BRANCH_REF.fullmatch(ref) or "/." in ref or ".." in ref or ref.endswith((".lock", "/", ".")):
            raise RepositoryError(
                f"{self.root}: .git/HEAD is damaged ({head[:40]!r}, not a branch); point it at the store's branch: "
                f"git -C {self.root} symbolic-ref HEAD refs/heads/main"
            )
        return ref

    @property
    def branch(self) -> str:
        """Short name of the store's branch (``main``)."""
        return self.branch_ref[len("refs/heads/") :]

    def git_operation_in_progress(self) -> str | None:
        """The git operation under way in the store (see :func:`git_operation_in_progress`), or None. While one
        is, the store must not write the work tree or the index: git owns them until the user finishes.

        The index is only read when another program wrote it since this store last did (ours never holds
        conflict stages), so the check costs a few ``stat`` calls on the flush path."""
        git_dir = self.git_dir
        op = _git_state_files(git_dir)
        if op is not None:
            return op
        stamp = self.index.file_stamp()
        if stamp is None or (self.index.valid and stamp == self.index.stamp):
            return None
        if self._conflicts_checked != stamp and self.index_written_by_gitstate(stamp):
            self._index_conflicts, self._conflicts_checked = False, stamp
        if self._conflicts_checked != stamp:
            try:
                self._index_conflicts = index_has_conflicts((git_dir / "index").read_bytes())
            except OSError:
                self._index_conflicts = False
            self._conflicts_checked = stamp
        return "unmerged index" if self._index_conflicts else None

    # ----------------------------------------------------------------- ancestry
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True if ``ancestor`` is reachable from ``descendant`` (or equal); see :mod:`gitstate.ancestry`."""
        from .ancestry import is_ancestor

        return is_ancestor(self, ancestor, descendant)

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None; see :mod:`gitstate.ancestry`."""
        from .ancestry import merge_base

        return merge_base(self, a, b)

    # ----------------------------------------------------------------- refs
    def _ref_path(self, ref: str) -> Path:
        return self.git_dir / ref

    def ref_stamp(self) -> str | None:
        """What the branch points at, read cheaply (one small file): changes whenever the branch moves. (A stat
        fingerprint is not enough: inodes are reused within one coarse timestamp tick.)"""
        try:
            with open(self._ref_path(self.branch_ref), "rb") as f:
                value = f.read(128).strip()
            if value and not value.startswith(b"ref:"):
                return value.decode("ascii", "replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
        return self.head()

    def shallow(self) -> set[str]:
        """Commit ids listed in ``.git/shallow``: their parents are absent on purpose (a shallow clone, or
        history cut by ``gitstate forget``); walks stop at them as git's do (:meth:`commit_info` shows them
        without parents)."""
        return set(self._shallow_ids())

    def read_ref(self, ref: str) -> str | None:
        """Hex id a ref points at (loose or packed), or None when it does not exist.

        Raises:
            BrokenRef: the loose ref file exists but holds no object id (empty, zero-filled, garbage). It is
                never taken for "no ref": that would start a new root commit over the existing history.
        """
        return self._read_ref(ref, 0)

    def _read_ref(self, ref: str, depth: int) -> str | None:
        try:
            raw = self._ref_path(ref).read_bytes()
        except FileNotFoundError:
            return self.packed_refs().get(ref)
        except (IsADirectoryError, NotADirectoryError):
            return None
        except OSError as e:
            raise RepositoryError(f"{self.root}: cannot read .git/{ref}: {e.strerror}") from e
        value = raw.decode("ascii", "replace").strip()
        if value.startswith("ref: ") and depth < 5:
            return self._read_ref(value[5:].strip(), depth + 1)
        if HEX40.fullmatch(value.lower()):
            return value.lower()
        if not raw.strip(b"\x00 \t\r\n"):
            problem = "is empty" if not raw else "holds only blanks or zero bytes"
        else:
            problem = f"holds {value[:40]!r}, not a commit id"
        raise BrokenRef(
            f"{self.root}: the ref .git/{ref} {problem} (a damaged file); the history is still in the "
            f"repository: opening the store repairs the ref when the last good commit is known, else set it "
            f"by hand (git -C {self.root} update-ref {ref} COMMIT); 'gitstate doctor' shows the details",
            ref=ref,
            problem=problem,
        )

    def ref_file_exists(self, ref: str) -> bool:
        """True if ``ref`` has a loose file (else it is packed, or does not exist)."""
        return self._ref_path(ref).is_file()

    def packed_refs(self) -> dict[str, str]:
        """Refs in ``packed-refs``: name -> hex id (peeled lines skipped, damaged lines skipped with a warning)."""
        out: dict[str, str] = {}
        try:
            with open(self.git_dir / "packed-refs", "rb") as f:
                for n, line in enumerate(f, 1):
                    if line.startswith((b"#", b"^")):
                        continue
                    sha, _, name = line.strip().partition(b" ")
                    if not HEX40.fullmatch(sha.decode("ascii", "replace")) or not name.startswith(b"refs/"):
                        if line.strip():
                            warn_once(f"{self.git_dir}/packed-refs:{n}", "packed-refs line %d is damaged; skipped", n)
                        continue
                    out.setdefault(name.decode("utf-8", "surrogateescape"), sha.decode())
        except FileNotFoundError:
            pass
        except OSError as e:
            raise RepositoryError(f"{self.root}: cannot read .git/packed-refs: {e.strerror}") from e
        return out

    def reflog_ids(self, ref: str) -> list[str]:
        """Ids the reflog of ``ref`` (``.git/logs/<ref>``) says it pointed at, newest first (``[]`` without one)."""
        try:
            lines = (self.git_dir / "logs" / ref).read_bytes().splitlines()
        except OSError:
            return []
        out = []
        for line in reversed(lines):
            parts = line.split(b" ", 2)
            if len(parts) >= 2 and HEX40.fullmatch(parts[1].decode("ascii", "replace")) and parts[1] != b"0" * 40:
                out.append(parts[1].decode())
        return out

    def loose_path(self, sha: str) -> Path:
        """Where the loose file of object ``sha`` is (or would be)."""
        return self.git_dir / "objects" / sha[:2] / sha[2:]

    def object_present(self, sha: str) -> bool:
        """True if a loose file or a pack index names the object, whether or not it reads back."""
        return self.loose_path(sha).exists() or self.has_object(sha)

    def is_commit(self, sha: str) -> bool:
        """True if ``sha`` names a readable commit."""
        try:
            self.commit_info(sha)
        except (RepositoryError, RevisionNotFound):
            return False
        return True

    def has_history(self) -> bool:
        """True if the repository holds anything a branch could have pointed at: a ref, a packed ref, a pack or
        a reflog (loose objects alone may be the debris of a first commit that never finished)."""
        if self.packed_refs() or self.reflog_ids(self.branch_ref):
            return True
        with contextlib.suppress(OSError):
            if any(n.endswith(".pack") for n in os.listdir(self.git_dir / "objects" / "pack")):
                return True
        refs = self.git_dir / "refs"
        return refs.is_dir() and any(p.is_file() for p in refs.rglob("*"))

    def head(self) -> str | None:
        """Commit id the store's branch points at, or None before the first commit."""
        return self.read_ref(self.branch_ref)

    def list_refs(self, prefix: str) -> dict[str, str]:
        """Refs under ``prefix`` (e.g. ``refs/tags/``): name -> hex id, loose refs winning over packed."""
        out = {name: sha for name, sha in self.packed_refs().items() if name.startswith(prefix)}
        base = self.git_dir / prefix
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and not p.name.endswith(".lock"):
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        value = p.read_text().strip()
                        if HEX40.fullmatch(value):
                            out[str(p.relative_to(self.git_dir))] = value
                        else:
                            warn_once(str(p), "%s is damaged (not an object id); ignored", p)
        return out

    def update_ref(
        self, ref: str, new: str | None, expected: str | None, *, fsync: bool = True, force: bool = False
    ) -> None:
        """Compare-and-swap a ref through Git's lock-file protocol; ``new=None`` deletes it (loose only).
        ``force`` skips the comparison: only to repair a damaged ref (with :meth:`lock` held).

        Raises:
            RepositoryError: the ref is not at ``expected`` (someone else moved it) or is locked by a live git.
        """
        self.lock_ref(ref, new, expected, fsync=fsync, force=force).install()

    def lock_ref(
        self,
        ref: str,
        new: str | None,
        expected: str | None,
        *,
        fsync: bool = True,
        force: bool = False,
        sync_in_thread: bool = False,
    ) -> RefUpdate:
        """The first half of :meth:`update_ref`: take ``ref``'s lock file, check that the ref is at ``expected``
        and write ``new`` into the lock; the returned :class:`RefUpdate` moves the ref (``install``) or gives the
        lock back (``abandon``). With ``sync_in_thread`` the lock file's fsync runs in a thread meanwhile, so a
        commit overlaps it with the fsyncs of its objects (one fsync's wait less per durable commit); no one sees
        ``new`` before ``install``, which waits for it.

        Raises:
            RepositoryError: as :meth:`update_ref`.
        """
        path = self._ref_path(ref)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = path.with_name(path.name + ".lock")
        deadline = time.monotonic() + 5.0
        while True:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                if self.holds_lock() and lock in self.stale_lock_files():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock)
                        logger.warning("removed stale ref lock %s", lock)
                    continue
                if time.monotonic() > deadline:
                    raise RepositoryError(
                        f"{lock} is held by another git process; if none is running, remove it or run 'gitstate doctor'"
                    ) from None
                time.sleep(0.005)  # a real git holds ref locks for milliseconds
        update = RefUpdate(self, ref, path, lock, fd, new, fsync=fsync)
        try:
            current = None if force else self.read_ref(ref)
            if current != expected and not force:
                raise RepositoryError(f"{ref} moved to {current} (expected {expected}); retry")
            update.write(in_thread=sync_in_thread)
        except BaseException:
            update.abandon()
            raise
        return update

    def _remove_packed_ref(self, ref: str, *, timeout: float = 5.0) -> None:
        """Drop ``ref`` (and its peeled line) from ``packed-refs`` through git's ``packed-refs.lock``.

        The lock file is created exclusively (a concurrent ``git pack-refs`` holding it is waited for, up to
        ``timeout`` seconds, then a clear error), written, fsynced, renamed over ``packed-refs``, and the
        directory fsynced: the same protocol git uses, so neither side loses the other's update.

        Raises:
            RepositoryError: the lock is held by another git process past ``timeout``.
        """
        packed = self.git_dir / "packed-refs"
        lock = self.git_dir / "packed-refs.lock"
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                if self.holds_lock() and lock in self.stale_lock_files():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock)
                        logger.warning("removed stale lock %s", lock)
                    continue
                if time.monotonic() > deadline:
                    raise RepositoryError(
                        f"{lock} is held by another git process; if none is running, remove it or run 'gitstate doctor'"
                    ) from None
                time.sleep(0.005)
        try:
            try:
                try:
                    with open(packed, "rb") as f:
                        lines = f.read().splitlines(keepends=True)
                except FileNotFoundError:
                    lines = []
                out, skip_peel = [], False
                for line in lines:
                    if skip_peel and line.startswith(b"^"):
                        continue
                    skip_peel = False
                    if line.strip().endswith(b" " + ref.encode()):
                        skip_peel = True
                        continue
                    out.append(line)
                changed = len(out) != len(lines)
                if changed:
                    os.write(fd, b"".join(out))
                    os.fsync(fd)
            finally:
                os.close(fd)
            if changed:
                os.replace(lock, packed)
                fsync_dir(self.git_dir)
            else:
                os.unlink(lock)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            raise

    def commit_files(
        self,
        parent: str | None,
        changes: dict[str, bytes | None],
        message: str,
        *,
        author: str,
        committer: str | None = None,
        extra_parents: Iterable[str] = (),
        when: float | None = None,
        fsync: bool = True,
        move_branch: bool = True,
        base_tree: str | None = None,
        ids: Mapping[str, str] | None = None,
        deflated: Mapping[str, Deflating] | None = None,
        before_move: Callable[[], None] | None = None,
    ) -> str:
        """Write blobs, the changed trees and a commit on top of ``parent``, then move the branch from
        ``parent`` to it (compare-and-swap). Call with :meth:`lock` held. Returns the commit id.

        ``base_tree`` overrides the tree the changes apply to (default: ``parent``'s tree). ``ids``: blob ids
        already computed from the bytes of ``changes`` (not hashed again); ``deflated``: blobs (by id) already
        being compressed (:class:`~gitstate.repo_packs.Deflating`). ``before_move`` runs once the objects
        are written and before the branch moves; what it raises leaves the branch where it was.
        """
        derived = base_tree is None  # the new tree is parent's with `changes`: its listing can be carried over
        if base_tree is None:
            base_tree = self.commit_info(parent).tree if parent else EMPTY_TREE
        new_objects: list[ShaFile] = []
        blobs: dict[str, ShaFile] = {}
        tree = self.build_tree(base_tree, changes, new_objects, blobs=blobs, ids=ids)
        parents = ([parent] if parent else []) + list(extra_parents)
        commit = self.make_commit(tree, parents, message, author=author, committer=committer, when=when)
        new_objects.append(commit)
        cid = commit.id.decode()
        # The ref's lock is taken and written first, so that its fsync (in a thread) overlaps the objects' own.
        moving = self.lock_ref(self.branch_ref, cid, parent, fsync=fsync, sync_in_thread=True) if move_branch else None
        try:
            self.write_objects(new_objects, fsync=fsync, deflated=deflated)
            if before_move is not None:
                before_move()
        except BaseException:
            if moving is not None:
                moving.abandon()
            raise
        for obj in new_objects:  # written: the next flush reads these back as the committed versions
            if obj.type_name == b"blob":
                self._remember_blob(obj.id.decode(), obj.as_raw_string())
        self._commit_cache[cid] = CommitInfo(
            id=cid,
            tree=tree,
            parents=tuple(parents),
            author=author,
            time=commit.author_time,
            tz_offset_s=commit.author_timezone,
            message=message,
            commit_time=commit.commit_time,
        )
        if moving is not None:
            moving.install()
            if derived:
                self.listing_moved(parent, cid, {p: blobs[p].id.decode() if p in blobs else None for p in changes})
        return cid

    # ----------------------------------------------------------------- tags
    def create_tag(self, name: str, commit: str, *, tagger: str, message: str = "") -> str:
        """Make an annotated tag ``refs/tags/<name>``. Raises RepositoryError if it exists."""
        ref = f"refs/tags/{name}"
        if self.read_ref(ref) is not None:
            raise RepositoryError(f"snapshot {name!r} already exists")
        from dulwich.objects import Commit, Tag

        tag = Tag()
        tag.name = name.encode()
        tag.object = (Commit, commit.encode())
        tag.tagger = fmt_person(tagger)
        tag.tag_time = int(time.time())
        tag.tag_timezone = -time.timezone
        tag.message = (message or f"gitstate snapshot {name}").encode() + b"\n"
        self.write_objects([tag])
        self.update_ref(ref, tag.id.decode(), None)
        path = self.meta_dir / TAGS_FILE
        saved = load_cache(path)
        if isinstance(saved, dict):  # the next listing of snapshots reads no object for this one either
            saved[tag.id.decode()] = [commit, tag.tag_time, tag.message.decode("utf-8", "replace").strip()]
            save_cache(path, saved)
        return tag.id.decode()

    def tags(self) -> list[TagInfo]:
        """Every tag, peeled to its commit, oldest first.

        What each tag's object says is kept in ``.git/gitstate/tags.json`` by object id, so listing snapshots
        reads only the objects of tags made since the last listing."""
        path = self.meta_dir / TAGS_FILE
        saved = load_cache(path)
        known: dict[str, Any] = saved if isinstance(saved, dict) else {}
        seen: dict[str, Any] = {}
        out = []
        for ref, sha in self.list_refs("refs/tags/").items():
            name = ref[len("refs/tags/") :]
            about = known.get(sha)
            if not (isinstance(about, list) and len(about) == 3):
                about = self._tag_object(sha)
                if about is None:
                    continue
            seen[sha] = about
            target, when, message = about
            out.append(TagInfo(name, str(target), int(when), str(message)))
        if seen != known:
            save_cache(path, seen)
        out.sort(key=lambda t: (t.time, t.name))
        return out

    def _tag_object(self, sha: str) -> list[Any] | None:
        """[commit, time, message] of a tag ref's object (an annotated tag, or a commit); None if it is neither
        or cannot be read."""
        from dulwich.objects import Commit, Tag

        try:
            obj = self.read_object(sha)
        except RepositoryError:
            return None
        if isinstance(obj, Tag):
            return [obj.object[1].decode(), obj.tag_time, obj.message.decode("utf-8", "replace").strip()]
        if isinstance(obj, Commit):
            return [sha, obj.commit_time, ""]
        return None

    # ----------------------------------------------------------------- misc
    def config_get(self, section: str, name: str, subsection: str | None = None) -> str | None:
        """Read one value from ``.git/config`` (no includes, nothing executed)."""
        from dulwich.config import ConfigFile

        try:
            cfg = ConfigFile.from_path(str(self.git_dir / "config"))
            key = (section.encode(), subsection.encode()) if subsection else (section.encode(),)
            return cfg.get(key, name.encode()).decode()
        except (KeyError, OSError):
            return None

    def disk_usage(self) -> int:
        """Bytes used by ``.git``."""
        total = 0
        for dirpath, _, files in os.walk(self.git_dir):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    def invalidate_caches(self) -> None:
        """Forget cached packs (after a repack by another process)."""
        if self._object_store is not None:
            with self._mutex, contextlib.suppress(Exception):
                self._object_store._update_pack_cache()

    def close(self) -> None:
        """Release file handles held by the object store."""
        if self._object_store is not None:
            with self._mutex, contextlib.suppress(Exception):
                self._object_store.close()


def format_tz(offset_s: int) -> str:
    """``+0100`` style offset."""
    from dulwich.objects import format_timezone

    return format_timezone(offset_s).decode()


def parse_tz(text: str) -> int:
    """Offset in seconds from ``+0100`` style text."""
    from dulwich.objects import parse_timezone

    return int(parse_timezone(text.encode())[0])


#: The index class under its name before the split (tests patch it).
_Index = GitIndex
