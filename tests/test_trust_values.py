"""Values checked at the door, unreadable hand edits quarantined, and a size limit on documents (issue 11: items
3, 4 and the 300 MB file of item 11).

* Hostile values (lone surrogates in strings and keys, integers past Python's 4,300-digit limit, NaN/inf, odd
  types) are refused with EncodeError at set/update/append (and transactions, migrations, AsyncStore), so the
  pending set always encodes; a flush that still fails for one document commits the others.
* A hand-edited file that cannot be read (a 5,000-digit integer, a YAML date that is no date) is quarantined.
* A file over ``max_doc_bytes`` is never read, committed or loaded for a read of another document.
* A hypothesis fuzzer over every codec: refused at set(), or round-trips exactly through flush + reopen.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, fsck, git, make_store, run_cli, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitstate
from gitstate import codecs, doctor
from gitstate.errors import DecodeError, EncodeError, SaveError
from gitstate.events import InvalidEdit
from gitstate.store import DEFAULT_MAX_DOC_BYTES

TORTURE = os.environ.get("GITSTATE_TORTURE") == "1"
BIG_INT = 10**5000

# ===================================================================== item 3: values checked at the door
HOSTILE = [
    ("a.json", "x", "\udcff", "lone surrogate"),
    ("a.json", "x", {"ok": {"\udcff": 1}}, "lone surrogate"),
    ("a.json", ("\ud800",), 1, "lone surrogate"),
    ("a.json", "x", ["fine", "bad\udcffend"], "lone surrogate"),
    ("a.json", "x", BIG_INT, "4300 digits"),
    ("a.json", "x", -BIG_INT, "4300 digits"),
    ("a.json", "x", math.nan, "NaN"),
    ("a.json", "x", math.inf, "NaN"),
    ("a.json", "x", {1, 2}, "set"),
    ("a.json", "x", b"raw", "bytes"),
    ("a.json", "x", dt.datetime(2020, 1, 1), "datetime"),
    ("a.json", "x", {1: "int key"}, "keys must be strings"),
    ("a.yaml", "x", "\udcff", "lone surrogate"),
    ("a.yaml", "x", {"\udcff": 1}, "lone surrogate"),
    ("a.yaml", "x", {BIG_INT: 1}, "4300 digits"),
    ("a.yaml", "x", {math.nan: 1}, "NaN"),
    ("a.yaml", "x", BIG_INT, "4300 digits"),
    ("a.yaml", "x", -math.inf, "NaN"),
    ("a.yaml", "x", dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30))), "whole minutes"),
    ("a.yaml", "x", {(1, 2): 1}, "keys must be strings"),
    ("a.txt", None, "\udcff", "lone surrogate"),
    ("a.md", None, b"bytes", "str"),
    ("a.bin", None, "text", "bytes"),
]


@pytest.mark.parametrize(("doc", "key", "value", "says"), HOSTILE, ids=[f"{h[0]}-{h[3]}" for h in HOSTILE])
def test_hostile_value_is_refused_at_set(tmp_path: Path, doc: str, key: Any, value: Any, says: str) -> None:
    with make_store(tmp_path) as store:
        store.set("other.json", "x", 1)
        with pytest.raises(EncodeError, match=says):
            store.set(doc, key, value)
        assert store.pending == 1  # only the good write
        assert store.flush() is not None
        assert store.get("other.json", "x") == 1
        assert not store.exists(doc)
    fsck(tmp_path)


def test_every_write_path_refuses_hostile_values(tmp_path: Path) -> None:
    """update, append, transactions, migration steps and AsyncStore share the door (keys.check_write)."""
    with make_store(tmp_path) as store:
        with pytest.raises(EncodeError):
            store.update("a.json", {"k": "\udcff"})
        with pytest.raises(EncodeError):
            store.append("a.json", "list", BIG_INT)
        with pytest.raises(EncodeError), store.transaction():
            store.set("a.json", "ok", 1)
            store.set("a.json", "bad", math.nan)
        assert store.pending == 0

        def step(tx: Any) -> None:
            tx.set("a.json", "x", "\udcff")

        with pytest.raises(gitstate.MigrationError) as info:
            store.migrate({1: step})
        assert isinstance(info.value.__cause__, EncodeError)
        assert store.pending == 0
        store.set("a.json", "ok", 2)
        store.flush()
    fsck(tmp_path)

    async def main() -> None:
        async with gitstate.aopen(tmp_path, durability="manual", fsync=False, handle_signals=False) as astore:
            with pytest.raises(EncodeError):
                astore.set("a.json", "x", {"\udcff": 1})
            with pytest.raises(EncodeError):
                async with astore.transaction() as tx:
                    tx.set("a.json", "y", BIG_INT)
            assert astore.store.pending == 0

    asyncio.run(main())


def test_scalar_subclasses_are_stored_as_plain_values(tmp_path: Path) -> None:
    """An enum or a str subclass is stored as its value: YAML's safe dumper cannot write subclasses (the flush
    failed), and what get() returns is what a reopen reads back."""

    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    with make_store(tmp_path) as store:
        for doc in ("a.json", "a.yaml"):
            store.set(doc, None, {"c": Color.RED, "n": Name("x"), Name("k"): 1.5, "f": [True, None]})
            assert type(store.get(doc, "c")) is int
        store.flush()
    with make_store(tmp_path) as store:
        for doc in ("a.json", "a.yaml"):
            assert store.get(doc) == {"c": 1, "n": "x", "k": 1.5, "f": [True, None]}


def test_int_key_part_in_json_creates_a_string_key(tmp_path: Path) -> None:
    """JSON keys are strings: set(doc, ("x", 5), v) must not hold {5: v} in memory and {"5": v} after a reopen."""
    with make_store(tmp_path) as store:
        store.set("a.json", ("x", 5), 1)
        store.set("a.json", "l", [1, 2])
        store.set("a.json", ("l", 1), 3)
        assert store.get("a.json") == {"x": {"5": 1}, "l": [1, 3]}
        store.flush()
    with make_store(tmp_path) as store:
        assert store.get("a.json") == {"x": {"5": 1}, "l": [1, 3]}


def test_debounced_close_keeps_other_documents(tmp_path: Path) -> None:
    """The issue's scenario: one bad value used to make close() raise and lose every other pending write."""
    store = make_store(tmp_path, durability="debounced", debounce_ms=60_000)
    store.set("good.json", "x", 1)
    with pytest.raises(EncodeError):
        store.set("bad.json", "s", "\udcff")
    store.set("other.yaml", "y", 2)
    store.close()
    with make_store(tmp_path) as store:
        assert store.get("good.json", "x") == 1
        assert store.get("other.yaml", "y") == 2
    fsck(tmp_path)


