"""A task store (one JSON file per task, plus state.json and its backup copies) moves to schema version 2; the
first attempt fails and lands nothing, the fixed one lands one commit per step, and a rollback to the
pre-migration snapshot is one call.

The steps live in ``examples/migrations_v2.py`` (usable as ``gitstate migrate examples/migrations_v2.py``).

Run:
    python examples/task_migration.py [DIR]

DIR defaults to a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gitstate
from gitstate.migrate import load_steps

HERE = Path(__file__).resolve().parent


def task_v1(n: int, status: str, **extra: Any) -> dict[str, Any]:
    day = f"2024-01-0{n}"
    task = {
        "id": f"task_{n}",
        "description": f"task number {n}",
        "status": status,
        "tool": "CLAUDECODE",
        "created_at": f"{day}T10:00:00Z",
        "updated_at": f"{day}T11:30:00Z",
        "logs": [{"timestamp": f"{day}T10:05:00Z", "level": "info", "type": "system", "message": "Task started"}],
    }
    task.update(extra)
    return task


def write_legacy_layout(path: Path) -> None:
    """What the app wrote before gitstate: task files, state.json and its backups."""
    (path / "tasks").mkdir(parents=True)
    tasks = [
        task_v1(1, "completed", result={"tests_passed": True}),
        task_v1(2, "failed", result={"tests_passed": False}),
        task_v1(3, "running"),
        task_v1(4, "pending"),
    ]
    tasks[3]["created_at"] = 1704362400  # an old client wrote epoch seconds
    for t in tasks:
        (path / "tasks" / f"{t['id']}.json").write_text(json.dumps(t, indent=2) + "\n")
    state = {
        "tasks": tasks,
        "metrics": {"total_tasks": 4, "completed_tasks": 1, "failed_tasks": 1},
        "last_saved": "2024-01-04T12:00:00Z",
    }
    (path / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    for i in range(3):
        (path / f"state.backup.2024010{i + 1}T120000.json").write_text(json.dumps(state) + "\n")


def reshape_tasks_draft(tx: Any) -> None:
    """First draft of step 2: it forgot the epoch timestamps of old clients."""
    for doc in tx.docs("tasks/"):
        created = tx.get(doc, "created_at")
        if not isinstance(created, str):
            raise ValueError(f"{doc}: created_at is {created!r}, not an ISO timestamp")
        tx.set(doc, "times", {"created": created})
        tx.delete(doc, "created_at")


def cli(path: Path, *args: str) -> str | None:
    exe = shutil.which("gitstate") or str(Path(sys.executable).with_name("gitstate"))
    if not Path(exe).exists():
        return None
    proc = subprocess.run([exe, "-C", str(path), *args], capture_output=True, text=True)
    return (proc.stdout + proc.stderr).rstrip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="store directory (default: a fresh temporary directory)")
    args = parser.parse_args()
    path = Path(args.dir or tempfile.mkdtemp(prefix="gitstate-tasks-")) / "coding-agent-state"
    write_legacy_layout(path)
    steps = load_steps(HERE / "migrations_v2.py")

    store = gitstate.open(path, durability="manual")  # adopts the files as the first commit
    print(f"store: {path}")
    print(f"documents: {', '.join(store.docs())}")
    print(f"schema version {store.schema_version}")

    print("\n--- to version 1 (the layout the app had; its backup copies go)")
    store.migrate({1: steps[1]})
    print(f"schema version {store.schema_version}; documents: {', '.join(store.docs())}")

    print("\n--- to version 2, first attempt (a step with a bug)")
    head = store.head
    try:
        store.migrate({**steps, 2: reshape_tasks_draft})
    except gitstate.MigrationError as e:
        print(f"MigrationError: {e}")
        print(f"  caused by: {type(e.__cause__).__name__}: {e.__cause__}")
    print(
        f"head unchanged: {store.head == head}; schema version {store.schema_version}; "
        f"snapshots: {[s.name for s in store.snapshots()]}"
    )

    print("\n--- dry run of the fixed steps")
    lines = store.migrate(steps, dry_run=True)
    print("\n".join(lines[:8] + ([f"... ({len(lines) - 8} more lines)"] if len(lines) > 8 else [])))

    print("\n--- to version 2")
    before = store.get("tasks/task_2.json")
    commits = store.migrate(steps)
    for c in store.log(limit=len(commits)):
        print(f"{c.id[:7]} [{c.actor}] {c.subject}")
    after = store.get("tasks/task_2.json")
    print(f"schema version {store.schema_version}")
    print(f"tasks/task_2.json v1: {json.dumps({k: before[k] for k in ('description', 'tool', 'created_at')})}")
    print(f"tasks/task_2.json v2: {json.dumps({k: after[k] for k in ('title', 'tools', 'priority', 'times')})}")
    print(f"tasks/task_4.json v2 times: {store.get('tasks/task_4.json', 'times')}")
    print(f"a second run: {store.migrate(steps)}")

    print("\n--- rollback: restore the pre-migration snapshot (a new commit; history keeps v2)")
    store.restore("pre-migration-v1-to-v2")
    restored = store.get("tasks/task_2.json")
    print(f"schema version {store.schema_version}; tasks/task_2.json back to v1: {restored == before}")
    print(f"the v2 state is still readable at HEAD~1: title={store.at('HEAD~1').get('tasks/task_2.json', 'title')!r}")
    print("git log --oneline:")
    for c in store.log():
        print(f"  {c.id[:7]} [{c.actor}] {c.subject}")
    store.close()

    dry = cli(path, "migrate", str(HERE / "migrations_v2.py"), "--dry-run")
    if dry is not None:
        print(f"\n$ gitstate migrate examples/migrations_v2.py --dry-run\n{dry}")
    ok = restored == before and after["title"] == "task number 2" and len(commits) == 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
