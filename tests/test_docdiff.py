"""Tests for gitstate.docdiff: structured diff, apply, summaries, text diff and three-way merges."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import pickle
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate.docdiff import (
    MISSING,
    Change,
    Conflict,
    MergeConflictError,
    MergeResult,
    apply_changes,
    diff,
    diff_text,
    format_key,
    format_value,
    merge3,
    merge_text3,
    same,
)


def ops(changes: list[Change]) -> list[tuple[tuple[str | int, ...], str, Any, Any]]:
    return [(c.key, c.op, c.old, c.new) for c in changes]


def roundtrip(old: Any, new: Any) -> None:
    """apply_changes(old, diff(old, new)) gives new, and neither input is touched."""
    old_before, new_before = copy.deepcopy(old), copy.deepcopy(new)
    changes = diff(old, new)
    result = apply_changes(old, changes)
    assert same(result, new), (old, new, changes, result)
    assert same(old, old_before) and same(new, new_before)


# ------------------------------------------------------------------------------------------------------------
# MISSING and same()
# ------------------------------------------------------------------------------------------------------------


class TestMissing:
    def test_repr_and_falsy(self) -> None:
        assert repr(MISSING) == "MISSING"
        assert not MISSING

    def test_singleton_survives_copy_and_pickle(self) -> None:
        assert copy.copy(MISSING) is MISSING
        assert copy.deepcopy({"a": MISSING})["a"] is MISSING
        assert pickle.loads(pickle.dumps(MISSING)) is MISSING
        assert type(MISSING)() is MISSING


class TestSame:
    def test_bool_is_not_int(self) -> None:
        assert not same(True, 1)
        assert not same(False, 0)
        assert not same({"a": [1]}, {"a": [True]})
        assert not same([0], [False])

    def test_int_is_not_float(self) -> None:
        assert not same(1, 1.0)
        assert not same({"a": 1}, {"a": 1.0})

    def test_equal_values(self) -> None:
        assert same({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
        assert same("x", "x")
        assert same(MISSING, MISSING)
        assert not same(MISSING, None)

    def test_key_order_does_not_matter(self) -> None:
        assert same({"a": 1, "b": 2}, {"b": 2, "a": 1})
        assert not same({"a": 1, "b": True}, {"b": 1, "a": 1})

    def test_nan(self) -> None:
        assert same(float("nan"), float("nan"))
        assert same([float("nan")], [float("nan")])
        assert same({"a": [1, float("nan")]}, {"a": [1, float("nan")]})
        assert not same([float("nan")], [1.0])

    def test_yaml_keys(self) -> None:
        assert not same({1: "a"}, {True: "a"})
        assert same({1: "a", "x": None}, {"x": None, 1: "a"})

    def test_dates(self) -> None:
        assert same(dt.date(2024, 1, 2), dt.date(2024, 1, 2))
        assert not same(dt.date(2024, 1, 2), dt.datetime(2024, 1, 2))
        assert not same(dt.date(2024, 1, 2), "2024-01-02")

    def test_tuple_and_list(self) -> None:
        assert same([1, 2], (1, 2))

    def test_nested_subclass(self) -> None:
        class D(dict[str, Any]):
            pass

        assert same(D(a=1), {"a": 1})
        assert not same(D(a=1), {"a": True})


# ------------------------------------------------------------------------------------------------------------
# diff
# ------------------------------------------------------------------------------------------------------------


class TestDiff:
    def test_equal_gives_nothing(self) -> None:
        doc = {"a": [1, {"b": [True, None, 1.5]}], "c": "x"}
        assert diff(doc, copy.deepcopy(doc)) == []
        assert diff(MISSING, MISSING) == []
        assert diff("text", "text") == []

    def test_doc_is_recorded(self) -> None:
        (change,) = diff({"a": 1}, {"a": 2}, doc="state.json")
        assert change == Change("state.json", ("a",), "change", 1, 2)

    def test_append_gives_one_add(self) -> None:
        old = {"tasks": [{"id": i, "s": "todo"} for i in range(5)]}
        new = copy.deepcopy(old)
        new["tasks"].append({"id": 5, "s": "todo"})
        assert ops(diff(old, new)) == [(("tasks", 5), "add", MISSING, {"id": 5, "s": "todo"})]

    def test_append_duplicate_item_gives_one_add_at_end(self) -> None:
        assert ops(diff([1, 1, 1], [1, 1, 1, 1])) == [((3,), "add", MISSING, 1)]

    def test_insert_in_middle(self) -> None:
        assert ops(diff(["a", "b", "c", "d"], ["a", "b", "X", "c", "d"])) == [((2,), "add", MISSING, "X")]

    def test_remove_from_middle(self) -> None:
        assert ops(diff(["a", "b", "c", "d"], ["a", "c", "d"])) == [((1,), "remove", "b", MISSING)]

    def test_nested_list_item_field_change(self) -> None:
        old = {"tasks": [{"id": i, "status": "todo", "tags": ["x"]} for i in range(6)]}
        new = copy.deepcopy(old)
        new["tasks"][3]["status"] = "done"
        assert ops(diff(old, new)) == [(("tasks", 3, "status"), "change", "todo", "done")]

    def test_field_change_after_insert_uses_new_index(self) -> None:
        old = {"tasks": [{"id": 0, "s": "a"}, {"id": 1, "s": "a"}, {"id": 2, "s": "a"}]}
        new = {"tasks": [{"id": 9, "s": "z"}, {"id": 0, "s": "a"}, {"id": 1, "s": "a"}, {"id": 2, "s": "b"}]}
        changes = diff(old, new)
        assert ops(changes) == [
            (("tasks", 0), "add", MISSING, {"id": 9, "s": "z"}),
            (("tasks", 3, "s"), "change", "a", "b"),
        ]
        assert apply_changes(old, changes) == new

    def test_scalar_replaced_in_list(self) -> None:
        assert ops(diff([1, 2, 3], [1, 5, 3])) == [((1,), "change", 2, 5)]

    def test_unequal_replace_is_removes_then_adds(self) -> None:
        changes = diff(["a", "b", "c", "z"], ["a", "X", "z"])
        assert ops(changes) == [
            ((1,), "remove", "b", MISSING),
            ((2,), "remove", "c", MISSING),
            ((1,), "add", MISSING, "X"),
        ]
        assert apply_changes(["a", "b", "c", "z"], changes) == ["a", "X", "z"]

    def test_bool_vs_int(self) -> None:
        assert ops(diff({"a": False}, {"a": 0})) == [(("a",), "change", False, 0)]
        assert ops(diff({"a": 1}, {"a": True})) == [(("a",), "change", 1, True)]
        assert ops(diff([True, 1], [1, True])) != []
        assert ops(diff({"a": 1}, {"a": 1.0})) == [(("a",), "change", 1, 1.0)]

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ({"a": 1}, [1]),
            (1, {"a": 1}),
            ([1], "1"),
            (None, {}),
            ("x", 1),
            (dt.date(2024, 1, 1), "2024-01-01"),
        ],
    )
    def test_type_change_is_one_change(self, old: Any, new: Any) -> None:
        assert ops(diff({"k": old}, {"k": new})) == [(("k",), "change", old, new)]
        assert ops(diff(old, new)) == [((), "change", old, new)]

    def test_dict_add_remove_change_and_order(self) -> None:
        old = {"b": 1, "a": 2, "gone": {"x": [1]}, "same": [1, 2]}
        new = {"new2": 5, "a": 3, "same": [1, 2], "b": 1, "new1": {"deep": [1, 2]}}
        assert ops(diff(old, new)) == [
            (("a",), "change", 2, 3),
            (("gone",), "remove", {"x": [1]}, MISSING),
            (("new2",), "add", MISSING, 5),
            (("new1",), "add", MISSING, {"deep": [1, 2]}),
        ]

    def test_added_subtree_is_not_recursed(self) -> None:
        (change,) = diff({}, {"svc": {"a": {"b": 1}}})
        assert change.key == ("svc",) and change.new == {"a": {"b": 1}}

    def test_missing_documents(self) -> None:
        assert ops(diff(MISSING, {"a": 1})) == [((), "add", MISSING, {"a": 1})]
        assert ops(diff({"a": 1}, MISSING)) == [((), "remove", {"a": 1}, MISSING)]
        assert ops(diff(MISSING, "text")) == [((), "add", MISSING, "text")]

    def test_text_and_bytes_documents_compared_whole(self) -> None:
        assert ops(diff("a\nb\n", "a\nc\n")) == [((), "change", "a\nb\n", "a\nc\n")]
        assert ops(diff(b"\x00\x01", b"\x00\x02")) == [((), "change", b"\x00\x01", b"\x00\x02")]

    def test_yaml_scalar_keys_and_dates(self) -> None:
        old = {1: "one", None: "n", "d": dt.date(2024, 1, 1)}
        new = {1: "uno", None: "n", "d": dt.date(2024, 1, 2), 2.5: True}
        assert ops(diff(old, new)) == [
            ((1,), "change", "one", "uno"),
            (("d",), "change", dt.date(2024, 1, 1), dt.date(2024, 1, 2)),
            ((2.5,), "add", MISSING, True),
        ]
        roundtrip(old, new)

    def test_nan_is_not_a_change(self) -> None:
        assert diff({"a": [float("nan")]}, {"a": [float("nan")]}) == []

    def test_change_values_are_private_copies(self) -> None:
        old: dict[str, Any] = {"a": {"x": [1]}}
        new: dict[str, Any] = {"a": {"x": [1, 2]}, "b": {"y": [3]}}
        changes = diff(old, new)
        new["b"]["y"].append(4)
        assert changes[-1].new == {"y": [3]}

    def test_inputs_not_mutated(self) -> None:
        roundtrip({"a": [1, 2, {"b": 3}]}, {"a": [2, {"b": 4}, 5]})

    def test_large_document_is_fast(self) -> None:
        old: dict[str, Any] = {
            "version": 1,
            "tasks": [
                {
                    "id": f"t{i}",
                    "title": f"Task number {i} with some text",
                    "status": "todo",
                    "n": i,
                    "done": False,
                }
                for i in range(1000)
            ],
            "services": {f"s{i}": {"enabled": True, "n": i} for i in range(50)},
        }
        assert len(json.dumps(old)) > 90_000
        new = copy.deepcopy(old)
        new["tasks"][500]["done"] = 0
        diff(old, new)  # warm up
        start = time.perf_counter()
        changes = diff(old, new)
        elapsed = time.perf_counter() - start
        assert ops(changes) == [(("tasks", 500, "done"), "change", False, 0)]
        assert elapsed < 0.1  # typically 2-5 ms; generous for slow CI machines


class TestChange:
    def test_to_dict_add_remove_change(self) -> None:
        assert Change("s.json", ("a", 0), "add", MISSING, 1).to_dict() == {
            "doc": "s.json",
            "key": ["a", 0],
            "op": "add",
            "new": 1,
        }
        assert Change("s.json", ("a",), "remove", 1, MISSING).to_dict() == {
            "doc": "s.json",
            "key": ["a"],
            "op": "remove",
            "old": 1,
        }
        assert Change("", (), "change", None, False).to_dict() == {
            "doc": "",
            "key": [],
            "op": "change",
            "old": None,
            "new": False,
        }

    def test_to_dict_non_json_values(self) -> None:
        change = Change(
            "m.yaml",
            ("when", 1),
            "change",
            {"d": dt.date(2024, 1, 2), 3: dt.datetime(2024, 1, 2, 3, 4, 5)},
            b"abc",
        )
        as_dict = change.to_dict()
        assert as_dict["old"] == {"d": "2024-01-02", "3": "2024-01-02T03:04:05"}
        assert as_dict["new"] == {"bytes": 3}
        json.dumps(as_dict)

    def test_rejects_bad_op_and_normalizes_key(self) -> None:
        with pytest.raises(ValueError):
            Change("", (), "modify", 1, 2)
        assert Change("", ["a", 1], "add", MISSING, 1).key == ("a", 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# apply_changes
# ------------------------------------------------------------------------------------------------------------


class TestApplyChanges:
    def test_examples(self) -> None:
        roundtrip([1, 2, 3, 4, 5], [0, 1, 3, 9, 5, 6])
        roundtrip({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 0}, {"x": 1}, {"x": 3}]})
        roundtrip(MISSING, {"a": 1})
        roundtrip({"a": 1}, MISSING)
        roundtrip([[1, 2], [3]], [[1], [3, 4], []])

    def test_order_contract(self) -> None:
        # removes use OLD indices, adds and changes use NEW indices, whatever order they are given in.
        changes = [
            Change("", (2,), "add", MISSING, "new"),
            Change("", (0,), "change", "b", "B"),
            Change("", (0,), "remove", "a", MISSING),
        ]
        assert apply_changes(["a", "b", "c"], changes) == ["B", "c", "new"]
        assert apply_changes(["a", "b", "c"], changes[::-1]) == ["B", "c", "new"]
        # a change at new index 2 is found where the item is before the add at new index 0 happens
        changes = [Change("", (2,), "change", "b", "B"), Change("", (0,), "add", MISSING, "z")]
        assert apply_changes(["a", "b"], changes) == ["z", "a", "B"]
        # several removes are applied from the highest old index down
        changes = [Change("", (i,), "remove", v, MISSING) for i, v in enumerate("abc")]
        assert apply_changes(["a", "b", "c", "d"], changes) == ["d"]

    def test_does_not_mutate(self) -> None:
        value = {"a": [1, 2]}
        result = apply_changes(value, [Change("", ("a", 2), "add", MISSING, 3)])
        assert value == {"a": [1, 2]} and result == {"a": [1, 2, 3]}

    def test_whole_document(self) -> None:
        assert apply_changes({"a": 1}, [Change("", (), "remove", {"a": 1}, MISSING)]) is MISSING
        assert apply_changes(MISSING, [Change("", (), "add", MISSING, "t")]) == "t"

    def test_errors(self) -> None:
        with pytest.raises(ValueError):
            apply_changes({"a": 1}, [Change("", ("a", "b"), "add", MISSING, 1)])
        with pytest.raises(ValueError):
            apply_changes([1], [Change("", (5,), "remove", 1, MISSING)])
        with pytest.raises(ValueError):
            apply_changes([1], [Change("", (5,), "add", MISSING, 1)])
        with pytest.raises(ValueError):
            apply_changes([1], [Change("", ("x",), "add", MISSING, 1)])


# ------------------------------------------------------------------------------------------------------------
# diff_text
# ------------------------------------------------------------------------------------------------------------


class TestDiffText:
    def test_headers_and_hunk(self) -> None:
        assert diff_text("a\nb\nc\n", "a\nB\nc\n", doc="notes.md") == (
            "--- a/notes.md\n+++ b/notes.md\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        )

    def test_equal_is_empty(self) -> None:
        assert diff_text("x\n", "x\n", doc="n.md") == ""
        assert diff_text(None, None) == ""

    def test_created_and_deleted(self) -> None:
        assert diff_text(None, "a\n", doc="n.md") == "--- /dev/null\n+++ b/n.md\n@@ -0,0 +1 @@\n+a\n"
        assert diff_text("a\nb\n", None, doc="n.md") == "--- a/n.md\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n"

    def test_no_newline_at_end(self) -> None:
        assert diff_text("a\nb", "a\nc", doc="n.md") == (
            "--- a/n.md\n+++ b/n.md\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
            "+c\n\\ No newline at end of file\n"
        )
        assert diff_text("a", "a\n", doc="n.md") == (
            "--- a/n.md\n+++ b/n.md\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"
        )

    def test_every_line_ends_with_newline(self) -> None:
        out = diff_text("x\r\ny", "x\r\nz\n", doc="d.txt")
        assert out.endswith("\n")
        assert "-x\r\n" not in out  # the unchanged CRLF line is context, split on \n only
        assert " x\r\n" in out

    def test_context_lines(self) -> None:
        old = "".join(f"{i}\n" for i in range(20))
        new = old.replace("10\n", "ten\n")
        assert diff_text(old, new, doc="n.md", context_lines=1).splitlines()[2:] == [
            "@@ -10,3 +10,3 @@",
            " 9",
            "-10",
            "+ten",
            " 11",
        ]


# ------------------------------------------------------------------------------------------------------------
# format_key / format_value (summary lines: tests/test_messages.py)
# ------------------------------------------------------------------------------------------------------------


class TestFormat:
    @pytest.mark.parametrize(
        ("key", "text"),
        [
            ((), ""),
            (("services", "slack"), "services.slack"),
            (("tasks", 3, "status"), "tasks.3.status"),
            (("meetings", "event.123", "status"), 'meetings."event.123".status'),
            (("a", ""), 'a.""'),
            (('say "hi"',), '"say \\"hi\\""'),
            (("it's",), '"it\'s"'),
            (("with space",), "with space"),
            (("line\nbreak",), '"line\\nbreak"'),
            ((True, None, 1.5), 'true.null."1.5"'),
        ],
    )
    def test_format_key(self, key: tuple[str | int, ...], text: str) -> None:
        assert format_key(key) == text

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (True, "true"),
            (False, "false"),
            (None, "null"),
            (3, "3"),
            (1.5, "1.5"),
            ("hi", '"hi"'),
            ("a\nb", '"a\\nb"'),
            ("é", '"é"'),
            ({"a": [1, None]}, '{"a":[1,null]}'),
            ([], "[]"),
            (MISSING, "(none)"),
            (dt.date(2024, 5, 1), "2024-05-01"),
            ({"d": dt.date(2024, 5, 1)}, '{"d":"2024-05-01"}'),
            (b"abc", "<3 bytes>"),
        ],
    )
    def test_format_value(self, value: Any, text: str) -> None:
        assert format_value(value) == text

    def test_format_value_truncates(self) -> None:
        text = format_value("x" * 100, max_chars=10)
        assert text == '"xxxxxxxx…' and len(text) == 10
        assert len(format_value(list(range(100)))) == 60
        assert format_value("short", max_chars=10) == '"short"'


# ------------------------------------------------------------------------------------------------------------
# merge3
# ------------------------------------------------------------------------------------------------------------


class TestMerge3:
    def test_different_keys_both_kept(self) -> None:
        base = {"a": 1, "b": 1, "c": {"x": 1, "y": 1}}
        ours = {"a": 2, "b": 1, "c": {"x": 2, "y": 1}, "new_ours": 1}
        theirs = {"a": 1, "b": 3, "c": {"x": 1, "y": 3}, "new_theirs": 1}
        result = merge3(base, ours, theirs)
        assert result == MergeResult(
            {"a": 2, "b": 3, "c": {"x": 2, "y": 3}, "new_ours": 1, "new_theirs": 1},
            [],
        )

    def test_one_side_removal_taken(self) -> None:
        assert merge3({"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": 2, "c": 3}).value == {"a": 1, "c": 3}

    @pytest.mark.parametrize(("prefer", "expected"), [("ours", 2), ("theirs", 3)])
    def test_same_key_conflict(self, prefer: str, expected: int) -> None:
        result = merge3({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 3, "b": 5}, prefer=prefer)
        assert result.value == {"a": expected, "b": 5}
        assert result.conflicts == [Conflict(("a",), 1, 2, 3, prefer)]

    def test_same_key_conflict_fail_collects_all(self) -> None:
        base = {"a": 1, "b": {"c": 1}, "d": 0}
        with pytest.raises(MergeConflictError) as info:
            merge3(base, {"a": 2, "b": {"c": 2}, "d": 1}, {"a": 3, "b": {"c": 3}, "d": 0}, prefer="fail")
        assert [c.key for c in info.value.conflicts] == [("a",), ("b", "c")]
        assert isinstance(info.value, ValueError)
        assert "2 merge conflicts" in str(info.value)
        again = pickle.loads(pickle.dumps(info.value))
        assert again.conflicts == info.value.conflicts

    def test_same_change_both_sides_is_not_a_conflict(self) -> None:
        assert merge3({"a": 1}, {"a": 2}, {"a": 2}) == MergeResult({"a": 2}, [])

    def test_bool_vs_int_conflicts(self) -> None:
        result = merge3({"a": None}, {"a": 1}, {"a": True})
        assert result.value == {"a": 1} and result.conflicts[0].key == ("a",)

    def test_both_append(self) -> None:
        base = {"log": [1, 2]}
        result = merge3(base, {"log": [1, 2, 3]}, {"log": [1, 2, 4, 5]})
        assert result == MergeResult({"log": [1, 2, 3, 4, 5]}, [])

    def test_both_append_same_item_once(self) -> None:
        assert merge3([1], [1, "x", "y"], [1, "y", "z"]).value == [1, "x", "y", "z"]
        assert merge3([], ["x"], ["x", "x"]).value == ["x", "x"]

    def test_list_changed_one_side(self) -> None:
        assert merge3({"l": [1, 2, 3]}, {"l": [3, 1]}, {"l": [1, 2, 3]}).value == {"l": [3, 1]}

    def test_list_element_wise(self) -> None:
        base = {"tasks": [{"s": "a", "p": 1}, {"s": "a", "p": 1}]}
        ours = {"tasks": [{"s": "b", "p": 1}, {"s": "a", "p": 1}]}
        theirs = {"tasks": [{"s": "a", "p": 1}, {"s": "a", "p": 2}]}
        assert merge3(base, ours, theirs) == MergeResult(
            {"tasks": [{"s": "b", "p": 1}, {"s": "a", "p": 2}]},
            [],
        )
        result = merge3(base, ours, {"tasks": [{"s": "c", "p": 1}, {"s": "a", "p": 1}]}, prefer="theirs")
        assert result.conflicts == [Conflict(("tasks", 0, "s"), "a", "b", "c", "theirs")]

    def test_list_conflict_whole_list(self) -> None:
        result = merge3({"l": [1, 2, 3]}, {"l": [1, 3]}, {"l": [2, 3, 4, 5]})
        assert result.value == {"l": [1, 3]}
        assert result.conflicts == [Conflict(("l",), [1, 2, 3], [1, 3], [2, 3, 4, 5], "ours")]

    @pytest.mark.parametrize(("prefer", "expected"), [("ours", {"b": 1}), ("theirs", {"a": 2, "b": 1})])
    def test_delete_vs_modify(self, prefer: str, expected: dict[str, int]) -> None:
        result = merge3({"a": 1, "b": 1}, {"b": 1}, {"a": 2, "b": 1}, prefer=prefer)
        assert result.value == expected
        assert result.conflicts == [Conflict(("a",), 1, MISSING, 2, prefer)]
        assert result.conflicts[0].to_dict() == {"key": ["a"], "base": 1, "theirs": 2, "chosen": prefer}

    def test_both_deleted_key(self) -> None:
        assert merge3({"a": 1, "b": 1}, {"b": 1}, {"b": 2}) == MergeResult({"b": 2}, [])

    def test_documents_missing(self) -> None:
        assert merge3(MISSING, MISSING, {"a": 1}).value == {"a": 1}
        assert merge3({"a": 1}, MISSING, {"a": 1}).value is MISSING
        assert merge3(MISSING, {"a": 1}, {"b": 2}) == MergeResult({"a": 1, "b": 2}, [])
        result = merge3({"a": 1}, MISSING, {"a": 2})
        assert result.value is MISSING
        assert result.conflicts == [Conflict((), {"a": 1}, MISSING, {"a": 2}, "ours")]
        assert merge3({"a": 1}, MISSING, {"a": 2}, prefer="theirs").value == {"a": 2}
        assert merge3(MISSING, MISSING, MISSING) == MergeResult(MISSING, [])

    def test_type_mismatch_conflict(self) -> None:
        result = merge3({"a": 1}, {"a": {"x": 1}}, {"a": [1]}, prefer="theirs")
        assert result.value == {"a": [1]} and len(result.conflicts) == 1

    def test_whole_text_documents_merge_by_line(self) -> None:
        assert merge3("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n").value == "A\nb\nC\n"

    def test_inputs_not_mutated_and_result_not_shared(self) -> None:
        base: dict[str, Any] = {"a": {"x": [1]}, "b": [1]}
        ours: dict[str, Any] = {"a": {"x": [1, 2]}, "b": [1]}
        theirs: dict[str, Any] = {"a": {"x": [1]}, "b": [1, 3], "c": {"n": [0]}}
        saved = copy.deepcopy((base, ours, theirs))
        result = merge3(base, ours, theirs)
        assert (base, ours, theirs) == saved
        result.value["a"]["x"].append(99)
        result.value["c"]["n"].append(99)
        result.value["b"].append(99)
        assert (base, ours, theirs) == saved
        trivial = merge3(base, ours, base)
        trivial.value["a"]["x"].append(5)
        assert ours == saved[1]

    def test_conflict_values_are_copies(self) -> None:
        ours: dict[str, Any] = {"a": [1, 9]}
        result = merge3({"a": [1]}, ours, {"a": [2]})
        ours["a"].append(3)
        assert result.conflicts[0].ours == [1, 9]

    def test_bad_prefer(self) -> None:
        with pytest.raises(ValueError):
            merge3({}, {}, {}, prefer="mine")
        with pytest.raises(ValueError):
            merge_text3("", "", "", prefer="mine")

    def test_conflict_to_dict_json(self) -> None:
        conflict = Conflict(("d",), dt.date(2024, 1, 1), b"x", MISSING, "ours")
        assert conflict.to_dict() == {
            "key": ["d"],
            "base": "2024-01-01",
            "ours": {"bytes": 1},
            "chosen": "ours",
        }


# ------------------------------------------------------------------------------------------------------------
# merge_text3
# ------------------------------------------------------------------------------------------------------------


BASE_TEXT = "".join(f"line {i}\n" for i in range(1, 11))


class TestMergeText3:
    def test_disjoint_edits_merged(self) -> None:
        ours = BASE_TEXT.replace("line 2\n", "LINE TWO\n")
        theirs = BASE_TEXT.replace("line 8\n", "line 8\nextra\n").replace("line 10\n", "")
        result = merge_text3(BASE_TEXT, ours, theirs)
        assert result.conflicts == []
        assert result.value == BASE_TEXT.replace("line 2\n", "LINE TWO\n").replace(
            "line 8\n", "line 8\nextra\n"
        ).replace("line 10\n", "")

    def test_identical_edit_applied_once(self) -> None:
        ours = BASE_TEXT.replace("line 5\n", "five\n").replace("line 1\n", "one\n")
        theirs = BASE_TEXT.replace("line 5\n", "five\n")
        assert merge_text3(BASE_TEXT, ours, theirs).value == ours

    @pytest.mark.parametrize("prefer", ["ours", "theirs"])
    def test_overlapping_conflict_takes_whole_text(self, prefer: str) -> None:
        ours = BASE_TEXT.replace("line 5\n", "ours 5\n").replace("line 1\n", "one\n")
        theirs = BASE_TEXT.replace("line 5\n", "theirs 5\n")
        result = merge_text3(BASE_TEXT, ours, theirs, prefer=prefer)
        assert result.value == (ours if prefer == "ours" else theirs)
        assert result.conflicts == [Conflict((), BASE_TEXT, ours, theirs, prefer)]

    def test_overlapping_conflict_fail(self) -> None:
        with pytest.raises(MergeConflictError) as info:
            merge_text3("a\n", "b\n", "c\n", prefer="fail")
        assert [c.key for c in info.value.conflicts] == [()]

    def test_adjacent_edits_conflict_like_git(self) -> None:
        ours = BASE_TEXT.replace("line 4\n", "four\n")
        theirs = BASE_TEXT.replace("line 5\n", "five\n")
        assert len(merge_text3(BASE_TEXT, ours, theirs).conflicts) == 1

    def test_insertions_at_same_place_conflict(self) -> None:
        result = merge_text3("a\nb\n", "a\nX\nb\n", "a\nY\nb\n")
        assert result.value == "a\nX\nb\n" and len(result.conflicts) == 1

    def test_missing_documents(self) -> None:
        assert merge_text3(None, "x\n", None) == MergeResult("x\n", [])
        assert merge_text3("x\n", None, "x\n") == MergeResult(MISSING, [])
        assert merge_text3(None, "x\n", "x\n") == MergeResult("x\n", [])
        deleted = merge_text3("x\n", None, "y\n")
        assert deleted.value is MISSING and deleted.conflicts == [Conflict((), "x\n", MISSING, "y\n", "ours")]
        assert merge_text3("x\n", None, "y\n", prefer="theirs").value == "y\n"
        created = merge_text3(None, "a\n", "b\n", prefer="theirs")
        assert created.value == "b\n" and created.conflicts[0].base is MISSING

    def test_no_final_newline(self) -> None:
        assert merge_text3("a\nb\nc\nd", "A\nb\nc\nd", "a\nb\nc\nD").value == "A\nb\nc\nD"


# ------------------------------------------------------------------------------------------------------------
# Property tests
# ------------------------------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -0.5]),
    st.text(alphabet="ab", max_size=2),
    st.sampled_from([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 12, 0)]),
)
KEYS = st.text(alphabet="abc", max_size=2)
YAML_KEYS = st.one_of(KEYS, st.integers(0, 2), st.none())


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(KEYS, children, max_size=4),
        st.dictionaries(YAML_KEYS, children, max_size=3),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=15)
DOCS = st.one_of(st.just(MISSING), VALUES, st.text(alphabet="ab\n", max_size=6))


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """A random edit of ``value`` that keeps most of it, so diffs and merges see realistic overlap."""
    choice = draw(st.integers(0, 9))
    if choice == 0 or depth > 4:
        return draw(DOCS if depth == 0 else VALUES)
    if choice <= 2:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            action = draw(st.sampled_from(["keep", "keep", "drop", "edit"]))
            if action == "keep":
                out[k] = copy.deepcopy(v)
            elif action == "edit":
                out[k] = draw(mutated(v, depth + 1))
        for k in draw(st.lists(KEYS, max_size=2)):
            out[k] = draw(VALUES)
        return out
    if isinstance(value, list):
        items = [copy.deepcopy(v) for v in value]
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["insert", "delete", "edit", "append"]))
            if op == "append":
                items.append(draw(VALUES))
            elif op == "insert":
                items.insert(draw(st.integers(0, len(items))), draw(VALUES))
            elif items:
                i = draw(st.integers(0, len(items) - 1))
                if op == "delete":
                    del items[i]
                else:
                    items[i] = draw(mutated(items[i], depth + 1))
        return items
    return draw(VALUES)


@st.composite
def related_pair(draw: st.DrawFn) -> tuple[Any, Any]:
    a = draw(DOCS)
    return a, draw(mutated(a))


PROPS = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


class TestProperties:
    @PROPS
    @given(DOCS, DOCS)
    def test_apply_diff_gives_new_unrelated(self, a: Any, b: Any) -> None:
        roundtrip(a, b)

    @PROPS
    @given(related_pair())
    def test_apply_diff_gives_new_related(self, pair: tuple[Any, Any]) -> None:
        roundtrip(*pair)

    @PROPS
    @given(st.lists(st.integers(0, 3), max_size=8), st.lists(st.integers(0, 3), max_size=8))
    def test_apply_diff_lists(self, a: list[int], b: list[int]) -> None:
        roundtrip(a, b)
        roundtrip({"l": [[x] for x in a]}, {"l": [[x] for x in b]})

    @PROPS
    @given(DOCS)
    def test_diff_of_same_is_empty(self, a: Any) -> None:
        assert diff(a, copy.deepcopy(a)) == []

    @PROPS
    @given(related_pair())
    def test_merge_one_sided(self, pair: tuple[Any, Any]) -> None:
        b, x = pair
        for result in (merge3(b, x, b), merge3(b, b, x), merge3(b, x, x)):
            assert same(result.value, x)
            assert result.conflicts == []

    @PROPS
    @given(DOCS, DOCS)
    def test_merge_one_sided_unrelated(self, b: Any, x: Any) -> None:
        assert same(merge3(b, x, b).value, x)
        assert same(merge3(b, b, x).value, x)
        assert same(merge3(b, x, x).value, x)

    @PROPS
    @given(related_pair(), st.data())
    def test_merge_two_sided_is_total_and_pure(self, pair: tuple[Any, Any], data: st.DataObject) -> None:
        base, ours = pair
        theirs = data.draw(mutated(base))
        saved = copy.deepcopy((base, ours, theirs))
        results = {}
        for prefer in ("ours", "theirs"):
            result = results[prefer] = merge3(base, ours, theirs, prefer=prefer)
            assert all(c.chosen == prefer for c in result.conflicts)
            assert same((base, ours, theirs), saved)
            if not result.conflicts and same(theirs, base):
                assert same(result.value, ours)
        # prefer="fail" raises exactly when there is something to choose, naming the same keys.
        conflict_keys = [c.key for c in results["ours"].conflicts]
        assert [c.key for c in results["theirs"].conflicts] == conflict_keys
        if conflict_keys:
            with pytest.raises(MergeConflictError) as info:
                merge3(base, ours, theirs, prefer="fail")
            assert [c.key for c in info.value.conflicts] == conflict_keys
        else:
            assert same(merge3(base, ours, theirs, prefer="fail").value, results["ours"].value)
            assert same(results["theirs"].value, results["ours"].value)
        assert same((base, ours, theirs), saved)

    @PROPS
    @given(st.one_of(st.none(), st.text(alphabet="ab\n", max_size=8)), st.text(alphabet="ab\n", max_size=8))
    def test_merge_text_one_sided(self, b: str | None, x: str) -> None:
        assert merge_text3(b, x, b).value == x
        assert merge_text3(b, b, x).value == x
        assert merge_text3(b, x, x).value == x

    @PROPS
    @given(st.lists(st.integers(0, 99), min_size=3, max_size=10, unique=True), st.data())
    def test_merge_text_disjoint_edits(self, numbers: list[int], data: st.DataObject) -> None:
        # ours edits only the first half, theirs only the second half, with an untouched line between
        # (lines are unique: with repeated lines the alignment, so what counts as "disjoint", is ambiguous)
        lines = [f"{n}\n" for n in numbers]
        mid = len(lines) // 2
        ours = ["X\n", *lines[: mid - 1]] if data.draw(st.booleans()) else [*lines[: mid - 1], "Y\n"]
        theirs_tail = [*lines[mid + 1 :], "Z\n"]
        base_text = "".join(lines)
        ours_text = "".join(ours + lines[mid - 1 :])
        theirs_text = "".join(lines[: mid + 1] + theirs_tail)
        result = merge_text3(base_text, ours_text, theirs_text)
        assert result.conflicts == []
        assert result.value == "".join(ours + lines[mid - 1 : mid + 1] + theirs_tail)

    def test_nan_float_in_merge(self) -> None:
        nan = float("nan")
        result = merge3({"a": [nan, 1]}, {"a": [float("nan"), 1]}, {"a": [nan, 2]})
        assert result.conflicts == [] and result.value["a"][1] == 2 and math.isnan(result.value["a"][0])
