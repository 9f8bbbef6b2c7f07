"""`status` of a small store reads no object once HEAD's listing and the tags are cached (issue 14: status within
1.5x of `gitstate --version`): the head commit comes from the history index, the committed files from
``.git/gitstate/head-listing.json`` (keyed by commit id), the snapshots from ``.git/gitstate/tags.json`` (keyed
by object id). Caches keyed by ids never go stale; a torn, foreign or unwritable cache is only a miss."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import git, make_store

import gitstate
import gitstate.repo_objects
from gitstate.direct import open_directory
from gitstate.paths import TEMP_MARKER


def _status(path: Path) -> tuple[str | None, list[dict[str, str]], list[tuple[str, str]]]:
    with open_directory(path) as d:
        head = d.head
        subject = d.get_commit(head).subject if head else None
        return subject, d.uncommitted(), [(s.name, s.commit) for s in d.snapshots()]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("state.json", "mode", "fast")
        s.set("tasks/t1.json", "status", "todo")
        s.flush()
        s.snapshot("v1")
        s.set("state.json", "mode", "slow")
        s.flush()
    return path


def test_second_status_reads_no_object(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (store / "state.json").write_text('{"mode": "edited by hand"}\n')
    (store / "new.json").write_text("{}\n")
    (store / "tasks" / "t1.json").unlink()
    first = _status(store)
    assert first[0] == 'state.json: mode "fast" -> "slow"'
    assert first[1] == [
        {"doc": "new.json", "state": "new"},
        {"doc": "state.json", "state": "modified"},
        {"doc": "tasks/t1.json", "state": "deleted"},
    ]
    assert [n for n, _ in first[2]] == ["v1"]

    def refuse(path: str) -> None:
        raise AssertionError(f"the object store was opened: {path}")

    monkeypatch.setattr(gitstate.repo_objects, "open_object_store", refuse)
    assert _status(store) == first
    meta = store / ".git" / "gitstate"
    for name in ("head-listing.json", "tags.json"):
        assert stat.S_IMODE(os.stat(meta / name).st_mode) == 0o600


def test_status_command_imports_no_object_store(store: Path) -> None:
    """The command itself, in a fresh interpreter: after one status, the next does not import dulwich's object
    store or pack code (~20 ms of start-up), nor tempfile (shutil, bz2, lzma and random with it: ~8 ms)."""
    code = (
        "import sys; from gitstate.cli import main; sys.argv = ['gitstate', '-C', sys.argv[1], 'status'];\n"
        "try: main()\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('dulwich.object_store', 'dulwich.pack', 'tempfile') if m in sys.modules]\n"
        "print('LOADED ' + ' '.join(heavy) if heavy else 'CLEAN')"
    )
    runs = [subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=True)]
    runs.append(subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=True))
    assert "snapshots  1 (latest: v1" in runs[1].stdout
    assert runs[1].stdout.splitlines()[-1] == "CLEAN", runs[1].stdout
    assert runs[0].stdout.splitlines()[:-1] == runs[1].stdout.splitlines()[:-1]


def test_listing_follows_head(store: Path) -> None:
    assert _status(store)[1] == []
    with make_store(store) as s:  # HEAD moves: the cached listing is of the old commit, so it is not used
        s.set("added.json", "x", 1)
        s.delete("tasks/t1.json")
        s.flush()
    assert _status(store)[1] == []
    (store / "added.json").write_text('{"x": 2}\n')
    (store / "tasks").mkdir(exist_ok=True)
    (store / "tasks" / "t1.json").write_text("{}\n")
    assert _status(store)[1] == [
        {"doc": "added.json", "state": "modified"},
        {"doc": "tasks/t1.json", "state": "new"},
    ]
    git(store, "checkout", "-q", "--", "added.json")  # git moves nothing here; the listing is still HEAD's
    assert _status(store)[1] == [{"doc": "tasks/t1.json", "state": "new"}]


@pytest.mark.parametrize(
    "content",
    [b"", b'{"commit": "', b"[1, 2]", b'{"commit": null, "files": {}}', b"\xff\xfe not json"],
    ids=["empty", "torn", "list", "foreign", "binary"],
)
def test_damaged_listing_is_a_miss(store: Path, content: bytes) -> None:
    _status(store)
    (store / ".git" / "gitstate" / "head-listing.json").write_bytes(content)
    (store / "state.json").unlink()
    assert _status(store)[1] == [{"doc": "state.json", "state": "deleted"}]


def test_listing_of_another_commit_is_not_used(store: Path) -> None:
    _status(store)
    path = store / ".git" / "gitstate" / "head-listing.json"
    saved = orjson.loads(path.read_bytes())
    saved["commit"] = git(store, "rev-parse", "HEAD~1").strip()
    saved["files"] = {}  # wrong for HEAD: if it were used, every file would show as new
    path.write_bytes(orjson.dumps(saved))
    assert _status(store)[1] == []


def test_snapshot_moved_to_another_commit(store: Path) -> None:
    first = dict(_status(store)[2])
    with make_store(store) as s:
        s.snapshot_delete("v1")
        s.set("state.json", "mode", "again")
        s.flush()
        s.snapshot("v1")
        s.snapshot("v2")
        head = s.head
    snaps = dict(_status(store)[2])
    assert snaps == {"v1": head, "v2": head} and first["v1"] != head
    saved = orjson.loads((store / ".git" / "gitstate" / "tags.json").read_bytes())
    assert len(saved) == 2  # entries of deleted tags go
    with make_store(store) as s:
        s.snapshot_delete("v2")
    assert dict(_status(store)[2]) == {"v1": head}


def test_lightweight_tag_made_by_git(store: Path) -> None:
    git(store, "tag", "light", "HEAD~1")
    snaps = dict(_status(store)[2])
    assert snaps["light"] == git(store, "rev-parse", "HEAD~1").strip()
    assert dict(_status(store)[2]) == snaps


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_metadata_directory(store: Path) -> None:
    meta = store / ".git" / "gitstate"
    os.chmod(meta, 0o500)
    try:
        (store / "state.json").write_text('{"mode": "by hand"}\n')
        assert _status(store)[1] == [{"doc": "state.json", "state": "modified"}]
        assert not (meta / "head-listing.json").exists()
    finally:
        os.chmod(meta, 0o700)


def test_unwritable_cache_path_is_only_a_miss(store: Path) -> None:
    """As root a read-only directory does not stop writes; a directory where the cache file goes does."""
    meta = store / ".git" / "gitstate"
    (meta / "head-listing.json").mkdir()
    (meta / "tags.json").mkdir()
    (store / "state.json").write_text('{"mode": "by hand"}\n')
    for _ in range(2):
        _, edits, snaps = _status(store)
        assert edits == [{"doc": "state.json", "state": "modified"}] and [n for n, _ in snaps] == ["v1"]
    assert not [p for p in meta.iterdir() if TEMP_MARKER in p.name]


def test_head_commit_from_the_index_equals_the_commit(store: Path) -> None:
    with open_directory(store) as d:
        from_index = d.get_commit("HEAD").to_dict()
    (store / ".git" / "gitstate" / "history-index-v1.jsonl").unlink()
    with open_directory(store) as d:
        from_objects = d.get_commit("HEAD").to_dict()
    assert from_index == from_objects


def test_git_fsck_and_status_unaffected(store: Path) -> None:
    _status(store)
    git(store, "fsck", "--strict")
    assert git(store, "status", "--porcelain") == ""
    with gitstate.open(store, durability="manual", fsync=False, handle_signals=False) as s:
        assert s.get("state.json", "mode") == "slow"


def _refuse_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:
        raise AssertionError(f"the object store was opened: {path}")

    monkeypatch.setattr(gitstate.repo_objects, "open_object_store", refuse)


def _git_listing(path: Path) -> dict[str, str]:
    out = git(path, "ls-tree", "-r", "HEAD")
    return {line.split("\t", 1)[1]: line.split()[2] for line in out.splitlines() if line.split()[1] == "blob"}


def test_a_program_write_carries_the_listing_over(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a status has listed HEAD, each commit updates the listing: the first status after a program's write
    reads no object, and the listing is git's, file for file."""
    _status(store)
    with make_store(store) as s:
        s.set("state.json", "mode", "third")  # a change
        s.flush()
        s.set("deep/er/new.json", "x", 1)  # a new file in new directories
        s.delete("tasks/t1.json")  # a deletion that empties a directory
        s.flush()
    listing = orjson.loads((store / ".git" / "gitstate" / "head-listing.json").read_bytes())
    assert listing["commit"] == git(store, "rev-parse", "HEAD").strip()
    assert listing["files"] == _git_listing(store)
    with monkeypatch.context() as m:
        _refuse_objects(m)
        assert _status(store)[1] == []
        (store / "deep" / "er" / "new.json").write_text('{"x": 2}\n')
        assert _status(store)[1] == [{"doc": "deep/er/new.json", "state": "modified"}]


