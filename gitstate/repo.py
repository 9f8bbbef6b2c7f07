"""The Git repository under a store: the only module that imports dulwich (with ``remote.py``).

What it does, and the traps it avoids (see ARCHITECTURE.md):

* **No porcelain.** Commits are built from blobs: only the trees on the changed paths are rebuilt, so a flush
  costs the same in a store of ten files or ten thousand. Nothing from the repository's config or hooks is ever
  executed (dulwich's porcelain runs ``post-commit`` hooks and ``filter.*.clean`` commands).
* **One writer at a time, across processes.** :meth:`Repository.lock` takes an ``flock`` on
  ``.git/gitstate.lock`` for the whole read-modify-write, and the branch moves with a compare-and-swap through
  Git's own lock-file protocol, so real ``git`` running beside us is respected too.
* **Durable.** Loose objects, refs and the directories that hold them are fsynced before a commit is reported.
* **Stale locks.** A ``*.lock`` file left by a killed process is removed only when provably stale: we hold the
  store lock, and no live process has the file open.
* **Index kept cheap.** The Git index is parsed once and updated entry by entry, then written with one join, so
  ``git status`` stays clean without dulwich's O(n) index writer on every flush.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from .errors import BrokenRef, LockError, ObjectUnreadable, RepositoryError, RevisionNotFound
from .paths import fsync_dir, is_scratch_name, is_temp_name, replace_with

if TYPE_CHECKING:  # dulwich is imported where objects are touched: `gitstate log` reads refs and the index only
    import hashlib

    from dulwich.objects import Commit, ShaFile, Tree

__all__ = [
    "EMPTY_TREE",
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

#: Id of the empty tree.
EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILE_MODE: Final = 0o100644
EXEC_MODE: Final = 0o100755
TREE_MODE: Final = 0o040000
_LOCK_TIMEOUT_S: Final = 30.0
_LOCK_POLL_MAX_S: Final = 0.002  # longest back-off between two tries of a busy flock (the hand-off delay)
_LOCK_QUEUE_DIR: Final = "lock-queue"  # under .git/gitstate/: see _LockQueue
_SCRATCH_TICKET: Final = "new-"  # a ticket being made, not yet in the queue
_STALE_LOCK_AGE_S: Final = 10.0  # fallback when /proc cannot tell us who holds a file
#: Index size from which a flush defers the index write (see Repository.sync_index).
DEFER_INDEX_ENTRIES: Final = 2000
#: Bytes of recently read or written blobs kept in memory (blobs over a quarter of it are never kept). A flush
#: reads the committed version of each document it writes (to skip unchanged ones and describe the change):
#: usually the blob the previous flush wrote, served from here instead of being read back and inflated.
BLOB_CACHE_BYTES: Final = 8 << 20
_HEX40: Final = re.compile(r"[0-9a-f]{40}")
#: What HEAD may name (git's ref rules, narrowed): a repair writes this ref, so it must stay inside refs/heads/.
_BRANCH_REF: Final = re.compile(r"refs/heads/[A-Za-z0-9_][A-Za-z0-9._/-]*")
#: How to get a damaged repository back, said by every error about one.
REPAIR_ADVICE: Final = (
    "run 'gitstate doctor' for the details; restore the history from a remote (gitstate clone URL DIR) or a "
    "backup (the files in the store directory are the latest state)"
)


def _sha1(data: bytes) -> hashlib._Hash:
    """``hashlib.sha1``, imported on first use: OpenSSL's set-up is ~3 ms of the CLI's start-up."""
    import hashlib

    return hashlib.sha1(data)


def blob_id(data: bytes) -> str:
    """The Git object id of a blob holding ``data``."""
    h = _sha1(b"blob %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class CommitInfo:
    """A commit as gitstate needs it.

    Attributes:
        id: hex id.
        tree: hex id of the root tree.
        parents: hex ids of the parents.
        author: ``Name <email>``.
        time: author time, seconds since the epoch.
        tz_offset_s: the author's UTC offset in seconds.
        message: the full message.
    """

    id: str
    tree: str
    parents: tuple[str, ...]
    author: str
    time: int
    tz_offset_s: int
    message: str
    commit_time: int = 0


@dataclass(frozen=True)
class TagInfo:
    """A tag: its name, the commit it points at, when it was made (tagger time, else the commit's)."""

    name: str
    commit: str
    time: int
    message: str = ""


_warned: set[str] = set()


def _warn_once(what: str, msg: str, *args: object) -> None:
    """Log a damaged file once per process (refs are read on every flush)."""
    if what not in _warned:
        _warned.add(what)
        logger.warning(msg, *args)


def _describe_fault(e: BaseException) -> str:
    """A damaged file's fault in a few words (dulwich's own messages can quote kilobytes of binary)."""
    text = str(e).replace("\n", " ")
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _fmt_person(ident: str) -> bytes:
    return ident.encode("utf-8")


class _Index:
    """The Git index (``.git/index``), kept in memory as pre-encoded entries in path order.

    Only versions 2 and 3 without a split index are parsed; anything else is rebuilt from HEAD. Extensions (the
    TREE cache, the untracked cache) are dropped on rewrite, which Git allows: they are caches it recomputes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[bytes, bytes] = {}  # path -> full encoded entry (header, path, padding)
        self.shas: dict[bytes, bytes] = {}  # path -> binary sha
        self._order: list[bytes] = []
        self._sorted = True
        self.stamp: tuple[int, int, int] | None = None
        self.valid = False

    def file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> bool:
        """(Re)read the index file if it changed on disk. False if it cannot be used (must rebuild)."""
        stamp = self.file_stamp()
        if self.valid and stamp == self.stamp:
            return True
        self.clear()
        self.valid = False
        if stamp is None:
            self.stamp = None
            return False
        try:
            data = self.path.read_bytes()
            ok = self._parse(data)
        except (OSError, struct.error, ValueError) as e:
            logger.warning("index %s unreadable (%s); it will be rebuilt", self.path, e)
            ok = False
        if ok:
            self.stamp = stamp
            self.valid = True
            self._sorted = True
        else:
            self.clear()
        return ok

    def _parse(self, data: bytes) -> bool:
        if len(data) < 32 or data[:4] != b"DIRC":
            return False
        if _sha1(data[:-20]).digest() != data[-20:]:
            logger.warning("index checksum mismatch (truncated write?); rebuilding it")
            return False
        version, count = struct.unpack(">II", data[4:12])
        if version not in (2, 3):
            return False
        pos = 12
        end = len(data) - 20
        for _ in range(count):
            start = pos
            flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
            sha = data[pos + 40 : pos + 60]
            pos += 62
            if flags & 0x4000:  # extended flags (skip-worktree, intent-to-add): not ours to keep
                return False
            if flags & 0x3000:  # a merge stage: the user is mid-merge with git; rebuild from HEAD
                return False
            nul = data.index(b"\x00", pos)
            name = data[pos:nul]
            entry_len = ((nul + 1 - start) + 7) & ~7
            pos = start + entry_len
            self.entries[name] = data[start:pos]
            self.shas[name] = sha
            self._order.append(name)
        # Extensions: a split index ("link") or a sparse index ("sdir") change the meaning of the entries.
        while pos + 8 <= end:
            sig = data[pos : pos + 4]
            size = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
            if sig in (b"link", b"sdir"):
                return False
            pos += 8 + size
        return True

    def set(self, name: bytes, sha_hex: str, st: os.stat_result | None, mode: int = FILE_MODE) -> None:
        sha = bytes.fromhex(sha_hex)
        if st is None:
            header = struct.pack(">10I", 0, 0, 0, 0, 0, 0, mode, 0, 0, 0)
        else:
            header = struct.pack(
                ">10I",
                int(st.st_ctime) & 0xFFFFFFFF,
                st.st_ctime_ns % 1_000_000_000,
                int(st.st_mtime) & 0xFFFFFFFF,
                st.st_mtime_ns % 1_000_000_000,
                st.st_dev & 0xFFFFFFFF,
                st.st_ino & 0xFFFFFFFF,
                mode,
                st.st_uid & 0xFFFFFFFF,
                st.st_gid & 0xFFFFFFFF,
                st.st_size & 0xFFFFFFFF,
            )
        flags = min(len(name), 0xFFF)
        raw = header + sha + struct.pack(">H", flags) + name
        raw += b"\x00" * (8 - (len(raw) % 8))
        if name not in self.entries:
            self._order.append(name)
            self._sorted = False
        self.entries[name] = raw
        self.shas[name] = sha

    def remove(self, name: bytes) -> None:
        if self.entries.pop(name, None) is not None:
            self.shas.pop(name, None)
            self._order.remove(name)

    def clear(self) -> None:
        self.entries.clear()
        self.shas.clear()
        self._order = []

    def write(self) -> bool:
        """Write the index through ``index.lock``; False (nothing written) if another git holds the lock."""
        if not self._sorted:
            self._order.sort()
            self._sorted = True
        body = b"".join([b"DIRC", struct.pack(">II", 2, len(self._order)), *map(self.entries.__getitem__, self._order)])
        body += _sha1(body).digest()
        # Git's protocol: whoever creates index.lock owns the index until it renames the lock over it.
        tmp = self.path.with_name("index.lock")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            # The index is a cache Git can rebuild: atomic rename, but no fsync on the hot path.
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.stamp = self.file_stamp()
        self.valid = True
        return True


def _flock_until(fd: int, op: int, deadline: float, error: LockError) -> None:
    """``flock(fd, op)``, polling until ``deadline`` (monotonic), then ``error``. flock has no timeout of its
    own, and the store's lock must give up with a LockError rather than hang behind a hung writer."""
    delay = 0.0001
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise error from None
            time.sleep(delay)  # lock back-off, not a test wait
            delay = min(delay * 2, _LOCK_POLL_MAX_S)


class _LockQueue:
    """The waiting line in front of the store's ``flock``: it makes the lock roughly first come, first served.

    A bare ``flock`` is unfair: the process that releases it takes it again before the waiters wake up (four
    busy writers made 21, 123, 296 and 419 commits in the same 8 s). So each process takes a *ticket* first: a
    file in the queue directory named by its arrival time, which it holds ``LOCK_EX`` while it waits and while
    it holds the store lock. It waits until the ticket just before its own is gone, then takes the store's
    ``flock`` (which alone keeps writers apart: the queue only decides the order). On release it drops the
    ``flock`` first, then its ticket, so the next in line finds the lock free. A process that comes back for
    the lock gets a new, later ticket: behind everyone who was waiting.

    Crash safety: the OS drops the ``flock`` of a killed process, so its ticket becomes lockable; whoever is
    behind it removes it and moves up. A ticket is renamed into the queue only once locked, so no one ever
    removes a live waiter's ticket; scratch files of a process killed in between are removed once old.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def enter(self) -> _Ticket | None:
        """Join the queue; None when the queue cannot be written (a read-only store: no order, still safe)."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}"
        scratch = self.path / f"{_SCRATCH_TICKET}{name}"
        try:
            try:
                fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            logger.debug("cannot join the lock queue in %s (%s); taking the lock without it", self.path, e)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else can hold it
            os.rename(scratch, self.path / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            os.close(fd)
            raise
        return _Ticket(self, name, fd)

    def tickets(self) -> list[str]:
        """Names of the tickets in the queue, in order; scratch files older than a minute are removed."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if not n.startswith(_SCRATCH_TICKET):
                out.append(n)
                continue
            with contextlib.suppress(OSError):  # left by a process killed between creating and renaming it
                if time.time() - os.lstat(self.path / n).st_mtime > 60:
                    os.unlink(self.path / n)
        return sorted(out)


class _Ticket:
    """One process's place in a :class:`_LockQueue` (held ``LOCK_EX`` through ``fd`` until :meth:`leave`)."""

    def __init__(self, queue: _LockQueue, name: str, fd: int) -> None:
        self.queue = queue
        self.name = name
        self.fd = fd

    def wait_turn(self, deadline: float, error: LockError) -> None:
        """Return once every ticket before this one is gone (released, or removed here after a crash)."""
        while True:
            ahead = [n for n in self.queue.tickets() if n < self.name]
            if not ahead:
                return
            path = self.queue.path / ahead[-1]
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                _flock_until(fd, fcntl.LOCK_SH, deadline, error)
                # Lockable: its owner let go of it. A live owner unlinks it before that; a killed one could not.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)

    def leave(self) -> None:
        """Leave the queue (the next ticket's owner is waiting for this)."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.queue.path / self.name)
        finally:
            os.close(self.fd)


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
    for name, op in _GIT_OPERATION_MARKERS:
        if os.path.lexists(git_dir / name):
            return op
    try:
        head = (git_dir / "HEAD").read_bytes()
    except OSError:
        head = b"ref: "
    return None if head.startswith(b"ref: ") else "detached HEAD"


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


def index_has_conflicts(data: bytes) -> bool:
    """True if the index file ``data`` (version 2, 3 or 4) has an entry at a merge stage (1-3)."""
    if len(data) < 12 or data[:4] != b"DIRC":
        return False
    version, count = struct.unpack(">II", data[4:12])
    pos = 12
    try:
        for _ in range(count):
            flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
            if flags & 0x3000:
                return True
            start, pos = pos, pos + 62 + (2 if flags & 0x4000 and version >= 3 else 0)
            if version == 4:
                while data[pos] & 0x80:  # the varint of the prefix to strip
                    pos += 1
                pos = data.index(b"\x00", pos + 1) + 1
            else:
                nul = data.index(b"\x00", pos)
                pos = start + (((nul + 1 - start) + 7) & ~7)
    except (IndexError, ValueError, struct.error):
        return False
    return False


class Repository:
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
        self._paths_cache: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._blob_cache: OrderedDict[str, bytes] = OrderedDict()  # blob id -> content (see BLOB_CACHE_BYTES)
        self._blob_cache_bytes = 0
        self._commit_cache: OrderedDict[str, CommitInfo] = OrderedDict()
        self.index = _Index(self.git_dir / "index")
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
            "info/exclude": "# gitstate's own temp files\n*.gitstate-tmp-*\n",
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
        if _HEX40.fullmatch(head):
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
        if self._conflicts_checked != stamp:
            try:
                self._index_conflicts = index_has_conflicts((git_dir / "index").read_bytes())
            except OSError:
                self._index_conflicts = False
            self._conflicts_checked = stamp
        return "unmerged index" if self._index_conflicts else None

    # ----------------------------------------------------------------- locking
    @contextlib.contextmanager
    def lock(self, timeout_s: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the store's inter-process lock (re-entrant within a thread), granted in arrival order.

        Threads of this process queue on a mutex; processes take a ticket in ``.git/gitstate/lock-queue/`` and
        wait for the one before theirs, then take the ``flock`` on ``.git/gitstate.lock`` (see
        :class:`_LockQueue`). A process killed while waiting or holding loses its place: the OS drops its
        ``flock`` and the next waiter removes its ticket.

        Raises:
            LockError: another process held the lock for longer than ``timeout_s``.
        """
        me = threading.get_ident()
        if self._lock_owner == me:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        deadline = time.monotonic() + timeout_s
        if not self._write_mutex.acquire(timeout=timeout_s):
            raise LockError(f"{self.root}: timed out after {timeout_s:.0f}s waiting for another thread's flush")
        try:
            ticket = _LockQueue(self.meta_dir / _LOCK_QUEUE_DIR).enter()
            try:
                fd = os.open(self.git_dir / "gitstate.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    if ticket is not None:
                        ticket.wait_turn(deadline, self._lock_timeout_error(timeout_s))
                    _flock_until(fd, fcntl.LOCK_EX, deadline, self._lock_timeout_error(timeout_s))
                    with contextlib.suppress(OSError):  # who holds it, for doctor (fixed width: no truncate)
                        os.pwrite(fd, f"{os.getpid():<20}\n".encode(), 0)
                    self._lock_fd = fd
                    self._lock_owner = me
                    self._lock_depth = 1
                    try:
                        yield
                    finally:
                        self._lock_owner = None
                        self._lock_depth = 0
                        self._lock_fd = None
                        fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
            finally:
                if ticket is not None:
                    ticket.leave()  # after the flock is released: the next in line finds it free
        finally:
            self._write_mutex.release()

    def _lock_timeout_error(self, timeout_s: float) -> LockError:
        return LockError(
            f"{self.root}: another process has held the store lock for over {timeout_s:.0f}s "
            "(a hung writer?); 'gitstate doctor' shows who"
        )

    def lock_busy(self) -> bool:
        """True while another thread of this process holds :meth:`lock` (a flush is writing)."""
        owner = self._lock_owner
        return owner is not None and owner != threading.get_ident()

    def holds_lock(self) -> bool:
        """True if the calling thread holds :meth:`lock`."""
        return self._lock_owner == threading.get_ident()

    def lock_holder_pid(self) -> int | None:
        """PID of a process holding the store lock right now, or None (for ``doctor``)."""
        path = self.git_dir / "gitstate.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with contextlib.suppress(ValueError, OSError):
                    return int(os.pread(fd, 32, 0).decode().strip() or 0) or -1
                return -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _file_is_open_anywhere(path: Path) -> bool | None:
        """True/False if /proc says whether any process has ``path`` open; None if it cannot tell."""
        proc = Path("/proc")
        if not proc.is_dir():
            return None
        target = str(path)
        try:
            pids = [p for p in os.listdir(proc) if p.isdigit()]
        except OSError:
            return None
        for pid in pids:
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        return True
                except OSError:
                    continue
        return False

    def stale_lock_files(self) -> list[Path]:
        """Git ``*.lock`` files in the places gitstate writes that no live process holds."""
        candidates = [
            self.git_dir / "index.lock",
            self.git_dir / "HEAD.lock",
            self.git_dir / "packed-refs.lock",
            self.git_dir / f"{self.branch_ref}.lock",
            self.git_dir / "config.lock",
        ]
        candidates += list((self.git_dir / "refs").rglob("*.lock"))
        stale = []
        for p in dict.fromkeys(candidates):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            held = self._file_is_open_anywhere(p)
            if held is False or (held is None and time.time() - st.st_mtime > _STALE_LOCK_AGE_S):
                stale.append(p)
        return stale

    def recover_stale_locks(self) -> list[Path]:
        """Remove stale lock and temp files; call with :meth:`lock` held. Returns what was removed."""
        assert self.holds_lock()
        removed = []
        for p in self.stale_lock_files():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
                removed.append(p)
                logger.warning("removed stale lock file %s (left by a process that died)", p)
        # Our own temp files are only ever open while the store lock is held: any found now are debris.
        for d in (self.git_dir, *(self.git_dir / "objects").glob("[0-9a-f][0-9a-f]")):
            with contextlib.suppress(OSError):
                for entry in os.scandir(d):
                    if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
        return removed

    # ----------------------------------------------------------------- objects
    @property
    def _objects(self) -> Any:
        """dulwich's object store, opened on first use: commands that read only refs and the history index (``gitstate
        log``) never import it (~25 ms of start-up). Typed Any: dulwich's ObjectID NewTypes would need a cast at
        every lookup by hex id."""
        store = self._object_store
        if store is None:
            from dulwich.errors import NotGitRepository
            from dulwich.object_store import DiskObjectStore

            with self._mutex:
                if self._object_store is None:
                    try:
                        self._object_store = DiskObjectStore(str(self.git_dir / "objects"))
                    except (OSError, NotGitRepository) as e:
                        raise RepositoryError(f"{self.root}: cannot open the Git object store: {e}") from e
                    except Exception as e:  # dulwich reads objects/info/alternates and the config here
                        raise RepositoryError(
                            f"{self.root}: cannot open the Git object store ({_describe_fault(e)}); {REPAIR_ADVICE}"
                        ) from e
                store = self._object_store
        return store

    def read_object(self, sha: str) -> ShaFile:
        """Read any object by hex id: the one place objects are read, so every dulwich, zlib or OS fault of a
        damaged repository becomes an error of gitstate's tree here.

        Raises:
            ObjectUnreadable: the object is missing, or its file (loose or packed) is damaged.
        """
        if not _HEX40.fullmatch(sha):
            raise ObjectUnreadable(f"{self.root}: {sha[:60]!r} is not an object id; {REPAIR_ADVICE}", sha=sha)
        with self._mutex:
            try:
                return cast("ShaFile", self._objects[sha.encode()])
            except KeyError:
                pass
            except Exception as e:  # a damaged pack or loose file: dulwich raises anything (AssertionError too)
                return self._read_loose_after_fault(sha, e)
            # A packer may have moved the object from a loose file into a new pack between dulwich's pack scan
            # and its loose lookup: rescan the packs once.
            with contextlib.suppress(Exception):
                self._objects._update_pack_cache()
            try:
                return cast("ShaFile", self._objects[sha.encode()])
            except KeyError as e:
                raise ObjectUnreadable(f"{self.root}: object {sha} is missing; {REPAIR_ADVICE}", sha=sha) from e
            except Exception as e:
                return self._read_loose_after_fault(sha, e)

    def _read_loose_after_fault(self, sha: str, fault: Exception) -> ShaFile:
        """dulwich looks in the packs first, so one damaged pack fails every read: try the loose file alone (the
        newest objects are loose), else report the fault. Call with ``_mutex`` held."""
        try:
            obj = self._objects._get_loose_object(sha.encode())
        except Exception as e:
            raise ObjectUnreadable(
                f"{self.root}: object {sha} is damaged ({_describe_fault(e)}); {REPAIR_ADVICE}", sha=sha
            ) from e
        if obj is None:
            raise ObjectUnreadable(
                f"{self.root}: object {sha} cannot be read: a pack is damaged ({_describe_fault(fault)}); "
                f"{REPAIR_ADVICE}",
                sha=sha,
            ) from fault
        _warn_once(
            f"{self.root}:packs",
            "%s: a pack is damaged (%s); objects are read from their loose copies where they have one; run "
            "'gitstate doctor'",
            self.root,
            _describe_fault(fault),
        )
        return cast("ShaFile", obj)

    def has_object(self, sha: str) -> bool:
        """True if the object exists (loose or packed); False too when it is named in a damaged pack only."""
        if not _HEX40.fullmatch(sha):
            return False
        with self._mutex:
            try:
                return sha.encode() in self._objects
            except Exception as e:  # a damaged pack index
                _warn_once(f"{self.root}:packs", "%s: a pack index is damaged (%s)", self.root, _describe_fault(e))
                try:
                    return self._objects._get_loose_object(sha.encode()) is not None
                except Exception:
                    return False

    def read_blob(self, sha: str) -> bytes:
        """The content of a blob (recent ones from memory: blobs never change)."""
        with self._mutex:
            data = self._blob_cache.get(sha)
            if data is not None:
                self._blob_cache.move_to_end(sha)
                return data
        from dulwich.objects import Blob

        obj = self.read_object(sha)
        if not isinstance(obj, Blob):
            raise ObjectUnreadable(
                f"{self.root}: {sha} is a {obj.type_name.decode()}, not a blob; {REPAIR_ADVICE}", sha=sha
            )
        data = obj.as_raw_string()
        self._remember_blob(sha, data)
        return data

    def _remember_blob(self, sha: str, data: bytes) -> None:
        if len(data) > BLOB_CACHE_BYTES // 4:
            return
        with self._mutex:
            if sha in self._blob_cache:
                return
            self._blob_cache[sha] = data
            self._blob_cache_bytes += len(data)
            while self._blob_cache_bytes > BLOB_CACHE_BYTES:
                _, old = self._blob_cache.popitem(last=False)
                self._blob_cache_bytes -= len(old)

    def write_objects(self, objs: Iterable[ShaFile], *, fsync: bool = True) -> None:
        """Write objects as loose files: temp file, fsync, rename, then fsync each touched directory once."""
        dirs: set[str] = set()
        objects_dir = self.git_dir / "objects"
        for obj in objs:
            sha = obj.id.decode()
            d = objects_dir / sha[:2]
            target = d / sha[2:]
            if os.path.exists(target):
                continue
            # An object that is only in a pack is written loose again rather than looked up (a lookup miss
            # rescans the pack directory); the packer drops the duplicate.
            try:
                os.mkdir(d, 0o700)
                dirs.add(str(objects_dir))
            except FileExistsError:
                pass
            data = obj.as_legacy_object(compression_level=1)
            tmp = d / f"tmp_obj{'.gitstate-tmp-'}{os.urandom(6).hex()}"
            try:  # read-only for the owner only (git uses 0444; the store keeps everything private)
                replace_with(tmp, target, data, mode=0o400, fsync=fsync)
            except FileNotFoundError:  # `git gc` / `git prune` removed the empty fan-out directory meanwhile
                os.makedirs(d, 0o700, exist_ok=True)
                dirs.add(str(objects_dir))
                replace_with(tmp, target, data, mode=0o400, fsync=fsync)
            dirs.add(str(d))
        if fsync:
            for d2 in sorted(dirs, reverse=True):
                fsync_dir(Path(d2))

    # ----------------------------------------------------------------- trees
    def read_tree(self, sha: str) -> Tree:
        """A tree object (cached; trees never change)."""
        cached = self._tree_cache.get(sha)
        if cached is not None:
            self._tree_cache.move_to_end(sha)
            return cached
        from dulwich.objects import Tree

        if sha == EMPTY_TREE:
            tree = Tree()
        else:
            obj = self.read_object(sha)
            if not isinstance(obj, Tree):
                raise ObjectUnreadable(
                    f"{self.root}: {sha} is a {obj.type_name.decode()}, not a tree; {REPAIR_ADVICE}", sha=sha
                )
            tree = obj
        self._tree_cache[sha] = tree
        if len(self._tree_cache) > 4096:
            self._tree_cache.popitem(last=False)
        return tree

    def is_dir_at(self, tree_sha: str, path: str) -> bool:
        """True if ``path`` is a directory (a subtree) in the tree."""
        tree = self.read_tree(tree_sha)
        for part in path.encode().split(b"/"):
            try:
                mode, sha = tree[part]
            except KeyError:
                return False
            if not stat.S_ISDIR(mode):
                return False
            tree = self.read_tree(sha.decode())
        return True

    def blob_id_at(self, tree_sha: str, path: str) -> str | None:
        """Id of the blob at ``path`` in the tree, or None."""
        tree = self.read_tree(tree_sha)
        parts = path.encode().split(b"/")
        for i, part in enumerate(parts):
            try:
                mode, sha = tree[part]
            except KeyError:
                return None
            if i == len(parts) - 1:
                return sha.decode() if stat.S_ISREG(mode) else None
            if not stat.S_ISDIR(mode):
                return None
            tree = self.read_tree(sha.decode())
        return None

    def read_at(self, tree_sha: str, path: str) -> bytes | None:
        """Content of ``path`` in the tree, or None if absent.

        When the blob itself is damaged, the file in the work tree serves instead if it hashes to the blob's id
        (ids name content, so it is the very same bytes): the latest state stays readable while ``doctor`` reports
        the damage."""
        sha = self.blob_id_at(tree_sha, path)
        if sha is None:
            return None
        try:
            return self.read_blob(sha)
        except ObjectUnreadable:
            data = None
            with contextlib.suppress(OSError):
                data = (self.root / path).read_bytes()
            if data is None or blob_id(data) != sha:
                raise
            logger.warning(
                "%s: blob %s (%s) is damaged; served from the identical file in the store", self.root, sha, path
            )
            self._remember_blob(sha, data)
            return data

    def list_blobs(self, tree_sha: str, prefix: str = "") -> dict[str, str]:
        """Every file in the tree (recursively): path -> blob id, in Git's path order."""
        cached = self._paths_cache.get(tree_sha)
        if cached is None:
            cached = {}
            self._collect(tree_sha, "", cached)
            self._paths_cache[tree_sha] = cached
            if len(self._paths_cache) > 8:
                self._paths_cache.popitem(last=False)
        if prefix:
            return {p: s for p, s in cached.items() if p.startswith(prefix)}
        return cached

    def _collect(self, tree_sha: str, base: str, out: dict[str, str]) -> None:
        for entry in self.read_tree(tree_sha).iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            path = f"{base}{name}"
            if stat.S_ISDIR(entry.mode):
                self._collect(entry.sha.decode(), path + "/", out)
            elif stat.S_ISREG(entry.mode):
                out[path] = entry.sha.decode()

    def changed_paths(self, tree_a: str | None, tree_b: str | None) -> dict[str, tuple[str | None, str | None]]:
        """Files that differ between two trees: path -> (blob id in a, blob id in b). Equal subtrees are
        skipped without being read, so the cost follows the change."""
        out: dict[str, tuple[str | None, str | None]] = {}
        for path, (ea, eb) in self.changed_entries(tree_a, tree_b).items():
            fa = ea[1] if ea is not None and stat.S_ISREG(ea[0]) else None
            fb = eb[1] if eb is not None and stat.S_ISREG(eb[0]) else None
            if fa != fb:
                out[path] = (fa, fb)
        return out

    def changed_entries(
        self, tree_a: str | None, tree_b: str | None, *, bad_names: list[str] | None = None
    ) -> dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]]:
        """Like :meth:`changed_paths` for entries of every mode but directories (symlinks, gitlinks,
        executables too): path -> ((mode, id) in a, (mode, id) in b), None where a side lacks it. Paths are
        spelled as the trees spell them, unchecked; entries whose name is empty or holds a ``/`` (so that the
        path would not say what the tree holds) are appended to ``bad_names`` when it is given."""
        out: dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]] = {}
        self._diff_trees(tree_a or EMPTY_TREE, tree_b or EMPTY_TREE, "", out, bad_names)
        return out

    def _diff_trees(
        self,
        a: str,
        b: str,
        base: str,
        out: dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]],
        bad_names: list[str] | None,
    ) -> None:
        if a == b:
            return
        ta = {e.path: (e.mode, e.sha.decode()) for e in self.read_tree(a).iteritems()}
        tb = {e.path: (e.mode, e.sha.decode()) for e in self.read_tree(b).iteritems()}
        for name in ta.keys() | tb.keys():
            ea, eb = ta.get(name), tb.get(name)
            if ea == eb:
                continue
            path = base + name.decode("utf-8", "surrogateescape")
            if bad_names is not None and (not name or b"/" in name):
                bad_names.append(path)
            da = ea is not None and stat.S_ISDIR(ea[0])
            db = eb is not None and stat.S_ISDIR(eb[0])
            if da or db:
                self._diff_trees(
                    ea[1] if da and ea else EMPTY_TREE, eb[1] if db and eb else EMPTY_TREE, path + "/", out, bad_names
                )
            fa = None if da else ea
            fb = None if db else eb
            if fa != fb:
                out[path] = (fa, fb)

    def build_tree(self, base_tree: str | None, changes: dict[str, bytes | None], new_objects: list[ShaFile]) -> str:
        """A new root tree: ``base_tree`` with each path set to a blob of the given bytes, or removed (None).

        Only trees on the changed paths are rebuilt. New objects are appended to ``new_objects`` (not written).
        """
        from dulwich.objects import Blob, Tree

        nested: dict[str, Any] = {}
        for path, data in changes.items():
            node = nested
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise RepositoryError(f"{path}: a parent is also a file in this change")
            node[parts[-1]] = data if data is None else Blob.from_string(data)
        sha = self._build(base_tree or EMPTY_TREE, nested, new_objects)
        if sha is None:  # everything was removed: the commit points at the empty tree, which must exist too
            new_objects.append(Tree())
            return EMPTY_TREE
        return sha

    def _build(self, tree_sha: str, nested: dict[str, Any], new_objects: list[ShaFile]) -> str | None:
        tree: Tree = self.read_tree(tree_sha).copy()  # type: ignore[assignment]
        for name, change in nested.items():
            bname = name.encode("utf-8", "surrogateescape")
            try:
                mode, sha = tree[bname]
            except KeyError:
                mode, sha = 0, None
            if isinstance(change, dict):
                sub = sha.decode() if sha is not None and stat.S_ISDIR(mode) else EMPTY_TREE
                new_sub = self._build(sub, change, new_objects)
                if new_sub is None:
                    if sha is not None and stat.S_ISDIR(mode):
                        del tree[bname]
                else:
                    tree[bname] = (TREE_MODE, new_sub.encode())  # type: ignore[assignment]
            elif change is None:
                if sha is not None:
                    del tree[bname]
            else:
                new_objects.append(change)
                keep_exec = mode == EXEC_MODE
                tree[bname] = (EXEC_MODE if keep_exec else FILE_MODE, change.id)
        if not tree.items():
            return None
        new_objects.append(tree)
        tid = tree.id.decode()
        self._tree_cache[tid] = tree
        return tid

    # ----------------------------------------------------------------- commits
    def make_commit(
        self,
        tree: str,
        parents: Iterable[str],
        message: str,
        *,
        author: str,
        committer: str | None = None,
        when: float | None = None,
        tz_offset_s: int | None = None,
    ) -> Commit:
        """A commit object (not yet written)."""
        now = int(time.time() if when is None else when)
        if tz_offset_s is None:
            tz_offset_s = -time.altzone if time.localtime(now).tm_isdst > 0 else -time.timezone
        from dulwich.objects import Commit

        c = Commit()
        c.tree = tree.encode()
        c.parents = [p.encode() for p in parents]  # type: ignore[misc]
        c.author = _fmt_person(author)
        c.committer = _fmt_person(committer or author)
        c.author_time = c.commit_time = now
        c.author_timezone = c.commit_timezone = tz_offset_s
        c.encoding = None
        c.message = message.encode("utf-8")
        return c

    def commit_info(self, sha: str) -> CommitInfo:
        """Parsed commit by id (cached)."""
        cached = self._commit_cache.get(sha)
        if cached is not None:
            return cached
        from dulwich.objects import Commit

        obj = self.read_object(sha)
        if not isinstance(obj, Commit):
            raise RevisionNotFound(sha, f"it is a {obj.type_name.decode()}, not a commit")
        info = CommitInfo(
            id=sha,
            tree=obj.tree.decode(),
            parents=tuple(p.decode() for p in obj.parents),
            author=obj.author.decode("utf-8", "replace"),
            time=obj.author_time,
            tz_offset_s=obj.author_timezone,
            message=obj.message.decode("utf-8", "replace"),
            commit_time=obj.commit_time,
        )
        self._commit_cache[sha] = info
        if len(self._commit_cache) > 50_000:
            self._commit_cache.popitem(last=False)
        return info

    def iter_commits(self, start: str | None, *, first_parent: bool = False) -> Iterator[CommitInfo]:
        """Commits reachable from ``start``, newest first by commit time (like ``git log``)."""
        if start is None:
            return
        import heapq

        seen = {start}
        first = self.commit_info(start)
        heap: list[tuple[int, int, CommitInfo]] = [(-first.commit_time, 0, first)]
        counter = 1
        while heap:
            _, _, info = heapq.heappop(heap)
            yield info
            parents = info.parents[:1] if first_parent else info.parents
            for p in parents:
                if p in seen:
                    continue
                seen.add(p)
                pi = self.commit_info(p)
                heapq.heappush(heap, (-pi.commit_time, counter, pi))
                counter += 1

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True if ``ancestor`` is reachable from ``descendant`` (or equal). Walks parents without trusting commit
        times (machines' clocks disagree)."""
        if ancestor == descendant:
            return True
        stack, seen = [descendant], {descendant}
        while stack:
            for p in self.commit_info(stack.pop()).parents:
                if p == ancestor:
                    return True
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return False

    def merge_base(self, a: str, b: str) -> str | None:
        """A best common ancestor of two commits (the newest one reachable from both), or None."""
        ancestors_a = {c.id for c in self.iter_commits(a)}
        for c in self.iter_commits(b):
            if c.id in ancestors_a:
                return c.id
        return None

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
            return self._packed_refs().get(ref)
        except (IsADirectoryError, NotADirectoryError):
            return None
        except OSError as e:
            raise RepositoryError(f"{self.root}: cannot read .git/{ref}: {e.strerror}") from e
        value = raw.decode("ascii", "replace").strip()
        if value.startswith("ref: ") and depth < 5:
            return self._read_ref(value[5:].strip(), depth + 1)
        if _HEX40.fullmatch(value.lower()):
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

    def _packed_refs(self) -> dict[str, str]:
        """Refs in ``packed-refs``: name -> hex id (peeled lines skipped, damaged lines skipped with a warning)."""
        out: dict[str, str] = {}
        try:
            with open(self.git_dir / "packed-refs", "rb") as f:
                for n, line in enumerate(f, 1):
                    if line.startswith((b"#", b"^")):
                        continue
                    sha, _, name = line.strip().partition(b" ")
                    if not _HEX40.fullmatch(sha.decode("ascii", "replace")) or not name.startswith(b"refs/"):
                        if line.strip():
                            _warn_once(f"{self.git_dir}/packed-refs:{n}", "packed-refs line %d is damaged; skipped", n)
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
            if len(parts) >= 2 and _HEX40.fullmatch(parts[1].decode("ascii", "replace")) and parts[1] != b"0" * 40:
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
        if self._packed_refs() or self.reflog_ids(self.branch_ref):
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
        out = {name: sha for name, sha in self._packed_refs().items() if name.startswith(prefix)}
        base = self.git_dir / prefix
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and not p.name.endswith(".lock"):
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        value = p.read_text().strip()
                        if _HEX40.fullmatch(value):
                            out[str(p.relative_to(self.git_dir))] = value
                        else:
                            _warn_once(str(p), "%s is damaged (not an object id); ignored", p)
        return out

    def update_ref(
        self, ref: str, new: str | None, expected: str | None, *, fsync: bool = True, force: bool = False
    ) -> None:
        """Compare-and-swap a ref through Git's lock-file protocol; ``new=None`` deletes it (loose only).
        ``force`` skips the comparison: only to repair a damaged ref (with :meth:`lock` held).

        Raises:
            RepositoryError: the ref is not at ``expected`` (someone else moved it) or is locked by a live git.
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
        try:
            try:
                current = None if force else self.read_ref(ref)
                if current != expected and not force:
                    raise RepositoryError(f"{ref} moved to {current} (expected {expected}); retry")
                if new is not None:
                    os.write(fd, f"{new}\n".encode())
                    if fsync:
                        os.fsync(fd)
            finally:
                os.close(fd)
            if new is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                os.unlink(lock)
                self._remove_packed_ref(ref)
            else:
                if ref == self.branch_ref:
                    self.last_branch_write = new
                os.replace(lock, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            raise
        if fsync:
            fsync_dir(path.parent)

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
    ) -> str:
        """Write blobs, the changed trees and a commit on top of ``parent``, then move the branch from
        ``parent`` to it (compare-and-swap). Call with :meth:`lock` held. Returns the commit id.

        ``base_tree`` overrides the tree the changes apply to (default: ``parent``'s tree).
        """
        if base_tree is None:
            base_tree = self.commit_info(parent).tree if parent else EMPTY_TREE
        new_objects: list[ShaFile] = []
        tree = self.build_tree(base_tree, changes, new_objects)
        parents = ([parent] if parent else []) + list(extra_parents)
        commit = self.make_commit(tree, parents, message, author=author, committer=committer, when=when)
        new_objects.append(commit)
        self.write_objects(new_objects, fsync=fsync)
        for obj in new_objects:  # written: the next flush reads these back as the committed versions
            if obj.type_name == b"blob":
                self._remember_blob(obj.id.decode(), obj.as_raw_string())
        cid = commit.id.decode()
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
        if move_branch:
            self.update_ref(self.branch_ref, cid, parent, fsync=fsync)
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
        tag.tagger = _fmt_person(tagger)
        tag.tag_time = int(time.time())
        tag.tag_timezone = -time.timezone
        tag.message = (message or f"gitstate snapshot {name}").encode() + b"\n"
        self.write_objects([tag])
        self.update_ref(ref, tag.id.decode(), None)
        return tag.id.decode()

    def tags(self) -> list[TagInfo]:
        """Every tag, peeled to its commit, oldest first."""
        from dulwich.objects import Commit, Tag

        out = []
        for ref, sha in self.list_refs("refs/tags/").items():
            name = ref[len("refs/tags/") :]
            try:
                obj = self.read_object(sha)
            except RepositoryError:
                continue
            if isinstance(obj, Tag):
                target = obj.object[1].decode()
                out.append(TagInfo(name, target, obj.tag_time, obj.message.decode("utf-8", "replace").strip()))
            elif isinstance(obj, Commit):
                out.append(TagInfo(name, sha, obj.commit_time))
        out.sort(key=lambda t: (t.time, t.name))
        return out

    # ----------------------------------------------------------------- index and work tree
    def sync_index(
        self,
        head_tree: str,
        changed: dict[str, str | None],
        *,
        stats: Mapping[str, os.stat_result | None] | None = None,
        defer: bool = False,
    ) -> None:
        """Bring index entries of ``changed`` paths (path -> blob id or None) up to date and write the index.
        Call with :meth:`lock` held, after the work-tree files are written. Rebuilds the whole index from
        ``head_tree`` when the file is missing or unusable.

        With ``defer`` and a big index (:data:`DEFER_INDEX_ENTRIES` entries or more), the entries are updated in
        memory only and written by :meth:`write_deferred_index` a moment later (the store does it when flushes
        pause, and on close): rewriting a megabyte of index on every flush would make flush cost grow with the
        store's size."""
        for path, sha in changed.items():
            name = path.encode("utf-8", "surrogateescape")
            if sha is None:
                self._deferred[name] = None
            elif stats is not None and path in stats:
                self._deferred[name] = (sha, stats[path])  # the stat taken when the content was read
            else:
                try:
                    st = os.lstat(self.root / path)
                except FileNotFoundError:
                    st = None
                self._deferred[name] = (sha, st)
        if not self._load_index_with_updates(head_tree):
            return
        if defer and len(self.index.entries) >= DEFER_INDEX_ENTRIES:
            return
        self._write_index()

    def _load_index_with_updates(self, head_tree: str) -> bool:
        """Load the index (re-reading it if another process wrote it) and apply our unwritten updates; False if
        it had to be rebuilt from ``head_tree`` instead (which includes them)."""
        if self._index_behind or not self.index.load():
            self.rebuild_index(head_tree)
            return False
        self._apply_deferred()
        return True

    def _apply_deferred(self) -> None:
        """Apply the index updates :meth:`sync_index` deferred to the loaded index (in memory)."""
        for name, entry in self._deferred.items():
            if entry is None:
                self.index.remove(name)
            else:
                self.index.set(name, entry[0], entry[1])

    def index_has_unwritten_updates(self) -> bool:
        """True when :meth:`sync_index` deferred a write."""
        return bool(self._deferred)

    def write_deferred_index(self) -> None:
        """Write index updates that :meth:`sync_index` deferred. Call with :meth:`lock` held."""
        if not self._deferred:
            return
        head = self.head()
        if head is None:
            return
        if self._load_index_with_updates(self.commit_info(head).tree):
            self._write_index()

    def index_is_behind(self) -> bool:
        """True when the index missed an update and must be rebuilt from HEAD."""
        return self._index_behind

    def index_fell_behind(self) -> None:
        """The index could not be updated (disk full...): rebuild it from HEAD on the next sync."""
        self._index_behind = True
        self.index.valid = False

    def _write_index(self) -> None:
        lock = self.git_dir / "index.lock"
        if os.path.lexists(lock) and self.holds_lock() and lock in self.stale_lock_files():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
                logger.warning("removed stale %s", lock)
        if self.index.write():
            self._index_behind = False
            self._deferred.clear()
        else:
            # A live git is updating the index; ours is rebuilt from HEAD on the next sync.
            self.index_fell_behind()
            logger.info("index.lock is held by another git process; the index will be refreshed later")

    def rebuild_index(self, head_tree: str) -> None:
        """Write a fresh index for ``head_tree``; stat data is taken only where the file matches the blob."""
        self.index.clear()
        for path, sha in self.list_blobs(head_tree).items():
            st = None
            full = self.root / path
            with contextlib.suppress(OSError):
                st_ = os.lstat(full)
                if stat.S_ISREG(st_.st_mode) and blob_id(full.read_bytes()) == sha:
                    st = st_
            self.index.set(path.encode("utf-8", "surrogateescape"), sha, st)
        self._write_index()

    def worktree_changes(
        self,
        head_tree: str,
        *,
        ignored: Any = None,
        max_bytes: int | None = None,
        oversized: dict[str, int] | None = None,
    ) -> dict[str, bytes | None]:
        """Files whose content differs from ``head_tree``: path -> current bytes, or None if deleted.

        Unchanged files are recognised by the index's stat data without being read. Scratch files and what
        ``.gitignore`` ignores are skipped; gitstate's own stale temp files are removed. A changed file larger
        than ``max_bytes`` is not read: it goes into ``oversized`` (path -> size) instead of the result.
        """
        committed = self.list_blobs(head_tree)
        index_ok = self.index.load()
        if index_ok:  # our own unwritten updates (deferred by sync_index) still count
            self._apply_deferred()
        out: dict[str, bytes | None] = {}
        seen: set[str] = set()
        for path, full in self._walk_files(ignored):
            sha = committed.get(path)
            if sha is not None:
                seen.add(path)
            elif is_scratch_name(path.rsplit("/", 1)[-1]) or (ignored is not None and ignored(path)):
                continue
            data = self._changed_content(path, full, sha if index_ok else None, max_bytes, oversized)
            if data is not None and (sha is None or blob_id(data) != sha):
                out[path] = data
        for path in committed.keys() - seen:
            if not os.path.lexists(self.root / path):
                out[path] = None
        return out

    def _walk_files(self, ignored: Any) -> Iterator[tuple[str, str]]:
        """(store path, file system path) of every file in the work tree, outside ``.git``, not through a
        symlinked directory, not in an ignored directory; gitstate's own stale temp files are removed (with the
        lock held) and skipped."""
        for dirpath, dirnames, filenames in os.walk(str(self.root)):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if not (rel_dir == "" and d == ".git")
                and not os.path.islink(os.path.join(dirpath, d))
                and not (ignored is not None and ignored(rel_dir + d + "/"))
            ]
            for name in filenames:
                full = os.path.join(dirpath, name)
                if is_temp_name(name):
                    with contextlib.suppress(OSError):
                        if self.holds_lock():
                            os.unlink(full)
                    continue
                yield rel_dir + name, full

    def _changed_content(
        self, path: str, full: str, indexed_sha: str | None, max_bytes: int | None, oversized: dict[str, int] | None
    ) -> bytes | None:
        """The bytes of a regular file whose stat does not match the index entry for ``indexed_sha`` (None: no
        usable entry), or None: unchanged by its stat, not a regular file, gone, unreadable, or over ``max_bytes``
        (then recorded in ``oversized``)."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if indexed_sha is not None and self._stat_matches(path, indexed_sha, st):
            return None
        if max_bytes is not None and st.st_size > max_bytes:
            if oversized is not None:
                oversized[path] = st.st_size
            return None
        try:
            return Path(full).read_bytes()
        except OSError as e:
            logger.warning("cannot read %s: %s", full, e)
            return None

    def stat_matches(self, path: str, sha: str, st: os.stat_result) -> bool:
        """True when the index entry of ``path`` names blob ``sha`` and ``st`` matches its stat (racy-git safe):
        the file holds that blob without being read."""
        return self._stat_matches(path, sha, st)

    def _stat_matches(self, path: str, sha: str, st: os.stat_result) -> bool:
        entry = self.index.entries.get(path.encode("utf-8", "surrogateescape"))
        if entry is None or entry[40:60] != bytes.fromhex(sha):
            return False
        ctime_s, ctime_ns, mtime_s, mtime_ns, _, ino, _, _, _, size = struct.unpack(">10I", entry[:40])
        if not (
            mtime_s == int(st.st_mtime) & 0xFFFFFFFF
            and mtime_ns == st.st_mtime_ns % 1_000_000_000
            and ctime_s == int(st.st_ctime) & 0xFFFFFFFF
            and ctime_ns == st.st_ctime_ns % 1_000_000_000
            and size == st.st_size & 0xFFFFFFFF
            and ino == st.st_ino & 0xFFFFFFFF
            and size != 0
        ):
            return False
        # Racy git: a file changed in the same clock tick as the index was written may differ while its stat
        # matches; only its content can tell.
        index_mtime_ns = self.index.stamp[1] if self.index.stamp else 0
        return st.st_mtime_ns < index_mtime_ns

    def ignore_matcher(self) -> Any:
        """A function ``path -> bool`` applying the store's ``.gitignore`` files and ``info/exclude``."""
        from dulwich.ignore import IgnoreFilterManager

        try:
            mgr = IgnoreFilterManager(str(self.root), [], False)
            exclude = self.git_dir / "info" / "exclude"
            if exclude.exists():
                from dulwich.ignore import IgnoreFilter

                with open(exclude, "rb") as f:
                    mgr._global_filters.append(IgnoreFilter(f.readlines()))
        except Exception as e:  # a broken .gitignore must not stop the store
            logger.warning("cannot read .gitignore rules: %s", e)
            return lambda path: False

        def is_ignored(path: str) -> bool:
            try:
                return bool(mgr.is_ignored(path))
            except Exception:
                return False

        return is_ignored

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
