"""Format-preserving writes: a document's new value written over the bytes a human formatted.

What belongs here: :func:`yaml_encode_over` / :func:`json_encode_over` (behind
:meth:`gitstate.codecs.Codec.encode_over`), :func:`formatting_only` (same value, different bytes) and
:func:`yaml11_to_yaml12` (for ``migrate``). What does not: canonical encoding and decoding (:mod:`gitstate.codecs`),
merging (:mod:`gitstate.merging`), any file I/O.

gitstate splices its own edits into the previous text instead of using ruamel.yaml's round-trip dumper: ruamel
re-emits the whole document (one indentation for the whole file, moved comment columns, re-indented sequences),
which is not byte for byte on hand-formatted files, and is an order of magnitude slower
(``benchmarks/bench_roundtrip.py``). PyYAML's C parser gives every node's exact position; only the entries whose
value changed are re-rendered, and every result is checked to decode to the new value (else the canonical bytes).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Final

from . import codecs as _codecs
from .docdiff import same
from .errors import DecodeError

__all__ = ["formatting_only", "json_encode_over", "yaml11_to_yaml12", "yaml_encode_over"]

logger = logging.getLogger("gitstate.roundtrip")

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_WIDTH: Final = 1 << 20  # never fold a long line


def _decode_or_none(codec: _codecs.Codec, data: bytes) -> tuple[bool, Any]:
    try:
        return True, codec.decode(data)
    except DecodeError:
        return False, None


def formatting_only(codec: _codecs.Codec, old: bytes, new: bytes) -> bool:
    """True when ``old`` and ``new`` are different bytes of the same value: only comments, blank lines, quoting,
    indentation or key layout changed (for messages such as ``settings.yaml: comments and formatting``).

    False for equal bytes, for unstructured codecs (text and raw documents: any byte is content), and when either
    side does not decode.

    Example:
        >>> from gitstate.codecs import YAML
        >>> formatting_only(YAML, b"a: 1\\n", b"# why\\na: 1\\n"), formatting_only(YAML, b"a: 1\\n", b"a: 2\\n")
        (True, False)
    """
    if old == new or not codec.structured:
        return False
    ok_old, v_old = _decode_or_none(codec, old)
    ok_new, v_new = _decode_or_none(codec, new)
    return ok_old and ok_new and same(v_old, v_new)


# ------------------------------------------------------------------------------------------------------ JSON


def json_encode_over(value: Any, previous: bytes) -> bytes:
    """JSON bytes of ``value`` in the layout of ``previous``: its indentation (spaces or tabs, or one line), its
    separators, its key order (new keys after the old ones) and its leading/trailing whitespace.

    ``previous`` in gitstate's canonical layout (or not JSON at all) gives the canonical bytes; a value equal to
    what ``previous`` holds gives ``previous`` itself.

    Example:
        >>> json_encode_over({"b": 2, "a": 1}, b'{\\n    "a": 0,\\n    "b": 2\\n}')
        b'{\\n    "a": 1,\\n    "b": 2\\n}'
    """
    codec = _codecs.JSON
    canonical = codec.encode(value)
    ok, old = _decode_or_none(codec, previous)
    if not ok:
        return canonical
    if same(old, value):
        return previous
    if codec.encode(old) == previous:
        return canonical
    text = previous.decode("utf-8")
    body = text.strip()
    indent: str | None = None
    if "\n" in body:
        m = re.search(r"\n([ \t]+)\S", body)
        indent = m.group(1) if m else ""
    key_sep = ": " if re.search(r'"\s*: ', body) or not re.search(r'"\s*:', body) else ":"
    compact = re.search(r",\S", body) is not None and re.search(r",\s", body) is None
    item_sep = "," if indent is not None or compact else ", "
    out = json.dumps(
        _reorder(value, old),
        indent=indent,
        separators=(item_sep, key_sep),
        ensure_ascii=text.isascii() and "\\u" in text,
        allow_nan=False,
    )
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    result = (lead + out + trail).encode("utf-8")
    return result if _decodes_to(codec, result, value) else canonical


def _reorder(new: Any, old: Any) -> Any:
    """``new`` with its dicts' keys in ``old``'s order where ``old`` has them, new keys after."""
    if isinstance(new, dict) and isinstance(old, dict):
        keys = [k for k in old if k in new] + [k for k in new if k not in old]
        return {k: _reorder(new[k], old.get(k)) for k in keys}
    if isinstance(new, list) and isinstance(old, list):
        return [_reorder(v, old[i] if i < len(old) else None) for i, v in enumerate(new)]
    return new


def _decodes_to(codec: _codecs.Codec, data: bytes, value: Any) -> bool:
    ok, back = _decode_or_none(codec, data)
    if ok and same(back, value):
        return True
    logger.debug("format-preserving %s write did not read back as the value; writing canonical bytes", codec.name)
    return False


# ------------------------------------------------------------------------------------------------------ YAML


def yaml_encode_over(value: Any, previous: bytes) -> bytes:
    """YAML bytes of ``value`` that change only the entries of ``previous`` whose value changed.

    Comments (also one at the end of a changed line), blank lines, key order, quoting, indentation, flow/block
    style and the text of untouched scalars stay byte for byte. A changed scalar is rewritten in place (keeping
    its quote style); a changed collection in block style is updated entry by entry; anything else that changed
    is re-rendered at its place and indentation. New keys go at the end of their mapping, in its indentation; a
    deleted key or list item takes its comment lines (directly above it) with it.

    ``previous`` in gitstate's canonical layout, not YAML, or not shaped for a splice (a scalar document,
    aliases whose edit would change another place) gives the canonical bytes; a value equal to what
    ``previous`` holds gives ``previous`` itself. The result always decodes to ``value``.

    Example:
        >>> yaml_encode_over({"a": 2, "b": "x"}, b"# settings\\na: 1   # why\\nb: 'x'\\n").decode()
        "# settings\\na: 2   # why\\nb: 'x'\\n"
    """
    codec = _codecs.YAML
    try:
        text = previous.decode("utf-8")
    except UnicodeDecodeError:
        return codec.encode(value)
    loader = _codecs.yaml_loader()(text)
    try:
        node = loader.get_single_node()  # one parse gives both the positions and the old value
        if node is None or _codecs.yaml_expanded_size(node) > _codecs.MAX_YAML_NODES:
            return codec.encode(value)
        old = loader.construct_document(node)
        if same(old, value):
            return previous
        # The fast canonical path: a file nobody hand-formatted (no comment can be in it) stays canonical.
        if b"#" not in previous and codec.encode(old) == previous:
            return codec.encode(value)
        splice = _Splice(text, loader)
        if not splice.update(node, old, value):
            return codec.encode(value)
    except Exception as e:  # not YAML, or a node shape this module does not expect: never worse than canonical
        logger.debug("format-preserving YAML write fell back to canonical: %r", e)
        return codec.encode(value)
    finally:
        loader.dispose()
    result = splice.apply().encode("utf-8")
    # A scalar rewritten in place is safe by construction (rendered by the dumper for a flow context, stricter than
    # block) unless an anchor, alias or tag could sit next to it; anything else is checked by reading it back.
    if splice.only_scalars and not any(c in previous for c in (b"&", b"*", b"!")):
        return result
    return result if _decodes_to(codec, result, value) else codec.encode(value)


class _Splice:
    """Edits ``(start, end, replacement)`` of a YAML text, collected while walking its nodes next to the old and
    new values."""

    def __init__(self, text: str, loader: Any) -> None:
        import yaml

        self.text = text
        self.loader = loader
        self.edits: list[tuple[int, int, str]] = []
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.step = 2
        self.yaml = yaml
        #: True while every edit is a scalar rewritten in place on its own line.
        self.only_scalars = True

    def apply(self) -> str:
        """The text with every edit made (edits never overlap)."""
        out: list[str] = []
        pos = 0
        for start, end, repl in sorted(self.edits, key=lambda e: (e[0], e[1])):
            out.append(self.text[pos:start])
            out.append(repl)
            pos = end
        out.append(self.text[pos:])
        return "".join(out)

    # -- walking

    def update(self, node: Any, old: Any, new: Any) -> bool:
        """Record the edits that make ``node`` (whose value is ``old``) hold ``new``; False when only replacing
        ``node`` whole can (the caller does that)."""
        if same(old, new):
            return True
        y = self.yaml
        block = isinstance(node, (y.MappingNode, y.SequenceNode)) and not node.flow_style
        if block and isinstance(node, y.MappingNode) and isinstance(old, dict) and isinstance(new, dict) and new:
            return self._mapping(node, old, new)
        if block and isinstance(node, y.SequenceNode) and isinstance(old, list) and isinstance(new, list) and new:
            return self._sequence(node, old, new)
        return False

    def _mapping(self, node: Any, old: dict[Any, Any], new: dict[Any, Any]) -> bool:
        entries = node.value
        if any(k.tag == _MERGE_TAG or not isinstance(k, self.yaml.ScalarNode) for k, _ in entries):
            return False
        keys = [self.loader.construct_object(k, deep=True) for k, _ in entries]
        if len(keys) != len(old) or any(k not in old for k in keys):
            return False
        col = entries[0][0].start_mark.column
        for (k_node, _), k in zip(entries, keys, strict=True):
            if k not in new and self.text[self._line_start(k_node.start_mark.index) : k_node.start_mark.index].strip():
                return False  # deleting the first key of "- key: value" would take the dash too
        self._learn_step(entries, col)
        for (k_node, v_node), k in zip(entries, keys, strict=True):
            if k not in new:
                self._delete(k_node.start_mark.index, self._end(v_node))
            elif not self.update(v_node, old[k], new[k]):
                self._replace_entry(k, k_node, v_node, new[k], col)
        added = {k: v for k, v in new.items() if k not in old}
        if added:
            self._insert_after(self._end(entries[-1][1]), self._block(added), col)
        return True

    def _sequence(self, node: Any, old: list[Any], new: list[Any]) -> bool:
        items = node.value
        if len(items) != len(old):
            return False
        dashes = [self._dash(item) for item in items]
        if any(d is None for d in dashes):
            return False
        col = node.start_mark.column
        for i, item in enumerate(items):
            if i >= len(new):
                self._delete(dashes[i] or 0, self._end(item))
            elif not self.update(item, old[i], new[i]):
                self._replace_item(item, new[i])
        if len(new) > len(old):
            self._insert_after(self._end(items[-1]), self._block(new[len(old) :]), col)
        return True

    # -- positions

    def _end(self, node: Any) -> int:
        """Where ``node``'s own text ends: a block collection's marks run on to the next token (past comment
        lines), so its last descendant decides; a block scalar's trailing line breaks are not its text."""
        y = self.yaml
        while isinstance(node, (y.MappingNode, y.SequenceNode)) and not node.flow_style and node.value:
            last = node.value[-1]
            node = last[1] if isinstance(node, y.MappingNode) else last
        end: int = node.end_mark.index
        while end > node.start_mark.index and self.text[end - 1] in "\r\n":
            end -= 1
        return end

    def _line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def _line_end(self, index: int) -> int:
        """Index just past the line break of the line holding ``index`` (the text's end on the last line)."""
        at = self.text.find("\n", index)
        return len(self.text) if at < 0 else at + 1

    def _dash(self, item: Any) -> int | None:
        """Index of the ``-`` of a block sequence item, when it is the first thing on its line."""
        j = item.start_mark.index - 1
        while j >= 0 and self.text[j] == " ":
            j -= 1
        if j < 0 or self.text[j] != "-" or self.text[self._line_start(j) : j].strip():
            return None
        return int(j)

    def _learn_step(self, entries: list[tuple[Any, Any]], col: int) -> None:
        """The document's indentation step, from the first nested block mapping seen."""
        for _, v in entries:
            if isinstance(v, self.yaml.MappingNode) and not v.flow_style and v.value:
                step = v.value[0][0].start_mark.column - col
                if 2 <= step <= 9:
                    self.step = step
                return

    # -- edits

    def _delete(self, start: int, end: int) -> None:
        """Remove the lines from ``start`` to ``end`` and the comment lines directly above them."""
        first = self._line_start(start)
        while first > 0:
            above = self._line_start(first - 1)
            if not self.text[above:first].lstrip().startswith("#"):
                break
            first = above
        self.only_scalars = False
        self.edits.append((first, self._line_end(end), ""))

    def _insert_after(self, end: int, lines: list[str], col: int) -> None:
        at = self._line_end(end)
        pad = " " * col
        text = "".join(pad + line + self.nl for line in lines)
        if at == len(self.text) and not self.text.endswith("\n"):
            text = self.nl + text[: -len(self.nl)]
        self.only_scalars = False
        self.edits.append((at, at, text))

    def _replace_entry(self, key: Any, k_node: Any, v_node: Any, new: Any, col: int) -> None:
        inline = self._inline(new, v_node)
        if inline is not None and self._one_line(v_node, k_node.start_mark.line):
            if v_node.start_mark.index == self._end(v_node) and self.text[v_node.start_mark.index - 1] == ":":
                inline = " " + inline  # "key:" held null
            self.edits.append((v_node.start_mark.index, self._end(v_node), inline))
            return
        self._block_edit(k_node.start_mark.index, self._end(v_node), self._block({key: new}), col)

    def _replace_item(self, item: Any, new: Any) -> None:
        inline = self._inline(new, item)
        if inline is not None and self._one_line(item, item.start_mark.line):
            self.edits.append((item.start_mark.index, self._end(item), inline))
            return
        lines = self._block([new])
        lines[0] = lines[0][2:]  # after the item's own "- "; the rest shifts to where the item's text starts
        self._block_edit(item.start_mark.index, self._end(item), lines, item.start_mark.column - 2)

    def _block_edit(self, start: int, end: int, lines: list[str], col: int) -> None:
        """Replace ``start:end`` with ``lines`` (the first in place, the others at column ``col``). A comment
        that ended the old text's last line moves to the end of the first line (where it stays a comment)."""
        self.only_scalars = False
        line_end = self.text.find("\n", end)
        rest = self.text[end : len(self.text) if line_end < 0 else line_end].rstrip("\r")
        if len(lines) > 1 and rest.strip().startswith("#"):
            lines = [lines[0] + rest, *lines[1:]]
            end += len(rest)
        self.edits.append((start, end, self._join(lines, col)))

    def _one_line(self, node: Any, line: int) -> bool:
        end = self._end(node)
        return bool(node.start_mark.line == line and "\n" not in self.text[node.start_mark.index : end])

    def _join(self, lines: list[str], col: int) -> str:
        return (self.nl + " " * col).join(lines)

    # -- rendering

    def _block(self, value: Any) -> list[str]:
        """``value`` (a dict or list) as block YAML lines at column 0, in the document's indentation step."""
        text: str = self.yaml.dump(
            value,
            Dumper=_block_dumper(),
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=_WIDTH,
            indent=2 if isinstance(value, list) else self.step,  # "- key: v" items line up at 2
        )
        return text.splitlines()

    def _inline(self, new: Any, old_node: Any) -> str | None:
        """``new`` as text for one line in place of ``old_node`` (keeping a quoted scalar's quotes), or None when
        it needs lines of its own (a non-empty collection replacing block text, a multi-line string)."""
        y = self.yaml
        if isinstance(new, str) and not new.isprintable():
            # A literal block (``|``) where one can hold it; else YAML's double quotes with escapes on one line
            # (a string of line breaks alone, say, which PyYAML writes as a block that needs the document end
            # marker "..." after it, or as quotes over several lines: neither splices into a document).
            block = self._block([new])
            if block[0].startswith("- |") and "..." not in block:
                return None
            quoted: str = y.dump(
                [new],
                Dumper=_codecs.yaml_dumper(),
                allow_unicode=True,
                default_style='"',
                default_flow_style=True,
                width=_WIDTH,
            ).strip()
            return None if "\n" in quoted else quoted[1:-1]
        if isinstance(new, str) and new != new.strip(" "):
            return json.dumps(new, ensure_ascii=False)
        if isinstance(new, str) and isinstance(old_node, y.ScalarNode) and old_node.style == "'":
            return "'" + new.replace("'", "''") + "'"
        if isinstance(new, str) and isinstance(old_node, y.ScalarNode) and old_node.style == '"':
            return json.dumps(new, ensure_ascii=False)
        is_flow = isinstance(old_node, (y.MappingNode, y.SequenceNode)) and old_node.flow_style
        if isinstance(new, (dict, list)) and new and not is_flow:
            return None
        if isinstance(new, (dict, list)) or not isinstance(old_node, y.ScalarNode):
            self.only_scalars = False
        text: str = y.dump(
            [new], Dumper=_codecs.yaml_dumper(), allow_unicode=True, default_flow_style=True, width=_WIDTH
        )
        flat = text.strip()
        if "\n" in flat:
            return None
        return flat[1:-1]


