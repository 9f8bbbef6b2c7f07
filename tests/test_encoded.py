"""Big JSON documents set whole and kept as their bytes (gitstate.encoded, issue 14): the checks refuse exactly what
normalize refuses, a flush describes the change as quick_diff does, and the store behaves as with a private copy
(what a caller does to its value after set() never reaches the store; reads get values of their own)."""

from __future__ import annotations

import datetime
import enum
import math
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import make_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitstate
from gitstate import docdiff, encoded
from gitstate.codecs import JSON, normalize_whole_json
from gitstate.docdiff import Change, KeyRun, quick_diff
from gitstate.encoded import Encoded, describe, encoded_from
from gitstate.errors import EncodeError

PROPS = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

#: Keys whose JSON form has quotes, backslashes, escapes and the very bytes that separate two entries.
KEYS = st.sampled_from(["a", "b", "c", "d", "", 'q"uote', "back\\slash", ',\n  "x', "é", "\U0001f600", "k\tx", "5"])
TEXT = st.sampled_from(["", "x", ',\n  "a": 1', "}\n}", "\\", "null", "é"])
#: Leaves that Python's == cannot confuse (no bools next to ints, no floats).
PLAIN = st.one_of(st.none(), st.integers(0, 3), TEXT)
#: Leaves it can: 1 == True == 1.0, 0 == -0.0.
AMBIGUOUS = st.one_of(PLAIN, st.booleans(), st.sampled_from([1.0, 0.0, -0.0, 2.5]))


def _values(leaves: Any) -> Any:
    return st.recursive(
        leaves,
        lambda kids: st.one_of(st.dictionaries(KEYS, kids, max_size=4), st.lists(kids, max_size=3)),
        max_leaves=25,
    )


def _mappings(leaves: Any) -> Any:
    return st.dictionaries(KEYS, _values(leaves), max_size=10)


def _full(changes: list[Change], runs: list[KeyRun]) -> list[Change]:
    return changes + [c for r in runs for c in r.changes()]


def _encoded(value: dict[str, Any]) -> Encoded:
    kept = encoded_from(value)
    assert kept is not None
    return kept


# ----------------------------------------------------------------------------- the bytes and the entries
@PROPS
@given(_mappings(AMBIGUOUS))
def test_the_bytes_are_json_encode_and_the_entries_split_one_per_key(value: dict[str, Any]) -> None:
    kept = _encoded(value)
    assert kept.data == JSON.encode(value)
    assert kept.keys == list(value)
    assert kept.parts() is not None
    assert [kept.entry(i) for i in range(len(value))] == list(value.values())
    copy = kept.value()
    assert copy == value and copy is not kept.value()  # every reader gets a value of its own


@PROPS
@given(_mappings(PLAIN), _mappings(PLAIN), st.integers(0, 8))
def test_describe_is_quick_diff_on_values_it_cannot_confuse(old: Any, new: Any, budget: int) -> None:
    """Same listed changes, same runs (keys and places), same full list, in the same order."""
    runs: list[KeyRun] = []
    listed = describe(_encoded(old), _encoded(new), doc="d.json", max_changes=budget, runs=runs)
    expected_runs: list[KeyRun] = []
    expected = quick_diff(old, new, doc="d.json", max_changes=budget, copy=False, runs=expected_runs)
    assert listed == expected
    assert [(r.key, r.keys) for r in runs] == [(r.key, r.keys) for r in expected_runs]
    assert listed is not None and _full(listed, runs) == quick_diff(old, new, doc="d.json", max_changes=budget)


@PROPS
@given(_mappings(AMBIGUOUS), _mappings(AMBIGUOUS))
def test_describe_finds_what_python_equality_hides(old: Any, new: Any) -> None:
    """Entries differ when their bytes do: ``{"x": 1}`` -> ``{"x": true}`` is a change even next to another one,
    where quick_diff's ``==`` on the mapping skips it. With room for every change, the list is the exact diff's."""
    runs: list[KeyRun] = []
    listed = describe(_encoded(old), _encoded(new), doc="d.json", max_changes=10_000, runs=runs)
    assert runs == []
    exact = docdiff.diff(old, new, doc="d.json")
    assert listed is not None
    assert sorted(map(repr, listed)) == sorted(map(repr, exact))


