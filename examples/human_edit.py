"""A human edits a state file by hand while the program runs.

The program watches its store (``store.watch()``): a valid edit becomes a commit by the OS user (actor
``human``) and reaches the program as an ``external_change`` event; when the human and a pending program write
touch the same key the human wins and the event says which program value was overridden; an edit that does not
parse is refused (``invalid_edit``, its content kept aside) and the program keeps reading the last good value
until the human fixes the file.

Run:
    python examples/human_edit.py [DIR]

DIR defaults to a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gitstate
from gitstate.docdiff import format_key
from gitstate.messages import summarize

DOC = "config.json"


def edit_like_an_editor(path: Path, text: str) -> None:
    """Save the way most editors do: write a temp file next to it, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def next_event(events: queue.Queue[Any], name: str, timeout_s: float = 20.0) -> Any:
    while True:
        event = events.get(timeout=timeout_s)  # raises queue.Empty if nothing comes
        if event.name == name:
            return event


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    args = parser.parse_args()
    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-human-"))
    logging.basicConfig(stream=sys.stdout, format="  [log] %(name)s: %(message)s")

    store = gitstate.open(path, debounce_ms=60_000)  # the program's own writes wait: we flush them ourselves
    store.set(DOC, None, {"poll_interval_s": 30, "services": {"slack": True, "gmail": False}, "owner": "bot"})
    store.flush("initial config")
    events: queue.Queue[Any] = queue.Queue()
    for name in ("external_change", "invalid_edit"):
        store.on(name, events.put)
    watcher = store.watch(debounce_ms=50, settle_ms=100, settle_timeout_ms=1500)
    print(f"store: {path}; watching ({'polling' if watcher.polling else 'native events'})")
    file = path / DOC

    print("\n--- 1. the human raises poll_interval_s to 60 in an editor")
    config = json.loads(file.read_text())
    config["poll_interval_s"] = 60
    edit_like_an_editor(file, json.dumps(config, indent=2) + "\n")
    ev = next_event(events, "external_change")
    print(f"event external_change from {ev.source}: {summarize(ev.changes)}")
    print(f"the program reads poll_interval_s = {store.get(DOC, 'poll_interval_s')}")

    print("\n--- 2. the program has pending writes (owner, services.slack); the human edits owner and gmail")
    store.set(DOC, "owner", "bot-2")
    store.set(DOC, "services.slack", False)
    config = json.loads(file.read_text())  # the file holds the committed state; pending writes are in memory
    config["owner"] = "alice"
    config["services"]["gmail"] = True
    edit_like_an_editor(file, json.dumps(config, indent=2) + "\n")
    ev = next_event(events, "external_change")
    print(f"event external_change: {summarize(ev.changes)}")
    overridden = [f"{format_key(c.key)}: {c.ours!r} -> {c.theirs!r}" for c in ev.overwritten]
    print(f"  program values the human overrode: {overridden}")
    store.flush()  # the program's other pending write (services.slack) lands on top of the human's edit
    print(f"the program reads services = {store.get(DOC, 'services')}, owner = {store.get(DOC, 'owner')!r}")

    print("\n--- 3. the human saves a broken file")
    edit_like_an_editor(file, '{\n  "poll_interval_s": 90,\n  "services": {"slack": true\n}\n')
    ev = next_event(events, "invalid_edit")
    print(f"event invalid_edit: {ev.doc} line {ev.line} column {ev.column}: {ev.error}")
    print(f"content kept aside in {Path(ev.quarantined_to).relative_to(path)}")
    print(f"the program still reads the last good value: poll_interval_s = {store.get(DOC, 'poll_interval_s')}")

    print("\n--- 4. the human fixes it")
    edit_like_an_editor(
        file, '{\n  "poll_interval_s": 90,\n  "services": {"slack": true, "gmail": false},\n  "owner": "alice"\n}\n'
    )
    ev = next_event(events, "external_change")
    print(f"event external_change: {summarize(ev.changes)}")
    print(f"the program reads poll_interval_s = {store.get(DOC, 'poll_interval_s')}")

    watcher.stop()
    log = store.log()
    store.close()
    print("\ngit log --format='%h %an [actor] %s':")
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "log", "--format=%h %an %s"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        actors = {c.id[:7]: c.actor for c in log}
        for line in out:
            sha, author, subject = line.split(" ", 2)
            print(f"  {sha} {author} [{actors.get(sha, '?')}] {subject}")
    except (OSError, subprocess.CalledProcessError):
        for c in log:
            print(f"  {c.id[:7]} {c.author} [{c.actor}] {c.subject}")
    actors_seen = [c.actor for c in log]
    ok = actors_seen.count("human") == 3 and store.closed
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
