"""Several processes append to one YAML memory file at the same time; no entry is lost.

The memory daemon pattern (read current_work.yaml under a file lock, append, write it back) becomes
``store.append(doc, key, value)``: the write lands in memory, and each process's debounced flush takes the store's
lock, reloads the file if another process committed it meanwhile, re-applies its own appends on top and commits.

Run:
    python examples/memory_appenders.py [DIR] [--workers 4] [--entries 10]

DIR defaults to a fresh temporary directory. The script starts the workers itself (``--child N``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import gitstate

DOC = "memory/current_work.yaml"


def child(path: Path, worker: int, entries: int) -> int:
    """One worker process: append follow-ups as it works, flush on close."""
    with gitstate.open(path, debounce_ms=50) as store:
        store.append(DOC, "active_issues", {"key": f"AAP-{1000 + worker}", "worker": worker, "status": "In Progress"})
        for n in range(entries):
            now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            store.append(
                DOC, "follow_ups", {"worker": worker, "n": n, "at": now, "text": f"worker {worker}: follow-up {n}"}
            )
            time.sleep(0.08)  # the work between two notes (longer than the debounce: a commit each)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--entries", type=int, default=10)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(Path(args.dir), args.child, args.entries)

    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-memory-"))
    with gitstate.open(path, durability="manual") as store:
        store.set(DOC, None, {"active_issues": [], "follow_ups": []})
        store.flush("start current_work.yaml")
    print(f"store: {path}")
    print(f"starting {args.workers} processes, each appending {args.entries} follow-ups to {DOC}")

    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(path), "--child", str(i), "--entries", str(args.entries)], env=env
        )
        for i in range(args.workers)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    elapsed = time.perf_counter() - t0
    print(f"all workers exited ({codes}) after {elapsed:.2f} s")

    with gitstate.open(path, durability="manual") as store:
        memory = store.get(DOC)
        log = store.log()
    follow_ups = memory["follow_ups"]
    per_worker = Counter(item["worker"] for item in follow_ups)
    expected = args.workers * args.entries
    print(f"\n{DOC}: {len(follow_ups)} follow-ups (expected {expected}), {len(memory['active_issues'])} active issues")
    for w in range(args.workers):
        got = sorted(item["n"] for item in follow_ups if item["worker"] == w)
        print(f"  worker {w}: {per_worker[w]} entries, in order: {got == list(range(args.entries))}")
    print(f"\n{len(log)} commits; by actor: {dict(Counter(c.actor for c in log))}")
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "log", "--oneline", "-n", "8"], capture_output=True, text=True, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        out = "\n".join(f"{c.id[:7]} {c.subject}" for c in log[:8])
    print("git log --oneline -n 8:")
    print(out)
    print(f"\nfirst lines of {DOC}:")
    print("\n".join((path / DOC).read_text().splitlines()[:8]))
    ok = all(c == 0 for c in codes) and len(follow_ups) == expected and len(memory["active_issues"]) == args.workers
    ok = ok and all(
        sorted(i["n"] for i in follow_ups if i["worker"] == w) == list(range(args.entries)) for w in range(args.workers)
    )
    print(f"\nall entries present: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