def test_a_snapshot_is_cached_when_made(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _status(store)
    with make_store(store) as s:
        s.snapshot("v2")
        head = s.head
    with monkeypatch.context() as m:
        _refuse_objects(m)
        assert dict(_status(store)[2])["v2"] == head


def test_listing_of_a_commit_made_elsewhere_is_not_carried(store: Path) -> None:
    """A commit made by plain git is not a program write: the listing stays at the commit it was made for, and
    the next status lists the new tree."""
    _status(store)
    (store / "other.json").write_text("{}\n")
    git(store, "add", "other.json")
    git(store, "commit", "-q", "-m", "by git")
    listing = orjson.loads((store / ".git" / "gitstate" / "head-listing.json").read_bytes())
    assert listing["commit"] == git(store, "rev-parse", "HEAD~1").strip()
    assert _status(store)[1] == []
    listing = orjson.loads((store / ".git" / "gitstate" / "head-listing.json").read_bytes())
    assert listing["files"] == _git_listing(store)


@pytest.mark.parametrize("clash", ["file-over-dir", "dir-over-file"])
def test_a_path_turning_between_file_and_directory(tmp_path: Path, clash: str) -> None:
    from gitstate.repo import Repository

    repo = Repository.open(tmp_path / "r", create=True)
    try:
        with repo.lock():
            first = repo.commit_files(None, {"a/b.txt": b"1\n", "c.txt": b"2\n"}, "one", author="t <t@e>")
        assert repo.committed_listing(first) == {"a/b.txt": blob_id_of(b"1\n"), "c.txt": blob_id_of(b"2\n")}
        changes: dict[str, bytes | None] = {"a": b"now a file\n"} if clash == "file-over-dir" else {"c.txt/d": b"3\n"}
        with repo.lock():
            second = repo.commit_files(first, changes, "two", author="t <t@e>")
        expected = _git_listing(tmp_path / "r")
        assert repo.committed_listing(second) == expected
        saved = orjson.loads((tmp_path / "r" / ".git" / "gitstate" / "head-listing.json").read_bytes())
        assert saved["commit"] == second and saved["files"] == expected
    finally:
        repo.close()


def blob_id_of(data: bytes) -> str:
    from gitstate.repo import blob_id

    return blob_id(data)


def test_a_listing_that_cannot_be_carried_over_is_removed(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that cannot carry the cached listing over (it is of another commit, or the store outgrew the
    limit) removes it, so later commits do not read and parse it again for nothing."""
    import gitstate.repo_index

    listing = store / ".git" / "gitstate" / "head-listing.json"
    _status(store)
    git(store, "commit", "-q", "--allow-empty", "-m", "by git")  # HEAD moves past the cached listing
    with make_store(store) as s:
        s.set("state.json", "mode", "after git")
        s.flush()
    assert not listing.exists()
    _status(store)
    assert listing.exists()
    monkeypatch.setattr(gitstate.repo_index, "LISTING_MAX_FILES", 2)  # the store has 2 files: one more is over
    with make_store(store) as s:
        s.set("third.json", "x", 1)
        s.flush()
    assert not listing.exists()
    assert _status(store)[1] == [] and not listing.exists()  # listed from the objects, not cached
