"""Key paths and the pure key operations (gitstate.keys)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitstate.keys import (
    MISSING_KEY,
    KeyPathError,
    append_in,
    delete_in,
    get_in,
    key_overlaps,
    merge_in,
    parse_key,
    set_in,
)


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        (None, ()),
        ("a", ("a",)),
        ("services.slack", ("services", "slack")),
        ("tasks.3.status", ("tasks", "3", "status")),
        (("meetings", "event.123", "status"), ("meetings", "event.123", "status")),
        (["a", 1], ("a", 1)),
        (3, (3,)),
        ((), ()),
    ],
)
def test_parse_key(key: object, parts: tuple[object, ...]) -> None:
    assert parse_key(key) == parts


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a."])
def test_parse_key_refuses_empty_parts(key: str) -> None:
    with pytest.raises(ValueError):
        parse_key(key)


@pytest.mark.parametrize("key", [True, 1.5, {"a": 1}, ("a", None), ("a", 1.0), ("a", True), b"a"])
def test_parse_key_refuses_other_types(key: object) -> None:
    with pytest.raises(TypeError):
        parse_key(key)


def test_get_in() -> None:
    v = {"a": {"b": [10, {"c": "x"}]}, "e.f": 1}
    assert get_in(v, ()) is v
    assert get_in(v, ("a", "b", "1", "c")) == "x"
    assert get_in(v, ("a", "b", 1, "c")) == "x"
    assert get_in(v, ("a", "b", "-1", "c")) == "x"
    assert get_in(v, ("e.f",)) == 1
    assert get_in(v, ("a", "b", "5")) is MISSING_KEY
    assert get_in(v, ("a", "b", "x")) is MISSING_KEY
    assert get_in(v, ("a", "zz")) is MISSING_KEY
    assert get_in(v, ("a", "b", "0", "deeper")) is MISSING_KEY
    assert get_in(None, ("a",)) is MISSING_KEY


def test_get_in_int_and_str_twins() -> None:
    assert get_in({1: "int"}, ("1",)) == "int"
    assert get_in({"1": "str"}, (1,)) == "str"


def test_set_in_creates_mappings() -> None:
    assert set_in(None, ("a", "b", "c"), 1) == {"a": {"b": {"c": 1}}}
    root: dict[str, Any] = {"a": {"x": 0}}
    assert set_in(root, ("a", "b"), 2) is root
    assert root == {"a": {"x": 0, "b": 2}}
    assert set_in(root, (), [1]) == [1]


def test_set_in_lists() -> None:
    root: dict[str, Any] = {"l": [1, 2, 3]}
    set_in(root, ("l", "1"), "two")
    set_in(root, ("l", "-1"), "last")
    set_in(root, ("l", "3"), "appended")  # one past the end appends
    assert root == {"l": [1, "two", "last", "appended"]}
    with pytest.raises(KeyPathError):
        set_in(root, ("l", "9"), 0)
    with pytest.raises(KeyPathError):
        set_in(root, ("l", "x"), 0)


def test_set_in_refuses_to_walk_into_a_scalar() -> None:
    with pytest.raises(KeyPathError):
        set_in({"a": 5}, ("a", "b"), 1)
    with pytest.raises(KeyPathError):
        set_in({"a": [5]}, ("a", "0", "b"), 1)
    with pytest.raises(KeyPathError):
        set_in("text", ("a",), 1)


def test_set_in_replaces_a_null_on_the_way() -> None:
    assert set_in({"a": None}, ("a", "b"), 1) == {"a": {"b": 1}}


def test_delete_in() -> None:
    root: dict[str, Any] = {"a": {"b": 1, "c": 2}, "l": [1, 2, 3]}
    assert delete_in(root, ("a", "b")) == ({"a": {"c": 2}, "l": [1, 2, 3]}, True)
    assert delete_in(root, ("l", "0"))[1]
    assert root["l"] == [2, 3]
    assert delete_in(root, ("a", "nope")) == (root, False)
    assert delete_in(root, ("l", "7")) == (root, False)
    assert delete_in(root, ("zz", "y")) == (root, False)
    assert delete_in(root, ()) == (MISSING_KEY, True)


def test_merge_in_is_deep() -> None:
    root: dict[str, Any] = {"s": {"a": True, "n": {"x": 1, "y": 2}}, "keep": 1}
    merge_in(root, (), {"s": {"b": False, "n": {"y": 3}}})
    assert root == {"s": {"a": True, "b": False, "n": {"x": 1, "y": 3}}, "keep": 1}
    merge_in(root, ("s", "n"), {"z": 4})
    assert root["s"]["n"] == {"x": 1, "y": 3, "z": 4}
    assert merge_in(None, (), {"a": 1}) == {"a": 1}
    assert merge_in({}, ("new", "deep"), {"a": 1}) == {"new": {"deep": {"a": 1}}}
    with pytest.raises(KeyPathError):
        merge_in({"a": [1]}, ("a",), {"x": 1})


def test_merge_replaces_non_mapping_with_mapping() -> None:
    root: dict[str, Any] = {"a": 1}
    merge_in(root, (), {"a": {"b": 2}})
    assert root == {"a": {"b": 2}}


def test_append_in() -> None:
    root: dict[str, Any] = {}
    append_in(root, ("follow_ups",), "x")
    append_in(root, ("follow_ups",), "y")
    assert root == {"follow_ups": ["x", "y"]}
    assert append_in(None, (), 1) == [1]
    assert append_in([0], (), 1) == [0, 1]
    assert append_in({"a": {"l": None}}, ("a", "l"), 1) == {"a": {"l": [1]}}
    with pytest.raises(KeyPathError):
        append_in({"a": 1}, ("a",), 2)


def test_key_overlaps() -> None:
    assert key_overlaps(("a",), ("a", "b"))
    assert key_overlaps(("a", "b"), ("a",))
    assert key_overlaps((), ("x",))
    assert key_overlaps(("l", 1), ("l", "1"))
    assert not key_overlaps(("a", "b"), ("a", "c"))
    assert not key_overlaps(("a",), ("b",))


_parts = st.text("abcxyz", min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(_parts, min_size=1, max_size=4), st.integers())))
def test_set_then_get_returns_the_last_write(writes: list[tuple[list[str], int]]) -> None:
    """Model check: after a series of set_in, every key equals the last value written at it or below it."""
    root: Any = None
    model: dict[tuple[str, ...], int] = {}
    for parts, value in writes:
        key = tuple(parts)
        try:
            root = set_in(root, key, value)
        except KeyPathError:
            # Walking into a scalar an earlier write left there: that must be the reason.
            assert any(key[: len(k)] == k and len(k) < len(key) for k in model)
            continue
        model = {k: v for k, v in model.items() if k[: len(key)] != key}
        model[key] = value
    for key, value in model.items():
        assert get_in(root, key) == value
