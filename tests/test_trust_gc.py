"""gc on a hostile disk (issue 11): a read-only file system or a full disk gives one clear error and loses
nothing; the background packer reports such a fault once and never breaks a write; and loose objects stay bounded
when the packing process cannot keep up (a busy machine starves it: it runs at the lowest priority).

Real faults where the sandbox allows them (a read-only bind mount and a tiny tmpfs in a private mount namespace,
``unshare -m``), injected ``OSError`` s everywhere else.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import GIT_ENV, PYTHON, commit_ids, fsck, invoke, make_store
from test_gc import _quiet_store_logs  # noqa: F401  (autouse: the key index's start-up noise)

import gitstate
from gitstate import gc
from gitstate.errors import RepositoryError
from gitstate.gc import background as gc_background
from gitstate.gc import maintenance as gc_maintenance
from gitstate.gc import packwrite as gc_packwrite


def _history(root: Path, commits: int = 6) -> list[str]:
    """A closed store with ``commits`` commits of a few documents, some packed, some loose; returns the ids."""
    rnd = random.Random(5)
    with make_store(root, durability="immediate", auto_pack=False) as s:
        for i in range(commits):
            s.set("a.json", "n", i)
            s.set("b.json", "blob", "".join(rnd.choice("abcdef") for _ in range(3000)) + str(i))
            if i == commits // 2:
                gc.pack_loose(s._repo, fsync=False)
    return commit_ids(root)


def _temp_files(root: Path) -> list[str]:
    objects = root / ".git" / "objects"
    return [os.fspath(p) for p in objects.rglob("*") if p.is_file() and gc_maintenance.is_stray_temp(p.name)]


def _orphan_packs(root: Path) -> list[str]:
    pack_dir = root / ".git" / "objects" / "pack"
    return [p.name for p in pack_dir.glob("*.pack") if not p.with_suffix(".idx").exists()]


def _assert_intact(root: Path, ids: list[str]) -> None:
    """Nothing lost, nothing half-written, git accepts the repository."""
    assert commit_ids(root) == ids
    assert _temp_files(root) == []
    assert _orphan_packs(root) == []
    fsck(root)
    with make_store(root, auto_pack=False) as s:
        assert s.get("a.json", "n") == len(ids) // 2 - 1  # _history commits twice per step


def _fail_writes_under(monkeypatch: pytest.MonkeyPatch, where: Path, code: int) -> None:
    """Every file created under ``where`` by gc fails with ``code`` (what a read-only or full disk does)."""
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and os.fspath(path).startswith(os.fspath(where) + os.sep):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


# ===================================================================== gitstate gc, read-only
def _mount_namespaces() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || exit 3"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _mount_namespaces(), reason="no private mount namespace (unshare -m)")


@needs_mounts
def test_gc_on_a_read_only_mount_is_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "s"
    ids = _history(root)
    before = sorted(os.fspath(p.relative_to(root)) for p in (root / ".git").rglob("*"))
    script = f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && exec {PYTHON} -m gitstate -C {root} gc"
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=GIT_ENV, timeout=120, check=False
    )
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gitstate: error: ") and "read-only" in lines[0], lines
    assert "no object was lost" in lines[0] and "read-write" in lines[0], lines
    assert sorted(os.fspath(p.relative_to(root)) for p in (root / ".git").rglob("*")) == before
    _assert_intact(root, ids)


def test_gc_cli_read_only_injected_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "s"
    ids = _history(root)
    _fail_writes_under(monkeypatch, root / ".git", errno.EROFS)
    result = invoke(["-C", os.fspath(root), "gc"])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, OSError) and result.exc_info is not None
    assert result.exc_info[0] is SystemExit, result.exc_info
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "Traceback" not in result.output, result.output
    monkeypatch.undo()
    _assert_intact(root, ids)


def test_store_gc_on_a_read_only_repository_raises_repository_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "s"
    ids = _history(root)
    with make_store(root, auto_pack=False) as s:
        _fail_writes_under(monkeypatch, root / ".git", errno.EROFS)
        with pytest.raises(RepositoryError, match="read-only") as info:
            s.gc()
        assert isinstance(info.value.__cause__, OSError)
        monkeypatch.undo()
    _assert_intact(root, ids)


# ===================================================================== gitstate gc, disk full
@pytest.mark.parametrize("where", ["pack", "index", "install", "delete"])
def test_collect_disk_full_loses_nothing_and_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC at each write of a full repack: writing the pack, writing its index, installing the index (rename
    into a full directory), after the install (a failure deleting copies): a clear error, the repository as valid
    and complete as before, no temp file or index-less pack left, and a later gc works."""
    root = tmp_path / "s"
    ids = _history(root)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere")
    if where == "pack":

        def fail_append(self: Any, *args: Any) -> int:
            raise full

        monkeypatch.setattr(gc_packwrite.PackWriter, "_append", fail_append)
    elif where == "index":

        def fail_write(*args: Any, **kwargs: Any) -> None:
            raise full

        monkeypatch.setattr(gc_packwrite, "_write_file", fail_write)
    elif where == "install":
        real_replace = os.replace

        def fail_idx(src: Any, dst: Any) -> None:
            if os.fspath(dst).endswith(".idx"):
                raise full
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", fail_idx)
    else:

        def fail_delete(*args: Any, **kwargs: Any) -> int:
            raise full

        monkeypatch.setattr(gc_maintenance, "_delete_loose", fail_delete)
    repo = gitstate.repo.Repository.open(root, create=False)
    try:
        with pytest.raises(RepositoryError, match="disk is full") as info:
            gc.collect(repo, fsync=False)
        assert "no object was lost" in str(info.value) and "free some space" in str(info.value)
        monkeypatch.undo()
        _assert_intact(root, ids)
        stats = gc.collect(repo, fsync=False)
        assert stats["objects"] > 0
    finally:
        repo.close()
    _assert_intact(root, ids)
    assert gc.count_objects(root)["loose_objects"] == 0


