"""History: log, key-level audit, diff, point-in-time reads, restore, undo and snapshots.

Everything here reads the Git history through :class:`~gitstate.repo.Repository`; the store calls in for
``log``/``diff``/``at``/``restore``/``undo``/``snapshot`` and records each commit it makes with :func:`record`.

What belongs here: the public history API (:class:`Commit`, :class:`StateView`, ``log``, ``diff``, ``at``,
restore, undo, snapshots). What does not: the history index (:mod:`gitstate.history_index`) and revision syntax
(:mod:`gitstate.revisions`), whose public names are re-exported here.

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
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import messages
from .codecs import copy_value, registry_for
from .errors import GitStateError, KeyNotFound, RevisionNotFound
from .gcpause import gc_paused
from .keys import MISSING_KEY, Key, get_in, parse_key
from .paths import validate_doc_path
from .repo import EMPTY_TREE, Repository
from .worktree import check_trees

if TYPE_CHECKING:  # imported where used: `gitstate log` never diffs
    from . import docdiff

from .history_index import (
    FRONT,
    META_PREFIX,
    History,
    KeyProbe,
    aware,
    decode,
    decode_bytes,
    doc_changes,
    in_doc,
    index_for,
    indexed_commits,
    indexing_progress,
    meta_entry,
    parsed_keys,
    record,
    value_at,
)
from .revisions import BeforeHistory, check_snapshot_name, parse_time, resolve, split_range

__all__ = [
    "BeforeHistory",
    "Commit",
    "Snapshot",
    "StateView",
    "ahead_behind",
    "at",
    "commit_from_entry",
    "diff",
    "get_commit",
    "indexed_commits",
    "indexing_progress",
    "iter_log_entries",
    "log",
    "log_entries",
    "parse_time",
    "record",
    "resolve",
    "restore_files",
    "snapshot",
    "snapshots",
    "split_range",
    "text_diff",
    "undo_files",
]

logger = logging.getLogger("gitstate.history")

_RAISE: Any = object()


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
            self._time = aware(self.timestamp, self.tz_offset_s)
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
            k = parsed_keys(self._entry) if self._entry is not None else None
            if k is None and self._repo is not None:
                with History(self._repo) as hist:
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
        return messages.trailer(self.message, name)

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
            with History(self._repo) as hist:
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
        self.time = aware(info.time, info.tz_offset_s)

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
        value = decode(self._repo, blob, doc)
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
            p for p in self._repo.list_blobs(self._tree) if p.startswith(prefix) and not p.startswith(META_PREFIX)
        )


# ===================================================================== log
def log(
    repo: Repository,
    head: str | None,
    *,
    doc: str | None = None,
    key: Key | None = None,
    limit: int | None = None,
    rev: str | None = None,
) -> list[Commit]:
    """Commits reachable from ``head``, newest first (like ``git log``).

    Args:
        repo: the repository.
        head: the commit to start from (the branch head); None gives ``[]``.
        doc: only commits that changed this document (a path ending in ``/`` matches every document under it).
        key: only commits that changed the value at this key (in ``doc``, or in any document).
        limit: at most this many commits.
        rev: start from this revision instead of ``head``; a range ``A..B`` gives the commits reachable from
            ``B`` and not from ``A`` (``git log A..B``: what happened since ``A``).

    Raises:
        KeyNotFound: ``doc`` or ``key`` was given and no commit in the history ever changed it (not raised for a
            range, which may well be empty).
        RevisionNotFound: ``rev`` names nothing.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "b", 2)
        ...     [c.subject for c in store.log(key="a")]
        ['state.json: created']
    """
    entries = log_entries(repo, head, doc=doc, key=key, limit=limit, rev=rev)
    from_entry = Commit._from_entry
    with gc_paused():
        return [from_entry(e, repo) for e in entries]


def log_entries(
    repo: Repository,
    head: str | None,
    *,
    doc: str | None = None,
    key: Key | None = None,
    limit: int | None = None,
    rev: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`log` as raw history-index entries, for code that formats thousands of commits (the CLI's ``log``).

    Same arguments, order and errors as :func:`log`. Each entry is a read-only dict: ``c`` (id), ``t`` (author
    time, epoch seconds), ``z`` (UTC offset in seconds, absent when 0), ``a`` (author), ``m`` (the message, or None
    when it is too long to index: use :func:`commit_from_entry`), ``actor``, ``d`` (changed documents) and ``p``
    (parents). :func:`commit_from_entry` turns one into a :class:`Commit`. :func:`iter_log_entries` gives the same
    entries one at a time.

    Example:
        >>> import gitstate, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with gitstate.open(path, durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        >>> repo = Repository.open(path, create=False)
        >>> [(e["actor"], e["d"]) for e in log_entries(repo, repo.head())]
        [('library', ['state.json'])]
    """
    if limit is None and rev is None and doc is None and not key:
        # The whole history: its index in one read (not in growing blocks), the walk's entries straight into
        # the list (no generator step per commit).
        idx = index_for(repo)
        idx.refresh()
        idx.load_all()
        out: list[dict[str, Any]] = []
        with History(repo) as hist, gc_paused():
            for start in _walk_starts(repo, head, rev):
                out.extend(hist.walk(start))
        return out
    return list(iter_log_entries(repo, head, doc=doc, key=key, limit=limit, rev=rev))


