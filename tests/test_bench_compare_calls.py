"""benchmarks/compare_calls.py: the ABBA order, the summary of paired batches, and a worker answering batches."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import load_benchmark

import gitstate

calls = load_benchmark("compare_calls.py", "bench_compare_calls")


def test_sides_alternate_abba_across_pairs_and_calls() -> None:
    assert [calls.sides(p, 0) for p in range(4)] == [
        ("before", "after"),
        ("after", "before"),
        ("before", "after"),
        ("after", "before"),
    ]
    assert calls.sides(0, 1) == ("after", "before")  # the next call of the same pair starts with the other side


def test_summary_is_the_median_of_paired_ratios_not_the_ratio_of_medians() -> None:
    # The after side is 2x in every pair, but the machine slowed 10x half-way: the pairs still say 2x.
    before = [0.001] * 5 + [0.010] * 6
    after = [0.002] * 5 + [0.020] * 6
    [row] = calls.summarize({"store.log() cold": {"before": before, "after": after}})
    assert row[0] == "store.log() cold"
    assert row[1] == "10.00 ms" and row[2] == "20.00 ms"
    assert row[3] == "2.000x" and row[4] == "2.000x / 2.000x"


def test_a_worker_times_every_call_on_its_own_copy(tmp_path: Path) -> None:
    store_path = tmp_path / "fixture"
    with gitstate.open(store_path, durability="immediate") as store:
        for n in range(3):
            store.set("state.json", None, {"items": {"k0042": {"value": n}}})
    tree = tmp_path / "tree"
    (tree / ".venv" / "bin").mkdir(parents=True)
    python = tree / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # this venv's python (a symlink would lose it)
    python.chmod(0o755)

    def files(root: Path) -> list[tuple[str, int, int]]:
        return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*"))

    fixture_before = files(store_path)
    worker = calls._Worker(tree, store_path, tmp_path / "work" / "store", distance=2, key=calls.KEY)
    try:
        got = [worker.batch(i, 2) for i in range(len(calls.OPS))]
    finally:
        worker.close()
    assert all(t > 0 for t in got), got
    assert worker.proc.returncode == 0
    assert (tmp_path / "work" / "store" / "state.json").exists()
    assert files(store_path) == fixture_before  # the worker read and indexed its copy, not the shared fixture
