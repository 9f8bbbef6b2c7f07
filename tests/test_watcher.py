"""The watcher: filtering, settling, the parse gate, merging with pending writes, real saves by real tools.

Every save below must give exactly one commit with the right content. Waits poll a condition with a deadline
(``wait_until``) or use ``Watcher.wait_idle`` (a probe file proves the OS delivered every earlier event, then
nothing is left settling); the only sleeps are the pauses *inside* the scenarios (a slow writer, vim's timing).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import fsck, git, invoke, make_store, wait_until

import gitstate
from gitstate import watcher as watcher_mod
from gitstate.watcher import Watcher, is_watched_name

SETTLE = {"settle_ms": 100, "settle_timeout_ms": 1500, "debounce_ms": 200}


# ===================================================================== helpers
def commit_count(root: Path) -> int:
    return int(git(root, "rev-list", "--count", "HEAD").strip() or 0)


def head_json(root: Path, doc: str = "state.json") -> Any:
    return json.loads(git(root, "show", f"HEAD:{doc}"))


def last_message(root: Path) -> str:
    return git(root, "log", "-1", "--format=%B")


class Events:
    """Collects a store's events by name."""

    def __init__(self, store: gitstate.Store) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()
        for name in ("committed", "external_change", "invalid_edit"):
            store.on(name, self._add)

    def _add(self, event: Any) -> None:
        with self.lock:
            self.items.append(event)

    def of(self, name: str) -> list[Any]:
        with self.lock:
            return [e for e in self.items if e.name == name]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[gitstate.Store]:
    s = gitstate.open(tmp_path / "store", durability="manual", fsync=False)
    s.set("state.json", None, {"services": {"gmail": False, "slack": True}, "owner": "alice"})
    s.flush()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def watched(store: gitstate.Store) -> Iterator[tuple[gitstate.Store, Watcher, Events]]:
    events = Events(store)
    w = store.watch(**SETTLE)
    yield store, w, events
    w.stop()


