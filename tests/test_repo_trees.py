"""Trees built path by path: the in-place patch of a tree's raw bytes (an update of existing entries) against
dulwich's own serialization, on random change sequences, and the result as real Git sees it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dulwich.objects import Tree
from helpers import fsck, git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate import repo_trees
from gitstate.repo import EMPTY_TREE, Repository

AUTHOR = "tester <tester@example.invalid>"

# Names that sort and search awkwardly (prefixes of each other, spaces, UTF-8, a name that looks like a mode),
# few enough that later steps mostly update what earlier ones wrote (the patched case), with a file that becomes
# a directory and back ("a" and "a/b") for the other one.
PATHS = st.sampled_from(
    ["a", "a/b", "a b", "a.json", "a-/x", "ab", "é.json", "x y z.txt", "100644 a", "dir/a", "dir/a b", "dir/s/é.json"]
)
CHANGE = st.tuples(PATHS, st.one_of(st.none(), st.binary(max_size=8)))
STEPS = st.lists(st.lists(CHANGE, min_size=1, max_size=4), min_size=1, max_size=8)


def _consistent(changes: list[tuple[str, bytes | None]]) -> dict[str, bytes | None]:
    """A change set a flush could make: no path that is also another's parent directory."""
    out: dict[str, bytes | None] = {}
    for path, data in changes:
        if any(p.startswith(path + "/") or path.startswith(p + "/") for p in out):
            continue
        out[path] = data
    return out


def _tree_of(repo: Repository, base: str | None, changes: dict[str, bytes | None]) -> tuple[str, list[bytes]]:
    new: list = []
    try:
        sha = repo.build_tree(base, changes, new)
    except Exception as e:  # a file's parent is a file in the base: both ways must refuse alike
        return f"error:{type(e).__name__}", []
    return sha, [o.as_raw_string() for o in new if o.type_name == b"tree"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_patched_trees_are_byte_for_byte_dulwichs(tmp_path_factory: pytest.TempPathFactory, steps: list) -> None:
    root = tmp_path_factory.mktemp("trees")
    patched = Repository.open(root / "p", create=True)
    plain = Repository.open(root / "d", create=True)
    plain._tree_patcher.patch = lambda *a: None  # type: ignore[method-assign]  # dulwich's copy-and-edit every time
    try:
        base_p: str | None = EMPTY_TREE
        base_d: str | None = EMPTY_TREE
        for step in steps:
            changes = _consistent(step)
            sha_p, raws_p = _tree_of(patched, base_p, changes)
            sha_d, raws_d = _tree_of(plain, base_d, changes)
            assert sha_p == sha_d
            assert raws_p == raws_d
            if sha_p.startswith("error:"):
                continue
            tree = patched.read_tree(sha_p)
            again = Tree.from_raw_string(Tree.type_num, tree.as_raw_string())
            assert again.id == tree.id and list(again.iteritems()) == list(tree.iteritems())
            base_p, base_d = sha_p, sha_d
    finally:
        patched.close()
        plain.close()


def test_a_flush_of_one_document_in_a_big_flat_directory_patches_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Updating one of 2,000 files in one directory writes its new id into the tree's bytes: no entry is
    serialized again, the offsets are found once and then carried to each new tree, and git reads every tree."""
    repo = Repository.open(tmp_path / "r", create=True)
    files = {f"t/{i:05d} task.json": b'{"n": %d}\n' % i for i in range(2000)}
    with repo.lock():
        for path, data in files.items():
            (repo.root / path).parent.mkdir(exist_ok=True)
            (repo.root / path).write_bytes(data)
        head = repo.commit_files(None, dict(files), "all\n", author=AUTHOR, fsync=False)
    scans: list[int] = []
    real = repo_trees.entry_offsets
    monkeypatch.setattr(repo_trees, "entry_offsets", lambda raw: scans.append(len(raw)) or real(raw))
    serialized: list[int] = []
    real_serialize = Tree._serialize
    monkeypatch.setattr(Tree, "_serialize", lambda self: serialized.append(1) or real_serialize(self))
    with repo.lock():
        for n in range(5):
            path = f"t/{n * 7:05d} task.json"
            data = b'{"n": "changed %d"}\n' % n
            (repo.root / path).write_bytes(data)
            head = repo.commit_files(head, {path: data}, f"change {n}\n", author=AUTHOR, fsync=n % 2 == 0)
    assert serialized == []
    assert len(scans) == 2  # the root's and t/'s, once; their successors share them
    assert git(repo.root, "show", "HEAD:t/00028 task.json") == '{"n": "changed 4"}\n'
    assert git(repo.root, "show", "HEAD~4:t/00000 task.json") == '{"n": "changed 0"}\n'
    listed = git(repo.root, "ls-tree", "-r", "HEAD", "t").splitlines()
    assert len(listed) == 2000
    fsck(repo.root)
    repo.close()


def test_an_added_removed_or_retyped_entry_goes_the_dulwich_way(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r", create=True)
    with repo.lock():
        head = repo.commit_files(None, {"a.json": b"1\n", "d/b.json": b"2\n"}, "m\n", author=AUTHOR, fsync=False)
        os.makedirs(repo.root / "d", exist_ok=True)
        head = repo.commit_files(head, {"c.json": b"3\n"}, "add\n", author=AUTHOR, fsync=False)
        head = repo.commit_files(head, {"a.json": None}, "remove\n", author=AUTHOR, fsync=False)
        head = repo.commit_files(head, {"d/b.json": None, "d": b"now a file\n"}, "retype\n", author=AUTHOR, fsync=False)
        head = repo.commit_files(head, {"c.json": b"33\n"}, "update\n", author=AUTHOR, fsync=False)
    assert git(repo.root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["c.json", "d"]
    assert git(repo.root, "show", "HEAD:c.json") == "33\n"
    fsck(repo.root)
    repo.close()