@pytest.fixture
def broken_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON encoding fails for any value holding the marker string: an encoder bug, or a value that slipped
    past normalize()."""
    real = type(codecs.JSON).encode

    def encode(self: Any, value: Any) -> bytes:
        if "BOOM" in repr(value):
            raise UnicodeEncodeError("utf-8", "BOOM", 0, 1, "simulated encoder fault")
        return real(self, value)

    monkeypatch.setattr(type(codecs.JSON), "encode", encode)


@pytest.mark.usefixtures("broken_encoder")
def test_flush_commits_what_it_can_and_keeps_the_failing_document_pending(tmp_path: Path) -> None:
    errors: list[Any] = []
    with make_store(tmp_path) as store:
        store.on("save_error", errors.append)
        store.set("good.json", "x", 1)
        store.set("bad.json", "x", "BOOM")
        store.set("bad.json", "y", 2)
        store.set("fine.yaml", "z", 3)
        with pytest.raises(SaveError, match=r"bad\.json \(2 write\(s\)\)") as info:
            store.flush()
        assert info.value.docs == ("bad.json",)
        assert info.value.commit is not None and info.value.commit == store.head
        assert isinstance(info.value.__cause__, UnicodeEncodeError)
        assert [type(e.error) for e in errors] == [SaveError]
        assert store.pending == 2  # the failing document's writes, nothing else
        assert git(tmp_path, "show", "--name-only", "--format=", "HEAD").split() == ["fine.yaml", "good.json"]
        assert not (tmp_path / "bad.json").exists()
        store.set("bad.json", "x", "fixed")  # the caller repairs the value: the next flush commits it
        assert store.flush() is not None
        assert store.pending == 0
    with make_store(tmp_path) as store:
        assert store.get("bad.json") == {"x": "fixed", "y": 2}
    fsck(tmp_path)


@pytest.mark.usefixtures("broken_encoder")
def test_debounced_flush_fault_loses_no_other_document_at_close(tmp_path: Path) -> None:
    errors: list[Any] = []
    store = make_store(tmp_path, durability="debounced", debounce_ms=10, max_delay_ms=50)
    store.on("save_error", errors.append)
    store.set("bad.json", "x", "BOOM")
    store.set("good.json", "x", 1)
    wait_until(lambda: bool(errors), 10, "a background save_error")
    assert store.head is not None  # the background flush committed good.json anyway
    store.set("late.json", "x", 2)
    with pytest.raises(SaveError, match=r"bad\.json"):
        store.close()
    with make_store(tmp_path) as store:
        assert store.get("good.json", "x") == 1
        assert store.get("late.json", "x") == 2
        assert not store.exists("bad.json")
    fsck(tmp_path)


# ===================================================================== item 4: unreadable hand edits
HUGE_JSON = '{\n  "a": 1,\n  "n": ' + "7" * 5000 + "\n}\n"
HUGE_YAML = "a: 1\nn: " + "7" * 5000 + "\n"


@pytest.mark.parametrize(
    ("codec", "text", "where"),
    [
        (codecs.JSON, HUGE_JSON, (3, 8)),
        (codecs.YAML, HUGE_YAML, (2, 4)),
        (codecs.YAML, "a: 2001-13-01\n", None),
        (codecs.YAML, "a: !!timestamp 2020-01-01 00:00:00+00:00:30\n", None),
    ],
    ids=["json-huge-int", "yaml-huge-int", "yaml-bad-date", "yaml-bad-timestamp"],
)
def test_unreadable_value_is_a_decode_error(codec: codecs.Codec, text: str, where: tuple[int, int] | None) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(text.encode(), "doc")
    if where is not None:
        assert (info.value.line, info.value.column) == where
        assert "5000 digits" in info.value.problem


@pytest.mark.parametrize(("doc", "text"), [("state.json", HUGE_JSON), ("state.yaml", HUGE_YAML)])
def test_huge_int_hand_edit_is_quarantined(tmp_path: Path, doc: str, text: str) -> None:
    with make_store(tmp_path) as store:
        store.set(doc, "a", 0)
        store.flush()
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / doc).write_text(text)
    loaded: list[Any] = []
    with make_store(tmp_path, on={"loaded": loaded.append}) as store:  # used to raise a raw ValueError
        assert doc in loaded[0].quarantined
        assert store.get(doc) == {"a": 0}  # the last good version is served
        store.set("other.json", "x", 1)
        store.flush()
    assert git(tmp_path, "show", "--name-only", "--format=", "HEAD").split() == ["other.json"]
    assert git(tmp_path, "rev-parse", "HEAD~1").strip() == head
    found = [f for f in doctor.check(tmp_path, check_remotes=False) if f.check == "quarantine"]
    assert [f.level for f in found] == ["warning"] and doc in found[0].message and "digits" in found[0].message
    fsck(tmp_path)


def test_huge_int_hand_edit_seen_by_the_watcher_path_is_quarantined(tmp_path: Path) -> None:
    with make_store(tmp_path) as store:
        store.set("state.json", "a", 0)
        store.flush()
        (tmp_path / "state.json").write_text(HUGE_JSON)
        events = store.ingest(["state.json"])
        bad = [e for e in events if isinstance(e, InvalidEdit)]
        assert len(bad) == 1 and (bad[0].line, bad[0].column) == (3, 8)
        assert store.get("state.json") == {"a": 0}
        assert len(git(tmp_path, "log", "--format=%H").split()) == 1


@pytest.mark.parametrize("command", [["get", "state.json", "a"], ["set", "state.json", "b", "2"], ["doctor"]])
def test_cli_on_a_store_with_a_huge_int_file(tmp_path: Path, command: list[str]) -> None:
    with make_store(tmp_path) as store:
        store.set("state.json", "a", 0)
        store.flush()
    (tmp_path / "state.json").write_text(HUGE_JSON)
    proc = run_cli("-C", str(tmp_path), *command)
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    if command[0] == "get":
        assert proc.returncode == 0 and json.loads(proc.stdout) == 0
    if command[0] == "doctor":  # open() has not run: doctor itself finds the file that cannot be read
        assert "state.json" in proc.stdout + proc.stderr


# ===================================================================== item 11: size limit
def test_file_over_the_limit_is_not_read_or_committed(tmp_path: Path) -> None:
    with make_store(tmp_path) as store:
        store.set("small.json", "x", 1)
        store.flush()
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "dump.bin").write_bytes(b"\0" * 5000)
    (tmp_path / "small.json").write_text('{"x": 2}\n')  # a normal hand edit next to it is still recovered
    loaded: list[Any] = []
    with make_store(tmp_path, max_doc_bytes=4096, on={"loaded": loaded.append}) as store:
        assert loaded[0].recovered == ["small.json"]
        assert loaded[0].quarantined == {"dump.bin": str(tmp_path / "dump.bin")}
        assert store.get("small.json", "x") == 2
        with pytest.raises(DecodeError, match=r"max_doc_bytes.*GITSTATE_MAX_DOC_BYTES"):
            store.get("dump.bin")
        with pytest.raises(EncodeError, match="max_doc_bytes"):
            store.set("dump.bin", None, b"small")
        with pytest.raises(EncodeError, match="max_doc_bytes"):
            store.set("other.bin", None, b"x" * 5000)
        with pytest.raises(EncodeError, match="max_doc_bytes"):
            store.set("notes.txt", None, "x" * 5000)
        events = store.ingest(["dump.bin"])  # the watcher's path
        assert [type(e).__name__ for e in events] == ["InvalidEdit"] and "max_doc_bytes" in events[0].error
        store.set("small.json", "y", 3)
        store.flush()
    assert "dump.bin" not in git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert git(tmp_path, "rev-list", "--count", f"{head}..HEAD").strip() == "2"
    assert (tmp_path / "dump.bin").stat().st_size == 5000  # left where it is
    with make_store(tmp_path, max_doc_bytes=8192) as store:  # the limit raised: now it is committed
        assert store.get("dump.bin") == b"\0" * 5000
    fsck(tmp_path)


def test_structured_document_over_the_limit_fails_only_its_own_flush(tmp_path: Path) -> None:
    with make_store(tmp_path, max_doc_bytes=2000) as store:
        store.set("big.json", "x", "y" * 3000)
        store.set("ok.json", "x", 1)
        with pytest.raises(SaveError, match=r"big\.json.*max_doc_bytes") as info:
            store.flush()
        assert info.value.docs == ("big.json",) and store.pending == 1
        assert store.get("ok.json", "x") == 1
        store.delete("big.json")
        store.flush()
        assert store.pending == 0
    assert git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD").split() == ["ok.json"]


def test_flush_never_overwrites_a_file_over_the_limit(tmp_path: Path) -> None:
    """A hand-dropped big file appears after the write: the flush neither reads nor overwrites it."""
    with make_store(tmp_path, max_doc_bytes=4096) as store:
        store.set("a.txt", None, "library text")
        (tmp_path / "a.txt").write_bytes(b"h" * 5000)
        with pytest.raises(SaveError, match=r"a\.txt on disk is"):
            store.flush()
        assert store.pending == 1
        assert store.discard_pending() == 1
    assert (tmp_path / "a.txt").read_bytes() == b"h" * 5000


_MEASURE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from helpers import make_store
    with make_store({path!r}) as store:
        assert store.get("small.json", "x") == 1
        loaded = store.docs()
    # VmHWM is this address space's own peak: ru_maxrss would carry the parent's peak over exec (Linux keeps
    # the larger of the two in the process's signal struct, and subprocess starts children with vfork).
    with open("/proc/self/status") as f:
        hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(hwm_kb // 1024)
    """
)


