"""A store's directory used without opening a :class:`~gitstate.store.Store`: :func:`open_directory`.

Opening a Store recovers: it commits edits found on disk and starts its threads. Reading the history, showing
what is uncommitted, or managing the repository (packing, removing a remote) must not do that, and must start
fast: ``gitstate log`` reads only the refs and the history index. :class:`StoreDirectory` is that handle: reads
of history and status, plus the few management calls that leave the documents alone. The CLI's read-only
commands use it; a program can too.

What belongs here: thin, documented calls over the repository, :mod:`gitstate.history`, :mod:`gitstate.gc` and
:mod:`gitstate.remote` for code that has no Store. What does not: anything that writes documents or commits
(open a Store for that), and logic of its own beyond putting those calls together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import StoreNotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .docdiff import Change
    from .history import Commit, Snapshot, StateView
    from .quarantine import Quarantined
    from .repo import Repository
    from .retention import BudgetReport, ForgetPlan, Policy

__all__ = ["StoreDirectory", "git_operation_advice", "open_directory"]

_REMOTE_SECTION = re.compile(r'^\s*\[remote\s+"([^"]+)"\]', re.M)


def open_directory(path: str | os.PathLike[str]) -> StoreDirectory:
    """Open the store at ``path`` without opening a Store: nothing is recovered or committed, no thread starts.

    Raises:
        StoreNotFound: ``path`` is not a store.
        RepositoryError: its repository cannot be opened.

    Example:
        >>> import gitstate, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with gitstate.open(path, durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        >>> with open_directory(path) as d:
        ...     [e["actor"] for e in d.log_entries()]
        ['library']
    """
    from .repo import Repository

    root = Path(path)
    if not (root / ".git").is_dir():
        raise StoreNotFound(f"no gitstate store at {root.absolute()}")
    return StoreDirectory(Repository.open(root, create=False))


def git_operation_advice(operation: str) -> str:
    """How a user finishes or abandons a git ``operation`` (a value of :meth:`StoreDirectory.git_operation`)."""
    from .repo import git_operation_advice as advice

    return advice(operation)


class StoreDirectory:
    """A read-mostly handle on a store's directory (see :func:`open_directory`); close it, or use ``with``.

    Attributes:
        root: the store directory.
        branch: the store's branch.
    """

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self.root: Path = repo.root
        self.branch: str = repo.branch

    def __enter__(self) -> StoreDirectory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the repository. Idempotent."""
        self._repo.close()

    @property
    def head(self) -> str | None:
        """The branch's commit id as it is now (None before the first commit)."""
        return self._repo.head()

    # ----------------------------------------------------------------- history
    def log(
        self, doc: str | None = None, key: object = None, limit: int | None = None, rev: str | None = None
    ) -> list[Commit]:
        """Commits on the branch, newest first (as :meth:`Store.log <gitstate.store.Store.log>`); ``rev`` starts
        elsewhere, or is a range ``A..B`` (see :func:`gitstate.history.log`)."""
        from . import history

        return history.log(self._repo, self.head, doc=doc, key=_key(key), limit=limit, rev=rev)

    def log_entries(
        self, doc: str | None = None, key: object = None, limit: int | None = None, rev: str | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`log` as raw history-index entries (see :func:`gitstate.history.log_entries`), for code that
        formats thousands of commits; :meth:`commit_from_entry` and :meth:`commit_message` complete them."""
        from . import history

        return history.log_entries(self._repo, self.head, doc=doc, key=_key(key), limit=limit, rev=rev)

    def iter_log_entries(
        self,
        doc: str | None = None,
        key: object = None,
        limit: int | None = None,
        rev: str | None = None,
        *,
        keys: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`log_entries` one at a time, as the walk reaches them (see
        :func:`gitstate.history.iter_log_entries`): the first commits of a long history come out before the rest
        of its index is read. ``keys``: with each entry's changed keys (for ``log --json``)."""
        from . import history

        return history.iter_log_entries(self._repo, self.head, doc=doc, key=_key(key), limit=limit, rev=rev, keys=keys)

    def commit_from_entry(self, entry: dict[str, Any]) -> Commit:
        """The :class:`~gitstate.history.Commit` of one :meth:`log_entries` entry."""
        from .history import commit_from_entry

        return commit_from_entry(entry, self._repo)

    def commit_message(self, commit_id: str) -> str:
        """The full message of a commit (an index entry's ``m`` is None when it was too long to index)."""
        return self._repo.commit_info(commit_id).message

    def get_commit(self, rev: str) -> Commit:
        """The :class:`~gitstate.history.Commit` a revision names."""
        from . import history

        return history.get_commit(self._repo, rev)

    def resolve(self, rev: str) -> str:
        """The commit id a revision names (id or prefix, HEAD~N, snapshot name, time)."""
        from . import history

        return history.resolve(self._repo, rev)

    def at(self, rev: str) -> StateView:
        """A read-only view of the documents as of ``rev``."""
        from . import history

        return history.at(self._repo, rev)

    def diff(self, a: str = "HEAD~1", b: str = "HEAD", doc: str | None = None) -> list[Change]:
        """Key-level changes from revision ``a`` to ``b`` (as :meth:`Store.diff <gitstate.store.Store.diff>`)."""
        from . import history

        return history.diff(self._repo, a, b, doc=doc)

    def text_diff(self, a: str = "HEAD~1", b: str = "HEAD", doc: str | None = None) -> dict[str, str]:
        """Unified text diffs of the files from ``a`` to ``b``: path -> diff."""
        from . import history

        return history.text_diff(self._repo, a, b, doc=doc)

    def restore_preview(self, rev: str, docs: list[str] | None = None) -> tuple[str, list[Change]]:
        """What :meth:`Store.restore <gitstate.store.Store.restore>` would change: ``(target commit id,
        changes)``; nothing is written.

        Raises:
            StoreNotFound: the store has no commits yet.
            KeyNotFound: a document exists neither now nor at ``rev``.
        """
        from . import history

        target = history.resolve(self._repo, rev)
        head = self.head
        if head is None:
            raise StoreNotFound("the store has no commits yet")
        if not docs:
            return target, history.diff(self._repo, head, target)
        history.restore_files(self._repo, head, target, list(docs))  # unknown documents -> a clear error
        changes: list[Change] = []
        for d in docs:
            changes += history.diff(self._repo, head, target, doc=d)
        return target, changes

    def snapshots(self) -> list[Snapshot]:
        """Snapshots (tags), oldest first."""
        from . import history

        return history.snapshots(self._repo)

    # ----------------------------------------------------------------- status
    def uncommitted(self) -> list[dict[str, str]]:
        """Files edited but not committed, sorted: ``{"doc": path, "state": "new" | "modified" | "deleted"}``."""
        committed = self._repo.committed_listing(self.head)
        edits = self._repo.worktree_changes(None, ignored=self._repo.ignore_matcher(), committed=committed)
        return [
            {"doc": p, "state": "deleted" if data is None else "modified" if p in committed else "new"}
            for p, data in sorted(edits.items())
        ]

    def git_operation(self) -> str | None:
        """The git operation in progress in the store (``merge``, ``rebase``...; see
        :func:`git_operation_advice`), or None."""
        return self._repo.git_operation_in_progress()

    # ----------------------------------------------------------------- remotes
    def remote_names(self) -> list[str]:
        """Names of the configured remotes, sorted (read from the config file, without loading the remote
        code)."""
        try:
            text = (self._repo.git_dir / "config").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return sorted(set(_REMOTE_SECTION.findall(text)))

    def remotes(self) -> dict[str, str]:
        """Configured remotes: name -> URL (never with credentials)."""
        from . import remote

        return remote.list_remotes(self._repo)

    def tracking(self, remote: str) -> str | None:
        """The commit of the remote's branch as last fetched (its tracking ref), or None."""
        return self._repo.read_ref(f"refs/remotes/{remote}/{self.branch}")

    def push_status(self, remote: str | None = None) -> dict[str, dict[str, Any]]:
        """Push state per remote (see :func:`gitstate.remote.push_status`)."""
        from . import remote as remote_module

        return remote_module.push_status(self._repo, remote)

    def remotes_status(self) -> dict[str, dict[str, Any]]:
        """Per remote, as of the last fetch: ``fetched`` (bool), ``ahead`` and ``behind`` (commits), or ``error``
        (a tracking ref to an object that is missing), and ``push`` (:meth:`push_status`) when it is known."""
        from . import history

        names = self.remote_names()
        head = self.head
        tracking = self._repo.list_refs("refs/remotes/")
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            sha = tracking.get(f"refs/remotes/{name}/{self.branch}")
            info: dict[str, Any] = {"fetched": sha is not None}
            if sha is not None:
                try:
                    ahead, behind = history.ahead_behind(self._repo, head, sha)
                    info.update(ahead=ahead, behind=behind)
                except Exception as e:  # a tracking ref to an object we do not have
                    info["error"] = str(e)
            out[name] = info
        if names:
            try:  # the background push state: best effort, status shows the rest whatever happens here
                push = self.push_status(None)
                if isinstance(push, dict):
                    for name, state in push.items():
                        if name in out:
                            out[name]["push"] = state
            except Exception as e:
                import logging

                logging.getLogger("gitstate.direct").debug("push status unavailable: %s", e)
        return out

    # ----------------------------------------------------------------- management (documents untouched)
    def remote_remove(self, name: str) -> None:
        """Remove remote ``name``: configuration, stored credentials, tracking refs, push state.

        Raises:
            RemoteError: no such remote.
        """
        from . import remote

        remote.remove_remote(self._repo, name)

    def gc(
        self, *, progress: Callable[[str, int, int], None] | None = None, prune_grace_s: float | None = None
    ) -> dict[str, Any]:
        """Repack and prune (see :func:`gitstate.gc.collect`); its statistics."""
        from . import gc

        if prune_grace_s is None:
            return gc.collect(self._repo, progress=progress)
        return gc.collect(self._repo, progress=progress, prune_grace_s=prune_grace_s)

    def quarantined(self) -> list[Quarantined]:
        """Hand edits waiting in quarantine (did not parse or failed the gate), oldest first."""
        from .quarantine import Quarantine

        return Quarantine(self._repo.meta_dir).list()

    def quarantine_text(self, doc: str) -> bytes:
        """The bytes of ``doc``'s quarantined save.

        Raises:
            KeyError: ``doc`` is not in quarantine.
        """
        from .quarantine import Quarantine

        return Quarantine(self._repo.meta_dir).text(doc)

    def quarantine_drop(self, doc: str) -> bool:
        """Give up ``doc``'s quarantined edit: put the committed version back on disk (through the guarded
        writer, under the store's lock) and clear the entry. False when ``doc`` was not in quarantine.

        The committed version includes what programs wrote while the edit waited (they are committed, never
        written over the human's file)."""
        from . import worktree
        from .quarantine import Quarantine

        box = Quarantine(self._repo.meta_dir)
        if box.get(doc) is None:
            return False
        with self._repo.lock():
            head = self._repo.head()
            tree = self._repo.commit_info(head).tree if head else None
            data = self._repo.read_at(tree, doc) if tree else None
            worktree.apply(self.root, {doc: data}, what=f"to put {doc} back")
            box.clear(doc)
        return True

    def retention_policy(self) -> Policy | None:
        """The retention policy stored with the store (``.gitstate/retention.json``), or None."""
        if not (self.root / ".gitstate" / "retention.json").exists():
            return None  # the usual case, answered without importing retention (~4 ms of `gitstate status`)
        from . import retention

        return retention.load_policy(self.root)

    def budget(self) -> BudgetReport:
        """The history's size against the stored policy's budget (see :func:`gitstate.retention.budget_report`)."""
        from . import retention

        return retention.budget_report(self._repo, retention.load_policy(self.root))

    def forget(
        self,
        policy: Policy | None = None,
        *,
        dry_run: bool = False,
        include_unpushed: bool = False,
        now: float | None = None,
    ) -> ForgetPlan:
        """Thin history older than the policy's window (:func:`gitstate.retention.forget`); without ``policy``,
        the one stored with the store. The documents are left alone: only old history changes.

        Raises:
            RetentionError: no policy given or stored, unpushed commits in the way, or the branch moved.
        """
        from . import retention

        policy = policy or retention.load_policy(self.root)
        if policy is None:
            raise retention.RetentionError(
                "no retention rule given and none stored: pass e.g. --keep-within 7d --keep-daily 30 "
                f"(or save one with --save, in {retention.POLICY_FILE})"
            )
        return retention.forget(self._repo, policy, dry_run=dry_run, include_unpushed=include_unpushed, now=now)


def _key(key: object) -> Any:
    """A key as :mod:`gitstate.history` takes it (parts; None stays None), parsed as the Store parses keys."""
    from .keys import parse_key

    return parse_key(key) if key is not None else None
