"""Codecs: canonical bytes, safe YAML, values that cannot be stored (gitstate.codecs)."""

from __future__ import annotations

import datetime as dt
import enum
import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import YAML_ALIAS_BOMB
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate import codecs
from gitstate.codecs import BYTES, JSON, MAX_YAML_NODES, TEXT, YAML, codec_for, copy_value
from gitstate.errors import DecodeError, EncodeError, GitStateError


@pytest.mark.parametrize(
    ("doc", "name"),
    [
        ("state.json", "json"),
        ("a/b.JSON", "json"),
        ("m.yaml", "yaml"),
        ("m.yml", "yaml"),
        ("M.YML", "yaml"),
        ("notes.txt", "text"),
        ("README.md", "text"),
        ("blob.bin", "bytes"),
        ("noext", "bytes"),
        (".hidden", "bytes"),
        ("dir.json/file", "bytes"),
        ("x.json.gz", "bytes"),
    ],
)
def test_codec_for_suffix(doc: str, name: str) -> None:
    assert codec_for(doc).name == name


def test_structured_flags() -> None:
    assert JSON.structured and YAML.structured
    assert not TEXT.structured and not BYTES.structured


# ----------------------------------------------------------------------------- JSON
def test_json_layout_is_canonical() -> None:
    value = {"b": 1, "a": [1, 2, {"c": None}], "é": "ü", "t": True, "f": 1.5, "empty": {}, "el": []}
    out = JSON.encode(value)
    assert out == (
        b'{\n  "b": 1,\n  "a": [\n    1,\n    2,\n    {\n      "c": null\n    }\n  ],\n'
        b'  "\xc3\xa9": "\xc3\xbc",\n  "t": true,\n  "f": 1.5,\n  "empty": {},\n  "el": []\n}\n'
    )
    assert JSON.encode(JSON.decode(out)) == out


def test_json_key_order_is_kept() -> None:
    value = {k: i for i, k in enumerate(["zeta", "alpha", "mid", "beta"])}
    assert list(JSON.decode(JSON.encode(value))) == ["zeta", "alpha", "mid", "beta"]


def test_json_big_integers_use_the_same_layout() -> None:
    value = {"a": [1, {"b": 2**70}], "c": "é"}
    out = JSON.encode(value)
    assert out == JSON.encode({"a": [1, {"b": 1}], "c": "é"}).replace(b'"b": 1', b'"b": ' + str(2**70).encode())
    assert JSON.decode(out) == value


def test_json_decode_error_has_line_and_column() -> None:
    with pytest.raises(DecodeError) as info:
        JSON.decode(b'{\n  "a": 1,\n  "b": \n}\n', "state.json")
    e = info.value
    assert isinstance(e, ValueError) and isinstance(e, GitStateError)
    assert e.doc == "state.json"
    assert e.line == 4
    assert e.column is not None
    assert "state.json:4" in str(e)


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe{}", b"[1,]"])
def test_json_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        JSON.decode(data, "x.json")


@pytest.mark.parametrize("data", [b'{"a": NaN}', b"[Infinity]", b"-Infinity"])
def test_json_nan_in_a_file_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        JSON.decode(data, "x.json")


@pytest.mark.parametrize("n", [2**64, 2**64 + 1, -(2**63) - 1, 10**30 + 7])
def test_json_big_integers_round_trip_exactly(n: int) -> None:
    out = JSON.encode(JSON.normalize({"n": n}, "big.json"))
    back = JSON.decode(out, "big.json")
    assert back == {"n": n} and type(back["n"]) is int


def test_json_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        JSON.decode(b"[" * 100_000 + b"]" * 100_000, "deep.json")


BAD_JSON_VALUES: list[Any] = [
    {1, 2},
    object(),
    float("nan"),
    float("inf"),
    -float("inf"),
    b"bytes",
    bytearray(b"x"),
    {1: "int key"},
    {("t",): "tuple key"},
    {None: 1},
    {"a": [1, {"b": {2, 3}}]},
    {"when": dt.date(2024, 1, 1)},
    {"when": dt.datetime(2024, 1, 1)},
    complex(1, 2),
    {"x": {"y": [math.nan]}},
]


@pytest.mark.parametrize("value", BAD_JSON_VALUES, ids=lambda v: type(v).__name__)
def test_json_refuses_values_it_cannot_store(value: Any) -> None:
    with pytest.raises(EncodeError) as info:
        JSON.normalize(value, "state.json", ("k",))
    assert isinstance(info.value, TypeError)
    assert "state.json" in str(info.value)


def test_json_error_names_where() -> None:
    with pytest.raises(EncodeError, match=r"a\.1\.b"):
        JSON.normalize({"a": [0, {"b": {1}}]}, "s.json")


