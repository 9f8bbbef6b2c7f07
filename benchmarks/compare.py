"""Before/after comparison of benchmark figures: one script (or several) run against two source trees.

What belongs here: running the benchmark scripts of this directory against two checkouts of gitstate, round by
round, parsing the Markdown tables they print, and judging each figure. What does not: the measurements
themselves (each ``bench_*.py`` owns its own).

Every run uses the *same* copy of the scripts (this directory's, so a figure means the same thing on both
sides); each tree gets a staging directory that links its files and holds a copy of the scripts, so a script's
``Path(__file__).parent.parent`` (its ``sys.path`` entry, ``installed_cli()``'s source) is that tree. Each tree
runs with its own venv's python (``DIR/.venv/bin/python`` unless told) and ``PYTHONPATH`` unset. Rounds
alternate ABBA (before, after, after, before, ...) so a slow spell or a warm cache lands on both sides alike.

A figure is one numeric table cell, named by the table's heading, the row's first cell and the column header.
Kinds, in the order to judge by:

* ``ratio``: a ratio to a baseline measured in the same run (``1.23x``); it survives a noisy machine best.
* ``absolute``: a time, size or throughput of gitstate's own; worth judging only with the baselines steady.
* ``baseline``: a figure of something else (git, plain Python, the seed way), the same code on both sides: its
  own after/before ratio shows how much the machine drifted between rounds.

Usage: ``python benchmarks/compare.py --before /tmp/before --after . [--rounds 3] [--quick] [SCRIPT ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Figure", "compare", "main", "parse_figures"]

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_size.py",
    "bench_history.py",
    "bench_cli.py",
    "bench_core.py",
    "bench_remote.py",
    "bench_lock.py",
    "bench_delta.py",
    "bench_ancestry.py",
]
THRESHOLD = 0.10

_NUMBER = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)\s*(x|ms|us|µs|s|GB|MB|KB|kB|B|bytes|%|/s)?(?![\w.])")
_SCALE = {"s": ("ms", 1000.0), "us": ("ms", 0.001), "µs": ("ms", 0.001), "ms": ("ms", 1.0)}
_SCALE |= {"GB": ("B", 1e9), "MB": ("B", 1e6), "KB": ("B", 1e3), "kB": ("B", 1e3), "bytes": ("B", 1.0)}
_SKIP_HEADERS = {"n", "met", "target", "files in store", "docs", "case"}
_BASELINE_LABELS = ("`git ", "git ", "`python -c pass`", "startup floor", "baseline ")
_BASELINE_HEADERS = ("baseline", "seed way", "git add", "core.fsync", "old")


@dataclass
class Figure:
    """One parsed figure: ``value`` in ``unit`` (times in ms, sizes in bytes), its ``kind`` and ``higher_better``
    (None when the direction is unknown: reported, never flagged)."""

    name: str
    value: float
    unit: str
    kind: str
    higher_better: bool | None


@dataclass
class _Series:
    """One figure's values over the rounds of one tree."""

    figure: Figure
    values: list[float] = field(default_factory=list)


def _clean_heading(line: str) -> str:
    text = re.sub(r"\([^)]*\)?", "", line.strip("#_ \n")).strip(" :)")
    return text[:70]


def _cell_figure(heading: str, label: str, header: str, cell: str) -> Figure | None:
    if header.strip().lower() in _SKIP_HEADERS or cell.strip().lower().startswith(("target", "<", "yes", "no")):
        return None
    match = _NUMBER.search(cell)
    if match is None:
        return None
    value = float(match.group(1).replace(",", ""))
    unit = match.group(2) or ""
    h = header.lower()
    if not unit:
        for word, u in (("(us)", "us"), ("ms", "ms"), ("mb", "MB"), ("kb", "KB"), ("bytes", "bytes"), ("/s", "/s")):
            if word in h:
                unit = u
                break
    if unit in _SCALE:
        unit, factor = _SCALE[unit]
        value *= factor
    # A row of something else (git, plain Python, the seed way): the same code on both sides, whatever its unit.
    other = label.strip().lower().startswith(_BASELINE_LABELS) or "(reference)" in label
    if unit == "x":
        kind = "baseline" if other else "ratio"
        higher: bool | None = any(w in h for w in ("speed-up", "speedup", "faster"))
        if "1.00x" in cell and not any(w in h for w in ("speed-up", "speedup")):
            kind = "baseline"  # the baseline row itself
    else:
        baseline = (
            other
            or any(w in h for w in _BASELINE_HEADERS)
            or cell.strip().startswith("`")  # "`git log --oneline` 12 ms": a baseline named in its cell
        )
        kind = "baseline" if baseline else "absolute"
        if unit in ("ms", "B"):
            higher = False
        elif unit == "/s" or any(w in h for w in ("throughput", "per second", "/s", "commits/s", "ops")):
            higher = True
        else:
            higher = None
    # Parentheticals go: a row label such as "`git gc` on a copy (1.4 s)" carries a figure that varies by run.
    row = re.sub(r"\s*\([^)]*\)", "", label).strip()
    name = f"{heading} | {row} | {header.strip()}"
    return Figure(name, value, unit, kind, higher)


