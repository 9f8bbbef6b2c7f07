"""YAML documents are read and written with YAML 1.2 core-schema scalars (issue 13)."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gitstate.codecs import YAML


def test_yaml11_booleans_stay_strings() -> None:
    text = b"country: NO\nanswer: yes\nlight: on\ndark: off\nshort: y\nn: n\nreal: true\nfake: False\n"
    assert YAML.decode(text) == {
        "country": "NO",
        "answer": "yes",
        "light": "on",
        "dark": "off",
        "short": "y",
        "n": "n",
        "real": True,
        "fake": False,
    }


def test_numbers_mean_what_a_yaml12_reader_says() -> None:
    text = b"mode: 0777\noct: 0o17\nhex: 0x1F\nversion: 1.10\nexp: 1e3\nsep: 1_000\nsexa: 1:30\nbin: 0b101\n"
    assert YAML.decode(text) == {
        "mode": 777,
        "oct": 15,
        "hex": 31,
        "version": 1.1,
        "exp": 1000.0,
        "sep": "1_000",
        "sexa": "1:30",
        "bin": "0b101",
    }


def test_nulls_dates_and_merge_keys_still_read() -> None:
    text = b"a: ~\nb: null\nc:\nd: 2001-12-14\nbase: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n"
    value = YAML.decode(text)
    assert value["a"] is None and value["b"] is None and value["c"] is None
    assert str(value["d"]) == "2001-12-14"
    assert value["m"] == {"x": 1, "y": 2}


def test_encoder_quotes_what_either_reader_would_misread() -> None:
    value = {k: k for k in ("NO", "yes", "on", "y", "N", "0o17", "1e3", "0777", "1_000", "1:30", "null", "~")}
    out = YAML.encode(value)
    assert YAML.decode(out) == value
    assert yaml.load(out, Loader=yaml.SafeLoader) == value  # an old YAML 1.1 reader sees strings too


def test_encoded_numbers_and_booleans_stay_plain() -> None:
    assert YAML.encode({"a": 1.1, "b": 777, "c": True, "d": None}) == b"a: 1.1\nb: 777\nc: true\nd: null\n"


_scalar = st.one_of(
    st.text(alphabet=st.sampled_from("yYnNoOeE0179._:+-xabtrufl ~"), max_size=6),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@given(st.dictionaries(st.text(max_size=5), _scalar, max_size=6))
def test_any_scalar_reads_back_as_written(value: dict[str, object]) -> None:
    assert YAML.decode(YAML.encode(value)) == value
    assert yaml.load(YAML.encode(value), Loader=yaml.SafeLoader) == value