@pytest.mark.parametrize(
    "size",
    [
        DEFAULT_MAX_DOC_BYTES + 1,
        pytest.param(300 << 20, marks=pytest.mark.skipif(not TORTURE, reason="GITSTATE_TORTURE=1")),
    ],
    ids=["just-over-default", "300MB"],
)
def test_big_file_is_never_loaded_for_another_document(tmp_path: Path, size: int) -> None:
    """The issue's 300 MB file: a plain open + get of another document used ~950 MB of memory. A sparse file
    costs no disk; the child's peak RSS shows whether anything read it."""
    with make_store(tmp_path) as store:
        store.set("small.json", "x", 1)
        store.flush()
    with (tmp_path / "dump.sql").open("wb") as f:
        f.truncate(size)
    proc = subprocess.run(
        [PYTHON, "-c", _MEASURE.format(tests=str(Path(__file__).parent), path=str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    peak_mb = int(proc.stdout.split()[-1])
    assert peak_mb < 120, f"peak RSS {peak_mb} MB with a {size >> 20} MB file in the store"
    assert "dump.sql" in proc.stderr  # logged as not read
    assert "dump.sql" not in git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD").split()


# ===================================================================== the value fuzzer
_surrogate = st.sampled_from(["\udcff", "\ud800", "\udfff", "a\udc80b"])
_text = st.text(max_size=12) | _surrogate | st.sampled_from(["", "yes", "null", "~", "0x1f", "1e3", "- a", "a: b"])
# Built by map: hypothesis reprs its strategies, and repr() of an int past the limit raises.
_edge_ints = st.tuples(st.sampled_from([4299, 4300, 5000]), st.sampled_from([-1, 0, 1])).map(
    lambda t: 10 ** t[0] + t[1]
)
_ints = st.integers(-(2**70), 2**70) | _edge_ints | (_edge_ints.map(lambda n: -n))
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 1e308, 5e-324])
_odd = st.sampled_from([{1, 2}, b"raw", bytearray(b"x"), object(), 1j, dt.timedelta(1), frozenset()])
_dates = st.dates() | st.datetimes(timezones=st.none() | st.timezones() | st.just(dt.UTC))
_scalars = st.none() | st.booleans() | _ints | _floats | _text


def _tree(keys: st.SearchStrategy[Any], leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids) | st.dictionaries(keys, kids, max_size=4),
        max_leaves=12,
    )