def parse_figures(text: str) -> list[Figure]:
    """The figures of every Markdown table in ``text``: one per numeric cell outside the first column (the row
    label), the direction of good taken from the unit and the column header."""
    figures: list[Figure] = []
    heading = ""
    header: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            header = None
            if line and not line.startswith(("-", "```", "{", "}")):
                heading = _clean_heading(line)
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        for col, cell in enumerate(cells[1:], start=1):
            fig = _cell_figure(heading, cells[0], header[col] if col < len(header) else "", cell)
            if fig is not None:
                figures.append(fig)
    # Identical names (a row label repeated) get a suffix so none is lost.
    seen: dict[str, int] = {}
    for fig in figures:
        n = seen.get(fig.name, 0)
        seen[fig.name] = n + 1
        if n:
            fig.name += f" #{n + 1}"
    return figures


def _stage(tree: Path, tag: str, root: Path) -> Path:
    """A directory that is ``tree`` (top-level entries linked) but with this directory's scripts."""
    stage = root / tag
    stage.mkdir(parents=True)
    for entry in tree.iterdir():
        if entry.name in ("benchmarks", ".venv", "build", ".git") or entry.name.endswith(".egg-info"):
            continue
        (stage / entry.name).symlink_to(entry.resolve())
    shutil.copytree(HERE, stage / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    return stage


def _run(python: Path, stage: Path, script: str, args: list[str], timeout: float) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    if (HERE.parent / ".git").exists():  # a staged tree is no repository: bench_lock.py takes its baseline here
        env.setdefault("GITSTATE_BENCH_REPO", str(HERE.parent))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(stage / "benchmarks" / script), *args],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 and parse_figures(proc.stdout):
        # bench_size.py exits 1 when a target is missed: its figures still count (and are what we compare).
        print(f"  {script} on {stage.name}: exit {proc.returncode} (a target missed), figures kept", file=sys.stderr)
    elif proc.returncode != 0:
        raise RuntimeError(f"{script} on {stage.name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout, elapsed


def _judge(before: list[float], after: list[float], higher: bool | None) -> tuple[float, str]:
    b, a = statistics.median(before), statistics.median(after)
    if b == 0:
        return float("nan"), ""
    ratio = a / b
    if higher is None:
        return ratio, "?"
    worse = ratio < 1 / (1 + THRESHOLD) if higher else ratio > 1 + THRESHOLD
    better = ratio > 1 + THRESHOLD if higher else ratio < 1 / (1 + THRESHOLD)
    return ratio, "WORSE >10%" if worse else ("better" if better else "")


def _fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:.1f} ms"
    return f"{value:.2f}{unit}" if unit == "x" else f"{value:g} {unit}".strip()


