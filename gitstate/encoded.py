"""Big JSON documents set whole, kept as the bytes a flush commits until something reads them.

A whole-document ``set()`` of a JSON mapping whose encoding is at least :data:`MIN_BYTES` is not copied: the value
is checked at C speed and kept as :class:`Encoded`, its canonical bytes (exactly what ``JSON.encode`` writes) and
its top-level keys. The checks are those of :meth:`Codec.normalize <gitstate.codecs.Codec.normalize>` on plain
values: orjson refuses non-``str`` keys, subclasses, dates, dataclasses, integers beyond 64 bits, lone surrogates
and deep nesting; :mod:`marshal` refuses every other type that orjson would write (enums, UUIDs, ...); NaN and
infinities, which orjson writes as ``null``, are found in marshal's bytes (:func:`_maybe_not_finite`). A value that
fails any of them takes the usual path (the walk names the fault).

The store decodes the bytes when something reads the document (a fresh value each time, private to its reader),
and a flush describes the change between two such documents by comparing the bytes of each top-level entry
(:func:`describe`), decoding only the entries it lists: a whole-document replace of a 10 MB document skips the
private copy, the deep ``==`` that checks it, and a walk of 100,000 pairs of mappings.

What belongs here: :class:`Encoded`, the checks that let a value be kept so (:func:`keep`, which
``codecs.normalize_whole_json`` calls), and the comparison of two encoded mappings (:func:`describe`). What does
not: where an encoded document lives and when it is decoded (the journal, ``journal.py``), the diff of values
(``docdiff.py``), codecs (``codecs.py``).
"""

from __future__ import annotations

import itertools
import marshal
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from .docdiff import MISSING, Change, KeyRun, quick_diff
from .gcpause import gc_paused

#: From this size of compact encoding on, a whole-document set of a plain JSON mapping is kept encoded.
MIN_BYTES: Final = 1 << 20

