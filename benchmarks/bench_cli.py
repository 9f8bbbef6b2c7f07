"""CLI start-up benchmark: ``gitstate status`` on a small store, next to ``python -c pass`` in the same run.

Targets: ``gitstate status`` under 250 ms (median wall time, issue 3), and within 1.5x of ``gitstate --version``
(issue 14). ``status`` is timed twice: as it runs again and again, and right after a program moved HEAD (the
first ``status`` of a new commit reads its tree; the next one reads the cached listing). ``git status`` and
``gitstate --help`` are shown for reference, and ``python -c 'import gitstate.cli'`` shows how much of it is
import time.

Run: ``python benchmarks/bench_cli.py [--quick]``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_ms, installed_cli, median, parse_args, print_table, time_commands

import gitstate

__all__ = ["main", "make_small_store"]

logger = logging.getLogger("gitstate.benchmarks")

TARGET_S = 0.250
TARGET_VS_VERSION = 1.5


def move_head(path: Path) -> Callable[[], None]:
    """A program's write to the store at ``path`` (one key, one commit): what happens between two looks at a
    store an agent writes to."""
    counter = iter(range(1_000_000))

    def write() -> None:
        with gitstate.open(path, durability="manual", fsync=False, handle_signals=False) as store:
            store.set("state.json", "tick", next(counter))
            store.flush()

    return write


def make_small_store(path: Path) -> None:
    """Five documents, a dozen commits, one snapshot, one file edited by hand and not committed."""
    with gitstate.open(path, durability="manual", fsync=False, handle_signals=False) as store:
        for i in range(12):
            store.set("state.json", ("services", f"s{i % 4}"), i % 2 == 0)
            store.set(f"tasks/t{i % 3}.json", "status", ["todo", "doing", "done"][i % 3])
            store.flush()
        store.set("memory/current_work.yaml", "follow_ups", ["check coverage"])
        store.set("notes.md", None, "# notes\n")
        store.flush()
        store.snapshot("v1")
    (path / "notes.md").write_text("# notes\nedited by hand\n")


def main() -> None:
    args = parse_args(__doc__ or "")
    repeat = args.repeat * (2 if not args.quick else 1) + 1
    tmp = Path(tempfile.mkdtemp(prefix="gitstate-bench-cli-"))
    try:
        path = tmp / "store"
        make_small_store(path)
        gs, py, install = installed_cli()
        walls = time_commands(  # interleaved rounds: a slow spell of the machine hits every command alike
            {
                "status_moved": [*gs, "-C", str(path), "status"],  # first: the write before it moved HEAD
                "floor": [py, "-c", "pass"],
                "imports": [py, "-c", "import gitstate.cli"],
                "version": [*gs, "--version"],
                "status": [*gs, "-C", str(path), "status"],
                "status_json": [*gs, "-C", str(path), "status", "--json"],
                "help": [*gs, "--help"],
                "git_status": ["git", "-C", str(path), "status"],
            },
            repeat=repeat,
            prepare={"status_moved": move_head(path)},
        )
        floor, imports, version, status, moved, status_json, helptext, git_status = (
            walls[k]
            for k in ("floor", "imports", "version", "status", "status_moved", "status_json", "help", "git_status")
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = median(status)
    print(f"\n## bench_cli: `gitstate status` on a small store (median of {repeat} interleaved rounds; {install})\n")
    print_table(
        ["command", "median wall", "vs `python -c pass`", "target"],
        [
            ["`python -c pass`", fmt_ms(median(floor)), "1.00x", ""],
            [
                "`python -c 'import gitstate.cli'`",
                fmt_ms(median(imports)),
                f"{median(imports) / median(floor):.2f}x",
                "",
            ],
            ["`gitstate --help`", fmt_ms(median(helptext)), f"{median(helptext) / median(floor):.2f}x", ""],
            ["`gitstate --version`", fmt_ms(median(version)), f"{median(version) / median(floor):.2f}x", ""],
            [
                "`gitstate status`",
                fmt_ms(s),
                f"{s / median(floor):.2f}x",
                f"< {TARGET_S * 1000:.0f} ms: {'met' if s < TARGET_S else 'NOT met'}",
            ],
            [
                "`gitstate status`, right after a program moved HEAD",
                fmt_ms(median(moved)),
                f"{median(moved) / median(floor):.2f}x",
                "",
            ],
            [
                "`gitstate status --json`",
                fmt_ms(median(status_json)),
                f"{median(status_json) / median(floor):.2f}x",
                "",
            ],
            ["`git status` (reference)", fmt_ms(median(git_status)), f"{median(git_status) / median(floor):.2f}x", ""],
        ],
    )
    v = median(version)
    print(f"\n`gitstate status` / `gitstate --version` (issue 14, target {TARGET_VS_VERSION}x)\n")
    print_table(
        ["case", "status / --version", "target"],
        [
            ["status again", f"{s / v:.2f}x", "met" if s / v <= TARGET_VS_VERSION else "NOT met"],
            [
                "status right after HEAD moved",
                f"{median(moved) / v:.2f}x",
                "met" if median(moved) / v <= TARGET_VS_VERSION else "NOT met",
            ],
        ],
    )


if __name__ == "__main__":
    main()
