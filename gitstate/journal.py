"""A store's documents in memory: the views, the journal of pending operations, and the branch head under them.

What belongs here: the state every part of a :class:`~gitstate.store.Store` shares (set up in
:class:`DocumentJournal`), reading a document (committed bytes + pending operations), recording a write as an
operation, the file/directory slot rule for new documents, and catching up when the branch moves (views dropped,
pending writes rebased where a human edited the same document). What does not: committing (``flusher.py``),
hand edits, recovery and commits made elsewhere (``ingest.py``), the public API (``store.py``).

``Store`` is one class split over these modules (``DocumentJournal`` <- ``Flusher`` <- ``Ingester`` <-
``Store``): the ``_private`` attributes below are that class's own, used through ``self`` only. Services
outside the class use :attr:`Store.services <gitstate.store.Store.services>` (see :mod:`gitstate.services`).

Lock order, to stay deadlock-free: ``_flush_lock`` → repository lock (threads, then ``flock``) → ``_lock``
(in-memory state) → the repository's object mutex. Every path that takes the repository lock takes
``_flush_lock`` first.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from . import docdiff, merging, messages
from .codecs import DEFAULT as DEFAULT_CODECS
from .codecs import Codec, Codecs, copy_value
from .codecs import bind as bind_codecs
from .encoded import Encoded, describe, encoded_from, plain
from .errors import DecodeError, EncodeError, InvalidPath, KeyNotFound, SaveError, StoreClosed
from .events import Event, EventBus, ExternalChange
from .keys import ABSENT, Key, KeyPathError, apply_write, check_target, check_write
from .limits import DEFAULT_MAX_DOC_BYTES, size_text, too_big
from .paths import META_PREFIX, SCHEMA_DOC, check_no_symlinks, validate_doc_path
from .repo import Repository
from .repo_packs import Deflating
from .services import NO_EXPECTED_HEAD, StoreServices

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BASES_BYTES",
    "META_PREFIX",
    "SCHEMA_DOC",
    "CommittedVersion",
    "DocumentJournal",
    "Op",
    "PendingDocs",
    "Stats",
    "apply_op",
    "changes_of",
    "default_author",
    "ops_between",
    "safe_decode",
    "size_text",
    "too_big",
]

logger = logging.getLogger("gitstate.store")

DEFAULT_DEBOUNCE_MS: Final = 2000
DEFAULT_MAX_DELAY_MS: Final = 10000

Durability = Literal["immediate", "debounced", "manual"]


@dataclass(slots=True)
class Op:
    """One pending write in the journal."""

    seq: int
    doc: str
    kind: str  # "set" | "delete" | "update" | "append"
    key: Key
    value: Any = None
    t: float = 0.0  # time.monotonic() of the write, for max_delay_ms


#: Encoded bytes of committed versions kept as values (see DocumentJournal._remember_base).
BASES_BYTES: Final = 64 << 20


@dataclass(slots=True)
class CommittedVersion:
    """The committed version of a document as a flush sees it.

    Attributes:
        id: blob id, None when the document is absent from the head.
        value: the decoded value (``docdiff.MISSING`` when absent; the bytes as text when they do not parse).
        size: size in bytes.
    """

    id: str | None
    value: Any
    size: int
    _data: bytes | None
    _read: Callable[[], bytes | None] | None

    def data(self) -> bytes | None:
        """The bytes (read on first use when the value came from memory)."""
        if self._data is None and self._read is not None:
            self._data, self._read = self._read(), None
        return self._data


@dataclass
class Stats:
    """The flush figures :meth:`Store.stats <gitstate.store.Store.stats>` reports."""

    flushes: int = 0
    commits: int = 0
    failures: int = 0
    last_error: str | None = None
    last_flush_ms: float = 0.0
    flush_ms: list[float] = field(default_factory=list)


class PendingDocs(dict[str, int]):
    """The documents with pending writes (doc -> sequence number of its last write), which also know, per
    directory, the pending documents below it: the new-document check asks :meth:`under` instead of scanning
    every pending document (a batch of N new documents costs O(N), not O(N²)).

    Example:
        >>> p = PendingDocs({"a/b.json": 1})
        >>> p["a/c/d.json"] = 2
        >>> p.pop("a/b.json")
        1
        >>> sorted(p.under("a")), p.under("x")
        (['a/c/d.json'], set())
    """

    def __init__(self, items: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        super().__init__()
        self._below: dict[str, set[str]] = {}
        for doc, seq in dict(items).items():
            self[doc] = seq

    @staticmethod
    def _dirs(doc: str) -> Iterable[str]:
        end = doc.find("/")
        while end != -1:
            yield doc[:end]
            end = doc.find("/", end + 1)

    def __setitem__(self, doc: str, seq: int) -> None:
        if doc not in self:
            for d in self._dirs(doc):
                self._below.setdefault(d, set()).add(doc)
        super().__setitem__(doc, seq)

    def __delitem__(self, doc: str) -> None:
        super().__delitem__(doc)
        self._forget(doc)

    def _forget(self, doc: str) -> None:
        for d in self._dirs(doc):
            below = self._below.get(d)
            if below is not None:
                below.discard(doc)
                if not below:
                    del self._below[d]

    def pop(self, doc: str, *default: Any) -> Any:
        """Remove ``doc`` (like :meth:`dict.pop`)."""
        had = doc in self
        value = super().pop(doc, *default)
        if had:
            self._forget(doc)
        return value

    def under(self, directory: str) -> set[str]:
        """The pending documents below ``directory`` (no trailing ``/``)."""
        return self._below.get(directory, set())


def default_author() -> str:
    """``gitstate <gitstate@HOST>``: the author of library commits when none is given."""
    return f"gitstate <gitstate@{socket.gethostname() or 'localhost'}>"


def apply_op(view: Any, op: Op) -> Any:
    """Apply one journal operation to a private document value; returns the new value."""
    if type(op.value) is Encoded:  # a whole-document set kept encoded: its decoded value is already a new one
        return op.value.value()
    return apply_write(view, op.kind, op.key, op.value)


def changes_of(
    codec: Codec, doc: str, old: Any, new: Any, *, copy: bool = False, runs: list[docdiff.KeyRun] | None = None
) -> list[docdiff.Change]:
    """Structured changes of a document (``docdiff.MISSING`` for absent); text and bytes as one change. With
    ``copy`` the values are private copies (needed when ``new`` is a live view that later writes mutate).
    ``runs``: see :func:`gitstate.docdiff.quick_diff`. A side kept :class:`~gitstate.encoded.Encoded` is compared
    entry by entry in its bytes when ``runs`` is given (:func:`gitstate.encoded.describe`), else decoded."""
    if type(old) is Encoded or type(new) is Encoded:
        if runs is not None and not copy:
            described = _describe_encoded(old, new, doc, runs)
            if described is not None:
                return described
        old, new = plain(old), plain(new)
    if codec.structured or old is docdiff.MISSING or new is docdiff.MISSING:
        return docdiff.quick_diff(old, new, doc=doc, copy=copy, runs=runs)
    return [] if old == new else [docdiff.Change(doc, (), "change", old, new)]


def _describe_encoded(old: Any, new: Any, doc: str, runs: list[docdiff.KeyRun]) -> list[docdiff.Change] | None:
    """:func:`gitstate.encoded.describe` of two mappings, at least one of them kept encoded (the other is encoded
    for the comparison); None when they are not two mappings or do not split into entries."""
    old_doc, new_doc = encoded_from(old), encoded_from(new)
    if old_doc is None or new_doc is None:
        return None
    return describe(old_doc, new_doc, doc=doc, runs=runs)


def ops_between(old: Any, new: Any, prefix: Key = ()) -> list[tuple[str, Key, Any]]:
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
                out += ops_between(old[k], v, (*prefix, k))
            else:
                out.append(("set", (*prefix, k), copy_value(v)))
        return out
    return [("set", prefix, copy_value(new))]


def safe_decode(codec: Codec, data: bytes, doc: str) -> Any:
    """The decoded value, or the bytes as text when they do not parse (for describing a change)."""
    try:
        return codec.decode(data, doc)
    except DecodeError:
        return data.decode("utf-8", "replace")


class DocumentJournal:
    """The in-memory part of a :class:`~gitstate.store.Store`: its state, reads of documents, the journal of
    pending writes and catching up with the branch head. Not used on its own."""

    def __init__(
        self,
        repo: Repository,
        *,
        durability: Durability = "debounced",
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
        author: str | None = None,
        actor: str = messages.LIBRARY,
        fsync: bool = True,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        codecs: Codecs | None = None,
    ) -> None:
        if actor not in messages.ACTORS:
            raise ValueError(f"actor must be one of {', '.join(messages.ACTORS)}, not {actor!r}")
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
        self.author = author or default_author()
        #: The actor of this store's own writes (``library``; ``human`` for a command typed at a terminal).
        self.actor = actor
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
        self._journal: list[Op] = []
        self._dirty = PendingDocs()
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
        # blob id -> whether those bytes are in the codec's canonical layout (the flush keeps a human's layout
        # with Codec.encode_over when they are not); bounded, see Flusher._layout_of.
        self._canonical_blobs: collections.OrderedDict[str, bool] = collections.OrderedDict()
        # doc -> (blob id, value, size) of versions this store committed (see _remember_base): a flush describes
        # its change from the value it already holds instead of reading and decoding the committed bytes again.
        self._bases: collections.OrderedDict[str, tuple[str, Any, int]] = collections.OrderedDict()
        self._bases_bytes = 0
        # doc -> a view that something else holds and that no write may change in place (see _unshare): the
        # journal's value of a whole-document set (the view IS that value, no second copy), or a view whose
        # changes a running flush describes without copying them.
        self._pinned: dict[str, Any] = {}
        self._in_flight: dict[str, Any] = {}
        self._encoded_ids: dict[str, tuple[bytes, str]] = {}  # doc -> (bytes, blob id) the running flush encoded
        self._deflating: dict[str, Deflating] = {}  # blob id -> its compression, started by the running flush
        self._closed = False
        self._stop = threading.Event()
        self._tx_depth = 0
        self._tx_owner: int | None = None
        self._flusher: threading.Thread | None = None
        self._watcher: Any = None
        self._push_queue: Any = None
        self._background: list[Any] = []
        self._stats = Stats()
        self._after_commit_hooks: list[Callable[[str], None]] = []
        #: What the last pull did (``kind``: none / fast-forward / merge, ``commit``, ``changes``, ``conflicts``).
        self.last_pull: Any = None
        self._packer: Any = None
        #: The schema version this program writes (see gitstate.migrate); set on open.
        self._expected_schema: int | None = None
        #: The git operation in progress in the store (merge, rebase...) as last seen; flushes hold meanwhile.
        self._git_busy: str | None = None
        self._held_edits: builtins.set[str] = set()  # hand edits the watcher saw while git was busy

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"store {self.path} is closed; open it again with gitstate.open()")

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

    def _committed_version(self, doc: str, codec: Codec) -> CommittedVersion:
        """The committed version of ``doc`` as a flush needs it: from the value this store committed when it is
        the head's (no read, no decode), else read and decoded (the bytes as text when they do not parse)."""
        tree = self._head_tree
        sha = None if tree is None else self._repo.blob_id_at(tree, doc)
        if tree is None or sha is None:
            return CommittedVersion(None, docdiff.MISSING, 0, None, None)
        base = self._bases.get(doc)
        if base is not None and base[0] == sha:
            self._bases.move_to_end(doc)
            return CommittedVersion(sha, base[1], base[2], None, lambda: self._repo.read_at(tree, doc))
        data = self._repo.read_at(tree, doc)
        if data is None:
            return CommittedVersion(None, docdiff.MISSING, 0, None, None)
        return CommittedVersion(sha, safe_decode(codec, data, doc), len(data), data, None)

    def _remember_base(self, doc: str, sha: str, value: Any, size: int) -> None:
        """Keep ``value`` (the live view a flush encoded as blob ``sha``) as the committed version of ``doc``. The
        view stays shared with it until the next write to a key of it copies it (:meth:`_unshare`); bounded by
        :data:`BASES_BYTES` of encoded size. Call with ``_lock`` held."""
        old = self._bases.pop(doc, None)
        if old is not None:
            self._bases_bytes -= old[2]
        if size > BASES_BYTES:
            return
        self._bases[doc] = (sha, value, size)
        self._bases_bytes += size
        while self._bases_bytes > BASES_BYTES:
            _, dropped = self._bases.popitem(last=False)
            self._bases_bytes -= dropped[2]

    def _unshare(self, doc: str, view: Any, *, whole: bool) -> Any:
        """The view to apply a write to: a private copy when something else holds the view (writes change views
        in place): a committed version this store keeps, the journal's value of the whole-document set that made
        it, or a running flush describing its changes. No copy when the write replaces the document ``whole``."""
        if whole or view is ABSENT:
            return view
        base = self._bases.get(doc)
        if (base is not None and base[1] is view) or self._pinned.get(doc) is view or self._in_flight.get(doc) is view:
            return copy_value(view)
        return view

    def _unpin_flushed(self) -> None:
        """Forget the pins of documents with no pending write left (their journal values are gone). Call with
        ``_lock`` held."""
        if self._pinned:
            self._pinned = {d: v for d, v in self._pinned.items() if d in self._dirty}

    def _load(self, doc: str, *, encoded: bool = False) -> Any:
        """The current value of ``doc`` (committed + pending ops). Call with ``_lock`` held.

        A document set whole and kept :class:`~gitstate.encoded.Encoded` is decoded here, once, into a view of its
        own (nothing else holds it, so writes change it in place), unless the caller takes it ``encoded``."""
        view = self._views.get(doc, None)
        if type(view) is Encoded and not encoded:
            view = self._views[doc] = view.value()
            return view
        if view is not None or doc in self._views:
            return view
        data = self._committed_bytes(doc)
        ops = [op for op in self._journal if op.doc == doc] if doc in self._dirty else []
        try:
            view = ABSENT if data is None else self._codecs.for_doc(doc).decode(data, doc)
        except DecodeError:
            # A committed document that does not parse can still be replaced or deleted as a whole.
            whole = [i for i, op in enumerate(ops) if not op.key and op.kind in ("set", "delete")]
            if not whole:
                raise
            view, ops = ABSENT, ops[whole[-1] :]
        for op in ops:
            try:
                view = apply_op(view, op)
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
        overwritten: list[merging.Conflict] = []
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
        if source == "process" and SCHEMA_DOC in changed:
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
            if messages.actor(msg) == messages.HUMAN:  # a plain git commit (no trailer) counts as human
                parent_tree = self._repo.commit_info(info.parents[0]).tree if info.parents else None
                out |= docs & self._repo.changed_paths(parent_tree, info.tree).keys()
            cur = info.parents[0] if info.parents else None
        return out if cur == old else set()

    def _rebase_pending_on(self, doc: str, base: Any, theirs: Any) -> list[merging.Conflict]:
        """A human replaced ``base`` with ``theirs`` while this store holds pending writes to ``doc``: keep both
        sides' keys, the human's value winning on keys both changed (a key-level 3-way merge), and rewrite the
        document's pending operations as the difference from ``theirs`` to the merge. Returns the program's
        values that lost. Call with ``_lock`` held."""
        ops = [op for op in self._journal if op.doc == doc]
        if not ops:
            return []
        ours: Any = ABSENT if base is docdiff.MISSING else copy_value(base)
        for op in ops:
            try:
                ours = apply_op(ours, op)
            except KeyPathError:
                continue
        result = merging.merge3(base, docdiff.MISSING if ours is ABSENT else ours, theirs, prefer="theirs")
        seq = max(op.seq for op in ops)
        t0 = min(op.t for op in ops)
        new_ops = [Op(seq, doc, kind, key, value, t0) for kind, key, value in ops_between(theirs, result.value)]
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
        err = too_big(doc, size, self.max_doc_bytes)
        msg = f"{err}; it was not loaded or committed"
        raise DecodeError(doc, msg.removeprefix(f"{doc} ")) if error is DecodeError else EncodeError(msg)

    def _write(self, doc: str, kind: str, key: object, value: Any) -> None:
        self._check_open()
        if self.read_only:
            raise SaveError(f"{self.path} is on a read-only file system or not writable: the store is open read-only")
        # First: it refuses .gitstate/ before any file check.
        keyt, value = check_write(doc, kind, key, value, codec=self._codecs.for_doc(doc), keep_encoded=True)
        doc = self._doc(doc)
        if doc in self._oversized:
            self._check_not_oversized(doc, EncodeError)
        if isinstance(value, (bytes, str)) and not keyt and len(value) > self.max_doc_bytes // 4:
            # Raw and text documents: the size is known here (structured ones are measured when encoded).
            size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8"))
            if size > self.max_doc_bytes and not self._codecs.for_doc(doc).structured:
                raise too_big(doc, size, self.max_doc_bytes, "would be")
        whole = not keyt and kind in ("set", "delete")
        with self._lock:
            try:
                view = self._load(doc, encoded=whole)  # a whole-document write reads nothing of the old value
            except DecodeError:
                if keyt or kind not in ("set", "delete"):
                    raise
                view = ABSENT  # replacing a committed document that does not parse
            if view is ABSENT and kind != "delete":
                self._check_doc_slot(doc)
            check_target(doc, kind, keyt, view)
            view = self._unshare(doc, view, whole=whole)
            self._seq += 1
            now = time.monotonic()
            op = Op(self._seq, doc, kind, keyt, value, now)
            if not keyt and kind == "set":
                # The journal's value is check_write's normalized copy (Codec.normalize returns a private one):
                # the view shares it, pinned, so a later keyed write copies the view before changing it.
                self._views[doc] = value
                self._pinned[doc] = value
            else:
                try:
                    self._views[doc] = apply_op(view, op)
                except KeyPathError as e:
                    self._views.pop(doc, None)  # may be half-applied; reload from history + journal
                    raise KeyNotFound(doc, keyt, e.problem) from None
                # apply_op gave the view a copy of the value: later in-place ops never reach the journal.
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
                exists = self._views.get(p, ABSENT) is not ABSENT
            else:
                exists = self._head_tree is not None and self._repo.blob_id_at(self._head_tree, p) is not None
            if exists:
                raise InvalidPath(doc, f"{p!r} is a document, so it cannot also be a directory")
        # The pending documents below ``doc`` come from an index of directories (O(1) for a new name), not from
        # a scan of every pending document, which made a batch of N new documents quadratic.
        if any(self._views.get(d, ABSENT) is not ABSENT for d in self._dirty.under(doc)) or (
            self._head_tree is not None and self._repo.is_dir_at(self._head_tree, doc)
        ):
            raise InvalidPath(doc, "is a directory of other documents")

    # ================================================================= the services interface (services.py)
    @property
    def services(self) -> StoreServices:
        """The internal interface services (migrate, remote, aio...) use instead of private attributes; see
        :class:`gitstate.services.StoreServices`."""
        return _Services(self)

    @property
    def pending(self) -> int:
        """Number of writes not yet committed."""
        with self._lock:
            return len(self._journal)

    # ================================================================= provided by the subclasses
    def flush(self, message: str | None = None, *, metadata: Mapping[str, str] | None = None) -> str | None:
        """Commit pending writes now (implemented in ``flusher.py``)."""
        raise NotImplementedError

    def _take_unsaved_human_edits(self, files: dict[str, bytes | None]) -> list[Event]:
        """Commit hand edits to ``files`` before overwriting them (implemented in ``ingest.py``)."""
        raise NotImplementedError

    def _on_files_changed(self, docs: builtins.set[str]) -> None:
        """The watcher saw ``docs`` change (implemented in ``ingest.py``)."""
        raise NotImplementedError

    def _commit_external(
        self,
        steps: list[tuple[Mapping[str, bytes | None], str]],
        *,
        actor: str,
        author: str | None = None,
        expected_head: Any = NO_EXPECTED_HEAD,
        extra_parents: tuple[str, ...] = (),
    ) -> str | None:
        """Commit file contents made elsewhere (implemented in ``ingest.py``)."""
        raise NotImplementedError


