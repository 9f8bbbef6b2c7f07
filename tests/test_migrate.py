"""Migrations: schema version, all-or-nothing steps, pre-migration snapshot, dry run, rollback, other processes,
and the ``gitstate migrate`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import reaped
from helpers import commit_ids, fsck, git, invoke, status_porcelain

import gitstate
import gitstate.cli.migrate_cmd  # registers `migrate` on the CLI (until cli/__init__ imports it)
from gitstate import migrate
from gitstate.cli import main
from gitstate.migrate import SCHEMA_DOC, Migrations, SchemaMismatch, TxView

OpenStore = Callable[..., gitstate.Store]


# ------------------------------------------------------------------------------------------------- steps used below
def rename_state(tx: TxView) -> None:
    """Rename 'state' to 'status'."""
    for doc in tx.docs("tasks/"):
        tx.set(doc, "status", tx.get(doc, "state"))
        tx.delete(doc, "state")


def add_priority(tx: TxView) -> None:
    for doc in tx.docs("tasks/"):
        tx.set(doc, "priority", "normal")


def split_index(tx: TxView) -> None:
    """Move the task list into its own document."""
    ids = [tx.get(doc, "id") for doc in tx.docs("tasks/")]
    tx.set("index.yaml", None, {"tasks": ids})
    tx.append("index.yaml", "tasks", 99)
    tx.update("state.json", {"meta": {"split": True}})


STEPS: dict[int, Any] = {1: rename_state, 2: add_priority, 3: split_index}


def seed(store: gitstate.Store, n: int = 3) -> str:
    for i in range(n):
        store.set(f"tasks/t{i}.json", None, {"id": i, "state": "open"})
    store.set("state.json", None, {"services": {"slack": True}})
    head = store.flush("seed")
    assert head is not None
    return head


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def tags(root: Path) -> dict[str, str]:
    out = git(root, "tag", "-l", "--format=%(refname:short) %(*objectname)")
    return dict(line.split() for line in out.splitlines() if line.strip())


# ------------------------------------------------------------------------------------------------- success
def test_migrate_runs_each_step_as_one_commit_after_a_snapshot(store: gitstate.Store, store_path: Path) -> None:
    head = seed(store)
    assert store.schema_version == 0

    commits = store.migrate(STEPS)

    assert len(commits) == 3
    assert commit_ids(store_path)[:4] == [*reversed(commits), head]
    assert store.schema_version == 3
    assert store.get("tasks/t1.json") == {"id": 1, "status": "open", "priority": "normal"}
    assert store.get("index.yaml", "tasks") == [0, 1, 2, 99]
    assert store.get("state.json") == {"services": {"slack": True}, "meta": {"split": True}}
    # The snapshot tags the state before the first step.
    assert tags(store_path) == {"pre-migration-v0-to-v3": head}
    assert [s.name for s in store.snapshots()] == ["pre-migration-v0-to-v3"]
    # Each commit: actor migration, message naming the versions, schema document updated.
    for i, cid in enumerate(commits):
        message = git(store_path, "log", "-1", "--format=%B", cid)
        assert message.startswith(f"migrate schema v{i} -> v{i + 1}: ")
        assert "Gitstate-Actor: migration" in message
        assert json.loads(git(store_path, "show", f"{cid}:{SCHEMA_DOC}")) == {"version": i + 1}
    assert "rename_state (Rename 'state' to 'status'.)" in git(store_path, "log", "-1", "--format=%s", commits[0])
    assert "tasks/t0.json: state removed" in git(store_path, "log", "-1", "--format=%B", commits[0])
    log = store.log(limit=3)
    assert [c.actor for c in log] == ["migration"] * 3
    # The files and the index follow; real git is happy.
    assert json.loads((store_path / "tasks/t2.json").read_text())["status"] == "open"
    assert status_porcelain(store_path) == ""
    fsck(store_path)
    # The schema document is gitstate's own: hidden from docs().
    assert SCHEMA_DOC not in store.docs()


def test_a_second_run_does_nothing(store: gitstate.Store, store_path: Path) -> None:
    seed(store)
    store.migrate(STEPS)
    head = store.head
    assert store.migrate(STEPS) == []
    assert store.migrate(STEPS, dry_run=True) == []
    assert store.head == head
    assert len(tags(store_path)) == 1
    # Adding a step later runs only the new one, with its own snapshot.
    extra = {**STEPS, 4: lambda tx: tx.set("state.json", "v4", True)}
    (commit,) = store.migrate(extra)
    assert store.schema_version == 4
    assert tags(store_path)["pre-migration-v3-to-v4"] == head
    assert git(store_path, "log", "-1", "--format=%s", commit).startswith("migrate schema v3 -> v4: <lambda>")


def test_steps_run_in_version_order_and_versions_may_skip(store: gitstate.Store) -> None:
    seed(store)
    seen: list[tuple[int | None, int | None]] = []

    def record(tx: TxView) -> None:
        seen.append((tx.from_version, tx.version))

    store.migrate({10: record, 2: record, 5: record})
    assert seen == [(0, 2), (2, 5), (5, 10)]
    assert store.schema_version == 10


def test_pending_writes_are_committed_first_and_seen_by_the_steps(store: gitstate.Store, store_path: Path) -> None:
    seed(store)
    store.set("tasks/t9.json", None, {"id": 9, "state": "blocked"})
    commits = store.migrate({1: rename_state})
    assert store.get("tasks/t9.json") == {"id": 9, "status": "blocked"}
    pre = tags(store_path)["pre-migration-v0-to-v1"]
    assert git(store_path, "log", "-1", "--format=%s", pre) == "tasks/t9.json: created\n"
    assert commit_ids(store_path)[1] == pre
    assert len(commits) == 1


def test_a_migration_of_an_empty_store_sets_the_version(open_store: OpenStore, tmp_path: Path) -> None:
    store = open_store(tmp_path / "empty")
    commits = store.migrate({1: lambda tx: tx.set("state.json", "created_by", "migration 1")})
    assert len(commits) == 1
    assert store.schema_version == 1
    assert store.get("state.json") == {"created_by": "migration 1"}
    assert store.snapshots() == []  # nothing to snapshot before the first commit


def test_tx_reads_its_own_writes_and_creates_and_deletes_documents(store: gitstate.Store) -> None:
    seed(store)
    store.set("notes.md", None, "# notes\n")
    store.flush()
    observed: dict[str, Any] = {}

    def step(tx: TxView) -> None:
        tx.delete("tasks/t0.json")
        tx.set("archive/t0.json", None, {"id": 0})
        tx.set("notes.md", None, tx.get("notes.md") + "migrated\n")
        observed["docs"] = tx.docs()
        observed["tasks"] = tx.docs("tasks/")
        observed["exists"] = (tx.exists("tasks/t0.json"), tx.exists("archive/t0.json", "id"))
        observed["default"] = tx.get("nope.json", default=None)
        with pytest.raises(gitstate.KeyNotFound):
            tx.get("tasks/t1.json", "nope")
        with pytest.raises(gitstate.KeyNotFound):
            tx.delete("tasks/t1.json", "nope")
        with pytest.raises(gitstate.InvalidPath):
            tx.set(SCHEMA_DOC, "version", 7)
        with pytest.raises(gitstate.InvalidPath):
            tx.set("../escape.json", None, {})
        with pytest.raises(gitstate.EncodeError):
            tx.set("tasks/t1.json", "when", object())
        with pytest.raises(gitstate.EncodeError):
            tx.set("notes.md", "key", "x")
        value = tx.get("tasks/t1.json")
        value["mutated"] = True  # a copy: the view does not change
        assert "mutated" not in tx.get("tasks/t1.json")

    store.migrate({1: step})
    assert observed["docs"] == ["archive/t0.json", "notes.md", "state.json", "tasks/t1.json", "tasks/t2.json"]
    assert observed["tasks"] == ["tasks/t1.json", "tasks/t2.json"]
    assert observed["exists"] == (False, True)
    assert observed["default"] is None
    assert store.docs() == observed["docs"]
    assert store.get("notes.md") == "# notes\nmigrated\n"


def test_a_step_that_changes_nothing_still_lands_the_version(store: gitstate.Store, store_path: Path) -> None:
    seed(store)
    (commit,) = store.migrate({1: lambda tx: None})
    assert store.schema_version == 1
    assert git(store_path, "show", "--format=", "--name-only", commit).split() == [SCHEMA_DOC]


# ------------------------------------------------------------------------------------------------- failure
def test_a_failing_middle_step_lands_nothing(store: gitstate.Store, store_path: Path) -> None:
    head = seed(store)
    before_files = files_of(store_path)
    before_commits = commit_ids(store_path)
    index_before = (store_path / ".git" / "index").read_bytes()

    def explode(tx: TxView) -> None:
        tx.set("tasks/t0.json", "half", "done")
        raise ValueError("priority table missing")

    with pytest.raises(gitstate.MigrationError) as info:
        store.migrate({1: rename_state, 2: explode, 3: split_index})

    err = info.value
    assert err.version == 2
    assert "step 2" in str(err) and "explode" in str(err) and "priority table missing" in str(err)
    assert isinstance(err.__cause__, ValueError)
    # It says that the pre-migration snapshot was kept, and where.
    assert err.snapshot == "pre-migration-v0-to-v3"
    assert "the pre-migration snapshot 'pre-migration-v0-to-v3' was kept" in str(err)
    # Nothing landed: branch, files, index, history as before; the snapshot stays.
    assert store.head == head
    assert commit_ids(store_path) == before_commits
    assert files_of(store_path) == before_files
    assert (store_path / ".git" / "index").read_bytes() == index_before
    assert status_porcelain(store_path) == ""
    assert tags(store_path) == {"pre-migration-v0-to-v3": head}
    assert store.schema_version == 0
    assert store.get("tasks/t0.json") == {"id": 0, "state": "open"}
    assert store.pending == 0
    fsck(store_path)

    # Fixed and run again: the snapshot of the same state is reused, not duplicated.
    commits = store.migrate({1: rename_state, 2: add_priority, 3: split_index})
    assert len(commits) == 3
    assert tags(store_path) == {"pre-migration-v0-to-v3": head}


def test_a_failing_first_step_and_a_key_error_inside_a_step(store: gitstate.Store, store_path: Path) -> None:
    head = seed(store)
    with pytest.raises(gitstate.MigrationError) as info:
        store.migrate({1: lambda tx: tx.get("tasks/t0.json", "missing")})
    assert info.value.version == 1
    assert isinstance(info.value.__cause__, gitstate.KeyNotFound)
    assert store.head == head


def test_the_snapshot_gets_a_new_name_when_the_old_one_points_elsewhere(
    store: gitstate.Store, store_path: Path
) -> None:
    first = seed(store)
    with pytest.raises(gitstate.MigrationError):
        store.migrate({1: lambda tx: 1 / 0})
    store.set("state.json", "later", True)
    second = store.flush()
    store.migrate({1: rename_state})
    assert tags(store_path) == {"pre-migration-v0-to-v1": first, "pre-migration-v0-to-v1-2": second}


@pytest.mark.parametrize(
    "steps, error",
    [
        ({0: rename_state}, ValueError),
        ({"1": rename_state}, ValueError),
        ({True: rename_state}, ValueError),
        ({1: "not a function"}, TypeError),
        ([rename_state], TypeError),
    ],
)
def test_bad_steps_are_refused_before_anything_happens(
    store: gitstate.Store, steps: Any, error: type[Exception]
) -> None:
    head = seed(store)
    with pytest.raises(error):
        store.migrate(steps)
    assert store.head == head and store.snapshots() == []


# ------------------------------------------------------------------------------------------------- dry run
def test_dry_run_lists_the_changes_and_changes_nothing(store: gitstate.Store, store_path: Path) -> None:
    head = seed(store)
    store.set("tasks/t5.json", None, {"id": 5, "state": "new"})  # pending: seen by the dry run, not flushed
    before_files = files_of(store_path)

    lines = store.migrate({1: rename_state, 2: add_priority}, dry_run=True)

    assert lines[0] == "migrate schema v0 -> v1: rename_state (Rename 'state' to 'status'.)"
    assert '  tasks/t0.json: state removed (was "open")' in lines
    assert '  tasks/t5.json: status = "new"' in lines
    assert "migrate schema v1 -> v2: add_priority" in lines
    assert '  tasks/t2.json: priority = "normal"' in lines
    assert store.head == head
    assert files_of(store_path) == before_files
    assert tags(store_path) == {}
    assert store.pending == 1
    assert store.schema_version == 0
    assert store.get("tasks/t0.json") == {"id": 0, "state": "open"}

    plan = migrate.plan(store, {1: rename_state, 2: add_priority})
    assert (plan.current, plan.target, plan.snapshot) == (0, 2, "pre-migration-v0-to-v2")
    assert [s.version for s in plan.steps] == [1, 2]
    assert plan.to_dict()["steps"][1]["changes"][0] == {
        "doc": "tasks/t0.json",
        "key": ["priority"],
        "op": "add",
        "new": "normal",
    }


def test_dry_run_of_a_failing_step_raises_the_same_error(store: gitstate.Store, store_path: Path) -> None:
    head = seed(store)
    with pytest.raises(gitstate.MigrationError) as info:
        store.migrate({1: rename_state, 2: lambda tx: tx.delete("nope.json")}, dry_run=True)
    assert info.value.version == 2
    assert store.head == head and tags(store_path) == {}


# ------------------------------------------------------------------------------------------------- rollback
def test_restoring_the_snapshot_rolls_the_migration_back(store: gitstate.Store, store_path: Path) -> None:
    seed(store)
    before = {doc: store.get(doc) for doc in store.docs()}
    store.migrate(STEPS)
    migrated_head = store.head

    store.restore("pre-migration-v0-to-v3")

    assert store.schema_version == 0
    assert {doc: store.get(doc) for doc in store.docs()} == before
    assert store.log(limit=1)[0].actor == "restore"
    assert migrated_head in commit_ids(store_path)  # history appended, never rewritten
    assert status_porcelain(store_path) == ""
    # Migrating again reuses the snapshot: it holds the same content, so the rollback command stays the same.
    assert len(store.migrate(STEPS)) == 3
    assert list(tags(store_path)) == ["pre-migration-v0-to-v3"]
    store.restore("pre-migration-v0-to-v3")
    # The program that restored may write again (it adopted the restored schema).
    store.set("state.json", "after_rollback", True)
    assert store.flush() is not None
    assert store.schema_version == 0


def test_cli_restore_of_the_snapshot_rolls_back(store: gitstate.Store, store_path: Path) -> None:
    seed(store)
    store.migrate({1: rename_state})
    store.close()
    result = invoke(["-C", str(store_path), "restore", "pre-migration-v0-to-v1"])
    assert result.exit_code == 0, result.output
    with gitstate.open(store_path, durability="manual", fsync=False) as again:
        assert again.schema_version == 0
        assert again.get("tasks/t0.json") == {"id": 0, "state": "open"}


# ------------------------------------------------------------------------------------------------- other processes
def test_another_store_sees_the_migration_and_refuses_old_schema_writes(
    open_store: OpenStore, store_path: Path
) -> None:
    a = open_store(store_path)
    seed(a)
    b = open_store(store_path)  # "another program": its own Store and repository handle
    changes: list[Any] = []
    save_errors: list[Any] = []
    b.on("external_change", changes.append)
    b.on("save_error", save_errors.append)
    assert b.get("tasks/t1.json") == {"id": 1, "state": "open"}

    a.migrate({1: rename_state})

    # b sees the new content at once, and an event saying the schema changed.
    assert b.get("tasks/t1.json") == {"id": 1, "status": "open"}
    assert [(e.source, e.docs) for e in changes] == [("migration", ["tasks/t0.json", "tasks/t1.json", "tasks/t2.json"])]
    # An old-schema write is not committed: a SchemaMismatch the program can act on (also a save_error).
    b.set("tasks/t1.json", "state", "done")
    head = a.head
    with pytest.raises(SchemaMismatch) as info:
        b.flush()
    assert (info.value.expected, info.value.found, info.value.pending) == (0, 1, 1)
    assert isinstance(info.value, gitstate.SaveError)
    assert "expect_schema(1)" in str(info.value)
    assert [type(e.error) for e in save_errors] == [SchemaMismatch]
    assert a.head == head and b.pending == 1
    # The program drops the stale write, declares the new schema and goes on.
    assert b.discard_pending() == 1
    b.expect_schema(1)
    b.set("tasks/t1.json", "status", "done")
    assert b.flush() is not None
    assert a.get("tasks/t1.json") == {"id": 1, "status": "done"}


def test_a_program_declaring_an_older_schema_cannot_open_a_newer_store(open_store: OpenStore, store_path: Path) -> None:
    seed(open_store(store_path))
    open_store(store_path).migrate({1: rename_state, 2: add_priority})
    with pytest.raises(SchemaMismatch) as info:
        gitstate.open(store_path, durability="manual", fsync=False, schema_version=1)
    assert (info.value.expected, info.value.found) == (1, 2)
    assert "pre-migration-v1-to-v2" in str(info.value)
    # Declaring the current version, or a newer one it will migrate to, opens fine.
    newer = open_store(store_path, schema_version=3)
    newer.set("state.json", "x", 1)
    with pytest.raises(SchemaMismatch):
        newer.flush()  # not migrated yet: writes made for v3 wait
    with pytest.raises(gitstate.MigrationError, match="migrate before writing") as info:
        newer.migrate({3: lambda tx: None})
    assert isinstance(info.value.__cause__, SchemaMismatch)
    assert newer.discard_pending() == 1
    newer.migrate({3: lambda tx: None})
    newer.set("state.json", "x", 1)
    assert newer.flush() is not None


_CHILD = textwrap.dedent(
    """
    import json, sys, threading
    import gitstate
    from gitstate.migrate import SchemaMismatch

    store = gitstate.open(sys.argv[1], durability="debounced", debounce_ms=60_000, fsync=False)
    migrated = threading.Event()
    errors = []
    store.on("external_change", lambda e: e.source == "migration" and migrated.set())
    store.on("save_error", lambda e: errors.append(type(e.error).__name__))
    print(json.dumps({"ready": store.schema_version, "t1": store.get("tasks/t1.json")}), flush=True)
    sys.stdin.readline()  # the parent migrated the store
    seen = migrated.wait(20)  # the flusher's head poll notices the new head
    out = {"event": seen, "version": store.schema_version, "t1": store.get("tasks/t1.json")}
    store.set("tasks/t1.json", "state", "done")  # old code writes the old schema
    try:
        store.flush()
        out["flush"] = "committed"
    except SchemaMismatch as e:
        out["flush"] = [type(e).__name__, e.expected, e.found, e.pending]
    out["save_errors"] = errors
    out["dropped"] = store.discard_pending()
    store.expect_schema(store.schema_version)
    store.set("tasks/t1.json", "status", "done")
    out["after"] = store.flush() is not None
    print(json.dumps(out), flush=True)
    store.close()
    """
)


def test_a_process_with_the_store_open_during_a_migration(
    store: gitstate.Store, store_path: Path, tmp_path: Path
) -> None:
    seed(store)
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(proc):
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(proc.stdout.readline())
        assert ready == {"ready": 0, "t1": {"id": 1, "state": "open"}}
        store.migrate({1: rename_state})
        head = store.head
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        out = json.loads(line)
        assert proc.wait(timeout=60) == 0
    assert out["event"] is True
    assert out["version"] == 1
    assert out["t1"] == {"id": 1, "status": "open"}
    assert out["flush"] == ["SchemaMismatch", 0, 1, 1]
    assert out["save_errors"] == ["SchemaMismatch"]
    assert out["dropped"] == 1 and out["after"] is True
    # Only the new-schema write landed after the migration.
    assert git(store_path, "show", f"{head}:tasks/t1.json").count("state") == 0
    assert store.get("tasks/t1.json") == {"id": 1, "status": "done"}
    assert "state" not in store.get("tasks/t1.json")


# ------------------------------------------------------------------------------------------------- files and registry
def test_migrations_registry_and_load_steps(tmp_path: Path) -> None:
    migrations = Migrations()

    @migrations(2)
    def second(tx: TxView) -> None:
        pass

    @migrations(1)
    def first(tx: TxView) -> None:
        pass

    assert sorted(migrations) == [1, 2]
    with pytest.raises(ValueError):
        migrations(1)(first)
    with pytest.raises(ValueError):
        migrations(0)

    good = tmp_path / "m.py"
    good.write_text(
        "migrations = {1: lambda tx: None, '2': lambda tx: None}\nif __name__ == '__main__':\n"
        "    raise SystemExit('must not run')\n"
    )
    assert sorted(migrate.load_steps(good)) == [1, 2]
    for text, problem in [
        ("x = 1\n", "defines no"),
        ("migrations = {}\n", "empty"),
        ("migrations = {'a': print}\n", "whole numbers"),
        ("migrations = {1: 3}\n", "not a function"),
        ("raise RuntimeError('bad import')\n", "bad import"),
    ]:
        bad = tmp_path / "bad.py"
        bad.write_text(text)
        with pytest.raises(gitstate.MigrationError, match=problem):
            migrate.load_steps(bad)
    with pytest.raises(gitstate.MigrationError, match="no such"):
        migrate.load_steps(tmp_path / "missing.py")


def test_a_malformed_schema_document_is_reported_but_does_not_lock_the_store_up(
    open_store: OpenStore, store_path: Path
) -> None:
    store = open_store(store_path)
    seed(store)
    # A hand edit committed by the watcher (the API refuses writes under .gitstate/).
    (store_path / ".gitstate").mkdir(exist_ok=True)
    (store_path / SCHEMA_DOC).write_text('{"version": "two"}\n')
    store.ingest([SCHEMA_DOC])
    with pytest.raises(gitstate.MigrationError, match="whole number"):
        _ = store.schema_version
    with pytest.raises(gitstate.MigrationError, match="whole number"):
        store.migrate({1: rename_state})
    again = open_store(store_path)  # opens, and writes still commit
    again.set("state.json", "still", "works")
    assert again.flush() is not None
    (store_path / SCHEMA_DOC).write_text('{"version": 1}\n')  # the repair, by hand too
    store.ingest([SCHEMA_DOC])
    assert again.schema_version == 1


# ------------------------------------------------------------------------------------------------- the CLI
MIGRATION_FILE = textwrap.dedent(
    '''
    def rename_state(tx):
        """Rename 'state' to 'status'."""
        for doc in tx.docs("tasks/"):
            tx.set(doc, "status", tx.get(doc, "state"))
            tx.delete(doc, "state")


    def add_priority(tx):
        for doc in tx.docs("tasks/"):
            tx.set(doc, "priority", "normal")


    migrations = {1: rename_state, 2: add_priority}
    '''
)


def test_cli_migrate_dry_run_run_and_second_run(store: gitstate.Store, store_path: Path, tmp_path: Path) -> None:
    head = seed(store)
    store.close()
    mfile = tmp_path / "migrations.py"
    mfile.write_text(MIGRATION_FILE)
    runner = CliRunner()

    dry = runner.invoke(main, ["-C", str(store_path), "migrate", str(mfile), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would migrate schema v0 -> v2 in 2 commit(s) (after snapshot pre-migration-v0-to-v2):" in dry.output
    assert '    tasks/t1.json: status = "open"' in dry.output
    assert "dry run: nothing was changed" in dry.output
    assert commit_ids(store_path)[0] == head and tags(store_path) == {}

    dry_json = runner.invoke(main, ["-C", str(store_path), "migrate", str(mfile), "--dry-run", "--json"])
    assert dry_json.exit_code == 0, dry_json.output
    plan = json.loads(dry_json.output)
    assert (plan["current"], plan["target"], [s["name"] for s in plan["steps"]]) == (
        0,
        2,
        ["rename_state", "add_priority"],
    )

    real = runner.invoke(main, ["-C", str(store_path), "migrate", str(mfile)])
    assert real.exit_code == 0, real.output
    lines = real.output.splitlines()
    assert lines[0] == "snapshot pre-migration-v0-to-v2"
    assert "migrate schema v0 -> v1: rename_state (Rename 'state' to 'status'.) (6 changes)" in lines[1]
    assert lines[-2:] == ["schema version 2", "roll back with: gitstate restore pre-migration-v0-to-v2"]
    assert git(store_path, "log", "-1", "--format=%s").startswith("migrate schema v1 -> v2: add_priority")

    again = runner.invoke(main, ["-C", str(store_path), "migrate", str(mfile)])
    assert again.exit_code == 0
    assert again.output == "already at schema version 2; nothing to migrate\n"
    as_json = runner.invoke(main, ["-C", str(store_path), "migrate", str(mfile), "--json"])
    assert json.loads(as_json.output)["commits"] == []


def test_cli_migrate_failure_is_one_line_and_exit_1(store: gitstate.Store, store_path: Path, tmp_path: Path) -> None:
    head = seed(store)
    store.close()
    mfile = tmp_path / "broken.py"
    mfile.write_text("def boom(tx):\n    raise KeyError('no priority table')\n\nmigrations = {1: boom}\n")
    result = invoke(["-C", str(store_path), "migrate", str(mfile)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "migration step 1 (boom, v0 -> v1) failed" in result.output
    assert commit_ids(store_path)[0] == head
    assert tags(store_path) == {"pre-migration-v0-to-v1": head}

    missing = invoke(["-C", str(store_path), "migrate", str(tmp_path / "nope.py")])
    assert missing.exit_code == 1 and "no such migration file" in missing.output
