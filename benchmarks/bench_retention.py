"""Retention (issue 15): thinning a month of frequent flushes, and what plain ``git gc`` reaches without it.

One run, side by side, on one history built with ``git fast-import`` (explicit commit times): 30 days with one
flush every 10 seconds (259,200 commits; ``--quick``: 3 days, 25,920 commits), each changing the program's
state document, a task document every 50 flushes.

* **gitstate forget** with a typical policy (``--keep-within 7d --keep-hourly 48 --keep-daily 30``; ``--quick``:
  1d, 12, 2), then
  ``gitstate gc`` (no git binary): ``.git`` size before and after, time of each step.
* **plain git gc** (``git gc --aggressive --prune=now``) on an unthinned copy: the size git reaches while
  keeping every commit.

Usage: ``python benchmarks/bench_retention.py [--quick] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fastimport import build_history  # noqa: E402  (tests/ on the path)
from helpers import GIT_ENV, git  # noqa: E402

from gitstate import gc, retention  # noqa: E402
from gitstate.repo import Repository  # noqa: E402

__all__ = ["main"]

POLICY = retention.Policy(keep_within="7d", hourly=48, daily=30)
QUICK_POLICY = retention.Policy(keep_within="1d", hourly=12, daily=2)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / ".git").rglob("*") if p.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    """Build the history, thin one copy with forget + gitstate gc, gc another with plain git; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 days instead of 30 (< 1 minute)")
    parser.add_argument("--keep", type=Path, help="build the fixtures here and keep them")
    args = parser.parse_args()
    days = 3 if args.quick else 30
    step = 10
    count = days * 86400 // step
    base = args.keep or Path(tempfile.mkdtemp(prefix="gitstate-bench-retention-"))
    base.mkdir(parents=True, exist_ok=True)
    start = 1_788_220_800  # 2026-09-01 00:00 UTC
    thinned, plain = base / "thinned", base / "plain"
    for p in (thinned, plain):
        shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    build_history(thinned, count, start=start, step_s=step)
    build_s = time.perf_counter() - t0
    subprocess.run(["cp", "-a", str(thinned), str(plain)], check=True)
    # Both copies start packed the same way gitstate keeps a store (one pack with deltas, no git binary).
    repo = Repository.open(thinned, create=False)
    gc.collect(repo, prune_grace_s=0, fsync=False)
    packed = _size(thinned)
    newest = start + (count - 1) * step
    t0 = time.perf_counter()
    policy = QUICK_POLICY if args.quick else POLICY
    plan = retention.forget(repo, policy, now=newest)
    forget_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gc.collect(repo, prune_grace_s=0, fsync=False)
    gc_s = time.perf_counter() - t0
    after = _size(thinned)
    repo.close()
    t0 = time.perf_counter()
    subprocess.run(["git", "-C", str(plain), "gc", "-q", "--aggressive", "--prune=now"], check=True, env=GIT_ENV)
    git_gc_s = time.perf_counter() - t0
    kept = len(plan.points)
    window = len(git(thinned, "rev-list", "HEAD").split())
    print(f"history: {days} days, one flush every {step} s: {count:,} commits (fast-import {build_s:.1f} s)")
    print(f"policy: {policy.describe()}")
    print()
    print("| step | .git size | time | commits kept |")
    print("|---|---|---|---|")
    print(f"| packed by gitstate gc (before forget) | {_mb(packed)} | | {count:,} |")
    print(
        f"| forget + gitstate gc | {_mb(after)} | {forget_s:.1f} s + {gc_s:.1f} s | "
        f"{window:,} in the window + {kept} kept points |"
    )
    print(f"| plain `git gc --aggressive` (no thinning) | {_mb(_size(plain))} | {git_gc_s:.1f} s | {count:,} |")
    print()
    print(f"thinned / plain git gc: {after / _size(plain):.2f}; dropped {plan.dropped:,} commits")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