class _Services:
    """The :class:`~gitstate.services.StoreServices` of one store (``store.services``)."""

    __slots__ = ("_store",)

    def __init__(self, store: DocumentJournal) -> None:
        self._store = store

    @property
    def repo(self) -> Repository:
        return self._store._repo

    @property
    def author(self) -> str:
        return self._store.author

    @property
    def fsync(self) -> bool:
        return self._store._fsync

    def check_open(self) -> None:
        self._store._check_open()

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        with self._store._flush_lock, self._store._repo.lock():
            yield

    def commit_external(
        self,
        steps: list[tuple[Mapping[str, bytes | None], str]],
        *,
        actor: str,
        author: str | None = None,
        expected_head: Any = NO_EXPECTED_HEAD,
        extra_parents: tuple[str, ...] = (),
    ) -> str | None:
        return self._store._commit_external(
            steps, actor=actor, author=author, expected_head=expected_head, extra_parents=extra_parents
        )

    def emit(self, event: Event) -> None:
        self._store._emit(event)

    def add_after_commit(self, hook: Callable[[str], None]) -> Callable[[], None]:
        hooks = self._store._after_commit_hooks
        hooks.append(hook)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                hooks.remove(hook)

        return remove

    @property
    def expected_schema(self) -> int | None:
        return self._store._expected_schema

    @expected_schema.setter
    def expected_schema(self, version: int | None) -> None:
        self._store._expected_schema = version

    def refresh(self) -> None:
        self._store._maybe_refresh()

    @property
    def head_tree(self) -> str | None:
        return self._store._head_tree

    @property
    def push_queue(self) -> Any:
        return self._store._push_queue

    @push_queue.setter
    def push_queue(self, queue: Any) -> None:
        self._store._push_queue = queue

    def add_background(self, component: Any) -> None:
        self._store._background.append(component)
