"""History stays readable across the cut that ``forget`` makes: walks stop at the shallow commits (as git's do),
and a moment before the cut reads the kept point that covers it (issue 15). Real git checks the result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastimport import build_history
from helpers import commit_ids, fsck, git

import gitstate
from gitstate import messages, retention
from gitstate.history import BeforeHistory

HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def thinned(tmp_path: Path) -> Path:
    """40 days of hourly commits ending an hour ago, thinned to 7 days plus 30 daily points, gc'd at once."""
    path = tmp_path / "store"
    now = int(time.time()) // HOUR * HOUR
    build_history(path, 40 * 24, start=now - 40 * DAY, step_s=HOUR)
    with gitstate.open(path, durability="manual") as store:
        plan = store.forget(keep_within="7d", daily=30)
        assert plan.applied and plan.dropped > 0
        store.gc()
    git(path, "-c", "gc.reflogExpire=now", "gc", "-q", "--prune=now")
    fsck(path)
    return path


def test_log_shows_the_window_then_the_kept_points(thinned: Path) -> None:
    window = commit_ids(thinned)
    with gitstate.open(thinned, durability="manual") as store:
        kept = [p.id for p in retention.kept_points(store.services.repo)]
        log = store.log()
        assert [c.id for c in log] == window + kept  # recent commits, then the kept points, oldest last
        assert all(c.subject.startswith("kept point ") for c in log[len(window) :])
        assert all(c.trailer(messages.KEPT_FROM_TRAILER) for c in log[len(window) :])
        assert store.log("state.json", "counter", limit=3)[0].id == log[0].id
        by_key = store.log("state.json", "counter")
        assert [c.id for c in by_key][-len(kept) :] == kept  # log --key reads across the cut too
        assert len(store.log(limit=len(window) + 2)) == len(window) + 2


def test_a_moment_before_the_cut_reads_the_kept_point(thinned: Path) -> None:
    with gitstate.open(thinned, durability="manual") as store:
        points = retention.kept_points(store.services.repo)
        assert store.resolve("20 days ago") in {p.id for p in points}
        point = next(p for p in points if p.id == store.resolve("20 days ago"))
        assert point.commit_time <= time.time() - 20 * DAY
        assert store.at("20 days ago").get("state.json") == store.at(point.id).get("state.json")
        changes = store.diff("20 days ago", "HEAD", "state.json")
        assert any(c.key == ("counter",) for c in changes)
        with pytest.raises(BeforeHistory, match=r"before the oldest point kept by 'gitstate forget'.*--unshallow"):
            store.resolve("60 days ago")
        before = store.head
        restored = store.restore("20 days ago", ["state.json"])
        assert restored.created and store.get("state.json") == store.at(point.id).get("state.json")
        assert store.undo().created and store.head != before
    fsck(thinned)


def test_the_cli_reads_across_the_cut(thinned: Path) -> None:
    from helpers import invoke

    r = invoke(["-C", str(thinned), "log", "--oneline"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) > len(commit_ids(thinned)) and "kept point" in lines[-1]
    r = invoke(["-C", str(thinned), "show", "20 days ago", "state.json"])
    assert r.exit_code == 0 and '"counter"' in r.output
    r = invoke(["-C", str(thinned), "diff", "20 days ago", "10 days ago", "--", "state.json"])
    assert r.exit_code == 0 and "counter" in r.output


def test_shallow_is_checked_once_per_lock_hold_and_again_after_a_write(tmp_path: Path) -> None:
    """A flush reads several commits with the lock held: ``.git/shallow`` is stat'd once for all of them, yet a
    cut written meanwhile (by this process, or between two holds by anyone) shows at the next read."""
    path = tmp_path / "store"
    with gitstate.open(path, durability="immediate", fsync=False) as store:
        for i in range(3):
            store.set("s.json", "n", i)
        repo = store.services.repo
        head = repo.head()
        assert head is not None
        parent = repo.commit_info(head).parents[0]
        shallow = repo.git_dir / "shallow"
        with repo.lock():
            assert repo.commit_info(parent).parents  # checked here: no shallow file yet
            shallow.write_text(parent + "\n")
            assert repo.commit_info(parent).parents  # same hold, file unseen: the once-per-hold promise
            repo.shallow_changed()
            assert repo.commit_info(parent).parents == ()  # told: the cut shows
        shallow.unlink()
        assert repo.commit_info(parent).parents  # outside the lock every read looks
        with repo.lock():
            assert repo.commit_info(parent).parents
        shallow.write_text(parent + "\n")
        with repo.lock():  # a new hold looks again
            assert repo.commit_info(parent).parents == ()
        shallow.unlink()
