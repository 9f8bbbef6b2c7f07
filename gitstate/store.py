"""The Store: the front door of gitstate. Documents, key operations, transactions, history, remotes, events.

What belongs here: the public API of :class:`Store` and :func:`open`/:func:`clone`, and the small internal
interface services use (:attr:`Store.services`, see :mod:`gitstate.services`). What does not: the in-memory
journal and views (``journal.py``), committing pending writes and the background flusher (``flusher.py``), hand
edits, recovery on open and commits made elsewhere (``ingest.py``), process exit (``lifecycle.py``), the
transaction view of migration steps and async blocks (``transactions.py``).

Writes land in memory at once and are recorded as *operations* in a journal; a background flusher turns the
journal into one commit per flush. Under the repository's inter-process lock it reads the branch head; if the
branch moved (another process, a human edit, a restore, a pull), the touched documents are reloaded from the new
head and the pending operations re-applied on top, so no process ever overwrites keys it did not write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import docdiff, lifecycle
from . import migrate as _migrate
from .codecs import Codecs
from .errors import DecodeError, GitBusy, SaveError, StoreNotFound
from .events import ExternalChange
from .flusher import oserror_text
from .ingest import Ingester, human_author
from .journal import DEFAULT_DEBOUNCE_MS, DEFAULT_MAX_DELAY_MS, Durability, PendingDocs
from .keys import ABSENT, parse_key, read_value
from .limits import DEFAULT_MAX_DOC_BYTES, default_max_doc_bytes
from .paths import META_PREFIX, validate_doc_path
from .repo import Repository

if TYPE_CHECKING:
    from .history import Commit, Snapshot, StateView
    from .retention import BudgetReport, ForgetPlan, Policy

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_MAX_DELAY_MS",
    "DEFAULT_MAX_DOC_BYTES",
    "META_PREFIX",
    "CommitId",
    "Store",
    "clone",
    "default_max_doc_bytes",
    "human_author",
    "open",
]

logger = logging.getLogger("gitstate.store")

_DEFAULT: Any = object()


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


def _default_path() -> str:
    path = os.environ.get("GITSTATE_DIR")
    if not path:
        raise StoreNotFound("no store path given and $GITSTATE_DIR is not set; pass a path or set GITSTATE_DIR")
    return path


class Store(Ingester):
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

    # ================================================================= opening (gitstate.open)
    def _boot(
        self, schema_version: int | None, *, handle_signals: bool, auto_pack: bool, auto_push: str | None, watch: bool
    ) -> None:
        """The second half of :func:`open`: recovery, the schema version, then the background threads."""
        try:
            loaded = self._load_on_open()
            _migrate.on_open(self, schema_version)
        except OSError as e:
            self._repo.close()
            raise SaveError(f"{self.path}: could not recover the store on open: {oserror_text(e)}") from e
        except BaseException:
            self._repo.close()
            raise
        self._emit(loaded)
        if handle_signals:
            lifecycle.install_signal_handlers()
        self._start()
        if auto_pack and not self.read_only:
            from .gc import BackgroundPacker

            packer = BackgroundPacker(self._repo, fsync=self._fsync)
            self._after_commit_hooks.append(packer.notify)
            self._background.append(packer)
            self._packer = packer
        if auto_push:
            from .remote import start_auto_push

            start_auto_push(self, auto_push)
        if watch:
            self.watch()

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
            return read_value(doc, self._load(doc), keyt, default, absent=ABSENT, no_default=_DEFAULT)

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
                if self._load(doc, encoded=True) is ABSENT:
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

    # ================================================================= writing
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
                self._dirty = PendingDocs((d, s) for d, s in self._dirty.items() if s <= mark)
                self._unpin_flushed()
                for doc in touched:
                    self._views.pop(doc, None)
                if not self._journal:
                    self._first_pending = None
                raise
            finally:
                self._tx_depth, self._tx_owner = 0, None
            self.flush(message, metadata=metadata)

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

    def restore(
        self, rev: str, docs: list[str] | None = None, message: str | None = None, *, actor: str = "restore"
    ) -> CommitId:
        """Make the documents (all, or ``docs``) equal to their content at ``rev``, as a NEW commit (actor
        ``restore``, or ``actor``: the CLI and the web view pass ``human``); history is never rewritten. A
        document absent at ``rev`` is removed. Pending writes are committed first. Returns the commit id, a
        :class:`CommitId` (a ``str``): the new commit with ``created`` True, or, if nothing differed, the current
        head with ``created`` False."""
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
            commit = self._commit_external([(files, subject)], actor=actor, expected_head=head)
        return CommitId(commit, created=True) if commit else CommitId(head or "", created=False)

    def undo(self, *, actor: str = "restore") -> CommitId:
        """Revert the last commit as a new commit (actor ``restore``, or ``actor``). Pending writes are committed
        first, so ``undo()`` reverts them. Returns a :class:`CommitId` like :meth:`restore`."""
        from . import history

        self._check_open()
        self.flush()
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            files, subject = history.undo_files(self._repo, head, actor)
            commit = self._commit_external([(files, subject)], actor=actor, expected_head=head)
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

    def snapshot_delete(self, name: str) -> str:
        """Delete snapshot ``name`` (its tag; the history it named stays on the branch); returns its commit id.
        See :func:`gitstate.snapshots.delete_snapshot`."""
        from . import snapshots

        self._check_open()
        return snapshots.delete_snapshot(self._repo, name)

    def snapshots_thin(self, prefix: str, keep_last: int, *, dry_run: bool = False) -> list[str]:
        """Keep only the ``keep_last`` newest snapshots named ``prefix...`` (e.g. ``"checkpoint-"``, 5); returns
        the names deleted, oldest first. Snapshots with other names are never touched."""
        from . import snapshots

        self._check_open()
        return snapshots.thin_snapshots_in(self._repo, prefix=prefix, keep_last=keep_last, dry_run=dry_run)

    # ================================================================= retention (retention.py)
    def forget(
        self, policy: Policy | None = None, *, dry_run: bool = False, include_unpushed: bool = False, **rules: Any
    ) -> ForgetPlan:
        """Thin history older than a window, restic-style; returns the :class:`~gitstate.retention.ForgetPlan`
        (what was kept and dropped). ``policy`` is a :class:`~gitstate.retention.Policy`, or give the rules as
        keywords (``keep_within="7d", daily=30, weekly=12, monthly=24``); with neither, the stored policy
        (:meth:`retention_policy`). Pending writes are committed first; commits inside the window keep their
        ids, so ``push``/``pull``/``sync`` go on without force. See :mod:`gitstate.retention`.

        Raises:
            RetentionError: no rules, unpushed commits older than the window (pass ``include_unpushed=True``).
        """
        from . import retention

        self._check_open()
        if rules:
            policy = retention.Policy(**rules)
        policy = policy or retention.load_policy(self.path)
        if policy is None:
            raise retention.RetentionError("no retention rules given and none stored (see Store.retention_policy)")
        self.flush()
        with self._flush_lock:
            return retention.forget(
                self._repo, policy, dry_run=dry_run, include_unpushed=include_unpushed, fsync=self._fsync
            )

    def retention_policy(self) -> Policy | None:
        """The :class:`~gitstate.retention.Policy` stored with the store (``.gitstate/retention.json``, committed
        so it travels with clones), or None."""
        from . import retention

        return retention.load_policy(self.path)

    def set_retention_policy(self, policy: Policy | None) -> str | None:
        """Store ``policy`` with the store (None removes it) as a commit; the background packer applies it.
        Returns the commit id (None when it was already stored)."""
        from . import retention

        self._check_open()
        data = None if policy is None else retention.policy_bytes(policy)
        subject = f"retention policy: {policy.describe()}" if policy is not None else "retention policy removed"
        return self._commit_external([({retention.POLICY_FILE: data}, subject)], actor=self.actor)

    def budget(self) -> BudgetReport:
        """The history's size against the stored policy's budget: a :class:`~gitstate.retention.BudgetReport`
        (size, growth per day, days left, a warning before the budget is reached)."""
        from . import retention

        return retention.budget_report(self._repo, retention.load_policy(self.path))

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
            self._journal, self._dirty, self._first_pending = [], PendingDocs(), None
            self._unpin_flushed()
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


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    durability: Durability = "debounced",
    debounce_ms: int = DEFAULT_DEBOUNCE_MS,
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
    author: str | None = None,
    actor: str = "library",
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
        actor: the ``Gitstate-Actor`` of this store's writes: ``"library"`` (default) for a program; the CLI
            passes ``"human"`` for commands typed at a terminal (with the user's git identity as ``author``).
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
        raise StoreNotFound(f"cannot create or open the store at {root}: {oserror_text(e)}") from e
    store = Store(
        repo,
        durability=durability,
        debounce_ms=debounce_ms,
        max_delay_ms=max_delay_ms,
        author=author,
        actor=actor,
        fsync=fsync,
        max_doc_bytes=max_doc_bytes if max_doc_bytes is not None else default_max_doc_bytes(),
        codecs=codecs,
    )
    for name, cb in (on or {}).items():
        store.on(name, cb)
    store._boot(schema_version, handle_signals=handle_signals, auto_pack=auto_pack, auto_push=auto_push, watch=watch)
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
