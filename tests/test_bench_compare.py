"""benchmarks/compare.py: figures parsed from a script's Markdown tables, their direction and the >10 % flag."""

from __future__ import annotations

from helpers import load_benchmark

compare = load_benchmark("compare.py", "bench_compare")

TABLES = """
## Size after 800 flushes (quick)

| repository | .git | vs git gc |
|---|---:|---:|
| gitstate, packed | 2.5 MB | 1.30x |
| `git gc` on a copy (1.0 s) | 1.9 MB | 1.00x |

| command | median wall | vs `python -c pass` | speed-up | target |
|---|---:|---:|---:|---|
| `gitstate status` | 86.6 ms | 7.33x | 12.0x | < 150 ms: met |
| `python -c pass` | 11.8 ms | 1.00x | | |
| `git status` (reference) | 1.9 ms | 0.16x | | |
| pushes | 120 /s | | | |
"""


def _by_name() -> dict[str, object]:
    return {f.name: f for f in compare.parse_figures(TABLES)}


def test_sizes_and_times_are_lower_better_and_normalised() -> None:
    figs = _by_name()
    size = figs["Size after 800 flushes | gitstate, packed | .git"]
    assert (size.value, size.unit, size.higher_better, size.kind) == (2.5e6, "B", False, "absolute")
    wall = figs["Size after 800 flushes | `gitstate status` | median wall"]
    assert (wall.value, wall.unit, wall.higher_better, wall.kind) == (86.6, "ms", False, "absolute")


def test_ratios_speedups_throughput_and_baselines() -> None:
    figs = _by_name()
    ratio = figs["Size after 800 flushes | gitstate, packed | vs git gc"]
    assert (ratio.kind, ratio.higher_better) == ("ratio", False)
    speedup = figs["Size after 800 flushes | `gitstate status` | speed-up"]
    assert (speedup.kind, speedup.higher_better) == ("ratio", True)
    assert figs["Size after 800 flushes | pushes | median wall"].higher_better is True
    assert figs["Size after 800 flushes | `git status` | median wall"].kind == "baseline"
    assert figs["Size after 800 flushes | `python -c pass` | median wall"].kind == "baseline"
    assert figs["Size after 800 flushes | `git gc` on a copy | vs git gc"].kind == "baseline"
    # git's own ratio to the floor is the same code on both sides: a drift gauge, not a figure to judge.
    assert figs["Size after 800 flushes | `git status` | vs `python -c pass`"].kind == "baseline"
    assert not any("target" in name for name in figs)  # "< 150 ms: met" is a target, not a figure


def test_worse_by_more_than_ten_percent_is_flagged_either_way() -> None:
    assert compare._judge([10, 10, 10], [11.5, 11.5, 11.5], False)[1] == "WORSE >10%"
    assert compare._judge([10, 10, 10], [10.5, 10.5, 10.5], False)[1] == ""
    assert compare._judge([100, 100, 100], [85, 85, 85], True)[1] == "WORSE >10%"
    assert compare._judge([100, 100, 100], [120, 120, 120], True)[1] == "better"
    assert compare._judge([1, 1, 1], [2, 2, 2], None)[1] == "?"
