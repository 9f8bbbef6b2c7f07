"""The key index's encoding (gitstate.history_keys): which changed values are kept, and that indexing a long
history leaves no cyclic garbage (the walk runs with the cyclic collector paused, so a cycle made per change
stays in memory until the command ends)."""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import orjson
from fastimport import build_history
from hypothesis import given, settings
from hypothesis import strategies as st

import gitstate
from gitstate import history_keys

_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.dates(),
    st.tuples(st.integers()),
)
_VALUES = st.recursive(
    _LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=12),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), kids, max_size=12),
    ),
    max_leaves=90,
)


def _reference(value: Any) -> bool:
    """The rule as first written (a recursive walk of at most 64 values), to compare the loop with."""
    budget = [64]

    def pure(v: Any) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        t = type(v)
        if t is str or t is bool or v is None:
            return True
        if t is int:
            return bool(-(2**63) <= v < 2**63)
        if t is float:
            return math.isfinite(v)
        if t is list:
            return all(pure(x) for x in v)
        if t is dict:
            return all(type(k) is str and pure(x) for k, x in v.items())
        return False

    return pure(value) and len(orjson.dumps(value)) <= history_keys._MAX_VALUE_BYTES


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_small_json_keeps_what_the_recursive_rule_kept(value: Any) -> None:
    assert history_keys._small_json(value) == _reference(value)


def test_small_json_makes_no_reference_cycles() -> None:
    values = [{"a": [1, 2, {"b": "c"}]}, list(range(100)), 3.5, "x", {"n": float("nan")}]
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            for v in values:
                history_keys._small_json(v)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_indexing_a_git_made_history_leaves_no_garbage_per_commit(tmp_path: Path) -> None:
    """The keys of every commit of a history made by plain git, computed the way a first ``log --json`` does,
    leave about as much cyclic garbage for 600 commits as for 150 (it was a few cycles per commit)."""

    def garbage_after(count: int) -> int:
        path = tmp_path / f"h{count}"
        build_history(path, count, start=1_700_000_000, step_s=60)
        with gitstate.open(path, durability="manual", handle_signals=False, auto_pack=False) as s:
            gc.collect()
            gc.disable()
            try:
                commits = s.log()
                assert len(commits) == count and all(c.keys for c in commits[:-1])
                return gc.collect()
            finally:
                gc.enable()

    small, big = garbage_after(150), garbage_after(600)
    assert big <= small + 200, (small, big)


def test_decoding_yaml_makes_no_reference_cycles() -> None:
    """The alias-bomb guard's counter is a recursive inner function: it must not leave a cycle (with its memo
    of every node) per decoded document."""
    from gitstate.codecs import YAML

    data = b"a: &x [1, 2, {b: c}]\nd: *x\ne: [*x, *x]\n"
    YAML.decode(data, "s.yaml")
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            YAML.decode(data, "s.yaml")
        assert gc.collect() == 0
    finally:
        gc.enable()
