"""A completion service that checkpoints its request queues on every shutdown, keeps the last 5 checkpoints, and
restores the latest one when it starts.

This is the checkpoint pattern of an agent daemon's completion service: per-session request queues live in the
process; on shutdown they are saved as a checkpoint (today: a row in a ``checkpoints.db`` with a "keep the last
5" cleanup); on start the latest checkpoint is loaded and its queued requests are re-emitted. With gitstate:

* the queues are one document, ``completion/queues.json``, written as requests come and go (each debounced
  flush is a commit: the audit trail comes free);
* a checkpoint is a snapshot (``store.snapshot("checkpoint-0007")``), taken in the shutdown path;
* "keep the last 5" is ``store.snapshots_thin("checkpoint-", 5)`` (older checkpoints' commits stay in history;
  only their names go, so ``gitstate forget`` may thin them later);
* on start, the service restores the latest checkpoint (``store.restore("checkpoint-0007")``, a new commit, so
  whatever a crashed run left half-done stays readable in history) and re-emits what was queued.

Every service run is a real child process. One run is killed with ``kill -9`` in the middle of its work: it
takes no checkpoint, and the next start restores the checkpoint before it.

Run:
    python examples/checkpoint.py [DIR] [--runs 8] [--crash-run 6]

DIR defaults to a fresh temporary directory; a child runs as ``--serve RUN``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gitstate

QUEUES = "completion/queues.json"
PREFIX = "checkpoint-"
KEEP = 5
SESSIONS = ("s-alpha", "s-beta")


def latest_checkpoint(store: gitstate.Store) -> str | None:
    names = [s.name for s in store.snapshots() if s.name.startswith(PREFIX)]
    return max(names) if names else None  # zero-padded run numbers sort by age


def start(store: gitstate.Store) -> list[dict[str, Any]]:
    """Restore the latest checkpoint (when there is one) and return the requests to re-emit."""
    name = latest_checkpoint(store)
    if name is None:
        store.set(QUEUES, None, {s: [] for s in SESSIONS})
        store.flush()
        print("  start: no checkpoint yet, empty queues")
        return []
    restored = store.restore(name, [QUEUES])
    queued = [r for s in SESSIONS for r in store.get(QUEUES, s)]
    how = f"restored as commit {restored[:8]}" if restored.created else "the state already equals it"
    print(f"  start: latest checkpoint {name} ({how}); re-emitting {len(queued)} queued request(s)")
    return queued


def serve(path: Path, run: int, crash: bool) -> int:
    store = gitstate.open(path, durability="debounced", debounce_ms=50)
    try:
        requests = start(store)
        if requests:
            print(f"    re-emitted {', '.join(r['id'] for r in requests)}")
        # Work: the two oldest queued requests of each session complete; two new ones arrive.
        for i, session in enumerate(SESSIONS):
            done = store.get(QUEUES, session)[:2]
            if done:
                store.update(QUEUES, {session: store.get(QUEUES, session)[2:]})
                print(f"    {session}: completed {', '.join(r['id'] for r in done)}")
            for k in range(2):
                store.append(QUEUES, session, {"id": f"r{run}.{i}.{k}", "session": session, "prompt": f"task {k}"})
        store.flush()
        if crash:
            store.append(QUEUES, SESSIONS[0], {"id": f"r{run}.half-done", "session": SESSIONS[0], "prompt": "?"})
            store.flush()  # committed, but the run dies before its checkpoint
            print(f"    kill -9 {os.getpid()} before the shutdown checkpoint", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    finally:
        if not crash:
            shutdown(store, run)
    return 0


def shutdown(store: gitstate.Store, run: int) -> None:
    """The shutdown path: checkpoint, keep the last 5, close."""
    name = f"{PREFIX}{run:04d}"
    store.snapshot(name, f"completion queues at shutdown of run {run}")
    dropped = store.snapshots_thin(PREFIX, KEEP)
    queued = sum(len(store.get(QUEUES, s)) for s in SESSIONS)
    print(f"  shutdown: checkpoint {name} ({queued} queued)" + (f", dropped {', '.join(dropped)}" if dropped else ""))
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", help="store directory (default: a new temporary one)")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--crash-run", type=int, default=6, help="the run killed with kill -9 (0: none)")
    ap.add_argument("--serve", type=int, metavar="RUN", help=argparse.SUPPRESS)
    ap.add_argument("--crash", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-checkpoint-")) / "service"
    if args.serve is not None:
        return serve(path, args.serve, args.crash)

    print(f"store: {path}")
    for run in range(1, args.runs + 1):
        crash = run == args.crash_run
        print(f"run {run}" + (" (will be killed)" if crash else ""))
        cmd = [sys.executable, __file__, str(path.parent), "--serve", str(run), *(["--crash"] if crash else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print(proc.stdout, end="")
        expected = -signal.SIGKILL if crash else 0
        if proc.returncode != expected:
            print(proc.stderr, file=sys.stderr)
            return 1
        if crash:
            print("  (killed by signal 9: no checkpoint)")

    with gitstate.open(path, durability="manual") as store:
        names = [s.name for s in store.snapshots()]
        queues = store.get(QUEUES)
        checkpoint_state = store.at(names[-1]).get(QUEUES)
        half_done = any("half-done" in r["id"] for s in SESSIONS for r in queues[s])
        print(f"checkpoints kept ({len(names)}): {', '.join(names)}")
        print(f"the queues equal the latest checkpoint: {queues == checkpoint_state}")
        print(f"the crashed run's half-done request is gone from the queues: {not half_done}")
        print(f"...and still readable in history: {_in_history(store)}")
        print(f"commits: {len(store.log())}; try: gitstate -C {path} log -n 8")
    return 0


def _in_history(store: gitstate.Store) -> bool:
    """Whether some commit's queues held the crashed run's half-done request (read through ``at()``)."""
    for commit in store.log(QUEUES):
        value = store.at(commit.id).get(QUEUES) or {}
        if any("half-done" in r["id"] for s in SESSIONS for r in value.get(s, [])):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
