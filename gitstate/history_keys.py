"""Keys in the history index: the index form of a commit's key-level changes, and matching a queried key
against it.

What belongs here: encoding a commit's changes for its index line (capped, collapsed to common prefixes when
large), parsing them back, and deciding whether a stored key relates to a queried one. What does not: the index
file and the walks (:mod:`gitstate.history_index`), diffing documents (:mod:`gitstate.docdiff`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from .codecs import copy_value
from .keys import Key

if TYPE_CHECKING:
    from . import docdiff

__all__ = [
    "AMBIGUOUS",
    "DEFINITE",
    "NONE",
    "KeyProbe",
    "change_from_item",
    "encode_changes",
    "intlike",
    "keys_json",
    "parsed_keys",
    "relation",
]

_MAX_KEYS_PER_COMMIT: Final = 64


_MAX_PART_CHARS: Final = 200


_MAX_VALUE_BYTES: Final = 256


#: How a stored key relates to a queried one (:func:`relation`).
NONE, DEFINITE, AMBIGUOUS = 0, 1, 2


def _part_json(part: Any) -> str | int:
    if isinstance(part, str) or (isinstance(part, int) and not isinstance(part, bool)):
        return part
    from . import docdiff  # only YAML scalar keys (bool, float, None, dates) get here

    return docdiff.format_key((part,)).strip('"')


def _small_json(value: Any) -> bool:
    """True if ``value`` is plain JSON (no dates, NaN, non-str keys or huge ints) and small enough to keep.

    A loop over a stack, not a recursive inner function: such a function refers to itself through its closure,
    so every call left a reference cycle that only the cyclic collector frees, and a walk that indexes a long
    history runs with the collector paused (the first ``log --json`` of 100,000 commits held ~800,000 of them)."""
    budget = 64  # values looked at, containers and their items alike
    stack = [value]
    while stack:
        v = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not -(2**63) <= v < 2**63:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif t is list or t is dict:
            if len(v) > budget:  # each item costs at least one
                return False
            if t is dict:
                if any(type(k) is not str for k in v):
                    return False
                stack.extend(v.values())
            else:
                stack.extend(v)
        else:
            return False
    return len(orjson.dumps(value)) <= _MAX_VALUE_BYTES


def _encode_parts(key: tuple[Any, ...]) -> tuple[list[str | int], bool]:
    """JSON-safe key parts, cut before the first part too long to keep; True if it was cut."""
    parts: list[str | int] = []
    for p in key:
        jp = _part_json(p)
        if isinstance(jp, str) and len(jp) > _MAX_PART_CHARS:
            return parts, True
        parts.append(jp)
    return parts, False


def encode_changes(changes: Sequence[docdiff.Change | docdiff.KeyRun]) -> list[list[Any]]:
    """Index form of a commit's changes: ``[doc, parts, op]`` plus ``old, new`` when both are small.

    Past :data:`_MAX_KEYS_PER_COMMIT` changes, or with a huge key part, keys are collapsed to their shortest
    distinct prefixes that fit the cap (op ``"*"``: "something at or below this key changed").

    ``changes`` may hold :class:`~gitstate.docdiff.KeyRun` items where :func:`~gitstate.docdiff.quick_diff` put
    them (the counted rest of a big mapping): the result is the same as for the changes each stands for, and a
    run past the cap is collapsed without building them."""
    from .docdiff import KeyRun  # loaded by whoever made the changes (`status` never loads docdiff)

    if sum(len(p.keys) if isinstance(p, KeyRun) else 1 for p in changes) <= _MAX_KEYS_PER_COMMIT:
        listed = [c for p in changes for c in (p.changes() if isinstance(p, KeyRun) else (p,))]
        items: list[list[Any]] = []
        for ch in listed:
            parts, cut = _encode_parts(ch.key)
            if cut:
                break
            item: list[Any] = [ch.doc, parts, ch.op]
            if (ch.op == "add" or _small_json(ch.old)) and (ch.op == "remove" or _small_json(ch.new)):
                item += [None if ch.op == "add" else ch.old, None if ch.op == "remove" else ch.new]
            items.append(item)
        else:
            return items
    # Collapse: the deepest level whose distinct prefixes fit the cap (each deeper level's count stops as soon as
    # it passes the cap, so 100,000 keys cost one pass, not one per level), then encode only the few keys kept.
    pieces = [p if isinstance(p, KeyRun) else (p.doc, p.key) for p in changes]
    depth = max((len(p[1]) if isinstance(p, tuple) else len(p.key) + 1 for p in pieces), default=0)
    seen: dict[tuple[str, tuple[Any, ...]], None] | None = None
    while depth > 0 and seen is None:
        seen = _prefixes_within_cap(pieces, depth)
        depth -= 1
    if seen is None:  # whole documents (more documents than the cap: still exact per document)
        seen = dict.fromkeys((d, ()) for d in dict.fromkeys(p.doc for p in changes))
    out: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
    for d, k in seen:
        parts, _ = _encode_parts(k)
        out.setdefault((d, tuple(parts)), [d, parts, "*"])
    return list(out.values())


def _prefixes_within_cap(
    pieces: list[tuple[str, tuple[Any, ...]] | docdiff.KeyRun], depth: int
) -> dict[tuple[str, tuple[Any, ...]], None] | None:
    """The distinct ``(doc, key[:depth])`` of ``pieces`` in order (a run's keys each one level below its mapping),
    or None as soon as there are more than the cap."""
    seen: dict[tuple[str, tuple[Any, ...]], None] = {}
    for p in pieces:
        if isinstance(p, tuple):
            seen[p[0], p[1][:depth]] = None
        elif depth <= len(p.key):
            seen[p.doc, p.key[:depth]] = None
        elif len(seen) + len(p.keys) > _MAX_KEYS_PER_COMMIT:  # its keys are distinct, and new to `seen`
            return None
        else:
            seen.update(((p.doc, (*p.key, k)), None) for k in p.keys)
        if len(seen) > _MAX_KEYS_PER_COMMIT:
            return None
    return seen


def keys_json(items: list[list[Any]]) -> str:
    """Keys are kept as a JSON string inside the line: loading the index then builds one object per commit
    instead of dozens, and only key queries parse them (3.5x faster loads of 10,000 commits)."""
    return orjson.dumps(items).decode()


def parsed_keys(e: dict[str, Any]) -> list[list[Any]] | None:
    """The entry's keys, parsed on first use (the raw JSON string stays for :class:`KeyProbe`)."""
    parsed = e.get("_kp")
    if parsed is not None:
        return parsed  # type: ignore[no-any-return]
    k = e.get("k")
    if isinstance(k, str):
        try:
            k = orjson.loads(k)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(k, list):
        return None
    e["_kp"] = k
    return k


class KeyProbe:
    """A conservative test on an entry's raw key JSON: False only if no stored key can relate to ``key``.

    A stored key relates to the query if one is a prefix of the other (string-wise), or through a list shift
    at an integer part. So when the query has no integer-like part and the JSON token of its part ``i`` is
    absent, only a stored key equal to a prefix ``key[:j]`` (``j <= i``) can still relate, and its exact JSON
    array must appear. This skips parsing the keys of nearly every commit of a long history.
    """

    def __init__(self, key: Key) -> None:
        self.usable = bool(key) and not any(intlike(p) for p in key)
        tokens = [orjson.dumps(p).decode() for p in key] if self.usable else []
        prefixes = [orjson.dumps(list(key[:j])).decode() for j in range(len(key))] if self.usable else []
        # (token i, the prefixes key[:j] for j <= i), for C-level checks: this runs once per commit of the history
        self.steps = [(token, tuple(prefixes[: i + 1])) for i, token in enumerate(tokens)]

    def may_match(self, e: dict[str, Any]) -> bool:
        raw = e.get("k")
        if not self.usable or type(raw) is not str:
            return True
        for token, prefixes in self.steps:
            if token not in raw:
                # A loop, not any(map(raw.__contains__, ...)) nor a generator: this runs once per commit of the
                # history, and a bound method (or a generator) made per call cost more than the search itself.
                for prefix in prefixes:  # noqa: SIM110
                    if prefix in raw:
                        return True
                return False
        return True


def change_from_item(it: list[Any]) -> docdiff.Change:
    from . import docdiff

    doc, parts, op, old, new = it
    return docdiff.Change(
        doc,
        tuple(parts),
        op,
        docdiff.MISSING if op == "add" else copy_value(old),
        docdiff.MISSING if op == "remove" else copy_value(new),
    )


def intlike(part: Any) -> bool:
    if isinstance(part, int) and not isinstance(part, bool):
        return True
    return isinstance(part, str) and part.lstrip("-").isdigit()


def relation(stored: list[Any], op: str, query: Key) -> int:
    """How a changed key relates to a queried key: no overlap, surely changed, or must be checked."""
    n = min(len(stored), len(query))
    for i in range(n):
        s, q = stored[i], query[i]
        if s == q or str(s) == str(q):
            continue
        # An item added or removed earlier in a list shifts the items after it.
        if len(stored) == i + 1 and op in ("add", "remove", "*") and intlike(s) and intlike(q) and int(q) >= int(s):
            return AMBIGUOUS
        return NONE
    if len(query) > len(stored):
        return AMBIGUOUS  # a change higher up (whole document, parent mapping) may or may not touch the key
    if op == "remove" and any(intlike(p) for p in stored[: len(query)]):
        return AMBIGUOUS  # a removal names the old list index; the query means the current one
    return DEFINITE
