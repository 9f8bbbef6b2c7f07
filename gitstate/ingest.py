"""Commits of content made outside the journal: hand edits, crash recovery on open, restore/undo/migration steps.

What belongs here: reading work-tree files safely (size limit, no symlinks, a stat the index may keep),
quarantining edits that do not parse, :meth:`Ingester.ingest` (hand edits merged key by key with pending
writes), committing file contents made elsewhere (:meth:`Ingester._commit_external`, what
``store.services.commit_external`` runs), moving the branch to a pulled commit, and recovery on open. What does
not: the library's own flushes (``flusher.py``), the journal (``journal.py``), watching files (``watcher.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import getpass
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Final

from . import docdiff, merging, messages, worktree
from . import migrate as _migrate
from . import recovery as _recovery
from .errors import DecodeError, EncodeError, GitBusy, GitStateError, InvalidPath, RepositoryError
from .events import Committed, Event, ExternalChange, InvalidEdit, Loaded, QuarantineCleared
from .flusher import Flusher
from .journal import changes_of, safe_decode
from .limits import too_big
from .paths import SCHEMA_DOC, check_no_symlinks, validate_doc_path
from .quarantine import Quarantine, Quarantined
from .repo import EMPTY_TREE, blob_id
from .services import NO_EXPECTED_HEAD

__all__ = ["Ingester", "human_author"]

#: Library commits at the branch tip looked through for a work-tree file that a power loss took back.
_STALE_WALK: Final = 20

logger = logging.getLogger("gitstate.store")


def human_author() -> str:
    """``user <user@host>`` for commits of human edits."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user} <{user}@{socket.gethostname() or 'localhost'}>"


