"""A git merge, rebase or cherry-pick in progress in the store directory: the store holds its writes (the work
tree and the index are git's until the user finishes), says so, and commits them on top of the result after.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import fsck, git, make_store, run_cli, status_porcelain, wait_until

import gitstate
from gitstate.events import GitOperationInProgress
from gitstate.repo import git_operation_in_progress


def _doc(**values: object) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def _diverge(tmp_path: Path, store: gitstate.Store) -> Path:
    """state.json's key ``a`` changed differently in the store and in a plain clone, which also adds
    theirs.json. Returns the clone."""
    store.set("state.json", None, {"a": 1, "b": 1, "c": 1})
    store.flush()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(store.path), str(clone))
    (clone / "state.json").write_text((clone / "state.json").read_text().replace('"a": 1', '"a": "theirs"'))
    (clone / "theirs.json").write_text(_doc(t=1))
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "their change")
    store.set("state.json", "a", "ours")
    store.flush()
    git(store.path, "fetch", "-q", str(clone), "main")
    return clone


def _frozen(root: Path) -> tuple[bytes, bytes, str]:
    return (root / "state.json").read_bytes(), (root / ".git" / "index").read_bytes(), git(root, "ls-files", "-u")


def _resolve(root: Path) -> None:
    (root / "state.json").write_text(_doc(a="resolved", b=1, c=1))
    git(root, "add", "state.json")


@pytest.mark.parametrize("durability", ["manual", "debounced"])
def test_merge_in_progress_holds_writes_until_the_human_commits(tmp_path: Path, durability: str) -> None:
    store = make_store(tmp_path / "store", durability=durability, debounce_ms=20, max_delay_ms=50)
    seen: list[GitOperationInProgress] = []
    store.on("git_busy", seen.append)
    try:
        _diverge(tmp_path, store)
        root = store.path
        assert git(root, "merge", "--no-edit", "FETCH_HEAD", check=False) is not None
        assert git(root, "ls-files", "-u"), "the merge should conflict"
        before = _frozen(root)
        store.set("state.json", "b", 2)
        store.set("notes.json", "n", 1)
        if durability == "manual":
            with pytest.raises(gitstate.GitBusy) as info:
                store.flush()
            assert info.value.operation == "merge" and info.value.pending == 2
            assert "git merge --continue" in str(info.value)
        else:
            wait_until(lambda: seen, message="the git_busy event")
        assert _frozen(root) == before  # nothing written, nothing staged as resolved
        assert not (root / "notes.json").exists()
        assert store.pending == 2
        assert store.stats()["failures"] == 0
        assert [e.operation for e in seen] == ["merge"]

        _resolve(root)
        git(root, "commit", "-q", "--no-edit")
        merge = git(root, "rev-parse", "HEAD").strip()
        if durability == "manual":
            wait_until(lambda: len(seen) == 2, message="the store noticing git is done")
            store.flush()
        else:
            wait_until(lambda: store.pending == 0, message="the held writes to land")
        assert seen[-1].finished
        head = git(root, "rev-parse", "HEAD").strip()
        assert git(root, "rev-parse", "HEAD~1").strip() == merge
        assert len(git(root, "rev-list", "--parents", "-n1", merge).split()) == 3  # both parents
        assert json.loads(git(root, "show", "HEAD:state.json")) == {"a": "resolved", "b": 2, "c": 1}
        assert json.loads(git(root, "show", "HEAD:theirs.json")) == {"t": 1}
        assert json.loads(git(root, "show", "HEAD:notes.json")) == {"n": 1}
        assert store.head == head
    finally:
        store.close()
    fsck(root)
    assert status_porcelain(root) == ""


def test_debounced_store_warns_once_and_counts_no_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path / "store", durability="debounced", debounce_ms=1, max_delay_ms=1)
    try:
        _diverge(tmp_path, store)
        git(store.path, "merge", "--no-edit", "FETCH_HEAD", check=False)
        checks = 0
        real = store._repo.git_operation_in_progress

        def counting() -> str | None:
            nonlocal checks
            checks += 1
            return real()

        store._repo.git_operation_in_progress = counting  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="gitstate"):
            store.set("state.json", "b", 2)
            wait_until(lambda: checks >= 10, message="the flusher looking again several times")
        store._repo.git_operation_in_progress = real  # type: ignore[method-assign]
        assert store.stats()["failures"] == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len([r for r in caplog.records if "in progress" in r.getMessage()]) == 1
        git(store.path, "merge", "--abort")
        wait_until(lambda: store.pending == 0, message="the held write to land after the abort")
        assert json.loads(git(store.path, "show", "HEAD:state.json")) == {"a": "ours", "b": 2, "c": 1}
    finally:
        store.close()
    fsck(store.path)


def test_close_during_a_merge_raises_and_says_what_was_not_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(tmp_path / "store")
    _diverge(tmp_path, store)
    root = store.path
    git(root, "merge", "--no-edit", "FETCH_HEAD", check=False)
    before = _frozen(root)
    store.set("notes.json", "n", 1)
    with caplog.at_level(logging.ERROR, logger="gitstate"), pytest.raises(gitstate.GitBusy):
        store.close()
    assert store.closed
    assert any("NOT saved" in r.getMessage() and "notes.json" in r.getMessage() for r in caplog.records)
    assert _frozen(root) == before


def test_open_during_a_merge_commits_nothing_and_keeps_the_conflict(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    _diverge(tmp_path, store)
    store.close()
    root = tmp_path / "store"
    git(root, "merge", "--no-edit", "FETCH_HEAD", check=False)
    before, head = _frozen(root), git(root, "rev-parse", "HEAD").strip()
    with make_store(root) as again:
        assert again.get("state.json", "a") == "ours"  # the committed state, not the conflict markers
        assert again.head == head
        assert _frozen(root) == before
    _resolve(root)
    git(root, "commit", "-q", "--no-edit")
    fsck(root)
    assert status_porcelain(root) == ""


def test_watcher_does_not_commit_conflicted_files(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    try:
        _diverge(tmp_path, store)
        root = store.path
        watcher = store.watch(settle_ms=20)
        git(root, "merge", "--no-edit", "FETCH_HEAD", check=False)
        before, head = _frozen(root), git(root, "rev-parse", "HEAD").strip()
        assert watcher.wait_idle(timeout_s=20)
        assert git(root, "rev-parse", "HEAD").strip() == head
        assert _frozen(root) == before
        _resolve(root)
        git(root, "commit", "-q", "--no-edit")
        (root / "later.json").write_text(_doc(x=1))  # an edit after the merge is committed as usual
        wait_until(lambda: "later.json" in store.docs(), timeout_s=20, message="the later edit to be ingested")
    finally:
        store.close()
    fsck(root)
    assert status_porcelain(root) == ""


def test_rebase_in_progress_holds_writes(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", durability="debounced", debounce_ms=20, max_delay_ms=50)
    try:
        _diverge(tmp_path, store)
        root = store.path
        git(root, "rebase", "FETCH_HEAD", check=False)
        assert git_operation_in_progress(root / ".git") == "rebase"
        before = _frozen(root)
        store.set("state.json", "b", 2)
        with pytest.raises(gitstate.GitBusy):
            store.flush()
        assert _frozen(root) == before
        _resolve(root)
        git(root, "rebase", "--continue", env={"GIT_EDITOR": "true"})
        wait_until(lambda: store.pending == 0, message="the held write to land after the rebase")
        assert json.loads(git(root, "show", "HEAD:state.json")) == {"a": "resolved", "b": 2, "c": 1}
        assert json.loads(git(root, "show", "HEAD:theirs.json")) == {"t": 1}
    finally:
        store.close()
    fsck(root)
    assert status_porcelain(root) == ""


def test_cherry_pick_in_progress_holds_writes(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    try:
        _diverge(tmp_path, store)
        root = store.path
        git(root, "cherry-pick", "FETCH_HEAD", check=False)
        assert git_operation_in_progress(root / ".git") == "cherry-pick"
        before = _frozen(root)
        store.set("state.json", "b", 2)
        with pytest.raises(gitstate.GitBusy):
            store.flush()
        assert _frozen(root) == before
        _resolve(root)
        git(root, "commit", "-q", "--no-edit")
        wait_until(lambda: store._git_busy is None, message="the store noticing git is done")
        store.flush()
        assert json.loads(git(root, "show", "HEAD:state.json")) == {"a": "resolved", "b": 2, "c": 1}
    finally:
        store.close()
    fsck(root)
    assert status_porcelain(root) == ""


def test_detection_of_each_marker(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    try:
        _diverge(tmp_path, store)
    finally:
        store.close()
    root = tmp_path / "store"
    git_dir = root / ".git"
    assert git_operation_in_progress(git_dir) is None
    for name, op in [("REVERT_HEAD", "revert"), ("BISECT_LOG", "bisect"), ("rebase-apply", "rebase")]:
        target = git_dir / name
        target.mkdir() if name.startswith("rebase") else target.write_text("x\n")
        assert git_operation_in_progress(git_dir) == op
        target.rmdir() if name.startswith("rebase") else target.unlink()
    # conflicts left in the index with no marker file (what a conflicting 'git stash pop' leaves)
    git(root, "merge", "--no-edit", "FETCH_HEAD", check=False)
    for name in ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE"):
        (git_dir / name).unlink(missing_ok=True)
    assert git_operation_in_progress(git_dir) == "unmerged index"
    git(root, "reset", "-q", "--hard")
    assert git_operation_in_progress(git_dir) is None


def test_status_and_doctor_report_a_merge_in_progress(tmp_path: Path) -> None:
    from gitstate import doctor

    store = make_store(tmp_path / "store")
    try:
        _diverge(tmp_path, store)
        root = store.path
        git(root, "merge", "--no-edit", "FETCH_HEAD", check=False)
        out = run_cli("-C", str(root), "status", env={"NO_COLOR": "1"})
        assert out.returncode == 0, out.stderr
        assert "git merge in progress: writes held" in out.stdout
        assert "git merge --continue" in out.stdout and "git merge --abort" in out.stdout
        findings = [f for f in doctor.check(root, check_remotes=False) if f.check == "git"]
        assert [f.level for f in findings] == ["warning"]
        assert "merge" in findings[0].message and "git merge --abort" in (findings[0].fix or "")
        _resolve(root)
        git(root, "commit", "-q", "--no-edit")
        assert not [f for f in doctor.check(root, check_remotes=False) if f.check == "git"]
        assert "in progress" not in run_cli("-C", str(root), "status").stdout
    finally:
        store.close()