def iter_log_entries(
    repo: Repository,
    head: str | None,
    *,
    doc: str | None = None,
    key: Key | None = None,
    limit: int | None = None,
    rev: str | None = None,
    keys: bool = False,
) -> Iterator[dict[str, Any]]:
    """:func:`log_entries` as a generator: each entry is yielded as soon as the walk reaches it, and the history
    index is read from its newest end only as far as the walk goes, so the first commits of a long history come
    out before the rest is read and memory follows what the caller keeps. :class:`~gitstate.errors.KeyNotFound`
    (a ``doc`` or ``key`` no commit changed) is raised at the end, when nothing matched.

    ``keys``: each entry comes with its changed keys (``log --json``), computed where the index has none (a
    history made by plain git). A walk without a limit spools them (:meth:`History.spool`) and appends them when
    it ends, newest commits last and each line whole, so the index's end still holds the newest commits.

    Example:
        >>> import gitstate, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with gitstate.open(path, durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     store.set("state.json", "a", 2)
        >>> repo = Repository.open(path, create=False)
        >>> next(iter_log_entries(repo, repo.head()))["m"].splitlines()[0]
        'state.json: a 1 -> 2'
    """
    if limit is not None and limit <= 0:
        return
    keyt: Key = tuple(key) if key else ()
    found = 0
    probe = KeyProbe(keyt) if keyt else None
    head, hidden = _log_span(repo, head, rev)
    starts = _walk_starts(repo, head, rev)
    with History(repo) as hist, gc_paused():
        # A walk without a limit streams: entries the index's shared image does not hold are read into the walk's
        # own buffer and let go once yielded, so memory follows what the caller keeps, not the length of history.
        # A limited walk reads into the shared image (a long-lived process asks for the newest commits again).
        need_keys = keys or probe is not None
        spooling = need_keys and limit is None  # keys computed for a whole history: see History.spool
        if spooling:
            hist.spool()

        def walk(start: str | None) -> Iterator[dict[str, Any]]:
            return hist.stream(start, keys=need_keys) if limit is None else hist.walk(start)

        excluded = {e["c"] for e in hist.stream(hidden)} if hidden else set()
        unfiltered = not excluded and doc is None and probe is None
        may_match = probe.may_match if probe is not None else None
        for start in starts:
            if unfiltered and limit is None and not keys:  # the whole log: no Python step per entry here
                yield from walk(start)
                continue
            for e in walk(start):
                if len(hist.new) >= _KEYS_BATCH:  # computed entries leave memory in batches
                    hist.save()
                # For a key, nearly every commit fails may_match. A call from this loop, not filter(may_match, ...):
                # a call from C into Python took more instruction-cache misses than the loop's steps saved.
                if may_match is not None and not may_match(e):
                    continue
                if not unfiltered and (
                    (excluded and e["c"] in excluded) or not _entry_matches(hist, e, doc, keyt, probe)
                ):
                    continue
                found += 1
                if unfiltered and len(hist.front) < FRONT:  # the branch's newest commits, not a filter's
                    hist.front.append(e["c"])
                if keys:
                    hist.keys(e)
                yield e
                if keys:  # the caller has read them: the parsed form is not kept for every commit of the walk
                    e.pop("_kp", None)
                if limit is not None and found >= limit:
                    return
    if not found and head is not None and rev is None and (doc is not None or keyt):
        what = "no commit changed this key" if keyt else "no commit touched this document"
        raise KeyNotFound(doc or "*", keyt, f"{what} in the history of {repo.branch}")


#: Entries whose keys ``iter_log_entries(keys=True)`` computes before it appends them to the index.
_KEYS_BATCH = 1000


def _walk_starts(repo: Repository, head: str | None, rev: str | None) -> list[str | None]:
    """Where a log walks from: ``head``, then, after a forget cut the branch's history (and with no ``rev``),
    the newest kept point."""
    return [head, *(_kept_tip(repo) if rev is None and head is not None else [])]


