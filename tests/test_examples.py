"""Every example runs on its own, as a real subprocess against a temporary directory, and says what it shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import fsck, git, status_porcelain

import gitstate
import gitstate.cli.migrate_cmd  # registers `migrate` on the CLI (until cli/__init__ imports it)
from gitstate.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout_s: float = 90.0) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GITSTATE_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


def test_every_example_is_tested() -> None:
    tested = {
        "toggles.py",
        "memory_appenders.py",
        "agent_runtime.py",
        "task_migration.py",
        "migrations_v2.py",
        "human_edit.py",
        "demo.py",
        "checkpoint.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_toggles(tmp_path: Path) -> None:
    out = run_example("toggles.py", str(tmp_path / "s"), "--debounce-ms", "200")
    assert re.search(r"^100 writes from 4 threads in [\d.]+ ms .*pending: 100, commits so far: 0$", out, re.M)
    assert re.search(r"^1 commit [0-9a-f]{7} after [\d.]+ s of quiet", out, re.M)
    assert "after a restart the toggles read back the same: True" in out
    log = git(tmp_path / "s", "log", "--format=%s").splitlines()
    assert len(log) == 2 and log[1] == "default toggles"
    assert status_porcelain(tmp_path / "s") == ""
    state = json.loads((tmp_path / "s" / "state.json").read_text())
    assert sorted(state["meetings"]) == [f"event.{i}" for i in range(120, 125)]


def test_checkpoint_keeps_the_last_five_and_restores_the_latest_after_kill_9(tmp_path: Path) -> None:
    out = run_example("checkpoint.py", str(tmp_path), "--runs", "8", "--crash-run", "6")
    assert "kill -9" in out and "(killed by signal 9: no checkpoint)" in out
    run7 = out.split("run 7\n")[1]
    assert re.match(r"  start: latest checkpoint checkpoint-0005 \(restored as commit [0-9a-f]{8}\)", run7)
    assert (
        "checkpoints kept (5): checkpoint-0003, checkpoint-0004, checkpoint-0005, checkpoint-0007, checkpoint-0008"
        in out
    )
    assert "the queues equal the latest checkpoint: True" in out
    assert "the crashed run's half-done request is gone from the queues: True" in out
    assert "...and still readable in history: True" in out
    store = tmp_path / "service"
    assert git(store, "tag").split() == [f"checkpoint-000{i}" for i in (3, 4, 5, 7, 8)]
    assert status_porcelain(store) == ""
    fsck(store)


def test_memory_appenders(tmp_path: Path) -> None:
    out = run_example("memory_appenders.py", str(tmp_path / "s"), "--workers", "3", "--entries", "5")
    assert "memory/current_work.yaml: 15 follow-ups (expected 15), 3 active issues" in out
    assert out.count("entries, in order: True") == 3
    assert "all entries present: True" in out
    with gitstate.open(tmp_path / "s", durability="manual") as store:
        follow_ups = store.get("memory/current_work.yaml", "follow_ups")
    assert sorted((f["worker"], f["n"]) for f in follow_ups) == [(w, n) for w in range(3) for n in range(5)]
    fsck(tmp_path / "s")


def test_agent_runtime_resumes_at_the_last_flush_after_kill_9(tmp_path: Path) -> None:
    out = run_example("agent_runtime.py", str(tmp_path / "s"), "--crash-after", "4")
    assert re.search(r"kill -9 \d+", out)
    assert "killed by signal 9" in out
    assert "same commit and same state as the last checkpoint: True" in out
    assert "all tasks completed: {'alice': ['triage inbox', 'review PR 42', 'write release notes'], " in out
    # The step that was half done when the runtime died was done again after the restart.
    unflushed = re.search(r"UNFLUSHED \d+ write\(s\): (.+)", out)
    assert unflushed is not None
    redone = out.split("--- run 2")[1]
    assert unflushed.group(1) in redone
    assert status_porcelain(tmp_path / "s") == ""


def test_task_migration_and_its_migration_file_with_the_cli(tmp_path: Path) -> None:
    out = run_example("task_migration.py", str(tmp_path))
    assert "MigrationError: migration step 2 (reshape_tasks_draft, v1 -> v2) failed: ValueError" in out
    assert "head unchanged: True; schema version 1;" in out
    assert "[migration] migrate schema v1 -> v2: reshape_tasks" in out
    assert "a second run: []" in out
    assert "schema version 1; tasks/task_2.json back to v1: True" in out
    path = tmp_path / "coding-agent-state"
    assert git(path, "log", "-1", "--format=%s").startswith("restore all documents to pre-migration-v1-to-v2")
    # The migration file works with `gitstate migrate` too: dry run, run, second run, rollback.
    runner = CliRunner()
    mfile = str(EXAMPLES / "migrations_v2.py")
    dry = runner.invoke(main, ["-C", str(path), "migrate", mfile, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would migrate schema v1 -> v2 in 1 commit(s) (after snapshot pre-migration-v1-to-v2):" in dry.output
    real = runner.invoke(main, ["-C", str(path), "migrate", mfile])
    assert real.exit_code == 0, real.output
    assert real.output.splitlines()[-1] == "roll back with: gitstate restore pre-migration-v1-to-v2"
    again = runner.invoke(main, ["-C", str(path), "migrate", mfile])
    assert again.output == "already at schema version 2; nothing to migrate\n"
    with gitstate.open(path, durability="manual") as store:
        assert store.get("tasks/task_4.json", "times.created") == "2024-01-04T10:00:00Z"
        assert store.docs() == ["state.json", *(f"tasks/task_{i}.json" for i in range(1, 5))]
    fsck(path)


@pytest.mark.timeout(120)
def test_human_edit(tmp_path: Path) -> None:
    out = run_example("human_edit.py", str(tmp_path / "s"))
    assert "event external_change from human: ['config.json: poll_interval_s 30 -> 60']" in out
    assert "program values the human overrode: [\"owner: 'bot-2' -> 'alice'\"]" in out
    assert "the program reads services = {'slack': False, 'gmail': True}, owner = 'alice'" in out
    assert re.search(r"event invalid_edit: config.json line \d+ column \d+: invalid JSON", out)
    assert "the program still reads the last good value: poll_interval_s = 60" in out
    assert "the program reads poll_interval_s = 90" in out
    actors = git(tmp_path / "s", "log", "--format=%(trailers:key=Gitstate-Actor,valueonly)").split()
    assert actors == ["human", "library", "human", "human", "library"]


@pytest.mark.timeout(120)
def test_demo(tmp_path: Path) -> None:
    out = run_example("demo.py", str(tmp_path / "s"))
    lines = out.splitlines()
    assert len(lines) < 60, "the demo should stay a few dozen lines"
    for expected in [
        r"100 writes from 4 threads in [\d.]+ ms; pending=100",
        r"debounced flush: 1 commit [0-9a-f]{7}",
        r"hand edit committed by the watcher: state.json: services.gmail true -> false; state.json: owner",
        r"commit [0-9a-f]{7} author '.+', actor human",
        r"broken edit refused: state.json:\d+:\d+ invalid JSON",
        r"still serves the last good value: 'alice'",
        r"migrated to schema v1 in commit [0-9a-f]{7}: migrate schema v0 -> v1: nest_toggles",
        r"a second run does nothing: \[\]",
        r"undo of 'a bad write': slack = False",
        r"restore pre-migration-v0-to-v1: schema v0, keys \['jobs', 'owner', 'services'\]",
        r"\(before the hand edit\): owner = 'bot'",
        r"diff before-v1 HEAD: no changes",
        r"git status --porcelain: \(clean\)",
    ]:
        assert re.search(expected, out), f"missing {expected!r} in:\n{out}"
    fsck(tmp_path / "s")
