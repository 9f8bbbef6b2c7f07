"""The flusher: committing a store's pending writes, by itself (debounce, max delay, retries) or on flush().

What belongs here: encoding the dirty documents, writing files and the commit under the repository lock,
failure back-off and reporting, holding writes while a git operation owns the work tree, the background thread
that flushes when writes are due and polls the branch head, and the deferred index repairs. What does not:
the journal and views (``journal.py``), hand edits and commits made elsewhere (``ingest.py``). A different
debounce rule is :meth:`Flusher._due_in`.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

from . import docdiff, messages, worktree
from . import migrate as _migrate
from .encoded import plain
from .errors import GitBusy, GitStateError, SaveError, StoreClosed
from .events import Committed, Event, GitOperationInProgress, SaveErrorEvent
from .gcpause import gc_paused
from .journal import CommittedVersion, DocumentJournal, PendingDocs, changes_of
from .keys import ABSENT
from .limits import too_big
from .repo import blob_id, git_operation_advice
from .repo_packs import DEFLATE_AHEAD_BYTES, Deflating

__all__ = ["Flusher", "oserror_text"]

#: Documents bigger than this are always written canonically (nobody lays out megabytes by hand).
_LAYOUT_MAX_BYTES: Final = 1 << 20

logger = logging.getLogger("gitstate.store")

HEAD_POLL_S: Final = 0.5
MAX_RETRY_DELAY_S: Final = 30.0
#: While git is busy in the store (a merge...), the flusher looks again this often to resume soon after.
GIT_BUSY_POLL_S: Final = 0.2


def oserror_text(e: OSError) -> str:
    """An OS error as a message, with what to do about the usual ones (disk full, read-only...)."""
    hint = {
        errno.ENOSPC: "the disk is full; free space and the next flush retries",
        errno.EDQUOT: "the disk quota is exceeded; free space and the next flush retries",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied; check the store directory's permissions",
        errno.EPERM: "operation not permitted; check the store directory's permissions",
    }.get(e.errno or 0)
    base = f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
    return f"{base}: {hint}" if hint else base


class Flusher(DocumentJournal):
    """Committing pending writes (part of :class:`~gitstate.store.Store`; see the module docstring)."""

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
                    f"{self.path}: could not save {self.pending} pending write(s): {oserror_text(e)}",
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
                Committed(commit=commit, actor=self.actor, docs=sorted(changes), message=message_out, duration_ms=ms)
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
        as a failure: the flusher looks again every :data:`GIT_BUSY_POLL_S` and resumes by itself."""
        op = self._check_git_busy()
        if op is None:
            return
        self._retry_at = time.monotonic() + GIT_BUSY_POLL_S
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
        self._retry_at = time.monotonic() + min(MAX_RETRY_DELAY_S, 0.25 * 2 ** min(self._failures_in_row, 8))
        logger.error("%s", err)
        self._emit(SaveErrorEvent(error=err, pending=self.pending))

    def _flush_locked(
        self, message: str | None, metadata: Mapping[str, str] | None
    ) -> tuple[str | None, dict[str, bytes | None], list[Event], str, dict[str, Exception]]:
        try:
            return self._flush_under_repo_lock(message, metadata)
        finally:
            with self._lock:
                self._in_flight.clear()
                self._encoded_ids.clear()
                self._deflating.clear()

    def _flush_under_repo_lock(
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
                with gc_paused():  # a big document's diff builds a change per key, none in a cycle
                    files, described, failed = self._encode_dirty(list(self._dirty))
            # Outside _lock: readers and writers go on while we talk to the disk.
            if files:
                human_events = self._take_unsaved_human_edits(files)
                for doc in [d for d in files if d in self._oversized]:  # never overwrite a file nobody read
                    del files[doc]
                    failed[doc] = too_big(doc, self._oversized[doc], self.max_doc_bytes, "on disk is")
                if human_events:
                    events += human_events
                    with self._lock:  # the branch moved under a hand edit: encode and describe again
                        with gc_paused():
                            files, described, failed_again = self._encode_dirty(list(files))
                        failed.update(failed_again)
            commit = None
            if files:
                changes = [c for doc in files for c in described[doc]]
                listed = [c for c in changes if isinstance(c, docdiff.Change)]  # the runs come after these
                counted = sum(len(c.keys) for c in changes if isinstance(c, docdiff.KeyRun))
                msg = messages.change_message(message, listed, self.actor, metadata, more=counted)
                # A quarantined document's file is the human's broken save: committed, never written over.
                keep = self._quarantined_docs() & files.keys()
                commit = self._commit(
                    files,
                    msg,
                    author=self.author,
                    actor=self.actor,
                    changes=changes,
                    parent=self._head,
                    keep=keep,
                    differ=True,  # _encode_dirty kept only documents whose bytes differ from the head's
                )
            with self._lock:
                if commit is not None:
                    self._head = commit
                    self._head_tree = self._repo.commit_info(commit).tree
                    self._ref_stamp = self._repo.ref_stamp()
                # The writes of a document that could not be encoded stay pending (and are reported).
                self._journal = [op for op in self._journal if op.seq > seq_hi or op.doc in failed]
                self._dirty = PendingDocs((d, s) for d, s in self._dirty.items() if s > seq_hi or d in failed)
                self._unpin_flushed()
                # Writes that arrived during this flush start their own max-delay clock.
                self._first_pending = self._journal[0].t if self._journal else None
        return commit, files, events, msg, failed

    def _encode_dirty(
        self, docs: list[str]
    ) -> tuple[dict[str, bytes | None], dict[str, list[docdiff.Change | docdiff.KeyRun]], dict[str, Exception]]:
        """Canonical bytes of the documents whose content differs from the head, their changes (past the budget
        of a big mapping, counted runs of keys: no object per key), and the documents that could not be encoded
        (with why: an encoder fault, a document over ``max_doc_bytes``), which the flush leaves pending so that
        one bad document never holds back the others. ``_lock`` held.

        The committed version is the value this store committed last when it still is the head's
        (:meth:`_committed_version`): a flush after a flush neither reads nor decodes it again."""
        files: dict[str, bytes | None] = {}
        described: dict[str, list[docdiff.Change | docdiff.KeyRun]] = {}
        failed: dict[str, Exception] = {}
        for doc in docs:
            try:
                view = self._load(doc, encoded=True)  # a document set whole and kept encoded commits its bytes
                codec = self._codecs.for_doc(doc)
                old = self._committed_version(doc, codec)
                data = None if view is ABSENT else self._encode_keeping_layout(codec, view, old)
                if data is not None and len(data) > self.max_doc_bytes:
                    raise too_big(doc, len(data), self.max_doc_bytes, "would be")
                sha = None if data is None else blob_id(data)
                if sha == old.id:
                    continue
                if (
                    data is not None
                    and sha is not None
                    and len(data) >= DEFLATE_AHEAD_BYTES
                    and self._repo.writes_packs(fsync=self._fsync)  # loose objects compress their own way
                ):
                    self._deflating[sha] = Deflating(data)  # compressed while the changes are described
                # No copies of the changed values: the view stays in flight (writes copy it before changing it,
                # see _unshare) until this flush is over, and the committed version is never changed in place.
                runs: list[docdiff.KeyRun] = []
                listed = changes_of(codec, doc, old.value, docdiff.MISSING if view is ABSENT else view, runs=runs)
                self._in_flight[doc] = view
            except Exception as e:  # an encoder fault or a value that slipped past normalize()
                logger.debug("cannot encode %s", doc, exc_info=True)
                failed[doc] = e
                continue
            files[doc] = data
            described[doc] = [*listed, *runs]  # where quick_diff would have listed the runs' changes
            if data is not None and sha is not None:
                self._remember_base(doc, sha, view, len(data))
                self._encoded_ids[doc] = (data, sha)
        return files, described, failed

    def _encode_keeping_layout(self, codec: Any, value: Any, old: CommittedVersion) -> bytes:
        """The bytes of ``value``: canonical when the committed version is canonical (the fast path: what the
        store itself wrote), else through ``codec.encode_over`` so a human's comments, blank lines, quoting and
        key order survive a program write (only the changed entries are re-rendered)."""
        if old.id is None or old.value is docdiff.MISSING or not codec.structured or old.size > _LAYOUT_MAX_BYTES:
            canonical: bytes = codec.encode(value)  # nothing to keep, or too big to have been laid out by hand
            return canonical
        if self._layout_is_canonical(codec, old):
            data: bytes = codec.encode(value)
        else:
            data = codec.encode_over(plain(value), old.data())
            self._remember_layout(blob_id(data), canonical=data == codec.encode(value))
            return data
        self._remember_layout(blob_id(data), canonical=True)
        return data

    def _layout_is_canonical(self, codec: Any, old: CommittedVersion) -> bool:
        assert old.id is not None
        known = self._canonical_blobs.get(old.id)
        if known is None:
            known = codec.encode(old.value) == old.data()
            self._remember_layout(old.id, canonical=known)
        return known

    def _remember_layout(self, blob: str, *, canonical: bool) -> None:
        self._canonical_blobs[blob] = canonical
        self._canonical_blobs.move_to_end(blob)
        if len(self._canonical_blobs) > 4096:
            self._canonical_blobs.popitem(last=False)

    def _commit(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        author: str,
        actor: str,
        changes: Sequence[docdiff.Change | docdiff.KeyRun],
        parent: str | None,
        extra_parents: tuple[str, ...] = (),
        stats: Mapping[str, os.stat_result | None] | None = None,
        keep: AbstractSet[str] = frozenset(),
        differ: bool = False,
    ) -> str:
        """Write work-tree files, then the commit, move the branch, sync the index and record the change keys.
        Call with the repository lock held and ``parent`` equal to the branch head.

        With ``stats`` the files are NOT written: their content is already on disk (a human's edit, recovered
        state) and the given stats go into the index (None: unknown, Git re-reads the file). The files of
        ``keep`` (quarantined documents) are committed but not written: the index records no stat for them, so
        git sees that the file on disk differs from the commit. ``differ``: every document of ``files`` differs
        from ``parent``'s (a flush's), so they are the commit's changed paths and the history index takes them
        as they are instead of comparing the two trees."""
        ids = {doc: self._blob_id_of(doc, data) for doc, data in files.items() if data is not None}
        if stats is None:
            written = {doc: data for doc, data in files.items() if doc not in keep}
            self._written.update((doc, ids[doc]) for doc in written if doc in ids)
            # Written before the commit (a process killed between the two leaves the newer file, which open
            # commits as recovered state) but not fsynced: the commit below is the durable record, and a file
            # that a power loss takes back to one of the store's own earlier versions is put back from HEAD on
            # open (Ingester._stale_own_writes). 4 fsyncs per commit instead of 6. Big files are written in a
            # thread while the objects are compressed and hashed; the branch moves only once they are written.
            writing = worktree.start_apply(self.path, written, fsync=False)
            stats = dict.fromkeys(keep) if keep else None
        else:
            writing = None
        try:
            commit = self._repo.commit_files(
                parent,
                dict(files),
                message,
                author=author,
                extra_parents=extra_parents,
                fsync=self._fsync,
                ids=ids,
                deflated=self._deflating,
                before_move=None if writing is None else writing.wait,
            )
        finally:
            if writing is not None:
                writing.join()
        # The branch has moved: from here on nothing may fail the flush (the writes ARE committed); the index
        # and the key index are caches that are rebuilt when they fall behind.
        try:
            tree = self._repo.commit_info(commit).tree
            self._repo.sync_index(tree, {doc: ids.get(doc) for doc in files}, stats=stats, defer=True)
        except (OSError, GitStateError) as e:
            self._repo.index_fell_behind()
            logger.warning("committed %s but could not update the Git index (%s); it is rebuilt later", commit, e)
        self._record(commit, actor, changes, docs=sorted(files) if differ and not extra_parents else None)
        for doc in files:
            self._written.pop(doc, None)
        return commit

    def _blob_id_of(self, doc: str, data: bytes) -> str:
        """The blob id of ``data``, taken from the encode that made these very bytes when it did (hashing a 10 MB
        document twice costs 15 ms)."""
        known = self._encoded_ids.pop(doc, None)
        return known[1] if known is not None and known[0] is data else blob_id(data)

    def _quarantined_docs(self) -> builtins.set[str]:
        """The documents waiting in quarantine (one directory listing; the ingester owns the quarantine)."""
        box: Any = getattr(self, "_box", None)
        return box.docs() if box is not None else set()

    def _record(
        self,
        commit: str,
        actor: str,
        changes: Sequence[docdiff.Change | docdiff.KeyRun],
        *,
        docs: list[str] | None = None,
    ) -> None:
        try:
            from . import history

            with gc_paused():
                history.record(self._repo, commit, actor=actor, changes=changes, docs=docs)
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
        next_poll = time.monotonic() + HEAD_POLL_S
        while not self._stop.is_set():
            with self._cv:
                now = time.monotonic()
                due = self._due_in(now)
                wait = min(due if due is not None else HEAD_POLL_S, max(0.0, next_poll - now))
                # close() sets _stop, then notifies under _cv: checking _stop here, under _cv, cannot miss it.
                if wait > 0 and not self._stop.is_set():
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
                    self._retry_at = time.monotonic() + MAX_RETRY_DELAY_S
            if now >= next_poll:
                next_poll = now + (GIT_BUSY_POLL_S if self._git_busy else HEAD_POLL_S)
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
