"""Watcher latency (issue 14): a hand edit saved -> its commit, against the settle time and raw watchfiles.

One run, interleaved round by round:

* **gitstate**: a store opened with ``watch=True`` (settle 200 ms); each round saves ``state.json`` the way vim
  does (write a temp file, rename it over the document) and times the save until the ``committed`` event of the
  human's commit.
* **raw watchfiles**: ``watchfiles.watch`` on another directory (step 50 ms, as the watcher uses it); the same
  save, timed until watchfiles yields the change. This is the floor any watcher built on it pays.

Target: gitstate's p50 within ``settle_ms + 50`` ms.

Usage: ``python benchmarks/bench_watch.py [--quick] [--rounds N] [--settle-ms MS]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import watchfiles

import gitstate

__all__ = ["main"]


def _save_like_vim(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.swx")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 rounds instead of 60")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--settle-ms", type=int, default=200)
    args = parser.parse_args()
    rounds = args.rounds or (15 if args.quick else 60)
    base = Path(tempfile.mkdtemp(prefix="gitstate-bench-watch-"))
    store_dir, raw_dir = base / "store", base / "raw"
    raw_dir.mkdir()
    (raw_dir / "state.json").write_text("{}\n")

    # raw watchfiles, in its own thread
    raw_seen = threading.Event()
    stop = threading.Event()

    def raw_loop() -> None:
        for _ in watchfiles.watch(raw_dir, step=50, debounce=500, stop_event=stop, rust_timeout=1000):
            raw_seen.set()

    raw_thread = threading.Thread(target=raw_loop, daemon=True)
    raw_thread.start()

    committed = threading.Event()
    ours: list[float] = []
    raw: list[float] = []
    with gitstate.open(store_dir, handle_signals=False) as store:
        store.set("state.json", "counter", 0)
        store.flush()
        store.watch(settle_ms=args.settle_ms)

        def on_commit(ev: object) -> None:
            if getattr(ev, "actor", None) == "human":
                committed.set()

        store.on("committed", on_commit)
        time.sleep(1.0)  # let both watchers start (not a measurement)
        for i in range(1, rounds + 1):
            text = f'{{\n  "counter": {i}\n}}\n'
            for which in ("ours", "raw") if i % 2 else ("raw", "ours"):
                if which == "ours":
                    committed.clear()
                    t0 = time.perf_counter()
                    _save_like_vim(store_dir / "state.json", text)
                    if not committed.wait(10):
                        raise SystemExit(f"round {i}: no commit of the hand edit within 10 s")
                    ours.append(time.perf_counter() - t0)
                else:
                    raw_seen.clear()
                    t0 = time.perf_counter()
                    _save_like_vim(raw_dir / "state.json", text)
                    if not raw_seen.wait(10):
                        raise SystemExit(f"round {i}: watchfiles saw nothing within 10 s")
                    raw.append(time.perf_counter() - t0)
                time.sleep(0.3)  # quiet between saves, so each is its own edit (not a measurement)
    stop.set()
    target = args.settle_ms + 50
    print(f"{rounds} saves each (write temp + rename), settle_ms={args.settle_ms}")
    print()
    print("| case | p50 | p90 | max |")
    print("|---|---|---|---|")
    for name, vals in (("gitstate: save -> committed", ours), ("raw watchfiles: save -> event", raw)):
        print(
            f"| {name} | {statistics.median(vals) * 1e3:.0f} ms | {_pct(vals, 0.9) * 1e3:.0f} ms |"
            f" {max(vals) * 1e3:.0f} ms |"
        )
    print()
    p50 = statistics.median(ours) * 1e3
    print(f"gitstate p50 {p50:.0f} ms vs target settle+50 = {target} ms: {'met' if p50 <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