_json_values = _tree(_text | st.integers(0, 3) | st.none(), _scalars | _odd | _dates)
_yaml_values = _tree(_text | _ints | _floats | st.booleans() | st.none(), _scalars | _odd | _dates)
_deep = st.integers(390, 410).map(lambda n: _nest(n))


def _nest(n: int) -> Any:
    value: Any = "leaf"
    for _ in range(n):
        value = [value]
    return value


_writes = st.one_of(
    st.tuples(st.just("a.json"), st.none() | st.sampled_from(["k", ("k", "\udcff"), ("n", 3)]), _json_values),
    st.tuples(st.just("a.yaml"), st.none() | st.sampled_from(["k", ("k", "x.y")]), _yaml_values),
    st.tuples(st.just("deep.json"), st.none(), _deep),
    st.tuples(st.just("a.txt"), st.none(), _text | _odd),
    st.tuples(st.just("a.bin"), st.none(), st.binary(max_size=40) | _text),
)


def _same(a: Any, b: Any) -> bool:
    """Equal as stored values: NaN never gets in, so == is exact except for -0.0 vs 0.0 and int vs float."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@settings(
    max_examples=400 if TORTURE else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(writes=st.lists(_writes, min_size=1, max_size=6))
def test_fuzz_every_value_is_refused_or_round_trips(tmp_path_factory: pytest.TempPathFactory, writes: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz")
    accepted: dict[str, Any] = {}
    with make_store(path) as store:
        for doc, key, value in writes:
            try:
                store.set(doc, key, value)
            except EncodeError:
                continue
            except gitstate.KeyNotFound:  # a keyed write into a list or scalar: not a value problem
                continue
            accepted[doc] = store.get(doc)
        store.flush()
        assert store.pending == 0
    with make_store(path) as store:
        for doc, value in accepted.items():
            assert _same(store.get(doc), value), doc
    assert git(path, "status", "--porcelain") == ""
    fsck(path)


def test_fuzz_strategies_reach_both_outcomes(tmp_path: Path) -> None:
    """The fuzzer is only worth something if its values are both refused and accepted (sanity, fixed cases)."""
    with make_store(tmp_path) as store:
        store.set("deep.json", None, _nest(MAX := codecs.MAX_DEPTH))
        with pytest.raises(EncodeError, match="nested deeper"):
            store.set("deep.json", None, _nest(MAX + 1))
        store.flush()
    with make_store(tmp_path) as store:
        assert store.get("deep.json") == _nest(MAX)


def test_the_int_limit_follows_a_lowered_interpreter_limit(tmp_path: Path) -> None:
    """A process running with a lower sys.set_int_max_str_digits() could not write the number: refused too."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        with make_store(tmp_path) as store, pytest.raises(EncodeError, match="640 digits"):
            store.set("a.json", "x", 10**700)
    finally:
        sys.set_int_max_str_digits(old)