def test_too_deep_values_are_refused() -> None:
    v: Any = 1
    for _ in range(600):
        v = [v]
    with pytest.raises(EncodeError, match="deeper"):
        JSON.normalize(v, "s.json")


def test_normalize_returns_a_private_copy_and_tuples_become_lists() -> None:
    inner = [1, 2]
    value: dict[str, Any] = {"a": inner, "t": (1, (2, 3))}
    out = JSON.normalize(value, "s.json")
    assert out == {"a": [1, 2], "t": [1, [2, 3]]}
    inner.append(3)
    value["b"] = 1
    assert out == {"a": [1, 2], "t": [1, [2, 3]]}


def test_copy_value_is_deep() -> None:
    v: dict[str, Any] = {"a": [{"b": 1}], "c": "s"}
    c = copy_value(v)
    assert c == v
    c["a"][0]["b"] = 2
    assert v["a"][0]["b"] == 1


# ----------------------------------------------------------------------------- YAML
def test_yaml_uses_the_c_loader_and_dumper() -> None:
    assert yaml.__with_libyaml__
    _, loader, dumper = codecs._yaml_api()
    assert issubclass(loader, yaml.CSafeLoader)  # with YAML 1.2 core resolvers
    assert issubclass(dumper, yaml.CSafeDumper)


def test_yaml_layout_is_canonical_and_ordered() -> None:
    value = {"zeta": 1, "alpha": [1, "two", {"x": None}], "t": True, "s": "yes", "n": "1", "u": "é"}
    out = YAML.encode(value)
    assert YAML.decode(out) == value
    assert list(YAML.decode(out)) == ["zeta", "alpha", "t", "s", "n", "u"]
    assert YAML.encode(YAML.decode(out)) == out
    assert "é" in out.decode()
    assert out.startswith(b"zeta: 1\nalpha:\n")


def test_yaml_never_writes_aliases() -> None:
    shared = {"a": [1, 2, 3]}
    out = YAML.encode({"x": shared, "y": shared})
    assert b"&" not in out and b"*" not in out
    assert YAML.decode(out) == {"x": shared, "y": shared}


def test_yaml_dates_and_scalar_keys() -> None:
    value = {"when": dt.date(2024, 5, 1), "at": dt.datetime(2024, 5, 1, 12, 30), 1: "one", 2.5: "f", None: "n"}
    assert YAML.normalize(value, "m.yaml") == value
    assert YAML.decode(YAML.encode(value)) == value


def test_yaml_empty_document() -> None:
    assert YAML.decode(b"") is None
    assert YAML.decode(b"# only a comment\n") is None
    assert YAML.encode(None) == b""


@pytest.mark.parametrize("value", [{1, 2}, object(), float("nan"), b"x", {"a": {(1, 2): 3}}])
def test_yaml_refuses_values_it_cannot_store(value: Any) -> None:
    with pytest.raises(EncodeError):
        YAML.normalize(value, "m.yaml")


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    t0 = time.perf_counter()
    with pytest.raises(DecodeError, match="alias"):
        YAML.decode(YAML_ALIAS_BOMB, "bomb.yaml")
    assert time.perf_counter() - t0 < 2.0


def test_yaml_recursive_alias_is_refused() -> None:
    with pytest.raises(DecodeError):
        YAML.decode(b"a: &a [*a, 1]\n", "rec.yaml")


def test_yaml_small_aliases_are_fine() -> None:
    data = b"base: &base {x: 1, y: 2}\nother:\n  <<: *base\n  y: 3\nlist: [*base, *base]\n"
    assert YAML.decode(data, "ok.yaml") == {
        "base": {"x": 1, "y": 2},
        "other": {"x": 1, "y": 3},
        "list": [{"x": 1, "y": 2}, {"x": 1, "y": 2}],
    }