def compare(
    script: str,
    trees: dict[str, tuple[Path, Path]],
    *,
    rounds: int,
    args: list[str],
    timeout: float,
    log: bool = True,
) -> dict[str, object]:
    """Run ``script`` ``rounds`` times on each tree (``{"before": (stage, python), "after": ...}``), ABBA order,
    and return per figure the values of both sides, the ratio after/before and the verdict."""
    series: dict[str, dict[str, _Series]] = {"before": {}, "after": {}}
    walls: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(rounds):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for side in order:
            stage, python = trees[side]
            out, elapsed = _run(python, stage, script, args, timeout)
            walls[side].append(elapsed)
            if log:
                print(f"  {script} round {i + 1}/{rounds} {side}: {elapsed:.0f} s", file=sys.stderr)
            for fig in parse_figures(out):
                s = series[side].setdefault(fig.name, _Series(fig))
                s.values.append(fig.value)
    rows = []
    for name, b in series["before"].items():
        a = series["after"].get(name)
        if a is None or len(a.values) != len(b.values) or b.figure.unit != a.figure.unit:
            rows.append({"figure": name, "kind": b.figure.kind, "unmatched": True, "before": b.values})
            continue
        ratio, verdict = _judge(b.values, a.values, b.figure.higher_better)
        rows.append(
            {
                "figure": name,
                "kind": b.figure.kind,
                "unit": b.figure.unit,
                "higher_better": b.figure.higher_better,
                "before": b.values,
                "after": a.values,
                "ratio": ratio,
                "verdict": verdict,
            }
        )
    for name, a in series["after"].items():
        if name not in series["before"]:
            rows.append({"figure": name, "kind": a.figure.kind, "unmatched": True, "after": a.values})
    return {"script": script, "args": args, "rounds": rounds, "walls": walls, "figures": rows}


def print_report(result: dict[str, object]) -> None:
    """Print one script's comparison as a Markdown table, the same-run ratios first."""
    rows = result["figures"]
    assert isinstance(rows, list)
    order = {"ratio": 0, "absolute": 1, "baseline": 2}
    args = " ".join(result["args"]) if isinstance(result["args"], list) else ""
    print(f"\n### {result['script']} {args} ({result['rounds']} rounds each side, medians)\n")
    print("| figure | kind | better | before | after | after/before | verdict |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: order.get(r["kind"], 3)):
        if r.get("unmatched"):
            print(f"| {r['figure']} | {r['kind']} | | (only on one side) | | | |")
            continue
        better = {True: "higher", False: "lower", None: "?"}[r["higher_better"]]
        b, a = statistics.median(r["before"]), statistics.median(r["after"])
        print(
            f"| {r['figure']} | {r['kind']} | {better} | {_fmt(b, r['unit'])} | {_fmt(a, r['unit'])} "
            f"| {r['ratio']:.3f} | {r['verdict']} |"
        )
    print(
        "\nJudge by the `ratio` rows (each a ratio to a baseline measured in the same run); `baseline` rows are "
        "the same code on both sides, their after/before shows the machine's drift; `absolute` rows count only "
        "where the baselines held steady."
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("scripts", nargs="*", help=f"scripts to run (default: {' '.join(SCRIPTS)})")
    ap.add_argument("--before", type=Path, required=True, help="the source tree before")
    ap.add_argument("--after", type=Path, required=True, help="the source tree after")
    ap.add_argument("--python-before", type=Path, default=None, help="default BEFORE/.venv/bin/python")
    ap.add_argument("--python-after", type=Path, default=None, help="default AFTER/.venv/bin/python")
    ap.add_argument("--rounds", type=int, default=3, help="runs per tree, alternating (default 3)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to the scripts that take it")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--json", type=Path, default=None, help="also write every value to this file")
    args = ap.parse_args(argv)
    scripts = args.scripts or SCRIPTS
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="gitstate-compare-"))
    results = []
    try:
        trees = {}
        for side, tree, py in (("before", args.before, args.python_before), ("after", args.after, args.python_after)):
            tree = tree.resolve()
            python = py or tree / ".venv" / "bin" / "python"
            stage = _stage(tree, side, root)
            # Compile the tree's bytecode once, untimed, so the first round is not the only one paying for it.
            subprocess.run([str(python), "-m", "compileall", "-q", str(tree / "gitstate")], check=False)
            trees[side] = (stage, python)
        for script in scripts:
            text = (HERE / script).read_text()
            script_args = ["--quick"] if args.quick and "--quick" in text else []
            result = compare(script, trees, rounds=args.rounds, args=script_args, timeout=args.timeout)
            results.append(result)
            print_report(result)
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()
    print(
        f"\nload average: start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, end {load1[0]:.2f} {load1[1]:.2f} "
        f"{load1[2]:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"load": [load0, load1], "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