def one_commit_after(root: Path, before: int, w: Watcher, expect: Callable[[], bool]) -> None:
    """Wait for the edit's commit, then for the watcher to go idle, and check exactly one commit landed."""
    wait_until(lambda: commit_count(root) > before and expect(), 20)
    assert w.wait_idle(timeout_s=20)
    assert commit_count(root) == before + 1, git(root, "log", "--format=%h %an %s")
    assert git(root, "status", "--porcelain") == ""


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold the store's inter-process lock (what gitstate's flusher takes before it writes files)."""
    fd = os.open(root / ".git" / "gitstate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ===================================================================== names and filtering
@pytest.mark.parametrize(
    "name",
    [
        ".state.json.swp",
        ".state.json.swx",
        "state.json~",
        "4913",
        "#state.json#",
        ".#state.json",
        "state.json.tmp",
        ".state.json.gitstate-tmp-ab12cd",
        "sedAb3dE9",
        ".goutputstream-XYZ12",
        "state.json.crswap",
    ],
)
def test_scratch_names_are_not_watched(name: str) -> None:
    assert not is_watched_name(name)


@pytest.mark.parametrize("name", ["state.json", "memory.yaml", "notes.md", "sedimentary.json", "4913.json"])
def test_document_names_are_watched(name: str) -> None:
    assert is_watched_name(name)


def test_ignored_files_produce_no_commits(watched: Any) -> None:
    store, w, _ = watched
    root = store.path
    w.stop()
    (root / ".gitignore").write_text("cache/\n*.log\n")
    w = store.watch(**SETTLE)  # commits the .gitignore (an edit made while not watching)
    wait_until(lambda: "gitignore" in git(root, "log", "-1", "--name-only"))
    assert w.wait_idle()
    before = commit_count(root)
    (root / "cache").mkdir()
    (root / "cache" / "big.json").write_text("{}")
    (root / "run.log").write_text("x")
    for name in (
        ".state.json.swp",
        "state.json~",
        "4913",
        "#state.json#",
        ".#state.json",
        "x.tmp",
        ".state.json.gitstate-tmp-0123ab",
    ):
        (root / name).write_text("scratch")
    (root / ".git" / "description").write_text("touched")
    assert w.wait_idle()
    assert commit_count(root) == before
    assert "run.log" not in git(root, "ls-files")


def test_watcher_hands_on_settled_paths_only(tmp_path: Path) -> None:
    seen: list[set[str]] = []
    (tmp_path / "keep.json").write_text("{}")
    with Watcher(tmp_path, seen.append, settle_ms=50, settle_timeout_ms=3000) as w:
        (tmp_path / "a.json").write_text('{"a": 1}')
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b.yaml").write_text("b: 2\n")
        (tmp_path / ".a.json.swp").write_text("swap")
        (tmp_path / "keep.json").unlink()
        assert w.wait_idle()
    assert set().union(*seen) == {"a.json", "sub/b.yaml", "keep.json"}


def test_moved_directory_reports_its_files(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    for i in range(3):
        (tmp_path / "tasks" / f"t{i}.json").write_text("{}")
    seen: list[set[str]] = []
    with Watcher(tmp_path, seen.append, settle_ms=50) as w:
        (tmp_path / "tasks").rename(tmp_path / "done")
        assert w.wait_idle()
    got = set().union(*seen)
    assert {f"tasks/t{i}.json" for i in range(3)} <= got
    assert {f"done/t{i}.json" for i in range(3)} <= got


def test_gitignore_change_reloads_rules(tmp_path: Path) -> None:
    seen: list[set[str]] = []
    rules: list[str] = []

    def factory() -> Callable[[str], bool]:
        text = (tmp_path / ".gitignore").read_text() if (tmp_path / ".gitignore").exists() else ""
        rules.append(text)
        return lambda p: "ignored" in text and p.endswith(".log")

    with Watcher(tmp_path, seen.append, ignore_factory=factory, settle_ms=50) as w:
        (tmp_path / ".gitignore").write_text("ignored *.log\n")
        assert w.wait_idle()
        (tmp_path / "a.log").write_text("x")
        assert w.wait_idle()
    assert "a.log" not in set().union(*seen)
    assert len(rules) >= 2


# ===================================================================== settling and the parse gate in the watcher
def test_slow_write_is_handed_on_once_complete(tmp_path: Path) -> None:
    seen: list[tuple[set[str], bytes]] = []
    target = tmp_path / "state.json"

    def on_change(paths: set[str]) -> None:
        seen.append((paths, target.read_bytes()))

    body = json.dumps({"items": list(range(200))}).encode()
    with Watcher(tmp_path, on_change, settle_ms=150, settle_timeout_ms=5000) as w:
        with open(target, "wb") as f:
            for i in range(0, len(body), len(body) // 5 + 1):
                f.write(body[i : i + len(body) // 5 + 1])
                f.flush()
                time.sleep(0.04)  # part of the scenario: a writer pausing between chunks
        assert w.wait_idle()
    # Never handed on half-written (a late duplicate event under load may hand the same content on again).
    assert seen and all(entry == ({"state.json"}, body) for entry in seen)


def test_unparsable_file_waits_for_a_fix_within_the_timeout(tmp_path: Path) -> None:
    seen: list[bytes] = []
    target = tmp_path / "state.json"
    with Watcher(tmp_path, lambda p: seen.append(target.read_bytes()), settle_ms=50, settle_timeout_ms=3000) as w:
        target.write_text('{"a": ')
        time.sleep(0.3)  # part of the scenario: a half-written file that stays so for a while
        target.write_text('{"a": 1}')
        assert w.wait_idle()
    assert seen and set(seen) == {b'{"a": 1}'}  # the half-written version was never handed on


def test_unparsable_file_is_handed_on_at_the_deadline(tmp_path: Path) -> None:
    seen: list[float] = []
    t0 = time.monotonic()
    with Watcher(tmp_path, lambda p: seen.append(time.monotonic() - t0), settle_ms=50, settle_timeout_ms=600) as w:
        t0 = time.monotonic()
        (tmp_path / "state.json").write_text("{broken")
        wait_until(lambda: seen, timeout_s=10)
        assert w.wait_idle()
    assert 0.5 <= seen[0] < 5


def test_callback_errors_do_not_stop_the_watcher(tmp_path: Path, caplog: Any) -> None:
    calls: list[set[str]] = []

    def on_change(paths: set[str]) -> None:
        calls.append(paths)
        if len(calls) == 1:
            raise RuntimeError("boom")

    with Watcher(tmp_path, on_change, settle_ms=30) as w:
        (tmp_path / "a.txt").write_text("1")
        assert w.wait_idle()
        (tmp_path / "b.txt").write_text("2")
        assert w.wait_idle()
    assert calls[0] == {"a.txt"} and {"b.txt"} in calls[1:]
    assert "boom" in caplog.text


def test_stop_from_the_callback_and_lifecycle(tmp_path: Path) -> None:
    holder: dict[str, Watcher] = {}

    def on_change(paths: set[str]) -> None:
        holder["w"].stop()

    w = Watcher(tmp_path, on_change, settle_ms=20)
    holder["w"] = w
    w.start()
    assert w.running and "running" in repr(w)
    (tmp_path / "a.txt").write_text("1")
    wait_until(lambda: not w.running)
    w.stop()  # idempotent
    assert not w.running


def test_run_in_a_thread_stops_on_stop(tmp_path: Path) -> None:
    w = Watcher(tmp_path, print)
    t = threading.Thread(target=w.run)
    t.start()
    wait_until(lambda: w.running)
    w.stop()
    t.join(20)
    assert not t.is_alive() and not w.running


def test_run_fails_clearly_when_the_directory_goes_away(tmp_path: Path) -> None:
    root = tmp_path / "gone"
    root.mkdir()
    errors: list[BaseException] = []
    w = Watcher(root, print)
    ready = threading.Event()

    def run() -> None:
        try:
            w.run(on_ready=ready.set)
        except gitstate.GitStateError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert ready.wait(20), "the watcher never confirmed it was watching"
    shutil.rmtree(root)
    t.join(20)
    assert not t.is_alive()
    assert errors and "stopped watching" in str(errors[0])


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(gitstate.GitStateError, match="cannot watch"):
        Watcher(tmp_path / "nope", print).start()


# ===================================================================== polling
def test_forced_polling_sees_edits(tmp_path: Path) -> None:
    seen: list[set[str]] = []
    with Watcher(tmp_path, seen.append, force_polling=True, poll_delay_ms=50, settle_ms=50) as w:
        assert w.polling
        (tmp_path / "a.json").write_text("{}")
        assert w.wait_idle()
    assert {"a.json"} in seen


def test_watch_limit_falls_back_to_polling(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    import watchfiles

    real_watch = watchfiles.watch
    calls: list[bool | None] = []

    def limited_watch(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("force_polling"))
        if not kwargs.get("force_polling"):
            raise OSError("OS file watch limit reached. about [...] (Error { kind: MaxFilesWatch, paths: [] })")
        return real_watch(*args, **kwargs)

    monkeypatch.setattr(watchfiles, "watch", limited_watch)
    seen: list[set[str]] = []
    caplog.set_level(logging.WARNING, logger="gitstate.watcher")
    with Watcher(tmp_path, seen.append, force_polling=False, poll_delay_ms=50, settle_ms=50) as w:
        assert w.polling
        (tmp_path / "a.json").write_text("{}")
        assert w.wait_idle()
    assert calls[:2] == [False, True]
    assert {"a.json"} in seen
    assert "watch limit" in caplog.text and "polling" in caplog.text


def test_network_file_system_polls(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setattr(watcher_mod, "_fs_type", lambda path: "nfs4")
    caplog.set_level(logging.WARNING, logger="gitstate.watcher")
    with Watcher(tmp_path, print, poll_delay_ms=50) as w:
        assert w.polling
    assert "nfs4" in caplog.text


def test_backend_failure_restarts_and_rescans(tmp_path: Path, monkeypatch: Any) -> None:
    import watchfiles

    real_watch = watchfiles.watch
    calls = {"n": 0}
    monkeypatch.setattr(watcher_mod, "_RESTART_DELAY_S", 0.05)

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        for batch in real_watch(*args, **kwargs):
            yield batch
            if calls["n"] == 1 and (tmp_path / "trigger.txt").exists():
                # An edit whose event dies with the backend: only the rescan after the restart can find it.
                (tmp_path / "during.json").write_text("{}")
                raise RuntimeError("error in underlying watcher: simulated")

    monkeypatch.setattr(watchfiles, "watch", failing_once)
    seen: list[set[str]] = []
    with Watcher(tmp_path, seen.append, settle_ms=30) as w:
        (tmp_path / "trigger.txt").write_text("go")
        wait_until(lambda: any("during.json" in s for s in seen))
        assert w.wait_idle()
        assert w.running
    assert calls["n"] >= 2


def test_idle_watcher_uses_little_cpu(tmp_path: Path) -> None:
    w = Watcher(tmp_path, print)
    w.start()
    try:
        t0, c0 = time.monotonic(), time.process_time()
        time.sleep(1.0)  # measuring idle cost over a fixed window
        cpu = (time.process_time() - c0) / (time.monotonic() - t0)
    finally:
        w.stop()
    assert cpu < 0.05, f"idle watcher used {cpu:.1%} CPU"


# ===================================================================== real saves through a store
def test_in_place_write(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    with open(root / "state.json", "r+") as f:
        data = json.load(f)
        data["services"]["gmail"] = True
        f.seek(0)
        f.truncate()
        json.dump(data, f, indent=2)
    one_commit_after(root, before, w, lambda: head_json(root)["services"]["gmail"] is True)
    assert store.get("state.json", "services.gmail") is True
    msg = last_message(root)
    assert msg.splitlines()[0] == "state.json: services.gmail false -> true"
    assert "Gitstate-Actor: human" in msg
    author = git(root, "log", "-1", "--format=%an")
    import getpass

    assert author.strip() == getpass.getuser()


def test_temp_file_and_rename(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    tmp = root / "state.json.tmp"
    tmp.write_text(json.dumps({"services": {"gmail": False, "slack": False}, "owner": "alice"}))
    os.replace(tmp, root / "state.json")
    one_commit_after(root, before, w, lambda: head_json(root)["services"]["slack"] is False)
    assert "services.slack true -> false" in last_message(root)


def _simulated_vim_save(path: Path, text: str) -> None:
    """The syscalls of vim's default save (backupcopy=auto, writebackup): the 4913 probe, the original
    renamed to a backup, the new file written and fsynced, the backup removed."""
    d = path.parent
    swap, swx = d / f".{path.name}.swp", d / f".{path.name}.swx"
    swx.write_bytes(b"")
    swx.unlink()
    swap.write_bytes(b"b0VIM 9.0" + b"\0" * 4000)
    probe = d / "4913"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
    os.close(fd)
    os.unlink(probe)
    backup = d / f"{path.name}~"
    os.rename(path, backup)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.ftruncate(fd, 0)
    os.write(fd, text.encode())
    os.fsync(fd)
    os.fchmod(fd, 0o644)
    os.close(fd)
    os.unlink(backup)
    swap.unlink()


def test_vim_save_simulated(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    _simulated_vim_save(
        root / "state.json", json.dumps({"services": {"gmail": True, "slack": True}, "owner": "alice"}, indent=2)
    )
    one_commit_after(root, before, w, lambda: head_json(root)["services"]["gmail"] is True)


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_real_vim_save(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    # A real vim with its default save (swap file, the 4913 probe, original renamed to state.json~, new file
    # written and fsynced, backup removed: checked with strace). backupskip= because vim's default skips the
    # backup for files under /tmp, where pytest's tmp_path lives.
    subprocess.run(
        [
            "vim",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-N",
            "-e",
            "-s",
            "-c",
            "set backupcopy=auto backupskip=",
            "-c",
            '%s/"alice"/"bob"/',
            "-c",
            "wq",
            str(root / "state.json"),
        ],
        check=True,
        cwd=root,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    one_commit_after(root, before, w, lambda: head_json(root)["owner"] == "bob")
    assert "owner" in last_message(root).splitlines()[0]


def test_sed_in_place(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    subprocess.run(["sed", "-i", 's/"alice"/"carol"/', "state.json"], cwd=root, check=True)
    one_commit_after(root, before, w, lambda: head_json(root)["owner"] == "carol")
    assert last_message(root).splitlines()[0] == 'state.json: owner "alice" -> "carol"'


def test_slow_write_in_chunks(watched: Any) -> None:
    store, w, events = watched
    root, before = store.path, commit_count(store.path)
    body = json.dumps(
        {"services": {"gmail": True, "slack": True}, "owner": "alice", "notes": ["x" * 50 for _ in range(40)]}, indent=2
    ).encode()
    step = len(body) // 6 + 1
    with open(root / "state.json", "wb") as f:
        for i in range(0, len(body), step):
            f.write(body[i : i + step])
            f.flush()
            time.sleep(0.03)  # part of the scenario: a slow writer
    one_commit_after(root, before, w, lambda: "notes" in head_json(root))
    assert git(root, "show", "HEAD:state.json").encode() == body
    assert events.of("invalid_edit") == []


def test_burst_of_edits_gives_few_commits_and_the_final_content(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    target = root / "state.json"
    for i in range(1000):
        target.write_text(json.dumps({"services": {"gmail": False, "slack": True}, "owner": "alice", "n": i}))
    wait_until(lambda: head_json(root).get("n") == 999)
    assert w.wait_idle()
    assert json.loads(target.read_text())["n"] == 999
    assert head_json(root)["n"] == 999
    assert 1 <= commit_count(root) - before <= 10
    assert store.get("state.json", "n") == 999


def test_new_and_deleted_files_by_hand(watched: Any) -> None:
    store, w, _ = watched
    root, before = store.path, commit_count(store.path)
    (root / "tasks").mkdir()
    (root / "tasks" / "t1.yaml").write_text("status: open\n")
    wait_until(lambda: "tasks/t1.yaml" in git(root, "ls-files"))
    assert w.wait_idle()
    assert store.get("tasks/t1.yaml", "status") == "open"
    (root / "tasks" / "t1.yaml").unlink()
    wait_until(lambda: "tasks/t1.yaml" not in git(root, "ls-files"))
    assert w.wait_idle()
    assert commit_count(root) == before + 2
    assert store.docs("tasks/") == []
    assert git(root, "status", "--porcelain") == ""


# ===================================================================== the validation gate
def test_invalid_edit_is_kept_and_not_committed_then_the_fix_is(watched: Any) -> None:
    store, w, events = watched
    root, before = store.path, commit_count(store.path)
    bad = '{\n  "services": {"gmail": true,\n    "slack" true}\n}\n'
    (root / "state.json").write_text(bad)
    wait_until(lambda: events.of("invalid_edit"))
    assert w.wait_idle()
    ev = events.of("invalid_edit")[0]
    assert ev.doc == "state.json" and ev.line == 3 and ev.column is not None
    assert ev.quarantined_to and Path(ev.quarantined_to).read_text() == bad
    assert commit_count(root) == before
    assert store.get("state.json", "services.gmail") is False  # the last good version
    assert store.get("state.json", "owner") == "alice"
    good = {"services": {"gmail": True, "slack": True}, "owner": "alice"}
    (root / "state.json").write_text(json.dumps(good))
    one_commit_after(root, before, w, lambda: head_json(root) == good)
    assert store.get("state.json") == good
    assert len(events.of("invalid_edit")) == 1


# ===================================================================== merging with pending writes
def test_human_edit_merges_with_pending_writes_on_other_keys(watched: Any) -> None:
    store, w, events = watched
    root, before = store.path, commit_count(store.path)
    store.set("state.json", "jobs.sync", "running")  # pending, not flushed
    data = json.loads((root / "state.json").read_text())
    data["services"]["gmail"] = True
    (root / "state.json").write_text(json.dumps(data, indent=2))
    one_commit_after(root, before, w, lambda: head_json(root)["services"]["gmail"] is True)
    assert store.get("state.json", "jobs.sync") == "running"
    assert store.get("state.json", "services.gmail") is True
    ext = [e for e in events.of("external_change") if e.source == "human"][-1]
    assert [(c.key, c.old, c.new) for c in ext.changes] == [(("services", "gmail"), False, True)]
    assert ext.overwritten == []
    store.flush()
    final = head_json(root)
    assert final["services"]["gmail"] is True and final["jobs"]["sync"] == "running"
    assert json.loads((root / "state.json").read_text()) == final


def test_human_value_wins_on_the_same_key_and_is_reported(watched: Any) -> None:
    store, w, events = watched
    root, before = store.path, commit_count(store.path)
    store.set("state.json", "services.gmail", "program")  # pending
    store.set("state.json", "jobs.sync", "running")  # pending, another key
    data = json.loads((root / "state.json").read_text())
    data["services"]["gmail"] = "human"
    (root / "state.json").write_text(json.dumps(data, indent=2))
    one_commit_after(root, before, w, lambda: head_json(root)["services"]["gmail"] == "human")
    assert store.get("state.json", "services.gmail") == "human"
    assert store.get("state.json", "jobs.sync") == "running"
    msg = last_message(root)
    assert "services.gmail" in msg and '"program"' in msg
    ext = [e for e in events.of("external_change") if e.source == "human"][-1]
    assert [(c.key, c.ours, c.theirs) for c in ext.overwritten] == [(("services", "gmail"), "program", "human")]
    store.flush()
    final = head_json(root)
    assert final["services"]["gmail"] == "human" and final["jobs"]["sync"] == "running"


def test_edits_made_while_not_watching_are_committed_at_start(store: gitstate.Store) -> None:
    root, before = store.path, commit_count(store.path)
    (root / "state.json").write_text(json.dumps({"services": {}, "owner": "dave"}))
    (root / "new.yaml").write_text("a: 1\n")
    w = store.watch(**SETTLE)
    try:
        wait_until(lambda: commit_count(root) > before)
        assert w.wait_idle()
        assert head_json(root)["owner"] == "dave"
        assert "new.yaml" in git(root, "ls-files")
        assert git(root, "status", "--porcelain") == ""
    finally:
        w.stop()


# ===================================================================== a writer program and a human at once
WRITER = textwrap.dedent("""
    import json, sys, time
    import gitstate

    root, rounds = sys.argv[1], int(sys.argv[2])
    store = gitstate.open(root, durability="debounced", debounce_ms=100, max_delay_ms=300, fsync=False,
                          watch=False)
    w = store.watch(settle_ms=60, settle_timeout_ms=3000, debounce_ms=100)
    print("ready", flush=True)
    for i in range(rounds):
        store.set("state.json", ("program", f"k{i}"), i)
        store.set("state.json", "shared", f"program-{i}")
        time.sleep(0.01)  # a program working
    sys.stdin.readline()  # the test says: the human is done
    store.flush()
    assert w.wait_idle(timeout_s=30)
    def count():
        return sum(1 for _ in store._repo.iter_commits(store._repo.head()))
    n = count()
    store.flush()
    time.sleep(1.0)  # measuring: the commit count must stay put with the watcher running
    assert w.wait_idle(timeout_s=30)
    print(json.dumps({"settled": count() == n, "commits": count()}), flush=True)
    store.close()
