"""Remote benchmarks: gitstate's push next to real ``git push``, and auto-push under a steady write load.

Run: ``python benchmarks/bench_remote.py [--quick]`` (``--quick`` finishes in under a minute).

Measured side by side in one run, medians, printed as Markdown tables:

1. Pushing N new commits (default 1,000; each changes one key of a JSON document and one task document) from a
   store to a fresh bare repository made with ``git init --bare``, over a local path and over a real
   ``git daemon`` on 127.0.0.1: ``store.push()`` next to ``git push`` of the same commits from the same
   repository.
2. Auto-push under a steady write load: a writer does ``set()`` + ``flush()`` 50 times a second for 30 s
   (``--quick``: 10 s), with and without ``auto_push`` to a ``git daemon``. Reported: write latency (median,
   p95, p99, max) both ways, and how far the remote lags behind (time from a commit to the push that carried it;
   commits waiting).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitstate

try:
    from gitstate.ancestry import ahead_behind
except ImportError:  # before issue 12 (benchmarks/compare.py runs that tree too): it lived in history.py
    from gitstate.history import ahead_behind  # type: ignore[attr-defined,no-redef]

__all__ = ["main"]

logger = logging.getLogger("gitstate.bench")

#: The load test measures what auto-push adds to a write; without fsync the disk does not dominate.
FSYNC = False
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True).stdout


def make_bare(path: Path) -> Path:
    git("init", "-q", "--bare", "--initial-branch=main", str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def git_daemon(base: Path) -> Iterator[int]:
    """A real ``git daemon`` on 127.0.0.1 serving ``base`` (receive-pack on); yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            str(base),
        ],
        env=GIT_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("git daemon did not start")
            time.sleep(0.02)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def ms(seconds: float) -> str:
    v = seconds * 1000
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


# ----------------------------------------------------------------------------- 1. push N commits
def build_history(path: Path, commits: int) -> gitstate.Store:
    """A store with ``commits`` commits, each changing one key of state.json and one of 20 task documents."""
    store = gitstate.open(path, durability="manual", fsync=False, auto_pack=False)
    store.set("state.json", None, {"services": {f"s{i}": False for i in range(200)}, "counter": 0})
    store.flush()
    for i in range(commits - 1):
        store.set("state.json", "counter", i)
        store.set(f"tasks/t{i % 20}.json", "status", f"step {i}")
        store.flush()
    return store


def bench_push(work: Path, commits: int, repeat: int) -> None:
    src = work / "src"
    t0 = time.perf_counter()
    store = build_history(src, commits)
    build_s = time.perf_counter() - t0
    head = store.head
    assert head is not None
    rows: list[list[Any]] = []
    n = 0

    def fresh(base: Path) -> str:
        nonlocal n
        n += 1
        name = f"r{n}.git"
        make_bare(base / name)
        return name

    try:
        with git_daemon(work) as port:
            for label, url_of in (
                ("local bare repository", lambda name: str(work / name)),
                ("over git daemon (git://127.0.0.1)", lambda name: f"git://127.0.0.1:{port}/{name}"),
            ):
                ours, theirs = [], []
                for _ in range(repeat):
                    name = fresh(work)
                    store.remote_add("bench", url_of(name))
                    t = time.perf_counter()
                    assert store.push("bench") == head
                    ours.append(time.perf_counter() - t)
                    assert git("rev-parse", "main", cwd=work / name).strip() == head
                    name = fresh(work)
                    t = time.perf_counter()
                    git("push", "-q", url_of(name), "main", cwd=src)
                    theirs.append(time.perf_counter() - t)
                    assert git("rev-parse", "main", cwd=work / name).strip() == head
                g, r = statistics.median(ours), statistics.median(theirs)
                rows.append([label, ms(g), ms(r), f"{g / r:.1f}x"])
    finally:
        store.close()
    objects = len(git("rev-list", "--objects", "main", cwd=src).splitlines())
    print(
        f"\n### Push {commits:,} new commits ({objects:,} objects; history built in {build_s:.1f} s; "
        f"median of {repeat})\n"
    )
    table(["target", "gitstate push", "git push", "gitstate / git"], rows)


# ----------------------------------------------------------------------------- 2. auto-push under load
def steady_writes(store: gitstate.Store, duration_s: float, rate_hz: float) -> tuple[list[float], int]:
    """``set()`` + ``flush()`` at ``rate_hz`` for ``duration_s``; returns per-write latencies and missed ticks."""
    interval = 1.0 / rate_hz
    latencies: list[float] = []
    missed = 0
    start = time.perf_counter()
    next_t = start
    i = 0
    while True:
        now = time.perf_counter()
        if now - start >= duration_s:
            break
        if now < next_t:
            time.sleep(next_t - now)  # pacing the load generator, not waiting for a result
        elif now - next_t > interval:
            missed += int((now - next_t) / interval)
            next_t = now  # fell behind: do not try to catch up in a burst
        t = time.perf_counter()
        store.set("state.json", "counter", i)
        store.set(f"tasks/t{i % 20}.json", "status", f"step {i}")
        store.flush()
        latencies.append(time.perf_counter() - t)
        i += 1
        next_t += interval
    return latencies, missed


