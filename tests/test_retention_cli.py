"""``gitstate forget`` end to end through the CLI (in-process runner), on fast-imported histories."""

from __future__ import annotations

import json
from pathlib import Path

from fastimport import build_history
from helpers import commit_ids, fsck, git, invoke

from gitstate import retention

START = 1_788_220_800  # 2026-09-01 00:00 UTC
HOUR = 3600


def _store(tmp_path: Path, hours: int = 24 * 20) -> Path:
    path = tmp_path / "store"
    build_history(path, hours, start=START, step_s=HOUR)
    return path


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = commit_ids(path)
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-daily", "3", "--dry-run"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "policy: keep-within 7d, daily 3"
    assert lines[1].startswith("keep as is: 169 commits since 2026-09-13 23:00")
    assert lines[2] == "keep 3 older points, drop 308 commits:"
    assert "replaces 23" in lines[3] and "state.json" in lines[3]
    assert lines[-1] == "dry run: nothing changed"
    assert commit_ids(path) == before
    assert not (path / ".git" / "shallow").exists()


def test_forget_save_and_apply_the_stored_policy(tmp_path: Path) -> None:
    path = _store(tmp_path)
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-daily", "3", "--save"])
    assert r.exit_code == 0, r.output
    assert "forgot 308 commits; kept 3 points on refs/gitstate/kept" in r.output
    assert retention.load_policy(path) == retention.Policy(keep_within="7d", daily=3)
    # The policy is committed (it travels with clones) by the person who typed the command, after the cut.
    assert len(commit_ids(path)) == 170
    assert git(path, "log", "-1", "--format=%s").strip() == "retention policy: keep-within 7d, daily 3"
    assert json.loads(git(path, "show", "HEAD:.gitstate/retention.json")) == {"keep_within": "7d", "daily": 3}
    assert git(path, "status", "--porcelain") == ""
    fsck(path)
    assert len(git(path, "rev-list", retention.KEPT_REF).split()) == 3
    # Saving the same rules again commits nothing.
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-daily", "3", "--save", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["saved"] is None
    # Later: a plain `gitstate forget` applies what was saved.
    r = invoke(["-C", str(path), "forget", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["applied"] and data["policy"] == {"keep_within": "7d", "daily": 3}


def test_json_lists_the_points(tmp_path: Path) -> None:
    path = _store(tmp_path)
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-weekly", "2", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [p["rules"] for p in data["points"]] == [["weekly"], ["weekly"]]
    assert all(len(p["id"]) == 40 and p["id"] != p["original"] for p in data["points"])
    assert sum(p["replaces"] for p in data["points"]) == 24 * 20 - 169
    assert git(path, "rev-parse", retention.KEPT_REF).strip() == data["points"][0]["id"]


def test_errors_are_clear(tmp_path: Path) -> None:
    path = _store(tmp_path, hours=48)
    r = invoke(["-C", str(path), "forget"])
    assert r.exit_code != 0 and "no retention rule given and none stored" in r.output
    r = invoke(["-C", str(path), "forget", "--save"])
    assert r.exit_code == 2 and "--save needs rules" in r.output
    r = invoke(["-C", str(path), "forget", "--keep-within", "soon"])
    assert r.exit_code != 0 and "not a duration: 'soon'" in r.output
    r = invoke(["-C", str(path), "forget", "--keep-daily", "-1"])
    assert r.exit_code == 2


def test_unpushed_needs_the_flag(tmp_path: Path) -> None:
    path = _store(tmp_path)
    bare = tmp_path / "backup.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    assert invoke(["-C", str(path), "remote", "add", "origin", str(bare)]).exit_code == 0
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-daily", "3"])
    assert r.exit_code != 0 and "on no remote; push first" in r.output and "--include-unpushed" in r.output
    assert len(commit_ids(path)) == 24 * 20
    r = invoke(["-C", str(path), "push"])
    assert r.exit_code == 0, r.output
    r = invoke(["-C", str(path), "forget", "--keep-within", "7d", "--keep-daily", "3"])
    assert r.exit_code == 0, r.output
    assert git(bare, "rev-list", "--count", "main").strip() == str(24 * 20)


def test_status_and_doctor_report_the_history_against_its_budget(tmp_path: Path) -> None:
    path = _store(tmp_path)
    r = invoke(["-C", str(path), "status"])
    assert "history" not in r.output  # no policy, no line
    tiny = retention.Policy(keep_within="7d", daily=3, budget_mb=0.001)
    retention.save_policy(path, tiny)
    r = invoke(["-C", str(path), "status"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("history "))
    assert " of 1.0 KB" in line and "retention: keep-within 7d, daily 3" in line
    assert "over its budget of 1.0 KB: run 'gitstate forget'" in r.output
    data = json.loads(invoke(["-C", str(path), "status", "--json"]).output)
    assert data["retention"] == tiny.to_json() and data["history"]["budget"] == 1000
    assert data["history"]["days_left"] == 0.0
    doctor = invoke(["-C", str(path), "doctor"])
    assert "retention" in doctor.output and "over its budget" in doctor.output
    retention.save_policy(path, retention.Policy(keep_within="7d", daily=3, budget_mb=500))
    doctor = invoke(["-C", str(path), "doctor"])
    assert "ok       retention" in doctor.output and "of 500.0 MB" in doctor.output