def test_a_flush_decodes_only_the_entries_it_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    old = {f"k{i}": {"n": i} for i in range(200)}
    new = {f"k{i}": {"n": i + 1} for i in range(200)}
    decoded: list[bytes] = []
    real = encoded._entry_value
    monkeypatch.setattr(encoded, "_entry_value", lambda key, part: decoded.append(part) or real(key, part))
    runs: list[KeyRun] = []
    listed = describe(_encoded(old), _encoded(new), doc="d.json", runs=runs)
    assert listed is not None and len(listed) == 64
    assert [(r.key, len(r.keys)) for r in runs] == [((), 136)]
    assert len(decoded) == 2 * 64  # both sides of each listed entry; none of the 136 counted in the run
    run = runs[0]
    assert run.new["k199"] == {"n": 200} and run.old.get("nope") is None and len(run.old) == 200
    assert len(decoded) == 2 * 64 + 1  # a run decodes an entry when asked for it
    assert [c.key for c in run.changes()][:2] == [("k64",), ("k65",)]


def test_two_documents_that_do_not_split_are_not_described() -> None:
    bad = Encoded(b'{\n  "a": 1\n}\n', ["a", "b"])  # two keys, one entry
    assert bad.parts() is None
    assert describe(bad, _encoded({"a": 2}), doc="d.json", runs=[]) is None


# ----------------------------------------------------------------------------- what is kept encoded
class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


def _big(extra: Any) -> dict[str, Any]:
    return {"pad": "x" * 64, "deep": {"list": [1, 2, {"here": extra}]}}


def _kept(value: Any) -> Encoded | None:
    """What a whole-document set keeps: the Encoded, or None for a private copy (or a refusal)."""
    try:
        got = normalize_whole_json(value, "s.json")
    except EncodeError:
        return None
    return got if isinstance(got, Encoded) else None


@pytest.mark.parametrize(
    "extra",
    [
        math.nan,
        math.inf,
        -math.inf,
        Color.RED,
        uuid.UUID(int=1),
        Level.HIGH,
        Name("n"),
        datetime.date(2026, 1, 1),
        2**70,
        "\udcff",
        b"raw",
        {1, 2},
        {1: "int key"},
    ],
    ids=repr,
)
def test_only_plain_json_is_kept_encoded(monkeypatch: pytest.MonkeyPatch, extra: Any) -> None:
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    assert _kept(_big(extra)) is None
    assert _kept(_big("fine")) is not None


def test_small_values_and_lists_take_the_usual_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _kept(_big("fine")) is None  # under MIN_BYTES
    assert normalize_whole_json(_big("fine")) == _big("fine")  # the private copy
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    assert _kept([1, 2]) is None and _kept("text") is None
    tupled = _kept(_big((1, 2)))  # a tuple is written as a list, as normalize makes it
    assert tupled is not None and tupled.value() == _big([1, 2])


@pytest.mark.parametrize("number", [1e308, -1e308, 5e-324, -0.0, 1.7976931348623157e308])
def test_the_float_scan_lets_every_finite_float_through(monkeypatch: pytest.MonkeyPatch, number: float) -> None:
    """NaN and the infinities are the doubles whose 11 exponent bits are all set; the largest finite ones have
    all but the last."""
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    kept = _kept(_big(number))
    assert kept is not None and kept.value() == _big(number)


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[Encoded]:
    """Every document set whole is kept encoded; the list records each decode."""
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    decoded: list[Encoded] = []
    real = Encoded.value

    def value(self: Encoded) -> dict[str, Any]:
        decoded.append(self)
        return real(self)

    monkeypatch.setattr(Encoded, "value", value)
    return decoded


@pytest.mark.parametrize("extra", [math.nan, Color.RED, uuid.UUID(int=1)], ids=repr)
def test_the_store_refuses_what_normalize_refuses_with_its_message(
    tmp_path: Path, kept: list[Encoded], monkeypatch: pytest.MonkeyPatch, extra: Any
) -> None:
    with make_store(tmp_path / "a", durability="manual") as store, pytest.raises(EncodeError) as got:
        store.set("s.json", None, _big(extra))
    monkeypatch.setattr(encoded, "MIN_BYTES", 1 << 60)
    with make_store(tmp_path / "b", durability="manual") as store, pytest.raises(EncodeError) as usual:
        store.set("s.json", None, _big(extra))
    assert str(got.value).replace(str(tmp_path / "a"), "") == str(usual.value).replace(str(tmp_path / "b"), "")
    assert "deep.list.2.here" in str(got.value)


