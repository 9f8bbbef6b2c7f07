"""History benchmark: log, log --key, diff and restore on a store with 10,000 commits of a 100 KB JSON document.

Each commit changes one key of ``state.json`` (~100 KB, 1,000+ items). Measured side by side in one run:

* ``gitstate log`` of the whole history vs ``git log --oneline`` on the same repository (CLI vs CLI, wall time
  through a pipe, median), plus the library call (``store.log()``) alone;
* ``gitstate log --key K`` (CLI wall time) and ``store.log(key=K)``;
* ``store.diff(a, b)`` and ``store.restore(a)`` between revisions 9,000 commits apart (library calls, median).

The fixture is built once and cached under ``/tmp/gitstate-bench-<version>/`` (delete it to rebuild). It is built
through the repository layer (the same blobs, trees, commits, messages and history-index records a store writes,
at 60-second intervals ending now), which is quicker than 10,000 store flushes and lets the commit times be set.
It is then packed with ``git gc`` as a long-lived store would be. Restore runs on a copy, so the cache stays
pristine.

Run: ``python benchmarks/bench_history.py [--quick]`` (quick: 1,000 commits).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_ms, installed_cli, median, parse_args, print_table, time_call, time_command, time_commands

import gitstate
from gitstate import docdiff, history
from gitstate.codecs import codec_for
from gitstate.messages import LIBRARY, change_message
from gitstate.paths import atomic_write
from gitstate.repo import Repository

try:  # the index caches moved from history.py to history_index.py in issue 12; benchmarks/compare.py runs both
    from gitstate import history_index
except ImportError:
    history_index = history  # type: ignore[misc]

__all__ = ["build_fixture", "main"]

logger = logging.getLogger("gitstate.benchmarks")

FIXTURE_VERSION = "v2"
DOC = "state.json"
DOC_BYTES = 100_000


def _initial_doc() -> dict[str, object]:
    items: dict[str, object] = {}
    doc = {"items": items, "owner": "bench"}
    i = 0
    while len(codec_for(DOC).encode(doc)) < DOC_BYTES:
        items[f"k{i:04d}"] = {"value": 0, "name": f"item number {i}", "enabled": True}
        i += 1
    return doc


def build_fixture(commits: int) -> Path:
    """The cached fixture store with ``commits`` commits (built on first use)."""
    # One fixture per source tree: benchmarks/compare.py runs this script against two trees, and each builds
    # (and so reads) its own history index.
    tree = hashlib.sha256(str(Path(gitstate.__file__).resolve().parent).encode()).hexdigest()[:8]
    root = Path(tempfile.gettempdir()) / f"gitstate-bench-{FIXTURE_VERSION}-{commits}-{tree}"
    if (root / ".ready").exists():
        return root / "store"
    shutil.rmtree(root, ignore_errors=True)
    building = root.with_name(root.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    path = building / "store"
    t0 = time.perf_counter()
    doc = _initial_doc()
    keys = sorted(doc["items"])  # type: ignore[call-overload]
    with gitstate.open(path, durability="manual", fsync=False, handle_signals=False) as store:
        store.set(DOC, None, doc)
        store.flush()
        author = store.author
    repo = Repository.open(path, create=False)
    codec = codec_for(DOC)
    end = time.time()
    with repo.lock():
        parent = repo.head()
        for i in range(1, commits):
            key = ("items", keys[i % len(keys)], "value")
            old = doc["items"][key[1]]["value"]  # type: ignore[index]
            doc["items"][key[1]]["value"] = i  # type: ignore[index]
            change = docdiff.Change(DOC, key, "change", old, i)
            msg = change_message(None, [change], LIBRARY)
            parent = repo.commit_files(
                parent, {DOC: codec.encode(doc)}, msg, author=author, when=end - (commits - i) * 60, fsync=False
            )
            history.record(repo, parent, actor="library", changes=[change])
            if i % 1000 == 0:
                print(f"  built {i}/{commits} commits ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        atomic_write(path, DOC, codec.encode(doc), fsync=False)
        assert parent is not None
        repo.rebuild_index(repo.commit_info(parent).tree)
    repo.close()
    subprocess.run(["git", "gc", "-q"], cwd=path, check=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, check=True)
    assert status.stdout == "", status.stdout
    (building / ".ready").write_text(f"{commits} commits built in {time.perf_counter() - t0:.0f} s\n")
    os.rename(building, root)
    print(f"  fixture ready in {time.perf_counter() - t0:.0f} s: {root / 'store'}", file=sys.stderr)
    return root / "store"


def _cli_in_process(path: Path) -> None:
    """``gitstate -C path log`` through click in this process, output discarded."""
    import contextlib
    import io

    from gitstate.cli import main as cli_main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli_main(["-C", str(path), "log"], standalone_mode=False)


def main() -> None:
    args = parse_args(__doc__ or "")
    commits = 1000 if args.quick else 10_000
    distance = commits - 1000 if not args.quick else 900
    path = build_fixture(commits)
    repeat = args.repeat
    gs, py, install = installed_cli()
    key = "items.k0042.value"

    # Interleaved rounds: git and gitstate share each slow spell of a shared machine, so their ratio holds.
    lib_repeat = repeat * 2 + 1  # library calls are a few ms each: more samples steady the median on a noisy machine
    walls = time_commands(
        {
            "floor": [py, "-c", "pass"],
            "imports": [py, "-c", "import gitstate.cli"],
            "git_log": ["git", "-C", str(path), "log", "--oneline"],
            "gs_log": [*gs, "-C", str(path), "log"],
            "gs_key": [*gs, "-C", str(path), "log", "--key", key],
        },
        repeat=repeat * 2 + 1,
    )
    floor, imports, git_log, gs_log, gs_key = (walls[k] for k in ("floor", "imports", "git_log", "gs_log", "gs_key"))
    round_ratios = [g / b for g, b in zip(gs_log, git_log, strict=True)]
    git_key = time_command(["git", "-C", str(path), "log", "--oneline", "-G", '"k0042"'], repeat=max(1, repeat // 3))

    work = Path(tempfile.mkdtemp(prefix="gitstate-bench-work-"))
    try:
        shutil.copytree(path, work / "store", symlinks=True)
        store = gitstate.open(work / "store", durability="manual", handle_signals=False, auto_pack=False)

        def cold() -> None:
            history_index._INDEXES.clear()
            history_index._DECODED.clear()

        lib_log = time_call(lambda: store.log(), repeat=lib_repeat, setup=cold)
        cli_inproc = time_call(lambda: _cli_in_process(path), repeat=lib_repeat, setup=cold)
        lib_log_warm = time_call(lambda: store.log(), repeat=lib_repeat)
        lib_key = time_call(lambda: store.log(key=key), repeat=lib_repeat, setup=cold)
        n_key = len(store.log(key=key))
        old_rev = store.resolve(f"HEAD~{distance}")
        head = store.head
        lib_diff = time_call(lambda: store.diff(old_rev, head), repeat=lib_repeat, setup=cold)
        n_changes = len(store.diff(old_rev, head))
        git_diff = time_command(["git", "-C", str(path), "diff", old_rev, head], repeat=repeat)
        targets = [old_rev, head]
        flip = {"i": 0}

        def restore() -> None:
            store.restore(targets[flip["i"] % 2])
            flip["i"] += 1

        lib_restore = time_call(restore, repeat=lib_repeat, setup=lambda: history_index._DECODED.clear())
        store.close()
        store = gitstate.open(work / "store", durability="manual", fsync=False, handle_signals=False, auto_pack=False)
        lib_restore_nofsync = time_call(restore, repeat=lib_repeat, setup=lambda: history_index._DECODED.clear())
        store.close()
        fsck = subprocess.run(
            ["git", "fsck", "--strict", "--no-progress"],
            cwd=work / "store",
            capture_output=True,
            text=True,
            check=False,
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratio = median(gs_log) / median(git_log)
    print(
        f"\n## bench_history: {commits:,} commits, each changing one key of a "
        f"{len(codec_for(DOC).encode(_initial_doc())) // 1000} KB JSON document (library rows: median of"
        f" {lib_repeat}; CLI rows: {install}, median of {len(gs_log)} interleaved rounds)\n"
    )
    print_table(
        ["measurement", "gitstate", "baseline", "ratio / target"],
        [
            [
                "`log` whole history, CLI wall",
                fmt_ms(median(gs_log)),
                f"`git log --oneline` {fmt_ms(median(git_log))}",
                f"{ratio:.2f}x (target <= 2x)",
            ],
            [
                "  the same, ratio per round (min / median / max)",
                "",
                "",
                f"{min(round_ratios):.2f}x / {median(round_ratios):.2f}x / {max(round_ratios):.2f}x",
            ],
            ["`gitstate log` in-process (CLI code only: no start-up, no imports)", fmt_ms(median(cli_inproc)), "", ""],
            ["`store.log()` library, cold (index loaded)", fmt_ms(median(lib_log)), "", ""],
            ["`store.log()` library, warm", fmt_ms(median(lib_log_warm)), "", ""],
            [
                f"`log --key {key}` CLI wall ({n_key} commits)",
                fmt_ms(median(gs_key)),
                f"`git log -G` {fmt_ms(median(git_key))}",
                "target < 300 ms",
            ],
            ["`store.log(key=...)` library, cold", fmt_ms(median(lib_key)), "", ""],
            [
                f"`store.diff(HEAD~{distance}, HEAD)` library ({n_changes} changes)",
                fmt_ms(median(lib_diff)),
                f"`git diff` CLI {fmt_ms(median(git_diff))}",
                "target < 20 ms",
            ],
            [f"`store.restore(HEAD~{distance})` library, fsync on", fmt_ms(median(lib_restore)), "", "target < 20 ms"],
            ["`store.restore(...)` library, fsync off", fmt_ms(median(lib_restore_nofsync)), "", ""],
            ["startup floor: `python -c pass`", fmt_ms(median(floor)), "", ""],
            ["startup: `python -c 'import gitstate.cli'`", fmt_ms(median(imports)), "", ""],
        ],
    )


if __name__ == "__main__":
    main()
