"""Four fsyncs per immediate commit (issue 14): the flush's objects as one pack (the pack, its directory) and the
ref (file, directory); the work-tree files are written first without fsync, and a file that a power loss takes
back to one of the store's own earlier versions is put back from HEAD on open, never committed as a hand edit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import commit_ids, make_store

import gitstate


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_an_immediate_small_set_costs_four_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "s", durability="immediate", fsync=True)
    store.set("a.json", None, {"x": "y" * 1000})
    calls = _count_fsyncs(monkeypatch)
    for i in range(3):
        store.set("a.json", None, {"x": "z" * 1000, "i": i})
    store.close()
    assert len(calls) == 3 * 4


def _lose_the_last_rename(path: Path, old: bytes, before: float) -> None:
    """What a power loss can leave: the file as the store wrote it before, with that write's time."""
    path.write_bytes(old)
    os.utime(path, (before, before))


def test_a_file_a_power_loss_took_back_is_put_back_from_head(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate")
    store.set("a.json", "n", 1)
    old = (root / "a.json").read_bytes()
    written = (root / "a.json").stat().st_mtime
    store.set("a.json", "n", 2)
    store.set("b.json", "n", 1)  # a later commit of another document
    store.close()
    ids = commit_ids(root)
    _lose_the_last_rename(root / "a.json", old, written)
    (root / "b.json").unlink()  # its creation did not reach the disk either
    os.utime(root, (written, written))
    with gitstate.open(root, durability="manual", handle_signals=False) as again:
        assert again.get("a.json", "n") == 2
        assert again.get("b.json", "n") == 1
    assert commit_ids(root) == ids  # nothing committed as a hand edit
    assert b'"n":2' in (root / "a.json").read_bytes().replace(b" ", b"")
    assert (root / "b.json").exists()


def test_a_hand_edit_back_to_an_old_version_is_committed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate")
    store.set("a.json", "n", 1)
    old = (root / "a.json").read_bytes()
    store.set("a.json", "n", 2)
    store.close()
    future = time.time() + 5  # made after the last commit (as any edit while the store is closed is)
    (root / "a.json").write_bytes(old)
    os.utime(root / "a.json", (future, future))
    with gitstate.open(root, durability="manual", handle_signals=False) as again:
        assert again.get("a.json", "n") == 1
        assert again.log(limit=1)[0].actor == "human"


def test_a_restore_fsyncs_each_file_and_each_directory_once_before_the_ref(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore writes its files durably before the branch moves: each file fsynced, each directory holding
    them once for the batch (20 files in one directory: 20 + 1, not 20 + 20)."""
    store = make_store(tmp_path / "s", durability="manual", fsync=True)
    docs = [f"tasks/t{i:02d}.json" for i in range(20)]
    for d in docs:
        store.set(d, "status", "todo")
    store.flush()
    target = store.head
    for d in docs:
        store.set(d, "status", "done")
    store.flush()
    tasks = os.stat(tmp_path / "s" / "tasks")
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        is_dir = (st.st_dev, st.st_ino) == (tasks.st_dev, tasks.st_ino)
        events.append("tasks-dir" if is_dir else "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        if str(dst).endswith("refs/heads/main"):
            events.append("ref")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert target is not None
    store.restore(target)
    monkeypatch.undo()
    store.close()
    ref_at = events.index("ref")
    before_ref = events[:ref_at]
    # The commit's pack and its directory, the 20 files, their directory once, then the ref file.
    assert before_ref == ["file", "dir", *["file"] * 20, "tasks-dir", "file"], events
    with gitstate.open(tmp_path / "s", durability="manual", handle_signals=False) as s:
        assert {s.get(d, "status") for d in docs} == {"todo"}
