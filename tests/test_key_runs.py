"""Counted runs of changed keys (docdiff.KeyRun): past quick_diff's budget a flush keeps the rest of a big
mapping as its changed keys, not one Change each, and the commit message and the history index entry it makes
from them are exactly those the full list of changes gives."""

from __future__ import annotations

import gc
import inspect
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import make_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate import docdiff, history, messages
from gitstate.docdiff import Change, KeyRun, quick_diff
from gitstate.history_keys import encode_changes

PROPS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.sampled_from([1.0, "a", "b"]))
KEYS = st.sampled_from([f"k{i}" for i in range(12)])
VALUES = st.recursive(
    LEAVES,
    lambda kids: st.one_of(st.dictionaries(KEYS, kids, max_size=6), st.lists(kids, max_size=3)),
    max_leaves=40,
)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=12)


def _full(changes: list[Change], runs: list[KeyRun]) -> list[Change]:
    return changes + [c for r in runs for c in r.changes()]


@PROPS
@given(MAPPINGS, MAPPINGS, st.integers(0, 8))
def test_a_run_is_the_changes_quick_diff_lists_without_it(old: Any, new: Any, budget: int) -> None:
    runs: list[KeyRun] = []
    counted = quick_diff(old, new, doc="d.json", max_changes=budget, copy=False, runs=runs)
    listed = quick_diff(old, new, doc="d.json", max_changes=budget, copy=False)
    assert _full(counted, runs) == listed
    assert all(r.keys for r in runs)  # an empty run is not kept
    if runs:
        assert len(counted) >= budget  # runs come only past the budget, after every listed change


@PROPS
@given(st.lists(st.tuples(MAPPINGS, MAPPINGS), min_size=1, max_size=3), st.integers(0, 70))
def test_the_index_entry_of_counted_runs_is_that_of_the_full_list(pairs: list[Any], budget: int) -> None:
    """Several documents (each one's runs after its own changes, as a flush lists them), any budget: the exact
    form when the whole fits the cap, the collapsed prefixes in the same order when it does not."""
    counted: list[Change | KeyRun] = []
    listed: list[Change] = []
    for i, (old, new) in enumerate(pairs):
        doc = f"d{i}.json"
        runs: list[KeyRun] = []
        counted += quick_diff(old, new, doc=doc, max_changes=budget, copy=False, runs=runs)
        counted += runs
        listed += quick_diff(old, new, doc=doc, max_changes=budget, copy=False)
    assert encode_changes(counted) == encode_changes(listed)


def test_the_index_entry_of_a_big_replace_collapses_in_order() -> None:
    old = {"a": {f"x{i}": i for i in range(100)}, "b": 1}
    new = {"a": {f"x{i}": i + 1 for i in range(100)}, "b": 2, "c": 3}
    runs: list[KeyRun] = []
    changes = quick_diff(old, new, doc="d.json", copy=False, runs=runs)
    assert len(changes) == 64 and [(r.key, len(r.keys)) for r in runs] == [(("a",), 36), ((), 2)]
    collapsed = encode_changes([*changes, *runs])
    assert collapsed == [["d.json", ["a"], "*"], ["d.json", ["b"], "*"], ["d.json", ["c"], "*"]]
    assert collapsed == encode_changes(quick_diff(old, new, doc="d.json", copy=False))


def test_the_flush_budget_covers_the_message_lines() -> None:
    """A commit message lists the first SUMMARY_MAX_LINES changes; a run comes after at least max_changes
    listed ones, so the lines are those of the full list only while the budget is at least that."""
    budget = inspect.signature(quick_diff).parameters["max_changes"].default
    assert budget >= messages.SUMMARY_MAX_LINES


@pytest.mark.parametrize("subject", [None, "replace the task table"])
def test_a_message_with_counted_changes_is_that_of_the_full_list(subject: str | None) -> None:
    old = {f"t{i:04d}": {"n": i} for i in range(300)}
    new = {f"t{i:04d}": {"n": i + 1} for i in range(300)} | {"extra": True}
    runs: list[KeyRun] = []
    changes = quick_diff(old, new, doc="tasks.json", copy=False, runs=runs)
    more = sum(len(r.keys) for r in runs)
    assert more == 301 - len(changes) > 0
    full = quick_diff(old, new, doc="tasks.json", copy=False)
    counted_msg = messages.change_message(subject, changes, messages.LIBRARY, {"run": "7"}, more=more)
    assert counted_msg == messages.change_message(subject, full, messages.LIBRARY, {"run": "7"})
    if subject is None:
        assert counted_msg.startswith("tasks.json: t0000.n 0 -> 1 (+300 more)\n")
    assert messages.summarize(changes, max_lines=50, more=more) == messages.summarize(full, max_lines=50)


def test_a_flush_of_a_big_replace_builds_no_change_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store end to end: 20,000 changed entries make a commit whose message and index entry are those of the
    full diff, while at most the budget's Change objects are alive when the flush records the commit (building
    one per key was a third of a 10 MB set()'s time, with the collections that followed)."""
    n = 20_000
    store = make_store(tmp_path / "s", durability="manual", fsync=False)
    old = {f"k{i:05d}": {"n": i, "text": "x" * 10} for i in range(n)}
    new = {f"k{i:05d}": {"n": i + 1, "text": "x" * 10} for i in range(n)}
    store.set("big.json", None, old)
    store.flush()
    alive: list[int] = []
    real_record = history.record

    def record(*args: Any, **kwargs: Any) -> None:
        alive.append(sum(1 for o in gc.get_objects() if type(o) is Change))
        real_record(*args, **kwargs)

    monkeypatch.setattr(history, "record", record)  # what the flush calls
    store.set("big.json", None, new)
    cid = store.flush()
    assert cid is not None and alive and alive[0] <= 64 + 10, alive
    full = docdiff.quick_diff(old, new, doc="big.json", copy=False)
    assert store.log(limit=1)[0].message == messages.change_message(None, full, messages.LIBRARY)
    index = store.path / ".git" / "gitstate" / "history-index-v1.jsonl"
    lines = [orjson.loads(line) for line in index.read_bytes().splitlines()]
    entry = next(e for e in reversed(lines) if e.get("c") == cid and "k" in e)
    assert orjson.loads(entry["k"]) == encode_changes(full)
    assert orjson.loads(entry["k"]) == [["big.json", [], "*"]]
    store.close()
