"""The store's branch ref, checked and repaired: history is never silently replaced.

A branch ref that is empty, garbage, missing or points at a missing commit must not be read as "no commits
yet" (the next flush would start a new root commit, and the branch would lose its history), nor as an older
commit that ``packed-refs`` still names (the newer commits would drop out of the branch). :func:`diagnose`
tells such a fault apart from a fresh repository and finds the last good commit; the store calls
:func:`repair` on open (under its lock), ``gitstate doctor`` reports the diagnosis without changing anything.

Where the last good commit comes from, best first: the ref's reflog (``.git/logs/refs/heads/main``), the history
index's newest commit made on the branch (``.git/gitstate/history-index-v1.jsonl``), ``packed-refs``, then any
other commit the history index knows. A candidate counts only if its commit object exists and reads back.

What belongs here: :class:`BranchFault`, :func:`diagnose` and :func:`repair`: telling a damaged branch ref from a
fresh repository and choosing the commit to put back. What does not: the ref compare-and-swap and reflog
(:mod:`gitstate.repo`), the history index (:mod:`gitstate.history_index`), when repair runs (on open,
:mod:`gitstate.ingest`), reporting it (:mod:`gitstate.doctor`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from .ancestry import is_ancestor
from .errors import RepositoryError
from .repo import BrokenRef, Repository

__all__ = ["BranchFault", "diagnose", "repair"]

logger = logging.getLogger("gitstate.recovery")

#: Commits walked back from the last recorded head to tell whether the branch went back (bounds the cost).
_MAX_WALK: Final = 2000


@dataclass(frozen=True)
class BranchFault:
    """What is wrong with the branch ref, and the commit it should point at.

    Attributes:
        ref: the branch ref (``refs/heads/main``).
        problem: what was found, e.g. ``.git/refs/heads/main is empty``.
        good: the last good commit, or None when none is known (the store then refuses to open).
        source: where ``good`` was found (``reflog``, ``history index``, ``packed-refs``).
        fix: what to do by hand when ``good`` is None.
    """

    ref: str
    problem: str
    good: str | None = None
    source: str | None = None
    fix: str | None = None

    def describe(self) -> str:
        """One line: the problem and what repairing it does."""
        if self.good is None:
            return f"{self.problem}; no good commit is known"
        return f"{self.problem}; the last good commit is {self.good} (from the {self.source})"


def diagnose(repo: Repository) -> BranchFault | None:
    """The fault of the store's branch ref, or None when it is sound (or the repository is fresh). Reads only."""
    from . import history

    ref = repo.branch_ref
    try:
        head = repo.head()
    except BrokenRef as e:
        return _fault(repo, ref, f".git/{ref} {e.problem}", bad=None)
    if head is not None and not repo.is_commit(head):
        if not repo.object_present(head):
            return _fault(repo, ref, f"{ref} points at {head}, which is missing", bad=head)
        # The commit is there but damaged: getting the object back (from a remote, a backup) loses nothing, so
        # moving the branch off it is left to a human.
        fault = _fault(repo, ref, f"{ref} points at {head}, a damaged commit object", bad=head)
        back = f"; or set the branch to the last good commit: git -C {repo.root} update-ref {ref} {fault.good}"
        return BranchFault(
            ref,
            fault.problem,
            fix=(
                f"get the object back from a remote or a backup (copy {repo.loose_path(head)} from a clone)"
                + (back if fault.good else "")
                + " (the files in the store are kept, and committed when it next opens)"
            ),
        )
    branch_ids, _ = history.indexed_commits(repo)
    if head is None:
        if not repo.has_history():
            return None  # a fresh repository: the first commit is a root commit
        others = sorted(r for r in repo.list_refs("refs/heads/") if r != ref)
        if others:  # HEAD itself may be what is damaged: which branch is the store's is for a human to say
            return BranchFault(
                ref,
                f"HEAD names {ref}, which does not exist, but the repository has {', '.join(others)}",
                fix=(
                    f"if HEAD is wrong: git -C {repo.root} symbolic-ref HEAD {others[0]}; if the branch was lost: "
                    f"git -C {repo.root} update-ref {ref} COMMIT"
                ),
            )
        if not (branch_ids or repo.reflog_ids(ref)):
            return None  # refs of another kind only (tags, remote-tracking): nothing says this branch existed
        return _fault(repo, ref, f"{ref} does not exist, but the history index knows its commits", bad=None)
    if not repo.ref_file_exists(ref):
        # Packed only: after `git gc`/`git pack-refs` the packed value IS the head, so a newer commit this store
        # made on the branch that descends from it means the loose ref holding the newer head was lost.
        newest = next((c for c in branch_ids if c == head or repo.is_commit(c)), None)
        if newest is not None and newest != head and is_ancestor(repo, head, newest, tolerant=True, limit=_MAX_WALK):
            return BranchFault(
                ref,
                f".git/{ref} is missing and packed-refs names an older commit {head}",
                good=newest,
                source="history index",
            )
    return None


def _fault(repo: Repository, ref: str, problem: str, *, bad: str | None) -> BranchFault:
    from . import history

    branch_ids, other_ids = history.indexed_commits(repo)
    packed = repo.packed_refs().get(ref)
    candidates = [
        *((c, "reflog") for c in repo.reflog_ids(ref)),
        *((c, "history index") for c in branch_ids),
        *(((packed, "packed-refs"),) if packed else ()),
        *((c, "history index") for c in other_ids),
    ]
    tried: set[str] = set()
    for cid, source in candidates:
        if cid == bad or cid in tried:
            continue
        tried.add(cid)
        if repo.is_commit(cid):
            return BranchFault(ref, problem, good=cid, source=source)
    return BranchFault(
        ref,
        problem,
        fix=(
            f"find the newest commit (git -C {repo.root} fsck --lost-found lists unreferenced ones) and set the "
            f"branch to it: git -C {repo.root} update-ref {ref} COMMIT; or restore the store from a remote "
            "(gitstate clone URL DIR)"
        ),
    )


def repair(repo: Repository) -> BranchFault | None:
    """Check the branch ref and repair it from the last good commit; call with the repository lock held.

    Returns the fault that was repaired (None when the ref was sound).

    Raises:
        RepositoryError: the ref is damaged and no good commit is known; the message says how to fix it by hand.
            The store refuses to open rather than start a new root commit over the existing history.
    """
    fault = diagnose(repo)
    if fault is None:
        return None
    if fault.good is None:
        raise RepositoryError(f"{repo.root}: {fault.problem}; gitstate will not start a new history: {fault.fix}")
    repo.update_ref(fault.ref, fault.good, None, force=True)
    logger.warning("%s: %s; the branch was repaired to point at it", repo.root, fault.describe())
    return fault
