"""A flush describes its change from the committed version it already holds (issue 14): no read or decode of the
committed bytes after its own flush, and the kept version never sees later writes (views change in place)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import git_show, make_store

import gitstate
from gitstate import codecs, journal


def _body(store: gitstate.Store) -> list[str]:
    """The change lines of the newest commit's message."""
    msg = store.log(limit=1)[0].message
    lines = [line for line in msg.splitlines()[1:] if line and not line.startswith("Gitstate-")]
    return lines or msg.splitlines()[:1]


def test_a_flush_after_a_flush_neither_reads_nor_decodes_the_committed_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", durability="manual", fsync=False)
    store.set("a.json", None, {"k": {"n": 1}, "big": list(range(1000))})
    store.flush()
    decodes: list[str] = []
    real = codecs.JSON.decode

    def counting(data: bytes, doc: str = "") -> object:
        decodes.append(doc)
        return real(data, doc)

    monkeypatch.setattr(codecs.JSON, "decode", counting)
    for i in range(3):
        store.set("a.json", "k.n", i + 10)
        store.flush()
        assert _body(store) == [f"a.json: k.n {i + 9 if i else 1} -> {i + 10}"]
    store.set("a.json", None, {"k": {"n": 12}, "whole": True})
    store.flush()
    assert decodes == []
    body = _body(store)
    assert len(body) == 2 and body[0].startswith("a.json: big removed (was [0,1,2,")
    assert body[1] == "a.json: whole = true"
    store.close()


def test_the_kept_version_is_not_changed_by_later_writes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root, durability="manual", fsync=False)
    store.set("a.json", None, {"list": [1], "map": {"x": 1}})
    first = store.flush()
    assert first is not None
    store.set("a.json", "list", [1, 2])  # key writes: applied to a copy of the kept value
    store.append("a.json", "list", 3)
    store.update("a.json", {"y": 2}, "map")
    store.flush()
    assert _body(store) == ["a.json: list.1 = 2", "a.json: list.2 = 3", "a.json: map.y = 2"]
    assert '"list":[1]' in git_show(root, first, "a.json").replace(" ", "").replace("\n", "")
    assert store.get("a.json") == {"list": [1, 2, 3], "map": {"x": 1, "y": 2}}
    store.set("a.json", "map.x", 5)
    store.flush()
    assert _body(store) == ["a.json: map.x 1 -> 5"]
    store.close()
    with gitstate.open(root, durability="manual", handle_signals=False) as again:
        assert again.get("a.json") == {"list": [1, 2, 3], "map": {"x": 5, "y": 2}}


def test_a_commit_made_elsewhere_is_read_again(tmp_path: Path) -> None:
    root = tmp_path / "s"
    a = make_store(root, durability="manual", fsync=False)
    b = make_store(root, durability="manual", fsync=False)
    a.set("a.json", None, {"n": 1, "m": 1})
    a.flush()
    assert b.get("a.json", "n") == 1
    b.set("a.json", "n", 2)
    b.flush()
    a.set("a.json", "m", 3)  # a's kept version (n=1) is no longer the head's: it reads the head again
    a.flush()
    assert _body(a) == ["a.json: m 1 -> 3"]
    assert a.get("a.json") == {"n": 2, "m": 3}
    a.close()
    b.close()


def test_a_whole_document_set_shares_its_value_with_the_journal_and_a_later_key_write_copies_it(
    tmp_path: Path,
) -> None:
    """The view of a whole-document set IS the journal's value (no second copy of a big value); a later key write
    must copy it first, or rebuilding the view from the journal (after another handle's commit) replays the key
    write on a value that already holds it."""
    root = tmp_path / "s"
    a = make_store(root, durability="manual", fsync=False)
    b = make_store(root, durability="manual", fsync=False)
    value = {"l": [1]}
    a.set("d.json", None, value)
    value["l"].append("caller's own change")  # set() took a private copy
    a.append("d.json", "l", 2)
    assert a.get("d.json") == {"l": [1, 2]}
    b.set("other.json", None, {"x": 1})
    b.set("d.json", "x", 1)
    b.flush()
    # a sees b's commit: its view of d.json is rebuilt from b's version plus a's journal (set, then append).
    assert a.get("d.json") == {"l": [1, 2]}
    a.flush()
    assert make_store(root, durability="manual").get("d.json") == {"l": [1, 2]}
    a.close()
    b.close()


@pytest.mark.parametrize("kept", [True, False], ids=["kept-version", "too-big-to-keep"])
def test_a_write_during_a_flush_does_not_change_the_changes_that_flush_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    """The flush describes its changes without copying the values (a 10 MB document has 100,000 of them): a
    write arriving while it talks to the disk (outside the store's lock) must copy the view instead of changing
    the values the commit message and the history index are being made from, also when the view does not become
    a kept committed version (over journal.BASES_BYTES)."""
    import threading

    if not kept:
        monkeypatch.setattr(journal, "BASES_BYTES", 1)
    store = make_store(tmp_path / "s", durability="manual", fsync=False)
    store.set("d.json", None, {"k": {"n": 1}})
    store.flush()
    store.set("d.json", "k.tags", ["a", "b"])  # one change: k.tags added, its value the view's own list
    recorded: list[object] = []
    real_record = store._record
    real_commit_files = store._repo.commit_files

    def commit_files(*args: object, **kwargs: object) -> str:
        writer = threading.Thread(target=store.append, args=("d.json", "k.tags", "late"))
        writer.start()  # takes the store's lock only, which the flush does not hold here
        writer.join()
        return real_commit_files(*args, **kwargs)  # type: ignore[arg-type]

    def record(commit: str, actor: str, changes: list[object], **kw: Any) -> None:
        recorded.extend(c.new for c in changes)  # type: ignore[attr-defined]
        real_record(commit, actor, changes, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store._repo, "commit_files", commit_files)
    monkeypatch.setattr(store, "_record", record)
    store.flush()
    assert recorded == [["a", "b"]]  # the change of that commit, not the list as the late write left it
    assert _body(store) == ['d.json: k.tags = ["a","b"]']
    assert store.get("d.json") == {"k": {"n": 1, "tags": ["a", "b", "late"]}}
    store.flush()
    assert _body(store) == ['d.json: k.tags.2 = "late"']
    store.close()
