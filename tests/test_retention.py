"""Retention (``forget``): the policy, the choice of kept points, and the cut, checked with real git.

Histories are built with explicit commit times by ``git fast-import`` (tests/fastimport.py): 40 days with one
commit an hour unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastimport import build_history
from helpers import GIT_ENV, PYTHON, commit_ids, fsck, git

from gitstate import gc, remote, retention
from gitstate.repo import Repository
from gitstate.retention import KEPT_REF, Policy, RetentionError

HOUR = 3600
DAY = 86400
#: Midnight UTC, so day boundaries fall on commit boundaries.
START = int(dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp())


_OPENED: list[Repository] = []


@pytest.fixture(autouse=True)
def _close_repositories() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def _open(path: Path) -> Repository:
    repo = Repository.open(path, create=False)
    _OPENED.append(repo)
    return repo


def _history(tmp_path: Path, days: int = 40, step_s: int = HOUR, name: str = "store") -> tuple[Path, int]:
    path = tmp_path / name
    count = days * DAY // step_s
    build_history(path, count, start=START, step_s=step_s)
    return path, START + (count - 1) * step_s  # the newest commit's time


def _times(path: Path, rev: str = "HEAD") -> dict[str, int]:
    out = git(path, "log", "--format=%H %at", rev)
    return {sha: int(t) for sha, t in (line.split() for line in out.splitlines())}


def _git_dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / ".git").rglob("*") if p.is_file())


# ===================================================================== the policy
def test_parse_duration_units_and_errors() -> None:
    assert retention.parse_duration("7d") == (0, 0, 7 * DAY)
    assert retention.parse_duration("1y6m") == (1, 6, 0)
    assert retention.parse_duration("2w3d12h") == (0, 0, 17 * DAY + 12 * HOUR)
    for bad in ("", "7", "d7", "7x", "0d", "7d garbage", "-3d"):
        with pytest.raises(RetentionError, match="not a duration"):
            retention.parse_duration(bad)


def test_policy_validation_and_round_trip(tmp_path: Path) -> None:
    with pytest.raises(RetentionError, match="whole number"):
        Policy(daily=-1)
    with pytest.raises(RetentionError, match="not a duration"):
        Policy(keep_within="soon")
    assert Policy().empty and not Policy(daily=1).empty
    p = Policy(keep_within="7d", hourly=48, daily=30, weekly=12, monthly=24, budget_mb=500)
    assert Policy.from_json(p.to_json()) == p
    with pytest.raises(RetentionError, match="unknown retention setting"):
        Policy.from_json({"keep_dialy": 3})
    retention.save_policy(tmp_path, p)
    assert retention.load_policy(tmp_path) == p
    retention.save_policy(tmp_path, None)
    assert retention.load_policy(tmp_path) is None
    (tmp_path / retention.POLICY_FILE).write_text("[1, 2]")
    with pytest.raises(RetentionError, match="expected an object"):
        retention.load_policy(tmp_path)


def test_calendar_months_back() -> None:
    march31 = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC).timestamp()
    back = dt.datetime.fromtimestamp(retention._minus(march31, (0, 1, 0)), dt.UTC)
    assert (back.month, back.day) == (2, 28)  # no Feb 31st: the month's last day
    back = dt.datetime.fromtimestamp(retention._minus(march31, (1, 3, DAY)), dt.UTC)
    assert (back.year, back.month, back.day) == (2024, 12, 30)


# ===================================================================== planning
def test_plan_keeps_the_last_commit_of_each_period(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    repo = _open(path)
    plan = retention.plan_forget(repo, Policy(keep_within="7d", daily=5, weekly=3), now=newest + 60)
    times = _times(path)
    edge = newest - 7 * DAY
    assert plan.window == sum(1 for t in times.values() if t >= edge)
    assert plan.head == git(path, "rev-parse", "HEAD").strip()
    days = [dt.datetime.fromtimestamp(p.time, dt.UTC) for p in plan.points]
    # Five daily points: the last commit of each of the five newest days before the window (23:00; the newest
    # day is cut by the window edge at 23:00, so its last older commit is 22:00).
    daily = [d for d, p in zip(days, plan.points, strict=True) if "daily" in p.reasons]
    assert len(daily) == 5 and [d.hour for d in daily] == [22, 23, 23, 23, 23]
    assert daily == sorted(daily, reverse=True) and len({d.date() for d in daily}) == 5
    weekly = [p for p in plan.points if "weekly" in p.reasons]
    assert len(weekly) == 3
    weeks = [dt.datetime.fromtimestamp(p.time, dt.UTC).isocalendar()[1] for p in weekly]
    assert len(set(weeks)) == 3
    older = len(times) - plan.window
    assert sum(p.replaces for p in plan.points) == older  # every dropped commit is accounted to one point
    assert plan.dropped == older - len(plan.points)
    assert plan.points[0].replaces >= 1 and plan.points[0].docs
    lines = "\n".join(plan.lines())
    assert "keep-within 7d, daily 5, weekly 3" in lines and f"drop {plan.dropped} commits" in lines


def test_empty_policy_and_young_store(tmp_path: Path) -> None:
    path, newest = _history(tmp_path, days=2)
    repo = _open(path)
    with pytest.raises(RetentionError, match="no retention rule"):
        retention.plan_forget(repo, Policy())
    plan = retention.forget(repo, Policy(keep_within="7d"), now=newest)
    assert not plan.changes_anything and plan.window == 48
    assert "nothing older to thin" in plan.lines()
    assert not (path / ".git" / "shallow").exists()


def test_window_is_measured_from_the_newest_commit_not_the_clock(tmp_path: Path) -> None:
    path, newest = _history(tmp_path, days=10)
    repo = _open(path)
    idle = retention.plan_forget(repo, Policy(keep_within="7d", daily=1), now=newest + 300 * DAY)
    assert idle.window == 7 * 24 + 1  # the commit exactly at the edge stays too
    assert len(idle.points) == 1 and idle.dropped == 240 - 169 - 1


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    path, newest = _history(tmp_path, days=20)
    before = {p: p.stat().st_mtime_ns for p in (path / ".git").rglob("*") if p.is_file()}
    plan = retention.forget(_open(path), Policy(keep_within="7d", daily=3), dry_run=True, now=newest)
    assert plan.changes_anything and not plan.applied
    after = {p: p.stat().st_mtime_ns for p in (path / ".git").rglob("*") if p.is_file()}
    assert after == before


# ===================================================================== the cut, with real git
def test_forget_keeps_window_ids_and_git_reads_the_rest(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    before = _times(path)
    trees = {sha: git(path, "rev-parse", f"{sha}^{{tree}}").strip() for sha in list(before)[::24]}
    size_before = _git_dir_size(path)
    repo = _open(path)
    plan = retention.forget(repo, Policy(keep_within="7d", daily=30), now=newest)
    assert plan.applied
    edge = newest - 7 * DAY
    window = [sha for sha, t in before.items() if t >= edge]
    assert commit_ids(path) == window  # same ids, same order: nothing inside the window was rewritten
    assert git(path, "rev-parse", "HEAD").strip() == plan.head
    fsck(path)
    kept = git(path, "log", "--format=%H %at %T%n%B%x00", KEPT_REF).split("\x00")
    kept = [k.strip() for k in kept if k.strip()]
    assert len(kept) == len(plan.points) == 30
    for entry, point in zip(kept, plan.points, strict=True):
        sha, when, tree = entry.splitlines()[0].split()
        assert sha == point.id and int(when) == point.time
        assert tree == git(path, "rev-parse", f"{point.original}^{{tree}}").strip()
        assert f"Gitstate-Kept-From: {point.original}" in entry
        assert "Gitstate-Actor: library" in entry
    # Plain git's gc reclaims the dropped commits (kept points and window stay readable), fsck stays clean.
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    fsck(path)
    assert _git_dir_size(path) < size_before * 0.5, (size_before, _git_dir_size(path))
    oldest_point = plan.points[-1]
    assert git(path, "show", f"{oldest_point.id}:state.json") == git(
        path, "show", f"{trees[next(iter(trees))]}:state.json"
    ) or git(path, "show", f"{oldest_point.id}:state.json")
    assert git(path, "cat-file", "-t", plan.points[5].original, check=False).strip() != "commit"
    assert git(path, "log", "--oneline").count("\n") == len(window)


def test_gitstate_gc_reclaims_without_git(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    repo = _open(path)
    retention.forget(repo, Policy(keep_within="3d", weekly=4), now=newest)
    size_before = _git_dir_size(path)
    gc.collect(repo, prune_grace_s=0, fsync=False)
    fsck(path)
    assert _git_dir_size(path) < size_before * 0.5, (size_before, _git_dir_size(path))
    assert len(git(path, "log", "--format=%H", KEPT_REF).split()) == 4
    assert len(commit_ids(path)) == 3 * 24 + 1


def test_rerun_is_idempotent_and_later_runs_rethin(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    repo = _open(path)
    first = retention.forget(repo, Policy(keep_within="7d", daily=30), now=newest)
    again = retention.forget(repo, Policy(keep_within="7d", daily=30), now=newest)
    assert not again.changes_anything
    assert git(path, "rev-parse", KEPT_REF).strip() == first.points[0].id
    # A stricter policy later thins the kept points too, and counts what each now stands for.
    later = retention.forget(repo, Policy(keep_within="7d", weekly=2), now=newest)
    assert len(later.points) == 2
    assert sum(p.replaces for p in later.points) <= 33 * 24
    assert later.points[0].replaces > 24
    fsck(path)
    assert commit_ids(path) == first_window(path, newest)


def first_window(path: Path, newest: int) -> list[str]:
    return [sha for sha, t in _times(path).items() if t >= newest - 7 * DAY]


def test_snapshot_tags_and_other_refs_stay_readable(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    old = git(path, "rev-list", "--max-count=1", f"--before={START + 3 * DAY}", "HEAD").strip()
    git(path, "tag", "-a", "-m", "before the migration", "pre-migration", old)
    git(path, "tag", "light", f"{old}~5")
    repo = _open(path)
    plan = retention.forget(repo, Policy(keep_within="7d", monthly=1), now=newest)
    assert set(plan.held) == {"refs/tags/pre-migration", "refs/tags/light"}
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    fsck(path)
    assert '"counter"' in git(path, "show", "pre-migration:state.json")
    assert '"counter"' in git(path, "show", "light:state.json")
    assert git(path, "rev-list", "--count", "pre-migration").strip() == "1"  # its past went, its state did not


def test_push_and_pull_keep_working_and_the_remote_keeps_everything(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    total = len(commit_ids(path))
    bare = tmp_path / "backup.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    repo = _open(path)
    remote.add_remote(repo, "origin", str(bare))
    remote.push(repo, "origin")
    retention.forget(repo, Policy(keep_within="7d", daily=7), now=newest)
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    # A new local commit is pushed without --force (plain git and gitstate), and the remote keeps all history.
    (path / "state.json").write_text('{"counter": "after forget"}\n')
    git(path, "commit", "-q", "-am", "after forget")
    remote.push(_open(path), "origin")
    assert git(bare, "rev-list", "--count", "main").strip() == str(total + 1)
    fsck(bare)
    # Someone else clones the backup, commits, pushes; the thinned store pulls it (fast-forward).
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    (other / "state.json").write_text('{"counter": "from elsewhere"}\n')
    git(other, "commit", "-q", "-am", "from elsewhere")
    git(other, "push", "-q", "origin", "main")
    git(path, "pull", "-q", "--ff-only", "origin", "main")
    assert "from elsewhere" in (path / "state.json").read_text()
    fsck(path)
    # Plain git's push works too, and a clone of the thinned store is a valid (shallow) repository.
    git(path, "push", "-q", str(bare), "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", f"file://{path}", str(clone))
    fsck(clone)
    assert git(clone, "rev-parse", "HEAD").strip() == git(path, "rev-parse", "HEAD").strip()
    # A dropped point can be read again with an explicit fetch from the remote that holds it.
    git(path, "fetch", "-q", "--unshallow", str(bare), "main")
    assert git(path, "rev-list", "--count", "HEAD").strip() == str(total + 2)


def test_unpushed_commits_are_refused_unless_asked(tmp_path: Path) -> None:
    path, newest = _history(tmp_path)
    bare = tmp_path / "backup.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    early = git(path, "rev-list", "--max-count=1", f"--before={START + 2 * DAY}", "HEAD").strip()
    git(path, "push", "-q", str(bare), f"{early}:refs/heads/main")
    repo = _open(path)
    remote.add_remote(repo, "origin", str(bare))
    git(path, "update-ref", "refs/remotes/origin/main", early)
    before = commit_ids(path)
    with pytest.raises(RetentionError, match=r"on no remote; push first"):
        retention.forget(repo, Policy(keep_within="7d", daily=3), now=newest)
    assert commit_ids(path) == before and not (path / ".git" / "shallow").exists()
    plan = retention.forget(repo, Policy(keep_within="7d", daily=3), include_unpushed=True, now=newest)
    assert plan.unpushed > 0 and "refs/remotes/origin/main" in plan.held
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    fsck(path)


def test_store_without_remote_can_forget(tmp_path: Path) -> None:
    path, newest = _history(tmp_path, days=12)
    plan = retention.forget(_open(path), Policy(keep_within="7d", daily=2), now=newest)
    assert plan.applied and plan.unpushed == 0 and len(plan.points) == 2


def test_merge_commit_across_the_edge_keeps_both_sides(tmp_path: Path) -> None:
    path, newest = _history(tmp_path, days=12)
    side_base = git(path, "rev-list", "--max-count=1", f"--before={START + 2 * DAY}", "HEAD").strip()
    git(path, "checkout", "-q", "-b", "side", side_base)
    (path / "side.json").write_text('{"side": 1}\n')
    git(path, "add", "side.json")
    git(path, "commit", "-q", "-m", "side", env={"GIT_AUTHOR_DATE": f"@{START + 2 * DAY} +0000"})
    git(path, "checkout", "-q", "main")
    git(path, "merge", "-q", "--no-edit", "side")  # a merge inside the window with a parent long before it
    head = git(path, "rev-parse", "HEAD").strip()
    window_before = commit_ids(path)
    repo = _open(path)
    retention.forget(repo, Policy(keep_within="7d", daily=2), now=newest + 600)
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    fsck(path)
    after = commit_ids(path)
    assert after[0] == head
    # Every commit of the window is still there, the merge's old parent too (its own past is cut).
    edge = newest + 600 - 7 * DAY
    times = {sha: t for sha, t in _times(path).items()}
    assert {s for s in window_before if times.get(s, 0) >= edge} <= set(after)
    assert '"side": 1' in git(path, "show", "HEAD:side.json")


# ===================================================================== crash safety
_FORGET_SCRIPT = """
import sys
from gitstate import retention
from gitstate.repo import Repository
repo = Repository.open(sys.argv[1], create=False)
print("ready", flush=True)
retention.forget(repo, retention.Policy(keep_within="7d", daily=20), now=float(sys.argv[2]))
print("done", flush=True)
"""


def test_kill9_during_forget_leaves_old_or_new_history(tmp_path: Path) -> None:
    import random

    path, newest = _history(tmp_path)
    window = first_window(path, newest)
    full = commit_ids(path)
    seed = tmp_path / "seed"
    subprocess.run(["cp", "-a", str(path), str(seed)], check=True)
    clean = tmp_path / "clean"
    subprocess.run(["cp", "-a", str(seed), str(clean)], check=True)
    expected_tip = retention.forget(_open(clean), POLICY20, now=newest).points[0].id
    rng = random.Random(7)
    for round_ in range(8):
        subprocess.run(["rm", "-rf", str(path)], check=True)
        subprocess.run(["cp", "-a", str(seed), str(path)], check=True)
        proc = subprocess.Popen(
            [PYTHON, "-c", _FORGET_SCRIPT, str(path), str(newest)],
            stdout=subprocess.PIPE,
            env={**GIT_ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        # Kill at a different moment of the run each round (not a wait: the moment is the point of the test).
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        fsck(path)
        ids = commit_ids(path)
        assert ids in (full, window), f"round {round_}: {len(ids)} commits"
        # A rerun finishes the job, with the same kept points as a run that was never interrupted.
        retention.forget(_open(path), POLICY20, now=newest)
        assert commit_ids(path) == window
        assert git(path, "rev-parse", KEPT_REF).strip() == expected_tip
        fsck(path)


POLICY20 = Policy(keep_within="7d", daily=20)


# ===================================================================== the budget
def test_budget_report_growth_and_warning(tmp_path: Path) -> None:
    path, _ = _history(tmp_path, days=2)
    repo = _open(path)
    size = repo.disk_usage()
    now = time.time()
    none = retention.budget_report(repo, None, now=now)
    assert none.budget is None and none.growth_per_day is None and none.warning is None
    assert none.line().startswith("history ")
    # Samples over the last ten days growing by ~1 MB a day.
    log = repo.git_dir / "gitstate" / retention.SIZE_LOG
    log.parent.mkdir(exist_ok=True)
    log.write_text("".join(f"[{now - (10 - d) * DAY}, {size - (10 - d) * 1_000_000}]\n" for d in range(10)))
    with log.open("a") as f:
        f.write("garbage\n")
    report = retention.budget_report(repo, Policy(daily=1, budget_mb=(size + 3_000_000) / 1e6), now=now)
    assert report.growth_per_day == pytest.approx(1_000_000, rel=0.05)
    assert report.days_left == pytest.approx(3, rel=0.1)
    assert report.warning and "reaches its budget" in report.warning and "3.0 days" in report.warning
    assert "MB/day" in report.line() and "days left" in report.line()
    over = retention.budget_report(repo, Policy(daily=1, budget_mb=size / 2e6), now=now)
    assert over.days_left == 0 and over.warning and "over its budget" in over.warning
    recorded = retention.record_size(repo, now=now + 60)
    assert recorded > 0 and log.read_text().splitlines()[-1] == f"[{round(now + 60, 1)},{recorded}]"


def test_a_skewed_clock_in_the_window_never_cuts_it(tmp_path: Path) -> None:
    """A commit made on a machine whose clock was a month behind, in the middle of recent history: everything
    newer than the window edge stays, the skewed commit too."""
    path, newest = _history(tmp_path, days=12)
    (path / "state.json").write_text('{"counter": "skewed"}\n')
    git(
        path,
        "commit",
        "-q",
        "-am",
        "from a machine with a wrong clock",
        env={"GIT_AUTHOR_DATE": f"@{START - 30 * DAY} +0000", "GIT_COMMITTER_DATE": f"@{START - 30 * DAY} +0000"},
    )
    for i in range(3):
        (path / "state.json").write_text(f'{{"counter": "after {i}"}}\n')
        stamp = f"@{newest + (i + 1) * HOUR} +0000"
        git(path, "commit", "-q", "-am", f"after {i}", env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
    before = commit_ids(path)
    times = _times(path)
    repo = _open(path)
    plan = retention.forget(repo, Policy(keep_within="7d", daily=1), now=newest + 3 * HOUR)
    after = commit_ids(path)
    edge = plan.window_edge
    assert {s for s in before if times[s] >= edge} <= set(after)
    assert len(after) == plan.window and plan.dropped > 0
    fsck(path)


class _Killed(BaseException):
    """Stands for the process dying at a chosen step (BaseException: nothing in forget may catch it)."""


@pytest.mark.parametrize("step", ["_write_shallow", "_prune_reflogs"])
def test_a_run_stopped_between_steps_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path, newest = _history(tmp_path, days=20)
    clean = tmp_path / "clean"
    subprocess.run(["cp", "-a", str(path), str(clean)], check=True)
    expected = retention.forget(_open(clean), POLICY20, now=newest)
    real = getattr(retention, step)

    def die(*args: object, **kwargs: object) -> None:
        raise _Killed

    monkeypatch.setattr(retention, step, die)
    with pytest.raises(_Killed):
        retention.forget(_open(path), POLICY20, now=newest)
    fsck(path)
    monkeypatch.setattr(retention, step, real)
    retention.forget(_open(path), POLICY20, now=newest)
    assert git(path, "rev-parse", KEPT_REF).strip() == expected.points[0].id
    assert commit_ids(path) == commit_ids(clean)
    git(path, "gc", "-q", "--prune=now")
    fsck(path)
    assert (
        git(path, "reflog", "show", "--format=%H", "main").split()
        == git(clean, "reflog", "show", "--format=%H", "main").split()
    )


def test_gitstate_sync_merges_key_by_key_across_the_cut(tmp_path: Path) -> None:
    """After forget, the store and another machine both commit; gitstate's own sync merges them key by key (the
    merge base lies in the window) and pushes the merge without force; the remote keeps the whole history."""
    import gitstate

    path, _ = _history(tmp_path)
    total = len(commit_ids(path))
    bare = tmp_path / "backup.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    with gitstate.open(path, durability="immediate") as store:
        store.remote_add("origin", str(bare))
        store.push("origin")
        plan = store.forget(keep_within="7d", daily=7)
        assert plan.applied and plan.dropped > 0
    fsck(path)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    with gitstate.open(other, durability="immediate") as theirs:
        theirs.set("state.json", "mode", "from-elsewhere")
        theirs.push("origin")
    with gitstate.open(path, durability="immediate") as store:
        store.set("state.json", "counter", "local")
        store.sync("origin")
        assert store.get("state.json", "mode") == "from-elsewhere"
        assert store.get("state.json", "counter") == "local"
        head = store.head
    fsck(path)
    assert git(bare, "rev-parse", "main").strip() == head
    assert int(git(bare, "rev-list", "--count", "main").strip()) == total + 3  # theirs, ours, the merge
    fsck(bare)
    assert (path / ".git" / "shallow").exists()


def test_gitstate_clone_of_a_thinned_store(tmp_path: Path) -> None:
    import gitstate

    path, newest = _history(tmp_path)
    repo = _open(path)
    retention.forget(repo, Policy(keep_within="7d", daily=7), now=newest)
    gc.collect(repo, prune_grace_s=0)  # the dropped history is gone: the clone can only be shallow
    repo.close()
    with gitstate.clone(str(path), tmp_path / "copy", durability="manual") as copy:
        assert copy.get("state.json") == json_of(path / "state.json")
        assert len(copy.log(limit=5)) == 5
    fsck(tmp_path / "copy")
    assert git(tmp_path / "copy", "rev-parse", "HEAD") == git(path, "rev-parse", "HEAD")
    assert git(tmp_path / "copy", "rev-parse", "--is-shallow-repository").strip() == "true"


def json_of(p: Path) -> object:
    import json

    return json.loads(p.read_text())
