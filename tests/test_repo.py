"""The Git repository layer (gitstate.repo), checked against real git."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import GIT_ENV, commit_ids, fsck, git, status_porcelain

from gitstate.errors import LockError, RepositoryError, RevisionNotFound
from gitstate.repo import EMPTY_TREE, Repository, blob_id

AUTHOR = "tester <tester@example.invalid>"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.open(tmp_path / "r", create=True)
    yield r
    r.close()


def _head(repo: Repository) -> str:
    head = repo.head()
    assert head is not None
    return head


def _commit(repo: Repository, files: dict[str, bytes | None], msg: str = "m\n") -> str:
    """Commit like the store does: files on disk, then objects, ref and index."""
    with repo.lock():
        for path, data in files.items():
            full = repo.root / path
            if data is None:
                full.unlink(missing_ok=True)
            else:
                full.parent.mkdir(parents=True, exist_ok=True)
                full.write_bytes(data)
        parent = repo.head()
        cid = repo.commit_files(parent, files, msg, author=AUTHOR, fsync=False)
        tree = repo.commit_info(cid).tree
        repo.sync_index(tree, {p: None if d is None else blob_id(d) for p, d in files.items()})
    return cid


def test_init_layout_and_modes(tmp_path: Path) -> None:
    r = Repository.open(tmp_path / "new", create=True)
    try:
        assert r.head() is None
        assert r.branch == "main"
        assert r.branch_ref == "refs/heads/main"
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(tmp_path / "new" / ".git").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(tmp_path / "new" / ".git" / "config").st_mode) == 0o600
        assert r.meta_dir.is_dir()
        assert git(tmp_path / "new", "symbolic-ref", "HEAD").strip() == "refs/heads/main"
        assert git(tmp_path / "new", "rev-parse", "--is-bare-repository").strip() == "false"
        fsck(tmp_path / "new")
        assert not list((tmp_path / "new").glob("*gitstate-tmp*"))
    finally:
        r.close()


def test_open_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError):
        Repository.open(tmp_path / "missing", create=False)
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text("gitdir: /elsewhere\n")
    with pytest.raises(RepositoryError, match="file"):
        Repository.open(tmp_path / "wt")
    det = tmp_path / "det"
    det.mkdir()
    git(det, "init", "-q", "-b", "main")
    (det / "a.json").write_text("{}\n")
    git(det, "add", "a.json")
    git(det, "commit", "-q", "-m", "x")
    git(det, "checkout", "-q", "--detach")
    with pytest.raises(RepositoryError, match="detached"):
        Repository.open(det)


def test_open_existing_git_repo_on_another_branch(tmp_path: Path) -> None:
    d = tmp_path / "g"
    d.mkdir()
    git(d, "init", "-q", "-b", "trunk")
    (d / "a.json").write_text('{"a": 1}\n')
    git(d, "add", "a.json")
    git(d, "commit", "-q", "-m", "by git")
    r = Repository.open(d)
    try:
        assert r.branch == "trunk"
        assert r.head() == git(d, "rev-parse", "HEAD").strip()
        assert r.read_at(r.commit_info(_head(r)).tree, "a.json") == b'{"a": 1}\n'
    finally:
        r.close()


def test_blob_id_matches_git() -> None:
    for data in (b"", b"hello\n", bytes(range(256)) * 10):
        proc = subprocess.run(
            ["git", "hash-object", "--stdin"], input=data, capture_output=True, env=GIT_ENV, check=True
        )
        assert blob_id(data) == proc.stdout.decode().strip()


def test_blob_cache_serves_committed_blobs_and_stays_bounded(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    import gitstate.repo_objects as repo_mod

    monkeypatch.setattr(repo_mod, "BLOB_CACHE_BYTES", 4000)
    head = None
    blobs = []
    for i in range(10):
        data = b"%d" % i * 600  # 600 bytes each: 6,000 in all
        head = repo.commit_files(head, {"doc.txt": data}, f"v{i}", author="t <t@t>", fsync=False)
        blobs.append((blob_id(data), data))
    assert repo._blob_cache_bytes <= 4000
    assert len(repo._blob_cache) < len(blobs)
    for sha, data in blobs:  # evicted or not, every blob reads back right (and git agrees)
        assert repo.read_blob(sha) == data
        assert git(repo.root, "cat-file", "blob", sha).encode() == data
    assert repo._blob_cache_bytes <= 4000
    big = b"x" * 2000  # over a quarter of the budget: read from disk every time, never cached
    head = repo.commit_files(head, {"big.txt": big}, "big", author="t <t@t>", fsync=False)
    assert blob_id(big) not in repo._blob_cache and repo.read_blob(blob_id(big)) == big
    assert blob_id(big) not in repo._blob_cache


def test_blob_cache_counts_what_each_entry_costs_not_only_its_content(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny blobs (a history of small documents read whole): the budget counts each entry's own cost, so it
    holds ~budget / (size + BLOB_ENTRY_BYTES) of them, not budget / size (102,000 blobs of ~50 bytes were 35 MB
    under an 8 MB budget)."""
    import gitstate.repo_objects as repo_mod

    monkeypatch.setattr(repo_mod, "BLOB_CACHE_BYTES", 16_000)
    for i in range(400):
        repo._remember_blob(f"{i:040x}", b"%05d" % i)  # 5 bytes each
    per_entry = 5 + repo_mod.BLOB_ENTRY_BYTES
    assert len(repo._blob_cache) == 16_000 // per_entry
    assert repo._blob_cache_bytes == len(repo._blob_cache) * per_entry <= 16_000
    assert f"{399:040x}" in repo._blob_cache and f"{0:040x}" not in repo._blob_cache  # the oldest went first


