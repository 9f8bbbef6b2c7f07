"""The stored retention policy applied by the background packer (gitstate/gc/retain.py), with real git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastimport import build_history
from helpers import GIT_ENV, commit_ids, fsck, git

from gitstate import remote, retention
from gitstate.gc import BackgroundPacker
from gitstate.gc.retain import apply_stored_policy, policy_due
from gitstate.repo import Repository

START = 1_788_220_800  # 2026-09-01 00:00 UTC
HOUR = 3600


@pytest.fixture
def opened() -> Iterator[list[Repository]]:
    """Repositories a test opens, closed after it."""
    repos: list[Repository] = []
    yield repos
    for repo in repos:
        repo.close()


def _store_with_policy(
    tmp_path: Path, policy: retention.Policy | None, opened: list[Repository]
) -> tuple[Path, Repository]:
    path = tmp_path / "store"
    build_history(path, 24 * 20, start=START, step_s=HOUR)
    if policy is not None:
        retention.save_policy(path, policy)
        when = f"{START + 24 * 20 * HOUR} +0000"
        env = {**GIT_ENV, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        subprocess.run(["git", "-C", os.fspath(path), "add", retention.POLICY_FILE], check=True, env=env)
        subprocess.run(["git", "-C", os.fspath(path), "commit", "-qm", "retention policy"], check=True, env=env)
    opened.append(Repository.open(path, create=False))
    return path, opened[-1]


def test_nothing_is_due_without_a_stored_policy(tmp_path: Path, opened: list[Repository]) -> None:
    _, repo = _store_with_policy(tmp_path, None, opened)
    assert policy_due(repo) is None
    assert apply_stored_policy(repo) is None


def test_the_stored_policy_is_applied_once_per_interval_and_gc_reclaims(
    tmp_path: Path, opened: list[Repository]
) -> None:
    policy = retention.Policy(keep_within="7d", daily=3)
    path, repo = _store_with_policy(tmp_path, policy, opened)
    assert policy_due(repo) == policy
    out = apply_stored_policy(repo)
    assert out is not None and out["dropped"] == 309 and out["points"] == 3
    assert out["gc"]["size_after"] < out["gc"]["size_before"]
    assert len(commit_ids(path)) == 169  # the window (7 days of hourly commits), with the policy commit
    fsck(path)
    assert apply_stored_policy(repo) is None  # not due again within the interval
    assert apply_stored_policy(repo, interval_s=0) == {"dropped": 0, "points": 3}
    # A size sample was taken for the budget's growth estimate.
    assert (path / ".git" / "gitstate" / retention.SIZE_LOG).is_file()


def test_over_budget_applies_at_once(tmp_path: Path, opened: list[Repository]) -> None:
    path, repo = _store_with_policy(tmp_path, retention.Policy(keep_within="7d", daily=3, budget_mb=0.001), opened)
    assert apply_stored_policy(repo) is not None
    # Still over budget (the window alone is bigger): applied again at once, and the budget says so.
    assert policy_due(repo) is not None
    assert "over its budget" in (retention.budget_report(repo, retention.load_policy(path)).warning or "")


def test_unpushed_history_is_never_dropped_in_the_background(tmp_path: Path, opened: list[Repository]) -> None:
    path, repo = _store_with_policy(tmp_path, retention.Policy(keep_within="7d", daily=3), opened)
    bare = tmp_path / "backup.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    remote.add_remote(repo, "origin", str(bare))
    before = commit_ids(path)
    out = apply_stored_policy(repo)
    assert out is not None and "push first" in out["refused"]
    assert commit_ids(path) == before and not (path / ".git" / "shallow").exists()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_background_packer_applies_the_stored_policy(tmp_path: Path, opened: list[Repository], mode: str) -> None:
    path, repo = _store_with_policy(tmp_path, retention.Policy(keep_within="7d", daily=3), opened)
    packer = BackgroundPacker(repo, mode=mode, start_delay_s=3600)  # only the pass asked for runs
    try:
        result = packer.run_now()
    finally:
        packer.stop()
    assert result["retention"]["dropped"] == 309
    assert len(commit_ids(path)) == 169
    fsck(path)
