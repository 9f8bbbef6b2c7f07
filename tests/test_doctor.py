"""``gitstate doctor`` (gitstate/doctor.py): each planted problem is found and comes with what to do; a healthy
store is all ok; nothing is ever modified; the exit status says whether something is wrong."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import GIT_ENV, git, invoke, make_store

from gitstate import doctor
from gitstate.doctor import Finding

logger = logging.getLogger("gitstate.tests")


@pytest.fixture(autouse=True)
def _quiet_store_logs() -> Iterator[None]:
    log = logging.getLogger("gitstate.store")
    old = log.level
    log.setLevel(logging.CRITICAL)
    yield
    log.setLevel(old)


def _store(root: Path, *, commits: int = 3) -> Path:
    with make_store(root) as s:
        for i in range(commits):
            s.set("state.json", "n", i)
            s.flush()
    return root


def _findings(root: Path, **options: Any) -> list[Finding]:
    options.setdefault("check_remotes", False)
    return doctor.check(root, **options)


def _only(findings: list[Finding], level: str, check: str) -> list[Finding]:
    return [f for f in findings if f.level == level and f.check == check]


def _tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _cli(*args: str) -> Any:
    return invoke(list(args))


# ===================================================================== healthy
def test_healthy_store_is_all_ok_and_untouched(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    with make_store(root) as s:
        s.snapshot("v1")
    before = _tree_state(root)
    findings = _findings(root)
    assert not doctor.has_errors(findings)
    assert all(f.level == "ok" for f in findings), findings
    checks = {f.check for f in findings}
    assert {"directory", "disk", "repository", "locks", "quarantine", "history"} <= checks
    text = " ".join(f.message for f in findings)
    assert "3 commit(s)" in text and "1 snapshot(s): v1" in text and "by library" in text
    assert _tree_state(root) == before  # doctor changes nothing, not even an mtime
    res = _cli("-C", str(root), "doctor", "--no-remote")
    assert res.exit_code == 0, res.output
    assert "all good" in res.output


def test_json_output(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    res = _cli("-C", str(root), "doctor", "--json", "--no-remote")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] is True
    assert {"level", "check", "message", "fix"} <= set(data["findings"][0])


# ===================================================================== directory
def test_missing_directory_and_not_a_store(tmp_path: Path) -> None:
    findings = _findings(tmp_path / "nowhere")
    assert [f.level for f in findings] == ["error"]
    assert "does not exist" in findings[0].message and "gitstate -C" in (findings[0].fix or "")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.json").write_text("{}")
    findings = _findings(plain)
    assert "not a gitstate store" in findings[0].message and "init" in (findings[0].fix or "")
    res = _cli("-C", str(plain), "doctor")
    assert res.exit_code == 1 and "not a gitstate store" in res.output and "fix:" in res.output


def test_read_only_directory(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    objects = root / ".git" / "objects"
    os.chmod(root, 0o555)
    os.chmod(objects, 0o555)
    try:
        findings = _findings(root)
        errs = _only(findings, "error", "directory")
        assert errs, findings
        assert "not writable" in errs[0].message or "read-only" in errs[0].message
        assert str(root) in errs[0].message and "chmod" in (errs[0].fix or "")
        res = _cli("-C", str(root), "doctor", "--no-remote")
        assert res.exit_code == 1 and "chmod" in res.output
    finally:
        os.chmod(objects, 0o755)
        os.chmod(root, 0o755)


def test_low_disk_space(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    errs = _only(_findings(root, min_free_bytes=1 << 62), "error", "disk")
    assert errs and "free" in errs[0].message and "gitstate gc" in (errs[0].fix or "")
    warns = _only(_findings(root, low_free_bytes=1 << 62), "warning", "disk")
    assert warns and "low" in warns[0].message


# ===================================================================== locks and temp files
def test_stale_lock_files(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    (root / ".git" / "index.lock").write_text("")
    (root / ".git" / "refs" / "heads" / "main.lock").write_text("")
    findings = _findings(root)
    warns = _only(findings, "warning", "locks")
    assert len(warns) == 2, findings
    assert any(".git/index.lock" in w.message for w in warns)
    assert all("no process holds it" in w.message and "rm " in (w.fix or "") for w in warns)
    assert (root / ".git" / "index.lock").exists()  # reported, not removed


def test_lock_held_by_a_live_writer_is_not_stale(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    held = threading.Event()
    release = threading.Event()
    with make_store(root) as s:

        def hold() -> None:
            with s._repo.lock():
                held.set()
                release.wait(30)

        t = threading.Thread(target=hold)
        t.start()
        try:
            assert held.wait(10)
            lock = root / ".git" / "index.lock"
            with open(lock, "w"):  # a live process has it open: a git command at work
                findings = _findings(root)
        finally:
            release.set()
            t.join(10)
            (root / ".git" / "index.lock").unlink()
    assert not _only(findings, "warning", "locks"), findings
    held_by = [f for f in findings if f.check == "locks" and "held by" in f.message]
    assert held_by and str(os.getpid()) in held_by[0].message


def test_stale_temp_files(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    tmp = root / ".git" / "objects" / "ab" / "tmp_obj.gitstate-tmp-0123456789ab"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    warns = _only(_findings(root), "warning", "locks")
    assert warns and "temp file" in warns[0].message and "gitstate gc" in (warns[0].fix or "")


# ===================================================================== quarantine
def test_quarantined_edit(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    with make_store(root) as s:
        (root / "state.json").write_text('{"n": 1,,, broken')
        s.ingest(["state.json"])
        assert s.quarantined()
    findings = _findings(root)
    warns = _only(findings, "warning", "quarantine")
    assert len(warns) == 1, findings
    assert warns[0].message.startswith("state.json:") and "quarantine" in warns[0].message
    assert "fix state.json by hand" in (warns[0].fix or "")
    # The waiting file is named once, as waiting: not also as an edit "the next open quarantines".
    assert not [f for f in findings if f.check == "worktree" and "state.json" in f.message], findings


# ===================================================================== repository integrity
def test_missing_object(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    blob = git(root, "rev-parse", "HEAD~1:state.json").strip()
    (root / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    findings = _findings(root)
    errs = _only(findings, "error", "repository")
    assert errs and "missing" in errs[0].message and blob in errs[0].message
    assert "clone" in (errs[0].fix or "")
    assert _cli("-C", str(root), "doctor", "--no-remote").exit_code == 1


def test_corrupt_loose_object_and_pack(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    head_blob = git(root, "rev-parse", "HEAD:state.json").strip()
    path = root / ".git" / "objects" / head_blob[:2] / head_blob[2:]
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(b"blob 5\x00wrong"))
    errs = _only(_findings(root), "error", "repository")
    assert errs and "corrupt" in errs[0].message
    # A pack with a flipped byte.
    root2 = _store(tmp_path / "s2")
    git(root2, "gc", "-q")
    pack = next((root2 / ".git" / "objects" / "pack").glob("*.pack"))
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    errs = _only(_findings(root2), "error", "repository")
    assert errs and "corrupt" in errs[0].message


def test_corrupt_unreachable_debris_is_a_warning(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    debris = root / ".git" / "objects" / "12" / ("3" * 38)
    debris.parent.mkdir(exist_ok=True)
    debris.write_bytes(b"")  # a crash truncated it
    findings = _findings(root)
    assert not _only(findings, "error", "repository"), findings
    warns = _only(findings, "warning", "repository")
    assert warns and "nothing refers to" in warns[0].message


def test_detached_head_and_no_commits(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    head = git(root, "rev-parse", "HEAD").strip()
    (root / ".git" / "HEAD").write_text(head + "\n")
    errs = _only(_findings(root), "error", "repository")
    assert errs and "detached" in errs[0].message and "switch" in (errs[0].fix or "")
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", "-b", "main", str(empty))
    warns = _only(_findings(empty), "warning", "history")
    assert warns and "no commits" in warns[0].message


def test_unpacked_history_suggests_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path / "s", commits=5)
    monkeypatch.setattr(doctor, "_LOOSE_WARN_OBJECTS", 10)
    warns = _only(_findings(root), "warning", "repository")
    assert warns and "not packed" in warns[0].message and "gitstate gc" in (warns[0].fix or "")


# ===================================================================== remotes
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_remote(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    git(root, "remote", "add", "origin", f"git://127.0.0.1:{_closed_port()}/state.git")
    git(root, "remote", "add", "gone", str(tmp_path / "no-such-repo"))
    findings = doctor.check(root, remote_timeout_s=2)
    errs = _only(findings, "error", "remote")
    assert len(errs) == 2, findings
    assert any(e.message.startswith("origin") and "not reachable" in e.message for e in errs)
    assert all("gitstate remote add" in (e.fix or "") for e in errs)
    res = _cli("-C", str(root), "doctor", "--timeout", "2")
    assert res.exit_code == 1 and "not reachable" in res.output


def test_reachable_remotes(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    bare = tmp_path / "backup.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    git(root, "remote", "add", "backup", str(bare))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        git(root, "remote", "add", "daemon", f"git://127.0.0.1:{server.getsockname()[1]}/state.git")
        findings = doctor.check(root, remote_timeout_s=2)
    finally:
        server.close()
    oks = _only(findings, "ok", "remote")
    assert len(oks) == 2, findings
    assert not doctor.has_errors(findings)


def test_remote_check_stays_bounded(tmp_path: Path) -> None:
    """A server that accepts and never answers must not hang doctor (an HTTP remote that stalls)."""
    root = _store(tmp_path / "s")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        git(root, "remote", "add", "origin", f"http://127.0.0.1:{server.getsockname()[1]}/state.git")
        t0 = time.monotonic()
        findings = doctor.check(root, remote_timeout_s=1)
        assert time.monotonic() - t0 < 10
    finally:
        server.close()
    errs = _only(findings, "error", "remote")
    assert errs and errs[0].message.startswith("origin"), findings


def test_read_only_checks_on_a_file_mode_store(tmp_path: Path) -> None:
    """The checks also work when files are not writable at all (a backup copy mounted read-only)."""
    root = _store(tmp_path / "s")
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, stat.S_IRUSR)
    findings = _findings(root)
    assert not _only(findings, "error", "repository"), findings


def test_last_commit_actor_is_read_with_the_trailer_rules(tmp_path: Path) -> None:
    """The actor comes from the message's trailer block (gitstate.messages' rules): a ``Gitstate-Actor`` line
    in the middle of a hand-written message is text, not a trailer; trailer names match case-insensitively."""
    root = _store(tmp_path / "s")
    (root / "notes.txt").write_text("a\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-q", "-m", "hand edit\n\nGitstate-Actor: library\n\nthat line above is quoted text")
    history = [f for f in _findings(root) if f.check == "history" and "last commit" in f.message]
    assert history and history[0].message.endswith("by human"), history
    (root / "notes.txt").write_text("b\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-q", "-m", "restored\n\ngitstate-actor: restore")
    history = [f for f in _findings(root) if f.check == "history" and "last commit" in f.message]
    assert history and history[0].message.endswith("by restore"), history