def test_commit_files_is_real_git(repo: Repository) -> None:
    c1 = _commit(
        repo,
        {"state.json": b'{"a": 1}\n', "tasks/t1.json": b"{}\n", "deep/x/y/z.yaml": b"a: 1\n"},
        "first\n\nGitstate-Actor: library\n",
    )
    c2 = _commit(repo, {"state.json": b'{"a": 2}\n', "tasks/t1.json": None})
    assert repo.head() == c2
    assert commit_ids(repo.root) == [c2, c1]
    assert git(repo.root, "show", f"{c1}:state.json") == '{"a": 1}\n'
    assert git(repo.root, "show", "HEAD:state.json") == '{"a": 2}\n'
    assert git(repo.root, "ls-tree", "-r", "--name-only", "HEAD").split() == ["deep/x/y/z.yaml", "state.json"]
    # The empty tasks/ directory is gone from the tree, not left as an empty tree.
    assert "tasks" not in git(repo.root, "ls-tree", "HEAD")
    assert git(repo.root, "log", "-1", "--format=%an <%ae>", c1).strip() == AUTHOR
    assert git(repo.root, "log", "-1", "--format=%B", c1).strip().endswith("Gitstate-Actor: library")
    assert git(repo.root, "cat-file", "-p", c2).count("parent ") == 1
    fsck(repo.root)
    assert status_porcelain(repo.root) == ""


