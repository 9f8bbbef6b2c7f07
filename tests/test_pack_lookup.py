"""Objects are looked up in the newest packs first (repo_objects.open_object_store): a durable flush writes one
small pack, and the next flush (this handle's or another's) reads what it wrote, so with many packs (the packer
off or not yet run) a read must not try every pack, nor list the pack directory again after each miss."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dulwich.pack import Pack
from helpers import git, make_store


def _count_pack_lookups(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"tries": 0, "misses": 0}
    real = Pack.get_raw

    def counting(self: Pack, sha: Any) -> Any:
        counts["tries"] += 1
        try:
            return real(self, sha)
        except KeyError:
            counts["misses"] += 1
            raise

    monkeypatch.setattr(Pack, "get_raw", counting)
    return counts


def _packs(path: Path) -> int:
    return sum(name.endswith(".pack") for name in os.listdir(path / ".git" / "objects" / "pack"))


def test_another_handles_new_commit_is_read_from_the_newest_pack_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    writer = make_store(path, fsync=True, auto_pack=False)
    reader = make_store(path, auto_pack=False)
    try:
        for i in range(40):
            writer.set("a.json", "n", i)
            writer.flush()
        reader.set("b.json", "n", 0)
        reader.flush()
        assert _packs(path) >= 40
        writer.set("a.json", "n", "last")
        writer.flush()
        counts = _count_pack_lookups(monkeypatch)
        reader.set("b.json", "n", 1)
        reader.flush()  # catches up with the writer's commit: its commit and trees are in the newest pack
        assert counts["tries"] > 0
        assert counts["misses"] <= 2, counts
        assert reader.get("a.json") == {"n": "last"}
    finally:
        writer.close()
        reader.close()
    git(path, "fsck", "--strict")  # raises on any fault


def test_a_pack_that_lands_unseen_is_still_found(tmp_path: Path) -> None:
    """Only the order of lookups changes: an object in a pack the cache has not seen yet (the directory's mtime
    may not have moved within its clock tick) is found by dulwich's own rescan after a miss."""
    path = tmp_path / "s"
    writer = make_store(path, fsync=True, auto_pack=False)
    reader = make_store(path, auto_pack=False)
    try:
        writer.set("a.json", "n", 0)
        writer.flush()
        assert reader.get("a.json") == {"n": 0}
        objects = reader._repo._objects  # the reader's object store, already holding every pack it saw
        writer.set("a.json", "n", 1)
        writer.flush()
        objects._pack_dir_stamp = objects._stamp()  # as if the directory's mtime had not moved
        head = writer.head
        assert head is not None
        assert reader._repo.read_object(head).id.decode() == head
    finally:
        writer.close()
        reader.close()


def test_fan_out_table_in_one_call_reads_what_dulwich_reads(tmp_path: Path) -> None:
    """The replacement of dulwich's fan-out reader gives the same 256 counts for gitstate's packs and git's, and
    the same error for a cut-short index."""
    import struct

    from dulwich.object_format import SHA1
    from dulwich.pack import FilePackIndex, load_pack_index

    from gitstate import repo_objects

    root = tmp_path / "s"
    with make_store(root, durability="immediate", fsync=False) as s:
        for i in range(40):
            s.set(f"d{i}.json", "x", i)
        assert s.head is not None
        s.get("d0.json", "x")  # the object store is open: the reader is in place
    assert FilePackIndex._read_fan_out_table is repo_objects._fan_out_in_one_call
    git(root, "gc", "-q")
    (idx,) = (root / ".git" / "objects" / "pack").glob("*.idx")
    index = load_pack_index(str(idx), SHA1)
    try:
        data = idx.read_bytes()
        by_slices = [struct.unpack(">L", data[8 + i * 4 : 12 + i * 4])[0] for i in range(256)]  # dulwich's way
        assert index._fan_out_table == by_slices and by_slices[-1] == len(index) >= 80
    finally:
        index.close()
    short = type("Short", (), {"_contents": data[:100]})()
    with pytest.raises(struct.error):
        repo_objects._fan_out_in_one_call(short, 8)


def test_a_handle_reads_what_its_own_flushes_packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush does not list the pack directory after writing its pack (it reads nothing back); a later read of
    an object in one of those packs lists it once, not once per pack written, nor once per miss."""
    path = tmp_path / "s"
    other = make_store(path, fsync=True, auto_pack=False)
    for i in range(40):
        other.set("b.json", "n", i)
        other.flush()
    other.close()
    pack_dir = os.fspath(path / ".git" / "objects" / "pack")
    listings = [0]
    real_listdir = os.listdir

    def counting_listdir(p: Any = ".") -> list[str]:
        if os.fspath(p) == pack_dir:
            listings[0] += 1
        return real_listdir(p)

    store = make_store(path, fsync=True, auto_pack=False)
    try:
        assert store.at("HEAD~1").get("b.json") == {"n": 38}  # read from a pack: the object store is open
        monkeypatch.setattr(os, "listdir", counting_listdir)
        for i in range(40):
            store.set("a.json", "n", i)
            store.flush()
        assert listings[0] == 0
        assert _packs(path) >= 80
        counts = _count_pack_lookups(monkeypatch)
        assert store.at("HEAD~42").get("b.json") == {"n": 37}  # not in its caches: read from a pack
        assert counts["tries"] > 0
        assert listings[0] <= 2  # the new packs once; dulwich lists again before reading a loose object
    finally:
        store.close()
    git(path, "fsck", "--strict")
