"""Runtime toggles for services, jobs and meetings, written from several threads, committed after 2 s of quiet.

The StateManager pattern (a singleton with an RLock, a cache, a 2-second debounce timer and an flock'ed atomic
write of state.json) comes down to a thin class over a gitstate store: the store keeps the cache, the lock, the
debounce and the atomic write, and each debounced flush becomes one Git commit, so every change of a toggle is in
the history with what changed.

Run:
    python examples/toggles.py [DIR] [--debounce-ms 2000]

DIR defaults to a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gitstate

DOC = "state.json"


class RuntimeState:
    """The StateManager's API (services, jobs, meeting overrides) over a gitstate store."""

    def __init__(self, store: gitstate.Store) -> None:
        self.store = store

    def get_state(self) -> dict[str, Any]:
        return dict(self.store.get(DOC, default={}))

    def is_service_enabled(self, name: str) -> bool:
        return bool(self.store.get(DOC, ("services", name), default=False))

    def set_service_enabled(self, name: str, enabled: bool) -> None:
        self.store.set(DOC, ("services", name), bool(enabled))

    def is_job_enabled(self, name: str) -> bool:
        return bool(self.store.get(DOC, ("jobs", name), default=False))

    def set_job_enabled(self, name: str, enabled: bool) -> None:
        self.store.set(DOC, ("jobs", name), bool(enabled))

    def get_meeting_override(self, event_id: str) -> dict[str, Any] | None:
        # A tuple key: calendar event ids may contain dots.
        value = self.store.get(DOC, ("meetings", event_id), default=None)
        return dict(value) if value is not None else None

    def set_meeting_override(self, event_id: str, status: str, reason: str = "") -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.store.set(DOC, ("meetings", event_id), {"status": status, "reason": reason, "timestamp": now})


def git_log(path: Path, store: gitstate.Store, limit: int = 10) -> str:
    """``git log --oneline`` by the real git when it is installed, else from the library."""
    try:
        return subprocess.run(
            ["git", "-C", str(path), "log", "--oneline", f"-n{limit}"], capture_output=True, text=True, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return "\n".join(f"{c.id[:7]} {c.subject}" for c in store.log(limit=limit))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    parser.add_argument("--debounce-ms", type=int, default=2000, help="quiet period before a commit")
    args = parser.parse_args()
    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-toggles-"))

    store = gitstate.open(path, debounce_ms=args.debounce_ms)
    committed = threading.Event()
    commits: list[Any] = []

    def on_commit(event: Any) -> None:
        commits.append(event)
        committed.set()

    store.on("committed", on_commit)
    state = RuntimeState(store)
    print(f"store: {path} (debounce {args.debounce_ms} ms)")

    # Defaults, committed at once so the history starts from them.
    store.set(
        DOC,
        None,
        {
            "services": {"scheduler": True, "sprint_bot": True, "google_calendar": True, "gmail": False},
            "jobs": {"daily_standup": True, "weekly_summary": False},
            "meetings": {},
        },
    )
    store.flush("default toggles")
    committed.clear()
    commits.clear()

    # Four threads toggle what they own, the way request handlers and daemons do.
    def services() -> None:
        for i in range(25):
            state.set_service_enabled(("scheduler", "sprint_bot", "gmail", "slack")[i % 4], i % 3 != 0)

    def jobs() -> None:
        for i in range(25):
            state.set_job_enabled(("daily_standup", "weekly_summary", "cleanup")[i % 3], i % 2 == 0)

    def meetings() -> None:
        for i in range(25):
            state.set_meeting_override(f"event.{120 + i % 5}", ("skip", "attend")[i % 2], f"reason {i}")

    def ui() -> None:
        for i in range(25):
            state.set_service_enabled("google_calendar", i % 2 == 1)

    threads = [threading.Thread(target=fn, name=fn.__name__) for fn in (services, jobs, meetings, ui)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    burst_ms = (time.perf_counter() - t0) * 1000
    writes = 100
    print(
        f"{writes} writes from {len(threads)} threads in {burst_ms:.1f} ms "
        f"({burst_ms * 1000 / writes:.0f} µs per write, threads included); pending: {store.pending}, "
        f"commits so far: {len(commits)}"
    )
    override = state.get_meeting_override("event.124") or {}
    print(
        f"reads see the writes at once: google_calendar={state.is_service_enabled('google_calendar')} "
        f"event.124={override.get('status')}"
    )

    # The debounced flusher commits once, after the quiet period.
    t1 = time.perf_counter()
    if not committed.wait(timeout=args.debounce_ms / 1000 + 30):
        print("no commit arrived")
        return 1
    waited = time.perf_counter() - t1
    print(
        f"{len(commits)} commit {commits[0].commit[:7]} after {waited:.2f} s of quiet, "
        f"{commits[0].duration_ms:.1f} ms to write; pending: {store.pending}"
    )
    final = state.get_state()
    store.close()

    print("\nstate.json:")
    print(json.dumps({k: final[k] for k in ("services", "jobs")}, indent=2))
    print(f"meetings: {sorted(final['meetings'])}")
    print("\ngit log --oneline:")
    with gitstate.open(path, durability="manual") as again:  # a restart reads the same state back
        print(git_log(path, again))
        head = again.log(limit=1)[0]
        print(f"\nlast commit ({head.actor}, {len(head.message.splitlines())} message lines):")
        print("\n".join("  " + line for line in head.message.splitlines()[:6]))
        same = RuntimeState(again).get_state() == final
    print(f"\nafter a restart the toggles read back the same: {same}")
    ok = same and len(commits) == 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