_TMPFS_SCRIPT = """
import os, subprocess, sys, json
root, mnt, stash = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
store = os.path.join(mnt, "s")
subprocess.run(["cp", "-a", root, store], check=True)
# Fill the disk, then give back less room than the new pack needs.
fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.close(fd)
os.truncate(os.path.join(mnt, "filler"), max(0, os.path.getsize(os.path.join(mnt, "filler")) - 16 * 4096))
gc = subprocess.run([sys.executable, "-m", "gitstate", "-C", store, "gc"], capture_output=True, text=True)
os.unlink(os.path.join(mnt, "filler"))
subprocess.run(["cp", "-a", store, stash], check=True)  # out of the namespace, for the checks
print(json.dumps({"rc": gc.returncode, "stdout": gc.stdout, "stderr": gc.stderr}))
"""


@needs_mounts
def test_gc_on_a_really_full_disk(tmp_path: Path) -> None:
    import json

    root = tmp_path / "s"
    rnd = random.Random(3)
    with make_store(root, durability="immediate", auto_pack=False) as s:
        for i in range(8):  # ~400 KB of incompressible blobs: the new pack cannot fit in 64 KB
            s.set(f"d{i}.json", "blob", "".join(rnd.choice("0123456789abcdef") for _ in range(50_000)))
    ids = commit_ids(root)
    mnt, stash = tmp_path / "mnt", tmp_path / "after"
    mnt.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", PYTHON, "-c", _TMPFS_SCRIPT, os.fspath(root), os.fspath(mnt), os.fspath(stash)],
        capture_output=True,
        text=True,
        env=GIT_ENV,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 1, out
    assert "Traceback" not in out["stderr"] and len(out["stderr"].strip().splitlines()) == 1, out
    assert "disk is full" in out["stderr"] and "no object was lost" in out["stderr"], out
    assert commit_ids(stash) == ids
    assert _temp_files(stash) == [] and _orphan_packs(stash) == []
    fsck(stash)
    with make_store(stash, auto_pack=False) as s:
        assert len(s.get("d7.json", "blob")) == 50_000
        assert s.gc()["objects"] > 0  # with room again, gc works
    fsck(stash)
    assert commit_ids(stash) == ids


# ===================================================================== the background packer
def _packer(store: gitstate.Store, **options: Any) -> gc.BackgroundPacker:
    for component in list(store._background):
        if isinstance(component, gc.BackgroundPacker):
            component.stop()
            store._background.remove(component)
            store._after_commit_hooks.remove(component.notify)
    options.setdefault("fsync", False)
    options.setdefault("start_delay_s", 0.0)
    options.setdefault("check_interval_s", 0.05)  # retry quickly: each retry must stay quiet
    packer = gc.BackgroundPacker(store._repo, **options)
    store._after_commit_hooks.append(packer.notify)
    store._background.append(packer)
    return packer


def _gc_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("gitstate") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_background_packer_reports_a_disk_fault_once_and_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    root = tmp_path / "s"
    with make_store(root, durability="immediate", auto_pack=False) as s:
        packer = _packer(s, mode="thread", loose_threshold=1)
        _fail_writes_under(monkeypatch, root / ".git" / "objects" / "pack", code)
        caplog.set_level(logging.DEBUG, logger="gitstate")
        for i in range(5):  # every pass fails the same way
            s.set("a.json", "n", i)
            packer.run_now(timeout_s=60)
        assert s.get("a.json", "n") == 4
        warnings = _gc_warnings(caplog)
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert warnings[0].exc_info is None
        text = warnings[0].getMessage()
        assert ("disk is full" if code == errno.ENOSPC else "read-only") in text and "keeps working" in text, text
        assert packer.last_error
        monkeypatch.undo()
        assert packer.run_now(timeout_s=60)["pack"]["packed"] > 0
        assert packer.last_error is None
        assert any("works again" in r.getMessage() for r in caplog.records)
    fsck(root)
    assert _temp_files(root) == [] and _orphan_packs(root) == []


