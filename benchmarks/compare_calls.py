"""Paired before/after timing of in-process library calls: two trees' workers, interleaved batch by batch.

What belongs here: the rows of ``bench_history.py`` that time a call of a few milliseconds in-process
(``store.log()`` cold and warm, ``store.log(key=...)`` cold, ``store.diff``, ``gitstate log`` through click), timed
for two source trees side by side. What does not: CLI start-up figures and the baselines (``bench_history.py``
and ``compare.py`` own those).

Why a second comparison next to ``compare.py``: that one runs a whole benchmark per tree and round, so two
medians of the same row are seconds to minutes apart, and on a shared machine a slow spell lasting a few
seconds moved a 3 ms row by 20-40 % between rounds (the "baseline" rows drifted as much). Here each tree gets a
worker process (its own venv's python, its own copy of the fixture), and the driver asks them in turn, ABBA, for a
batch of ``--calls`` cold calls (~30 ms): the two sides of a pair are measured within milliseconds of each other,
so a slow spell lands on both. The figure of record is the median of the per-pair ratios (after / before), with
its spread; the medians of each side are printed too.

Usage: ``python benchmarks/compare_calls.py --before /tmp/before --after /tmp/after [--pairs 101] [--calls 10]``
(each DIR a source tree with ``.venv``; the 1,000-commit ``bench_history.py --quick`` fixture, built if missing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table

__all__ = ["OPS", "main", "sides", "summarize"]

#: The calls timed, by name: what each worker runs (cold = the history index's in-memory images dropped first).
OPS = (
    "store.log() cold",
    "store.log() warm",
    "store.log(key=...) cold",
    "store.diff() cold",
    "gitstate log in-process",
)

#: The key of ``store.log(key=...)``: one the fixture's commits change (as in bench_history.py).
KEY = "items.k0042.value"

# The worker: one per tree, run by that tree's python. It reads "<op index> <calls>" lines and answers with the
# seconds the batch took (setup excluded), one line each.
_WORKER = r"""
import contextlib, io, shutil, sys, time
from pathlib import Path
import gitstate
try:
    from gitstate import history_index
except ImportError:
    from gitstate import history as history_index
from gitstate.cli import main as cli_main

src, work, distance, key = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
shutil.copytree(src, work, symlinks=True)
store = gitstate.open(work, durability="manual", handle_signals=False, auto_pack=False)
old, head = store.resolve(f"HEAD~{distance}"), store.head

def cold():
    history_index._INDEXES.clear()
    history_index._DECODED.clear()

def cli():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli_main(["-C", str(work), "log"], standalone_mode=False)

ops = [
    (lambda: store.log(), cold),
    (lambda: store.log(), None),
    (lambda: store.log(key=key), cold),
    (lambda: store.diff(old, head), cold),
    (cli, cold),
]
for fn, setup in ops:  # one untimed call each: imports, first reads
    if setup:
        setup()
    fn()
print("ready", flush=True)
clock = time.perf_counter
for line in sys.stdin:
    op, calls = map(int, line.split())
    fn, setup = ops[op]
    total = 0.0
    for _ in range(calls):
        if setup:
            setup()
        t = clock()
        fn()
        total += clock() - t
    print(repr(total / calls), flush=True)
store.close()
"""


class _Worker:
    """One tree's worker process: its venv's python running :data:`_WORKER` on a copy of the fixture."""

    def __init__(self, tree: Path, fixture: Path, work: Path, distance: int = 900, key: str = KEY) -> None:
        work.parent.mkdir(parents=True)
        python = tree / ".venv" / "bin" / "python"
        self.proc = subprocess.Popen(
            [str(python), "-c", _WORKER, str(fixture), str(work), str(distance), key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=work.parent,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work.parent)},
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().strip()
        if ready != "ready":
            self.proc.kill()
            self.proc.communicate()
            raise SystemExit(f"the worker of {tree} did not start (said {ready!r})")

    def batch(self, op: int, calls: int) -> float:
        """Seconds per call of ``calls`` calls of :data:`OPS` ``[op]`` (each call's setup not counted)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{op} {calls}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.communicate(timeout=60)


def sides(pair: int, op: int) -> tuple[str, str]:
    """Which side runs first in pair ``pair`` of call ``op``: before, after, after, before, ... (ABBA), shifted
    by one for each call, so neither side always follows the same call of the other."""
    return ("after", "before") if (pair + op) % 2 else ("before", "after")


def summarize(times: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """Table rows: per call, each side's median batch, the median of the per-pair ratios after / before, and
    their quartiles."""
    rows = []
    for op, by_side in times.items():
        b, a = by_side["before"], by_side["after"]
        ratios = sorted(x / y for x, y in zip(a, b, strict=True))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        rows.append(
            [
                op,
                f"{statistics.median(b) * 1000:.2f} ms",
                f"{statistics.median(a) * 1000:.2f} ms",
                f"{statistics.median(ratios):.3f}x",
                f"{q1:.3f}x / {q3:.3f}x",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="source tree with .venv: the before side")
    parser.add_argument("--after", type=Path, required=True, help="source tree with .venv: the after side")
    parser.add_argument("--pairs", type=int, default=101, help="pairs of batches per call (default 101)")
    parser.add_argument("--calls", type=int, default=10, help="calls per batch (default 10)")
    parser.add_argument("--json", type=Path, help="also write the raw batch times here")
    args = parser.parse_args()

    from bench_history import build_fixture

    fixture = build_fixture(1000)
    tmp = Path(tempfile.mkdtemp(prefix="gitstate-compare-calls-"))
    try:
        before = _Worker(args.before.resolve(), fixture, tmp / "before" / "store")
        after = _Worker(args.after.resolve(), fixture, tmp / "after" / "store")
        times: dict[str, dict[str, list[float]]] = {op: {"before": [], "after": []} for op in OPS}
        workers = {"before": before, "after": after}
        for pair in range(args.pairs):
            for i, op in enumerate(OPS):
                for side in sides(pair, i):
                    times[op][side].append(workers[side].batch(i, args.calls))
        before.close()
        after.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = summarize(times)
    print(
        f"\n## compare_calls: {args.pairs} pairs of {args.calls}-call batches, 1,000-commit fixture; "
        f"before {args.before}, after {args.after}\n"
    )
    print_table(
        ["call", "before (median batch)", "after (median batch)", "after / before (median pair)", "quartiles"], rows
    )
    if args.json:
        args.json.write_text(json.dumps(times))


if __name__ == "__main__":
    main()
