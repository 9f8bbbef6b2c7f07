"""Writes whose cost follows the change (issue 14): fsyncs per durable commit, and a flush written as one pack
that git reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import make_store

import gitstate


def test_a_durable_flush_is_one_pack_that_git_reads(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate", fsync=True, auto_pack=False)
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
    a.set("a.json", "k", 1)
    assert b.get("a.json", "k") == 1
    b.set("a.json", "k", 2)
    assert a.get("a.json", "k") == 2
    a.close()
    b.close()
    with gitstate.open(root, durability="manual", handle_signals=False) as c:
        assert c.get("a.json", "k") == 2


def _newest_pack(root: Path) -> Path:
    return max((root / ".git" / "objects" / "pack").glob("pack-*.pack"), key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.parametrize("damage", ["missing", "empty", "zeros", "torn"])
def test_a_pack_index_a_power_loss_took_is_made_again_on_open(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate", fsync=True, auto_pack=False)
    store.set("a.json", "k", 1)
    store.set("a.json", "k", 2)
    store.close()
    idx = _newest_pack(root).with_suffix(".idx")
    good = idx.read_bytes()
    idx.chmod(0o600)
    if damage == "missing":
        idx.unlink()
    else:
        idx.write_bytes({"empty": b"", "zeros": bytes(len(good)), "torn": good[:-100] + bytes(100)}[damage])
    with gitstate.open(root, durability="manual", handle_signals=False) as again:
        assert again.get("a.json", "k") == 2
    assert idx.read_bytes() == good
    subprocess.run(["git", "-C", str(root), "fsck", "--strict"], check=True, capture_output=True)


def test_a_damaged_pack_is_not_indexed_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="immediate", fsync=True, auto_pack=False)
    store.set("a.json", "k", 1)
    store.set("b.json", "k", 1)
    store.close()
    pack = _newest_pack(root)
    pack.with_suffix(".idx").unlink()
    data = bytearray(pack.read_bytes())
    data[20] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    repo = gitstate.open(root, durability="manual", handle_signals=False)
    repo.close()
    assert not pack.with_suffix(".idx").exists()
    assert "is damaged" in caplog.text


def test_a_second_handle_does_not_read_a_big_index_the_other_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitstate import repo, repo_index

    root = tmp_path / "s"
    docs = [f"d{i // 100:02d}/f{i % 100:02d}.json" for i in range(repo_index.DEFER_INDEX_ENTRIES + 100)]
    with make_store(root, durability="manual", fsync=False) as s:
        for i, d in enumerate(docs):
            s.set(d, "i", i)
        s.flush()
    a = make_store(root, durability="manual", fsync=False)
    b = make_store(root, durability="manual", fsync=False)
    for s in (a, b):
        s.set(docs[0], "i", -1)
        s.flush()
    reads: list[int] = []
    real_parse, real_scan = repo_index.GitIndex._parse, repo_index.index_has_conflicts
    monkeypatch.setattr(repo_index.GitIndex, "_parse", lambda self, data: reads.append(1) or real_parse(self, data))
    monkeypatch.setattr(repo, "index_has_conflicts", lambda data: reads.append(2) or real_scan(data))
    for i in range(3):
        a.set(docs[1], "i", i)
        a.flush()
        with a.services.commit_lock():
            a.services.repo.write_deferred_index()
        b.set(docs[2], "i", i)
        b.flush()
    assert reads == []
    a.close()
    b.close()
    out = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    assert out.stdout == ""
