"""History: log, key-level audit, diff, point-in-time reads, restore, undo and snapshots.

Everything here reads the Git history through :class:`~gitstate.repo.Repository`; the store calls in for
``log``/``diff``/``at``/``restore``/``undo``/``snapshot`` and records each commit it makes with :func:`record`.

**The history index.** Walking commits with dulwich costs ~45 µs each (``git log`` is 7x faster), and answering
"who changed ``services.slack``" by diffing every commit would cost milliseconds each. So gitstate keeps an
append-only JSON-lines file, ``.git/gitstate/history-index-v1.jsonl``, with one line per commit: its parents,
times, author, message, actor, the documents it changed and the keys it changed (key paths, plus the old and
new values when they are small). It is a cache, never the source of truth:

* an entry is keyed by commit id, and ids name immutable content, so an entry is right for as long as it exists;
  what is *in* the history is always decided by walking parent links from the branch head;
* commits it does not know (made by plain ``git``, pulled from another machine, or after the file was lost) are
  indexed when a walk meets them, by diffing against their first parent, and appended;
* writers append whole lines with one ``O_APPEND`` write (the store does it under its lock); readers read only
  complete lines, skip lines that do not parse (a torn write after a crash) and re-read only what was appended
  since their last look.

Keys of one commit are capped: past 64 changes (a whole-document restore) they are collapsed to their common
prefixes, and a match on a collapsed key is confirmed by reading the two versions of the document.

Example:
    >>> import gitstate, tempfile
    >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
    ...     store.set("state.json", "services.slack", False)
    ...     store.set("state.json", "services.slack", True)
    ...     [c.changes(key="services.slack")[0].new for c in store.log(key="services.slack")]
    [True, False]
"""

from __future__ import annotations

import datetime as _dt
import gc
import heapq
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from .codecs import Codec, copy_value, registry_for
from .errors import DecodeError, GitStateError, KeyNotFound, RevisionNotFound
from .keys import MISSING_KEY, Key, get_in, parse_key
from .paths import validate_doc_path
from .repo import EMPTY_TREE, CommitInfo, Repository
from .worktree import check_trees

if TYPE_CHECKING:  # imported where used: `gitstate log` never diffs
    from . import docdiff

__all__ = [
    "Commit",
    "Snapshot",
    "StateView",
    "ahead_behind",
    "at",
    "commit_from_entry",
    "diff",
    "get_commit",
    "indexed_commits",
    "log",
    "log_entries",
    "parse_time",
    "record",
    "resolve",
    "restore_files",
    "snapshot",
    "snapshots",
    "text_diff",
    "undo_files",
]

logger = logging.getLogger("gitstate.history")

#: File (under ``.git/gitstate/``) holding the history index; the version is in the name.
INDEX_FILE: Final = "history-index-v1.jsonl"
#: Documents under this prefix hold gitstate's own metadata (same value as ``store.META_PREFIX``; history sits
#: below the store and does not import it).
_META_PREFIX: Final = ".gitstate/"
_MAX_KEYS_PER_COMMIT: Final = 64
_MAX_PART_CHARS: Final = 200
_MAX_VALUE_BYTES: Final = 256
_MAX_MESSAGE_CHARS: Final = 4096
_MIN_PREFIX: Final = 4
_UNDO_TRAILER: Final = "Gitstate-Undo"
_ACTOR_TRAILER: Final = "Gitstate-Actor"
_RAISE: Any = object()

_NONE, _DEFINITE, _AMBIGUOUS = 0, 1, 2


# ===================================================================== public types
class Commit:
    """One commit of the store's history (treat it as read-only).

    Attributes:
        id: the full commit id (40 hex digits).
        time: when it was authored (an aware datetime in the author's UTC offset).
        timestamp: the same moment in seconds since the epoch.
        author: ``Name <email>``.
        message: the full commit message (subject, change lines, trailers).
        actor: who made it: ``library``, ``human`` (also any commit made by plain ``git``), ``restore``,
            ``migration`` or ``merge``.
        docs: the document paths it changed (against its first parent), sorted.
        parents: the parent ids (first parent first).
        keys: the ``(doc, key)`` pairs it changed, as far as the index knows them (empty when not computed;
            collapsed to common prefixes for very large changes).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     c = store.log()[0]
        ...     c.actor, c.docs, c.subject
        ('library', ['state.json'], 'state.json: created')
    """

    # A plain class with slots and lazy fields: ``log`` of 10,000 commits builds 10,000 of these.
    __slots__ = (
        "_cache",
        "_docs",
        "_entry",
        "_keys",
        "_message",
        "_parents",
        "_repo",
        "_time",
        "actor",
        "author",
        "id",
        "timestamp",
        "tz_offset_s",
    )

    def __init__(
        self,
        id: str,
        time: _dt.datetime,
        author: str,
        message: str,
        actor: str,
        docs: list[str],
        parents: tuple[str, ...] = (),
        keys: tuple[tuple[str, Key], ...] = (),
    ) -> None:
        self.id = id
        self._time: _dt.datetime | None = time
        self.timestamp = time.timestamp()
        offset = time.utcoffset()
        self.tz_offset_s = int(offset.total_seconds()) if offset is not None else 0
        self.author = author
        self._message: str | None = message
        self.actor = actor
        self._docs: list[str] | None = docs
        self._parents: tuple[str, ...] | None = parents
        self._keys: tuple[tuple[str, Key], ...] | None = keys
        self._entry: dict[str, Any] | None = None
        self._repo: Any = None
        self._cache: dict[Any, list[docdiff.Change]] | None = None

    @classmethod
    def _from_entry(cls, e: dict[str, Any], repo: Repository) -> Commit:
        c = cls.__new__(cls)
        c.id = e["c"]
        c._time = None
        c.timestamp = e["t"]
        c.tz_offset_s = e.get("z", 0)
        c.author = e.get("a", "")
        c._message = e.get("m")
        c.actor = e.get("actor", "human")
        c._docs = None
        c._parents = None
        c._keys = None
        c._entry = e
        c._repo = repo
        c._cache = None
        return c

    @property
    def time(self) -> _dt.datetime:
        """When the commit was authored (aware, in the author's UTC offset)."""
        if self._time is None:
            self._time = _aware(self.timestamp, self.tz_offset_s)
        return self._time

    @property
    def message(self) -> str:
        """The full commit message."""
        if self._message is None:
            self._message = self._repo.commit_info(self.id).message if self._repo is not None else ""
        return self._message

    @property
    def docs(self) -> list[str]:
        """The document paths the commit changed (against its first parent), sorted."""
        if self._docs is None:
            self._docs = list(self._entry.get("d", ())) if self._entry is not None else []
        return self._docs

    @property
    def parents(self) -> tuple[str, ...]:
        """Parent ids, first parent first."""
        if self._parents is None:
            self._parents = tuple(self._entry.get("p", ())) if self._entry is not None else ()
        return self._parents

    @property
    def keys(self) -> tuple[tuple[str, Key], ...]:
        """The ``(doc, key)`` pairs the history index holds for this commit (computed when it has none)."""
        if self._keys is None:
            k = _parsed_keys(self._entry) if self._entry is not None else None
            if k is None and self._repo is not None:
                with _History(self._repo) as hist:
                    k = hist.keys(hist.entry(self.id))
            self._keys = tuple((it[0], tuple(it[1])) for it in k) if k else ()
        return self._keys

    def __repr__(self) -> str:
        return f"Commit(id={self.id[:12]!r}, actor={self.actor!r}, docs={self.docs!r}, subject={self.subject!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Commit) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def subject(self) -> str:
        """The first line of the message."""
        return self.message.partition("\n")[0]

    def trailer(self, name: str) -> str | None:
        """The value of the last ``name:`` trailer in the message (``commit.trailer("Gitstate-Undo")``)."""
        return _trailer(self.message, name)

    @property
    def short_id(self) -> str:
        """The first 8 hex digits of the id."""
        return self.id[:8]

    def changes(self, doc: str | None = None, key: object = None) -> list[docdiff.Change]:
        """Key-level changes this commit made against its first parent (computed on first use).

        With ``key``, only changes at or below that key (and a change of the key's value when a change higher
        up replaced it), keyed from the document root: this is the "from what to what" of an audit.

        Example:
            >>> import gitstate, tempfile
            >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
            ...     store.set("state.json", "services", {"slack": False})
            ...     store.set("state.json", "services.slack", True)
            ...     [(c.key, c.old, c.new) for c in store.log(limit=1)[0].changes()]
            [(('services', 'slack'), False, True)]
        """
        if self._repo is None:
            return []
        keyt = parse_key(key) if key is not None else ()
        cache_key = (doc, keyt)
        if self._cache is None:
            self._cache = {}
        cached = self._cache.get(cache_key)
        if cached is None:
            with _History(self._repo) as hist:
                cached = hist.commit_changes(self.id, doc, keyt)
            self._cache[cache_key] = cached
        return list(cached)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``keys`` as ``[{"doc", "key": [...]}]``)."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "author": self.author,
            "actor": self.actor,
            "subject": self.subject,
            "message": self.message,
            "docs": list(self.docs),
            "parents": list(self.parents),
            "keys": [{"doc": d, "key": list(k)} for d, k in self.keys],
        }


