"""The write path at scale (issue 14), side by side in one run: what belongs here is the measurement of writes
(fsyncs per durable commit, big documents, two handles, big stores against git, set() cost deep in a batch); not
the history reads (bench_scale.py).

* Immediate ``set()`` on a 1 KB document: fsyncs per commit (``os.fsync`` wrapped and counted; every fsync
  gitstate makes goes through it) and wall time. Target: at most 5 fsyncs.
* Immediate ``set()`` on a 10 MB document (``--quick``: 2 MB), next to the seed way of saving the same bytes
  (write a temp file, fsync, rename). Target: at most the seed's time.
* A flush by the second of two handles open on a store of 100,000 files (``--quick``: 10,000), right after the
  other handle committed and wrote the Git index, next to the same handle flushing twice in a row. Target:
  within 2x.
* A durable flush of one changed document in a store of 10,000 files, next to ``git add -A && git commit -q``
  (git's defaults) of the same change on a copy. Target: at least 10x faster. Each timed call starts on a
  settled disk (``os.sync()`` in its untimed setup): git's defaults leave its writes in the page cache, and the
  next fsync on the same file system (the flush's) would otherwise write them back, timing git's data on
  gitstate's clock. The same pairs back to back, without the sync, are reported beside it.
* ``set()`` of the N-th new document in one batch (no flush between): the 1,000th against the 100,000th
  (``--quick``: 10,000th). Target: within 2x.

Run: ``.venv/bin/python benchmarks/bench_write.py [--quick] [--only NAME[,NAME]]`` (names: fsyncs, big, handles,
git, batch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gitstate
from benchmarks._common import fmt_ms, median, print_table
from benchmarks.bench_core import GIT_ENV


def _open(root: Path, **kw: Any) -> gitstate.Store:
    return gitstate.open(root, handle_signals=False, auto_pack=False, **kw)


def _interleave(cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]], rounds: int) -> dict[str, list[float]]:
    """Wall times of each case's timed call, run round-robin (``(setup, timed)`` pairs; setup is untimed)."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (setup, timed) in cases.items():
            setup()
            t0 = time.perf_counter()
            timed()
            out[name].append(time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- fsyncs per immediate commit
def bench_fsyncs(work: Path, n: int) -> None:
    """fsyncs per commit and wall time of ``n`` immediate 1 KB sets."""
    store = _open(work / "fsyncs", durability="immediate")
    store.set("a.json", None, {"x": "y" * 1000})
    calls = 0
    real = os.fsync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    os.fsync = counting
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            store.set("a.json", None, {"x": "z" * 1000, "i": i})
            times.append(time.perf_counter() - t0)
    finally:
        os.fsync = real
        store.close()
    print_table(
        ["measurement", "fsyncs/commit", "median", "target"],
        [["immediate set() 1 KB", f"{calls / n:.1f}", fmt_ms(median(times)), "at most 5 fsyncs"]],
    )


# ----------------------------------------------------------------------------- a 10 MB document
def _big_value(size: int, salt: int) -> dict[str, Any]:
    n = size // 100
    return {f"k{i:07d}": {"n": i + salt, "text": "x" * 70} for i in range(n)}


def bench_big(work: Path, size: int, rounds: int) -> None:
    """Immediate set() of a ``size``-byte document next to write+fsync+rename of the same bytes."""
    store = _open(work / "big", durability="immediate")
    seed = work / "seed"
    seed.mkdir()
    values = [_big_value(size, s) for s in range(2)]
    store.set("big.json", None, values[0])
    # Each side alternates between the two values on its own count, so that every timed call writes a value
    # that differs from the one it wrote before (one shared count made every gitstate call after the first
    # write the value already committed: a set() that changes nothing, which commits nothing).
    turns = {"gitstate": 0, "seed": 1}

    def next_value(side: str) -> Callable[[], None]:
        def step() -> None:
            turns[side] += 1

        return step

    def set_big() -> None:
        store.set("big.json", None, values[turns["gitstate"] % 2])

    def seed_save() -> None:
        data = json.dumps(values[turns["seed"] % 2]).encode()
        tmp = seed / "state.json.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, seed / "state.json")

    try:
        before = store.stats()["commits"]
        t = _interleave(
            {"gitstate": (next_value("gitstate"), set_big), "seed": (next_value("seed"), seed_save)}, rounds
        )
        made = store.stats()["commits"] - before
    finally:
        store.close()
    if made != rounds:  # every timed set() must be a real commit, or the figure measures a no-op
        raise SystemExit(f"bench_big: {rounds} timed set() calls made {made} commits")
    g, s = median(t["gitstate"]), median(t["seed"])
    mb = len(json.dumps(values[0])) / 1e6
    print_table(
        ["immediate set() of a big document", "median", "target"],
        [
            [f"gitstate, {mb:.1f} MB", fmt_ms(g), ""],
            ["seed: json.dumps + write + fsync + rename", fmt_ms(s), ""],
            ["ratio gitstate / seed", f"{g / s:.2f}", "at most 1.0"],
        ],
    )


# ----------------------------------------------------------------------------- two handles
def _build(root: Path, n_files: int) -> list[str]:
    docs = [f"d{i // 100:04d}/f{i % 100:02d}.json" for i in range(n_files)]  # nested: directories of 100
    with _open(root, durability="manual", fsync=False) as s:
        for i, d in enumerate(docs):
            s.set(d, None, {"id": i, "status": "todo", "note": "x" * 60})
        s.flush("build")
    return docs


def bench_handles(work: Path, n_files: int, rounds: int) -> None:
    """The second handle's flush right after the first's, next to one handle flushing twice in a row."""
    root = work / "handles"
    docs = _build(root, n_files)
    a = _open(root, durability="manual")
    b = _open(root, durability="manual")
    counter = [0]

    def write(store: gitstate.Store, doc: str) -> None:
        counter[0] += 1
        store.set(doc, "status", counter[0])

    def flush_and_write_index(store: gitstate.Store) -> None:
        store.flush()
        with store.services.commit_lock():  # what its background thread does once flushes pause
            store.services.repo.write_deferred_index()

    def one_setup() -> None:  # a commits and writes the index, then a again: nothing to catch up with
        write(a, docs[1])
        flush_and_write_index(a)
        write(a, docs[2])

    def two_setup() -> None:  # a commits and writes the index, then b: the index file is not the one b wrote
        write(a, docs[3])
        flush_and_write_index(a)
        write(b, docs[4])

    try:
        for s in (a, b):  # warm both handles
            write(s, docs[0])
            s.flush()
        t = _interleave({"one": (one_setup, a.flush), "two": (two_setup, b.flush)}, rounds)
    finally:
        a.close()
        b.close()
    one, two = median(t["one"]), median(t["two"])
    print_table(
        [f"flush of one change, {n_files:,} files", "median", "target"],
        [
            ["one handle (its own flush before)", fmt_ms(one), ""],
            ["second handle (the other's flush before)", fmt_ms(two), ""],
            ["ratio two / one", f"{two / one:.2f}", "within 2x"],
        ],
    )


# ----------------------------------------------------------------------------- a durable flush vs git
def bench_git(work: Path, n_files: int, rounds: int) -> None:
    """A durable (fsync) flush of one change at ``n_files`` files next to ``git add -A && git commit``."""
    root = work / "vsgit"
    docs = _build(root, n_files)
    copy = work / "vsgit-git"
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, env=GIT_ENV, check=True)  # the index's stat data, warm
    doc = docs[len(docs) // 2]
    store = _open(root, durability="manual")
    counter = [0]

    def change_store() -> None:
        counter[0] += 1
        store.set(doc, "status", f"lib-{counter[0]}")

    def change_file() -> None:
        counter[0] += 1
        target = copy / doc
        value = json.loads(target.read_text())
        value["status"] = f"git-{counter[0]}"
        target.write_text(json.dumps(value, indent=2) + "\n")

    def git_commit() -> None:
        subprocess.run(["sh", "-c", "git add -A && git commit -q -m change"], cwd=copy, env=GIT_ENV, check=True)

    def settled(change: Callable[[], None]) -> Callable[[], None]:
        def setup() -> None:
            change()
            os.sync()  # untimed: the disk holds nothing the other side left unwritten

        return setup

    try:
        store.flush()
        t = _interleave(
            {
                "gitstate": (settled(change_store), store.flush),
                "git": (settled(change_file), git_commit),
                "gitstate, right after git": (change_store, store.flush),
                "git, right after gitstate": (change_file, git_commit),
            },
            rounds,
        )
    finally:
        store.close()
    g, s = median(t["gitstate"]), median(t["git"])
    g2, s2 = median(t["gitstate, right after git"]), median(t["git, right after gitstate"])
    print_table(
        [f"commit of one change, {n_files:,} files", "median", "target"],
        [
            ["gitstate flush (fsync)", fmt_ms(g), ""],
            ["git add -A && git commit -q (git's defaults)", fmt_ms(s), ""],
            ["git / gitstate", f"{s / g:.1f}x", "at least 10x"],
            ["not settled: gitstate flush right after git's commit", fmt_ms(g2), ""],
            ["not settled: git right after gitstate's flush", fmt_ms(s2), ""],
            ["not settled: git / gitstate", f"{s2 / g2:.1f}x", "(its fsyncs also write git's data)"],
        ],
    )


# ----------------------------------------------------------------------------- a batch of new documents
def bench_batch(work: Path, total: int) -> None:
    """Median wall time of the ``set()`` calls around the 1,000th and the ``total``-th of one unflushed batch."""
    store = _open(work / "batch", durability="manual", fsync=False)
    marks = [1_000, total - 50]
    near: dict[int, list[float]] = {m: [] for m in marks}
    try:
        for i in range(1, total + 1):
            t0 = time.perf_counter()
            store.set(f"docs/{i:07d}.json", None, {"n": i})
            dt = time.perf_counter() - t0
            for m in marks:
                if m - 50 < i <= m + 50:
                    near[m].append(dt)
    finally:
        store.close()
    one, big = median(near[marks[0]]), median(near[marks[1]])
    print_table(
        ["set() of the N-th new document", "median", "target"],
        [["1,000th", fmt_ms(one), ""], [f"{total:,}th", fmt_ms(big), ""], ["ratio", f"{big / one:.2f}", "within 2x"]],
    )


def main() -> None:
    """Run the measurements (all, or those named by ``--only``) and print a table for each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller stores and fewer rounds")
    parser.add_argument("--only", default="", help="comma-separated: fsyncs, big, handles, git, batch")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"fsyncs", "big", "handles", "git", "batch"}
    work = Path(tempfile.mkdtemp(prefix="bench-write-"))
    q = args.quick
    try:
        if "fsyncs" in only:
            bench_fsyncs(work, 10 if q else 30)
        if "big" in only:
            bench_big(work, 2_000_000 if q else 10_000_000, 5 if q else 9)
        if "handles" in only:
            bench_handles(work, 10_000 if q else 100_000, 9 if q else 21)
        if "git" in only:
            bench_git(work, 10_000, 9 if q else 21)
        if "batch" in only:
            bench_batch(work, 10_000 if q else 100_000)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