""")


def test_program_and_human_edit_the_same_document(store: gitstate.Store, tmp_path: Path) -> None:
    root = store.path
    store.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rounds = 60
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(rounds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        for j in range(15):
            with store_lock(root):  # the human's read-modify-write, as one save
                data = json.loads((root / "state.json").read_text())
                data.setdefault("human", {})[f"h{j}"] = j
                if j % 5 == 4:
                    data["shared"] = f"human-{j}"
                (root / "state.json").write_text(json.dumps(data, indent=2))
            time.sleep(0.04)  # a human typing
        proc.stdin.write("done\n")
        proc.stdin.flush()
        out = proc.stdout.readline()
        assert proc.wait(timeout=60) == 0, out
    result = json.loads(out)
    assert result["settled"], result
    final = head_json(root)
    assert final["program"] == {f"k{i}": i for i in range(rounds)}
    assert final["human"] == {f"h{j}": j for j in range(15)}
    assert json.loads((root / "state.json").read_text()) == final
    assert git(root, "status", "--porcelain") == ""
    fsck(root)
    actors = git(root, "log", "--format=%(trailers:key=Gitstate-Actor,valueonly)")
    assert "human" in actors and "library" in actors


def test_open_with_watch_true(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with gitstate.open(root, durability="manual", fsync=False, watch=True) as store:
        assert store._watcher is not None and store._watcher.running
        (root / "notes.md").write_text("# hello\n")
        wait_until(lambda: store.get("notes.md", default=None) == "# hello\n")
        watcher = store._watcher
    assert not watcher.running  # close() stopped it
    assert "notes.md" in git(root, "ls-files")


# ===================================================================== known store-side gaps (see the report)
def test_ingest_never_rewrites_a_newer_save(watched: Any, monkeypatch: Any) -> None:
    import gitstate.ingest as store_mod  # the ingest (of the store) names the human author

    store, w, _ = watched
    root = store.path
    newer = {"services": {"gmail": True, "slack": True}, "owner": "newer"}
    real_author = store_mod.human_author
    fired: list[bool] = []

    def human_saves_again_meanwhile() -> str:
        # Called by the ingest between reading the file and committing it: the human saves once more.
        if not fired:
            fired.append(True)
            (root / "state.json").write_text(json.dumps(newer))
        return real_author()

    monkeypatch.setattr(store_mod, "human_author", human_saves_again_meanwhile)
    (root / "state.json").write_text(json.dumps({**newer, "owner": "first"}))
    wait_until(lambda: fired)
    assert w.wait_idle()
    assert json.loads((root / "state.json").read_text()) == newer
    wait_until(lambda: head_json(root) == newer, 5)


def test_pending_write_to_a_parent_key_keeps_its_other_keys(store: gitstate.Store) -> None:
    root = store.path
    store.set("state.json", "services", {"gmail": "program", "slack": True, "new": 1})  # pending
    (root / "state.json").write_text(json.dumps({"services": {"gmail": False, "slack": "human"}, "owner": "alice"}))
    store.ingest(["state.json"])
    store.flush()
    assert head_json(root)["services"] == {"gmail": "program", "slack": "human", "new": 1}


def test_human_wins_over_pending_writes_of_another_process(store: gitstate.Store) -> None:
    root = store.path
    store.set("state.json", "services.gmail", "program")  # pending in "the program"
    other = make_store(root)  # "gitstate watch"
    try:
        data = json.loads((root / "state.json").read_text())
        data["services"]["gmail"] = "human"
        (root / "state.json").write_text(json.dumps(data))
        other.ingest(["state.json"])
    finally:
        other.close()
    store.flush()
    assert head_json(root)["services"]["gmail"] == "human"


# ===================================================================== gitstate watch
CLI = [sys.executable, "-c", "from gitstate.cli import run; run()"]


class Lines:
    """Lines of a subprocess stream, read on a thread; ``expect`` waits for a matching one."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.q.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout_s: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.seen}") from None
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m


