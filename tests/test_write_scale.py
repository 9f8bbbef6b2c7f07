"""Writes whose cost follows the change (issue 14): fsyncs per durable commit, and a flush written as one pack
that git reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import make_store

import gitstate


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_an_immediate_small_set_costs_at_most_seven_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # work-tree file + its directory (2), one pack + its index + objects/pack (3), the ref + refs/heads (2);
    # as loose objects the blob, tree and commit cost 3 more files and up to 4 directories (11 in all).
    store = make_store(tmp_path / "s", durability="immediate", fsync=True)
    store.services.repo.pack_writes = True
    store.set("a.json", None, {"x": "y" * 1000})
    calls = _count_fsyncs(monkeypatch)
    for i in range(3):
        store.set("a.json", None, {"x": "z" * 1000, "i": i})
    store.close()
    assert len(calls) <= 3 * 7


def test_a_durable_flush_is_one_pack_that_git_reads(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate", fsync=True, auto_pack=False)
    store.services.repo.pack_writes = True
    store.set("a.json", "k", 1)
    store.set("dir/b.json", "k", 2)
    head = store.services.repo.head()
    store.close()
    packs = list((root / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) >= 2  # one per commit
    loose = [p for p in (root / ".git" / "objects").glob("??/*")]
    assert loose == []
    subprocess.run(["git", "-C", str(root), "fsck", "--strict"], check=True, capture_output=True)
    out = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], check=True, capture_output=True, text=True)
    assert out.stdout == ""
    shown = subprocess.run(
        ["git", "-C", str(root), "show", f"{head}:dir/b.json"], check=True, capture_output=True, text=True
    )
    assert '"k": 2' in shown.stdout or '"k":2' in shown.stdout


def test_a_second_handle_reads_what_the_first_wrote_as_a_pack(tmp_path: Path) -> None:
    root = tmp_path / "s"
    a = make_store(root, durability="immediate", fsync=True, auto_pack=False)
    b = make_store(root, durability="immediate", fsync=True, auto_pack=False)
    a.services.repo.pack_writes = b.services.repo.pack_writes = True
    a.set("a.json", "k", 1)
    assert b.get("a.json", "k") == 1
    b.set("a.json", "k", 2)
    assert a.get("a.json", "k") == 2
    a.close()
    b.close()
    with gitstate.open(root, durability="manual", handle_signals=False) as c:
        assert c.get("a.json", "k") == 2
