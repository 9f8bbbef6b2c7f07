"""Migrations of the task store (one JSON document per task) to schema version 2.

Use it with the CLI or the library::

    gitstate -C DIR migrate examples/migrations_v2.py --dry-run
    gitstate -C DIR migrate examples/migrations_v2.py
    gitstate -C DIR restore pre-migration-v1-to-v2        # roll back

    store.migrate(gitstate.migrate.load_steps("examples/migrations_v2.py"))

Version 1: the layout the app had before gitstate: ``state.json``, ``tasks/task_<id>.json`` and up to ten
``state.backup.<time>.json`` copies. Git history keeps every version now, so the backups go.

Version 2: a task's four timestamps move under ``times`` (epoch numbers written by old clients become ISO
strings), ``description`` becomes ``title``, ``tool`` becomes a
list ``tools``, every task gets a ``priority`` (``high`` when it failed before), and ``state.json`` keeps task ids
instead of whole task copies.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gitstate.migrate import Migrations

migrations = Migrations()

_TIMES = ("created_at", "updated_at", "started_at", "completed_at")


@migrations(1)
def drop_backup_files(tx: Any) -> None:
    """Drop the state.backup.*.json copies: history keeps every version."""
    for doc in tx.docs("state.backup."):
        tx.delete(doc)


@migrations(2)
def reshape_tasks(tx: Any) -> None:
    """Group task times, rename description to title, add priority."""
    for doc in tx.docs("tasks/"):
        task = tx.get(doc)
        times = {}
        for name in _TIMES:
            value = task.pop(name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):  # epoch seconds (old clients)
                value = dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")
            if value is not None:
                if not isinstance(value, str) or "T" not in value:
                    raise ValueError(f"{doc}: {name} is {value!r}, not an ISO timestamp")
                times[name.removesuffix("_at")] = value
        reshaped = {
            "id": task.pop("id"),
            "title": task.pop("description"),
            "status": task.pop("status"),
            "priority": "high" if task.get("result", {}).get("tests_passed") is False else "normal",
            "tools": [task.pop("tool")] if "tool" in task else [],
            "times": times,
            **task,  # logs, result and anything else stay as they are
        }
        tx.set(doc, None, reshaped)
    if tx.exists("state.json", "tasks"):
        tx.set("state.json", "tasks", [t["id"] if isinstance(t, dict) else t for t in tx.get("state.json", "tasks")])
