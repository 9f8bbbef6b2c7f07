"""Ancestry of commits: merge bases, "is A an ancestor of B", ahead/behind counts. The one implementation.

What belongs here: questions about the commit graph answered by walking parents (remote push/pull, the repository's
``is_ancestor``/``merge_base``, the branch repair's "did the branch go back"). What does not: log ordering (the
history index, ``history_index.py``), moving refs (``repo.py``), anything that reads trees.

A caller that holds the history index (:mod:`gitstate.history_index`: every indexed commit's parents and commit
time) passes a ``lookup`` reading it, so the walk reads no commit object the index already knows.

One rule about commit times: they only order a walk (newest first, so it can stop early); an answer never depends
on them being right. Machines' clocks disagree, and a child may be older than its parent.

gitstate keeps its own paint-down walk instead of ``dulwich.graph``: measured with benchmarks/bench_ancestry.py,
``find_merge_base`` fed from the same commit cache is ~4x slower (it rescans its queue at every step), dulwich
exposes no per-side flags for ahead/behind counts, and its ``can_fast_forward`` drops every commit older than the
supposed ancestor, wrong when clocks are skewed (tests/test_ancestry.py keeps that as a tripwire).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .errors import RepositoryError, RevisionNotFound

if TYPE_CHECKING:
    from .repo import Repository

__all__ = ["Lookup", "ahead_behind", "count_commits", "is_ancestor", "merge_base", "merge_bases"]

#: Commits one comparison may visit before it gives up (a guard against a corrupt, cyclic-looking graph).
_WALK_LIMIT: Final = 2_000_000
_SIDE_A: Final = 1
_SIDE_B: Final = 2
_BOTH: Final = 3
_STALE: Final = 4


def count_commits(repo: Repository, start: str, *, limit: int = 1_000_000) -> int:
    """How many commits are reachable from ``start`` (itself included), counting at most ``limit``."""
    seen = {start}
    stack = [start]
    while stack and len(seen) < limit:
        for p in repo.commit_info(stack.pop()).parents:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return len(seen)


#: ``lookup(commit id) -> (commit time, parents)``: where a walk reads the graph from.
Lookup = Callable[[str], tuple[int, tuple[str, ...]]]


def _lookup(repo: Repository, tolerant: bool) -> Lookup:
    """(commit time, parents) of a commit; ``tolerant``: an unreadable commit is a root at time 0."""

    def lookup(sha: str) -> tuple[int, tuple[str, ...]]:
        try:
            info = repo.commit_info(sha)
        except (RepositoryError, RevisionNotFound):
            if not tolerant:
                raise
            return 0, ()
        return info.commit_time, info.parents

    return lookup


def _paint(
    repo: Repository,
    a: str,
    b: str,
    *,
    tolerant: bool = False,
    limit: int = _WALK_LIMIT,
    lookup: Lookup | None = None,
) -> tuple[dict[str, int], list[str]] | None:
    """git's paint-down: walk from ``a`` (flag 1) and ``b`` (flag 2), newest first, until only common history
    (flags 1|2, then marked stale) is left in the queue. Returns every visited commit's flags and the common
    commits found first on each line (merge-base candidates, possibly redundant when clocks are skewed). A commit
    whose flags grow after it was visited is queued again, so a skewed clock costs time, never a wrong flag. The
    cost follows how far the two sides diverged, not history's length. None if ``tolerant`` and over ``limit``."""
    lookup = lookup or _lookup(repo, tolerant)
    flags: dict[str, int] = {a: _SIDE_A}
    flags[b] = flags.get(b, 0) | _SIDE_B
    heap: list[tuple[int, int, str]] = []
    queued: set[str] = set()
    live = 0  # queued commits not yet stale: the walk ends when none is left
    for start in dict.fromkeys((a, b)):
        heapq.heappush(heap, (-lookup(start)[0], len(queued), start))
        queued.add(start)
        live += 1
    bases: list[str] = []
    counter = len(queued)
    while heap and live:
        c = heapq.heappop(heap)[2]
        queued.discard(c)
        f = flags[c]
        if not f & _STALE:
            live -= 1
            if f & _BOTH == _BOTH:
                bases.append(c)
                f |= _STALE
                flags[c] = f
        for p in lookup(c)[1]:
            pf = flags.get(p, 0)
            if pf | f == pf:
                continue
            flags[p] = pf | f
            if p in queued:
                live -= 1 if f & _STALE and not pf & _STALE else 0
                continue
            counter += 1
            heapq.heappush(heap, (-lookup(p)[0], counter, p))
            queued.add(p)
            live += 0 if flags[p] & _STALE else 1
        if len(flags) > limit:
            if tolerant:
                return None
            raise RepositoryError("history too large to compare")
    return flags, bases


def merge_bases(repo: Repository, a: str, b: str) -> list[str]:
    """Every best common ancestor of ``a`` and ``b`` (none an ancestor of another), newest first by commit time
    (then by id); two or more after criss-cross merges, none for unrelated histories."""
    if a == b:
        return [a]
    painted = _paint(repo, a, b)
    assert painted is not None
    bases = painted[1]
    if len(bases) > 1:  # with skewed clocks an ancestor of another base can be reached first
        bases = [x for x in bases if not any(y != x and is_ancestor(repo, x, y) for y in bases)]
    return sorted(bases, key=lambda c: (-repo.commit_info(c).commit_time, c))


def merge_base(repo: Repository, a: str, b: str) -> str | None:
    """The best common ancestor of ``a`` and ``b`` (the newest of :func:`merge_bases`), or None if unrelated."""
    bases = merge_bases(repo, a, b)
    return bases[0] if bases else None


def is_ancestor(repo: Repository, ancestor: str, descendant: str, *, tolerant: bool = False, limit: int = 0) -> bool:
    """True if ``ancestor`` is reachable from ``descendant`` through parents (or is it).

    ``tolerant``: unreadable commits end their line instead of raising (the branch repair walks a possibly
    damaged history); with ``limit`` (> 0) at most that many commits are visited, and an undecided walk is False."""
    if ancestor == descendant:
        return True
    painted = _paint(repo, ancestor, descendant, tolerant=tolerant, limit=limit or _WALK_LIMIT)
    return painted is not None and bool(painted[0][ancestor] & _SIDE_B)


def ahead_behind(
    repo: Repository, local: str | None, remote: str | None, *, lookup: Lookup | None = None
) -> tuple[int, int]:
    """(commits reachable from ``local`` only, commits reachable from ``remote`` only); a side that is None or
    whose commit is not here counts as empty. The cost follows how far the two diverged, not history's length.
    ``lookup`` reads the graph (the history index's, say) instead of the commit objects."""
    if local == remote:
        return 0, 0
    if remote is None or not repo.has_object(remote):
        return (count_commits(repo, local) if local else 0), 0
    if local is None:
        return 0, count_commits(repo, remote)
    painted = _paint(repo, local, remote, lookup=lookup)
    assert painted is not None
    flags = painted[0]
    ahead = sum(1 for f in flags.values() if f & _BOTH == _SIDE_A)
    behind = sum(1 for f in flags.values() if f & _BOTH == _SIDE_B)
    return ahead, behind
