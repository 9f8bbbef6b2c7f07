"""An agent runtime that persists sessions, task queues, sleep state and mail, is killed with SIGKILL, restarts and
resumes exactly where its last flush left it.

Layout of the store (the one the async-agents persistence plan sketched, one document per concern)::

    agents/<name>.json   session: status, current task, working memory, turns
    tasks/<name>.json    queue: pending, in_progress, completed
    mail/<name>.json     unread messages and history
    sleep.json           which agents sleep, since when, what wakes them

The runtime checkpoints (``store.flush()``) after each step; a step's writes before its checkpoint live only in
memory. The parent process runs the runtime, kills it with ``kill -9`` right after a checkpoint while the next
step is half done, starts it again and checks that the state it resumes from is exactly the checkpointed one,
then lets it finish.

Run:
    python examples/agent_runtime.py [DIR] [--crash-after 5]

DIR defaults to a fresh temporary directory. The runtime itself runs as ``--runtime`` in a child process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gitstate

AGENTS = ("alice", "bob")
TASKS = {"alice": ["triage inbox", "review PR 42", "write release notes"], "bob": ["fix flaky test", "deploy"]}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def snapshot(store: gitstate.Store) -> dict[str, Any]:
    return {doc: store.get(doc) for doc in store.docs()}


def initialize(store: gitstate.Store) -> None:
    with store.transaction("initialize agents"):
        for name in AGENTS:
            store.set(
                f"agents/{name}.json",
                None,
                {
                    "agent_id": name,
                    "status": "active",
                    "current_task": None,
                    "context": {"working_memory": [], "turns": 0},
                },
            )
            store.set(f"tasks/{name}.json", None, {"pending": list(TASKS[name]), "in_progress": [], "completed": []})
            store.set(f"mail/{name}.json", None, {"unread": [], "history": []})
        store.set("sleep.json", None, {})


def step(store: gitstate.Store, name: str) -> str:
    """One scheduling step of one agent; returns what it did. Writes only to memory."""
    other = AGENTS[(AGENTS.index(name) + 1) % len(AGENTS)]
    agent, queue, mail = f"agents/{name}.json", f"tasks/{name}.json", f"mail/{name}.json"
    if store.get("sleep.json", name, default=None) is not None:
        unread = store.get(mail, "unread")
        if not unread:
            return f"{name} sleeps"
        store.delete("sleep.json", name)  # mail wakes the agent
        store.set(agent, "status", "active")
        for message in unread:
            store.append(mail, "history", message)
        store.set(mail, "unread", [])
        store.append(agent, "context.working_memory", f"read {len(unread)} message(s)")
        return f"{name} wakes up and reads {len(unread)} message(s)"
    current = store.get(agent, "current_task")
    if current is None:
        pending = store.get(queue, "pending")
        if not pending:
            store.set("sleep.json", name, {"since": now(), "wake_on": "mail"})
            store.set(agent, "status", "sleeping")
            return f"{name} has nothing to do and goes to sleep"
        task = pending[0]
        store.delete(queue, "pending.0")
        store.append(queue, "in_progress", task)
        store.set(agent, "current_task", task)
        store.update(agent, {"context": {"turns": store.get(agent, "context.turns") + 1}})
        return f"{name} starts {task!r}"
    store.delete(queue, "in_progress.0")
    store.append(queue, "completed", {"task": current, "at": now()})
    store.set(agent, "current_task", None)
    store.append(agent, "context.working_memory", f"done: {current}")
    store.append(f"mail/{other}.json", "unread", {"from": name, "at": now(), "text": f"finished {current!r}"})
    return f"{name} finishes {current!r} and mails {other}"


def all_done(store: gitstate.Store) -> bool:
    return all(
        not store.get(f"tasks/{n}.json", "pending")
        and store.get(f"agents/{n}.json", "current_task") is None
        and not store.get(f"mail/{n}.json", "unread")
        for n in AGENTS
    )


def runtime(path: Path, crash_after: int | None) -> int:
    """The runtime process: load or initialize, then step the agents round-robin, checkpointing each step."""
    store = gitstate.open(path, durability="manual")  # commits at the runtime's checkpoints only
    if not store.docs():
        initialize(store)
        print("EVENT initialized a new runtime", flush=True)
    head = store.head or ""
    print(f"RESUMED {head} {json.dumps(snapshot(store), sort_keys=True)}", flush=True)
    checkpoints = 0
    turn = store.get("agents/alice.json", "context.turns") + store.get("agents/bob.json", "context.turns")
    while not all_done(store):
        name = AGENTS[turn % len(AGENTS)]
        turn += 1
        what = step(store, name)
        if crash_after is not None and checkpoints == crash_after:
            # Half-way into the next step: its writes are in memory only. The parent kills us now.
            print(f"UNFLUSHED {store.pending} write(s): {what}", flush=True)
            sys.stdin.readline()  # wait for SIGKILL
            return 3
        commit = store.flush(what)
        checkpoints += 1
        print(f"STEP {(commit or '-')[:7]} {what}", flush=True)
        if crash_after is not None and checkpoints == crash_after:
            print(f"FLUSHED {store.head} {json.dumps(snapshot(store), sort_keys=True)}", flush=True)
    print(f"DONE {store.head} {json.dumps(snapshot(store), sort_keys=True)}", flush=True)
    store.close()
    return 0


def run_child(path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, str(path), "--runtime", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    parser.add_argument("--crash-after", type=int, default=5, help="checkpoints before the kill -9")
    parser.add_argument("--runtime", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--crash", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runtime:
        return runtime(Path(args.dir), args.crash)

    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-agents-"))
    print(f"store: {path}")
    print(f"--- run 1: the runtime, killed with SIGKILL after checkpoint {args.crash_after}")
    first = run_child(path, "--crash", str(args.crash_after))
    assert first.stdout is not None
    flushed: tuple[str, dict[str, Any]] | None = None
    for line in first.stdout:
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "FLUSHED":
            head, _, state = rest.partition(" ")
            flushed = (head, json.loads(state))
            print(f"  checkpoint {head[:7]} flushed")
        elif kind == "UNFLUSHED":
            print(f"  {line.strip()}")
            first.send_signal(signal.SIGKILL)
            print(f"  kill -9 {first.pid}")
            break
        elif kind in ("STEP", "EVENT"):
            print(f"  {rest}")
    code = first.wait(timeout=60)
    for f in (first.stdin, first.stdout):
        if f is not None:
            f.close()
    print(f"  runtime exited with {code} (killed by signal {-code})" if code < 0 else f"  exited {code}")
    if flushed is None or code != -signal.SIGKILL:
        print("the runtime did not reach the checkpoint")
        return 1

    print("--- run 2: restart, resume, finish")
    second = run_child(path)
    out, _ = second.communicate(timeout=120)
    resumed: tuple[str, dict[str, Any]] | None = None
    done: dict[str, Any] | None = None
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "RESUMED":
            head, _, state = rest.partition(" ")
            resumed = (head, json.loads(state))
            same = resumed == flushed
            print(f"  resumed at {head[:7]}: same commit and same state as the last checkpoint: {same}")
            bob = resumed[1]["tasks/bob.json"]
            alice = resumed[1]["agents/alice.json"]
            sleeping = sorted(resumed[1]["sleep.json"])
            print(
                f"  alice: {alice['status']}, current task {alice['current_task']!r}; bob's queue: "
                f"{len(bob['pending'])} pending, {len(bob['completed'])} completed; sleeping: {sleeping}"
            )
        elif kind == "STEP":
            print(f"  {rest}")
        elif kind == "DONE":
            done = json.loads(rest.partition(" ")[2])
    if second.returncode != 0 or resumed is None or done is None:
        print(f"the restarted runtime failed (exit {second.returncode})")
        return 1
    completed = {n: [c["task"] for c in done[f"tasks/{n}.json"]["completed"]] for n in AGENTS}
    print(f"  all tasks completed: {completed}")
    mails = {n: len(done[f"mail/{n}.json"]["history"]) for n in AGENTS}
    print(f"  mail read: {mails}")

    print("--- history (git log --oneline)")
    try:
        log = subprocess.run(
            ["git", "-C", str(path), "log", "--oneline"], capture_output=True, text=True, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        with gitstate.open(path, durability="manual") as store:
            log = "\n".join(f"{c.id[:7]} {c.subject}" for c in store.log())
    print(log)
    ok = resumed == flushed and completed == {n: TASKS[n] for n in AGENTS}
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