_block_dumper_cls: Any = None


def _block_dumper() -> Any:
    """gitstate's dumper, writing multi-line strings as literal blocks (``|``) the way people write them."""
    global _block_dumper_cls
    if _block_dumper_cls is None:
        base = _codecs.yaml_dumper()

        class _BlockDumper(base):  # type: ignore[misc,valid-type]
            """Multi-line strings as ``|`` blocks (PyYAML falls back to quotes where a block cannot hold one)."""

        def _str(dumper: Any, data: str) -> Any:
            style = None
            if "\n" in data:
                # A block that keeps trailing line breaks ("|+") would take in the blank lines after it once
                # spliced into a document (and a lone one ends with the document end marker): those strings,
                # and strings of line breaks alone, go in double quotes on one line instead.
                style = "|" if data.strip() and not data.endswith("\n\n") else '"'
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

        _BlockDumper.add_representer(str, _str)
        _block_dumper_cls = _BlockDumper
    return _block_dumper_cls


def yaml11_to_yaml12(text: str) -> str:
    """``text`` (a YAML document written for a YAML 1.1 reader) rewritten so that a YAML 1.2 reader, gitstate
    included, gets the value a 1.1 reader got: only the scalars whose meaning differs change (``NO`` becomes
    ``false``, ``0777`` becomes ``511``, ``1_000`` becomes ``1000``, ``1:30`` becomes ``90``, and a string
    ``0o17`` or ``1e3`` gets quotes); everything else stays byte for byte.

    Raises:
        DecodeError: ``text`` is not YAML (or is refused: an alias bomb, an integer too long to read).

    Example:
        >>> yaml11_to_yaml12("country: NO   # Norway\\nmode: 0777\\n")
        'country: false   # Norway\\nmode: 511\\n'
    """
    import yaml

    data = text.encode("utf-8")
    _codecs.YAML.decode(data)  # the size and alias-bomb guards, and the error a caller can show
    old_meaning = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return yaml_encode_over(old_meaning, data).decode("utf-8")
