"""Shared benchmark helpers: timing loops, medians, running commands, Markdown tables.

Example:
    >>> median([3.0, 1.0, 2.0])
    2.0
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "cli_argv",
    "fmt_ms",
    "installed_cli",
    "median",
    "parse_args",
    "print_table",
    "time_call",
    "time_command",
    "time_commands",
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


def time_commands(
    commands: dict[str, Sequence[str]],
    *,
    repeat: int = 7,
    warmup: int = 1,
    prepare: Mapping[str, Callable[[], None]] | None = None,
) -> dict[str, list[float]]:
    """Wall times (seconds) of several commands, interleaved: each round runs every command once, so a slow spell
    on a shared machine lands on all of them alike and their ratio holds. Stdout is read through a pipe.
    ``prepare``: a function per command name, run (untimed) before each of its runs."""

    cwd = tempfile.gettempdir()  # not the checkout: `python -c` would import gitstate from the current directory

    def run(argv: Sequence[str]) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(list(argv), capture_output=True, check=False, cwd=cwd)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
        return elapsed

    out: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + repeat):
        for name, argv in commands.items():
            if prepare and name in prepare:
                prepare[name]()
            elapsed = run(argv)
            if i >= warmup:
                out[name].append(elapsed)
    return out


def cli_argv() -> list[str]:
    """How to run the ``gitstate`` command: the installed entry point next to this interpreter, else via -m."""
    script = Path(sys.executable).parent / "gitstate"
    if script.exists():
        return [str(script)]
    found = shutil.which("gitstate")
    if found:
        return [found]
    return [sys.executable, "-m", "gitstate"]


def installed_cli() -> tuple[list[str], str, str]:
    """The ``gitstate`` command as ``pip install .`` (the README's quickstart) installs it: a regular install,
    its bytecode compiled by pip, in a venv of its own. A development checkout is usually an editable install,
    whose import hook adds ~15 ms to every start, and may run with ``PYTHONDONTWRITEBYTECODE`` set, which
    compiles every module on every start; start-up figures would then measure the checkout, not gitstate.

    The venv is built once per version of the sources (under the temp directory; ~15 s, pip may fetch the build
    backend) and takes its dependencies from this interpreter's ``site-packages``. Returns ``(argv, python,
    description)``; falls back to :func:`cli_argv` with a description saying so if the install fails.
    """
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for f in sorted([root / "pyproject.toml", *root.joinpath("gitstate").rglob("*.py")]):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    venv = Path(tempfile.gettempdir()) / f"gitstate-bench-install-{digest.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--no-deps", str(root)], check=True, capture_output=True
            )
            site = subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            # Dependencies (dulwich, click, ...) from this interpreter: a path line in a .pth file adds the
            # directory without processing its own .pth files, so an editable gitstate there stays out of it.
            deps = [p for p in sys.path if p.endswith("site-packages")]
            Path(site, "gitstate-bench-deps.pth").write_text("".join(f"{p}\n" for p in deps))
            (venv / ".ready").write_text("ok\n")
        except (subprocess.CalledProcessError, OSError) as e:
            detail = e.stderr.decode(errors="replace")[-300:] if isinstance(e, subprocess.CalledProcessError) else e
            print(f"installed_cli: cannot build {venv} ({detail}); timing this interpreter's gitstate", file=sys.stderr)
            return cli_argv(), sys.executable, "this interpreter's gitstate (the regular install failed)"
    return [str(venv / "bin" / "gitstate")], str(python), "a regular install (`pip install .`, bytecode compiled)"


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