def test_commit_info_and_listing(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n", "d/b.json": b"2\n"})
    info = repo.commit_info(c1)
    assert info.id == c1 and info.parents == ()
    assert info.author == AUTHOR
    assert info.tree == git(repo.root, "rev-parse", f"{c1}^{{tree}}").strip()
    assert repo.list_blobs(info.tree) == {"a.json": blob_id(b"1\n"), "d/b.json": blob_id(b"2\n")}
    assert repo.list_blobs(info.tree, "d/") == {"d/b.json": blob_id(b"2\n")}
    assert repo.blob_id_at(info.tree, "d") is None
    assert repo.read_at(info.tree, "missing.json") is None
    assert repo.read_at(info.tree, "d/b.json/x") is None
    c2 = _commit(repo, {"a.json": b"1b\n", "e.json": b"3\n"})
    changed = repo.changed_paths(info.tree, repo.commit_info(c2).tree)
    assert changed == {"a.json": (blob_id(b"1\n"), blob_id(b"1b\n")), "e.json": (None, blob_id(b"3\n"))}
    assert repo.changed_paths(None, info.tree).keys() == {"a.json", "d/b.json"}
    with pytest.raises(RevisionNotFound):
        repo.commit_info(info.tree)
    with pytest.raises(RepositoryError):
        repo.read_object("0" * 40)


def test_history_walks(repo: Repository) -> None:
    ids = [_commit(repo, {"n.json": f"{i}\n".encode()}) for i in range(5)]
    walked = [c.id for c in repo.iter_commits(repo.head())]
    assert walked == list(reversed(ids)) == commit_ids(repo.root)
    assert repo.is_ancestor(ids[0], ids[4])
    assert not repo.is_ancestor(ids[4], ids[0])
    assert repo.merge_base(ids[2], ids[4]) == ids[2]
    assert list(repo.iter_commits(None)) == []


def test_update_ref_is_compare_and_swap(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    with repo.lock(), pytest.raises(RepositoryError, match="moved"):
        repo.update_ref(repo.branch_ref, EMPTY_TREE, None, fsync=False)
    assert repo.head() == c1
    assert not (repo.git_dir / "refs" / "heads" / "main.lock").exists()


def test_a_durable_commit_overlaps_the_ref_locks_fsync_with_the_objects(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The branch's lock file is written before the objects, its fsync runs in a thread while they are
    fsynced, and the branch moves only after both: no reader sees the new id before its objects and the lock
    are on disk."""
    c1 = _commit(repo, {"a.json": b"1\n"})
    log: list[str] = []
    real_fsync = os.fsync
    lock_path = repo.git_dir / "refs" / "heads" / "main.lock"
    both = threading.Barrier(2, timeout=10)

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        kind = "lock" if target == str(lock_path) else "pack" if target.endswith("tmp-pack") else "other"
        if kind in ("lock", "pack"):
            both.wait()  # deadlocks (and times out) unless the two run at the same time
        real_fsync(fd)
        log.append(kind)

    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(src) == str(lock_path):
            log.append("ref moved")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with repo.lock():
        (repo.root / "a.json").write_bytes(b"2\n")
        c2 = repo.commit_files(c1, {"a.json": b"2\n"}, "m\n", author=AUTHOR, fsync=True)
    assert sorted(log[:2]) == ["lock", "pack"]
    assert log.index("ref moved") > max(log.index("lock"), log.index("pack"))
    assert repo.head() == c2 and not lock_path.exists()
    fsck(repo.root)


def test_a_ref_update_alone_fsyncs_its_lock_in_the_callers_thread(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a commit has objects to overlap the lock's fsync with: update_ref starts no thread to wait on."""
    c1 = _commit(repo, {"a.json": b"1\n"})
    lock_path = str(repo.git_dir / "refs" / "heads" / "main.lock")
    threads: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == lock_path:
            threads.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with repo.lock():
        repo.update_ref(repo.branch_ref, c1, c1, fsync=True)
    assert threads == [threading.get_ident()]


def test_a_failed_fsync_of_the_ref_lock_leaves_the_branch(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    lock_path = repo.git_dir / "refs" / "heads" / "main.lock"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == str(lock_path):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with repo.lock(), pytest.raises(OSError, match="Input/output"):
        repo.commit_files(c1, {"a.json": b"2\n"}, "m\n", author=AUTHOR, fsync=True)
    assert repo.head() == c1 and not lock_path.exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _commit(repo, {"a.json": b"3\n"}) == repo.head()
    fsck(repo.root)


def test_a_moved_branch_is_refused_before_any_object_is_written(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    c2 = _commit(repo, {"a.json": b"2\n"})
    packs = sorted((repo.git_dir / "objects" / "pack").glob("*.pack"))
    with repo.lock(), pytest.raises(RepositoryError, match="moved"):
        repo.commit_files(c1, {"a.json": b"stale\n"}, "m\n", author=AUTHOR, fsync=True)
    assert repo.head() == c2
    assert sorted((repo.git_dir / "objects" / "pack").glob("*.pack")) == packs
    assert not (repo.git_dir / "refs" / "heads" / "main.lock").exists()


def test_packed_refs_are_read_and_updated(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    git(repo.root, "pack-refs", "--all")
    assert not (repo.git_dir / "refs" / "heads" / "main").exists()
    assert repo.head() == c1
    stamp = repo.ref_stamp()
    c2 = _commit(repo, {"a.json": b"2\n"})
    assert repo.head() == c2 == git(repo.root, "rev-parse", "HEAD").strip()
    assert repo.ref_stamp() != stamp
    fsck(repo.root)


def test_objects_stay_readable_after_git_gc(repo: Repository) -> None:
    ids = [_commit(repo, {f"f{i}.json": f"{i}\n".encode()}) for i in range(3)]
    git(repo.root, "gc", "-q", "--prune=now")
    assert not list((repo.git_dir / "objects").glob("[0-9a-f][0-9a-f]/*"))
    fresh = Repository(repo.root)
    try:
        tree = fresh.commit_info(ids[-1]).tree
        assert fresh.read_at(tree, "f1.json") == b"1\n"
    finally:
        fresh.close()
    # The already-open repository finds the packed objects too.
    repo.invalidate_caches()
    assert repo.read_at(repo.commit_info(ids[0]).tree, "f0.json") == b"0\n"
    c4 = _commit(repo, {"f9.json": b"9\n"})
    assert repo.head() == c4
    fsck(repo.root)


def test_tags(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    repo.create_tag("before-migration", c1, tagger=AUTHOR, message="snap")
    with pytest.raises(RepositoryError):
        repo.create_tag("before-migration", c1, tagger=AUTHOR)
    (tag,) = repo.tags()
    assert (tag.name, tag.commit, tag.message) == ("before-migration", c1, "snap")
    assert git(repo.root, "rev-parse", "before-migration^{commit}").strip() == c1
    assert git(repo.root, "cat-file", "-t", "before-migration").strip() == "tag"
    fsck(repo.root)


def test_lock_is_reentrant_and_exclusive_between_threads(repo: Repository) -> None:
    order: list[str] = []
    with repo.lock():
        assert repo.holds_lock()
        with repo.lock():
            assert repo.holds_lock()
        assert repo.holds_lock()

        def other() -> None:
            assert not repo.holds_lock()
            with repo.lock():
                order.append("other")

        t = threading.Thread(target=other)
        t.start()
        t.join(0.2)
        assert t.is_alive(), "another thread got the lock while we held it"
        order.append("main")
    t.join(10)
    assert order == ["main", "other"]
    assert not repo.holds_lock()


def test_lock_is_exclusive_between_processes(repo: Repository) -> None:
    code = (
        "import sys; from gitstate.repo import Repository; from gitstate.errors import LockError\n"
        "r = Repository(__import__('pathlib').Path(sys.argv[1]))\n"
        "try:\n"
        "    with r.lock(timeout_s=0.3):\n"
        "        print('got')\n"
        "except LockError as e:\n"
        "    print('locked', e)\n"
    )
    with repo.lock():
        assert repo.lock_holder_pid() == os.getpid()
        out = subprocess.run([sys.executable, "-c", code, str(repo.root)], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("locked"), out
    assert repo.lock_holder_pid() is None
    out = subprocess.run([sys.executable, "-c", code, str(repo.root)], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("got"), out


def test_lock_timeout_raises_lock_error(repo: Repository) -> None:
    got: list[BaseException] = []

    def other() -> None:
        other_repo = Repository(repo.root)  # its own fd: flock excludes it even in this process
        try:
            with other_repo.lock(timeout_s=0.2):
                pass
        except LockError as e:
            got.append(e)
        finally:
            other_repo.close()

    with repo.lock():
        t = threading.Thread(target=other)
        t.start()
        t.join(10)
    assert got and "held the store lock" in str(got[0])


def test_stale_lock_files_only_when_nobody_holds_them(repo: Repository) -> None:
    _commit(repo, {"a.json": b"1\n"})
    lock = repo.git_dir / "refs" / "heads" / "main.lock"
    lock.write_text("garbage")
    fd = os.open(lock, os.O_RDONLY)
    try:
        assert lock not in repo.stale_lock_files()
    finally:
        os.close(fd)
    assert lock in repo.stale_lock_files()
    (repo.git_dir / "index.lock").write_text("")
    with repo.lock():
        removed = repo.recover_stale_locks()
    assert lock in removed and repo.git_dir / "index.lock" in removed
    assert not lock.exists()
    _commit(repo, {"a.json": b"2\n"})
    fsck(repo.root)


def test_stale_ref_lock_does_not_block_a_commit(repo: Repository) -> None:
    _commit(repo, {"a.json": b"1\n"})
    (repo.git_dir / "refs" / "heads" / "main.lock").write_text("left by a killed process\n")
    (repo.git_dir / "index.lock").write_text("")
    c = _commit(repo, {"a.json": b"2\n"})
    assert git(repo.root, "rev-parse", "HEAD").strip() == c
    assert status_porcelain(repo.root) == ""


def test_index_keeps_git_status_clean(repo: Repository) -> None:
    _commit(repo, {f"d{i // 10}/f{i}.json": f"{i}\n".encode() for i in range(40)})
    _commit(repo, {"d1/f12.json": b"changed\n", "d2/f20.json": None, "new/x.json": b"x\n"})
    assert status_porcelain(repo.root) == ""
    assert git(repo.root, "diff-index", "--cached", "HEAD").strip() == ""
    git(repo.root, "update-index", "--refresh")
    fsck(repo.root)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "v4"])
def test_unusable_index_is_rebuilt(repo: Repository, damage: str) -> None:
    _commit(repo, {"a.json": b"1\n", "b/c.json": b"2\n"})
    index = repo.git_dir / "index"
    if damage == "truncate":
        index.write_bytes(index.read_bytes()[:50])
    elif damage == "garbage":
        index.write_bytes(b"not an index")
    elif damage == "delete":
        index.unlink()
    else:
        git(repo.root, "update-index", "--index-version", "4")
    _commit(repo, {"a.json": b"3\n"})
    assert status_porcelain(repo.root) == ""
    assert git(repo.root, "diff-index", "--cached", "HEAD").strip() == ""


def test_index_written_by_real_git_is_kept_working(repo: Repository) -> None:
    _commit(repo, {"a.json": b"1\n"})
    (repo.root / "b.json").write_text("2\n")
    git(repo.root, "add", "b.json")
    git(repo.root, "commit", "-q", "-m", "by git")
    _commit(repo, {"a.json": b"2\n"})
    assert status_porcelain(repo.root) == ""
    assert git(repo.root, "show", "HEAD:b.json") == "2\n"


def test_worktree_changes(repo: Repository) -> None:
    _commit(repo, {"keep.json": b"1\n", "mod.json": b"1\n", "gone.json": b"1\n", "sub/s.json": b"1\n"})
    tree = repo.commit_info(_head(repo)).tree
    assert repo.worktree_changes(tree) == {}
    (repo.root / "mod.json").write_text("2\n")
    (repo.root / "gone.json").unlink()
    (repo.root / "added.yaml").write_text("a: 1\n")
    (repo.root / ".mod.json.swp").write_text("vim")
    (repo.root / "4913").write_text("")
    (repo.root / ".gitignore").write_text("ignored/\n*.log\n")
    (repo.root / "ignored").mkdir()
    (repo.root / "ignored" / "x.json").write_text("{}")
    (repo.root / "debug.log").write_text("noise")
    tmp = repo.root / "sub" / ".s.json.gitstate-tmp-abcdef"
    tmp.write_text("debris")
    os.symlink("/etc/passwd", repo.root / "link.json")
    with repo.lock():
        changes = repo.worktree_changes(tree, ignored=repo.ignore_matcher())
    assert changes == {
        "mod.json": b"2\n",
        "gone.json": None,
        "added.yaml": b"a: 1\n",
        ".gitignore": b"ignored/\n*.log\n",
    }
    assert not tmp.exists(), "stale gitstate temp files are removed under the lock"


def test_ignore_rules_nested_excluded_and_absent(repo: Repository) -> None:
    """A nested .gitignore covers its own directory and below; info/exclude covers everything; a path with no
    rules on its way is never ignored."""
    (repo.root / "a" / "b").mkdir(parents=True)
    (repo.root / "a" / ".gitignore").write_text("*.tmp\n!keep.tmp\n")
    ignored = repo.ignore_matcher()
    assert ignored("a/x.tmp") and ignored("a/b/y.tmp") and not ignored("a/keep.tmp")
    assert not ignored("x.tmp") and not ignored("a/") and not ignored("c/x.tmp")
    with open(repo.git_dir / "info" / "exclude", "a") as f:  # after the store's own pattern
        f.write("# comment\n\n*.bak\n")
    ignored = repo.ignore_matcher()
    assert ignored("x.bak") and ignored("deep/er/x.bak") and ignored("a/x.tmp") and not ignored("x.json")
    assert ignored("a/.x.json.gitstate-tmp-1a2b") and ignored("b/.x.json.gitstate-tmp-1a2b")


def test_no_ignore_rules_load_no_rule_code(tmp_path: Path) -> None:
    """Without a .gitignore or info/exclude patterns, asking loads none of dulwich's ignore code (`gitstate
    status` of a small store imports nothing it does not use)."""
    code = (
        "import sys; from gitstate.repo import Repository\n"
        "r = Repository.open(sys.argv[1], create=False); m = r.ignore_matcher()\n"
        "print(m('x.json'), m('sub/'), m('sub/y.json'), m('sub/.y.json.gitstate-tmp-1a2b'),\n"
        "      'dulwich.ignore' in sys.modules)"
    )
    Repository.open(tmp_path / "r", create=True).close()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False", "True", "False"]


def test_worktree_change_with_same_size_and_mtime_is_seen(repo: Repository) -> None:
    """A same-size edit within the same timestamp must not hide behind the index's stat cache."""
    _commit(repo, {"a.json": b'{"v": 1}\n'})
    st = os.stat(repo.root / "a.json")
    (repo.root / "a.json").write_bytes(b'{"v": 2}\n')
    os.utime(repo.root / "a.json", ns=(st.st_atime_ns, st.st_mtime_ns))
    tree = repo.commit_info(_head(repo)).tree
    # Same inode, size and mtime: only ctime differs. Git itself compares ctime too.
    assert repo.worktree_changes(tree) == {"a.json": b'{"v": 2}\n'}


def test_deleting_a_packed_ref_goes_through_packed_refs_lock(repo: Repository) -> None:
    c1 = _commit(repo, {"a.json": b"1\n"})
    repo.update_ref("refs/tags/keep", c1, None)
    repo.update_ref("refs/tags/gone", c1, None)
    git(repo.root, "pack-refs", "--all")
    lock = repo.git_dir / "packed-refs.lock"
    # A concurrent git holding packed-refs.lock: a clear error after a bounded wait, packed-refs untouched.
    lock.write_bytes(b"")
    before = (repo.git_dir / "packed-refs").read_bytes()
    with pytest.raises(RepositoryError, match=r"packed-refs\.lock"):
        repo._remove_packed_ref("refs/tags/gone", timeout=0.05)
    assert (repo.git_dir / "packed-refs").read_bytes() == before
    lock.unlink()
    repo.update_ref("refs/tags/gone", None, c1)
    assert not lock.exists()
    shown = git(repo.root, "show-ref")
    assert "refs/tags/keep" in shown and "refs/tags/gone" not in shown
    fsck(repo.root)
    git(repo.root, "fsck", "--strict")


def test_small_hashes_before_openssl_is_loaded_match_git(tmp_path: Path) -> None:
    """Until hashlib is loaded, small inputs are hashed by CPython's built-in SHA-1 (`gitstate status` then never
    loads OpenSSL): the ids are git's, and a big input loads hashlib as before."""
    code = (
        "import sys; from gitstate.repo_objects import blob_id\n"
        "small = blob_id(b'hello\\n'); before = 'hashlib' in sys.modules\n"
        "big = blob_id(b'x' * 100000); print(small, before, big, 'hashlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    small = git(tmp_path, "hash-object", "--stdin", input=b"hello\n").strip()
    big = git(tmp_path, "hash-object", "--stdin", input=b"x" * 100000).strip()
    assert out == [small, "False", big, "True"]
