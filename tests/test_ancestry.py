"""The one ancestry implementation (gitstate.ancestry): merge bases, is-ancestor, ahead/behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitstate import ancestry
from gitstate.repo import Repository

AUTHOR = "t <t@x>"
T0 = 1_700_000_000


def _commit(repo: Repository, parents: list[str], name: str, when: int) -> str:
    """A commit with ``parents`` (first one's tree as base) changing file ``name``, committed at ``when``."""
    first = parents[0] if parents else None
    return repo.commit_files(
        first,
        {f"{name}.txt": name.encode()},
        name,
        author=AUTHOR,
        extra_parents=tuple(parents[1:]),
        when=when,
        move_branch=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository.open(tmp_path / "r")
    yield r  # type: ignore[misc]
    r.close()


def test_linear_history(repo: Repository) -> None:
    with repo.lock():
        ids = [_commit(repo, [], "c0", T0)]
        for i in range(1, 300):
            ids.append(_commit(repo, [ids[-1]], f"c{i}", T0 + i))
    assert ancestry.is_ancestor(repo, ids[0], ids[-1])
    assert not ancestry.is_ancestor(repo, ids[-1], ids[0])
    assert ancestry.merge_base(repo, ids[10], ids[200]) == ids[10]
    assert ancestry.merge_bases(repo, ids[5], ids[5]) == [ids[5]]
    assert ancestry.ahead_behind(repo, ids[-1], ids[100]) == (199, 0)
    assert ancestry.ahead_behind(repo, ids[100], ids[-1]) == (0, 199)
    assert ancestry.count_commits(repo, ids[-1]) == 300


def test_criss_cross_has_two_merge_bases(repo: Repository) -> None:
    with repo.lock():
        root = _commit(repo, [], "root", T0)
        a1 = _commit(repo, [root], "a1", T0 + 10)
        b1 = _commit(repo, [root], "b1", T0 + 20)
        a2 = _commit(repo, [a1, b1], "a2", T0 + 30)  # merges b1 into a
        b2 = _commit(repo, [b1, a1], "b2", T0 + 40)  # merges a1 into b
    assert sorted(ancestry.merge_bases(repo, a2, b2)) == sorted([a1, b1])
    assert ancestry.merge_bases(repo, a2, b2)[0] == b1  # newest first
    assert ancestry.merge_base(repo, a2, b2) == b1
    assert not ancestry.is_ancestor(repo, a2, b2) and not ancestry.is_ancestor(repo, b2, a2)
    assert ancestry.ahead_behind(repo, a2, b2) == (1, 1)
    assert repo.merge_base(a2, b2) in (a1, b1)


def test_unrelated_histories(repo: Repository) -> None:
    with repo.lock():
        a = _commit(repo, [], "a", T0)
        a = _commit(repo, [a], "a1", T0 + 1)
        b = _commit(repo, [], "b", T0 + 2)
    assert ancestry.merge_bases(repo, a, b) == []
    assert ancestry.merge_base(repo, a, b) is None
    assert repo.merge_base(a, b) is None
    assert not ancestry.is_ancestor(repo, a, b)
    assert ancestry.ahead_behind(repo, a, b) == (2, 1)


def test_skewed_clocks_child_older_than_parent(repo: Repository) -> None:
    """A machine with its clock a year behind made commits on top of recent ones: answers must not change."""
    with repo.lock():
        base = _commit(repo, [], "base", T0)
        x = _commit(repo, [base], "x", T0 + 100)
        old1 = _commit(repo, [x], "old1", T0 - 365 * 86400)  # child older than its parent
        old2 = _commit(repo, [old1], "old2", T0 - 365 * 86400 + 1)
        side = _commit(repo, [x], "side", T0 + 200)
    assert ancestry.is_ancestor(repo, x, old2)
    assert repo.is_ancestor(x, old2)
    assert ancestry.merge_base(repo, old2, side) == x
    assert repo.merge_base(old2, side) == x
    assert ancestry.ahead_behind(repo, old2, side) == (2, 1)
    assert ancestry.merge_bases(repo, old2, x) == [x]


def test_skewed_clocks_redundant_base_is_dropped(repo: Repository) -> None:
    """The newest-looking common ancestor is an ancestor of the real merge base (whose clock is behind)."""
    with repo.lock():
        root = _commit(repo, [], "root", T0)
        ahead = _commit(repo, [root], "ahead", T0 + 10_000)  # a clock far ahead
        behind = _commit(repo, [ahead], "behind", T0 + 5)  # the true base, its clock behind
        # both sides merged the old commit again (git merge --no-ff of something already merged)
        left = _commit(repo, [behind, ahead], "left", T0 + 20_000)
        right = _commit(repo, [behind, ahead], "right", T0 + 20_001)
    assert ancestry.merge_bases(repo, left, right) == [behind]
    assert repo.merge_base(left, right) == behind


def test_dulwich_can_fast_forward_is_wrong_with_skew(repo: Repository) -> None:
    """Why gitstate.ancestry does not use dulwich.graph.can_fast_forward (kept as a tripwire: if dulwich fixes
    it, the module note can change)."""
    from dulwich.graph import can_fast_forward
    from dulwich.repo import Repo

    with repo.lock():
        base = _commit(repo, [], "base", T0 + 100)
        old = _commit(repo, [base], "old", T0)  # older than the ancestor asked about
        tip = _commit(repo, [old], "tip", T0 + 200)
    assert ancestry.is_ancestor(repo, base, tip)
    with Repo(str(repo.root)) as r:
        assert not can_fast_forward(r, base.encode(), tip.encode())


def test_tolerant_walk_survives_a_missing_commit(repo: Repository) -> None:
    repo.pack_writes = False  # each commit's objects as loose files, so that one commit can go missing alone
    with repo.lock():
        a = _commit(repo, [], "a", T0)
        b = _commit(repo, [a], "b", T0 + 1)
        c = _commit(repo, [b], "c", T0 + 2)
        d = _commit(repo, [c], "d", T0 + 3)
    repo.loose_path(b).unlink()
    repo = Repository.open(repo.root)  # no commit cached
    assert ancestry.is_ancestor(repo, c, d, tolerant=True)
    assert not ancestry.is_ancestor(repo, a, d, tolerant=True)  # the line ends at the missing commit
    assert not ancestry.is_ancestor(repo, c, d, tolerant=True, limit=1)  # undecided within the limit


def test_many_merges_ahead_behind(repo: Repository) -> None:
    with repo.lock():
        base = _commit(repo, [], "base", T0)
        left, right = base, base
        for i in range(20):
            left = _commit(repo, [left], f"l{i}", T0 + 2 * i + 1)
            right = _commit(repo, [right], f"r{i}", T0 + 2 * i + 2)
            if i % 5 == 4:
                left = _commit(repo, [left, right], f"m{i}", T0 + 2 * i + 2)
    assert ancestry.merge_base(repo, left, right) == right
    assert ancestry.is_ancestor(repo, right, left)
    assert ancestry.ahead_behind(repo, left, right) == (24, 0)