@dataclass(frozen=True)
class Snapshot:
    """A snapshot: a Git tag naming a commit.

    Attributes:
        name: the tag name.
        commit: the commit id it points at.
        time: when it was made (the tagger time; the commit time for a lightweight tag).
        message: the tag message.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     _ = store.snapshot("before-upgrade")
        ...     [s.name for s in store.snapshots()]
        ['before-upgrade']
    """

    name: str
    commit: str
    time: _dt.datetime
    message: str = ""


class StateView:
    """A read-only view of the store as of one commit (see :func:`at`).

    Attributes:
        commit: the commit id the view reads.
        time: that commit's author time (aware datetime).
        rev: the revision it was asked for.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     store.set("state.json", "a", 2)
        ...     store.at("HEAD~1").get("state.json", "a"), store.at("HEAD~1").docs()
        (1, ['state.json'])
    """

    def __init__(self, repo: Repository, commit: str, rev: str) -> None:
        info = repo.commit_info(commit)
        self._repo = repo
        self._tree = info.tree
        self.commit = commit
        self.rev = rev
        self.time = _aware(info.time, info.tz_offset_s)

    def __repr__(self) -> str:
        return f"<gitstate.StateView {self.rev!r} at {self.commit[:8]}>"

    def raw(self, doc: str) -> bytes:
        """The bytes of ``doc`` as committed.

        Raises:
            KeyNotFound: the document did not exist at this revision.
        """
        validate_doc_path(doc)
        data = self._repo.read_at(self._tree, doc)
        if data is None:
            raise KeyNotFound(doc, (), f"no such document at {self.rev} ({self.commit[:8]})")
        return data

    def get(self, doc: str, key: object = None, default: Any = _RAISE) -> Any:
        """A copy of the value at ``key`` in ``doc`` as of this revision (the whole document when ``key`` is
        None); ``default`` when missing, else :class:`~gitstate.errors.KeyNotFound`."""
        validate_doc_path(doc)
        keyt = parse_key(key)
        blob = self._repo.blob_id_at(self._tree, doc)
        if blob is None:
            if default is not _RAISE:
                return default
            raise KeyNotFound(doc, keyt, f"no such document at {self.rev} ({self.commit[:8]})")
        value = _decode(self._repo, blob, doc)
        found = get_in(value, keyt) if keyt else value
        if found is MISSING_KEY:
            if default is not _RAISE:
                return default
            raise KeyNotFound(doc, keyt, f"no such key at {self.rev} ({self.commit[:8]})")
        return copy_value(found)

    def exists(self, doc: str, key: object = None) -> bool:
        """True if the document (and key, when given) existed at this revision."""
        marker = object()
        return self.get(doc, key, default=marker) is not marker

    def docs(self, prefix: str = "") -> list[str]:
        """Sorted paths of the documents at this revision (gitstate's own metadata left out)."""
        return sorted(
            p for p in self._repo.list_blobs(self._tree) if p.startswith(prefix) and not p.startswith(_META_PREFIX)
        )


# ===================================================================== small helpers
_TZ_CACHE: dict[int, _dt.timezone] = {}


def _aware(epoch_s: int | float, offset_s: int) -> _dt.datetime:
    tz = _TZ_CACHE.get(offset_s)
    if tz is None:
        tz = _TZ_CACHE[offset_s] = _dt.timezone(_dt.timedelta(seconds=offset_s))
    return _dt.datetime.fromtimestamp(epoch_s, tz)


def _trailer(message: str, name: str) -> str | None:
    """The value of the last ``name:`` trailer line of ``message``."""
    prefix = name + ":"
    found = None
    for line in message.splitlines():
        if line.startswith(prefix):
            found = line[len(prefix) :].strip()
    return found


_DECODED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_DECODED_LOCK = threading.Lock()


def _decode(repo: Repository, blob: str, doc: str) -> Any:
    """The value of a committed blob (decoded by the document's codec; text when it does not parse).
    Cached by blob id: callers must not mutate the result."""
    codec = registry_for(repo).for_doc(doc)
    key = (blob, codec.name)
    with _DECODED_LOCK:
        hit = _DECODED.get(key)
        if hit is not None:
            _DECODED.move_to_end(key)
            return hit
    value = _decode_bytes(repo.read_blob(blob), doc, codec)
    with _DECODED_LOCK:
        _DECODED[key] = value
        while len(_DECODED) > 16:
            _DECODED.popitem(last=False)
    return value


def _decode_bytes(data: bytes, doc: str, codec: Codec) -> Any:
    """``data`` decoded by ``codec``, or as text when it does not parse."""
    try:
        return codec.decode(data, doc)
    except DecodeError:
        return data.decode("utf-8", "replace")


def _value_at(repo: Repository, tree: str | None, doc: str) -> Any:
    """The decoded document at ``tree``, or :data:`docdiff.MISSING`."""
    from . import docdiff

    if tree is None:
        return docdiff.MISSING
    blob = repo.blob_id_at(tree, doc)
    return docdiff.MISSING if blob is None else _decode(repo, blob, doc)


