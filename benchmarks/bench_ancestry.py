"""Ancestry benchmark: the old walks (remote's paint-down, repo's full-history merge base and DFS) against
gitstate.ancestry (dulwich.graph.find_merge_base fed from the commit cache), in one run.

Fixture (in a temp dir, built through the repository layer): a linear history of N commits, and two branches
of 50 commits each forked from its tip. Measured (median of warm runs, commit cache primed as in a running store):

* is-ancestor of the root in the tip (a whole-history walk), and of the fork point in a branch tip;
* merge base of the two branch tips (diverged by 50 commits each, on top of N commits).

Run: ``python benchmarks/bench_ancestry.py [--quick]`` (quick: 2,000 commits; default 20,000).
"""

from __future__ import annotations

import heapq
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_ms, median, parse_args, print_table, time_call

from gitstate import ancestry
from gitstate.repo import Repository

AUTHOR = "bench <b@x>"


# ----------------------------------------------------------------------------- the old implementations (verbatim)
def old_paint(repo: Repository, a: str, b: str) -> tuple[dict[str, int], list[str]]:
    """remote._paint before issue 12."""
    flags: dict[str, int] = {a: 1}
    flags[b] = flags.get(b, 0) | 2
    heap: list[tuple[int, int, str]] = []
    queued: set[str] = set()
    counter = 0

    def push(sha: str) -> None:
        nonlocal counter
        heapq.heappush(heap, (-repo.commit_info(sha).commit_time, counter, sha))
        counter += 1
        queued.add(sha)

    for start in dict.fromkeys((a, b)):
        push(start)
    bases: list[str] = []
    while heap and any(not flags[s] & 4 for _, _, s in heap):
        _, _, c = heapq.heappop(heap)
        queued.discard(c)
        f = flags[c]
        if f & 3 == 3 and not f & 4:
            bases.append(c)
            f |= 4
            flags[c] = f
        for p in repo.commit_info(c).parents:
            pf = flags.get(p, 0)
            if pf | f != pf:
                flags[p] = pf | f
                if p not in queued:
                    push(p)
    return flags, bases


def old_remote_is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """remote._is_ancestor before issue 12."""
    return ancestor == descendant or ancestor in old_paint(repo, ancestor, descendant)[1]


def old_repo_is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """Repository.is_ancestor before issue 12 (DFS over parents)."""
    if ancestor == descendant:
        return True
    stack, seen = [descendant], {descendant}
    while stack:
        for p in repo.commit_info(stack.pop()).parents:
            if p == ancestor:
                return True
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return False


def old_repo_merge_base(repo: Repository, a: str, b: str) -> str | None:
    """Repository.merge_base before issue 12 (all of a's history, then b newest first)."""
    ancestors_a = {c.id for c in repo.iter_commits(a)}
    for c in repo.iter_commits(b):
        if c.id in ancestors_a:
            return c.id
    return None


def build(path: Path, n: int) -> tuple[Repository, str, str, str, str]:
    """(repo, root, fork, left tip, right tip)."""
    repo = Repository.open(path)
    t0 = 1_700_000_000
    with repo.lock():
        root = c = repo.commit_files(None, {"a.txt": b"0"}, "0", author=AUTHOR, when=t0, fsync=False)
        for i in range(1, n):
            c = repo.commit_files(c, {"a.txt": str(i).encode()}, str(i), author=AUTHOR, when=t0 + i, fsync=False)
        fork = left = right = c
        for i in range(50):
            left = repo.commit_files(
                left, {"l.txt": str(i).encode()}, f"l{i}", author=AUTHOR, when=t0 + n + 2 * i, fsync=False
            )
            right = repo.commit_files(
                right,
                {"r.txt": str(i).encode()},
                f"r{i}",
                author=AUTHOR,
                when=t0 + n + 2 * i + 1,
                move_branch=False,
                fsync=False,
            )
    return repo, root, fork, left, right


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    args = parse_args(__doc__ or "")
    n = 2000 if args.quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        repo, root, fork, left, right = build(Path(tmp) / "r", n)
        cases = {
            f"is-ancestor root -> tip ({n + 50} commits)": (
                {
                    "old repo (DFS)": lambda: old_repo_is_ancestor(repo, root, left),
                    "old remote (paint)": lambda: old_remote_is_ancestor(repo, root, left),
                },
                lambda: ancestry.is_ancestor(repo, root, left),
            ),
            "is-ancestor fork -> branch tip (50 back)": (
                {
                    "old repo (DFS)": lambda: old_repo_is_ancestor(repo, fork, left),
                    "old remote (paint)": lambda: old_remote_is_ancestor(repo, fork, left),
                },
                lambda: ancestry.is_ancestor(repo, fork, left),
            ),
            "merge base of two tips (50 + 50 diverged)": (
                {
                    "old repo (full walk)": lambda: old_repo_merge_base(repo, left, right),
                    "old remote (paint)": lambda: old_paint(repo, left, right)[1][0],
                },
                lambda: ancestry.merge_base(repo, left, right),
            ),
        }
        rows = []
        for name, (olds, new) in cases.items():
            new_t = median(time_call(new, repeat=args.repeat))
            for old_name, old in olds.items():
                assert old() == new(), (name, old_name)
                old_t = median(time_call(old, repeat=args.repeat))
                rows.append([name, old_name, fmt_ms(old_t), fmt_ms(new_t), f"{new_t / old_t:.2f}"])
        ahead = median(time_call(lambda: ancestry.ahead_behind(repo, left, right), repeat=args.repeat))
        old_ahead = median(time_call(lambda: old_paint(repo, left, right), repeat=args.repeat))
        rows.append(
            [
                "ahead/behind (50, 50)",
                "old remote (paint)",
                fmt_ms(old_ahead),
                fmt_ms(ahead),
                f"{ahead / old_ahead:.2f}",
            ]
        )
        repo.close()
    print_table(["case", "old", "old median", "new median", "new/old"], rows)


if __name__ == "__main__":
    main()