# ----------------------------------------------------------------------------- the store
def test_a_caller_changing_its_value_after_set_changes_nothing(tmp_path: Path, kept: list[Encoded]) -> None:
    value = {"tasks": [{"id": 1, "status": "todo"}], "owner": "bot"}
    with make_store(tmp_path, durability="immediate") as store:
        store.set("s.json", None, {"tasks": [], "owner": "bot"})  # created: the commit's "add" holds the value
        kept.clear()
        store.set("s.json", None, value)
        value["tasks"][0]["status"] = "done"
        value["owner"] = "someone else"
        assert kept == []  # a replace decodes only the entries it lists, and nothing has read the document
        got = store.get("s.json")
        assert got == {"tasks": [{"id": 1, "status": "todo"}], "owner": "bot"}
        got["owner"] = "changed by the reader"
        assert store.get("s.json", "owner") == "bot"
        assert len(kept) == 1  # decoded once, then read from the view
    on_disk = orjson.loads((tmp_path / "s.json").read_bytes())
    assert on_disk == {"tasks": [{"id": 1, "status": "todo"}], "owner": "bot"}


def _script(store: gitstate.Store) -> None:
    """Writes that mix whole sets (kept encoded or not) with keyed writes, reads and flushes."""
    base = {f"t{i}": {"n": i, "tags": ["a", "b"]} for i in range(150)}
    store.set("big.json", None, base)
    store.flush()
    changed = {k: dict(v) for k, v in base.items()}
    changed["t3"]["n"] = 99
    del changed["t7"]
    changed["new"] = {"n": -1, "tags": []}
    for i in range(40, 140):
        changed[f"t{i}"]["tags"] = ["c"]
    store.set("big.json", None, changed)
    store.flush("replace many")
    store.set("big.json", "t3.tags", ["x"])  # a keyed write on a document kept encoded
    store.set("big.json", "t4", None)
    store.flush()
    store.set("big.json", None, base)  # back again
    store.set("other.json", None, {"a": 1})
    store.flush()
    assert store.get("big.json") == base


def _history(path: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(path), "log", "--format=%B%x00"], capture_output=True, text=True)
    return [m.strip() for m in out.stdout.split("\x00") if m.strip()]


def test_commits_messages_and_key_history_match_those_of_private_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoded, "MIN_BYTES", 1 << 60)
    with make_store(tmp_path / "copies", durability="manual") as store:
        _script(store)
        keys_copies = [[c.key for c in commit.changes()] for commit in store.log("big.json")]
        t3_copies = [c.id for c in store.log("big.json", key="t3")]
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    with make_store(tmp_path / "kept", durability="manual") as store:
        _script(store)
        keys_kept = [[c.key for c in commit.changes()] for commit in store.log("big.json")]
        t3_kept = store.log("big.json", key="t3")
        assert len(t3_kept) == len(t3_copies)
    assert _history(tmp_path / "kept") == _history(tmp_path / "copies")
    assert keys_kept == keys_copies
    for name in ("big.json", "other.json"):
        assert (tmp_path / "kept" / name).read_bytes() == (tmp_path / "copies" / name).read_bytes()
    fsck = subprocess.run(["git", "-C", str(tmp_path / "kept"), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr


def test_a_rolled_back_transaction_drops_a_document_kept_encoded(tmp_path: Path, kept: list[Encoded]) -> None:
    with make_store(tmp_path, durability="manual") as store:
        store.set("s.json", None, {"v": 1})
        store.flush()
        with pytest.raises(RuntimeError), store.transaction():
            store.set("s.json", None, {"v": 2})
            store.set("s.json", "w", 3)
            raise RuntimeError("abort")
        assert store.get("s.json") == {"v": 1}
        assert store.flush() is None


def _hand_laid_out(path: Path) -> str:
    with make_store(path, durability="manual") as store:
        store.set("s.json", None, {"a": 1, "b": [1, 2]})
        store.flush()
    (path / "s.json").write_text('{\n    "b": [1, 2],\n    "a": 1\n}\n')  # a human's layout, committed on open
    with make_store(path, durability="manual") as store:
        store.set("s.json", None, {"a": 2, "b": [1, 2], "c": True})
        store.flush()
    return (path / "s.json").read_text()


def test_a_document_kept_encoded_keeps_a_hand_layout_and_survives_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoded, "MIN_BYTES", 1 << 60)
    expected = _hand_laid_out(tmp_path / "copies")
    assert expected.startswith('{\n    "b": [') and '\n    "a": 2,\n' in expected  # the human's indent and order
    monkeypatch.setattr(encoded, "MIN_BYTES", 0)
    assert _hand_laid_out(tmp_path / "kept") == expected
    with make_store(tmp_path / "kept", durability="manual") as store:
        store.set("s.json", None, {"a": 3, "b": [1]})
    with make_store(tmp_path / "kept") as store:  # close() flushed the pending set
        assert store.get("s.json") == {"a": 3, "b": [1]}