#: The options of ``JSON.encode`` (its exact bytes) with orjson's native types sent to ``default`` (none: an error).
OPTIONS: Final = (
    orjson.OPT_INDENT_2
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
#: Between two top-level entries of the canonical layout: a line indented by exactly two spaces that opens a key
#: (deeper lines are indented further, and a JSON string holds no raw newline).
_ENTRY_SEP: Final = b',\n  "'
#: A float in marshal's bytes is ``g`` (``\xe7`` when referenced twice) and 8 little-endian bytes; NaN and the
#: infinities have every exponent bit set: the 7th byte's high nibble and the 8th byte's low 7 bits.
_NOT_FINITE: Final = re.compile(rb"[\xf0-\xff](?<=[g\xe7].{6}[\xf0-\xff])[\x7f\xff]", re.S)


class Encoded:
    """A JSON mapping kept as its canonical bytes (see the module's docstring). Immutable: every reader decodes a
    value of its own.

    Attributes:
        data: the bytes, as ``JSON.encode`` writes the value.
        keys: the mapping's keys, in order.
    """

    __slots__ = ("_parts", "data", "keys")

    def __init__(self, data: bytes, keys: list[str]) -> None:
        self.data = data
        self.keys = keys
        self._parts: list[bytes] | bool | None = None  # False: the bytes do not split

    def value(self) -> dict[str, Any]:
        """A new decoded copy of the mapping."""
        with gc_paused():  # hundreds of thousands of new containers, none in a cycle
            value: dict[str, Any] = orjson.loads(self.data)
        return value

    def parts(self) -> list[bytes] | None:
        """Each top-level entry's bytes (the key without its opening quote, then its value), in key order; None
        when the bytes do not split into one entry per key (then only :meth:`value` serves)."""
        if self._parts is None:
            parts = self.data[5:-3].split(_ENTRY_SEP) if self.keys else []  # between '{\n  "' and '\n}\n'
            self._parts = parts if len(parts) == len(self.keys) else False
        return self._parts if isinstance(self._parts, list) else None

    def entry(self, index: int) -> Any:
        """The decoded value of the entry at ``index``."""
        parts = self.parts()
        assert parts is not None
        return _entry_value(self.keys[index], parts[index])

    def __repr__(self) -> str:
        return f"<Encoded mapping of {len(self.keys)} keys, {len(self.data)} bytes>"


def _entry_value(key: str, part: bytes) -> Any:
    # The part is the key's JSON without its opening quote, ': ', then the value.
    return orjson.loads(part[len(orjson.dumps(key)) + 1 :])


def keep(value: dict[str, Any], data: bytes) -> Encoded | None:
    """``value`` kept as ``data`` (what orjson wrote with :data:`OPTIONS`, so it holds nothing orjson refuses) when
    it holds nothing else orjson would have written, else None (the caller makes its private copy as usual, or its
    walk says what is wrong with the value)."""
    try:
        types = marshal.dumps(value, 4)  # refuses any type but the builtins (subclasses included)
    except (ValueError, TypeError, RecursionError):
        return None
    if _maybe_not_finite(types):
        return None
    return Encoded(data, list(value))


def _maybe_not_finite(types: bytes) -> bool:
    """True when marshal's bytes may hold a NaN or an infinity (orjson writes them as ``null``); a false alarm only
    sends the value down the usual path."""
    return _NOT_FINITE.search(types) is not None


def plain(value: Any) -> Any:
    """``value`` decoded when it is :class:`Encoded`, else itself."""
    return value.value() if type(value) is Encoded else value


def encoded_from(value: Any) -> Encoded | None:
    """An :class:`Encoded` of a store value (already plain JSON) that is a mapping, else None."""
    if type(value) is Encoded:
        return value
    if type(value) is not dict:
        return None
    try:
        return Encoded(orjson.dumps(value, option=OPTIONS), list(value))
    except (TypeError, ValueError, RecursionError):
        return None


class _Entries(Mapping[str, Any]):
    """The entries of an :class:`Encoded` as a read-only mapping that decodes each value it is asked for (what a
    :class:`~gitstate.docdiff.KeyRun` holds)."""

    def __init__(self, doc: Encoded) -> None:
        self._doc = doc
        self._at: dict[str, int] | None = None

    def __getitem__(self, key: str) -> Any:
        if self._at is None:
            self._at = {k: i for i, k in enumerate(self._doc.keys)}
        return self._doc.entry(self._at[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc.keys)

    def __len__(self) -> int:
        return len(self._doc.keys)


def describe(old: Encoded, new: Encoded, *, doc: str, max_changes: int = 64, runs: list[KeyRun]) -> list[Change] | None:
    """The changes from ``old`` to ``new`` as :func:`~gitstate.docdiff.quick_diff` gives them with ``runs``
    (removals, then adds and changes in the new order, each changed entry described as deep as the budget allows,
    past ``max_changes`` the rest as one run of keys), found by comparing the entries' bytes: two entries differ
    exactly when their canonical encodings do. None when either side does not split into entries."""
    old_parts, new_parts = old.parts(), new.parts()
    if old_parts is None or new_parts is None:
        return None
    out: list[Change] = []
    if old.data == new.data:
        return out
    if max_changes <= 0:  # no budget at all: quick_diff reports the document whole
        return [Change(doc, (), "change", old.value(), new.value())]
    old_at: dict[str, int] | None = None
    olds: Sequence[bytes | None]
    if old.keys == new.keys:
        olds = old_parts
    else:
        old_at = {k: i for i, k in enumerate(old.keys)}
        gone = old_at.keys() - set(new.keys)
        out.extend(Change(doc, (k,), "remove", old.entry(i), MISSING) for i, k in enumerate(old.keys) if k in gone)
        olds = [None if i is None else old_parts[i] for i in map(old_at.get, new.keys)]
    changed = list(itertools.compress(itertools.count(), map(operator.ne, olds, new_parts)))
    for n, at in enumerate(changed):
        if len(out) >= max_changes:
            rest = list(map(new.keys.__getitem__, changed[n:]))
            runs.append(KeyRun(doc, (), rest, _Entries(old), _Entries(new)))
            break
        key = new.keys[at]
        if olds[at] is None:
            out.append(Change(doc, (key,), "add", MISSING, new.entry(at)))
            continue
        before = old.entry(at if old_at is None else old_at[key])
        inner: list[KeyRun] = []
        listed = quick_diff(before, new.entry(at), doc=doc, max_changes=max_changes - len(out), copy=False, runs=inner)
        out.extend(Change(doc, (key, *c.key), c.op, c.old, c.new) for c in listed)
        runs.extend(KeyRun(doc, (key, *r.key), r.keys, r.old, r.new) for r in inner)
    return out


__all__ = ["MIN_BYTES", "OPTIONS", "Encoded", "describe", "encoded_from", "keep", "plain"]