def test_yaml_alias_limit_is_exact_enough() -> None:
    # Just under the limit parses; the node count of a flat list is 1 + its items.
    ok = b"a: &a [" + b",".join([b"1"] * 1000) + b"]\nb: [" + b",".join([b"*a"] * 150) + b"]\n"
    assert len(YAML.decode(ok, "ok.yaml")["b"]) == 150
    too_big = b"a: &a [" + b",".join([b"1"] * 1000) + b"]\nb: [" + b",".join([b"*a"] * 250) + b"]\n"
    assert MAX_YAML_NODES < 250 * 1001
    with pytest.raises(DecodeError):
        YAML.decode(too_big, "big.yaml")


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "x: !!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "x: !!python/name:os.system",
        "!!python/object/apply:subprocess.check_output [['touch', '{marker}']]",
    ],
)
def test_yaml_unsafe_tags_are_refused_and_nothing_runs(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(DecodeError):
        YAML.decode(payload.format(marker=marker).encode(), "evil.yaml")
    assert not marker.exists()


def test_yaml_decode_error_position() -> None:
    with pytest.raises(DecodeError) as info:
        YAML.decode(b"a: 1\nb: [1, 2\nc: 3\n", "m.yaml")
    assert info.value.line is not None and info.value.line >= 2


def test_yaml_invalid_utf8() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        YAML.decode(b"a: \xff\n", "m.yaml")


# ----------------------------------------------------------------------------- text and bytes
def test_text_codec() -> None:
    assert TEXT.encode("héllo\n") == "héllo\n".encode()
    assert TEXT.decode("héllo\n".encode(), "n.md") == "héllo\n"
    assert TEXT.normalize("x", "n.md") == "x"
    with pytest.raises(EncodeError):
        TEXT.normalize(b"bytes", "n.md")
    with pytest.raises(EncodeError):
        TEXT.normalize({"a": 1}, "n.md")
    with pytest.raises(EncodeError):
        TEXT.normalize("x", "n.md", ("key",))
    with pytest.raises(DecodeError):
        TEXT.decode(b"\xff", "n.md")


def test_bytes_codec() -> None:
    raw = bytes(range(256))
    assert BYTES.encode(raw) == raw
    assert BYTES.decode(raw, "b.bin") == raw
    assert BYTES.normalize(bytearray(b"ab"), "b.bin") == b"ab"
    assert type(BYTES.normalize(memoryview(b"ab"), "b.bin")) is bytes
    with pytest.raises(EncodeError):
        BYTES.normalize("str", "b.bin")
    with pytest.raises(EncodeError):
        BYTES.normalize(b"x", "b.bin", ("k",))


# ----------------------------------------------------------------------------- properties
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"]), max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_json_round_trip_is_exact_and_stable(value: Any) -> None:
    norm = JSON.normalize(value, "p.json")
    out = JSON.encode(norm)
    back = JSON.decode(out, "p.json")
    assert back == norm
    assert JSON.encode(back) == out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_yaml_round_trip_is_exact_and_stable(value: Any) -> None:
    norm = YAML.normalize(value, "p.yaml")
    out = YAML.encode(norm)
    back = YAML.decode(out, "p.yaml")
    assert back == norm
    assert YAML.encode(back) == out


# ----------------------------------------------------------------------------- normalize's C-speed copy
class _Colour(enum.Enum):
    RED = 1


class _Tag(str):
    pass


class _Count(int):
    pass


_ODD_SCALARS = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        True,
        1,
        1.0,
        2**70,
        "\udcff",
        "é",
        _Colour.RED,
        _Tag("t"),
        _Count(3),
        uuid.UUID(int=1),
        dt.date(2024, 5, 1),
        dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC),
        b"raw",
    ]
)
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), _ODD_SCALARS)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.integers(), st.sampled_from([_Tag("k"), True])), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


def _exactly(v: Any) -> Any:
    """A form of a normalized value in which every type shows (1, 1.0 and True differ; NaN equals itself)."""
    if isinstance(v, dict):
        return ("dict", [(type(k).__name__, k, _exactly(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", [_exactly(x) for x in v])
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    return (type(v).__name__, repr(v))


@pytest.mark.parametrize("codec", [JSON, YAML], ids=["json", "yaml"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.dictionaries(st.text(max_size=4), _VALUES, max_size=4), st.lists(_VALUES, max_size=4)))
def test_normalize_fast_copy_equals_the_walk(codec: Any, value: Any) -> None:
    """normalize's orjson copy gives exactly what the walk gives, or leaves the value to the walk (which then
    accepts or refuses it with its own message)."""
    try:
        walked = codec._norm(value, "d", (), 0)
    except EncodeError as e:
        with pytest.raises(EncodeError) as got:
            codec.normalize(value, "d")
        assert str(got.value) == str(e)
        return
    fast = codecs._plain_copy(value, 0)
    if fast is not None:
        assert _exactly(fast) == _exactly(walked)
    assert _exactly(codec.normalize(value, "d")) == _exactly(walked)


def test_normalize_copy_is_private_and_plain() -> None:
    value = {"a": [1, {"b": "c"}], "n": None, "f": -0.0}
    out = JSON.normalize(value, "d.json")
    assert out == value and out is not value and out["a"] is not value["a"] and out["a"][1] is not value["a"][1]
    assert math.copysign(1.0, out["f"]) == -1.0
    for odd in ({"x": math.nan}, {"x": (1, 2)}, {"x": _Colour.RED}, [uuid.UUID(int=1)]):
        assert codecs._plain_copy(odd, 0) is None  # written by orjson, but not as the walk would keep them
