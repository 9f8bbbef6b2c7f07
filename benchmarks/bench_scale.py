"""Scale (issue 14): history commands at 100,000 commits against the same at 1,000, and against git.

Histories are made by plain git (``git fast-import``, explicit times, one commit a minute changing
``state.json``; gitstate builds its history index on first use, untimed). One run, interleaved round by round:

* ``log -n 20``, ``log state.json --key mode -n 20``, ``show HEAD``, ``status`` at 100k vs the same at 1k:
  wall-time ratio (target 1.3x) and peak RSS ratio (target 1.5x);
* ``gitstate log`` of the whole 100k history vs ``git log --oneline`` (target 1.2x);
* peak RSS of the whole ``log`` and ``log --json`` (bounded by what is printed: next to ``git log --oneline``
  and to ``log -n 20``);
* ``status`` on the small store vs ``gitstate --version`` (target 1.5x);
* library ``diff`` and ``restore`` between revisions 90k apart vs ``git diff`` and
  ``git checkout REV -- . && git commit`` (target 3x).

The CLI is the regular install the README's quickstart makes (see ``_common.installed_cli``).

Usage: ``python benchmarks/bench_scale.py [--quick] [--repeat N]`` (``--quick``: 10k instead of 100k, and
diff/restore 9k apart).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import installed_cli, parse_args, print_table  # noqa: E402
from fastimport import build_history  # noqa: E402
from helpers import GIT_ENV  # noqa: E402

import gitstate  # noqa: E402

__all__ = ["main"]

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def _fixture(count: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"gitstate-bench-scale-v1-{count}"
    if not (path / ".ready").exists():
        shutil.rmtree(path, ignore_errors=True)
        build_history(path, count, start=START, step_s=60)
        (path / ".ready").write_text("ok\n")
    return path


def _run_rss(argv: Sequence[str], cwd: Path) -> tuple[float, int]:
    """Wall time and peak RSS (KB) of one run. Linux counts a forked child's peak from the parent's size at the
    fork, so this process must stay small (no captured output of big commands) for the figure to be the command's."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec with stdout to /dev/null (a pipe read by nobody would block on big output)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(cwd)
        try:
            os.execvpe(argv[0], list(argv), GIT_ENV)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss


def _measure(commands: dict[str, tuple[list[str], Path]], repeat: int) -> dict[str, tuple[list[float], int]]:
    out: dict[str, tuple[list[float], int]] = {name: ([], 0) for name in commands}
    for i in range(repeat + 1):
        for name, (argv, cwd) in commands.items():
            elapsed, rss = _run_rss(argv, cwd)
            times, peak = out[name]
            if i:  # the first round warms caches
                times.append(elapsed)
            out[name] = (times, max(peak, rss))
    return out


