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
