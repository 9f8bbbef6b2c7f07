"""Shared benchmark helpers: timing loops, medians, running commands, Markdown tables.

Example:
    >>> median([3.0, 1.0, 2.0])
    2.0
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "cli_argv",
    "fmt_ms",
    "median",
    "parse_args",
    "print_table",
    "time_call",
    "time_command",
]

logger = logging.getLogger("gitstate.benchmarks")


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def time_call(
    fn: Callable[[], Any], *, repeat: int = 7, warmup: int = 1, setup: Callable[[], Any] | None = None
) -> list[float]:
    """Wall times (seconds) of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones; ``setup`` runs untimed
    before each call."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    out = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def time_command(
    argv: Sequence[str],
    *,
    repeat: int = 7,
    warmup: int = 1,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> list[float]:
    """Wall times (seconds) of running ``argv`` with stdout read through a pipe (as ``| less`` would)."""

    def run() -> None:
        proc = subprocess.run(list(argv), cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")

    return time_call(run, repeat=repeat, warmup=warmup)


def cli_argv() -> list[str]:
    """How to run the ``gitstate`` command: the installed entry point next to this interpreter, else via -c."""
    script = Path(sys.executable).parent / "gitstate"
    if script.exists():
        return [str(script)]
    found = shutil.which("gitstate")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from gitstate.cli import main; sys.exit(main())"]


def fmt_ms(seconds: float) -> str:
    """``12.3 ms``."""
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def parse_args(description: str) -> argparse.Namespace:
    """``--quick`` (a smaller run, under a minute) and ``--repeat N``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller and faster (< 60 s)")
    parser.add_argument("--repeat", type=int, default=0, help="timed runs per measurement (default 7, quick 5)")
    args = parser.parse_args()
    if not args.repeat:
        args.repeat = 5 if args.quick else 7
    return args