def _ms(v: float) -> str:
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def main() -> None:
    """Build (or reuse) the fixtures, time the commands interleaved, print the tables."""
    args = parse_args(__doc__.splitlines()[0])
    big_n = 10_000 if args.quick else 100_000
    small_n = 1_000
    small, big = _fixture(small_n), _fixture(big_n)
    cli, _, how = installed_cli()
    for path in (small, big):  # build the history index (made by plain git: indexed on first use), untimed
        subprocess.run([*cli, "-C", str(path), "log", "-n", "1"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "-C", str(path), "log"], check=True, stdout=subprocess.DEVNULL)
    # The first `log --json` of a history made by plain git computes every commit's keys (once): untimed. Output
    # goes to /dev/null, never into this process: a forked child's peak RSS starts at its parent's (see _run_rss).
    subprocess.run([*cli, "-C", str(big), "--no-pager", "log", "--json"], check=True, stdout=subprocess.DEVNULL)
    cases = {
        "log -n 20": ["log", "-n", "20"],
        "log state.json --key mode -n 20": ["log", "state.json", "--key", "mode", "-n", "20"],
        "show HEAD": ["show", "HEAD"],
        "status": ["status"],
    }
    commands: dict[str, tuple[list[str], Path]] = {}
    for name, argv in cases.items():
        commands[f"{name} @1k"] = ([*cli, "-C", str(small), *argv], small)
        commands[f"{name} @{big_n // 1000}k"] = ([*cli, "-C", str(big), *argv], big)
    commands["gitstate log (all)"] = ([*cli, "-C", str(big), "log"], big)
    commands["gitstate log --json (all)"] = ([*cli, "-C", str(big), "--no-pager", "log", "--json"], big)
    commands["git log --oneline (all)"] = (["git", "log", "--oneline"], big)
    commands["gitstate --version"] = ([*cli, "--version"], small)
    results = _measure(commands, args.repeat)
    med = {name: statistics.median(t) for name, (t, _) in results.items()}
    rss = {name: peak for name, (_, peak) in results.items()}
    print(f"CLI: {how}; {args.repeat} interleaved rounds; history made by git fast-import")
    print()
    rows = []
    for name in cases:
        a, b = f"{name} @1k", f"{name} @{big_n // 1000}k"
        rows.append(
            [
                name,
                _ms(med[a]),
                _ms(med[b]),
                f"{med[b] / med[a]:.2f}x",
                f"{rss[a] / 1024:.0f} MB",
                f"{rss[b] / 1024:.0f} MB",
                f"{rss[b] / rss[a]:.2f}x",
            ]
        )
    print_table(
        [
            "command",
            "1k commits",
            f"{big_n // 1000}k commits",
            "time ratio (target 1.3x)",
            "RSS 1k",
            "RSS big",
            "RSS ratio (target 1.5x)",
        ],
        rows,
    )
    print()
    g, o = med["gitstate log (all)"], med["git log --oneline (all)"]
    s, v = med["status @1k"], med["gitstate --version"]
    print_table(
        ["comparison", "gitstate", "peer", "ratio", "target"],
        [
            [f"whole log, {big_n:,} commits", _ms(g), f"git log --oneline {_ms(o)}", f"{g / o:.2f}x", "1.2x"],
            ["status, small store", _ms(s), f"gitstate --version {_ms(v)}", f"{s / v:.2f}x", "1.5x"],
        ],
    )
    print()
    mb = {name: f"{peak / 1024:.0f} MB" for name, peak in rss.items()}
    n20 = f"log -n 20 @{big_n // 1000}k"
    print_table(
        [f"peak RSS, whole history of {big_n:,} commits", "gitstate", "git log --oneline", f"gitstate {n20}"],
        [
            ["gitstate log", mb["gitstate log (all)"], mb["git log --oneline (all)"], mb[n20]],
            ["gitstate log --json", mb["gitstate log --json (all)"], mb["git log --oneline (all)"], mb[n20]],
        ],
    )
    print()
    _far_apart(big, big_n, args.repeat)


def _far_apart(path: Path, count: int, repeat: int) -> None:
    """Library diff/restore between revisions ``0.9 * count`` apart, against git on a copy."""
    back = count * 9 // 10
    work = Path(tempfile.mkdtemp(prefix="gitstate-bench-scale-restore-"))
    ours_dir, git_dir = work / "ours", work / "git"
    subprocess.run(["cp", "-a", str(path), str(ours_dir)], check=True)
    subprocess.run(["cp", "-a", str(path), str(git_dir)], check=True)
    rev = subprocess.run(
        ["git", "-C", str(git_dir), "rev-parse", f"HEAD~{back}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    diff_ours, diff_git, restore_ours, restore_git = [], [], [], []
    with gitstate.open(ours_dir, durability="manual", handle_signals=False) as store:
        store.diff(rev, "HEAD")  # warm (the index)
        for i in range(repeat):
            t0 = time.perf_counter()
            store.diff(rev, "HEAD")
            diff_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["git", "-C", str(git_dir), "diff", rev, "HEAD"], check=True, capture_output=True)
            diff_git.append(time.perf_counter() - t0)
            target = rev if i % 2 == 0 else f"HEAD~{1}"
            t0 = time.perf_counter()
            store.restore(target)
            restore_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["git", "-C", str(git_dir), "checkout", target, "--", "."], check=True, capture_output=True)
            subprocess.run(
                ["git", "-C", str(git_dir), "commit", "-q", "--allow-empty", "-m", "restore"],
                check=True,
                capture_output=True,
                env=GIT_ENV,
            )
            restore_git.append(time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)
    d, dg = statistics.median(diff_ours), statistics.median(diff_git)
    r, rg = statistics.median(restore_ours), statistics.median(restore_git)
    print_table(
        ["library call", "gitstate", "git", "ratio (target 3x)"],
        [
            [f"diff HEAD~{back:,} HEAD", _ms(d), _ms(dg), f"{d / dg:.2f}x"],
            [f"restore HEAD~{back:,} (fsync on)", _ms(r), _ms(rg), f"{r / rg:.2f}x"],
        ],
    )


if __name__ == "__main__":
    main()