class _LagTracker:
    """Time from each commit to the push that carried it to the remote (commits are linear here)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.order: list[float] = []  # commit times, in commit order
        self.index: dict[str, int] = {}
        self.done = 0  # commits before this index are on the remote
        self.lags: list[float] = []
        self.pushes: list[int] = []
        self.errors: list[str] = []

    def committed(self, e: Any) -> None:
        with self.lock:
            self.index[e.commit] = len(self.order)
            self.order.append(time.perf_counter())

    def pushed(self, e: Any) -> None:
        now = time.perf_counter()
        with self.lock:
            upto = self.index.get(e.commit, len(self.order) - 1) + 1
            self.lags.extend(now - t for t in self.order[self.done : upto])
            self.done = max(self.done, upto)
            self.pushes.append(e.count)

    def push_error(self, e: Any) -> None:
        self.errors.append(e.error)


class _LoadResult:
    """Measurements of one mode (auto-push off or on), gathered over several rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.missed = 0
        self.seconds = 0.0
        self.lag = _LagTracker()
        self.waiting: list[int] = []
        self.catch_up: list[float] = []


def prepare(path: Path, url: str, *, auto_push: bool) -> None:
    with gitstate.open(path, durability="manual", fsync=FSYNC, auto_pack=False) as s:
        s.set("state.json", None, {"services": {f"s{i}": False for i in range(200)}, "counter": -1})
        s.flush()
        s.remote_add("origin", url)
        if auto_push:
            s.sync()


def run_round(path: Path, res: _LoadResult, *, auto_push: bool, duration_s: float, rate_hz: float) -> None:
    """One steady-load round on the store at ``path``, measurements added to ``res``."""
    lag = res.lag
    store = gitstate.open(
        path,
        durability="manual",
        auto_push="origin" if auto_push else None,
        fsync=FSYNC,
        auto_pack=False,
        on={"committed": lag.committed, "pushed": lag.pushed, "push_error": lag.push_error},
    )
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            repo = store._repo
            res.waiting.append(ahead_behind(repo, repo.head(), repo.read_ref("refs/remotes/origin/main"))[0])

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        if auto_push:
            sampler.start()
        latencies, missed = steady_writes(store, duration_s, rate_hz)
        res.latencies += latencies
        res.missed += missed
        res.seconds += duration_s
        t_end = time.perf_counter()
        if auto_push:
            store._push_queue.wait_idle(30)
            res.catch_up.append(time.perf_counter() - t_end)
    finally:
        stop.set()
        store.close()


def bench_auto_push(work: Path, duration_s: float, rate_hz: float, rounds: int) -> None:
    """Rounds alternate between auto-push off and on, so that a change in the machine's load hits both."""
    make_bare(work / "auto.git")
    results = {False: _LoadResult(), True: _LoadResult()}
    with git_daemon(work) as port:
        url = f"git://127.0.0.1:{port}/auto.git"
        for auto_push in (False, True):
            prepare(work / f"auto-{auto_push}", url, auto_push=auto_push)
        for _ in range(rounds):
            for auto_push in (False, True):
                run_round(
                    work / f"auto-{auto_push}",
                    results[auto_push],
                    auto_push=auto_push,
                    duration_s=duration_s / rounds,
                    rate_hz=rate_hz,
                )
    rows = []
    for auto_push, r in results.items():
        lat = r.latencies
        rows.append(
            [
                f"auto-push {'on' if auto_push else 'off'}",
                f"{len(lat)} ({len(lat) / r.seconds:.0f}/s)",
                ms(statistics.median(lat)),
                ms(pct(lat, 0.95)),
                ms(pct(lat, 0.99)),
                ms(max(lat)),
                r.missed,
            ]
        )
    on = results[True]
    n = max(1, len(on.lag.pushes))
    lag_row = [
        len(on.lag.pushes),
        f"{sum(on.lag.pushes) / n:.1f}",
        ms(statistics.median(on.lag.lags)),
        ms(pct(on.lag.lags, 0.95)),
        ms(max(on.lag.lags)),
        max(on.waiting, default=0),
        ms(max(on.catch_up, default=0.0)),
        len(on.lag.errors),
    ]
    print(
        f"\n### Steady writes: 2 x set() + flush() at {rate_hz:g}/s for {duration_s:g} s per mode "
        f"({rounds} alternating rounds, fsync={FSYNC}), auto-push to a git daemon\n"
    )
    table(["", "writes (rate)", "median", "p95", "p99", "max", "ticks missed"], rows)
    print("\nRemote lag with auto-push on (commit -> on the remote):\n")
    table(
        [
            "pushes",
            "commits/push",
            "lag median",
            "lag p95",
            "lag max",
            "max commits waiting",
            "catch-up after load",
            "push errors",
        ],
        [lag_row],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller and faster (< 60 s)")
    parser.add_argument("--commits", type=int, default=0, help="commits to push (default 1000, quick 300)")
    parser.add_argument("--repeat", type=int, default=0, help="timed pushes per target (default 3, quick 1)")
    parser.add_argument("--duration", type=float, default=0, help="steady-load seconds (default 30, quick 10)")
    parser.add_argument("--rate", type=float, default=50, help="flushes per second under steady load")
    args = parser.parse_args()
    if shutil.which("git") is None:
        raise SystemExit("bench_remote needs the git binary")
    commits = args.commits or (300 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    duration = args.duration or (10.0 if args.quick else 30.0)
    # Store internals may log per commit while other modules are missing; keep the output to the tables.
    logging.disable(logging.ERROR)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gitstate-bench-remote-") as tmp:
        work = Path(tmp)
        print(
            f"gitstate {gitstate.__version__}, {git('--version').strip()}, {os.cpu_count()} CPUs"
            + (" (quick)" if args.quick else "")
        )
        bench_push(work, commits, repeat)
        bench_auto_push(work, duration, args.rate, rounds=2 if args.quick else 6)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
