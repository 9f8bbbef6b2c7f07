"""The write path at scale (issue 14), side by side in one run: what belongs here is the measurement of writes
(fsyncs per durable commit, one small pack per flush against loose objects, set() cost deep in a batch); not the
history reads (bench_scale.py).

* Immediate ``set()`` on a 1 KB document: fsyncs per commit (``os.fsync`` wrapped and counted) and wall time,
  with the flush's objects written as one pack (this checkout) and, interleaved, as loose objects
  (``Repository.pack_writes`` off, the default for now). Target: at most 5 fsyncs.
* ``set()`` of the N-th new document in one batch (no flush between): the 1,000th against the 100,000th
  (``--quick``: 10,000th). Target: within 2x.

Run: ``.venv/bin/python benchmarks/bench_write.py [--quick] [--repeat N]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gitstate
from benchmarks._common import fmt_ms, median, parse_args, print_table


def _immediate_sets(root: Path, n: int, *, loose: bool) -> tuple[float, list[float]]:
    """fsyncs per commit and wall times of ``n`` immediate 1 KB sets (objects loose when ``loose``)."""
    store = gitstate.open(root, durability="immediate", handle_signals=False, auto_pack=False)
    repo: Any = store.services.repo
    repo.pack_writes = not loose
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
    return calls / n, times


def _batch_set_times(root: Path, total: int, marks: list[int]) -> dict[int, float]:
    """Median wall time of the ``set()`` calls around each mark (the 1,000th...) of one unflushed batch."""
    store = gitstate.open(root, durability="manual", fsync=False, handle_signals=False, auto_pack=False)
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
    return {m: median(v) for m, v in near.items()}


def main() -> None:
    """Run both measurements and print a table of medians and ratios."""
    args = parse_args(__doc__ or "")
    work = Path(tempfile.mkdtemp(prefix="bench-write-"))
    rounds = 3
    n = 10 if args.quick else 30
    fs = {"pack": [], "loose": []}  # type: dict[str, list[float]]
    ts = {"pack": [], "loose": []}  # type: dict[str, list[float]]
    for r in range(rounds):  # interleaved
        for mode in ("pack", "loose"):
            per_commit, times = _immediate_sets(work / f"{mode}{r}", n, loose=mode == "loose")
            fs[mode].append(per_commit)
            ts[mode].extend(times)
    rows = [
        [f"immediate set() 1 KB, {mode}", f"{median(fs[mode]):.1f}", fmt_ms(median(ts[mode]))]
        for mode in ("pack", "loose")
    ]
    print_table(["measurement", "fsyncs/commit", "median"], rows)
    print(f"ratio pack/loose wall: {median(ts['pack']) / median(ts['loose']):.2f}")
    big = 10_000 if args.quick else 100_000
    near = _batch_set_times(work / "batch", big, [1_000, big - 50])
    print_table(
        ["set() of the N-th new document", "median"],
        [[f"{m:,}th", fmt_ms(v)] for m, v in near.items()],
    )
    print(f"ratio {big:,}th / 1,000th: {near[big - 50] / near[1_000]:.2f}")


if __name__ == "__main__":
    main()