class Ingester(Flusher):
    """Commits of content made elsewhere (part of :class:`~gitstate.store.Store`; see the module docstring)."""

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
                if sha is not None and self._repo.stat_matches(doc, sha, st):
                    return None
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                st = os.fstat(fd)
                if st.st_size > self.max_doc_bytes:
                    self._oversized[doc] = st.st_size
                    logger.warning("%s; not read or committed", too_big(doc, st.st_size, self.max_doc_bytes))
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

    @functools.cached_property
    def _box(self) -> Quarantine:
        """This store's quarantine (``.git/gitstate/quarantine/``)."""
        return Quarantine(self._repo.meta_dir, fsync=self._fsync)

    def _keep_aside(
        self, doc: str, data: bytes, error: DecodeError, waiting: builtins.set[str], *, log_level: int = logging.INFO
    ) -> InvalidEdit | None:
        """Quarantine a save of ``doc`` that does not pass the gate, made against the committed version; None when
        that very save is already waiting (it is reported once, not on every flush)."""
        if doc in waiting:
            with contextlib.suppress(KeyError, OSError):
                if self._box.text(doc) == data:
                    return None
        committed = self._committed_bytes(doc)
        entry = self._box.put(doc, data, error, None if committed is None else blob_id(committed))
        waiting.add(doc)
        logger.log(
            log_level,
            "%s does not parse (%s); kept as saved (copy in %s), programs' writes are committed without touching "
            "the file, and the last good version is served: fix the file, or see 'gitstate quarantine'",
            doc,
            error,
            entry.saved,
        )
        return InvalidEdit(
            doc=doc, error=error.problem, line=error.line, column=error.column, quarantined_to=str(entry.saved)
        )

    def quarantined(self) -> list[Quarantined]:
        """Hand edits waiting in quarantine (they did not parse or failed the gate), oldest first.

        While a document waits, program writes to it are committed against the last good version and the file
        on disk is left as the human saved it; reads serve the program's view. A save that parses clears it
        (merged key by key with what was committed meanwhile), so does :meth:`quarantine_drop`.
        """
        return self._box.list()

    def quarantine_text(self, doc: str) -> bytes:
        """The bytes of ``doc``'s quarantined save (what the human saved).

        Raises:
            KeyError: ``doc`` is not in quarantine.
        """
        return self._box.text(doc)

    def quarantine_drop(self, doc: str) -> bool:
        """Give up ``doc``'s quarantined edit: put the committed version (the last good one, with what programs
        wrote since) back on disk and clear the entry. False when ``doc`` was not in quarantine. Emits
        ``quarantine_cleared`` with ``dropped=True``."""
        self._check_open()
        if self._box.get(doc) is None:
            return False
        self._raise_if_git_busy()
        with self._flush_lock, self._repo.lock():
            head = self._repo.head()
            with self._lock:
                if head != self._head:
                    self._emit(self._advance_to(head, source="process"))
            data = self._committed_bytes(doc)
            worktree.apply(self.path, {doc: data}, fsync=self._fsync, what=f"to put {doc} back")
            if self._head_tree is not None:
                self._repo.sync_index(self._head_tree, {doc: None if data is None else blob_id(data)})
            self._box.clear(doc)
        self._emit(QuarantineCleared(doc=doc, commit=None, dropped=True))
        return True

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
            reads = self._unsaved_edits(valid)
            events += self._ingest_locked(reads, reason=None)
            events += self._clear_saved_back([doc for doc in valid if doc not in reads])
            for doc in valid:
                if doc in self._oversized:
                    err = too_big(doc, self._oversized[doc], self.max_doc_bytes)
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
        A save that does not pass the gate is quarantined instead; a save that clears a quarantine is merged with
        what was committed while it waited (:meth:`_merge_fixed_save`). Repository lock and ``_flush_lock``
        held."""
        events: list[Event] = []
        waiting = self._box.docs() if reads else set()
        valid: dict[str, tuple[bytes | None, os.stat_result | None, Any, Any]] = {}
        cleared: dict[str, list[docdiff.Change]] = {}  # quarantined documents this edit clears -> merged keys
        rewrite: dict[str, bytes] = {}  # fixed saves merged with programs' writes: written back to disk
        for doc, (data, st) in reads.items():
            committed = self._committed_bytes(doc)
            if data == committed:
                if doc in waiting:
                    cleared[doc] = []  # saved back to the committed version: nothing to commit
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
                    ev = self._keep_aside(doc, data, err, waiting)  # logged at INFO: reported by invalid_edit
                    if ev is not None:
                        events.append(ev)
                    continue
            base = docdiff.MISSING if committed is None else safe_decode(codec, committed, doc)
            if doc in waiting:
                theirs, merged, kept = self._merge_fixed_save(doc, data, theirs, base)
                cleared[doc] = kept
                if merged is not None and merged != data:
                    rewrite[doc] = merged
                    data, st = merged, None
            valid[doc] = (data, st, base, theirs)
        commit = self._commit_human_edit(valid, rewrite, reason, events) if valid else None
        for doc, kept in sorted(cleared.items()):
            self._box.clear(doc)
            events.append(QuarantineCleared(doc=doc, commit=commit if doc in valid else None, merged=kept))
            logger.info("%s parses again; its quarantine is cleared", doc)
        return events

    def _clear_saved_back(self, docs: Iterable[str]) -> list[Event]:
        """Clear the quarantine of those of ``docs`` (files found equal to the committed version) that wait:
        the human saved the committed version back. Repository lock held."""
        waiting = self._box.docs()
        events: list[Event] = []
        for doc in docs:
            if doc in waiting:
                self._box.clear(doc)
                events.append(QuarantineCleared(doc=doc))
                logger.info("%s is back to its committed version; its quarantine is cleared", doc)
        return events

    def _merge_fixed_save(self, doc: str, data: bytes | None, theirs: Any, ours: Any) -> tuple[Any, bytes | None, Any]:
        """A quarantined document was saved in a form that parses: merge it, key by key, with what programs
        committed while it waited (``ours``), against the version the broken edit was made on (the entry's
        ``base``); the human wins on a key both changed. Returns the merged value, its bytes laid out over the
        human's file (None when the human's save is the merge), and the programs' changes kept."""
        entry = self._box.get(doc)
        codec = self._codecs.for_doc(doc)
        base: Any = docdiff.MISSING
        if entry is not None and entry.base is not None:
            try:
                base = safe_decode(codec, self._repo.read_blob(entry.base), doc)
            except (KeyError, RepositoryError, OSError):
                base = ours  # the base is gone (history thinned): the human's save stands as saved
        if data is None or theirs is docdiff.MISSING or ours is docdiff.MISSING or not codec.structured or ours == base:
            return theirs, None, []
        value = merging.merge3(base, ours, theirs, prefer="theirs").value
        if value == theirs:
            return theirs, None, []
        kept = changes_of(codec, doc, theirs, value)
        return value, codec.encode_over(value, data), kept

    def _commit_human_edit(
        self,
        valid: Mapping[str, tuple[bytes | None, os.stat_result | None, Any, Any]],
        rewrite: Mapping[str, bytes],
        reason: str | None,
        events: list[Event],
    ) -> str:
        """Commit ``valid`` (doc -> data, stat, committed value, human's value) as one human edit, rebasing this
        store's pending writes on it; ``rewrite`` are the merged fixed saves written back first. Appends the
        events; returns the commit."""
        all_changes: list[docdiff.Change] = []
        per_doc: dict[str, tuple[list[docdiff.Change], list[merging.Conflict]]] = {}
        extra: list[str] = []
        layout_only: list[str] = []
        with self._lock:
            for doc, (_, _, base, theirs) in valid.items():
                changes = changes_of(self._codecs.for_doc(doc), doc, base, theirs)
                lost = self._rebase_pending_on(doc, base, theirs)
                per_doc[doc] = (changes, lost)
                all_changes += changes
                if not changes:  # the bytes changed, the values did not: comments, blank lines, layout
                    layout_only.append(doc)
                extra += [
                    f"overrode pending library value of {doc}: {docdiff.format_key(c.key)} = "
                    f"{docdiff.format_value(c.ours)}"
                    for c in lost
                ]
        extra += [f"{doc}: fixed after quarantine, merged with the writes committed meanwhile" for doc in rewrite]
        if reason:
            extra.append(f"({reason})")
        subject = None
        if layout_only:
            if all_changes:
                extra = [messages.formatting_line(doc) for doc in layout_only] + extra
            else:
                subject = messages.formatting_line(", ".join(layout_only))
        msg = messages.change_message(subject, all_changes, "human", extra_lines=extra)
        if rewrite:
            worktree.apply(self.path, dict(rewrite), fsync=self._fsync, what="to write a merged fixed save")
        commit = self._commit(
            {doc: v[0] for doc, v in valid.items()},
            msg,
            author=human_author(),
            actor="human",
            changes=all_changes,
            parent=self._head,
            stats={doc: v[1] for doc, v in valid.items() if doc not in rewrite},
        )
        with self._lock:
            self._advance_to(commit, source="human", rebase=False)
            self._ref_stamp = self._repo.ref_stamp()
        events.append(Committed(commit=commit, actor="human", docs=sorted(valid), message=msg))
        for doc, (changes, lost) in per_doc.items():
            events.append(ExternalChange(docs=[doc], changes=changes, overwritten=lost, source="human", commit=commit))
        return commit

    def _commit_external(
        self,
        steps: list[tuple[Mapping[str, bytes | None], str]],
        *,
        actor: str,
        author: str | None = None,
        expected_head: Any = NO_EXPECTED_HEAD,
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
            if expected_head is not NO_EXPECTED_HEAD and head != expected_head:
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
                full = message if messages.has_actor(message) else messages.change_message(message, changes, actor)
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
            keep = self._box.docs() & all_files.keys()  # broken saves are never written over
            written = {d: b for d, b in all_files.items() if d not in keep}
            worktree.apply(self.path, written, fsync=self._fsync, what=f"the {actor} commit")
            self._repo.update_ref(self._repo.branch_ref, parent, head, fsync=self._fsync)
            assert tree is not None
            try:  # the branch has moved: the index is a cache from here on
                ids = {d: None if b is None else blob_id(b) for d, b in all_files.items()}
                self._repo.sync_index(tree, ids, stats=dict.fromkeys(keep))
            except OSError as e:
                self._repo.index_fell_behind()
                logger.warning("committed %s but could not update the Git index (%s); it is rebuilt later", parent, e)
            for cid, changes, _ in commits:
                self._record(cid, actor, changes)
            with self._lock:
                ev = self._advance_to(parent, source=actor, rebase=False)
                self._ref_stamp = self._repo.ref_stamp()
            if SCHEMA_DOC in all_files:
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
            old = docdiff.MISSING if old_b is None else safe_decode(codec, old_b, doc)
            new = docdiff.MISSING if data is None else safe_decode(codec, data, doc)
            changes.extend(changes_of(codec, doc, old, new))
        return changes

    def _checkout(self, new_head: str, *, expected_head: str | None, actor: str) -> None:
        """Move the branch to ``new_head`` (a fast-forward or a merge commit already written), updating the
        work tree and index for the changed paths. Repository lock and ``_flush_lock`` held."""
        assert self._repo.holds_lock()
        old_tree = self._repo.commit_info(expected_head).tree if expected_head else None
        new_tree = self._repo.commit_info(new_head).tree
        keep = self._box.docs()  # broken saves are never written over
        changed = worktree.checkout(self._repo, old_tree, new_tree, fsync=self._fsync, what=f"the {actor}", keep=keep)
        self._repo.update_ref(self._repo.branch_ref, new_head, expected_head, fsync=self._fsync)
        self._repo.sync_index(new_tree, changed, stats=dict.fromkeys(keep & changed.keys()))
        with self._lock:
            ev = self._advance_to(new_head, source=actor, rebase=False)
            self._ref_stamp = self._repo.ref_stamp()
        self._emit(ev)

    # ================================================================= recovery on open
    def _load_on_open(self) -> Loaded:
        """Recover on open (or, while git is busy in the store, only read the head); a store that cannot be
        locked (read-only mount, another user's files) is opened read-only."""
        try:
            busy = self._repo.git_operation_in_progress()
            return self._recover() if busy is None else self._open_during_git_operation(busy)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            logger.warning("%s is not writable (%s); opened read-only", self.path, e.strerror)
            self.read_only = True
            head = self._repo.head()
            self._head, self._head_tree = head, self._repo.commit_info(head).tree if head else None
            self._ref_stamp = self._repo.ref_stamp()
            return Loaded(head=head)

    def _recover(self) -> Loaded:
        """Bring the store to a clean state on open: stale locks removed, files changed on disk committed as
        recovered state, files that do not parse quarantined (the last committed version is served)."""
        recovered: dict[str, bytes | None] = {}
        quarantined: dict[str, str] = {}
        fixed: dict[str, tuple[bytes | None, os.stat_result | None]] = {}  # quarantined, parse now
        late: list[Event] = []
        waiting = self._box.docs()
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
            self._head, self._head_tree = head, tree  # the last good versions quarantined saves are made against
            for doc, size in sorted(oversized.items()):
                logger.warning("%s; not read or committed", too_big(doc, size, self.max_doc_bytes))
                self._oversized[doc] = size
                quarantined[doc] = str(self.path / doc)  # its content stays where it is, uncommitted
            stale = self._stale_own_writes(head, changes)
            if stale and tree is not None:
                worktree.apply(self.path, {d: self._repo.read_at(tree, d) for d in stale}, fsync=self._fsync)
                logger.warning(
                    "%s: put back %s from the last commit (the files showed an earlier version this store wrote, "
                    "as after a power loss)",
                    self.path,
                    ", ".join(sorted(stale)),
                )
                changes = {d: c for d, c in changes.items() if d not in stale}
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
                        if self._keep_aside(doc, data, err, waiting, log_level=logging.WARNING) is None:
                            logger.warning(
                                "%s still does not parse (%s) and waits in quarantine: fix the file, or see "
                                "'gitstate quarantine'",
                                doc,
                                err,
                            )
                        entry = self._box.get(doc)
                        quarantined[doc] = str(entry.saved) if entry else str(self.path / doc)
                        continue
                if doc in waiting:
                    fixed[doc] = (data, None)  # merged with what was committed meanwhile, below
                    continue
                recovered[doc] = data
            if recovered:
                described = self._describe_between(self._head_tree, recovered)
                what = "adopted existing files" if head is None else "recovered changes found on disk at open"
                changed_docs = {c.doc for c in described}
                layout = [messages.formatting_line(d) for d in sorted(recovered) if d not in changed_docs]
                msg = messages.change_message(what, described, "human", extra_lines=layout if head else None)
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
            if waiting:
                late = self._ingest_locked(fixed, reason="fixed before this open") if fixed else []
                late += self._clear_saved_back(d for d in waiting if d not in changes and d not in oversized)
        for ev in late:
            self._emit(ev)
        return Loaded(
            head=self._head,
            recovered=sorted(recovered.keys() | fixed.keys()),
            quarantined=quarantined,
            repaired=[repaired.describe()] if repaired else [],
        )

    def _stale_own_writes(self, head: str | None, changes: Mapping[str, bytes | None]) -> builtins.set[str]:
        """Documents of ``changes`` (work-tree files that differ from ``head``) whose file is an older version this
        store wrote itself: flushes write files without fsync before the commit that is their durable record, so
        a power loss can take a file back to the version before one of the last library commits (a rename not
        yet on disk). Such a file equals the document before a library commit that changed it, along the run of
        library commits at the tip of the branch, and was not modified after ``head`` was committed (a hand
        edit back to an old version is newer than that; for a missing file, its directory's time counts)."""
        out: builtins.set[str] = set()
        if head is None or not changes:
            return out
        tip = cur = self._repo.commit_info(head)
        for _ in range(_STALE_WALK):
            if messages.actor(cur.message) != messages.LIBRARY or not cur.parents:
                break
            parent = self._repo.commit_info(cur.parents[0])
            changed = self._repo.changed_paths(parent.tree, cur.tree)
            for doc in changes.keys() & changed.keys() - out:
                data = changes[doc]
                if changed[doc][0] == (None if data is None else blob_id(data)):
                    out.add(doc)
            cur = parent
        for doc in sorted(out):
            path = self.path / doc
            try:
                mtime = os.lstat(path if changes[doc] is not None else path.parent).st_mtime
            except OSError:
                mtime = 0.0
            if mtime > tip.commit_time + 1:
                out.discard(doc)
        return out

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
