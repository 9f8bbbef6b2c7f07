"""Several processes on one store, kill -9 at random points, exit and signal handling.

Workers live in tests/workers/writer.py. A worker prints one line after each flush() returns, so every line the
parent reads is a commit the library acknowledged; after a kill -9 every one of them must be in history.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TORTURE, WORKERS, reaped, start_worker, wait_exit, worker, worker_stderr
from helpers import commit_ids, fsck, git, git_show, status_porcelain

import gitstate
from gitstate.events import Loaded


class Lines:
    """Read a worker's stdout line by line with a deadline (never blocks a test forever)."""

    def __init__(self, proc: subprocess.Popen[str] | None, fd: int | None = None) -> None:
        if fd is None:
            assert proc is not None and proc.stdout is not None
            fd = proc.stdout.fileno()
        self.proc = proc
        self.fd = fd
        self.buf = b""
        self.eof = False

    def stderr(self) -> str:
        return worker_stderr(self.proc) if self.proc is not None else ""

    def _fill(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        if ready:
            chunk = os.read(self.fd, 65536)
            if chunk:
                self.buf += chunk
            else:
                self.eof = True

    def next(self, timeout_s: float = 30.0) -> str | None:
        """The next line, or None at end of output. AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"worker printed nothing for {timeout_s}s: {self.stderr()}")
            self._fill(left)
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def drain(self) -> list[str]:
        """Complete lines already written (the writer is gone; no end-of-file needed)."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [ln.decode() for ln in lines]

    def rest(self, timeout_s: float = 30.0) -> list[str]:
        """Every remaining line (the process must have ended or be ending)."""
        out = []
        while (line := self.next(timeout_s)) is not None:
            out.append(line)
        return out


def _cat_files(repo: Path, specs: list[str]) -> list[bytes | None]:
    """``git cat-file --batch`` for many ``rev:path`` specs in one call."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input="\n".join(specs).encode() + b"\n",
        capture_output=True,
        check=True,
        timeout=60,
    )
    out, pos = proc.stdout, 0
    result: list[bytes | None] = []
    for _ in specs:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        pos = nl + 1
        if header[-1] == b"missing":
            result.append(None)
            continue
        size = int(header[2])
        result.append(out[pos : pos + size])
        pos += size + 1
    return result


# ----------------------------------------------------------------------------- round trip across processes
def test_round_trip_in_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with gitstate.open(path, durability="manual", fsync=True) as s:
        s.set("state.json", ("meetings", "event.1", "status"), "skipped")
        s.set("memory/work.yaml", "follow_ups", ["a", "b"])
        s.set("notes.md", None, "héllo\n")
        c1 = s.flush()
        s.set("state.json", "count", 2)
        c2 = s.flush()
    assert commit_ids(path) == [c2, c1]
    code = (
        "import gitstate, json, sys\n"
        "with gitstate.open(sys.argv[1], durability='manual', create=False) as s:\n"
        "    print(json.dumps({d: s.get(d) for d in s.docs()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == {
        "memory/work.yaml": {"follow_ups": ["a", "b"]},
        "notes.md": "héllo\n",
        "state.json": {"meetings": {"event.1": {"status": "skipped"}}, "count": 2},
    }
    assert commit_ids(path) == [c2, c1], "a reader process must not commit anything"
    fsck(path)
    assert status_porcelain(path) == ""


def test_exit_without_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    out = worker("pending", str(path), "--then", "exit", "--value", "from-exit")
    assert out.stdout.startswith("ready 4")
    assert json.loads(git_show(path, "HEAD", "state.json")) == {"k0": 0, "k1": 1, "k2": 2, "n": "from-exit"}
    assert status_porcelain(path) == ""
    fsck(path)


def test_sigterm_flushes_and_dies_by_the_signal(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with reaped(start_worker("pending", str(path), "--then", "wait", "--value", "from-sigterm")) as proc:
        assert Lines(proc).next() == "ready 4"
        proc.send_signal(signal.SIGTERM)
        rc = wait_exit(proc, 20)
    assert rc == -signal.SIGTERM, worker_stderr(proc)
    assert json.loads(git_show(path, "HEAD", "state.json"))["n"] == "from-sigterm"
    assert status_porcelain(path) == ""
    fsck(path)


def test_sigint_flushes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with reaped(start_worker("pending", str(path), "--then", "wait", "--value", "from-sigint")) as proc:
        assert Lines(proc).next() == "ready 4"
        proc.send_signal(signal.SIGINT)
        rc = wait_exit(proc, 20)
        err = worker_stderr(proc)
    assert rc in (-signal.SIGINT, 1, 130), (rc, err)
    assert "KeyboardInterrupt" in err or rc == -signal.SIGINT
    assert json.loads(git_show(path, "HEAD", "state.json"))["n"] == "from-sigint"
    assert status_porcelain(path) == ""


def test_sigterm_while_the_main_thread_is_writing(tmp_path: Path) -> None:
    """The signal lands at a random point of a set() loop (main thread inside the store's locks)."""
    rng = random.Random(1234)
    for attempt in range(6):
        path = tmp_path / f"s{attempt}"
        proc = start_worker(
            "pending",
            str(path),
            "--then",
            "busy",
            "--durability",
            "debounced",
            "--debounce-ms",
            "50",
            "--max-delay-ms",
            "200",
        )
        with reaped(proc):
            assert Lines(proc).next() == "ready 4"
            time.sleep(rng.uniform(0.25, 0.5))  # a random point in the write loop, flushes under way
            proc.send_signal(signal.SIGTERM)
            rc = wait_exit(proc, 6)  # fails with the worker's stacks if it hung after SIGTERM
        assert rc == -signal.SIGTERM
        loaded: list[Loaded] = []
        with gitstate.open(path, durability="manual", fsync=False, on={"loaded": loaded.append}) as s:
            assert s.get("state.json", "busy") > 0
        assert loaded[0].recovered == [] and loaded[0].quarantined == {}
        fsck(path)


# ----------------------------------------------------------------------------- several writer processes
@pytest.mark.parametrize("durability", ["manual", "debounced"])
def test_processes_writing_different_keys_of_one_document(tmp_path: Path, durability: str) -> None:
    """4 processes (the store does not exist yet: they also race to create it)."""
    path = tmp_path / "s"
    n_proc, count = 4, 25
    procs = [
        start_worker(
            "keys",
            str(path),
            "--worker",
            str(w),
            "--count",
            str(count),
            "--durability",
            durability,
            "--debounce-ms",
            "10",
            "--max-delay-ms",
            "30",
        )
        for w in range(n_proc)
    ]
    reported: list[str] = []
    for proc in procs:
        with reaped(proc):
            lines = Lines(proc).rest(60)
            assert proc.wait(60) == 0, worker_stderr(proc)
            assert lines and lines[-1].startswith("done"), (lines, worker_stderr(proc))
            reported += [ln.split()[1] for ln in lines if ln.startswith("commit ")]
    history = set(commit_ids(path))
    missing = [c for c in reported if c not in history]
    assert not missing, f"{len(missing)} acknowledged commits are not reachable from HEAD"
    if durability == "manual":
        assert len(reported) == n_proc * count
    with gitstate.open(path, durability="manual", fsync=False) as s:
        value = s.get("state.json")
    for w in range(n_proc):
        assert value[f"w{w}"] == {f"k{i}": i for i in range(count)}, f"keys of worker {w} lost"
    fsck(path)
    assert status_porcelain(path) == ""


def test_processes_writing_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "s"
    gitstate.open(path, durability="manual", fsync=False).close()
    n_proc, count = 4, 15
    procs = [
        start_worker("samekey", str(path), "--worker", str(w), "--count", str(count), "--pad", "30000")
        for w in range(n_proc)
    ]
    for proc in procs:
        with reaped(proc):
            lines = Lines(proc).rest(60)
            assert proc.wait(60) == 0 and lines[-1] == "done", worker_stderr(proc)
    final = json.loads((path / "state.json").read_text())
    assert final["shared"]["writer"] in {str(w) for w in range(n_proc)}
    assert 0 <= final["shared"]["i"] < count
    assert final["shared"]["pad"] == "y" * 30000
    ids = commit_ids(path)
    for blob in _cat_files(path, [f"{c}:state.json" for c in ids]):
        assert blob is not None
        v = json.loads(blob)  # every version parses: never a torn file
        assert v["shared"]["pad"] == "y" * 30000
    assert (path / "state.json").read_bytes() == _cat_files(path, ["HEAD:state.json"])[0]
    fsck(path)
    assert status_porcelain(path) == ""


def test_another_process_commit_is_seen_at_once_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s"
    b = gitstate.open(path, durability="manual", fsync=False)
    try:
        b.set("state.json", None, {"a": "0", "b": "0"})
        b.flush()
        assert b.get("state.json", "a") == "0"
        worker("set", str(path), "--key", "a", "--value", "from-A")
        assert b.get("state.json", "a") == "from-A"  # the very next read, no waiting
        b.set("state.json", "b", "from-B")  # B's view of "a" was "0" a moment ago
        worker("set", str(path), "--key", "a", "--value", "from-A-again")
        b.flush()
        assert json.loads(git_show(path, "HEAD", "state.json")) == {"a": "from-A-again", "b": "from-B"}
        assert b.get("state.json") == {"a": "from-A-again", "b": "from-B"}
        worker("set", str(path), "--doc", "other.json", "--key", "x", "--value", "1")
        assert b.docs() == ["other.json", "state.json"]
    finally:
        b.close()
    fsck(path)
    assert status_porcelain(path) == ""


# ----------------------------------------------------------------------------- kill -9
class ForkServer:
    """tests/workers/forkserver.py: forks writers from a process that already imported gitstate."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "forkserver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.replies = Lines(self.proc)
        self.n = 0

    def spawn(self, *argv: str) -> tuple[int, Lines, list[int]]:
        """Start ``writer.py argv``; returns (pid, its output lines, fds to close)."""
        self.n += 1
        fifo = self.tmp / f"out{self.n}"
        os.mkfifo(fifo)
        r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # so the reader never sees a premature EOF
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"argv": list(argv), "out": str(fifo)}) + "\n")
        self.proc.stdin.flush()
        pid_line = self.replies.next(30)
        assert pid_line, "the fork server died"
        return int(pid_line), Lines(None, fd=r), [r, keep]

    @staticmethod
    def gone(pid: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {pid} still alive")
            time.sleep(0.002)  # polling for the kernel to reap the child, with a deadline

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _kill9_rounds(path: Path, rounds: int, seed: int, tmp: Path) -> None:
    rng = random.Random(seed)
    acknowledged: dict[int, str] = {}
    last_n = 0
    # Nothing outside the store may change: a sibling directory and the store's parent are checked each round.
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep.json").write_bytes(b'{"keep": true}\n')
    server = ForkServer(tmp)
    try:
        for r in range(rounds):
            fsync = "1" if r % 3 == 0 else "0"
            pad = str(rng.choice([0, 0, 3000, 60000]))
            pid, lines, fds = server.spawn("loop", str(path), "--fsync", fsync, "--pad", pad)
            printed: list[str] = []
            try:
                for _ in range(rng.randint(0, 5)):
                    line = lines.next(60)
                    if line is None:
                        break
                    printed.append(line)
                # A random point: during start-up and recovery, or in the middle of a flush loop.
                time.sleep(rng.uniform(0, 0.1) if rng.random() < 0.25 else rng.uniform(0, 0.03))
                os.kill(pid, signal.SIGKILL)
                server.gone(pid)
                printed += lines.drain()
            finally:
                for fd in fds:
                    os.close(fd)
            for ln in printed:
                n_s, cid = ln.split()
                acknowledged[int(n_s)] = cid
            # Reopen with no manual step; an acknowledged flush is never lost.
            t0 = time.monotonic()
            with gitstate.open(path, durability="manual", fsync=False) as s:
                history = set(commit_ids(path))
                new = {n: c for n, c in acknowledged.items() if n > last_n}
                for n, cid in new.items():
                    assert cid in history, f"round {r}: acknowledged commit {cid} (n={n}) not in history"
                blobs = _cat_files(path, [f"{cid}:state.json" for cid in new.values()])
                for (n, _), blob in zip(new.items(), blobs, strict=True):
                    assert blob is not None and json.loads(blob)["n"] == n
                if acknowledged:
                    last_n = max(acknowledged)
                    assert s.get("state.json", "n") >= last_n
                # No stale lock blocks the next write.
                s.set("parent.json", "round", r)
                assert s.flush() is not None
            assert time.monotonic() - t0 < 10, "reopening after a crash took too long (a stale lock?)"
            fsck(path)
            assert status_porcelain(path) == "", f"round {r}"
            assert [p.name for p in outside.iterdir()] == ["keep.json"], f"round {r}"
            assert (outside / "keep.json").read_bytes() == b'{"keep": true}\n'
            assert {p.name for p in tmp.iterdir()} - {"outside", path.name} <= {f"out{i}" for i in range(1, r + 2)}
    finally:
        server.close()
    assert len(acknowledged) >= rounds, "few flushes ever returned: the kill points are all too early"
    history = set(commit_ids(path))
    assert all(c in history for c in acknowledged.values())


def test_kill9_during_flush_loops(tmp_path: Path) -> None:
    _kill9_rounds(tmp_path / "s", rounds=30, seed=20240501, tmp=tmp_path)


@pytest.mark.torture
@pytest.mark.skipif(not TORTURE, reason="set GITSTATE_TORTURE=1 for the long kill -9 run")
def test_kill9_torture(tmp_path: Path) -> None:
    seed = int(time.time())
    print(f"kill -9 torture seed {seed}")
    _kill9_rounds(tmp_path / "s", rounds=int(os.environ.get("GITSTATE_TORTURE_ROUNDS", "200")), seed=seed, tmp=tmp_path)


@pytest.mark.torture
@pytest.mark.skipif(not TORTURE, reason="set GITSTATE_TORTURE=1 for the long multi-process run")
def test_many_processes_torture(tmp_path: Path) -> None:
    path = tmp_path / "s"
    n_proc, count = 8, 100
    procs = [start_worker("keys", str(path), "--worker", str(w), "--count", str(count)) for w in range(n_proc)]
    reported: list[str] = []
    for proc in procs:
        with reaped(proc):
            lines = Lines(proc).rest(300)
            assert proc.wait(300) == 0, worker_stderr(proc)
            reported += [ln.split()[1] for ln in lines if ln.startswith("commit ")]
    history = set(commit_ids(path))
    assert all(c in history for c in reported)
    with gitstate.open(path, durability="manual", fsync=False) as s:
        value: dict[str, Any] = s.get("state.json")
    for w in range(n_proc):
        assert value[f"w{w}"] == {f"k{i}": i for i in range(count)}
    fsck(path)
    git(path, "gc", "-q")
    fsck(path)