@contextlib.contextmanager
def cli_watch(root: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines, Lines]]:
    proc = subprocess.Popen(
        [*CLI, "-C", str(root), "watch", "--settle-ms", "50", "--settle-timeout-ms", "1000", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with proc:
        try:
            out, err = Lines(proc.stdout), Lines(proc.stderr)
            err.expect(r"^watching .* Ctrl-C to stop$")
            yield proc, out, err
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    root = tmp_path / "cli"
    with make_store(root) as s:
        s.set("state.json", None, {"services": {"gmail": False}, "owner": "alice"})
        s.flush()
    return root


def test_cli_watch_reports_commits_and_invalid_edits_and_stops_on_sigterm(cli_store: Path) -> None:
    root = cli_store
    with cli_watch(root) as (proc, out, err):
        (root / "state.json").write_text(json.dumps({"services": {"gmail": True}, "owner": "alice"}))
        m = out.expect(r"^committed ([0-9a-f]{8}) state\.json: services\.gmail false -> true$")
        assert git(root, "rev-parse", "HEAD").startswith(m.group(1))
        (root / "state.json").write_text('{\n  "services": {"gmail": true},\n  "owner" "bob"\n}\n')
        m = err.expect(r"^invalid edit: state\.json:3:(\d+): invalid JSON: .* \(kept in (.+)\)$")
        assert "owner" in Path(m.group(2)).read_text()
        assert not any("does not parse" in line for line in err.seen)  # one line per invalid edit
        (root / "state.json").write_text(json.dumps({"services": {"gmail": True}, "owner": "bob"}))
        out.expect(r'^committed [0-9a-f]{8} state\.json: owner "alice" -> "bob"$')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        err.expect(r"^stopped$")
    assert git(root, "status", "--porcelain") == ""
    subjects = git(root, "log", "--format=%s").splitlines()
    assert subjects[:2] == ['state.json: owner "alice" -> "bob"', "state.json: services.gmail false -> true"]


def test_cli_watch_commits_edits_made_before_it_started_and_stops_on_ctrl_c(cli_store: Path) -> None:
    root = cli_store
    (root / "state.json").write_text(json.dumps({"services": {"gmail": False}, "owner": "erin"}))
    (root / "extra.yaml").write_text("x: 1\n")
    with cli_watch(root, "--json") as (proc, out, _):
        m = out.expect(r'^\{"event": "loaded"')
        loaded = json.loads(m.string)
        assert loaded["recovered"] == ["extra.yaml", "state.json"]
        (root / "extra.yaml").unlink()
        m = out.expect(r'^\{"event": "committed"')
        assert json.loads(m.string)["docs"] == ["extra.yaml"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    assert "extra.yaml" not in git(root, "ls-files")
    assert head_json(root)["owner"] == "erin"


def test_cli_watch_without_a_store_is_a_one_line_error(tmp_path: Path) -> None:

    result = invoke(["-C", str(tmp_path), "watch"])
    assert result.exit_code == 1
    assert "no gitstate store" in result.output and "Traceback" not in result.output
    help_result = invoke(["watch", "--help"])
    assert help_result.exit_code == 0 and "--poll" in help_result.output


def test_settle_counts_from_the_files_change_time_within_bounds(tmp_path: Path) -> None:
    """The quiet period starts at the file's ctime (the save), not when watchfiles reported it; a ctime from a
    wall clock that jumped is trusted at most 250 ms before what the events show."""
    from gitstate.watcher import _MAX_TRUSTED_AGE_S, Watcher, _Pending

    w = Watcher(tmp_path, lambda paths: None, settle_ms=200)
    now = 1000.0
    wall = time.time()
    sig = (10, int((wall - 0.08) * 1e9), 1, int((wall - 0.08) * 1e9))
    changed = Watcher._changed_at(sig, now)
    assert now - 0.1 < changed < now - 0.07
    assert Watcher._changed_at((10, 0, 1, int((wall + 60) * 1e9)), now) == now  # a ctime in the future
    assert Watcher._changed_at(None, now) == now
    # Reported 90 ms after a save 80 ms ago... counted from the save.
    p = _Pending(first=now, touched=now, sig=sig, stable_since=changed, checked=True)
    assert w._quiet_since(p, now) == changed
    # A ctime an hour old (clock jump): no earlier than the events' bound minus the trusted margin.
    old = (10, 0, 1, int((wall - 3600) * 1e9))
    p = _Pending(first=now, touched=now, sig=old, stable_since=Watcher._changed_at(old, now), checked=True)
    assert w._quiet_since(p, now) == pytest.approx(now - w.step_ms / 1000 - _MAX_TRUSTED_AGE_S)
    # A file that is gone: the last event.
    p = _Pending(first=now - 1, touched=now, sig=None, stable_since=now - 1, checked=True)
    assert w._quiet_since(p, now) == now
