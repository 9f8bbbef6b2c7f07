"""Format-preserving writes (issue 13): a program write changes only the lines of the keys it changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate.codecs import BYTES, JSON, TEXT, YAML
from gitstate.roundtrip import formatting_only, yaml11_to_yaml12

SETTINGS = """\
# Service settings, edited by hand.
# Keep the comments!

name: demo        # shown in the UI
version: 1.10
mode: 0777
country: NO
enabled: yes
hex: 0x1F
quoted: 'single'
dq: "double"

# the servers, primary first
servers:
  - host: a.example   # primary
    port: 80
  - host: b.example
    port: 81

flow: {a: 1, b: [1, 2]}
# about limits
limits:
    cpu: 2
    # memory in MB
    mem: 512
    disk: 10
notes: |
  line one
  line two
tail: end
"""


def over(text: str, change: Any) -> str:
    old = YAML.decode(text.encode())
    new = copy.deepcopy(old)
    change(new)
    out = YAML.encode_over(new, text.encode())
    assert YAML.decode(out) == new
    return out.decode()


def test_untouched_document_keeps_every_byte() -> None:
    assert YAML.encode_over(YAML.decode(SETTINGS.encode()), SETTINGS.encode()) == SETTINGS.encode()


def test_changed_scalar_keeps_its_comment_and_everything_else() -> None:
    out = over(SETTINGS, lambda v: v.update(name="demo2"))
    assert out == SETTINGS.replace("name: demo        #", "name: demo2        #")


def test_changed_quoted_scalars_keep_their_quotes() -> None:
    out = over(SETTINGS, lambda v: v.update(quoted="it's", dq='x"y'))
    assert out == SETTINGS.replace("'single'", "'it''s'").replace('"double"', '"x\\"y"')


def test_untouched_scalars_keep_their_text() -> None:
    out = over(SETTINGS, lambda v: v.update(tail="start"))
    for line in ("version: 1.10", "mode: 0777", "country: NO", "enabled: yes", "hex: 0x1F"):
        assert line in out
    assert out == SETTINGS.replace("tail: end", "tail: start")


def test_nested_change_in_a_sequence_item() -> None:
    out = over(SETTINGS, lambda v: v["servers"][0].update(port=8080))
    assert out == SETTINGS.replace("    port: 80\n", "    port: 8080\n")


def test_flow_collections_stay_flow() -> None:
    out = over(SETTINGS, lambda v: v["flow"]["b"].append(3))
    assert out == SETTINGS.replace("b: [1, 2]}", "b: [1, 2, 3]}")


def test_new_key_goes_at_the_end_of_its_mapping_in_its_indentation() -> None:
    out = over(SETTINGS, lambda v: v["limits"].update(gpu=1))
    assert out == SETTINGS.replace("    disk: 10\n", "    disk: 10\n    gpu: 1\n")
    out = over(SETTINGS, lambda v: v.update(owner={"team": "core"}))
    assert out == SETTINGS + "owner:\n    team: core\n"


def test_deleted_key_takes_its_comment_lines() -> None:
    out = over(SETTINGS, lambda v: v["limits"].pop("mem"))
    assert out == SETTINGS.replace("    # memory in MB\n    mem: 512\n", "")
    out = over(SETTINGS, lambda v: v.pop("servers"))
    assert out == SETTINGS.replace(
        "# the servers, primary first\nservers:\n  - host: a.example   # primary\n    port: 80\n"
        "  - host: b.example\n    port: 81\n",
        "",
    )


def test_list_items_appended_and_removed() -> None:
    out = over(SETTINGS, lambda v: v["servers"].append({"host": "c.example", "port": 82}))
    assert out == SETTINGS.replace("    port: 81\n", "    port: 81\n  - host: c.example\n    port: 82\n")
    out = over(SETTINGS, lambda v: v["servers"].pop())
    assert out == SETTINGS.replace("  - host: b.example\n    port: 81\n", "")


def test_block_scalar_replaced_in_place() -> None:
    out = over(SETTINGS, lambda v: v.update(notes="new one\nnew two\n"))
    assert out == SETTINGS.replace("  line one\n  line two\n", "    new one\n    new two\n")


def test_canonical_file_takes_the_fast_canonical_path() -> None:
    value = {"a": 1, "b": [1, 2]}
    previous = YAML.encode(value)
    assert YAML.encode_over({"a": 2, "b": [1, 2]}, previous) == YAML.encode({"a": 2, "b": [1, 2]})


def test_unparsable_previous_gives_canonical_bytes() -> None:
    assert YAML.encode_over({"a": 1}, b"a: [\n") == YAML.encode({"a": 1})
    assert JSON.encode_over({"a": 1}, b"{") == JSON.encode({"a": 1})


def test_crlf_files_stay_crlf() -> None:
    text = "# c\r\na: 1\r\nb: 2\r\n"
    assert over(text, lambda v: v.update(a=5, c=3)) == "# c\r\na: 5\r\nb: 2\r\nc: 3\r\n"


def test_json_keeps_indentation_and_key_order() -> None:
    previous = b'{\n    "zeta": 1,\n    "alpha": {\n        "x": [1, 2]\n    }\n}\n'
    new = {"alpha": {"x": [1, 2, 3]}, "zeta": 2, "new": True}
    out = JSON.encode_over(new, previous)
    assert (
        out
        == b'{\n    "zeta": 2,\n    "alpha": {\n        "x": [\n            1,\n            2,\n            3\n'
        + (b'        ]\n    },\n    "new": true\n}\n')
    )
    tabs = b'{\n\t"a": 1\n}'
    assert JSON.encode_over({"a": 2}, tabs) == b'{\n\t"a": 2\n}'
    assert JSON.encode_over({"a": 2, "b": 1}, b'{"a": 1}\n') == b'{"a": 2, "b": 1}\n'


def test_formatting_only() -> None:
    assert formatting_only(YAML, b"a: 1\n", b"# note\na:   1\n")
    assert not formatting_only(YAML, b"a: 1\n", b"a: 2\n")
    assert not formatting_only(YAML, b"a: 1\n", b"a: 1\n")
    assert not formatting_only(YAML, b"a: 1\n", b"a: [\n")
    assert formatting_only(JSON, b'{"a": 1}', b'{\n  "a": 1\n}\n')
    assert not formatting_only(TEXT, b"a", b"a ")
    assert not formatting_only(BYTES, b"a", b"b")


def test_yaml11_to_yaml12_converts_only_what_reads_differently() -> None:
    text = "# legacy\ncountry: NO   # Norway\nmode: 0777\nsep: 1_000\nkeep: 0o17\nplain: hello\nversion: 1.10\n"
    out = yaml11_to_yaml12(text)
    assert (
        out == "# legacy\ncountry: false   # Norway\nmode: 511\nsep: 1000\nkeep: '0o17'\nplain: hello\nversion: 1.10\n"
    )
    assert YAML.decode(out.encode()) == {
        "country": False,
        "mode": 511,
        "sep": 1000,
        "keep": "0o17",
        "plain": "hello",
        "version": 1.1,
    }


# ---------------------------------------------------------------------------------------------- properties

_key = st.sampled_from(["name", "port", "NO", "a b", "x", "y", "list", "nested", "é"])
_scalar = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["yes", "NO", "0777", "1.10", "#x", "a: b", "- x", "'q'", "multi\nline\n"]),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_key, inner, max_size=4)),
    max_leaves=12,
)
_doc = st.dictionaries(_key, _value, min_size=1, max_size=6)


def _hand_format(value: Any) -> bytes:
    """The canonical text of ``value``, hand-formatted: a comment above and beside every top-level key."""
    lines = []
    for line in YAML.encode(value).decode().splitlines():
        if line and not line.startswith((" ", "-")):
            lines.append("# about the next key")
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_doc, _doc)
def test_result_always_decodes_to_the_new_value(old: dict[str, Any], new: dict[str, Any]) -> None:
    previous = _hand_format(old)
    assert YAML.decode(YAML.encode_over(new, previous)) == new
    json_previous = JSON.encode(_jsonable(old)).replace(b"  ", b"    ")
    assert JSON.decode(JSON.encode_over(_jsonable(new), json_previous)) == _jsonable(new)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_doc, _key, _scalar)
def test_one_changed_key_changes_only_its_own_lines(old: dict[str, Any], key: str, value: Any) -> None:
    previous = _hand_format(old)
    new = dict(old)
    new[key] = value
    out = YAML.encode_over(new, previous).decode()
    assert YAML.decode(out.encode()) == new
    if key in old and YAML.encode(old) != previous:
        kept = [line for line in previous.decode().splitlines() if line.startswith("#")]
        assert [line for line in out.splitlines() if line.startswith("#")] == kept


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@pytest.mark.parametrize("text", ["a: 1\n", "- 1\n- 2\n", "just a scalar\n", "a: &x [1]\nb: *x\n"])
def test_odd_documents_still_decode_to_the_new_value(text: str) -> None:
    new = {"a": [1, 2], "b": [1]}
    assert YAML.decode(YAML.encode_over(new, text.encode())) == new


def test_replaced_nested_sequence_item_keeps_its_indentation() -> None:
    text = "# lists\nouter:\n    list:\n    -   - 1\n        - 2\n    -   - 35\n        - 400\n        - 370\n"
    text += "    tail: []\n"
    out = over(text, lambda v: v["outer"]["list"][1].pop())
    assert out == text.replace("        - 370\n", "")


def test_block_replacement_moves_the_trailing_comment_to_its_first_line() -> None:
    text = "# c\nx:\n    a: 1\n    b: 0   # note\nz: 1\n"
    assert over(text, lambda v: v.update(x="multi\nline\n")) == "# c\nx: |   # note\n    multi\n    line\nz: 1\n"


def _hand_format_4(value: Any) -> bytes:
    """``value`` as a person might lay it out: 4-space indentation, blank lines and a comment before every
    top-level key, and a comment at the end of simple ``key: value`` lines."""
    import re

    import yaml

    from gitstate.codecs import yaml_dumper

    text = yaml.dump(
        value, Dumper=yaml_dumper(), sort_keys=False, allow_unicode=True, default_flow_style=False, indent=4
    )
    out = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*[A-Za-z_é ]+: [A-Za-z0-9.\-]+", line):
            line += "   # note"
        if line and not line.startswith((" ", "-")):
            out += ["", "# header for the next key"]
        out.append(line)
    return ("\n".join(out) + "\n").encode()


def _paths(value: Any, key: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [key]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*key, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*key, i))
    return out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_doc, st.data())
def test_one_edit_anywhere_keeps_the_comments_of_other_keys(old: dict[str, Any], data: st.DataObject) -> None:
    previous = _hand_format_4(old)
    where = data.draw(st.sampled_from(_paths(old)[1:]))
    new = copy.deepcopy(old)
    parent = new
    for part in where[:-1]:
        parent = parent[part]
    op = data.draw(st.sampled_from(["set", "delete", "add"]))
    if op == "set":
        parent[where[-1]] = data.draw(_scalar)
    elif op == "delete":
        del parent[where[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(_key)] = data.draw(_scalar)
    else:
        parent.append(data.draw(_scalar))
    out = YAML.encode_over(new, previous)
    assert YAML.decode(out) == new
    if new and len(where) > 1:  # an edit below the top level keeps every top-level header comment
        assert out.count(b"# header for the next key") == previous.count(b"# header for the next key")


@pytest.mark.parametrize("value", ["\n", "\n\n", "\n\n  ", "a\n\n", "a\nb", "a\n"])
@pytest.mark.parametrize("where", ["replace a list item", "append to a list", "new nested key", "new top key"])
def test_strings_of_line_breaks_splice_without_losing_comments(value: str, where: str) -> None:
    """Found by the property test below: a string of line breaks alone (or one ending in more than one) made
    PyYAML write a keeping block (``|2+``, then the document end marker ``...``) or quotes over several lines,
    which do not splice into a document, so the whole file went back to the canonical layout and lost every
    comment. Such strings now go in double quotes on one line; other multi-line strings stay literal blocks."""
    old = {"name": None, "port": [0, 0], "sub": {"a": 1}}
    previous = _hand_format_4(old)
    new = {
        "replace a list item": {**old, "port": [value, 0]},
        "append to a list": {**old, "port": [0, 0, value]},
        "new nested key": {**old, "sub": {"a": 1, "b": value}},
        "new top key": {**old, "zz": value},
    }[where]
    out = YAML.encode_over(new, previous)
    assert YAML.decode(out) == new
    assert out.count(b"# header for the next key") == previous.count(b"# header for the next key")
    assert b"\n...\n" not in out