def test_background_packer_process_fault_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The packing process answers with the OS error (no log lines of its own): the parent warns once."""
    root = tmp_path / "s"
    calls = []

    def fake_run(self: Any, options: Any, stop: Any, preempt: Any = None) -> dict[str, Any]:
        calls.append(options)
        return {
            "error": "OSError: no space",
            "errno": errno.ENOSPC,
            "strerror": "No space left on device",
            "filename": f"{root}/.git/objects/pack/tmp-{len(calls)}",
        }

    monkeypatch.setattr(gc_background.Worker, "run", fake_run)
    caplog.set_level(logging.DEBUG, logger="gitstate")
    with make_store(root, durability="immediate", auto_pack=False) as s:
        packer = _packer(s, loose_threshold=1)
        for i in range(4):
            s.set("a.json", "n", i)
            packer.run_now(timeout_s=60)
        assert len(calls) >= 4
        warnings = _gc_warnings(caplog)
        assert len(warnings) == 1 and "disk is full" in warnings[0].getMessage(), [r.getMessage() for r in warnings]


# ===================================================================== back-pressure
def test_loose_objects_stay_bounded_when_the_packing_process_is_starved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packing process gets no CPU (what nice 19 on a loaded machine does): its pass holds the gc lock and
    never ends. Writers must not pile up loose objects meanwhile: past the hard limit they pack themselves,
    taking over from the stuck pass, and every write still lands."""
    root = tmp_path / "s"
    stuck = threading.Event()

    def starved_run(self: Any, options: Any, stop: threading.Event, preempt: Any = None) -> dict[str, Any]:
        lock = gc_maintenance.GcLock(self.root / ".git", blocking=False)
        assert lock.acquire()
        try:
            stuck.set()
            while not stop.is_set() and not (preempt is not None and preempt.is_set()):
                stop.wait(0.01)  # the process does not get to run
            return {"preempted": True}
        finally:
            lock.release()

    monkeypatch.setattr(gc_background.Worker, "run", starved_run)
    rnd = random.Random(9)
    doc = {f"k{i}": "".join(rnd.choice("abcdefgh ") for _ in range(800)) for i in range(120)}  # ~100 KB
    with make_store(root, auto_pack=False) as s:
        packer = _packer(s, loose_bytes_threshold=300_000, check_every_commits=4, settle_s=0.0)
        s.set("state.json", None, doc)
        s.flush()
        peak = 0
        expected = dict(doc)
        for i in range(120):
            key = rnd.choice(list(doc))
            expected[key] = f"v{i}"
            s.set("state.json", (key,), f"v{i}")
            s.flush()
            peak = max(peak, gc.count_objects(root)["loose_bytes"])
        assert stuck.is_set()
        # The limit plus what one check interval writes (4 flushes of a ~100 KB document, compressed).
        assert peak < packer.loose_bytes_limit + 4 * 60_000, (peak, packer.loose_bytes_limit)
        assert packer.held_back >= 1 and not packer.last_error
        assert s.get("state.json") == expected
    fsck(root)
    assert len(commit_ids(root)) == 121
    assert _temp_files(root) == [] and _orphan_packs(root) == []


def test_no_back_pressure_while_the_packer_keeps_up(tmp_path: Path) -> None:
    """A healthy pass is never taken over: writers only hold back when the limit is really reached."""
    root = tmp_path / "s"
    with make_store(root, auto_pack=False) as s:
        packer = _packer(s, loose_threshold=20, check_every_commits=2)
        for i in range(60):
            s.set("a.json", "n", i)
            s.flush()
        packer.run_now(timeout_s=60)
        assert packer.held_back == 0 and packer.packs_written >= 1
    fsck(root)


def test_writers_are_never_broken_by_a_failing_hold_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "s"
    monkeypatch.setattr(
        gc_background.Worker, "run", lambda self, o, stop, preempt=None: (stop.wait(0.2), {"preempted": True})[1]
    )
    with make_store(root, auto_pack=False) as s:
        packer = _packer(s, loose_bytes_threshold=1, loose_bytes_limit=1, check_every_commits=1)
        _fail_writes_under(monkeypatch, root / ".git" / "gitstate", errno.EROFS)
        for i in range(10):
            s.set("a.json", "n", i)
            assert s.flush() is not None
        assert packer.held_back == 0
    assert len(commit_ids(root)) == 10
