"""The Store: documents in memory, key operations, transactions, the flush policy, recovery on open, events.

Writes land in memory at once and are recorded as *operations* in a journal; a background flusher turns the
journal into one commit per flush. Under the repository's inter-process lock it reads the branch head; if the
branch moved (another process, a human edit, a restore, a pull), the touched documents are reloaded from the new
head and the pending operations re-applied on top, so no process ever overwrites keys it did not write.

Lock order, to stay deadlock-free: ``_flush_lock`` → repository lock (threads, then ``flock``) → ``_lock``
(in-memory state) → the repository's object mutex. Every path that takes the repository lock takes
``_flush_lock`` first.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from . import docdiff, lifecycle, worktree
from . import migrate as _migrate
from . import recovery as _recovery
from .codecs import DEFAULT as DEFAULT_CODECS
from .codecs import Codec, Codecs, copy_value
from .codecs import bind as bind_codecs
from .errors import (
    DecodeError,
    EncodeError,
    GitBusy,
    GitStateError,
    InvalidPath,
    KeyNotFound,
    RepositoryError,
    SaveError,
    StoreClosed,
    StoreNotFound,
)
from .events import (
    Committed,
    Event,
    EventBus,
    ExternalChange,
    GitOperationInProgress,
    InvalidEdit,
    Loaded,
    SaveErrorEvent,
)
from .keys import (
    ABSENT,
    Key,
    KeyPathError,
    apply_write,
    check_target,
    check_write,
    parse_key,
    read_value,
)
from .paths import check_no_symlinks, validate_doc_path
from .repo import EMPTY_TREE, Repository, blob_id, git_operation_advice

if TYPE_CHECKING:
    from .history import Commit, Snapshot, StateView

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_MAX_DELAY_MS",
    "DEFAULT_MAX_DOC_BYTES",
    "META_PREFIX",
    "CommitId",
    "Store",
    "clone",
    "open",
]

logger = logging.getLogger("gitstate.store")

DEFAULT_DEBOUNCE_MS: Final = 2000
DEFAULT_MAX_DELAY_MS: Final = 10000
#: Largest document (file) the store reads, writes or commits; open(max_doc_bytes=...) or $GITSTATE_MAX_DOC_BYTES.
#: A document is held in memory whole (decoded, it takes several times its size), so a file dropped into the
#: store by mistake (a database dump, a video) must not be loaded just because it is there.
DEFAULT_MAX_DOC_BYTES: Final = 64 * 1024 * 1024
#: Documents under this prefix hold gitstate's own metadata (schema version); ``docs()`` hides them.
META_PREFIX: Final = ".gitstate/"
_HEAD_POLL_S: Final = 0.5
_MAX_RETRY_DELAY_S: Final = 30.0
#: While git is busy in the store (a merge...), the flusher looks again this often to resume soon after.
_GIT_BUSY_POLL_S: Final = 0.2

Durability = Literal["immediate", "debounced", "manual"]
_DEFAULT: Any = object()


_ABSENT: Final = ABSENT  # the value of a document that does not exist


class CommitId(str):
    """A commit id (a ``str``) that also tells whether the call that returned it made that commit.

    :meth:`Store.restore` and :meth:`Store.undo` return one: ``created`` is False when nothing differed and
    the id is the branch head as found (with other writers about, possibly another process's commit).

    Example:
        >>> c = CommitId("4b825dc6", created=False)
        >>> c == "4b825dc6", c.created
        (True, False)
    """

    created: bool

    def __new__(cls, value: str, *, created: bool) -> CommitId:
        """An id ``value``; ``created``: made by the call that returns it."""
        self = super().__new__(cls, value)
        self.created = created
        return self


@dataclass(slots=True)
class _Op:
    seq: int
    doc: str
    kind: str  # "set" | "delete" | "update" | "append"
    key: Key
    value: Any = None
    t: float = 0.0  # time.monotonic() of the write, for max_delay_ms


@dataclass
class _Stats:
    flushes: int = 0
    commits: int = 0
    failures: int = 0
    last_error: str | None = None
    last_flush_ms: float = 0.0
    flush_ms: list[float] = field(default_factory=list)


def _default_path() -> str:
    path = os.environ.get("GITSTATE_DIR")
    if not path:
        raise StoreNotFound("no store path given and $GITSTATE_DIR is not set; pass a path or set GITSTATE_DIR")
    return path


def _default_max_doc_bytes() -> int:
    raw = os.environ.get("GITSTATE_MAX_DOC_BYTES", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MAX_DOC_BYTES
    except ValueError:
        logger.warning("ignoring GITSTATE_MAX_DOC_BYTES=%r: not a number of bytes", raw)
        return DEFAULT_MAX_DOC_BYTES


def _size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _too_big(doc: str, size: int, limit: int, verb: str = "is") -> EncodeError:
    """The error for a document over the size limit; it says how to raise the limit."""
    return EncodeError(
        f"{doc} {verb} {_size_text(size)}, over the store's limit of {_size_text(limit)} (max_doc_bytes); pass "
        "a larger max_doc_bytes to gitstate.open() or set GITSTATE_MAX_DOC_BYTES, or keep the file out of the "
        "store (.gitignore)"
    )


def _default_author() -> str:
    return f"gitstate <gitstate@{socket.gethostname() or 'localhost'}>"


def human_author() -> str:
    """``user <user@host>`` for commits of human edits."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user} <{user}@{socket.gethostname() or 'localhost'}>"


def _apply(view: Any, op: _Op) -> Any:
    """Apply one journal operation to a private document value; returns the new value."""
    return apply_write(view, op.kind, op.key, op.value)


def _trailer_key(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in str(name)).strip("-")
    return cleaned[:1].upper() + cleaned[1:] if cleaned else "Meta"


def build_message(
    subject: str | None,
    changes: list[docdiff.Change],
    actor: str,
    metadata: Mapping[str, str] | None = None,
    extra_lines: list[str] | None = None,
) -> str:
    """A commit message: a subject naming what changed, the change lines, then Git trailers."""
    lines = docdiff.summarize(changes, max_lines=50) if changes else []
    if subject:
        head, body = subject.strip(), lines
    elif lines:
        more = len(changes) - 1
        head = lines[0] if more == 0 else f"{lines[0]} (+{more} more)"
        body = lines if more else []
    else:
        head, body = "no changes", []
    body = body + (extra_lines or [])
    trailers = [f"Gitstate-Actor: {actor}"]
    for k, v in (metadata or {}).items():
        trailers.append(f"{_trailer_key(k)}: {' '.join(str(v).split())}")
    parts = [head]
    if body:
        parts.append("\n".join(body))
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


class Store:
    """A directory of JSON/YAML/text documents that is also a Git repository.

    Open one with :func:`gitstate.open`. Reads and writes are in memory; each flush of pending writes becomes one
    Git commit. Thread-safe; several processes may open the same store.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp()) as store:
        ...     store.set("state.json", "services.slack", True)
        ...     store.get("state.json", "services")
        {'slack': True}
    """

    def __init__(
        self,
        repo: Repository,
        *,
        durability: Durability = "debounced",
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
        author: str | None = None,
        fsync: bool = True,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        codecs: Codecs | None = None,
    ) -> None:
        if durability not in ("immediate", "debounced", "manual"):
            raise ValueError(f"durability must be 'immediate', 'debounced' or 'manual', not {durability!r}")
        if debounce_ms < 0 or max_delay_ms < 0:
            raise ValueError("debounce_ms and max_delay_ms must be >= 0")
        self._repo = repo
        self._codecs = codecs if codecs is not None else DEFAULT_CODECS
        bind_codecs(repo, self._codecs)  # history views, merges and migrations on this repository use them too
        self.path = repo.root
        self.durability: Durability = durability
        self.debounce_ms = debounce_ms
        self.max_delay_ms = max(max_delay_ms, debounce_ms)
        self.author = author or _default_author()
        self._fsync = fsync
        if max_doc_bytes <= 0:
            raise ValueError("max_doc_bytes must be > 0")
        #: Largest document, in bytes, this store reads from disk, writes or commits.
        self.max_doc_bytes = max_doc_bytes
        #: Documents whose work-tree file was found over ``max_doc_bytes`` (doc -> size): not read, not committed.
        self._oversized: dict[str, int] = {}
        self._events = EventBus()
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._views: dict[str, Any] = {}
        self._journal: list[_Op] = []
        self._dirty: dict[str, int] = {}
        self._seq = 0
        self._first_pending: float | None = None
        self._last_write: float = 0.0
        self._retry_at: float = 0.0
        self._failures_in_row = 0
        self._head: str | None = None
        self._head_tree: str | None = None
        self._ref_stamp: str | None = None
        self.read_only = False
        self._validated: builtins.set[str] = set()
        self._flush_owner: int | None = None  # thread running flush(), for the SIGTERM handler
        self._written: dict[str, str] = {}  # doc -> blob id written to disk by a flush not yet committed
        self._closed = False
        self._stop = threading.Event()
        self._tx_depth = 0
        self._tx_owner: int | None = None
        self._flusher: threading.Thread | None = None
        self._watcher: Any = None
        self._push_queue: Any = None
        self._background: list[Any] = []
        self._stats = _Stats()
        self._after_commit_hooks: list[Callable[[str], None]] = []
        #: What the last pull did (``kind``: none / fast-forward / merge, ``commit``, ``changes``, ``conflicts``).
        self.last_pull: Any = None
        self._packer: Any = None
        #: The schema version this program writes (see gitstate.migrate); set on open.
        self._expected_schema: int | None = None
        #: The git operation in progress in the store (merge, rebase...) as last seen; flushes hold meanwhile.
        self._git_busy: str | None = None
        self._held_edits: builtins.set[str] = set()  # hand edits the watcher saw while git was busy

    # ================================================================= lifecycle
    def _start(self) -> None:
        self._flusher = threading.Thread(
            target=self._flusher_loop, name=f"gitstate-flusher[{self.path.name}]", daemon=True
        )
        self._flusher.start()
        lifecycle.register(self)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gitstate.Store {str(self.path)!r} head={(self._head or 'none')[:8]} pending={self.pending}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Flush pending writes, stop the background threads and release the store. Idempotent.

        Closing while a git operation is in progress in the store (a conflicted ``git merge``...) cannot save the
        pending writes without touching the files git owns: the store is closed anyway and
        :class:`~gitstate.errors.GitBusy` is raised, after an error log naming the documents whose writes were
        not saved (finish the git operation first, or keep the store open: it resumes by itself).

        Raises:
            SaveError: the final flush failed; the pending writes could not be saved.
            GitBusy: a git operation is in progress; the pending writes were not saved.
        """
        if self._closed:
            return
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for component in (self._watcher, *self._background):
            if component is not None:
                with contextlib.suppress(Exception):
                    component.stop()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=60)
        try:
            try:
                self.flush()
            except GitBusy:
                with self._lock:
                    lost = sorted(self._dirty)
                logger.error(
                    "%s: closed during a git %s: %d pending write(s) to %s were NOT saved",
                    self.path,
                    self._git_busy,
                    self.pending,
                    ", ".join(lost),
                )
                raise
            self._repair_index()
        finally:
            if self._push_queue is not None:
                with contextlib.suppress(Exception):
                    self._push_queue.stop()  # one last bounded push attempt
            self._closed = True
            lifecycle.unregister(self)
            self._repo.close()

    def flushing_in(self, thread_id: int) -> bool:
        """True while the thread ``thread_id`` is inside this store's flush (used by the SIGTERM handler, which must
        not flush again a flush it interrupted)."""
        return self._flush_owner == thread_id

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"store {self.path} is closed; open it again with gitstate.open()")

    # ================================================================= events
    def on(self, event: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback(event_object)`` on each ``event``; returns a function that unregisters it.

        Events: ``committed``, ``loaded``, ``save_error``, ``external_change``, ``invalid_edit``, ``pushed``,
        ``push_error`` (see :mod:`gitstate.events`). A callback that raises is logged and never breaks a write.

        Example:
            >>> import gitstate, tempfile
            >>> store = gitstate.open(tempfile.mkdtemp(), durability="manual")
            >>> off = store.on("committed", lambda e: print("committed", e.docs))
            >>> store.set("a.json", "x", 1); _ = store.flush()
            committed ['a.json']
            >>> store.close()
        """
        return self._events.on(event, callback)

    def _emit(self, event: Event) -> None:
        self._events.emit(event)

    # ================================================================= reading
    def _doc(self, doc: str) -> str:
        if doc in self._validated:
            return doc
        validate_doc_path(doc)
        check_no_symlinks(self.path, doc)
        if len(self._validated) < 100_000:
            self._validated.add(doc)
        return doc

    def _committed_bytes(self, doc: str) -> bytes | None:
        if self._head_tree is None:
            return None
        return self._repo.read_at(self._head_tree, doc)

    def _load(self, doc: str) -> Any:
        """The current value of ``doc`` (committed + pending ops). Call with ``_lock`` held."""
        view = self._views.get(doc, None)
        if view is not None or doc in self._views:
            return view
        data = self._committed_bytes(doc)
        ops = [op for op in self._journal if op.doc == doc] if doc in self._dirty else []
        try:
            view = _ABSENT if data is None else self._codecs.for_doc(doc).decode(data, doc)
        except DecodeError:
            # A committed document that does not parse can still be replaced or deleted as a whole.
            whole = [i for i, op in enumerate(ops) if not op.key and op.kind in ("set", "delete")]
            if not whole:
                raise
            view, ops = _ABSENT, ops[whole[-1] :]
        for op in ops:
            try:
                view = _apply(view, op)
            except KeyPathError as e:
                logger.warning(
                    "%s: pending write to %s no longer applies (%s); dropped",
                    doc,
                    docdiff.format_key(op.key),
                    e.problem,
                )
        self._views[doc] = view
        return view

    def _maybe_refresh(self) -> None:
        """Pick up commits made by other processes (one read of the branch ref when nothing changed).

        A read sees every commit made before it started, even while this store's own flush runs: the ref is
        read without the flush lock and the views move under ``_lock`` only. The one wait is for a flush (or
        restore, pull...) of this store that holds the repository lock while the branch points elsewhere: it is
        between reading the head and recording its own commit, and moving the views under it would race its
        encode-and-commit. It holds the lock for milliseconds (its wait for other processes is over), so the
        reader waits for it and refreshes after. A flush still queueing for the lock never delays a read."""
        events: list[Event] = []
        for _ in range(100):  # another thread moving the head between our two reads: read again
            stamp = self._repo.ref_stamp()
            if stamp == self._ref_stamp:
                break
            seen = self._head
            head = self._repo.head()
            with self._lock:
                if self._head != seen:
                    continue
                if head == self._head:
                    self._ref_stamp = stamp
                    break
                if not self._repo.lock_busy():
                    # No writer of ours is between its head read and its commit (one that takes the lock now
                    # reads the head after us and compares it with ours under _lock).
                    self._ref_stamp = stamp
                    events.append(self._advance_to(head, source="process"))
                    break
                if head == self._repo.last_branch_write:
                    break  # our own flush's new commit, which it records itself; it took in every older one
            with self._flush_lock:  # every writer of this store holds it around the repository lock
                stamp = self._repo.ref_stamp()
                head = self._repo.head()
                with self._lock:
                    self._ref_stamp = stamp
                    if head != self._head:
                        events.append(self._advance_to(head, source="process"))
            break
        for e in events:
            self._emit(e)

    def _advance_to(self, head: str | None, *, source: str, rebase: bool = True) -> ExternalChange:
        """The branch moved to ``head``: forget the views of changed documents (they reload from ``head`` and
        replay pending operations on next use). Where a human edited a document this store has pending writes
        to (in another process: a watcher, plain git), the pending writes are rebased so the human's keys win
        (``rebase``; off for commits this store just made itself). Call with ``_lock`` held; returns the event
        to emit."""
        old_tree = self._head_tree
        new_tree = self._repo.commit_info(head).tree if head else None
        changed = self._repo.changed_paths(old_tree, new_tree)
        overwritten: list[docdiff.Conflict] = []
        pending_docs = {op.doc for op in self._journal} & changed.keys()
        if rebase and pending_docs and self._head is not None and head is not None:
            for doc in sorted(self._docs_edited_by_humans(self._head, head, pending_docs)):
                codec = self._codecs.for_doc(doc)
                old_b, new_b = self._repo.read_at(old_tree or "", doc), self._repo.read_at(new_tree or "", doc)
                try:
                    base = docdiff.MISSING if old_b is None else codec.decode(old_b, doc)
                    theirs = docdiff.MISSING if new_b is None else codec.decode(new_b, doc)
                except DecodeError:
                    continue
                overwritten += self._rebase_pending_on(doc, base, theirs)
        self._head, self._head_tree = head, new_tree
        for path in changed:
            self._views.pop(path, None)
        docs = sorted(p for p in changed if not p.startswith(META_PREFIX))
        if source == "process" and _migrate.SCHEMA_DOC in changed:
            source = "migration"  # the schema version changed under us: flushes now refuse (see migrate.py)
        return ExternalChange(docs=docs, source=source, commit=head, overwritten=overwritten)

    def _docs_edited_by_humans(self, old: str, new: str, docs: builtins.set[str]) -> builtins.set[str]:
        """Which of ``docs`` commits between ``old`` (excluded) and ``new`` changed as human edits (actor
        ``human``, or plain git commits without a gitstate trailer). Bounded walk along first parents."""
        out: builtins.set[str] = set()
        cur: str | None = new
        for _ in range(500):
            if cur is None or cur == old:
                return out
            info = self._repo.commit_info(cur)
            msg = info.message
            if "Gitstate-Actor: human" in msg or "Gitstate-Actor:" not in msg:
                parent_tree = self._repo.commit_info(info.parents[0]).tree if info.parents else None
                out |= docs & self._repo.changed_paths(parent_tree, info.tree).keys()
            cur = info.parents[0] if info.parents else None
        return out if cur == old else set()

    def _rebase_pending_on(self, doc: str, base: Any, theirs: Any) -> list[docdiff.Conflict]:
        """A human replaced ``base`` with ``theirs`` while this store holds pending writes to ``doc``: keep both
        sides' keys, the human's value winning on keys both changed (a key-level 3-way merge), and rewrite the
        document's pending operations as the difference from ``theirs`` to the merge. Returns the program's
        values that lost. Call with ``_lock`` held."""
        ops = [op for op in self._journal if op.doc == doc]
        if not ops:
            return []
        ours: Any = _ABSENT if base is docdiff.MISSING else copy_value(base)
        for op in ops:
            try:
                ours = _apply(ours, op)
            except KeyPathError:
                continue
        result = docdiff.merge3(base, docdiff.MISSING if ours is _ABSENT else ours, theirs, prefer="theirs")
        seq = max(op.seq for op in ops)
        t0 = min(op.t for op in ops)
        new_ops = [_Op(seq, doc, kind, key, value, t0) for kind, key, value in _ops_between(theirs, result.value)]
        self._journal = [op for op in self._journal if op.doc != doc] + new_ops
        self._journal.sort(key=lambda op: op.seq)
        if new_ops:
            self._dirty[doc] = seq
        else:
            self._dirty.pop(doc, None)
        if not self._journal:
            self._first_pending = None
        self._views.pop(doc, None)
        return list(result.conflicts)

    def get(self, doc: str, key: object = None, default: Any = _DEFAULT) -> Any:
        """A deep copy of the value at ``key`` in ``doc`` (the whole document when ``key`` is None).

        Raises:
            KeyNotFound: the document or key does not exist and no ``default`` was given.
            InvalidPath: the document path is unsafe.
            DecodeError: the committed document does not parse.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     s.set("state.json", ("meetings", "event.123", "status"), "skipped")
            ...     s.get("state.json", ("meetings", "event.123")), s.get("state.json", "nope", default=0)
            ({'status': 'skipped'}, 0)
        """
        self._check_open()
        doc = self._doc(doc)
        keyt = parse_key(key)
        if doc in self._oversized:
            self._check_not_oversized(doc, DecodeError)
        self._maybe_refresh()
        with self._lock:
            return read_value(doc, self._load(doc), keyt, default, absent=_ABSENT, no_default=_DEFAULT)

    def _check_not_oversized(self, doc: str, error: type[DecodeError] | type[EncodeError]) -> None:
        """Refuse to read or write ``doc`` while its work-tree file is over ``max_doc_bytes`` (found so by
        recovery, the watcher or a flush); one ``lstat`` tells whether it still is."""
        try:
            size = os.lstat(self.path / doc).st_size
        except OSError:
            size = 0
        if size <= self.max_doc_bytes:
            self._oversized.pop(doc, None)  # shrunk or gone: the next ingest or flush looks at it again
            return
        too_big = _too_big(doc, size, self.max_doc_bytes)
        msg = f"{too_big}; it was not loaded or committed"
        raise DecodeError(doc, msg.removeprefix(f"{doc} ")) if error is DecodeError else EncodeError(msg)

    def exists(self, doc: str, key: object = None) -> bool:
        """True if the document (and key, when given) exists."""
        marker = object()
        return self.get(doc, key, default=marker) is not marker

    def docs(self, prefix: str = "") -> list[str]:
        """Sorted paths of the documents in the store (pending creations and deletions included).

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     s.set("tasks/t1.json", None, {"id": 1}); s.set("state.json", "a", 1)
            ...     s.docs(), s.docs("tasks/")
            (['state.json', 'tasks/t1.json'], ['tasks/t1.json'])
        """
        self._check_open()
        self._maybe_refresh()
        with self._lock:
            paths = set(self._repo.list_blobs(self._head_tree)) if self._head_tree else set()
            for doc in self._dirty:
                if self._load(doc) is _ABSENT:
                    paths.discard(doc)
                else:
                    paths.add(doc)
        return sorted(p for p in paths if p.startswith(prefix) and not p.startswith(META_PREFIX))

    @property
    def head(self) -> str | None:
        """Id of the last commit this store has seen on its branch."""
        return self._head

    @property
    def codecs(self) -> Codecs:
        """The codec registry this store encodes and decodes its documents with (``gitstate.open(codecs=...)``)."""
        return self._codecs

    @property
    def pending(self) -> int:
        """Number of writes not yet committed."""
        with self._lock:
            return len(self._journal)

    # ================================================================= writing
    def _write(self, doc: str, kind: str, key: object, value: Any) -> None:
        self._check_open()
        if self.read_only:
            raise SaveError(f"{self.path} is on a read-only file system or not writable: the store is open read-only")
        # First: it refuses .gitstate/ before any file check.
        keyt, value = check_write(doc, kind, key, value, codec=self._codecs.for_doc(doc))
        doc = self._doc(doc)
        if doc in self._oversized:
            self._check_not_oversized(doc, EncodeError)
        if isinstance(value, (bytes, str)) and not keyt and len(value) > self.max_doc_bytes // 4:
            # Raw and text documents: the size is known here (structured ones are measured when encoded).
            size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8"))
            if size > self.max_doc_bytes and not self._codecs.for_doc(doc).structured:
                raise _too_big(doc, size, self.max_doc_bytes, "would be")
        with self._lock:
            try:
                view = self._load(doc)
            except DecodeError:
                if keyt or kind not in ("set", "delete"):
                    raise
                view = _ABSENT  # replacing a committed document that does not parse
            if view is _ABSENT and kind != "delete":
                self._check_doc_slot(doc)
            check_target(doc, kind, keyt, view)
            self._seq += 1
            now = time.monotonic()
            op = _Op(self._seq, doc, kind, keyt, value, now)
            try:
                self._views[doc] = _apply(view, op)
            except KeyPathError as e:
                self._views.pop(doc, None)  # may be half-applied; reload from history + journal
                raise KeyNotFound(doc, keyt, e.problem) from None
            # The journal keeps its own copy: later in-place ops on the view must not reach it.
            op.value = copy_value(value)
            self._journal.append(op)
            self._dirty[doc] = self._seq
            self._last_write = now
            if self._first_pending is None:
                self._first_pending = now
            if self.durability == "debounced" and not self._tx_depth:
                self._cv.notify()
        if self.durability == "immediate" and not self._tx_depth:
            self.flush()

    def _check_doc_slot(self, doc: str) -> None:
        """Refuse a new document whose path is, or lies under, another document. Call with ``_lock`` held."""
        parts = doc.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        for p in prefixes:
            if p in self._dirty:  # pending writes decide: created, or deleted
                exists = self._views.get(p, _ABSENT) is not _ABSENT
            else:
                exists = self._head_tree is not None and self._repo.blob_id_at(self._head_tree, p) is not None
            if exists:
                raise InvalidPath(doc, f"{p!r} is a document, so it cannot also be a directory")
        below = doc + "/"
        if any(d.startswith(below) and self._views.get(d, _ABSENT) is not _ABSENT for d in self._dirty) or (
            self._head_tree is not None and self._repo.is_dir_at(self._head_tree, doc)
        ):
            raise InvalidPath(doc, "is a directory of other documents")

    def set(self, doc: str, key: object, value: Any) -> None:
        """Set ``key`` in ``doc`` to ``value`` (a private copy is kept); ``key=None`` replaces the document.

        Intermediate mappings are created. The value is checked here, on the caller's thread: one the document's
        codec cannot store raises :class:`~gitstate.errors.EncodeError` at once.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     s.set("state.json", "services.slack", True)
            ...     s.set("notes.md", None, "# notes\\n")
            ...     s.get("state.json")
            {'services': {'slack': True}}
        """
        self._write(doc, "set", key, value)

    def delete(self, doc: str, key: object = None) -> None:
        """Delete ``key`` from ``doc``; ``key=None`` removes the document.

        Raises:
            KeyNotFound: the document or key does not exist.
        """
        self._write(doc, "delete", key, None)

    def update(self, doc: str, mapping: Mapping[str, Any], key: object = None) -> None:
        """Deep-merge ``mapping`` into the document (or into the mapping at ``key``).

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     s.set("state.json", None, {"services": {"a": True}, "jobs": {}})
            ...     s.update("state.json", {"services": {"b": False}})
            ...     s.get("state.json", "services")
            {'a': True, 'b': False}
        """
        self._write(doc, "update", key, mapping)

    def append(self, doc: str, key: object, value: Any) -> None:
        """Append ``value`` to the list at ``key`` (created if missing).

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     s.append("memory/current_work.yaml", "follow_ups", "check coverage")
            ...     s.get("memory/current_work.yaml", "follow_ups")
            ['check coverage']
        """
        self._write(doc, "append", key, value)

    @contextlib.contextmanager
    def transaction(self, message: str | None = None, *, metadata: Mapping[str, str] | None = None) -> Iterator[Store]:
        """Group writes into one commit, or none if the block raises (memory and disk then stay as before).

        Other threads' reads and writes wait until the block ends. Writes pending from before the block are
        committed first, on their own. On success the block's writes are flushed at once.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as s:
            ...     with s.transaction("move task 3 to done"):
            ...         s.set("tasks/t3.json", "status", "done")
            ...         s.append("state.json", "done", 3)
            ...     s.log(limit=1)[0].docs
            ['state.json', 'tasks/t3.json']
        """
        self._check_open()
        with self._flush_lock, self._lock:
            if self._tx_depth:  # nested: part of the outer transaction
                self._tx_depth += 1
                try:
                    yield self
                finally:
                    self._tx_depth -= 1
                return
            if self._journal:
                self.flush()
            mark = self._seq
            self._tx_depth, self._tx_owner = 1, threading.get_ident()
            try:
                yield self
            except BaseException:
                # Ops mutate views in place: drop the views the block touched; they rebuild from history plus
                # the journal (which no longer holds the block's ops).
                touched = {op.doc for op in self._journal if op.seq > mark}
                self._journal = [op for op in self._journal if op.seq <= mark]
                self._dirty = {d: s for d, s in self._dirty.items() if s <= mark}
                for doc in touched:
                    self._views.pop(doc, None)
                if not self._journal:
                    self._first_pending = None
                raise
            finally:
                self._tx_depth, self._tx_owner = 0, None
            self.flush(message, metadata=metadata)

    # ================================================================= flushing
    def flush(self, message: str | None = None, *, metadata: Mapping[str, str] | None = None) -> str | None:
        """Commit pending writes now and wait until they are durable.

        Args:
            message: subject of the commit (default: a summary of the changed keys).
            metadata: extra Git trailers (``{"Run-Id": "42"}``).

        Returns:
            The new commit id, or None when nothing was pending (or the writes changed nothing).

        Raises:
            SaveError: the commit could not be written (disk full, read-only...). The writes stay pending and a
                later flush retries them.
        """
        if self._closed:
            with self._lock:
                if not self._journal:
                    return None
            raise StoreClosed(f"store {self.path} is closed")
        with self._flush_lock:
            with self._lock:
                if not self._journal:
                    return None
            self._raise_if_git_busy()
            t0 = time.perf_counter()
            outer = self._flush_owner is None
            self._flush_owner = threading.get_ident()
            try:
                commit, changes, events, message_out, failed = self._flush_locked(message, metadata)
            except GitStateError as e:
                err = (
                    e
                    if isinstance(e, SaveError)
                    else SaveError(f"{self.path}: flush failed: {e}", pending=self.pending)
                )
                self._record_failure(err)
                if err is e:
                    raise
                raise err from e
            except OSError as e:
                err = SaveError(
                    f"{self.path}: could not save {self.pending} pending write(s): {_oserror(e)}",
                    pending=self.pending,
                )
                self._record_failure(err)
                raise err from e
            finally:
                if outer:
                    self._flush_owner = None
            ms = (time.perf_counter() - t0) * 1000
            self._stats.flushes += 1
            self._stats.last_flush_ms = ms
            self._stats.flush_ms.append(ms)
            del self._stats.flush_ms[:-1000]
            self._failures_in_row = 0
        for ev in events:
            self._emit(ev)
        if commit is not None:
            self._stats.commits += 1
            self._emit(
                Committed(commit=commit, actor="library", docs=sorted(changes), message=message_out, duration_ms=ms)
            )
            self._after_commit(commit)
        if failed:
            self._raise_unencodable(failed, commit)
        return commit

    # ================================================================= git operations in progress
    def _check_git_busy(self) -> str | None:
        """The git operation in progress in the store (merge, rebase...), or None; notes when one starts or ends
        (one warning and a ``git_busy`` event each way, never a stream of errors)."""
        op = self._repo.git_operation_in_progress()
        was, self._git_busy = self._git_busy, op
        if op is not None and was is None:
            logger.warning(
                "%s: a git %s is in progress in the store; holding %d pending write(s) until it is finished (%s)",
                self.path,
                op,
                self.pending,
                git_operation_advice(op),
            )
            self._emit(GitOperationInProgress(operation=op, pending=self.pending))
        elif op is None and was is not None:
            logger.info("%s: the git %s is finished; committing the held writes", self.path, was)
            self._emit(GitOperationInProgress(operation=was, pending=self.pending, finished=True))
        return op

    def _raise_if_git_busy(self) -> None:
        """Refuse to touch the work tree or the index while git owns them (a merge, a rebase...): they may hold
        conflicts the user is resolving, and writing them would stage our version as the resolution. Not counted
        as a failure: the flusher looks again every :data:`_GIT_BUSY_POLL_S` and resumes by itself."""
        op = self._check_git_busy()
        if op is None:
            return
        self._retry_at = time.monotonic() + _GIT_BUSY_POLL_S
        n = self.pending
        raise GitBusy(
            f"{self.path}: a git {op} is in progress in the store, so nothing was written; {n} write(s) are held "
            f"and committed on top of its result once it is finished: {git_operation_advice(op)}",
            operation=op,
            pending=n,
        )

    def _raise_unencodable(self, failed: dict[str, Exception], commit: str | None) -> None:
        """Report documents a flush could not encode: their writes stay pending, the rest was committed."""
        with self._lock:
            counts = {doc: sum(op.doc == doc for op in self._journal) for doc in failed}
        what = "; ".join(f"{doc} ({counts[doc]} write(s)): {e}" for doc, e in sorted(failed.items()))
        done = f"the other documents were committed as {commit[:12]}" if commit else "nothing else was pending"
        err = SaveError(
            f"{self.path}: could not save {what}. Those writes stay pending ({done}); replace or delete the "
            "document's bad value, or discard_pending()",
            pending=self.pending,
            docs=tuple(sorted(failed)),
            commit=commit,
        )
        self._record_failure(err)
        raise err from next(iter(failed.values()))

    def _record_failure(self, err: SaveError) -> None:
        self._stats.failures += 1
        self._stats.last_error = str(err)
        self._failures_in_row += 1
        self._retry_at = time.monotonic() + min(_MAX_RETRY_DELAY_S, 0.25 * 2 ** min(self._failures_in_row, 8))
        logger.error("%s", err)
        self._emit(SaveErrorEvent(error=err, pending=self.pending))

    def _flush_locked(
        self, message: str | None, metadata: Mapping[str, str] | None
    ) -> tuple[str | None, dict[str, bytes | None], list[Event], str, dict[str, Exception]]:
        events: list[Event] = []
        msg = ""
        with self._repo.lock():
            head = self._repo.head()
            with self._lock:
                if head != self._head:
                    events.append(self._advance_to(head, source="process"))
            try:
                _migrate.check_flush(self)
            except _migrate.SchemaMismatch:
                for ev in events:
                    self._emit(ev)
                raise
            with self._lock:
                seq_hi = self._seq
                # Encode and describe under _lock, from the live views: no copy of whole documents, only of
                # the values that changed (quick_diff prunes equal subtrees with C-level ==).
                files, described, failed = self._encode_dirty(list(self._dirty))
            # Outside _lock: readers and writers go on while we talk to the disk.
            if files:
                human_events = self._take_unsaved_human_edits(files)
                for doc in [d for d in files if d in self._oversized]:  # never overwrite a file nobody read
                    del files[doc]
                    failed[doc] = _too_big(doc, self._oversized[doc], self.max_doc_bytes, "on disk is")
                if human_events:
                    events += human_events
                    with self._lock:  # the branch moved under a hand edit: encode and describe again
                        files, described, failed_again = self._encode_dirty(list(files))
                        failed.update(failed_again)
            commit = None
            if files:
                changes = [c for doc in files for c in described[doc]]
                msg = build_message(message, changes, "library", metadata)
                commit = self._commit(
                    files, msg, author=self.author, actor="library", changes=changes, parent=self._head
                )
            with self._lock:
                if commit is not None:
                    self._head = commit
                    self._head_tree = self._repo.commit_info(commit).tree
                    self._ref_stamp = self._repo.ref_stamp()
                # The writes of a document that could not be encoded stay pending (and are reported).
                self._journal = [op for op in self._journal if op.seq > seq_hi or op.doc in failed]
                self._dirty = {d: s for d, s in self._dirty.items() if s > seq_hi or d in failed}
                # Writes that arrived during this flush start their own max-delay clock.
                self._first_pending = self._journal[0].t if self._journal else None
        return commit, files, events, msg, failed

    def _encode_dirty(
        self, docs: list[str]
    ) -> tuple[dict[str, bytes | None], dict[str, list[docdiff.Change]], dict[str, Exception]]:
        """Canonical bytes of the documents whose content differs from the head, their changes, and the documents
        that could not be encoded (with why: an encoder fault, a document over ``max_doc_bytes``), which the flush
        leaves pending so that one bad document never holds back the others. ``_lock`` held."""
        files: dict[str, bytes | None] = {}
        described: dict[str, list[docdiff.Change]] = {}
        failed: dict[str, Exception] = {}
        for doc in docs:
            try:
                view = self._load(doc)
                codec = self._codecs.for_doc(doc)
                data = None if view is _ABSENT else codec.encode(view)
                if data is not None and len(data) > self.max_doc_bytes:
                    raise _too_big(doc, len(data), self.max_doc_bytes, "would be")
                old_b = self._committed_bytes(doc)
                if data == old_b:
                    continue
                old = docdiff.MISSING if old_b is None else _safe_decode(codec, old_b, doc)
                changes = _changes_of(codec, doc, old, docdiff.MISSING if view is _ABSENT else view, copy=True)
            except Exception as e:  # an encoder fault or a value that slipped past normalize()
                logger.debug("cannot encode %s", doc, exc_info=True)
                failed[doc] = e
                continue
            files[doc] = data
            described[doc] = changes
        return files, described, failed

    def _commit(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        author: str,
        actor: str,
        changes: list[docdiff.Change],
        parent: str | None,
        extra_parents: tuple[str, ...] = (),
        stats: Mapping[str, os.stat_result | None] | None = None,
    ) -> str:
        """Write work-tree files, then the commit, move the branch, sync the index and record the change keys.
        Call with the repository lock held and ``parent`` equal to the branch head.

        With ``stats`` the files are NOT written: their content is already on disk (a human's edit, recovered
        state) and the given stats go into the index (None: unknown, Git re-reads the file)."""
        ids = {doc: blob_id(data) for doc, data in files.items() if data is not None}
        if stats is None:
            self._written.update(ids)
            worktree.apply(self.path, files, fsync=self._fsync)
        commit = self._repo.commit_files(
            parent, dict(files), message, author=author, extra_parents=extra_parents, fsync=self._fsync
        )
        # The branch has moved: from here on nothing may fail the flush (the writes ARE committed); the index
        # and the key index are caches that are rebuilt when they fall behind.
        try:
            tree = self._repo.commit_info(commit).tree
            self._repo.sync_index(tree, {doc: ids.get(doc) for doc in files}, stats=stats, defer=True)
        except (OSError, GitStateError) as e:
            self._repo.index_fell_behind()
            logger.warning("committed %s but could not update the Git index (%s); it is rebuilt later", commit, e)
        self._record(commit, actor, changes)
        for doc in files:
            self._written.pop(doc, None)
        return commit

    def _record(self, commit: str, actor: str, changes: list[docdiff.Change]) -> None:
        try:
            from . import history

            history.record(self._repo, commit, actor=actor, changes=changes)
        except Exception:  # the key index is a cache; history rebuilds what it misses
            logger.exception("could not record the key index entry of %s", commit)

    def _after_commit(self, commit: str) -> None:
        for hook in self._after_commit_hooks:
            try:
                hook(commit)
            except Exception:
                logger.exception("after-commit hook %r failed", hook)

    # ================================================================= the background flusher
    def _due_in(self, now: float) -> float | None:
        """Seconds until the pending writes are due, None when nothing is pending. Call with ``_lock``."""
        if not self._journal or self.durability != "debounced" or self._tx_depth:
            return None
        first = self._first_pending if self._first_pending is not None else now
        due = min(self._last_write + self.debounce_ms / 1000, first + self.max_delay_ms / 1000)
        return max(due, self._retry_at) - now

    def _flusher_loop(self) -> None:
        next_poll = time.monotonic() + _HEAD_POLL_S
        while not self._stop.is_set():
            with self._cv:
                now = time.monotonic()
                due = self._due_in(now)
                wait = min(due if due is not None else _HEAD_POLL_S, max(0.0, next_poll - now))
                if wait > 0:
                    self._cv.wait(wait)
                    now = time.monotonic()
                    due = self._due_in(now)
            if self._stop.is_set():
                break
            if due is not None and due <= 0:
                try:
                    self.flush()
                except GitStateError:
                    pass  # recorded and emitted as save_error; retried after a back-off
                except Exception:
                    logger.exception("unexpected error in the background flush")
                    self._retry_at = time.monotonic() + _MAX_RETRY_DELAY_S
            if now >= next_poll:
                next_poll = now + (_GIT_BUSY_POLL_S if self._git_busy else _HEAD_POLL_S)
                try:
                    if self._git_busy is not None and self._check_git_busy() is None and self._held_edits:
                        held, self._held_edits = self._held_edits, set()
                        self._on_files_changed(held)
                    self._repair_index()
                    self._maybe_refresh()
                except Exception:
                    logger.debug("head poll failed", exc_info=True)

    def _repair_index(self) -> None:
        """Write index updates deferred by flushes (big stores), or rebuild the index if an earlier update failed
        (disk full): ``git status`` is clean again once flushes pause."""
        behind = self._repo.index_is_behind()
        if self.read_only or not (behind or self._repo.index_has_unwritten_updates()):
            return
        if self._repo.git_operation_in_progress():
            return  # git owns the index meanwhile (it may hold conflicts); rebuilt once it is done
        if not self._flush_lock.acquire(blocking=False):
            return
        try:
            with self._repo.lock():
                head = self._repo.head()
                if head is not None and behind:
                    self._repo.rebuild_index(self._repo.commit_info(head).tree)
                else:
                    self._repo.write_deferred_index()
        except (OSError, GitStateError) as e:
            logger.debug("index still cannot be rebuilt: %s", e)
        finally:
            self._flush_lock.release()

    # ================================================================= commits made by others
    def _take_unsaved_human_edits(self, files: dict[str, bytes | None]) -> list[Event]:
        """Before overwriting files, commit hand edits to them that nothing has committed yet (no watcher
        running), so a library write never silently discards a human's change. Repository lock held; the caller
        encodes the documents again when this returns events (the branch moved)."""
        edited = {doc: r for doc, r in self._unsaved_edits(files).items() if r[0] != files[doc]}
        if not edited:
            return []
        return self._ingest_locked(edited, reason="unsaved edit found before a library write")

    def _unsaved_edits(self, docs: Iterable[str]) -> dict[str, tuple[bytes | None, os.stat_result | None]]:
        """The work-tree content (see :meth:`_read_worktree`) of those of ``docs`` whose file differs from the
        head's version. A file whose stat matches its index entry is taken as unchanged without being read."""
        out: dict[str, tuple[bytes | None, os.stat_result | None]] = {}
        for doc in docs:
            read = self._read_worktree(doc)
            if read is not None and read[0] != self._committed_bytes(doc):
                out[doc] = read
        return out

    def _read_worktree(self, doc: str) -> tuple[bytes | None, os.stat_result | None] | None:
        """The work-tree file's content, and a stat that is safe to record in the index with it (None when the
        file changed while it was read, so the newer content is never hidden by a matching stat); None when the
        file's stat matches its index entry for the head's version (unchanged, not read)."""
        full = self.path / doc
        self._oversized.pop(doc, None)
        try:
            check_no_symlinks(self.path, doc)
            st = os.lstat(full)
            name = doc.encode("utf-8", "surrogateescape")
            if self._head_tree and self._repo.index.valid and name in self._repo.index.entries:
                sha = self._repo.blob_id_at(self._head_tree, doc)
                if sha is not None and self._repo._stat_matches(doc, sha, st):
                    return None
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                if st.st_size > self.max_doc_bytes:
                    self._oversized[doc] = st.st_size
                    logger.warning("%s; not read or committed", _too_big(doc, st.st_size, self.max_doc_bytes))
                    return None
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
            finally:
                os.close(fd)
            data = b"".join(chunks)
            after = os.lstat(full)
            same = (after.st_ino, after.st_mtime_ns, after.st_size) == (st.st_ino, st.st_mtime_ns, len(data))
            return data, st if same else None
        except (FileNotFoundError, NotADirectoryError, InvalidPath):
            return None, None
        except OSError as e:  # ELOOP from O_NOFOLLOW, EACCES...
            logger.warning("cannot read %s: %s", full, e)
            return None, None

    def _quarantine(self, doc: str, data: bytes, error: DecodeError, *, log_level: int = logging.WARNING) -> str:
        """Keep content that does not parse in ``.git/gitstate/quarantine/`` (deduplicated); return its path."""
        qdir = self._repo.meta_dir / "quarantine"
        qdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = doc.replace("/", "%2F")
        digest = blob_id(data)[:12]
        for existing in qdir.glob(f"*--{safe}--{digest}"):
            return str(existing)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = qdir / f"{stamp}--{safe}--{digest}"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        (qdir / f"{target.name}.reason").write_text(f"{error}\n")
        logger.log(
            log_level,
            "%s does not parse (%s); kept its content in %s and serve the last committed version",
            doc,
            error,
            target,
        )
        return str(target)

    def quarantined(self) -> list[dict[str, str]]:
        """Edits that did not parse and were kept aside: ``[{doc, path, error}]``, oldest first."""
        qdir = self._repo.meta_dir / "quarantine"
        out = []
        for p in sorted(qdir.glob("*--*--*")):
            if p.name.endswith(".reason"):
                continue
            parts = p.name.split("--")
            reason = p.with_name(p.name + ".reason")
            out.append(
                {
                    "doc": parts[1].replace("%2F", "/"),
                    "path": str(p),
                    "error": reason.read_text().strip() if reason.exists() else "",
                }
            )
        return out

    def ingest(self, docs: list[str] | builtins.set[str]) -> list[Event]:
        """Commit edits made to files on disk (used by the watcher), as ONE commit by the OS user with actor
        ``human``. Each edit is merged key by key with this store's pending writes: both sides' keys are kept,
        and on a key both changed the human's value wins (the program's value is named in the commit message and
        in the ``external_change`` event). An edit that does not parse is not committed: its content is kept in
        ``.git/gitstate/quarantine/``, the last good version is served, and ``invalid_edit`` fires. The files
        themselves are never rewritten, so an editor's newer save is never undone.

        While a git operation is in progress in the store (a conflicted merge...) it raises
        :class:`~gitstate.errors.GitBusy` and commits nothing: the files may hold conflict markers.

        Returns the events it emitted.
        """
        self._check_open()
        if docs:
            self._raise_if_git_busy()
        events: list[Event] = []
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            with self._lock:
                if head != self._head:
                    events.append(self._advance_to(head, source="process"))
            valid: list[str] = []
            for doc in sorted(set(docs)):
                try:
                    validate_doc_path(doc)
                except InvalidPath as e:
                    logger.warning("ignoring %s: %s", doc, e.reason)
                    continue
                valid.append(doc)
            events += self._ingest_locked(self._unsaved_edits(valid), reason=None)
            for doc in valid:
                if doc in self._oversized:
                    err = _too_big(doc, self._oversized[doc], self.max_doc_bytes)
                    events.append(InvalidEdit(doc=doc, error=f"{err}; not loaded or committed"))
        for ev in events:
            self._emit(ev)
        for ev in events:
            if isinstance(ev, Committed):
                self._stats.commits += 1
                self._after_commit(ev.commit)
        return events

    def _ingest_locked(
        self, reads: Mapping[str, tuple[bytes | None, os.stat_result | None]], *, reason: str | None
    ) -> list[Event]:
        """Commit the on-disk content of documents (``reads``, from :meth:`_unsaved_edits`) as one human edit.
        Repository lock and ``_flush_lock`` held."""
        events: list[Event] = []
        valid: dict[str, tuple[bytes | None, os.stat_result | None, Any, Any]] = {}
        for doc, (data, st) in reads.items():
            committed = self._committed_bytes(doc)
            if data == committed:
                continue
            if data is not None and self._written.get(doc) == blob_id(data):
                continue  # our own write from a flush that failed before its commit: not a human's
            codec = self._codecs.for_doc(doc)
            theirs: Any = docdiff.MISSING
            if data is not None:
                try:
                    theirs = codec.decode(data, doc)
                    if codec.structured:
                        codec.normalize(theirs, doc)
                except (DecodeError, EncodeError) as e:
                    err = e if isinstance(e, DecodeError) else DecodeError(doc, str(e))
                    where = self._quarantine(doc, data, err, log_level=logging.INFO)  # reported by invalid_edit
                    events.append(
                        InvalidEdit(doc=doc, error=err.problem, line=err.line, column=err.column, quarantined_to=where)
                    )
                    continue
            base = docdiff.MISSING if committed is None else _safe_decode(codec, committed, doc)
            valid[doc] = (data, st, base, theirs)
        if not valid:
            return events
        all_changes: list[docdiff.Change] = []
        per_doc: dict[str, tuple[list[docdiff.Change], list[docdiff.Conflict]]] = {}
        extra: list[str] = []
        with self._lock:
            for doc, (_, _, base, theirs) in valid.items():
                changes = _changes_of(self._codecs.for_doc(doc), doc, base, theirs)
                lost = self._rebase_pending_on(doc, base, theirs)
                per_doc[doc] = (changes, lost)
                all_changes += changes
                extra += [
                    f"overrode pending library value of {doc}: {docdiff.format_key(c.key)} = "
                    f"{docdiff.format_value(c.ours)}"
                    for c in lost
                ]
        if reason:
            extra.append(f"({reason})")
        msg = build_message(None, all_changes, "human", extra_lines=extra)
        commit = self._commit(
            {doc: v[0] for doc, v in valid.items()},
            msg,
            author=human_author(),
            actor="human",
            changes=all_changes,
            parent=self._head,
            stats={doc: v[1] for doc, v in valid.items()},
        )
        with self._lock:
            self._advance_to(commit, source="human", rebase=False)
            self._ref_stamp = self._repo.ref_stamp()
        events.append(Committed(commit=commit, actor="human", docs=sorted(valid), message=msg))
        for doc, (changes, lost) in per_doc.items():
            events.append(ExternalChange(docs=[doc], changes=changes, overwritten=lost, source="human", commit=commit))
        return events

    def _commit_external(
        self,
        steps: list[tuple[Mapping[str, bytes | None], str]],
        *,
        actor: str,
        author: str | None = None,
        expected_head: Any = _DEFAULT,
        extra_parents: tuple[str, ...] = (),
    ) -> str | None:
        """Commit file contents made elsewhere (restore, undo, migration steps): one commit per step, the branch
        moved once at the end, pending writes re-applied on top. Returns the last commit id (None if nothing
        changed). Raises RepositoryError if ``expected_head`` is given and the branch is elsewhere, GitBusy while a
        git operation is in progress in the store."""
        self._check_open()
        self._raise_if_git_busy()
        # Every path first, before an unsaved hand edit is committed or any object is written.
        worktree.check_paths(((d, None) for files, _ in steps for d in files), what=f"the {actor} commit")
        events: list[Event] = []
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            if expected_head is not _DEFAULT and head != expected_head:
                raise RepositoryError(f"the branch moved while preparing the {actor} commit; try again")
            with self._lock:
                if head != self._head:
                    events.append(self._advance_to(head, source="process"))
            edited = self._unsaved_edits(sorted({d for files, _ in steps for d in files}))
            if edited:  # never overwrite a hand edit nobody committed: it goes into history first
                events += self._ingest_locked(edited, reason=f"unsaved edit found before a {actor} commit")
                head = self._head
            parent = head
            tree = self._head_tree
            all_files: dict[str, bytes | None] = {}
            commits: list[tuple[str, list[docdiff.Change], list[str]]] = []
            for files, message in steps:
                files = {d: b for d, b in files.items() if b != (self._repo.read_at(tree, d) if tree else None)}
                if not files:
                    continue
                changes = self._describe_between(tree, files)
                full = message if "Gitstate-Actor:" in message else build_message(message, changes, actor)
                cid = self._repo.commit_files(
                    parent,
                    dict(files),
                    full,
                    author=author or self.author,
                    fsync=self._fsync,
                    move_branch=False,
                    base_tree=tree,
                    extra_parents=extra_parents if not commits else (),
                )
                commits.append((cid, changes, sorted(files)))
                parent, tree = cid, self._repo.commit_info(cid).tree
                all_files.update(files)
            if not commits:
                for e in events:
                    self._emit(e)
                return None
            worktree.apply(self.path, all_files, fsync=self._fsync, what=f"the {actor} commit")
            self._repo.update_ref(self._repo.branch_ref, parent, head, fsync=self._fsync)
            assert tree is not None
            try:  # the branch has moved: the index is a cache from here on
                self._repo.sync_index(tree, {d: None if b is None else blob_id(b) for d, b in all_files.items()})
            except OSError as e:
                self._repo.index_fell_behind()
                logger.warning("committed %s but could not update the Git index (%s); it is rebuilt later", parent, e)
            for cid, changes, _ in commits:
                self._record(cid, actor, changes)
            with self._lock:
                ev = self._advance_to(parent, source=actor, rebase=False)
                self._ref_stamp = self._repo.ref_stamp()
            if _migrate.SCHEMA_DOC in all_files:
                # This program restored/undid/migrated the schema itself: it now writes the version it chose.
                self._expected_schema = _migrate.version_at(self._repo, tree)
        for event in events:
            self._emit(event)
        for cid, _changes, docs in commits:
            self._emit(Committed(commit=cid, actor=actor, docs=docs))
        self._emit(
            ExternalChange(docs=ev.docs, changes=[c for _, cs, _ in commits for c in cs], source=actor, commit=parent)
        )
        if parent is not None:
            self._after_commit(parent)
        return parent

    def _describe_between(self, tree: str | None, files: Mapping[str, bytes | None]) -> list[docdiff.Change]:
        changes: list[docdiff.Change] = []
        for doc, data in files.items():
            codec = self._codecs.for_doc(doc)
            old_b = self._repo.read_at(tree, doc) if tree else None
            old = docdiff.MISSING if old_b is None else _safe_decode(codec, old_b, doc)
            new = docdiff.MISSING if data is None else _safe_decode(codec, data, doc)
            changes.extend(_changes_of(codec, doc, old, new))
        return changes

    def _checkout(self, new_head: str, *, expected_head: str | None, actor: str) -> None:
        """Move the branch to ``new_head`` (a fast-forward or a merge commit already written), updating the
        work tree and index for the changed paths. Repository lock and ``_flush_lock`` held."""
        assert self._repo.holds_lock()
        old_tree = self._repo.commit_info(expected_head).tree if expected_head else None
        new_tree = self._repo.commit_info(new_head).tree
        changed = worktree.checkout(self._repo, old_tree, new_tree, fsync=self._fsync, what=f"the {actor}")
        self._repo.update_ref(self._repo.branch_ref, new_head, expected_head, fsync=self._fsync)
        self._repo.sync_index(new_tree, changed)
        with self._lock:
            ev = self._advance_to(new_head, source=actor, rebase=False)
            self._ref_stamp = self._repo.ref_stamp()
        self._emit(ev)

    # ================================================================= recovery on open
    def _recover(self) -> Loaded:
        """Bring the store to a clean state on open: stale locks removed, files changed on disk committed as
        recovered state, files that do not parse quarantined (the last committed version is served)."""
        recovered: dict[str, bytes | None] = {}
        quarantined: dict[str, str] = {}
        with self._flush_lock, self._repo.lock():
            self._repo.recover_stale_locks()
            # A damaged branch ref is repaired from the last good commit (or open refuses): never read as "no
            # commits yet", which would commit the work tree as a new root over the history.
            repaired = _recovery.repair(self._repo)
            head = self._repo.head()
            tree = self._repo.commit_info(head).tree if head else None
            oversized: dict[str, int] = {}
            changes = self._repo.worktree_changes(
                tree or EMPTY_TREE,
                ignored=self._repo.ignore_matcher(),
                max_bytes=self.max_doc_bytes,
                oversized=oversized,
            )
            for doc, size in sorted(oversized.items()):
                logger.warning("%s; not read or committed", _too_big(doc, size, self.max_doc_bytes))
                self._oversized[doc] = size
                quarantined[doc] = str(self.path / doc)  # its content stays where it is, uncommitted
            for doc, data in sorted(changes.items()):
                try:
                    validate_doc_path(doc)
                except InvalidPath as e:
                    logger.warning("not tracking %s: %s", doc, e.reason)
                    continue
                if data is not None:
                    try:
                        codec = self._codecs.for_doc(doc)
                        value = codec.decode(data, doc)
                        if codec.structured:
                            codec.normalize(value, doc)
                    except (DecodeError, EncodeError) as e:
                        err = e if isinstance(e, DecodeError) else DecodeError(doc, str(e))
                        quarantined[doc] = self._quarantine(doc, data, err)
                        continue
                recovered[doc] = data
            self._head = head
            self._head_tree = tree
            if recovered:
                described = self._describe_between(self._head_tree, recovered)
                what = "adopted existing files" if head is None else "recovered changes found on disk at open"
                msg = build_message(what, described, "human")
                head = self._commit(
                    recovered,
                    msg,
                    author=human_author(),
                    actor="human",
                    changes=described,
                    parent=head,
                    stats=dict.fromkeys(recovered),
                )
                self._head = head
                self._head_tree = self._repo.commit_info(head).tree
                logger.info(
                    "%s: committed %d document(s) changed on disk: %s",
                    self.path,
                    len(recovered),
                    ", ".join(sorted(recovered)),
                )
            elif self._head_tree is not None and not self._index_matches(self._head_tree):
                self._repo.rebuild_index(self._head_tree)
            self._ref_stamp = self._repo.ref_stamp()
        return Loaded(
            head=self._head,
            recovered=sorted(recovered),
            quarantined=quarantined,
            repaired=[repaired.describe()] if repaired else [],
        )

    def _open_during_git_operation(self, operation: str) -> Loaded:
        """Open without recovery while git is busy in the store: the files and the index are git's (conflicts,
        the other side's changes) until the user finishes, so nothing found on disk is committed or
        quarantined, and the index is left alone. Flushes hold until git is done."""
        head = self._repo.head()
        self._head, self._head_tree = head, self._repo.commit_info(head).tree if head else None
        self._ref_stamp = self._repo.ref_stamp()
        self._check_git_busy()
        return Loaded(head=head)

    def _index_matches(self, tree: str) -> bool:
        if not self._repo.index.load():
            return False
        blobs = self._repo.list_blobs(tree)
        shas = self._repo.index.shas
        if len(shas) != len(blobs):
            return False
        return all(shas.get(p.encode("utf-8", "surrogateescape")) == bytes.fromhex(s) for p, s in blobs.items())

    # ================================================================= history (history.py)
    def log(self, doc: str | None = None, key: object = None, limit: int | None = None) -> list[Commit]:
        """Commits on the store's branch, newest first; with ``doc`` only those that changed it, with ``key``
        only those that changed that key (served from a key index, not by diffing history).

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
            ...     s.set("state.json", "services.slack", False)
            ...     s.set("state.json", "services.slack", True)
            ...     [c.message.splitlines()[0] for c in s.log(key="services.slack")][0]
            'state.json: services.slack false -> true'
        """
        from . import history

        self._check_open()
        self._maybe_refresh()
        if doc is not None:
            validate_doc_path(doc.rstrip("/"))
        return history.log(
            self._repo,
            self._repo.head(),
            doc=doc,
            key=parse_key(key) if key is not None else None,
            limit=limit,
        )

    def diff(self, a: str = "HEAD~1", b: str = "HEAD", doc: str | None = None) -> list[docdiff.Change]:
        """Key-level changes from revision ``a`` to revision ``b`` (optionally of one document)."""
        from . import history

        self._check_open()
        if doc is not None:
            validate_doc_path(doc.rstrip("/"))
        return history.diff(self._repo, a, b, doc=doc)

    def at(self, rev: str) -> StateView:
        """A read-only view of the store as of ``rev`` (id, ``HEAD~N``, snapshot, ``"2h ago"``, ISO time)."""
        from . import history

        self._check_open()
        return history.at(self._repo, rev)

    def resolve(self, rev: str) -> str:
        """The commit id a revision names. Raises :class:`~gitstate.errors.RevisionNotFound`."""
        from . import history

        return history.resolve(self._repo, rev)

    def restore(self, rev: str, docs: list[str] | None = None, message: str | None = None) -> CommitId:
        """Make the documents (all, or ``docs``) equal to their content at ``rev``, as a NEW commit (actor
        ``restore``); history is never rewritten. A document absent at ``rev`` is removed. Pending writes are
        committed first. Returns the commit id, a :class:`CommitId` (a ``str``): the new commit with
        ``created`` True, or, if nothing differed, the current head with ``created`` False."""
        from . import history

        self._check_open()
        for d in docs or []:
            validate_doc_path(d.rstrip("/"))
        self.flush()
        # Resolve and compute under the locks: another writer cannot move the branch in between.
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            target = history.resolve(self._repo, rev)
            files = history.restore_files(self._repo, head, target, docs)
            short = target[:8]
            subject = message or f"restore {', '.join(docs) if docs else 'all documents'} to {rev}" + (
                f" ({short})" if not rev.startswith(short) else ""
            )
            commit = self._commit_external([(files, subject)], actor="restore", expected_head=head)
        return CommitId(commit, created=True) if commit else CommitId(head or "", created=False)

    def undo(self) -> CommitId:
        """Revert the last commit as a new commit (actor ``restore``). Pending writes are committed first,
        so ``undo()`` reverts them. Returns a :class:`CommitId` like :meth:`restore`."""
        from . import history

        self._check_open()
        self.flush()
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            files, subject = history.undo_files(self._repo, head)
            commit = self._commit_external([(files, subject)], actor="restore", expected_head=head)
        return CommitId(commit, created=True) if commit else CommitId(head or "", created=False)

    def snapshot(self, name: str, message: str | None = None) -> str:
        """Tag the current state (pending writes flushed first) as ``name``; returns the commit id."""
        from . import history

        self._check_open()
        self.flush()
        return history.snapshot(self._repo, name, tagger=self.author, message=message)

    def snapshots(self) -> list[Snapshot]:
        """Snapshots (Git tags), oldest first."""
        from . import history

        self._check_open()
        return history.snapshots(self._repo)

    # ================================================================= watcher (watcher.py)
    def watch(self, **options: Any) -> Any:
        """Start a watcher thread that commits edits humans make to the files (see :mod:`gitstate.watcher`).
        Returns the :class:`~gitstate.watcher.Watcher`; ``.stop()`` ends it (``close()`` does too)."""
        from .watcher import Watcher

        self._check_open()
        if self._watcher is not None and self._watcher.running:
            return self._watcher
        self._watcher = Watcher(
            self.path,
            self._on_files_changed,
            is_ignored=self._repo.ignore_matcher(),
            ignore_factory=self._repo.ignore_matcher,
            **{"codecs": self._codecs, **options},
        )
        self._watcher.start()
        self.ingest(self._edits_since_head())  # edits made while nothing was watching
        return self._watcher

    def _edits_since_head(self) -> list[str]:
        with self._flush_lock, self._repo.lock():
            tree = self._head_tree or EMPTY_TREE
            oversized: dict[str, int] = {}  # listed too (unread): ingest reports them
            edits = self._repo.worktree_changes(
                tree, ignored=self._repo.ignore_matcher(), max_bytes=self.max_doc_bytes, oversized=oversized
            )
            return sorted(edits.keys() | oversized.keys())

    def _on_files_changed(self, docs: builtins.set[str]) -> None:
        if self._closed:
            return
        try:
            self.ingest(docs)
        except GitBusy:
            self._held_edits |= set(docs)  # ingested once git is done (see _flusher_loop)
        except GitStateError as e:
            logger.error("could not commit edits to %s: %s", ", ".join(sorted(docs)), e)

    # ================================================================= remotes (remote.py)
    def remote_add(self, name: str, url: str, *, username: str | None = None, password: str | None = None) -> None:
        """Add a remote (a path, ``file://``, ``git://``, ``http(s)://`` or ``ssh://`` URL). Credentials in the URL
        are kept out of ``.git/config`` (see :mod:`gitstate.remote`)."""
        from . import remote as _remote

        self._check_open()
        _remote.add_remote(self._repo, name, url, username=username, password=password)

    def remotes(self) -> dict[str, str]:
        """Remote names and URLs (without credentials)."""
        from . import remote as _remote

        return _remote.list_remotes(self._repo)

    def remote_remove(self, name: str) -> None:
        """Forget a remote (its tracking refs and stored credentials too)."""
        from . import remote as _remote

        self._check_open()
        _remote.remove_remote(self._repo, name)

    def push(self, remote: str = "origin", *, progress: Callable[[str], None] | None = None) -> str | None:
        """Flush, then push the branch to ``remote``. Returns the pushed commit id (None if nothing to push).

        Raises:
            PushRejected: the remote moved; run :meth:`sync`.
            RemoteError: the remote is unreachable or refused the push.
        """
        from . import remote as _remote

        self._check_open()
        self.flush()
        return _remote.push(self._repo, remote, progress=progress)

    def pull(
        self, remote: str = "origin", *, on_conflict: str = "ours", progress: Callable[[str], None] | None = None
    ) -> str | None:
        """Fetch ``remote`` and bring its changes in: a fast-forward when possible, else a merge commit (actor
        ``merge``) whose documents are merged key by key. ``on_conflict`` decides keys both sides changed:
        ``"ours"`` (keep the local value, record the remote one), ``"theirs"`` or ``"fail"``
        (:class:`~gitstate.errors.MergeConflict`). Pending writes are re-applied on top. Returns the new head."""
        from . import remote as _remote

        self._check_open()
        if on_conflict not in ("ours", "theirs", "fail"):
            raise ValueError("on_conflict must be 'ours', 'theirs' or 'fail'")
        self._raise_if_git_busy()
        fetched = _remote.fetch(self._repo, remote, progress=progress)
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            outcome = _remote.integrate(self._repo, head, fetched, rule=on_conflict, author=self.author)
            if outcome.commit is not None and outcome.commit != head:
                self._checkout(outcome.commit, expected_head=head, actor="merge")
                if outcome.kind == "merge":
                    self._record(outcome.commit, "merge", list(outcome.changes))
        self.last_pull = outcome
        if outcome.conflicts:
            self._emit(
                ExternalChange(
                    docs=sorted({c.doc for c in outcome.changes}),
                    changes=list(outcome.changes),
                    overwritten=list(outcome.conflicts),
                    source="merge",
                    commit=outcome.commit,
                )
            )
        if outcome.commit is not None and outcome.commit != head:
            self._after_commit(outcome.commit)
        return self._repo.head()

    def sync(
        self, remote: str = "origin", *, on_conflict: str = "ours", progress: Callable[[str], None] | None = None
    ) -> str | None:
        """Pull, then push: afterwards the remote and this store hold the same history."""
        self.flush()
        self.pull(remote, on_conflict=on_conflict, progress=progress)
        return self.push(remote, progress=progress)

    def push_status(self, remote: str | None = None) -> dict[str, Any]:
        """Background push state per remote: last success, commits waiting, last error (survives restarts)."""
        from . import remote as _remote

        return _remote.push_status(self._repo, remote)

    # ================================================================= migrations (migrate.py)
    @property
    def schema_version(self) -> int:
        """The schema version of the state (0 for a store that never migrated)."""
        return _migrate.current_version(self)

    def expect_schema(self, version: int) -> None:
        """Declare that this program's writes fit schema ``version``. After another process migrated the store,
        flushes refuse with :class:`~gitstate.migrate.SchemaMismatch` until the program calls this (or
        restarts); see :mod:`gitstate.migrate`.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp()) as store:
            ...     store.expect_schema(0)
        """
        _migrate.expect(self, version)

    def discard_pending(self) -> int:
        """Drop the writes not yet committed (reads then see the committed state); returns how many.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
            ...     store.set("s.json", "a", 1)
            ...     store.discard_pending(), store.get("s.json", default=None)
            (1, None)
        """
        self._check_open()
        with self._flush_lock, self._lock:
            dropped = len(self._journal)
            for doc in self._dirty:
                self._views.pop(doc, None)
            self._journal, self._dirty, self._first_pending = [], {}, None
        return dropped

    def migrate(self, steps: Mapping[int, Callable[[Any], object]], *, dry_run: bool = False) -> list[str]:
        """Run every migration step above the current schema version, in order, each as one commit (actor
        ``migration``), after a snapshot ``pre-migration-v{cur}-to-v{target}``. If a step raises, nothing lands
        and :class:`~gitstate.errors.MigrationError` names it. With ``dry_run`` nothing changes and the result
        lists the changes the steps would make. Returns the commit ids (or change lines for a dry run)."""
        self._check_open()
        return _migrate.run(self, steps, dry_run=dry_run)

    # ================================================================= maintenance (gc.py, doctor.py)
    def gc(self, *, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
        """Pack history with deltas and prune debris objects left by crashes (no ``git`` binary needed)."""
        from . import gc as _gc

        self._check_open()
        self.flush()
        return _gc.collect(self._repo, progress=progress, fsync=self._fsync)

    # ================================================================= statistics
    def stats(self) -> dict[str, Any]:
        """Figures a program would monitor: flushes, commits, failures, flush durations (ms), pending writes,
        repository size in bytes."""
        import statistics

        fl = list(self._stats.flush_ms)
        return {
            "flushes": self._stats.flushes,
            "commits": self._stats.commits,
            "failures": self._stats.failures,
            "last_error": self._stats.last_error,
            "last_flush_ms": round(self._stats.last_flush_ms, 3),
            "flush_ms_median": round(statistics.median(fl), 3) if fl else None,
            "flush_ms_max": round(max(fl), 3) if fl else None,
            "pending": self.pending,
            "repo_bytes": self._repo.disk_usage(),
            "head": self._head,
            "pack_passes": getattr(self._packer, "passes", None),
            "pack_last_error": str(self._packer.last_error) if getattr(self._packer, "last_error", None) else None,
        }

    # ================================================================= read-only views (for the CLI and programs)
    # Thin public reads over what the Store already holds, so that code outside the library never needs its
    # repository: the CLI uses only these and the methods above.
    def get_commit(self, rev: str) -> Commit:
        """The :class:`~gitstate.history.Commit` a revision names (id or prefix, HEAD~N, snapshot, time).

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
            ...     s.set("state.json", "a", 1)
            ...     s.get_commit("HEAD").actor
            'library'
        """
        from . import history

        self._check_open()
        return history.get_commit(self._repo, rev)

    def remote_tracking(self, remote: str) -> str | None:
        """The commit of ``remote``'s branch as last fetched (its tracking ref), or None if never fetched."""
        self._check_open()
        return self._repo.read_ref(f"refs/remotes/{remote}/{self._repo.branch}")


def _changes_of(codec: Codec, doc: str, old: Any, new: Any, *, copy: bool = False) -> list[docdiff.Change]:
    """Structured changes of a document (``docdiff.MISSING`` for absent); text and bytes as one change. With
    ``copy`` the values are private copies (needed when ``new`` is a live view that later writes mutate)."""
    if codec.structured or old is docdiff.MISSING or new is docdiff.MISSING:
        return docdiff.quick_diff(old, new, doc=doc, copy=copy)
    return [] if old == new else [docdiff.Change(doc, (), "change", old, new)]


def _ops_between(old: Any, new: Any, prefix: Key = ()) -> list[tuple[str, Key, Any]]:
    """Key operations (kind, key, value) that turn ``old`` into ``new``, as deep in nested mappings as possible
    so that they re-apply cleanly over other writers' keys; lists and scalars are set whole."""
    if docdiff.same(old, new):
        return []
    if new is docdiff.MISSING:
        return [("delete", prefix, None)]
    if isinstance(old, dict) and isinstance(new, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in (*old, *new)):
            return [("set", prefix, copy_value(new))]
        out: list[tuple[str, Key, Any]] = []
        for k in old:
            if k not in new:
                out.append(("delete", (*prefix, k), None))
        for k, v in new.items():
            if k in old:
                out += _ops_between(old[k], v, (*prefix, k))
            else:
                out.append(("set", (*prefix, k), copy_value(v)))
        return out
    return [("set", prefix, copy_value(new))]


def _safe_decode(codec: Codec, data: bytes, doc: str) -> Any:
    try:
        return codec.decode(data, doc)
    except DecodeError:
        return data.decode("utf-8", "replace")


def _oserror(e: OSError) -> str:
    hint = {
        errno.ENOSPC: "the disk is full; free space and the next flush retries",
        errno.EDQUOT: "the disk quota is exceeded; free space and the next flush retries",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied; check the store directory's permissions",
        errno.EPERM: "operation not permitted; check the store directory's permissions",
    }.get(e.errno or 0)
    base = f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
    return f"{base}: {hint}" if hint else base


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    durability: Durability = "debounced",
    debounce_ms: int = DEFAULT_DEBOUNCE_MS,
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
    author: str | None = None,
    create: bool = True,
    watch: bool = False,
    auto_push: str | None = None,
    on: Mapping[str, Callable[[Any], object]] | None = None,
    handle_signals: bool = True,
    fsync: bool = True,
    schema_version: int | None = None,
    auto_pack: bool = True,
    max_doc_bytes: int | None = None,
    codecs: Codecs | None = None,
) -> Store:
    """Open (or create) the state store at ``path``.

    Args:
        path: the store directory; defaults to ``$GITSTATE_DIR``.
        durability: ``"debounced"`` (commit after ``debounce_ms`` of quiet, at most ``max_delay_ms`` after the
            first pending write), ``"immediate"`` (every write commits before it returns) or ``"manual"``
            (only :meth:`Store.flush`). Pending writes are always flushed on close, at exit and on SIGTERM.
        debounce_ms: quiet period before a debounced flush.
        max_delay_ms: longest a write waits for its commit under steady writes.
        author: commit author, ``"Name <email>"`` (default ``gitstate <gitstate@HOSTNAME>``).
        create: create the directory and repository when missing (else :class:`StoreNotFound`).
        watch: also start a watcher thread that commits hand edits (see :meth:`Store.watch`).
        auto_push: name of a remote to push to in the background after commits.
        on: callbacks to register before the store loads, so ``loaded`` is seen too.
        handle_signals: flush on SIGTERM (installed once, from the main thread).
        fsync: fsync files, objects and directories (turn off only for throwaway stores, e.g. tests).
        auto_pack: pack history with deltas in the background (a helper process), so the repository stays
            small; see :mod:`gitstate.gc`.
        schema_version: the schema version this program writes (see :mod:`gitstate.migrate`); default: the
            version found at open. Flushes refuse while the store is at another version; a store at a newer
            version raises :class:`~gitstate.migrate.SchemaMismatch` here.
        max_doc_bytes: largest document in bytes (default ``$GITSTATE_MAX_DOC_BYTES``, else
            :data:`DEFAULT_MAX_DOC_BYTES`, 64 MiB). A bigger file found in the store is never read or committed
            (``loaded``/``invalid_edit`` report it); reading or writing that document raises, and so does writing
            a bigger value.
        codecs: the :class:`~gitstate.codecs.Codecs` registry that encodes and decodes this store's documents
            (new formats by suffix, wrapping codecs such as encryption by path pattern); default
            :data:`gitstate.codecs.DEFAULT`.

    Raises:
        StoreNotFound: no path and no ``$GITSTATE_DIR``, or nothing at ``path`` and ``create=False``.
        RepositoryError: ``path`` holds a repository gitstate cannot use.

    Example:
        >>> import gitstate, tempfile
        >>> store = gitstate.open(tempfile.mkdtemp(), durability="manual")
        >>> store.set("state.json", "services.slack", True)
        >>> store.pending
        1
        >>> store.close()
    """
    root = Path(path if path is not None else _default_path()).expanduser()
    if not create and not (root / ".git").is_dir():
        raise StoreNotFound(f"no gitstate store at {root}; run 'gitstate -C {root} init' or pass create=True")
    if root.exists() and not root.is_dir():
        raise StoreNotFound(f"{root} is not a directory")
    try:
        repo = Repository.open(root, create=create)
    except PermissionError as e:
        raise StoreNotFound(f"cannot create or open the store at {root}: permission denied") from e
    except OSError as e:
        raise StoreNotFound(f"cannot create or open the store at {root}: {_oserror(e)}") from e
    store = Store(
        repo,
        durability=durability,
        debounce_ms=debounce_ms,
        max_delay_ms=max_delay_ms,
        author=author,
        fsync=fsync,
        max_doc_bytes=max_doc_bytes if max_doc_bytes is not None else _default_max_doc_bytes(),
        codecs=codecs,
    )
    for name, cb in (on or {}).items():
        store.on(name, cb)
    try:
        try:
            busy = repo.git_operation_in_progress()
            loaded = store._recover() if busy is None else store._open_during_git_operation(busy)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            # A store we cannot lock (read-only mount, another user's files) can still be read.
            logger.warning("%s is not writable (%s); opened read-only", root, e.strerror)
            store.read_only = True
            head = repo.head()
            store._head, store._head_tree = head, repo.commit_info(head).tree if head else None
            store._ref_stamp = repo.ref_stamp()
            loaded = Loaded(head=head)
        _migrate.on_open(store, schema_version)
    except OSError as e:
        repo.close()
        raise SaveError(f"{root}: could not recover the store on open: {_oserror(e)}") from e
    except BaseException:
        repo.close()
        raise
    store._emit(loaded)
    if handle_signals:
        lifecycle.install_signal_handlers()
    store._start()
    if auto_pack and not store.read_only:
        from .gc import BackgroundPacker

        packer = BackgroundPacker(repo, fsync=fsync)
        store._after_commit_hooks.append(packer.notify)
        store._background.append(packer)
        store._packer = packer
    if auto_push:
        from .remote import start_auto_push

        start_auto_push(store, auto_push)
    if watch:
        store.watch()
    return store


def clone(url: str, path: str | os.PathLike[str], *, allow_empty: bool = False, **open_options: Any) -> Store:
    """Make ``path`` a store from the remote at ``url`` (remote named ``origin``) and open it.

    A remote without branches is a :class:`~gitstate.errors.RemoteError` unless ``allow_empty=True`` (then the
    store starts empty with ``origin`` set, and a warning says so). A remote whose tree names an entry gitstate
    will not write raises :class:`~gitstate.errors.UnsafeTree`; nothing clone created is left behind.

    Example:
        >>> import gitstate, subprocess, tempfile
        >>> remote = tempfile.mkdtemp()
        >>> _ = subprocess.run(["git", "init", "-q", "--bare", remote], check=True)
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as s:
        ...     s.set("state.json", "a", 1); _ = s.flush()
        ...     s.remote_add("origin", remote); _ = s.push()
        >>> with gitstate.clone(remote, tempfile.mkdtemp() + "/copy") as copy:
        ...     copy.get("state.json", "a")
        1
    """
    from . import remote as _remote

    _remote.clone_repository(url, Path(path), allow_empty=allow_empty)
    return open(path, **open_options)
