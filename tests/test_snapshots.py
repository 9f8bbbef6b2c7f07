"""Deleting and thinning snapshots (``store.snapshot_delete``, ``store.snapshots_thin``, ``gitstate snapshot
--delete`` / ``--keep-last N --prefix P``), with real git reading the result; a policy stored with the store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fastimport import build_history
from helpers import commit_ids, fsck, git, invoke, make_store

import gitstate
from gitstate import retention
from gitstate.errors import GitStateError
from gitstate.snapshots import thin_snapshots


def test_thin_snapshots_chooses_the_oldest_of_the_prefix() -> None:
    tags = {f"checkpoint-{i}": 100 + i for i in range(8)} | {"v1": 1, "checkpoint": 50}
    assert thin_snapshots(tags, prefix="checkpoint-", keep_last=5) == ["checkpoint-0", "checkpoint-1", "checkpoint-2"]
    assert thin_snapshots(tags, prefix="checkpoint-", keep_last=20) == []
    assert sorted(thin_snapshots(tags, prefix="", keep_last=1)) == sorted(set(tags) - {"checkpoint-7"})
    with pytest.raises(GitStateError, match=">= 0"):
        thin_snapshots(tags, prefix="x", keep_last=-1)


def test_delete_a_snapshot_loose_or_packed(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="immediate") as s:
        s.set("state.json", "n", 1)
        first = s.snapshot("before-upgrade")
        s.set("state.json", "n", 2)
        s.snapshot("v2")
        git(s.path, "pack-refs", "--all")  # v2 and before-upgrade now live in packed-refs
        s.snapshot("loose-one")
        assert s.snapshot_delete("before-upgrade") == first
        assert s.snapshot_delete("loose-one") == s.head
        assert [x.name for x in s.snapshots()] == ["v2"]
        with pytest.raises(GitStateError, match="no snapshot named 'nope'"):
            s.snapshot_delete("nope")
        assert first in commit_ids(s.path)  # the history it named stays
    assert git(tmp_path / "s", "tag").split() == ["v2"]
    assert "before-upgrade" not in (tmp_path / "s" / ".git" / "packed-refs").read_text()
    fsck(tmp_path / "s")


def test_keep_the_last_five_checkpoints(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="immediate") as s:
        for i in range(8):
            s.set("queue.json", "n", i)
            s.snapshot(f"checkpoint-{i:03d}")
        s.snapshot("release-1")
        assert s.snapshots_thin("checkpoint-", 5, dry_run=True) == [f"checkpoint-{i:03d}" for i in range(3)]
        assert len(s.snapshots()) == 9
        assert s.snapshots_thin("checkpoint-", 5) == [f"checkpoint-{i:03d}" for i in range(3)]
        assert [x.name for x in s.snapshots()] == [f"checkpoint-{i:03d}" for i in range(3, 8)] + ["release-1"]
        assert s.snapshots_thin("checkpoint-", 5) == []
        with pytest.raises(GitStateError, match="needs a prefix"):
            s.snapshots_thin("", 1)
    fsck(tmp_path / "s")


def _ok(path: Path, *args: str) -> str:
    r = invoke(["-C", str(path), *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_cli_snapshot_delete_and_keep_last(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _ok(path, "init")
    for i in range(4):
        _ok(path, "set", "state.json", "n", str(i))
        _ok(path, "snapshot", f"checkpoint-{i}")
    out = _ok(path, "snapshot", "checkpoint-4", "--keep-last", "2", "--prefix", "checkpoint-")
    assert out.splitlines() == [
        out.splitlines()[0],
        "deleted snapshot checkpoint-0",
        "deleted snapshot checkpoint-1",
        "deleted snapshot checkpoint-2",
    ]
    assert out.startswith("snapshot checkpoint-4 -> ")
    assert git(path, "tag").split() == ["checkpoint-3", "checkpoint-4"]
    out = _ok(path, "snapshot", "--delete", "checkpoint-3")
    assert out.startswith("deleted snapshot checkpoint-3 (was ")
    data = json.loads(_ok(path, "snapshot", "--delete", "--keep-last", "0", "--prefix", "checkpoint-", "-n", "--json"))
    assert data == {"deleted": None, "thinned": ["checkpoint-4"], "dry_run": True}
    assert git(path, "tag").split() == ["checkpoint-4"]
    r = invoke(["-C", str(path), "snapshot", "--delete", "nope"])
    assert r.exit_code == 1 and "no snapshot named 'nope'" in r.output
    r = invoke(["-C", str(path), "snapshot", "--keep-last", "2"])
    assert r.exit_code == 2 and "--keep-last and --prefix go together" in r.output


def test_store_forget_with_rules_and_a_stored_policy_that_travels_with_clones(tmp_path: Path) -> None:
    path = tmp_path / "s"
    build_history(path, 24 * 20, start=1_788_220_800, step_s=3600)
    with gitstate.open(path, durability="manual") as s:
        plan = s.forget(keep_within="7d", daily=3, dry_run=True)
        assert not plan.applied and plan.dropped == 308
        plan = s.forget(keep_within="7d", daily=3)
        assert plan.applied and len(plan.points) == 3
        assert len(commit_ids(path)) == 169
        assert s.retention_policy() is None
        policy = retention.Policy(keep_within="30d", daily=7, budget_mb=50)
        commit = s.set_retention_policy(policy)
        assert commit == s.head and s.retention_policy() == policy
        assert s.set_retention_policy(policy) is None  # already stored
        assert s.log(limit=1)[0].message.startswith("retention policy: keep-within 30d, daily 7")
        assert s.budget().budget == 50_000_000
    fsck(path)
    subprocess.run(["git", "clone", "-q", str(path), str(tmp_path / "c")], check=True)
    assert retention.load_policy(tmp_path / "c") == policy
    with gitstate.open(tmp_path / "empty") as e, pytest.raises(retention.RetentionError, match="no retention rules"):
        e.forget()
