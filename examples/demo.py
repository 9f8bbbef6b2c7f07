"""A tour of gitstate in a few seconds: every line it prints is real output.

Threads write toggles, a debounced flush makes one commit, a human edits the file by hand (committed by the
watcher), a broken edit is refused while the last good value is served, then a snapshot, a migration, an undo, a
restore and a point-in-time read.

Run:
    python examples/demo.py [DIR]

DIR defaults to a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gitstate
from gitstate.messages import summarize

DOC = "state.json"


def git_log(path: Path, store: gitstate.Store, n: int) -> list[str]:
    """``git log --oneline`` by the real git when installed (else the library's log)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "log", "--oneline", f"-n{n}"], capture_output=True, text=True, check=True
        ).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return [f"{c.id[:7]} {c.subject}" for c in store.log(limit=n)]


def hand_edit(path: Path, text: str) -> None:
    """Save like an editor: write a temp file beside it, rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    args = parser.parse_args()
    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-demo-"))
    logging.basicConfig(stream=sys.stdout, format="   [log] %(message)s")
    t_start = time.perf_counter()

    def say(text: str) -> None:
        print(f"{time.perf_counter() - t_start:5.2f}s  {text}")

    store = gitstate.open(path, debounce_ms=200)
    events: queue.Queue[Any] = queue.Queue()
    for name in ("committed", "external_change", "invalid_edit"):
        store.on(name, events.put)

    def wait_for(name: str, **match: Any) -> Any:
        while True:
            ev = events.get(timeout=20)
            if ev.name == name and all(getattr(ev, k) == v for k, v in match.items()):
                return ev

    say(f"opened {path} (debounce 200 ms)")

    # 1. Toggles from four threads: all in memory at once, one commit after 200 ms of quiet.
    def toggler(section: str, names: tuple[str, ...]) -> None:
        for i in range(25):
            store.set(DOC, (section, names[i % len(names)]), i % 3 != 0)

    threads = [
        threading.Thread(target=toggler, args=args)
        for args in (
            ("services", ("slack", "gmail")),
            ("services", ("scheduler",)),
            ("jobs", ("standup", "weekly_summary")),
            ("jobs", ("cleanup",)),
        )
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say(f"100 writes from 4 threads in {(time.perf_counter() - t0) * 1000:.1f} ms; pending={store.pending}")
    ev = wait_for("committed")
    say(f"debounced flush: 1 commit {ev.commit[:7]} in {ev.duration_ms:.1f} ms; pending={store.pending}")
    store.set(DOC, "owner", "bot")
    wait_for("committed")
    for line in git_log(path, store, 5):
        print(f"        git log | {line}")

    # 2. A human edits the file while the program runs; the watcher commits it.
    before_edit = time.time()
    time.sleep(math.ceil(before_edit) - before_edit + 0.01)  # commit times have 1 s resolution: next second
    store.watch(debounce_ms=50, settle_ms=100, settle_timeout_ms=800)
    config = json.loads((path / DOC).read_text())
    config["services"]["gmail"] = False
    config["owner"] = "alice"
    hand_edit(path / DOC, json.dumps(config, indent=2) + "\n")
    ev = wait_for("external_change", source="human")
    say(f"hand edit committed by the watcher: {'; '.join(summarize(ev.changes))}")
    human = store.log(limit=1)[0]
    say(f"  commit {human.id[:7]} author {human.author.split(' <')[0]!r}, actor {human.actor}")

    # 3. A broken edit is refused; the program keeps the last good value.
    hand_edit(path / DOC, (path / DOC).read_text().replace('"owner": "alice"', '"owner": alice'))
    ev = wait_for("invalid_edit")
    say(f"broken edit refused: {ev.doc}:{ev.line}:{ev.column} {ev.error}")
    say(f"  store.get(owner) still serves the last good value: {store.get(DOC, 'owner')!r}")
    hand_edit(path / DOC, json.dumps(config, indent=2) + "\n")  # the human fixes the file
    say("  the human fixes the file: it is back to the committed content")

    # 4. Snapshot, then a migration: toggles move under "runtime"; pre-migration snapshot made first.
    store.snapshot("before-v1")
    say(f"snapshot before-v1 -> {store.resolve('before-v1')[:7]}")

    def nest_toggles(tx: Any) -> None:
        """Move services and jobs under runtime."""
        state = tx.get(DOC)
        tx.set(DOC, None, {"runtime": {"services": state["services"], "jobs": state["jobs"]}, "owner": state["owner"]})

    commits = store.migrate({1: nest_toggles})
    say(f"migrated to schema v{store.schema_version} in commit {commits[0][:7]}: {store.log(limit=1)[0].subject}")
    say(f"  snapshots: {', '.join(s.name for s in store.snapshots())}")
    say(f"  a second run does nothing: {store.migrate({1: nest_toggles})}")

    # 5. A bad write, undone; then a rollback of the migration by restoring its snapshot.
    store.set(DOC, "runtime.services.slack", "oops")
    store.flush("a bad write")
    store.undo()
    say(f"undo of 'a bad write': slack = {store.get(DOC, 'runtime.services.slack')!r}")
    store.restore("pre-migration-v0-to-v1")
    say(f"restore pre-migration-v0-to-v1: schema v{store.schema_version}, keys {sorted(store.get(DOC))}")

    # 6. Reading the past: by commit, by time, by snapshot.
    slack = store.at("HEAD~3").get(DOC, "runtime.services.slack")
    say(f"at HEAD~3 (the migrated state): runtime.services.slack = {slack!r}")
    when = dt.datetime.fromtimestamp(before_edit).astimezone().isoformat(timespec="seconds")
    say(f"at {when} (before the hand edit): owner = {store.at(when).get(DOC, 'owner')!r}")
    say(f"diff before-v1 HEAD: {summarize(store.diff('before-v1', 'HEAD'), max_lines=3) or 'no changes'}")

    store.close()
    print()
    for line in git_log(path, store, 20):
        print(f"        git log | {line}")
    status = subprocess.run(["git", "-C", str(path), "status", "--porcelain"], capture_output=True, text=True)
    say(f"git status --porcelain: {status.stdout.strip() or '(clean)'}")
    cli = shutil.which("gitstate") or str(Path(sys.executable).with_name("gitstate"))
    if Path(cli).exists():
        out = subprocess.run([cli, "-C", str(path), "log", "-n", "4"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            print(f"   gitstate log | {line}")
    say(f"explore it: gitstate -C {path} log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