def _doc_changes(
    repo: Repository, doc: str, old_tree: str | None, new_tree: str | None, key: Key = ()
) -> list[docdiff.Change]:
    """Key-level changes of ``doc`` between two trees (below ``key`` when given)."""
    from . import docdiff

    old = _value_at(repo, old_tree, doc)
    new = _value_at(repo, new_tree, doc)
    if key:
        old_k = get_in(old, key) if old is not docdiff.MISSING else MISSING_KEY
        new_k = get_in(new, key) if new is not docdiff.MISSING else MISSING_KEY
        old = docdiff.MISSING if old_k is MISSING_KEY else old_k
        new = docdiff.MISSING if new_k is MISSING_KEY else new_k
        return [docdiff.Change(doc, (*key, *c.key), c.op, c.old, c.new) for c in docdiff.diff(old, new, doc=doc)]
    # Text, raw and unparseable versions are str/bytes, which docdiff.diff compares whole: one change at ().
    return docdiff.diff(old, new, doc=doc)


# ===================================================================== the index file
def _part_json(part: Any) -> str | int:
    if isinstance(part, str) or (isinstance(part, int) and not isinstance(part, bool)):
        return part
    from . import docdiff  # only YAML scalar keys (bool, float, None, dates) get here

    return docdiff.format_key((part,)).strip('"')


def _small_json(value: Any) -> bool:
    """True if ``value`` is plain JSON (no dates, NaN, non-str keys or huge ints) and small enough to keep."""
    budget = [64]

    def pure(v: Any) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        t = type(v)
        if t is str or t is bool or v is None:
            return True
        if t is int:
            return bool(-(2**63) <= v < 2**63)
        if t is float:
            return math.isfinite(v)
        if t is list:
            return all(pure(x) for x in v)
        if t is dict:
            return all(type(k) is str and pure(x) for k, x in v.items())
        return False

    if not pure(value):
        return False
    return len(orjson.dumps(value)) <= _MAX_VALUE_BYTES


def _encode_parts(key: tuple[Any, ...]) -> tuple[list[str | int], bool]:
    """JSON-safe key parts, cut before the first part too long to keep; True if it was cut."""
    parts: list[str | int] = []
    for p in key:
        jp = _part_json(p)
        if isinstance(jp, str) and len(jp) > _MAX_PART_CHARS:
            return parts, True
        parts.append(jp)
    return parts, False


def _encode_changes(changes: list[docdiff.Change]) -> list[list[Any]]:
    """Index form of a commit's changes: ``[doc, parts, op]`` plus ``old, new`` when both are small.

    Past :data:`_MAX_KEYS_PER_COMMIT` changes, or with a huge key part, keys are collapsed to their shortest
    distinct prefixes that fit the cap (op ``"*"``: "something at or below this key changed")."""
    if len(changes) <= _MAX_KEYS_PER_COMMIT:
        items: list[list[Any]] = []
        for ch in changes:
            parts, cut = _encode_parts(ch.key)
            if cut:
                break
            item: list[Any] = [ch.doc, parts, ch.op]
            if (ch.op == "add" or _small_json(ch.old)) and (ch.op == "remove" or _small_json(ch.new)):
                item += [None if ch.op == "add" else ch.old, None if ch.op == "remove" else ch.new]
            items.append(item)
        else:
            return items
    # Collapse: C-level set building over raw key tuples, then encode only the few keys kept.
    keys = [(ch.doc, ch.key) for ch in changes]
    depth = max((len(k) for _, k in keys), default=0)
    while True:
        seen = dict.fromkeys((d, k[:depth]) for d, k in keys)
        if len(seen) <= _MAX_KEYS_PER_COMMIT or depth == 0:
            break
        depth -= 1
    if len(seen) > _MAX_KEYS_PER_COMMIT:  # more documents than the cap: whole documents, still exact per doc
        seen = dict.fromkeys((d, ()) for d, _ in seen)
    out: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
    for d, k in seen:
        parts, _ = _encode_parts(k)
        out.setdefault((d, tuple(parts)), [d, parts, "*"])
    return list(out.values())


