"""The history index: a cache of every commit's parents, times, actor, documents and changed keys.

What belongs here: the index file (reading, appending, refreshing), walking the history through it, the keys a
commit changed, and decoding committed documents for that (shared with :mod:`gitstate.history`). What does not:
the public history API (:mod:`gitstate.history`), revision syntax (:mod:`gitstate.revisions`), the index form of
keys and matching them (:mod:`gitstate.history_keys`). gitstate keeps this cache rather than walking with
dulwich: a dulwich walk costs ~45 us a commit, and key-level questions would otherwise diff every commit.

**The history index.** Walking commits with dulwich costs ~45 µs each (``git log`` is 7x faster), and answering
"who changed ``services.slack``" by diffing every commit would cost milliseconds each. So gitstate keeps an
append-only JSON-lines file, ``.git/gitstate/history-index-v1.jsonl``, with one line per commit: its parents,
times, author, message, actor, the documents it changed and the keys it changed (key paths, plus the old and
new values when they are small). It is a cache, never the source of truth:

* an entry is keyed by commit id, and ids name immutable content, so an entry is right for as long as it exists;
  what is *in* the history is always decided by walking parent links from the branch head;
* commits it does not know (made by plain ``git``, pulled from another machine, or after the file was lost) are
  indexed when a walk meets them, by diffing against their first parent, and appended oldest first, with the
  walk's start written again after them: the file's end holds the newest commits, where readers start;
* writers append whole lines with one ``O_APPEND`` write (the store does it under its lock); readers read only
  complete lines, skip lines that do not parse (a torn write after a crash) and re-read only what was appended
  since their last look.

Keys of one commit are capped: past 64 changes (a whole-document restore) they are collapsed to their common
prefixes, and a match on a collapsed key is confirmed by reading the two versions of the document.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import messages
from .codecs import Codec, registry_for
from .errors import DecodeError
from .gcpause import gc_paused
from .history_keys import (
    AMBIGUOUS,
    DEFINITE,
    NONE,
    KeyProbe,
    change_from_item,
    encode_changes,
    keys_json,
    parsed_keys,
    relation,
)
from .history_stream import (
    FIRST_BLOCK,
    Backwards,
    Spool,
    load_lines,
    read_block_before,
    read_into,
    rewrite_without,
)
from .keys import MISSING_KEY, Key, get_in
from .repo import CommitInfo, Repository

if TYPE_CHECKING:  # imported where used: `gitstate log` never diffs
    from . import docdiff

__all__ = [
    "INDEX_FILE",
    "META_PREFIX",
    "History",
    "KeyProbe",
    "aware",
    "decode",
    "decode_bytes",
    "doc_changes",
    "in_doc",
    "index_for",
    "indexed_commits",
    "indexing_progress",
    "meta_entry",
    "parsed_keys",
    "record",
    "value_at",
]

logger = logging.getLogger("gitstate.history")


#: File (under ``.git/gitstate/``) holding the history index; the version is in the name.
INDEX_FILE: Final = "history-index-v1.jsonl"


#: Documents under this prefix hold gitstate's own metadata (same value as ``store.META_PREFIX``; history sits
#: below the store and does not import it).
META_PREFIX: Final = ".gitstate/"


_MAX_MESSAGE_CHARS: Final = 4096


_MAX_BLOCK: Final = 8 * 1024 * 1024


# ===================================================================== small helpers
_PROGRESS: ContextVar[Callable[[int], None] | None] = ContextVar("gitstate_indexing_progress", default=None)


@contextmanager
def indexing_progress(report: Callable[[int], None]) -> Iterator[None]:
    """Within this block, ``report(n)`` is called each time a history read indexes a commit the history index did
    not know (a history made by plain git, or pulled): ``n`` counts the commits that read has indexed so far.
    The CLI draws a progress line with it when that takes a while.

    Example:
        >>> seen = []
        >>> with indexing_progress(seen.append):
        ...     pass  # history reads here report to seen
    """
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


_TZ_CACHE: dict[int, _dt.timezone] = {}


def aware(epoch_s: int | float, offset_s: int) -> _dt.datetime:
    tz = _TZ_CACHE.get(offset_s)
    if tz is None:
        tz = _TZ_CACHE[offset_s] = _dt.timezone(_dt.timedelta(seconds=offset_s))
    return _dt.datetime.fromtimestamp(epoch_s, tz)


_DECODED: OrderedDict[tuple[str, str], Any] = OrderedDict()


_DECODED_LOCK = threading.Lock()


def decode(repo: Repository, blob: str, doc: str) -> Any:
    """The value of a committed blob (decoded by the document's codec; text when it does not parse).
    Cached by blob id: callers must not mutate the result."""
    codec = registry_for(repo).for_doc(doc)
    key = (blob, codec.name)
    with _DECODED_LOCK:
        hit = _DECODED.get(key)
        if hit is not None:
            _DECODED.move_to_end(key)
            return hit
    value = decode_bytes(repo.read_blob(blob), doc, codec)
    with _DECODED_LOCK:
        _DECODED[key] = value
        while len(_DECODED) > 16:
            _DECODED.popitem(last=False)
    return value


def decode_bytes(data: bytes, doc: str, codec: Codec) -> Any:
    """``data`` decoded by ``codec``, or as text when it does not parse."""
    try:
        return codec.decode(data, doc)
    except DecodeError:
        return data.decode("utf-8", "replace")


def value_at(repo: Repository, tree: str | None, doc: str) -> Any:
    """The decoded document at ``tree``, or :data:`docdiff.MISSING`."""
    from . import docdiff

    if tree is None:
        return docdiff.MISSING
    blob = repo.blob_id_at(tree, doc)
    return docdiff.MISSING if blob is None else decode(repo, blob, doc)


def doc_changes(
    repo: Repository, doc: str, old_tree: str | None, new_tree: str | None, key: Key = ()
) -> list[docdiff.Change]:
    """Key-level changes of ``doc`` between two trees (below ``key`` when given)."""
    from . import docdiff

    old = value_at(repo, old_tree, doc)
    new = value_at(repo, new_tree, doc)
    if key:
        old_k = get_in(old, key) if old is not docdiff.MISSING else MISSING_KEY
        new_k = get_in(new, key) if new is not docdiff.MISSING else MISSING_KEY
        old = docdiff.MISSING if old_k is MISSING_KEY else old_k
        new = docdiff.MISSING if new_k is MISSING_KEY else new_k
        return [docdiff.Change(doc, (*key, *c.key), c.op, c.old, c.new) for c in docdiff.diff(old, new, doc=doc)]
    # Text, raw and unparseable versions are str/bytes, which docdiff.diff compares whole: one change at ().
    return docdiff.diff(old, new, doc=doc)


# ===================================================================== the index file
class _IndexFile:
    """The in-memory image of one store's index file, read from its newest end and refreshed incrementally.

    The file is append-only, so the newest commits are at its end: :meth:`find` reads blocks backwards from
    there until it meets the commit asked for (``log -n 20`` of a long history reads ~20 lines, not the file),
    and :meth:`refresh` reads what was appended since. ``low``..``offset`` is the loaded span of the file;
    ``low == 0`` once all of it is in memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.offset = 0
        self.low = 0
        self.block = FIRST_BLOCK
        self.ino: int | None = None
        self.lock = threading.RLock()
        self.reads = 0  # blocks read backwards (tests assert on laziness with it)

    def refresh(self) -> None:
        """Take in the complete lines appended since the last look (a new or replaced file starts over)."""
        with self.lock, gc_paused():
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                if self.ino is not None:
                    self.entries, self.offset, self.low, self.ino = {}, 0, 0, None
                return
            if st.st_ino != self.ino or st.st_size < self.offset:
                self.entries, self.ino, self.block = {}, st.st_ino, FIRST_BLOCK
                self.offset = self.low = self._last_line_end(st.st_size)
                return
            if st.st_size == self.offset:
                return
            items = self._read_new_lines(st.st_size)
            if items:
                self._merge(items)

    def _last_line_end(self, size: int) -> int:
        """The offset just past the file's last newline (0 when there is none): a torn last line is not read."""
        try:
            with open(self.path, "rb", buffering=0) as f:
                pos = size
                while pos > 0:
                    start = max(0, pos - 4096)
                    f.seek(start)
                    chunk = f.read(pos - start)
                    nl = chunk.rfind(b"\n")
                    if nl >= 0:
                        return start + nl + 1
                    pos = start
        except OSError as e:
            logger.warning("cannot read the history index %s: %s", self.path, e)
        return 0

    def load_older(self) -> bool:
        """Read one more block of lines before :attr:`low` (the next block is twice as big); False when the
        whole file is already in memory."""
        with self.lock, gc_paused():
            if self.low <= 0:
                return False
            self.reads += 1
            self.low, self.block, items = read_block_before(self.path, self.low, self.block, _MAX_BLOCK)
            self._merge_older(items)
            return True

    def load_all(self) -> None:
        """Read the rest of the file (questions about every commit it knows): in one read when it is at most
        :data:`_MAX_BLOCK`, else in the growing blocks of :meth:`load_older`."""
        with self.lock:
            if 0 < self.low <= _MAX_BLOCK:
                self.block = self.low
            while self.load_older():
                pass

    def find(self, cid: str) -> dict[str, Any] | None:
        """The entry of ``cid`` with its metadata, reading older blocks until it turns up; None if the file
        has no such entry."""
        e = self.entries.get(cid)
        while (e is None or "t" not in e) and self.low > 0:
            self.load_older()
            e = self.entries.get(cid)
        return e if e is not None and "t" in e else None

    def find_recent(self, cid: str) -> dict[str, Any] | None:
        """The entry of ``cid`` if it is in memory or near the file's newest end (HEAD and the commits just
        before it are): what was appended is read, then at most one older block, so the cost never follows the
        length of history. None: the caller reads the commit itself."""
        with self.lock:
            e = self.entries.get(cid)
            if e is None or "t" not in e:
                self.refresh()
                e = self.entries.get(cid)
                if (e is None or "t" not in e) and self.low > 0:
                    self.load_older()
                    e = self.entries.get(cid)
        return e if e is not None and "t" in e else None

    def _merge_older(self, items: list[Any]) -> None:
        """Add lines read from before the loaded span: newer lines (already in memory) win over older ones."""
        entries = self.entries
        try:  # the common case, at C speed: one line per commit, none of them in memory yet
            fresh = {it["c"]: it for it in items}
        except (TypeError, KeyError):
            fresh = {}
        if len(fresh) == len(items) and entries.keys().isdisjoint(fresh) and all(map(str.__instancecheck__, fresh)):
            entries.update(fresh)
            return
        for it in reversed(items):
            try:
                cid = it["c"]
                have = entries.get(cid)
            except (TypeError, KeyError):
                continue
            if have is None:
                if type(cid) is str:
                    entries[cid] = it
            else:
                for k, v in it.items():
                    have.setdefault(k, v)

    def _read_new_lines(self, size: int) -> list[Any]:
        """Parse the complete lines past :attr:`offset` (and move it past them); ``[]`` if there are none yet.

        The lines are read into a buffer just after a spare byte and parsed with one copy of it
        (:func:`~gitstate.history_stream.load_lines`).
        """
        buf = bytearray(size - self.offset + 1)  # buf[i] is the file's byte at offset + i - 1
        got = read_into(self.path, self.offset, buf, 1)
        end = buf.rfind(b"\n", 0, got) if got > 0 else -1
        if end < 1:
            return []  # only a partial line so far (or the file cannot be read)
        self.offset += end
        return load_lines(buf, 0, end, self.path)

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
            self.append_lines(data)

    def rewrite_without(self, drop: AbstractSet[str], tail: Iterable[bytes]) -> bool:
        """Replace the file with its lines minus those of the commits in ``drop``, then ``tail``
        (:func:`~gitstate.history_stream.rewrite_without`). The image starts over at the next :meth:`refresh`
        (the file is a new one)."""
        with self.lock:
            return rewrite_without(self.path, drop, tail)

    def append_lines(self, data: bytes) -> None:
        """Append encoded lines (each ending in a newline) as they are, without taking them into the image."""
        with self.lock:
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


def index_for(repo: Repository) -> _IndexFile:
    path = repo.meta_dir / INDEX_FILE
    key = str(path)
    with _INDEXES_LOCK:
        idx = _INDEXES.get(key)
        if idx is None:
            idx = _INDEXES[key] = _IndexFile(path)
    return idx


def meta_entry(
    repo: Repository, info: CommitInfo, parsed: messages.Message | None = None, docs: list[str] | None = None
) -> dict[str, Any]:
    """The index entry of a commit, without its keys: read from the commit and its diff against its first
    parent (changed paths only; no document is decoded). ``parsed``: the commit's message, already parsed.
    ``docs``: the changed paths, sorted, when the caller knows them (the two trees are not compared)."""
    if docs is None:
        parent_tree = repo.commit_info(info.parents[0]).tree if info.parents else None
        docs = sorted(repo.changed_paths(parent_tree, info.tree))
    msg = info.message
    if parsed is None:
        parsed = messages.parse(msg)
    entry: dict[str, Any] = {
        "c": info.id,
        "p": list(info.parents),
        "t": info.time,
        "a": info.author,
        "m": msg if len(msg) <= _MAX_MESSAGE_CHARS else None,
        "actor": parsed.actor,
        "d": docs,
    }
    if info.tz_offset_s:
        entry["z"] = info.tz_offset_s
    if info.commit_time and info.commit_time != info.time:
        entry["ct"] = info.commit_time
    undone = parsed.trailer(messages.UNDO_TRAILER)
    if undone:
        entry["u"] = undone
    return entry


def _by_commit_time(
    head: str,
    shared: dict[str, dict[str, Any]],
    get: Callable[[str], dict[str, Any]],
    met: dict[str, dict[str, Any]] | None = None,
    seen: set[str] | None = None,
    pending: dict[str, dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Entries of every commit reachable from ``head``, newest first by commit time (like ``git log``).

    A commit's entry comes from ``shared`` (the index's shared image) where that holds it whole, else from
    ``pending`` (a streaming walk's read-ahead buffer, ``Backwards.pending``) where that does, taken out of it,
    else from ``get``. The first two are looked up here, not through a call: a whole log takes no Python call
    per commit. A linear stretch takes no heap traffic. ``met`` gets the first :data:`FRONT` entries yielded, by
    commit id. ``seen``: the set to keep the ids of the commits asked for in (each is added before it is asked
    for)."""
    heap: list[tuple[int, int, dict[str, Any]]] = []
    if seen is None:
        seen = set()
    seen.add(head)
    counter = 0
    front = FRONT if met is not None else 0
    record = met if met is not None else {}
    lookup = shared.get
    ahead = pending if pending is not None else {}
    take = ahead.pop

    cur: dict[str, Any] | None = _fetch(head, shared, ahead, get)
    while cur is not None or heap:
        if cur is None:
            cur = heapq.heappop(heap)[2]
        if front:
            front -= 1
            record[cur["c"]] = cur
        yield cur
        parents: list[str] = cur.get("p") or []
        nxt: dict[str, Any] | None = None
        if len(parents) == 1 and not heap:  # the common linear case: _fetch() inlined
            p = parents[0]
            if p not in seen:
                seen.add(p)
                nxt = lookup(p)
                if nxt is None or "t" not in nxt:
                    nxt = take(p, None)
                    if nxt is None or "t" not in nxt:
                        if nxt is not None:  # a key line read before its commit's metadata: left for get
                            ahead[p] = nxt
                        nxt = get(p)
        else:
            for p in parents:
                if p in seen:
                    continue
                seen.add(p)
                pe = _fetch(p, shared, ahead, get)
                counter += 1
                heapq.heappush(heap, (-int(pe.get("ct", pe["t"])), counter, pe))
        cur = nxt


def _fetch(
    cid: str,
    shared: dict[str, dict[str, Any]],
    pending: dict[str, dict[str, Any]],
    get: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """A commit's entry for :func:`_by_commit_time`: whole from ``shared``, else whole from ``pending`` (taken
    out), else from ``get`` (a partial line of ``pending`` is left there for it)."""
    e = shared.get(cid)
    if e is None or "t" not in e:
        e = pending.pop(cid, None)
        if e is None or "t" not in e:
            if e is not None:
                pending[cid] = e
            e = get(cid)
    return e


def _line(e: dict[str, Any]) -> dict[str, Any]:
    """An entry as the index stores it (without the parsed keys kept in memory)."""
    return {k: v for k, v in e.items() if k != "_kp"}


#: How many of a walk's newest commits :meth:`History.save` writes again after lines it appends.
FRONT: Final = 64
#: A streaming walk that indexes commits saves them (to its spool) in batches of this many.
SAVE_BATCH: Final = 1000


class History:
    """One read session: the index plus the entries it had to compute (appended by :meth:`save`)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.idx = index_for(repo)
        self.loaded = False  # the index file is read on first use: resolving HEAD or an id never needs it
        self.new: dict[str, dict[str, Any]] = {}
        self.indexed = 0  # commits this session indexed (for indexing_progress): self.new is saved in batches
        self.starts: dict[str, None] = {}  # where walks began (branch heads, mostly): see save()
        self.front: list[str] = []  # the newest commits a walk met (at most FRONT), newest first: see save()
        self.met: dict[str, dict[str, Any]] = {}  # entries of the newest commits a stream met: see stream()
        self._spool: Spool | None = None  # see spool()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()
        if self._spool is not None:
            spool, self._spool = self._spool, None
            if spool.replay(self.idx):  # then the walk's newest commits and its start, complete, at the very end
                self.idx.append_lines(b"".join(orjson.dumps(e) + b"\n" for e in self._tail_lines()))

    def _load(self) -> None:
        if not self.loaded:
            self.idx.refresh()
            self.loaded = True

    def spool(self) -> None:
        """For a walk through a whole history (:meth:`stream`: the first ``log`` of a history made by plain
        git indexes every commit, ``log --json`` computes every commit's keys): each :meth:`save` until the
        session ends goes to a temporary file instead of the index, as whole entries, and the end of the session
        writes those batches to the index in the reverse order (rewriting the file without the lines they
        complete, see :meth:`Spool.replay`), so the index ends with the newest commits, each line complete (a
        later walk from the newest end meets each commit once, in order). Appending batch after batch while
        walking put the newest commits furthest from the end."""
        if self._spool is None:
            self._spool = Spool(self.idx.path.parent)

    def save(self) -> None:
        """Append the entries this session computed, in the reverse of the order they were met: a walk meets
        the newest commit first, and the file's end must hold the newest commits (readers start there)."""
        if self.new and self._spool is not None:
            self._spool.add(list(reversed(self.new.values())))
            self.new = {}
            return
        if self.new:
            items = list(reversed(self.new.values()))
            # The newest commits a walk met and its start, if the index already knew them, are now followed by
            # the older commits (or the keys) just computed: their lines are written again after them, so the
            # next `log -n 20` finds them in the last block, not the first.
            tail = self._tail()
            if tail and [it.get("c") for it in items[-len(tail) :] if "t" in it] != tail:
                items += self._tail_lines()
            self.new = {}
            self.idx.append(items)

    def _tail(self) -> list[str]:
        """The walk's newest commits (oldest of them first) and where it started: what the file's end must hold."""
        return [c for c in reversed(self.front) if c not in self.starts] + list(self.starts)

    def _tail_lines(self) -> list[dict[str, Any]]:
        """The lines of :meth:`_tail` this session knows whole (from the shared image or a stream)."""
        found = [self.idx.entries.get(c) or self.met.get(c) for c in self._tail()]
        return [_line(e) for e in found if e is not None and "t" in e]

    def entry(self, cid: str) -> dict[str, Any]:
        self._load()
        with self.idx.lock:
            found = self.idx.find(cid)
        if found is not None:
            return found
        return self._index_commit(cid, self.idx.entries.get(cid))

    def _index_commit(self, cid: str, e: dict[str, Any] | None, *, share: bool = True) -> dict[str, Any]:
        """The entry of a commit the index file does not have, made from the commit (queued for :meth:`save`);
        ``e``: a key supplement of it already read. ``share``: also put it in the shared image (a stream does
        not: it lets each entry go once yielded)."""
        fresh = meta_entry(self.repo, self.repo.commit_info(cid))
        if e is not None:  # a key supplement arrived before its metadata line: saved with it
            fresh.update({x: e[x] for x in ("k", "_kp") if x in e})
        self.new.setdefault(cid, {}).update(_line(fresh))
        self.indexed += 1
        report = _PROGRESS.get()
        if report is not None:
            report(self.indexed)
        if share:
            with self.idx.lock:
                self.idx.entries[cid] = fresh
        return fresh

    def keys(self, e: dict[str, Any]) -> list[list[Any]]:
        """The index form of the commit's changes, computed (and queued for appending) when missing."""
        k = parsed_keys(e)
        if k is not None:
            return k
        cid = e["c"]
        old_tree, new_tree = self._trees(e)
        changes: list[docdiff.Change] = []
        for doc in e.get("d", []):
            changes.extend(doc_changes(self.repo, doc, old_tree, new_tree))
        k = encode_changes(changes)
        e["k"] = keys_json(k)
        e["_kp"] = k
        if self._spool is not None and "t" in e:  # spooled lines are whole entries (see spool())
            self.new[cid] = _line(e)
        else:
            self.new.setdefault(cid, {"c": cid})["k"] = e["k"]
        return k

    def message(self, e: dict[str, Any]) -> str:
        m = e.get("m")
        return m if isinstance(m, str) else self.repo.commit_info(e["c"]).message

    def parents(self, cid: str) -> list[str]:
        return list(self.entry(cid).get("p", []))

    def walk(self, head: str | None) -> Iterator[dict[str, Any]]:
        """Entries of every commit reachable from ``head``, newest first by commit time (like ``git log``)."""
        if head is None:
            return iter(())
        self.starts[head] = None
        return _by_commit_time(head, self.idx.entries, self.entry)

    def stream(self, head: str | None, *, keys: bool = False) -> Iterator[dict[str, Any]]:
        """:meth:`walk` for a caller that goes through the whole history once (``gitstate log``, ``log --json``):
        the same entries in the same order, but what the shared image does not hold already is read into a
        buffer of this walk's own (:class:`~gitstate.history_stream.Backwards`) and let go once yielded, so
        memory follows one block of the index plus a set of commit ids, not every entry printed.

        ``keys``: the caller reads the entries' keys, so key lines met before their commit's metadata line are
        kept until the walk gets there (without it they are skipped: a plain ``log`` needs none)."""
        if head is None:
            return iter(())
        self._load()
        self.starts[head] = None
        # What the walk indexes (a history made by plain git) leaves memory in batches, through the spool, so
        # the file still ends with the newest commits; with ``keys`` the caller saves, once it read the keys.
        self.spool()
        seen: set[str] = set()  # the walk's: what the buffer may skip (see Backwards.asked)
        with self.idx.lock:
            shared, back = self.idx.entries, Backwards(self.idx.path, self.idx.low, keys=keys, asked=seen)

        def get(cid: str) -> dict[str, Any]:  # what neither the shared image nor the buffer holds whole
            found = back.take(cid)
            if found is not None:
                return found
            part = back.partial(cid)
            found = self._index_commit(cid, part if part is not None else shared.get(cid), share=False)
            if not keys and len(self.new) >= SAVE_BATCH:
                self.save()
            return found

        # The first entries are what save() may write again at the file's end (the shared image may not have
        # them). A generator, not a loop here: a whole log's walk takes no extra Python step per entry.
        return _by_commit_time(head, shared, get, self.met, seen, back.pending)

    def graph_lookup(self) -> Callable[[str], tuple[int, tuple[str, ...]]]:
        """``lookup(commit id) -> (commit time, parents)`` for :mod:`gitstate.ancestry`: from the index where
        it has the commit (its newest block is read first), else from the commit object. Never indexes."""
        self._load()
        with self.idx.lock:
            if not self.idx.entries:
                self.idx.load_older()
        entries = self.idx.entries
        commit_info = self.repo.commit_info

        def lookup(cid: str) -> tuple[int, tuple[str, ...]]:
            e = entries.get(cid)
            if e is not None and "t" in e:
                return int(e.get("ct", e["t"])), tuple(e.get("p") or ())
            info = commit_info(cid)
            return info.commit_time, info.parents

        return lookup

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
        ``/``, or in any document). Callers filter with a :class:`KeyProbe` first: it rules out nearly every
        commit without parsing its keys."""
        ambiguous: list[str] = []
        for it in self.keys(e):
            d = it[0]
            if doc is not None and not in_doc(d, doc):
                continue
            rel = relation(it[1], it[2], key)
            if rel == DEFINITE:
                return True
            if rel == AMBIGUOUS and d not in ambiguous:
                ambiguous.append(d)
        if ambiguous:
            old_tree, new_tree = self._trees(e)
            return any(doc_changes(self.repo, d, old_tree, new_tree, key) for d in ambiguous)
        return False

    def commit_changes(self, cid: str, doc: str | None, key: Key) -> list[docdiff.Change]:
        """The commit's changes against its first parent, optionally limited to ``doc`` and ``key``."""
        e = self.entry(cid)
        items = [it for it in self.keys(e) if doc is None or it[0] == doc]
        if not key:
            if all(len(it) == 5 for it in items):
                return [change_from_item(it) for it in items]
            docs = [d for d in e.get("d", []) if doc is None or d == doc]
            old_tree, new_tree = self._trees(e)
            out: list[docdiff.Change] = []
            for d in docs:
                out.extend(doc_changes(self.repo, d, old_tree, new_tree))
            return out
        rels = [(it, relation(it[1], it[2], key)) for it in items]
        hits = [(it, r) for it, r in rels if r != NONE]
        if all(r == DEFINITE and len(it) == 5 for it, r in hits):
            return [change_from_item(it) for it, _ in hits]
        old_tree, new_tree = self._trees(e)
        out = []
        for d in dict.fromkeys(it[0] for it, _ in hits):
            out.extend(doc_changes(self.repo, d, old_tree, new_tree, key))
        return out


# ===================================================================== recording
def record(
    repo: Repository,
    commit_id: str,
    *,
    actor: str,
    changes: Sequence[docdiff.Change | docdiff.KeyRun],
    docs: list[str] | None = None,
) -> None:
    """Add a commit gitstate just made to the history index (call with the repository lock held).

    ``changes`` are the commit's key-level changes against its first parent (with the counted rest of big
    mappings: see :func:`~gitstate.history_keys.encode_changes`); for merge commits they are recomputed lazily
    instead (against the first parent), whatever the caller passed. ``docs``: the paths the commit changed
    against its first parent, sorted, when the caller knows them (a flush does: comparing the two trees costs
    about half a millisecond at 10,000 files); else they are read from the trees.

    Example:
        >>> # called by the store after each commit: history.record(repo, cid, actor="library", changes=changes)
    """
    info = repo.commit_info(commit_id)
    parsed = messages.parse(info.message)
    entry = meta_entry(repo, info, parsed, docs)
    if parsed.trailer(messages.ACTOR_TRAILER) is None:
        entry["actor"] = actor
    if len(info.parents) <= 1:
        docs = entry["d"]
        entry["k"] = keys_json(encode_changes([c for c in changes if c.doc in docs or not c.doc]))
    entry["b"] = 1  # made on the branch by a store: the newest such entry is the branch's last known head
    index_for(repo).append([entry])


def indexed_commits(repo: Repository) -> tuple[list[str], list[str]]:
    """Commit ids the history index knows, newest line first: ``(branch, others)``. ``branch`` are the commits a
    store made on its branch (see :func:`record`), so the first one that still exists is the last head gitstate
    saw; ``others`` were indexed while walking (pulled, made by plain git, or a remote's). For ref recovery.
    """
    idx = _IndexFile(index_for(repo).path)  # read forwards: the entries in file order
    try:
        st = os.stat(idx.path)
        idx.ino = st.st_ino
        items = idx._read_new_lines(st.st_size)
        idx._merge(items)
    except FileNotFoundError:
        return [], []
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


def in_doc(path: str, doc: str) -> bool:
    """True if ``path`` is ``doc``, or lies under it when ``doc`` ends in ``/``."""
    return path == doc or (doc.endswith("/") and path.startswith(doc))
