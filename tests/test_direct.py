"""The public API the CLI is built on: gitstate.direct (a store's directory without a Store), gitstate.hooks,
Store.get_commit / Store.remote_tracking and gitstate.remote.TOKEN_USERNAME."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import gitstate
from gitstate.direct import StoreDirectory, git_operation_advice, open_directory


def _store(path: Path) -> None:
    with gitstate.open(path, durability="manual", fsync=False, handle_signals=False) as store:
        store.set("state.json", "services.slack", False)
        store.flush()
        store.set("state.json", "services.slack", True)
        store.set("notes.md", None, "# notes\n")
        store.flush("second")
        store.snapshot("v1")


def test_open_directory_reads_history_without_committing_edits(tmp_path: Path) -> None:
    _store(tmp_path)
    (tmp_path / "state.json").write_text('{"services": {"slack": "by hand"}}\n', encoding="utf-8")
    (tmp_path / "new.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "notes.md").unlink()
    with open_directory(tmp_path) as d:
        assert isinstance(d, StoreDirectory)
        head = d.head
        assert d.branch and d.root == tmp_path
        assert d.log()[0].subject == "second"
        assert [e["c"] for e in d.log_entries()] == [c.id for c in d.log()]
        entry = d.log_entries(limit=1)[0]
        assert d.commit_from_entry(entry).id == head
        assert d.commit_message(head).startswith("second")
        assert len(d.log(doc="state.json", key="services.slack")) == 2
        assert d.get_commit("HEAD").id == head == d.resolve("HEAD")
        assert d.at("HEAD~1").get("state.json") == {"services": {"slack": False}}
        assert [c.key for c in d.diff("HEAD~1", "HEAD", doc="state.json")] == [("services", "slack")]
        assert "notes.md" in d.text_diff("HEAD~1", "HEAD")
        target, changes = d.restore_preview("HEAD~1", ["state.json"])
        assert target == d.resolve("HEAD~1") and [c.key for c in changes] == [("services", "slack")]
        assert [s.name for s in d.snapshots()] == ["v1"]
        assert d.uncommitted() == [
            {"doc": "new.json", "state": "new"},
            {"doc": "notes.md", "state": "deleted"},
            {"doc": "state.json", "state": "modified"},
        ]
        assert d.git_operation() is None
        assert d.remote_names() == [] and d.remotes() == {} and d.remotes_status() == {}
    with open_directory(tmp_path) as d:
        assert d.head == head  # nothing was committed
        assert len(d.uncommitted()) == 3


def test_open_directory_refuses_a_directory_that_is_no_store(tmp_path: Path) -> None:
    with pytest.raises(gitstate.StoreNotFound):
        open_directory(tmp_path)


def test_remote_views_and_management_without_a_store(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    _store(tmp_path / "s")
    with gitstate.open(tmp_path / "s", durability="manual", fsync=False, handle_signals=False) as store:
        store.remote_add("origin", str(server))
        assert store.remote_tracking("origin") is None
        store.push("origin")
        head = store.head
        assert store.remote_tracking("origin") == head
        assert store.get_commit("HEAD").id == head
    with open_directory(tmp_path / "s") as d:
        assert d.remote_names() == ["origin"]
        assert d.remotes() == {"origin": str(server)}
        assert d.tracking("origin") == head
        status = d.remotes_status()
        assert status["origin"]["fetched"] is True
        assert (status["origin"]["ahead"], status["origin"]["behind"]) == (0, 0)
        assert "origin" in d.push_status()
        stats = d.gc(prune_grace_s=0)
        assert stats["objects"] > 0
        d.remote_remove("origin")
        assert d.remotes() == {}


def test_git_operation_advice_is_public() -> None:
    assert "git merge --abort" in git_operation_advice("merge")


def test_token_username_is_public() -> None:
    from gitstate import remote

    assert remote.TOKEN_USERNAME == "x-access-token"


def test_hooks_install_is_library_code(tmp_path: Path) -> None:
    from gitstate.hooks import hook_sources, install_hooks

    _store(tmp_path)
    results = install_hooks(tmp_path)
    assert {r.name for r in results} == set(hook_sources())
    assert all(r.action == "installed" for r in results)
    assert [r.action for r in install_hooks(tmp_path)] == ["unchanged"] * len(results)
    with pytest.raises(gitstate.StoreNotFound):
        install_hooks(tmp_path / "nowhere")
