"""A broken save is never overwritten (issue 13): while a document is quarantined, program writes are committed
against the last good version and the human's file stays exactly as they saved it; reads serve the program's
view; a fixed save is merged key by key with what was committed meanwhile and the quarantine clears by itself.

Files are saved the way editors save them (write-and-rename like vim, truncate-and-write like VS Code) and
checked byte for byte; real git checks the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import fsck, git, git_show, invoke, make_store, status_porcelain, wait_until

import gitstate
from gitstate import doctor
from gitstate.events import Event

GOOD = '{\n  "mode": "fast",\n  "owner": "alice"\n}\n'
BAD = '{\n  "mode": "slow",\n  "owner": "alice"\n  oops\n}\n'


def _save_like_vim(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_like_vscode(path: Path, text: str) -> None:
    with open(path, "r+" if path.exists() else "w") as f:
        f.truncate(0)
        f.write(text)


class Events:
    def __init__(self, store: gitstate.Store) -> None:
        self.items: list[Event] = []
        for name in ("invalid_edit", "quarantine_cleared", "external_change", "committed"):
            store.on(name, self.items.append)

    def of(self, name: str) -> list[Any]:
        return [e for e in list(self.items) if e.name == name]


def _broken(tmp_path: Path) -> tuple[Path, gitstate.Store, Events]:
    root = tmp_path / "s"
    with make_store(root) as s:
        s.set("settings.json", None, {"mode": "fast", "owner": "alice"})
        s.flush()
    assert (root / "settings.json").read_text() == GOOD
    store = make_store(root)
    events = Events(store)
    _save_like_vim(root / "settings.json", BAD)
    store.ingest(["settings.json"])  # what the watcher calls once the save settles
    return root, store, events


def test_program_writes_are_committed_but_the_broken_file_is_left_as_saved(tmp_path: Path) -> None:
    root, store, events = _broken(tmp_path)
    try:
        [ev] = events.of("invalid_edit")
        assert ev.doc == "settings.json" and ev.line == 4 and ev.quarantined_to
        assert Path(ev.quarantined_to).read_text() == BAD
        [entry] = store.quarantined()
        assert entry.doc == "settings.json" and entry.line == 4 and entry.column is not None
        assert store.quarantine_text("settings.json") == BAD.encode()
        before = len(git(root, "rev-list", "HEAD").split())
        store.set("settings.json", "count", 1)
        store.set("other.json", "x", 1)
        store.flush()
        store.set("settings.json", "count", 2)
        store.flush()
        # committed against the last good version; the human's bytes untouched on disk
        assert (root / "settings.json").read_text() == BAD
        assert json.loads(git_show(root, "HEAD", "settings.json")) == {"mode": "fast", "owner": "alice", "count": 2}
        assert json.loads((root / "other.json").read_text()) == {"x": 1}
        assert len(git(root, "rev-list", "HEAD").split()) == before + 2
        assert store.get("settings.json") == {"mode": "fast", "owner": "alice", "count": 2}  # the program's view
        assert len(events.of("invalid_edit")) == 1  # the same broken save is reported once, not on every flush
        assert status_porcelain(root) == " M settings.json\n"  # git sees the file differs from HEAD: it does
        fsck(root)
    finally:
        store.close()


def test_a_fixed_save_is_merged_with_what_was_committed_meanwhile_and_clears(tmp_path: Path) -> None:
    root, store, events = _broken(tmp_path)
    try:
        store.set("settings.json", "count", 2)  # committed while the human's save is broken
        store.set("settings.json", "owner", "program")
        store.flush()
        fixed = '{\n  "mode": "slow",\n  "owner": "bob"\n}\n'  # edited against the last good version
        _save_like_vscode(root / "settings.json", fixed)
        store.ingest(["settings.json"])
        merged = {"mode": "slow", "owner": "bob", "count": 2}  # the human wins on the key both changed
        assert json.loads(git_show(root, "HEAD", "settings.json")) == merged
        assert store.get("settings.json") == merged
        text = (root / "settings.json").read_text()
        assert json.loads(text) == merged and text.startswith('{\n  "mode": "slow",\n  "owner": "bob"')
        assert store.quarantined() == []
        [cleared] = events.of("quarantine_cleared")
        assert cleared.doc == "settings.json" and cleared.commit == store.head
        body = git(root, "log", "-1", "--format=%B")
        assert "Gitstate-Actor: human" in body and "mode" in body
        assert status_porcelain(root) == ""
        fsck(root)
    finally:
        store.close()


def test_a_fixed_save_with_nothing_committed_meanwhile_is_committed_as_saved(tmp_path: Path) -> None:
    root, store, events = _broken(tmp_path)
    try:
        fixed = '{"mode": "slow", "owner": "alice"}\n'
        _save_like_vim(root / "settings.json", fixed)
        store.ingest(["settings.json"])
        assert (root / "settings.json").read_text() == fixed  # not rewritten
        assert git_show(root, "HEAD", "settings.json") == fixed
        assert store.quarantined() == [] and len(events.of("quarantine_cleared")) == 1
        assert status_porcelain(root) == ""
    finally:
        store.close()


def test_a_save_back_to_the_committed_bytes_clears_the_quarantine(tmp_path: Path) -> None:
    root, store, events = _broken(tmp_path)
    try:
        _save_like_vim(root / "settings.json", GOOD)
        store.ingest(["settings.json"])
        assert store.quarantined() == [] and len(events.of("quarantine_cleared")) == 1
        assert status_porcelain(root) == ""
    finally:
        store.close()


def test_a_second_broken_save_replaces_the_text_and_keeps_since(tmp_path: Path) -> None:
    root, store, events = _broken(tmp_path)
    try:
        [first] = store.quarantined()
        worse = "{ nope"
        _save_like_vim(root / "settings.json", worse)
        store.ingest(["settings.json"])
        [entry] = store.quarantined()
        assert entry.since == first.since and store.quarantine_text("settings.json") == worse.encode()
        assert len(events.of("invalid_edit")) == 2
    finally:
        store.close()


def test_drop_puts_the_committed_version_back(tmp_path: Path) -> None:
    root, store, _ = _broken(tmp_path)
    try:
        store.set("settings.json", "count", 2)
        store.flush()
        assert store.quarantine_drop("settings.json") is True
        assert json.loads((root / "settings.json").read_text()) == {"mode": "fast", "owner": "alice", "count": 2}
        assert store.quarantined() == [] and status_porcelain(root) == ""
        assert store.quarantine_drop("settings.json") is False
    finally:
        store.close()


def test_open_quarantines_then_a_fix_before_the_next_open_is_merged(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with make_store(root) as s:
        s.set("settings.json", None, {"mode": "fast", "owner": "alice"})
        s.flush()
    _save_like_vim(root / "settings.json", BAD)
    loaded: list[Any] = []
    with make_store(root, on={"loaded": loaded.append}) as s:
        assert list(loaded[0].quarantined) == ["settings.json"]
        assert Path(loaded[0].quarantined["settings.json"]).read_text() == BAD
        [entry] = s.quarantined()
        assert entry.base is not None  # the last good version the edit was made against
        s.set("settings.json", "count", 1)
        s.flush()
        assert (root / "settings.json").read_text() == BAD
    _save_like_vim(root / "settings.json", '{"mode": "slow", "owner": "alice"}\n')
    with make_store(root) as s:
        assert s.get("settings.json") == {"mode": "slow", "owner": "alice", "count": 1}
        assert s.quarantined() == []
    assert json.loads(git_show(root, "HEAD", "settings.json")) == {"mode": "slow", "owner": "alice", "count": 1}
    assert status_porcelain(root) == ""
    fsck(root)


def test_the_watcher_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = make_store(root)
    store.set("settings.yaml", None, {"mode": "fast", "owner": "alice"})
    store.flush()
    events = Events(store)
    w = store.watch(settle_ms=50, settle_timeout_ms=300)
    try:
        broken = "# set by hand\nmode: slow\nowner: [alice\n"
        _save_like_vim(root / "settings.yaml", broken)
        wait_until(lambda: events.of("invalid_edit"), 20, "the broken save is quarantined")
        store.set("settings.yaml", "count", 3)
        store.flush()
        assert (root / "settings.yaml").read_text() == broken
        fixed = "# set by hand\nmode: slow\nowner: alice\n"
        _save_like_vscode(root / "settings.yaml", fixed)
        wait_until(lambda: events.of("quarantine_cleared"), 20, "the fixed save clears the quarantine")
        assert w.wait_idle(timeout_s=20)
        assert store.get("settings.yaml") == {"mode": "slow", "owner": "alice", "count": 3}
        text = (root / "settings.yaml").read_text()
        assert text.startswith(fixed) and "count: 3" in text  # the human's comment kept, the program's key added
        assert status_porcelain(root) == ""
    finally:
        w.stop()
        store.close()
    fsck(root)


def test_status_and_doctor_show_waiting_documents(tmp_path: Path) -> None:
    root, store, _ = _broken(tmp_path)
    store.close()
    r = invoke(["-C", str(root), "status"])
    assert r.exit_code == 0, r.output
    assert "quarantine" in r.output and "settings.json:4" in r.output
    data = json.loads(invoke(["-C", str(root), "status", "--json"]).output)
    assert [q["doc"] for q in data["quarantined"]] == ["settings.json"]
    [finding] = [f for f in doctor.check(root, check_remotes=False) if f.check == "quarantine"]
    assert finding.level == "warning" and finding.message.startswith("settings.json:4")
    assert "gitstate quarantine" in (finding.fix or finding.message)


def test_init_says_what_it_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "good.json").write_text('{"a": 1}\n')
    (root / "bad.yaml").write_text("a: [1\n")
    r = invoke(["-C", str(root), "init"])
    assert r.exit_code == 0, r.output
    assert "bad.yaml" in r.output and "quarantine" in r.output
    assert "gitstate quarantine" in r.output


@pytest.mark.parametrize("save", [_save_like_vim, _save_like_vscode])
def test_a_fixed_yaml_save_keeps_the_humans_layout_when_merged(tmp_path: Path, save: Any) -> None:
    root = tmp_path / "s"
    with make_store(root) as s:
        s.set("agent.yaml", None, {"model": "small", "retries": 2})
        s.flush()
    store = make_store(root)
    try:
        save(root / "agent.yaml", "model: big\nretries: [\n")
        store.ingest(["agent.yaml"])
        store.set("agent.yaml", "budget", 10)
        store.flush()
        fixed = "# tuned by ops\nmodel:   big   # the large one\nretries: 2\n"
        save(root / "agent.yaml", fixed)
        store.ingest(["agent.yaml"])
        text = (root / "agent.yaml").read_text()
        assert text.startswith(fixed) and text.rstrip().endswith("budget: 10")
        assert store.get("agent.yaml") == {"model": "big", "retries": 2, "budget": 10}
        assert status_porcelain(root) == ""
    finally:
        store.close()


def test_the_async_api_has_the_same_methods(tmp_path: Path) -> None:
    import asyncio

    root, store, _ = _broken(tmp_path)
    store.close()

    async def main() -> None:
        async with gitstate.aopen(root, durability="manual", fsync=False) as a:
            [entry] = await a.quarantined()
            assert entry.doc == "settings.json"
            assert await a.quarantine_text("settings.json") == BAD.encode()
            assert await a.quarantine_drop("settings.json") is True
            assert await a.quarantined() == []

    asyncio.run(main())
    assert (root / "settings.json").read_text() == GOOD


def test_restore_and_undo_commit_but_leave_the_broken_save(tmp_path: Path) -> None:
    root, store, _ = _broken(tmp_path)
    try:
        first = store.head
        store.set("settings.json", "count", 1)
        store.set("other.json", "x", 1)
        store.flush()
        assert first is not None
        store.restore(first)
        assert json.loads(git_show(root, "HEAD", "settings.json")) == {"mode": "fast", "owner": "alice"}
        assert not (root / "other.json").exists()
        assert (root / "settings.json").read_text() == BAD
        store.undo()
        assert json.loads(git_show(root, "HEAD", "settings.json"))["count"] == 1
        assert (root / "settings.json").read_text() == BAD
        assert status_porcelain(root) == " M settings.json\n"
        assert [q.doc for q in store.quarantined()] == ["settings.json"]
    finally:
        store.close()


def test_a_pull_leaves_the_broken_save(tmp_path: Path) -> None:
    root, store, _ = _broken(tmp_path)
    try:
        origin = tmp_path / "origin.git"
        git(tmp_path, "init", "-q", "--bare", str(origin))
        store.remote_add("origin", str(origin))
        store.push("origin")
        other = tmp_path / "other"
        with gitstate.clone(str(origin), other, durability="manual", fsync=False) as o:
            o.set("settings.json", "from_other", True)
            o.flush()
            o.push("origin")
        store.pull("origin")
        assert json.loads(git_show(root, "HEAD", "settings.json"))["from_other"] is True
        assert (root / "settings.json").read_text() == BAD
        assert status_porcelain(root) == " M settings.json\n"
    finally:
        store.close()


def test_without_a_watcher_the_next_flush_finds_the_broken_save_and_keeps_it(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with make_store(root) as s:
        s.set("settings.json", None, {"mode": "fast"})
        s.flush()
        events = Events(s)
        _save_like_vscode(root / "settings.json", BAD)
        s.set("settings.json", "count", 1)
        s.flush()
        assert (root / "settings.json").read_text() == BAD
        assert [e.doc for e in events.of("invalid_edit")] == ["settings.json"]
        assert json.loads(git_show(root, "HEAD", "settings.json")) == {"mode": "fast", "count": 1}