def _kept_tip(repo: Repository) -> list[str]:
    """The newest point ``gitstate forget`` kept, when the branch's history was cut (else nothing)."""
    if not repo.shallow():
        return []
    from .retention import KEPT_REF

    tip = repo.read_ref(KEPT_REF)
    return [tip] if tip else []


def _entry_matches(hist: History, e: dict[str, Any], doc: str | None, keyt: Key, probe: KeyProbe | None) -> bool:
    """Whether a log entry passes the ``doc`` and ``key`` filters of :func:`log_entries`."""
    if doc is not None:
        docs = e.get("d") or ()
        if doc.endswith("/"):
            if not any(d.startswith(doc) for d in docs):
                return False
        elif doc not in docs:
            return False
    return probe is None or (probe.may_match(e) and hist.key_changed(e, doc, keyt))


def _log_span(repo: Repository, head: str | None, rev: str | None) -> tuple[str | None, str | None]:
    """Where a log starts and the commit whose ancestors it leaves out (None: none), for ``rev`` (see :func:`log`)."""
    if rev is None:
        return head, None
    ends = split_range(rev)
    if ends is None:
        return resolve(repo, rev), None
    try:
        hidden: str | None = resolve(repo, ends[0])
    except BeforeHistory:  # `log yesterday..` on a store made today: everything
        hidden = None
    return resolve(repo, ends[1]), hidden


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
    e = index_for(repo).find_recent(cid)
    if e is None:
        e = meta_entry(repo, repo.commit_info(cid))
    return Commit._from_entry(e, repo)


def _diff_ends(a: str, b: str) -> tuple[str, str]:
    """The two revisions of a diff: ``a`` and ``b``, or the ends of a range given as ``a`` (``b`` left at HEAD)."""
    ends = split_range(a)
    if ends is None:
        return a, b
    if b != "HEAD":
        raise RevisionNotFound(f"{a} {b}", "give a range A..B or two revisions A B, not both")
    return ends


def _tree_of(repo: Repository, rev: str) -> str | None:
    """The tree a revision names; None (the empty state) for a moment before the first commit."""
    try:
        return repo.commit_info(resolve(repo, rev)).tree
    except BeforeHistory:
        return None


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
        out.extend(doc_changes(repo, path, ta, tb))
    return out


def _changed_between(
    repo: Repository, a: str, b: str, doc: str | None
) -> tuple[str | None, str | None, dict[str, tuple[str | None, str | None]]]:
    """The trees of revisions ``a`` and ``b`` and, sorted by path, the blob ids (None where absent) of the
    files that differ between them (only ``doc``, or the documents under a ``doc`` ending in ``/``, if given)."""
    a, b = _diff_ends(a, b)
    ta, tb = _tree_of(repo, a), _tree_of(repo, b)
    if doc is not None and not doc.endswith("/"):
        validate_doc_path(doc)
        if (ta is None or repo.blob_id_at(ta, doc) is None) and (tb is None or repo.blob_id_at(tb, doc) is None):
            raise KeyNotFound(doc, (), f"no such document at {a} or {b}")
    changed = repo.changed_paths(ta, tb)
    return ta, tb, {p: changed[p] for p in sorted(changed) if doc is None or in_doc(p, doc)}


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


def _undo_target(hist: History, head: str) -> dict[str, Any] | None:
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

    if head is None:
        raise GitStateError("nothing to undo: the store has no commits yet")
    with History(repo) as hist:
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
    lines = messages.summarize(changes, max_lines=50)
    trailers = [(messages.ACTOR_TRAILER, actor), (messages.UNDO_TRAILER, cid)]
    return files, messages.build(f"undo {cid[:8]}: {subject}", lines, trailers)


def _doc_changes_bytes(repo: Repository, doc: str, tree: str, data: bytes | None) -> list[docdiff.Change]:
    """Key-level changes that replacing ``doc`` at ``tree`` with ``data`` (None: removing it) makes."""
    from . import docdiff

    new = docdiff.MISSING if data is None else decode_bytes(data, doc, registry_for(repo).for_doc(doc))
    return docdiff.diff(value_at(repo, tree, doc), new, doc=doc)


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
    check_snapshot_name(name)
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
    if local is not None and remote is not None and local != remote and repo.has_object(remote):
        from .ancestry import ahead_behind as paint_ahead_behind

        with History(repo) as hist:  # a paint-down from both ends: it costs how far they diverged
            return paint_ahead_behind(repo, local, remote, lookup=hist.graph_lookup())
    with History(repo) as hist:
        mine = {e["c"] for e in hist.walk(local)}
        theirs = {e["c"] for e in hist.walk(remote)}
    return len(mine - theirs), len(theirs - mine)