_GC_PAUSE_LOCK = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building thousands of acyclic objects (index entries, commits).

    Every 700 new containers trigger a young collection, and the survivors are scanned again as they age into the
    older generations, so building 10,000 entries collects dozens of times and finds nothing (they hold no
    cycles). Nested and concurrent pauses count; the collector's previous state comes back when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _GC_PAUSE_LOCK:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_PAUSE_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class _IndexFile:
    """The in-memory image of one store's index file, refreshed incrementally (append-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.offset = 0
        self.ino: int | None = None
        self.lock = threading.RLock()

    def refresh(self) -> None:
        with self.lock, _gc_paused():
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                if self.ino is not None:
                    self.entries, self.offset, self.ino = {}, 0, None
                return
            if st.st_ino != self.ino or st.st_size < self.offset:
                self.entries, self.offset, self.ino = {}, 0, st.st_ino
            if st.st_size == self.offset:
                return
            items = self._read_new_lines(st.st_size)
            if not items:
                return
            if not self.entries:  # a first load: one C-level dict build unless lines repeat a commit
                try:
                    fast = {it["c"]: it for it in items}
                except (TypeError, KeyError):
                    fast = {}
                if len(fast) == len(items):
                    self.entries = fast
                    return
            self._merge(items)

    def _read_new_lines(self, size: int) -> list[Any]:
        """Parse the complete lines past :attr:`offset` (and move it past them); ``[]`` if there are none yet.

        The lines are read into a buffer just after a ``[`` and their newlines become commas in one copy, so
        orjson parses 10,000 lines in one C call. Each extra copy of a 3 MB buffer costs ~5 ms of page faults in
        a fresh process (the CLI), so there is only the one.
        """
        buf = bytearray(size - self.offset + 1)
        buf[0] = 0x5B  # "["
        got = 1
        try:
            with open(self.path, "rb", buffering=0) as f, memoryview(buf) as view:
                f.seek(self.offset)
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except OSError as e:
            logger.warning("cannot read the history index %s: %s", self.path, e)
            return []
        end = buf.rfind(b"\n", 0, got)  # buf[i] is the file's byte at offset + i - 1
        if end < 1:
            return []  # only a partial line so far
        self.offset += end
        arr = buf.replace(b"\n", b",")
        arr[end] = 0x5D  # "]" over the last line's newline
        try:
            items: list[Any] = orjson.loads(memoryview(arr)[: end + 1])
            return items
        except orjson.JSONDecodeError:  # an empty line (a writer's guard after a tear) or a damaged one
            pass
        lines = [ln for ln in bytes(buf[1:end]).split(b"\n") if ln]
        try:
            items = orjson.loads(b"[" + b",".join(lines) + b"]")
            return items
        except orjson.JSONDecodeError:
            pass
        items = []
        for ln in lines:
            try:
                items.append(orjson.loads(ln))
            except orjson.JSONDecodeError:
                logger.debug("skipping a damaged line of %s", self.path)
        return items

    def _merge(self, items: list[Any]) -> None:
        """Add parsed lines to :attr:`entries`: a line for a known commit completes its entry (a key supplement
        after the metadata, or the reverse); lines that are not an object with a string ``c`` are skipped."""
        entries = self.entries
        for it in items:
            try:
                cid = it["c"]
                have = entries.get(cid)
            except (TypeError, KeyError):
                continue
            if have is None:
                if type(cid) is str:
                    entries[cid] = it
            else:
                have.pop("_kp", None)
                have.update(it)

    def append(self, items: list[dict[str, Any]]) -> None:
        """Append whole lines with one ``O_APPEND`` write (atomic against other appenders on local disks)."""
        if not items:
            return
        data = b"".join(orjson.dumps(it) + b"\n" for it in items)
        with self.lock:
            self._merge([dict(it) for it in items])
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as e:
                logger.warning("cannot write the history index %s: %s", self.path, e)
                return
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a torn line from a crash: keep ours on lines of their own
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError as e:
                logger.warning("cannot append to the history index %s: %s", self.path, e)
            finally:
                os.close(fd)


_INDEXES: dict[str, _IndexFile] = {}
_INDEXES_LOCK = threading.Lock()


def _index_for(repo: Repository) -> _IndexFile:
    path = repo.meta_dir / INDEX_FILE
    key = str(path)
    with _INDEXES_LOCK:
        idx = _INDEXES.get(key)
        if idx is None:
            idx = _INDEXES[key] = _IndexFile(path)
    return idx


def _meta_entry(repo: Repository, info: CommitInfo) -> dict[str, Any]:
    """The index entry of a commit, without its keys: read from the commit and its diff against its first
    parent (changed paths only; no document is decoded)."""
    parent_tree = repo.commit_info(info.parents[0]).tree if info.parents else None
    docs = sorted(repo.changed_paths(parent_tree, info.tree))
    msg = info.message
    entry: dict[str, Any] = {
        "c": info.id,
        "p": list(info.parents),
        "t": info.time,
        "a": info.author,
        "m": msg if len(msg) <= _MAX_MESSAGE_CHARS else None,
        "actor": _trailer(msg, _ACTOR_TRAILER) or "human",
        "d": docs,
    }
    if info.tz_offset_s:
        entry["z"] = info.tz_offset_s
    if info.commit_time and info.commit_time != info.time:
        entry["ct"] = info.commit_time
    undone = _trailer(msg, _UNDO_TRAILER)
    if undone:
        entry["u"] = undone
    return entry


def _keys_json(items: list[list[Any]]) -> str:
    """Keys are kept as a JSON string inside the line: loading the index then builds one object per commit
    instead of dozens, and only key queries parse them (3.5x faster loads of 10,000 commits)."""
    return orjson.dumps(items).decode()


def _parsed_keys(e: dict[str, Any]) -> list[list[Any]] | None:
    """The entry's keys, parsed on first use (the raw JSON string stays for :class:`_KeyProbe`)."""
    parsed = e.get("_kp")
    if parsed is not None:
        return parsed  # type: ignore[no-any-return]
    k = e.get("k")
    if isinstance(k, str):
        try:
            k = orjson.loads(k)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(k, list):
        return None
    e["_kp"] = k
    return k


class _KeyProbe:
    """A conservative test on an entry's raw key JSON: False only if no stored key can relate to ``key``.

    A stored key relates to the query if one is a prefix of the other (string-wise), or through a list shift
    at an integer part. So when the query has no integer-like part and the JSON token of its part ``i`` is
    absent, only a stored key equal to a prefix ``key[:j]`` (``j <= i``) can still relate, and its exact JSON
    array must appear. This skips parsing the keys of nearly every commit of a long history.
    """

    def __init__(self, key: Key) -> None:
        self.usable = bool(key) and not any(_intlike(p) for p in key)
        tokens = [orjson.dumps(p).decode() for p in key] if self.usable else []
        prefixes = [orjson.dumps(list(key[:j])).decode() for j in range(len(key))] if self.usable else []
        # (token i, the prefixes key[:j] for j <= i), for C-level checks: this runs once per commit of the history
        self.steps = [(token, tuple(prefixes[: i + 1])) for i, token in enumerate(tokens)]

    def may_match(self, e: dict[str, Any]) -> bool:
        raw = e.get("k")
        if not self.usable or type(raw) is not str:
            return True
        for token, prefixes in self.steps:
            if token not in raw:
                return any(map(raw.__contains__, prefixes))
        return True


class _History:
    """One read session: the index plus the entries it had to compute (appended by :meth:`save`)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.idx = _index_for(repo)
        self.loaded = False  # the index file is read on first use: resolving HEAD or an id never needs it
        self.new: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> _History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()

    def _load(self) -> None:
        if not self.loaded:
            self.idx.refresh()
            self.loaded = True

    def save(self) -> None:
        if self.new:
            items = list(self.new.values())
            self.new = {}
            self.idx.append(items)

    def entry(self, cid: str) -> dict[str, Any]:
        self._load()
        e = self.idx.entries.get(cid)
        if e is not None and "t" in e:
            return e
        fresh = _meta_entry(self.repo, self.repo.commit_info(cid))
        self.new.setdefault(cid, {}).update(fresh)
        if e is not None:  # a key supplement arrived before its metadata line
            fresh.update({x: e[x] for x in ("k", "_kp") if x in e})
        with self.idx.lock:
            self.idx.entries[cid] = fresh
        return fresh

    def keys(self, e: dict[str, Any]) -> list[list[Any]]:
        """The index form of the commit's changes, computed (and queued for appending) when missing."""
        k = _parsed_keys(e)
        if k is not None:
            return k
        cid = e["c"]
        old_tree, new_tree = self._trees(e)
        changes: list[docdiff.Change] = []
        for doc in e.get("d", []):
            changes.extend(_doc_changes(self.repo, doc, old_tree, new_tree))
        k = _encode_changes(changes)
        e["k"] = _keys_json(k)
        e["_kp"] = k
        self.new.setdefault(cid, {"c": cid})["k"] = e["k"]
        return k

    def message(self, e: dict[str, Any]) -> str:
        m = e.get("m")
        return m if isinstance(m, str) else self.repo.commit_info(e["c"]).message

    def commit(self, e: dict[str, Any]) -> Commit:
        return Commit._from_entry(e, self.repo)

    def parents(self, cid: str) -> list[str]:
        return list(self.entry(cid).get("p", []))

    def walk(self, head: str | None) -> Iterator[dict[str, Any]]:
        """Entries of every commit reachable from ``head``, newest first by commit time (like ``git log``)."""
        if head is None:
            return
        first = self.entry(head)
        entries = self.idx.entries
        heap: list[tuple[int, int, dict[str, Any]]] = []
        seen = {head}
        counter = 0
        cur: dict[str, Any] | None = first
        while cur is not None or heap:
            if cur is None:
                cur = heapq.heappop(heap)[2]
            yield cur
            parents: list[str] = cur.get("p") or []
            nxt: dict[str, Any] | None = None
            if len(parents) == 1 and not heap:  # the common linear case: no heap traffic
                p = parents[0]
                if p not in seen:
                    seen.add(p)
                    pe = entries.get(p)
                    nxt = pe if pe is not None and "t" in pe else self.entry(p)
            else:
                for p in parents:
                    if p in seen:
                        continue
                    seen.add(p)
                    pe = entries.get(p)
                    pe = pe if pe is not None and "t" in pe else self.entry(p)
                    counter += 1
                    heapq.heappush(heap, (-int(pe.get("ct", pe["t"])), counter, pe))
            cur = nxt

    def first_parent_chain(self, head: str | None) -> Iterator[dict[str, Any]]:
        cid = head
        while cid is not None:
            e = self.entry(cid)
            yield e
            parents = e.get("p") or ()
            cid = parents[0] if parents else None

    # ----------------------------------------------------------------- key matching
    def _trees(self, e: dict[str, Any]) -> tuple[str | None, str]:
        """The trees of the commit's first parent (None for a root commit) and of the commit."""
        parents = e.get("p") or ()
        parent_tree = self.repo.commit_info(parents[0]).tree if parents else None
        return parent_tree, self.repo.commit_info(e["c"]).tree

    def key_changed(self, e: dict[str, Any], doc: str | None, key: Key) -> bool:
        """True if the commit changed the value at ``key`` (in ``doc`` or the documents under a ``doc`` ending in
        ``/``, or in any document). Callers filter with a :class:`_KeyProbe` first: it rules out nearly every
        commit without parsing its keys."""
        ambiguous: list[str] = []
        for it in self.keys(e):
            d = it[0]
            if doc is not None and not _in_doc(d, doc):
                continue
            rel = _relation(it[1], it[2], key)
            if rel == _DEFINITE:
                return True
            if rel == _AMBIGUOUS and d not in ambiguous:
                ambiguous.append(d)
        if ambiguous:
            old_tree, new_tree = self._trees(e)
            return any(_doc_changes(self.repo, d, old_tree, new_tree, key) for d in ambiguous)
        return False

    def commit_changes(self, cid: str, doc: str | None, key: Key) -> list[docdiff.Change]:
        """The commit's changes against its first parent, optionally limited to ``doc`` and ``key``."""
        e = self.entry(cid)
        items = [it for it in self.keys(e) if doc is None or it[0] == doc]
        if not key:
            if all(len(it) == 5 for it in items):
                return [_change_from_item(it) for it in items]
            docs = [d for d in e.get("d", []) if doc is None or d == doc]
            old_tree, new_tree = self._trees(e)
            out: list[docdiff.Change] = []
            for d in docs:
                out.extend(_doc_changes(self.repo, d, old_tree, new_tree))
            return out
        rels = [(it, _relation(it[1], it[2], key)) for it in items]
        hits = [(it, r) for it, r in rels if r != _NONE]
        if all(r == _DEFINITE and len(it) == 5 for it, r in hits):
            return [_change_from_item(it) for it, _ in hits]
        old_tree, new_tree = self._trees(e)
        out = []
        for d in dict.fromkeys(it[0] for it, _ in hits):
            out.extend(_doc_changes(self.repo, d, old_tree, new_tree, key))
        return out


def _change_from_item(it: list[Any]) -> docdiff.Change:
    from . import docdiff

    doc, parts, op, old, new = it
    return docdiff.Change(
        doc,
        tuple(parts),
        op,
        docdiff.MISSING if op == "add" else copy_value(old),
        docdiff.MISSING if op == "remove" else copy_value(new),
    )


def _intlike(part: Any) -> bool:
    if isinstance(part, int) and not isinstance(part, bool):
        return True
    return isinstance(part, str) and part.lstrip("-").isdigit()


def _relation(stored: list[Any], op: str, query: Key) -> int:
    """How a changed key relates to a queried key: no overlap, surely changed, or must be checked."""
    n = min(len(stored), len(query))
    for i in range(n):
        s, q = stored[i], query[i]
        if s == q or str(s) == str(q):
            continue
        # An item added or removed earlier in a list shifts the items after it.
        if len(stored) == i + 1 and op in ("add", "remove", "*") and _intlike(s) and _intlike(q) and int(q) >= int(s):
            return _AMBIGUOUS
        return _NONE
    if len(query) > len(stored):
        return _AMBIGUOUS  # a change higher up (whole document, parent mapping) may or may not touch the key
    if op == "remove" and any(_intlike(p) for p in stored[: len(query)]):
        return _AMBIGUOUS  # a removal names the old list index; the query means the current one
    return _DEFINITE


# ===================================================================== recording
def record(repo: Repository, commit_id: str, *, actor: str, changes: list[docdiff.Change]) -> None:
    """Add a commit gitstate just made to the history index (call with the repository lock held).

    ``changes`` are the commit's key-level changes against its first parent; for merge commits they are
    recomputed lazily instead (against the first parent), whatever the caller passed.

    Example:
        >>> # called by the store after each commit: history.record(repo, cid, actor="library", changes=changes)
    """
    info = repo.commit_info(commit_id)
    entry = _meta_entry(repo, info)
    if _trailer(info.message, _ACTOR_TRAILER) is None:
        entry["actor"] = actor
    if len(info.parents) <= 1:
        docs = entry["d"]
        entry["k"] = _keys_json(_encode_changes([c for c in changes if c.doc in docs or not c.doc]))
    entry["b"] = 1  # made on the branch by a store: the newest such entry is the branch's last known head
    _index_for(repo).append([entry])


def indexed_commits(repo: Repository) -> tuple[list[str], list[str]]:
    """Commit ids the history index knows, newest line first: ``(branch, others)``. ``branch`` are the commits a
    store made on its branch (see :func:`record`), so the first one that still exists is the last head gitstate
    saw; ``others`` were indexed while walking (pulled, made by plain git, or a remote's). For ref recovery.
    """
    idx = _index_for(repo)
    try:
        idx.refresh()
    except (OSError, ValueError) as e:
        logger.warning("cannot read the history index %s: %s", idx.path, e)
        return [], []
    with idx.lock:
        entries = list(idx.entries.values())
    branch: list[str] = []
    others: list[str] = []
    for entry in reversed(entries):
        cid = entry.get("c")
        if isinstance(cid, str):
            (branch if entry.get("b") else others).append(cid)
    return branch, others


# ===================================================================== log
def log(
    repo: Repository, head: str | None, *, doc: str | None = None, key: Key | None = None, limit: int | None = None
) -> list[Commit]:
    """Commits reachable from ``head``, newest first (like ``git log``).

    Args:
        repo: the repository.
        head: the commit to start from (the branch head); None gives ``[]``.
        doc: only commits that changed this document (a path ending in ``/`` matches every document under it).
        key: only commits that changed the value at this key (in ``doc``, or in any document).
        limit: at most this many commits.

    Raises:
        KeyNotFound: ``doc`` or ``key`` was given and no commit in the history ever changed it.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "b", 2)
        ...     [c.subject for c in store.log(key="a")]
        ['state.json: created']
    """
    entries = log_entries(repo, head, doc=doc, key=key, limit=limit)
    from_entry = Commit._from_entry
    with _gc_paused():
        return [from_entry(e, repo) for e in entries]


def log_entries(
    repo: Repository, head: str | None, *, doc: str | None = None, key: Key | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """:func:`log` as raw history-index entries, for code that formats thousands of commits (the CLI's ``log``).

    Same arguments, order and errors as :func:`log`. Each entry is a read-only dict: ``c`` (id), ``t`` (author
    time, epoch seconds), ``z`` (UTC offset in seconds, absent when 0), ``a`` (author), ``m`` (the message, or None
    when it is too long to index: use :func:`commit_from_entry`), ``actor``, ``d`` (changed documents) and ``p``
    (parents). :func:`commit_from_entry` turns one into a :class:`Commit`.

    Example:
        >>> import gitstate, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with gitstate.open(path, durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        >>> repo = Repository.open(path, create=False)
        >>> [(e["actor"], e["d"]) for e in log_entries(repo, repo.head())]
        [('library', ['state.json'])]
    """
    if limit is not None and limit <= 0:
        return []
    keyt: Key = tuple(key) if key else ()
    out: list[dict[str, Any]] = []
    probe = _KeyProbe(keyt) if keyt else None
    with _History(repo) as hist, _gc_paused():
        for e in hist.walk(head):
            if doc is not None:
                docs = e.get("d") or ()
                if doc.endswith("/"):
                    if not any(d.startswith(doc) for d in docs):
                        continue
                elif doc not in docs:
                    continue
            if probe is not None and not (probe.may_match(e) and hist.key_changed(e, doc, keyt)):
                continue
            out.append(e)
            if limit is not None and len(out) >= limit:
                break
    if not out and head is not None and (doc is not None or keyt):
        what = "no commit changed this key" if keyt else "no commit touched this document"
        raise KeyNotFound(doc or "*", keyt, f"{what} in the history of {repo.branch}")
    return out


def commit_from_entry(entry: dict[str, Any], repo: Repository) -> Commit:
    """The :class:`Commit` of one :func:`log_entries` entry."""
    return Commit._from_entry(entry, repo)


def get_commit(repo: Repository, rev: str) -> Commit:
    """The :class:`Commit` a revision names.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     get_commit(store._repo, "HEAD").actor
        'library'
    """
    cid = resolve(repo, rev)
    idx = _index_for(repo)
    e = idx.entries.get(cid)  # in memory already (this process logged before), else straight from the commit
    if e is None or "t" not in e:
        e = _meta_entry(repo, repo.commit_info(cid))
    return Commit._from_entry(e, repo)


# ===================================================================== revisions
_REV_SUFFIX = re.compile(r"^(.*?)((?:[~^]\d*)*)$", re.S)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_FULL_ID = re.compile(r"^[0-9a-f]{40}$")


def _ref_name_ok(name: str) -> bool:
    return not (
        _BAD_REF_CHARS.search(name)
        or ".." in name
        or "//" in name
        or name.startswith(("/", "."))
        or name.endswith(("/", ".", ".lock"))
        or "/." in name
    )


_UNITS: Final = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "wk": 604800,
    "week": 604800,
    "weeks": 604800,
    "mo": 2592000,
    "month": 2592000,
    "months": 2592000,
    "y": 31536000,
    "yr": 31536000,
    "year": 31536000,
    "years": 31536000,
}
_AGO = re.compile(r"^((?:\s*(?:\d+(?:\.\d+)?|an?)\s*[a-z]+\s*,?\s*(?:and\s+)?)+)ago$", re.I)
_AGO_PART = re.compile(r"(\d+(?:\.\d+)?|an?)\s*([a-z]+)", re.I)


def parse_time(text: str, *, now: float | None = None) -> float | None:
    """Seconds since the epoch for a time expression, or None if ``text`` is not one.

    Accepts ``now``, ``yesterday``, ``N <unit>[s] ago`` (``2h ago``, ``90 minutes ago``, ``1 day 2 hours ago``,
    ``an hour ago``; units s/m/h/d/w/mo/y spelled short or long) and ISO 8601 timestamps (``2024-05-01``,
    ``2024-05-01T10:00``, ``2024-05-01 10:00:00+02:00``, ``...Z``); a timestamp without a zone is local time and
    a bare date means its midnight.

    Example:
        >>> parse_time("2h ago", now=10_000.0), parse_time("yesterday", now=100_000.0), parse_time("HEAD")
        (2800.0, 13600.0, None)
    """
    s = text.strip()
    current = time.time() if now is None else now
    low = s.lower()
    if low == "now":
        return current
    if low == "yesterday":
        return current - 86400
    m = _AGO.match(s)
    if m:
        total = 0.0
        for num, unit in _AGO_PART.findall(m.group(1)):
            size = _UNITS.get(unit.lower())
            if size is None:
                return None
            total += (1.0 if num.lower() in ("a", "an") else float(num)) * size
        return current - total
    if re.match(r"^\d{4}-\d{2}-\d{2}", s):
        try:
            when = _dt.datetime.fromisoformat(s)
        except ValueError:
            return None
        return when.timestamp()  # naive datetimes are taken as local time
    return None


def _peel_base(repo: Repository, hist: _History, base: str, rev: str) -> str:
    """The commit a revision's base (before any ``~N``/``^N``) names; tried in the order :func:`resolve` documents."""
    head = repo.head()
    if base in ("HEAD", "@"):
        if head is None:
            raise RevisionNotFound(rev, "the store has no commits yet")
        return head
    if not base:
        raise RevisionNotFound(rev, "empty revision")
    by_name = _by_ref_name(repo, base)
    if by_name is not None:
        return by_name
    if _HEX.match(base) and len(base) == 40:
        return _by_full_id(repo, base.lower(), rev)
    if _HEX.match(base) and _MIN_PREFIX <= len(base) < 40:
        return _by_prefix(repo, hist, head, base.lower(), rev)
    when = parse_time(base)
    if when is not None:
        return _by_time(repo, hist, head, when, rev)
    raise RevisionNotFound(
        rev, "not a commit id, snapshot name, HEAD~N or time (like '2h ago', 'yesterday' or 2024-05-01T10:00)"
    )


def _by_ref_name(repo: Repository, base: str) -> str | None:
    """Snapshots (tags), then branches and remote-tracking branches, then full ref names. Only names git would
    accept as refs are looked up: a ref name is a path under .git/."""
    if not _ref_name_ok(base):
        return None
    if repo.read_ref(f"refs/tags/{base}") is not None:
        for t in repo.tags():
            if t.name == base:
                return t.commit
    for ref in (f"refs/heads/{base}", f"refs/remotes/{base}", base if base.startswith("refs/") else ""):
        if ref:
            sha = repo.read_ref(ref)
            if sha is not None and _FULL_ID.match(sha):
                return sha
    return None


def _by_full_id(repo: Repository, sha: str, rev: str) -> str:
    if not repo.has_object(sha):
        raise RevisionNotFound(rev, "no such commit in this store")
    try:
        repo.commit_info(sha)
    except RevisionNotFound as e:
        raise RevisionNotFound(rev, "that object is not a commit") from e
    return sha


def _by_prefix(repo: Repository, hist: _History, head: str | None, prefix: str, rev: str) -> str:
    found: set[str] = {str(e["c"]) for e in hist.walk(head) if e["c"].startswith(prefix)}
    found |= {t.commit for t in repo.tags() if t.commit.startswith(prefix)}
    if len(found) == 1:
        return found.pop()
    if found:
        sample = ", ".join(sorted(c[:12] for c in found)[:4])
        raise RevisionNotFound(rev, f"ambiguous: {len(found)} commits start with it ({sample}); give more digits")
    raise RevisionNotFound(rev, f"no commit on {repo.branch} starts with {prefix!r}")


def _by_time(repo: Repository, hist: _History, head: str | None, when: float, rev: str) -> str:
    for entry in hist.first_parent_chain(head):
        if int(entry.get("ct", entry["t"])) <= when:
            return str(entry["c"])
    if head is None:
        raise RevisionNotFound(rev, "the store has no commits yet")
    moment = _dt.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
    raise RevisionNotFound(rev, f"{moment} is before the first commit of {repo.branch}")


def resolve(repo: Repository, rev: str) -> str:
    """The commit id a revision names.

    Accepts ``HEAD``, ``HEAD~N``, ``HEAD^``, ``<rev>~N``/``<rev>^N`` on any of the following, a full id or a
    unique prefix (4+ hex digits, among the branch's commits and snapshots), a snapshot name, a branch name,
    and a time (see :func:`parse_time`), which names the newest commit at or before that moment on the branch's
    first-parent history.

    Raises:
        RevisionNotFound: nothing matches, a prefix is ambiguous, ``~N`` goes past the first commit, or the
            time is before the first commit.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "a", 2)
        ...     resolve(store._repo, "HEAD~1") == store.log()[1].id
        True
    """
    if not isinstance(rev, str):
        raise TypeError(f"a revision must be a str, not {type(rev).__name__}")
    text = rev.strip()
    with _History(repo) as hist:
        # Whole-string matches first: a snapshot or a time expression may not be split on ~ and ^.
        m = _REV_SUFFIX.match(text)
        assert m is not None
        base, suffix = m.group(1), m.group(2)
        if not suffix:
            return _peel_base(repo, hist, text, rev)
        cid = _peel_base(repo, hist, base, rev)
        for step in re.findall(r"[~^]\d*", suffix):
            kind, num = step[0], step[1:]
            n = int(num) if num else 1
            if kind == "~":
                for i in range(n):
                    parents = hist.parents(cid)
                    if not parents:
                        raise RevisionNotFound(
                            rev,
                            f"{base} has only {i} commit(s) before it"
                            if i
                            else f"{cid[:8]} is the first commit; it has no parent",
                        )
                    cid = parents[0]
            else:
                if n == 0:
                    continue
                parents = hist.parents(cid)
                if len(parents) < n:
                    raise RevisionNotFound(rev, f"{cid[:8]} has {len(parents)} parent(s)")
                cid = parents[n - 1]
        return cid


# ===================================================================== diff and at
def diff(repo: Repository, a: str, b: str, *, doc: str | None = None) -> list[docdiff.Change]:
    """Key-level changes that take revision ``a`` to revision ``b`` (for one document, or all).

    Text and raw documents change as a whole (one ``Change`` with the old and new ``str``/``bytes``); render
    them with :func:`gitstate.docdiff.diff_text`.

    Raises:
        RevisionNotFound: ``a`` or ``b`` names nothing.
        KeyNotFound: ``doc`` exists at neither revision.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "a", 2)
        ...     [(c.key, c.old, c.new) for c in store.diff("HEAD~1", "HEAD")]
        [(('a',), 1, 2)]
    """
    ta, tb, changed = _changed_between(repo, a, b, doc)
    out: list[docdiff.Change] = []
    for path in changed:
        out.extend(_doc_changes(repo, path, ta, tb))
    return out


def _changed_between(
    repo: Repository, a: str, b: str, doc: str | None
) -> tuple[str, str, dict[str, tuple[str | None, str | None]]]:
    """The trees of revisions ``a`` and ``b`` and, sorted by path, the blob ids (None where absent) of the
    files that differ between them (only ``doc``, or the documents under a ``doc`` ending in ``/``, if given)."""
    ca, cb = resolve(repo, a), resolve(repo, b)
    ta, tb = repo.commit_info(ca).tree, repo.commit_info(cb).tree
    if doc is not None and not doc.endswith("/"):
        validate_doc_path(doc)
        if repo.blob_id_at(ta, doc) is None and repo.blob_id_at(tb, doc) is None:
            raise KeyNotFound(doc, (), f"no such document at {a} or {b}")
    changed = repo.changed_paths(ta, tb)
    return ta, tb, {p: changed[p] for p in sorted(changed) if doc is None or _in_doc(p, doc)}


def _in_doc(path: str, doc: str) -> bool:
    """True if ``path`` is ``doc``, or lies under it when ``doc`` ends in ``/``."""
    return path == doc or (doc.endswith("/") and path.startswith(doc))


def text_diff(repo: Repository, a: str, b: str, *, doc: str | None = None) -> dict[str, str]:
    """Unified diffs (like ``git diff``) of every file that differs between revisions ``a`` and ``b``:
    doc -> diff text. Files that are not UTF-8 give a ``Binary files ... differ`` line.

    Raises:
        RevisionNotFound: ``a`` or ``b`` names nothing.
        KeyNotFound: ``doc`` exists at neither revision.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("notes.md", None, "a\\n"); store.set("notes.md", None, "b\\n")
        ...     print(text_diff(store._repo, "HEAD~1", "HEAD")["notes.md"], end="")
        --- a/notes.md
        +++ b/notes.md
        @@ -1 +1 @@
        -a
        +b
    """
    from . import docdiff

    out: dict[str, str] = {}
    for path, (old, new) in _changed_between(repo, a, b, doc)[2].items():
        try:
            old_text = None if old is None else repo.read_blob(old).decode("utf-8")
            new_text = None if new is None else repo.read_blob(new).decode("utf-8")
        except UnicodeDecodeError:
            out[path] = f"Binary files a/{path} and b/{path} differ\n"
            continue
        out[path] = docdiff.diff_text(old_text, new_text, doc=path)
    return out


def at(repo: Repository, rev: str) -> StateView:
    """A read-only view of the store as of ``rev`` (see :func:`resolve` for the forms it takes).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     at(store._repo, "now").get("state.json")
        {'a': 1}
    """
    return StateView(repo, resolve(repo, rev), rev)


# ===================================================================== restore and undo
def restore_files(
    repo: Repository, head: str | None, target_commit: str, docs: list[str] | None
) -> dict[str, bytes | None]:
    """File contents that make ``docs`` (all documents when None; a path ending in ``/`` means every document
    under it) equal to ``target_commit``: path -> bytes, or None to remove a document absent at the target.

    Raises:
        KeyNotFound: a document exists neither now nor at the target.
        UnsafeTree: the target holds an entry gitstate will not write (see :mod:`gitstate.worktree`).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("b.json", "x", 1)
        ...     restore_files(store._repo, store.head, store.resolve("HEAD~1"), None)
        {'b.json': None}
    """
    head_tree = repo.commit_info(head).tree if head else EMPTY_TREE
    target_tree = repo.commit_info(target_commit).tree

    def selected(path: str) -> bool:
        return docs is None or any(path == d or (d.endswith("/") and path.startswith(d)) for d in docs)

    # Every entry the restore would write or delete, before anything is committed (see gitstate.worktree).
    check_trees(repo, head_tree, target_tree, what=f"to restore {target_commit[:8]}", selected=selected)
    out: dict[str, bytes | None] = {}
    if docs is None:
        out = {
            p: None if new is None else repo.read_blob(new)
            for p, (_, new) in repo.changed_paths(head_tree, target_tree).items()
        }
        _ensure_empty_tree(repo, out)
        return out
    for doc in docs:
        if doc.endswith("/"):
            validate_doc_path(doc.rstrip("/"))
            now = repo.list_blobs(head_tree, doc)
            then = repo.list_blobs(target_tree, doc)
            if not now and not then:
                raise KeyNotFound(doc, (), f"no documents under it now or at {target_commit[:8]}")
            for p in sorted(now.keys() | then.keys()):
                if now.get(p) != then.get(p):
                    out[p] = None if p not in then else repo.read_blob(then[p])
            continue
        validate_doc_path(doc)
        then_blob = repo.blob_id_at(target_tree, doc)
        if then_blob is None and repo.blob_id_at(head_tree, doc) is None:
            raise KeyNotFound(doc, (), f"no such document now or at {target_commit[:8]}")
        out[doc] = None if then_blob is None else repo.read_blob(then_blob)
    _ensure_empty_tree(repo, out)
    return out


def _ensure_empty_tree(repo: Repository, files: dict[str, bytes | None]) -> None:
    """Removing every document commits the empty tree, which ``Repository.build_tree`` does not write (git
    fsck then reports it missing). Write it first; a no-op once it exists."""
    if any(v is None for v in files.values()) and not repo.has_object(EMPTY_TREE):
        repo.write_objects([repo.read_tree(EMPTY_TREE)])


def _undo_target(hist: _History, head: str) -> dict[str, Any] | None:
    """The newest commit on the first-parent chain that is neither an undo nor already undone."""
    undone: set[str] = set()
    for e in hist.first_parent_chain(head):
        cid = e["c"]
        target = e.get("u")
        if target:
            undone.add(str(target))
            continue
        if cid in undone:
            continue
        return e
    return None


def undo_files(repo: Repository, head: str | None, actor: str = "restore") -> tuple[dict[str, bytes | None], str]:
    """What reverting the last commit takes: the files it changed, back at its first parent's content, and a
    full commit message (with ``Gitstate-Actor: restore``, or ``actor``, and ``Gitstate-Undo: <id>`` trailers).

    Undo commits and the commits they reverted are skipped, so undoing twice reverts the last two commits
    (it does not redo).

    Raises:
        GitStateError: nothing to undo (no commits, or every commit already undone).
        UnsafeTree: the commit to undo changed an entry gitstate will not write or delete.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "a", 2)
        ...     files, message = undo_files(store._repo, store.head)
        ...     files, message.splitlines()[0].split(": ", 1)[1]
        ({'state.json': b'{\\n  "a": 1\\n}\\n'}, 'state.json: a 1 -> 2')
    """
    from . import docdiff

    if head is None:
        raise GitStateError("nothing to undo: the store has no commits yet")
    with _History(repo) as hist:
        e = _undo_target(hist, head)
        if e is None:
            raise GitStateError("nothing to undo: every commit on the branch has already been undone")
        cid = e["c"]
        parents = e.get("p") or ()
        parent_tree = repo.commit_info(parents[0]).tree if parents else None
        head_tree = repo.commit_info(head).tree
        # What the undone commit changed is what undo writes back or deletes: every entry is checked first.
        check_trees(repo, parent_tree, repo.commit_info(cid).tree, what=f"to undo {cid[:8]}")
        files: dict[str, bytes | None] = {}
        for path in e.get("d", []):
            blob = repo.blob_id_at(parent_tree, path) if parent_tree else None
            files[path] = None if blob is None else repo.read_blob(blob)
        changes: list[docdiff.Change] = []
        for path, data in files.items():
            changes.extend(_doc_changes_bytes(repo, path, head_tree, data))
        subject = hist.message(e).split("\n", 1)[0]
    _ensure_empty_tree(repo, files)
    lines = docdiff.summarize(changes, max_lines=50)
    parts = [f"undo {cid[:8]}: {subject}"]
    if lines:
        parts.append("\n".join(lines))
    parts.append(f"{_ACTOR_TRAILER}: {actor}\n{_UNDO_TRAILER}: {cid}")
    return files, "\n\n".join(parts) + "\n"


def _doc_changes_bytes(repo: Repository, doc: str, tree: str, data: bytes | None) -> list[docdiff.Change]:
    """Key-level changes that replacing ``doc`` at ``tree`` with ``data`` (None: removing it) makes."""
    from . import docdiff

    new = docdiff.MISSING if data is None else _decode_bytes(data, doc, registry_for(repo).for_doc(doc))
    return docdiff.diff(_value_at(repo, tree, doc), new, doc=doc)


# ===================================================================== snapshots
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _check_snapshot_name(name: str) -> None:
    """Git's ``check-ref-format`` rules for a tag name, plus names that would read as something else."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif _BAD_REF_CHARS.search(name):
        problem = "spaces, control characters and ~ ^ : ? * [ \\ are not allowed"
    elif ".." in name or "@{" in name or "//" in name:
        problem = "'..', '@{' and '//' are not allowed"
    elif name.startswith(("-", "/")) or name.endswith(("/", ".")) or name == "@":
        problem = "it may not start with '-' or '/', end with '/' or '.', or be '@'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problem = "no part may start with '.' or end with '.lock'"
    elif name in ("HEAD", "now", "yesterday") or parse_time(name, now=0.0) is not None:
        problem = "it would read as a revision or a time"
    elif _HEX.match(name) and len(name) >= _MIN_PREFIX:
        problem = "it looks like a commit id"
    if problem:
        raise GitStateError(f"invalid snapshot name {name!r}: {problem}")


def snapshot(repo: Repository, name: str, *, tagger: str, message: str | None = None) -> str:
    """Tag the branch head as ``name`` (an annotated Git tag); returns the commit id.

    Raises:
        GitStateError: the name is not a valid tag name, is taken, or the store has no commits yet.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     snapshot(store._repo, "v1", tagger="me <me@host>") == store.head
        True
    """
    _check_snapshot_name(name)
    with repo.lock():
        head = repo.head()
        if head is None:
            raise GitStateError("nothing to snapshot: the store has no commits yet")
        existing = repo.read_ref(f"refs/tags/{name}")
        if existing is not None:
            raise GitStateError(
                f"snapshot {name!r} already exists; pick another name (or remove it with 'git tag -d {name}')"
            )
        repo.create_tag(name, head, tagger=tagger, message=message or f"gitstate snapshot {name}")
    return head


def snapshots(repo: Repository) -> list[Snapshot]:
    """Every snapshot (Git tag, including tags made with plain ``git``), oldest first.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.snapshots()
        []
    """
    out = []
    for t in repo.tags():
        when = _dt.datetime.fromtimestamp(t.time, _dt.UTC).astimezone()
        out.append(Snapshot(name=t.name, commit=t.commit, time=when, message=t.message))
    return out


# ===================================================================== status helpers
def ahead_behind(repo: Repository, local: str | None, remote: str | None) -> tuple[int, int]:
    """``(ahead, behind)``: commits reachable only from ``local``, and only from ``remote``.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     ahead_behind(store._repo, store.head, None)
        (1, 0)
    """
    with _History(repo) as hist:
        mine = {e["c"] for e in hist.walk(local)}
        theirs = {e["c"] for e in hist.walk(remote)}
    return len(mine - theirs), len(theirs - mine)
