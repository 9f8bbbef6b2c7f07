"""The store lock's fairness and get()'s cost, this checkout side by side with a baseline revision, in one run.

Four writer processes (tests/workers/writer.py ``race``) flush back to back for a few seconds on one store; each
reports its commits and the time each flush waited for the store lock. The baseline is the same worker run
against another revision of gitstate (exported with ``git archive`` to a temporary directory), interleaved round
by round. get() is timed in-process: with nothing changed, and right after a second handle committed.

Run: ``.venv/bin/python benchmarks/bench_lock.py [--quick] [--baseline REV]``. The default baseline, 9c6ff8f,
is the last revision with the plain (unfair) ``flock``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, print_table

logger = logging.getLogger("gitstate.benchmarks.lock")

ROOT = Path(__file__).resolve().parent.parent
WRITER = ROOT / "tests" / "workers" / "writer.py"

_GET_SCRIPT = r"""
import json, statistics, sys, tempfile, time
import gitstate
root = tempfile.mkdtemp()
a = gitstate.open(root, durability="manual", fsync=False, handle_signals=False)
b = gitstate.open(root, durability="manual", fsync=False, handle_signals=False)
a.set("state.json", "a", 1); a.flush(); a.get("state.json", "a")
quiet = []
for _ in range(int(sys.argv[1])):
    t0 = time.perf_counter(); a.get("state.json", "a"); quiet.append(time.perf_counter() - t0)
moved = []
for i in range(int(sys.argv[2])):
    b.set("other.json", "v", i); b.flush()
    t0 = time.perf_counter(); a.get("state.json", "a"); moved.append(time.perf_counter() - t0)
a.close(); b.close()
print(json.dumps({"quiet_us": statistics.median(quiet) * 1e6, "moved_us": statistics.median(moved) * 1e6}))
"""


def _export(rev: str, dest: Path) -> None:
    """The files of ``rev`` in ``dest`` (``git archive``: the repository's worktree list is left alone). The
    repository is this checkout's, or under benchmarks/compare.py (whose staged trees are not repositories) the
    one named by ``GITSTATE_BENCH_REPO``."""
    repo = os.environ.get("GITSTATE_BENCH_REPO") or str(ROOT)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", repo, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _env(source: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
    env.pop("GITSTATE_DIR", None)
    return env


def _race(source: Path, n_proc: int, seconds: float) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="bench-lock-")) / "s"
    subprocess.run([sys.executable, str(WRITER), "set", str(root)], env=_env(source), check=True, capture_output=True)
    argv = [sys.executable, str(WRITER), "race", str(root), "--seconds", str(seconds)]
    procs = [
        subprocess.Popen(
            [*argv, "--worker", str(w)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(source),
        )
        for w in range(n_proc)
    ]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        assert line == "ready", (line, p.stderr.read() if p.stderr else "")
    for p in procs:  # all start together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120 + seconds)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (< 30 s)")
    parser.add_argument("--baseline", default="9c6ff8f", help="the revision to compare with (default 9c6ff8f)")
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    rounds, seconds = (1, 2.0) if args.quick else (3, 3.0)

    base_dir = Path(tempfile.mkdtemp(prefix="bench-lock-base-")) / "src"
    _export(args.baseline, base_dir)
    sources = {"this checkout": ROOT, f"baseline {args.baseline}": base_dir}
    try:
        per: dict[str, dict[str, list[Any]]] = {n: {"commits": [], "waits": [], "spread": []} for n in sources}
        for _ in range(rounds):  # interleaved: a slow spell of the machine hits both
            for name, src in sources.items():
                reports = _race(src, args.processes, seconds)
                commits = sorted(r["commits"] for r in reports)
                per[name]["commits"].append(commits)
                per[name]["waits"] += [w for r in reports for w in r["waits_ms"]]
                per[name]["spread"].append(commits[0] / max(1.0, median(commits)))
        rows = []
        for name, d in per.items():
            rows.append(
                [
                    name,
                    "; ".join("/".join(str(c) for c in cs) for cs in d["commits"]),
                    f"{min(d['spread']):.2f}",
                    f"{median(d['waits']):.2f}",
                    f"{_pct(d['waits'], 0.99):.1f}",
                    f"{max(d['waits']):.0f}",
                ]
            )
        print(f"\n{args.processes} writer processes, {seconds:.0f} s per round, {rounds} round(s), fsync off")
        print_table(
            [
                "code",
                "commits per process (each round)",
                "min / median (worst round)",
                "wait p50 ms",
                "p99 ms",
                "max ms",
            ],
            rows,
        )
        get_rows = []
        n_quiet, n_moved = ("5000", "100") if args.quick else ("20000", "300")
        for name, src in sources.items():
            r = subprocess.run(
                [sys.executable, "-c", _GET_SCRIPT, n_quiet, n_moved],
                env=_env(src),
                check=True,
                capture_output=True,
                text=True,
            )
            got = json.loads(r.stdout.strip().splitlines()[-1])
            get_rows.append([name, f"{got['quiet_us']:.1f}", f"{got['moved_us']:.0f}"])
        print("\nget() median, in-process")
        print_table(["code", "nothing changed (us)", "after another handle committed (us)"], get_rows)
    finally:
        shutil.rmtree(base_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
