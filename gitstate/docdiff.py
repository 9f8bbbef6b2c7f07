"""Structured diffs, text diffs and three-way merges of document values.

Everything here is pure: no I/O and no imports from the rest of :mod:`gitstate`. Values are "JSON-like":
``dict`` (``str`` keys; YAML documents may also have ``int``/``float``/``bool``/``None`` keys), ``list``,
``str``, ``int``, ``float``, ``bool``, ``None`` and, in YAML, ``datetime.date``/``datetime.datetime``. Text
documents are ``str`` and raw documents ``bytes``; both are compared as a whole.

What belongs here: key-level diffs (:func:`diff`, :func:`quick_diff`, :class:`Change`, :class:`KeyRun`,
:func:`apply_changes`), strict equality and copies of values (:func:`same`, :func:`copy_json`, :func:`kind_of`),
rendering keys and values (:func:`format_key`, :func:`format_value`, :func:`jsonable`) and text diffs
(:func:`diff_text`). What does not:
three-way merges (:mod:`gitstate.merging`), commit messages (:mod:`gitstate.messages`), key paths and writes into
values (:mod:`gitstate.keys`), encoding (:mod:`gitstate.codecs`), reading documents from history
(:mod:`gitstate.history`).

A *key* is a tuple of parts: ``str`` (or the YAML scalar itself) for mapping keys, ``int`` for list indices.
``()`` means the whole document. :data:`MISSING` stands for "absent" (a document or key that does not exist).

Main entry points:

* :func:`diff` gives key-level :class:`Change` records; :func:`apply_changes` replays them.
* :func:`format_key` / :func:`format_value` render keys and values (commit-message lines are
  :func:`gitstate.messages.summarize`).
* :func:`diff_text` gives a git-style unified diff of two texts.
* :func:`merge3` / :func:`merge_text3` do key-level and line-level three-way merges (they live in
  :mod:`gitstate.merging` and are re-exported here).

Types are compared strictly (see :func:`same`): ``True`` is not ``1`` and ``1`` is not ``1.0`` here, unlike
Python's ``==``.

Example:
    >>> [c.to_dict() for c in diff({"a": 1}, {"a": 2}, doc="s.json")]
    [{'doc': 's.json', 'key': ['a'], 'op': 'change', 'old': 1, 'new': 2}]
"""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import json
import logging
import marshal
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:  # served by __getattr__ below
    from .merging import Conflict, MergeConflictError, MergeResult, merge3, merge_text3

__all__ = [
    "MISSING",
    "Change",
    "Conflict",
    "Key",
    "KeyRun",
    "MergeConflictError",
    "MergeResult",
    "apply_changes",
    "diff",
    "diff_text",
    "format_key",
    "format_value",
    "merge3",
    "merge_text3",
    "quick_diff",
    "same",
]

logger = logging.getLogger("gitstate.docdiff")

#: A key path: ``str`` parts for mapping keys, ``int`` parts for list indices; ``()`` is the whole document.
#:
#: Example:
#:     >>> key: Key = ("tasks", 3, "status")
Key: TypeAlias = tuple[str | int, ...]

_OPS: Final = frozenset({"add", "remove", "change"})


class _MissingType:
    """Type of :data:`MISSING`; there is only ever one instance (it survives copy and pickle)."""

    _instance: _MissingType | None = None
    __slots__ = ()

    def __new__(cls) -> _MissingType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _MissingType:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _MissingType:
        return self


#: Sentinel meaning "absent": a document or key that does not exist. Falsy; ``repr`` is ``MISSING``.
#:
#: Example:
#:     >>> diff(MISSING, {"a": 1}, doc="t.json")[0].op
#:     'add'
MISSING: Final = _MissingType()


# ------------------------------------------------------------------------------------------------------------
# Value helpers
# ------------------------------------------------------------------------------------------------------------


def kind_of(value: Any) -> str:
    """Strict category of a value: booleans, ints, floats, dates and datetimes are all different kinds."""
    if value is None:
        return "null"
    if value is MISSING:
        return "missing"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, _dt.datetime):
        return "datetime"
    if isinstance(value, _dt.date):
        return "date"
    return "other:" + type(value).__qualname__


def copy_json(value: Any) -> Any:
    """Deep copy tuned for JSON-like values (much faster than :func:`copy.deepcopy` on dict/list trees)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bytes, _dt.date, _MissingType)):
        return value
    if isinstance(value, tuple):
        return tuple(copy_json(v) for v in value)
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return copy.deepcopy(value)


def _canon(value: Any) -> bytes | str:
    """Canonical form of a value: equal forms mean :func:`same` values (the converse fails on key order, and on a
    tuple against a list).

    ``marshal`` format 0 (no interning flags or back-references, so it depends only on values and exact types)
    is several times faster than ``repr``; values it cannot take (dates, subclasses) fall back to ``repr``.
    ``repr`` and ``marshal`` both tell ``True``/``1``/``1.0`` apart, which ``==`` does not.
    """
    try:
        return marshal.dumps(value, 0)
    except ValueError:
        return repr(value)


def _may_hold_nan(value: Any) -> bool:
    """False when ``value`` surely holds no float NaN (NaN makes ``==`` report a false difference)."""
    form = _canon(value)
    if isinstance(form, bytes):
        return b"nan" in form
    return "nan" in form


def _same_dict_keys(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    """True when ``a`` and ``b`` (already known equal as key sets) use keys of the same kinds."""
    b_keys = {k: k for k in b}
    return all(k in b_keys and kind_of(b_keys[k]) == kind_of(k) for k in a)


def _fast_same(a: Any, b: Any) -> bool:
    """Sound but incomplete :func:`same`: True means same; False may be wrong only for NaN inside containers.

    Used where a false "different" is harmless because the caller then recurses (it is cheaper: unequal
    containers are rejected by C-level ``==`` without serializing them).
    """
    if a is b:
        return True
    kind = kind_of(a)
    if kind != kind_of(b):
        return False
    if kind == "float":
        return bool(a == b) or (math.isnan(a) and math.isnan(b))
    if kind in ("dict", "list"):
        if len(a) != len(b) or a != b:
            return False
        # ``==`` ignores bool/int/float differences; equal canonical forms rule them out (they also differ on
        # key order, in which case the slow walk decides).
        return _canon(a) == _canon(b) or _walk_same(a, b, kind, _fast_same)
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic values with a raising __eq__
        return False


def _walk_same(a: Any, b: Any, kind: str, child_same: Any) -> bool:
    if len(a) != len(b):
        return False
    if kind == "dict":
        if a.keys() != b.keys() or not _same_dict_keys(a, b):
            return False
        return all(child_same(v, b[k]) for k, v in a.items())
    return all(child_same(x, y) for x, y in zip(a, b, strict=True))


def same(a: Any, b: Any) -> bool:
    """Type-aware equality of two JSON-like values.

    Like ``==`` except that kinds must match all the way down: ``True`` is not ``1``, ``1`` is not ``1.0``, a
    ``date`` is not a ``datetime``, mapping keys ``1`` and ``True`` differ, and two NaNs are the same.
    Mapping key order does not matter; a ``tuple`` and a ``list`` with the same items are the same. Identical
    and equal subtrees are short-circuited with ``is``, C-level ``==`` and a C-level serialization, so this is
    fast on large documents.

    Args:
        a: first value (may be :data:`MISSING`).
        b: second value (may be :data:`MISSING`).

    Returns:
        True when the two values are the same.

    Example:
        >>> same({"a": [1, 2]}, {"a": [1, 2]}), same(1, True), 1 == True
        (True, False, True)
    """
    if a is b:
        return True
    kind = kind_of(a)
    if kind != kind_of(b):
        return False
    if kind in ("dict", "list"):
        if len(a) != len(b):
            return False
        if type(a) is type(b) and a == b:
            return _canon(a) == _canon(b) or _walk_same(a, b, kind, same)
        if type(a) is type(b) and not _may_hold_nan(a):
            return False  # unequal and no NaN that could make ``==`` lie
        return _walk_same(a, b, kind, same)
    return _fast_same(a, b)


# ------------------------------------------------------------------------------------------------------------
# Rendering helpers
# ------------------------------------------------------------------------------------------------------------


def _json_key(key: Any) -> str:
    """A mapping key as a JSON object key (the same conversion :func:`json.dumps` applies)."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, (_dt.date, _dt.datetime)):
        return key.isoformat()
    if isinstance(key, float):
        return json.dumps(key)
    return str(key)


def jsonable(value: Any) -> Any:
    """A JSON-serializable copy of ``value``: dates -> ISO strings, bytes -> ``{"bytes": n}``, keys -> str."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {_json_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(value)}
    if value is MISSING:
        return None
    return repr(value)


def jsonable_key(key: tuple[Any, ...]) -> list[Any]:
    """A key path as a JSON list: parts JSON cannot hold (dates, ...) as their JSON-key strings."""
    out: list[Any] = []
    for part in key:
        if part is None or isinstance(part, (str, bool, int, float)):
            out.append(part)
        else:
            out.append(_json_key(part))
    return out


def format_key(key: tuple[str | int, ...]) -> str:
    """Render a key path for humans, dot-separated.

    ``str`` parts that are empty or contain ``.``, ``"``, ``'`` or unprintable characters (newlines, tabs,
    control characters) are written as JSON strings. ``int`` parts are written as numbers; other YAML scalar
    keys as JSON scalars (``true``, ``null``, ``1.5`` quoted because of its dot).

    Args:
        key: the key parts; ``()`` gives ``""``.

    Returns:
        The rendered key.

    Example:
        >>> format_key(("services", "slack")), format_key(("meetings", "event.123", "status")), format_key(())
        ('services.slack', 'meetings."event.123".status', '')
    """
    parts: list[str] = []
    for part in key:
        if isinstance(part, str):
            text = part
        elif isinstance(part, int) and not isinstance(part, bool):
            parts.append(str(part))
            continue
        else:
            text = _json_key(part)
        needs_quotes = not text or any(ch in ".\"'" or not ch.isprintable() for ch in text)
        parts.append(json.dumps(text, ensure_ascii=False) if needs_quotes else text)
    return ".".join(parts)


def format_value(value: Any, *, max_chars: int = 60) -> str:
    """Compact one-line rendering of a value for commit messages.

    ``true``/``false``/``null``/numbers as in JSON, strings JSON-quoted, containers as compact JSON (dates as
    ISO strings inside containers, bare at top level), ``bytes`` as ``<N bytes>``, :data:`MISSING` as
    ``(none)``.
    Output longer than ``max_chars`` is cut and ends with ``…``.

    Args:
        value: the value to render.
        max_chars: longest output, ``…`` included (at least 1).

    Returns:
        One line of text.

    Example:
        >>> format_value(True), format_value("hi"), format_value({"a": [1, None]}), format_value(MISSING)
        ('true', '"hi"', '{"a":[1,null]}', '(none)')
    """
    if value is MISSING:
        text = "(none)"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, (_dt.date, _dt.datetime)):
        text = value.isoformat()
    else:
        try:
            text = json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):  # pragma: no cover - jsonable already made it serializable
            text = repr(value)
    limit = max(1, max_chars)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


# ------------------------------------------------------------------------------------------------------------
# Structured diff
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One key-level change in one document.

    Attributes:
        doc: document path, e.g. ``"state.json"`` (``""`` when not known).
        key: key parts; ``()`` means the whole document. For list items, a ``remove`` names the index in the
            old list and an ``add``/``change`` (and any deeper key through a list) the index in the new list.
        op: ``"add"``, ``"remove"`` or ``"change"``.
        old: the previous value (:data:`MISSING` for ``add``).
        new: the new value (:data:`MISSING` for ``remove``).

    Example:
        >>> Change("s.json", ("a",), "add", MISSING, 1).to_dict()
        {'doc': 's.json', 'key': ['a'], 'op': 'add', 'new': 1}
    """

    doc: str
    key: tuple[str | int, ...]
    op: str
    old: Any = MISSING
    new: Any = MISSING

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of add, remove, change, not {self.op!r}")
        if not isinstance(self.key, tuple):
            object.__setattr__(self, "key", tuple(self.key))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"doc", "key": [...], "op", "old", "new"}``.

        ``old`` is left out for ``add`` and ``new`` for ``remove``. Dates become ISO strings, ``bytes`` become
        ``{"bytes": length}`` and non-string mapping keys become strings.

        Example:
            >>> Change("", ("a", 0), "remove", "x").to_dict()
            {'doc': '', 'key': ['a', 0], 'op': 'remove', 'old': 'x'}
        """
        out: dict[str, Any] = {"doc": self.doc, "key": jsonable_key(self.key), "op": self.op}
        if self.op != "add":
            out["old"] = jsonable(self.old)
        if self.op != "remove":
            out["new"] = jsonable(self.new)
        return out


def diff(old: Any, new: Any, *, doc: str = "") -> list[Change]:
    """Key-level differences between two document values.

    * Either side may be :data:`MISSING` (document created/deleted): one ``add``/``remove`` at key ``()``.
    * Dicts recurse per key, keys of ``old`` in its order then new keys in ``new``'s order. A key only in
      ``new`` is one ``add`` carrying the whole subtree; a key only in ``old`` one ``remove``.
    * Lists are aligned with :class:`difflib.SequenceMatcher` over a canonical form of each item (type-aware,
      key-order-sensitive) after trimming the common head and tail: appending or inserting one item is one
      ``add`` at its index in ``new``, deleting one is one ``remove`` at its index in ``old``; items replaced
      in place (equal-length ``replace`` blocks) are diffed recursively (so a field of a list item shows as
      ``("tasks", 3, "status")``); other replaced blocks are removes followed by adds.
    * A change of kind (dict -> list, scalar -> dict, ``False`` -> ``0``, ``1`` -> ``1.0``) is one ``change``.
    * ``str``/``bytes`` values (text and raw documents) are compared whole: one ``change``.

    Equal values give ``[]``; equal subtrees are skipped using :func:`same`'s fast paths. Values in the
    changes are private copies.

    Args:
        old: previous value, or :data:`MISSING`.
        new: new value, or :data:`MISSING`.
        doc: document path recorded in each change.

    Returns:
        The changes; ``apply_changes(old, diff(old, new))`` gives ``new``.

    Example:
        >>> [(c.key, c.op) for c in diff({"t": [1, 2]}, {"t": [1, 2, 3]})]
        [(('t', 2), 'add')]
    """
    out: list[Change] = []
    _diff(old, new, (), doc, out)
    return out


def _diff(old: Any, new: Any, key: tuple[Any, ...], doc: str, out: list[Change]) -> None:
    if _fast_same(old, new):
        return
    if old is MISSING:
        out.append(Change(doc, key, "add", MISSING, copy_json(new)))
        return
    if new is MISSING:
        out.append(Change(doc, key, "remove", copy_json(old), MISSING))
        return
    kind_old, kind_new = kind_of(old), kind_of(new)
    if kind_old == kind_new == "dict":
        for k, v in old.items():
            if k in new:
                _diff(v, new[k], (*key, k), doc, out)
            else:
                out.append(Change(doc, (*key, k), "remove", copy_json(v), MISSING))
        for k, v in new.items():
            if k not in old:
                out.append(Change(doc, (*key, k), "add", MISSING, copy_json(v)))
        return
    if kind_old == kind_new == "list":
        _diff_list(old, new, key, doc, out)
        return
    out.append(Change(doc, key, "change", copy_json(old), copy_json(new)))


def _diff_list(old: Any, new: Any, key: tuple[Any, ...], doc: str, out: list[Change]) -> None:
    old_reprs = [_canon(x) for x in old]
    new_reprs = [_canon(x) for x in new]
    # Trim the common head and tail first: cheap, and it makes "append"/"insert one" exact and unambiguous.
    lo = 0
    limit = min(len(old_reprs), len(new_reprs))
    while lo < limit and old_reprs[lo] == new_reprs[lo]:
        lo += 1
    end_old, end_new = len(old_reprs), len(new_reprs)
    while end_old > lo and end_new > lo and old_reprs[end_old - 1] == new_reprs[end_new - 1]:
        end_old -= 1
        end_new -= 1
    import difflib  # here: reading history never aligns lists

    matcher = difflib.SequenceMatcher(None, old_reprs[lo:end_old], new_reprs[lo:end_new], autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        i1, i2, j1, j2 = a1 + lo, a2 + lo, b1 + lo, b2 + lo
        if tag == "replace" and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                _diff(old[i1 + offset], new[j1 + offset], (*key, j1 + offset), doc, out)
            continue
        for i in range(i1, i2):
            out.append(Change(doc, (*key, i), "remove", copy_json(old[i]), MISSING))
        for j in range(j1, j2):
            out.append(Change(doc, (*key, j), "add", MISSING, copy_json(new[j])))


def apply_changes(value: Any, changes: list[Change]) -> Any:
    """Apply changes (as made by :func:`diff`) to a value and return the result; the input is not mutated.

    Order contract, per container: keys of the changes are resolved against the container they name.

    * Mapping parts simply name the key; order does not matter (new keys are appended).
    * In a list, all direct ``remove`` s (index = position in the OLD list) are applied first, in descending
      index order; then ``change`` s and deeper changes through an index (index = position in the NEW list,
      translated to the current position by skipping the adds still to come); then direct ``add`` s in
      ascending index order (index = position in the NEW list).

    This is exactly the convention :func:`diff` follows, so ``apply_changes(a, diff(a, b))`` is ``b``. A
    change at key ``()`` replaces the whole value (``remove`` gives :data:`MISSING`). The ``doc`` field is
    ignored.

    Args:
        value: the starting value (may be :data:`MISSING`).
        changes: the changes to apply, all for the same document.

    Returns:
        A new value (:data:`MISSING` when the document was removed).

    Raises:
        ValueError: a change cannot be applied (a key walks into a scalar or a list index is out of range).

    Example:
        >>> old = {"tasks": [{"s": "todo"}, {"s": "todo"}]}
        >>> new = {"tasks": [{"s": "done"}, {"s": "todo"}, {"s": "new"}]}
        >>> apply_changes(old, diff(old, new)) == new
        True
    """
    return _apply(copy_json(value), [(c.key, c) for c in changes], ())


def _apply(value: Any, entries: list[tuple[tuple[Any, ...], Change]], at: tuple[Any, ...]) -> Any:
    """Apply ``entries`` (key relative to ``value``, change) to ``value`` (a private copy) in place."""
    rest: list[tuple[tuple[Any, ...], Change]] = []
    for rel, change in entries:
        if rel:
            rest.append((rel, change))
        else:
            value = MISSING if change.op == "remove" else copy_json(change.new)
    if not rest:
        return value
    kind = kind_of(value)
    if kind == "dict":
        groups: dict[Any, list[tuple[tuple[Any, ...], Change]]] = {}
        for rel, change in rest:
            groups.setdefault(rel[0], []).append((rel[1:], change))
        for part, sub in groups.items():
            child = _apply(value.get(part, MISSING), sub, (*at, part))
            if child is MISSING:
                value.pop(part, None)
            else:
                value[part] = child
        return value
    if kind == "list":
        if not isinstance(value, list):
            value = list(value)
        return _apply_list(value, rest, at)
    where = format_key(at) or "value"
    raise ValueError(f"cannot apply a change at {format_key(rest[0][1].key)}: {where} is a {kind}")


def _apply_list(
    value: list[Any],
    rest: list[tuple[tuple[Any, ...], Change]],
    at: tuple[Any, ...],
) -> list[Any]:
    removes: list[int] = []
    adds: list[tuple[int, Change]] = []
    modified: dict[int, list[tuple[tuple[Any, ...], Change]]] = {}
    for rel, change in rest:
        index = rel[0]
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"cannot apply a change at {format_key(change.key)}: {format_key(at)} is a list")
        if len(rel) == 1 and change.op == "remove":
            removes.append(index)
        elif len(rel) == 1 and change.op == "add":
            adds.append((index, change))
        else:
            modified.setdefault(index, []).append((rel[1:], change))
    for index in sorted(set(removes), reverse=True):
        if not 0 <= index < len(value):
            raise ValueError(f"cannot remove {format_key((*at, index))}: list has {len(value)} items")
        del value[index]
    add_indices = sorted(index for index, _ in adds)
    for index, sub in sorted(modified.items()):
        position = index - _count_below(add_indices, index)
        if not 0 <= position < len(value):
            raise ValueError(f"cannot change {format_key((*at, index))}: index out of range")
        value[position] = _apply(value[position], sub, (*at, index))
    for index, change in sorted(adds, key=lambda item: item[0]):
        if not 0 <= index <= len(value):
            raise ValueError(f"cannot add {format_key((*at, index))}: list has {len(value)} items")
        value.insert(index, copy_json(change.new))
    return value


def _count_below(sorted_values: list[int], limit: int) -> int:
    count = 0
    for v in sorted_values:
        if v >= limit:
            break
        count += 1
    return count


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (like git), keeping the line ends; a last line without ``\\n`` is kept bare."""
    if not text:
        return []
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def quick_diff(
    old: Any,
    new: Any,
    *,
    doc: str = "",
    max_changes: int = 64,
    max_list_items: int = 2000,
    copy: bool = True,
    runs: list[KeyRun] | None = None,
) -> list[Change]:
    """Like :func:`diff`, but cheap on big documents: equal subtrees are skipped with Python's C-level ``==``,
    lists of up to ``max_list_items`` items are aligned like :func:`diff`, longer ones reported whole, and past
    ``max_changes`` changes the rest of a mapping is reported at its own key. ``==`` says ``1 == True``: when no
    difference is found that way although the values differ in type somewhere, it falls back to :func:`diff`.
    Values in the result are private copies, unless ``copy=False`` (for values nobody else holds, such as
    freshly decoded documents).

    ``runs``: past ``max_changes``, the rest of each mapping goes into this list as one :class:`KeyRun` (its
    changed keys, counted) instead of one :class:`Change` per key: a flush that only counts and collapses them
    (the commit message, the history index) skips building 100,000 objects. Only with ``copy=False``.

    Example:
        >>> [c.key for c in quick_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}})]
        [('a', 'c')]
    """
    if runs is not None and copy:
        raise ValueError("quick_diff: runs are kept only with copy=False (a run holds the live values)")
    out: list[Change] = []
    had = len(runs) if runs is not None else 0
    _quick(old, new, (), doc, out, max_changes, max_list_items, copy_json if copy else _same_value, runs)
    if not out and (runs is None or len(runs) == had) and not same(old, new):
        return diff(old, new, doc=doc)
    return out


@dataclass(frozen=True, eq=False)  # two runs are never compared: == would walk both mappings
class KeyRun:
    """The rest of one mapping's changes past :func:`quick_diff`'s budget, kept as the keys whose values differ
    (added or changed; removals never reach a run) instead of one :class:`Change` each. It holds the two
    mappings themselves: use it only while they cannot change (a flush keeps its views in flight until it ends).

    Attributes:
        doc: the document.
        key: the mapping's key.
        keys: the mapping's keys that changed, in the new mapping's order.
        old: the old mapping.
        new: the new mapping.

    Example:
        >>> runs: list[KeyRun] = []
        >>> changes = quick_diff({}, {"a": 1, "b": 2, "c": 3}, max_changes=1, copy=False, runs=runs)
        >>> [c.key for c in changes], runs[0].keys, [c.key for c in runs[0].changes()]
        ([('a',)], ['b', 'c'], [('b',), ('c',)])
    """

    doc: str
    key: Key
    keys: list[Any]
    old: Mapping[Any, Any]
    new: Mapping[Any, Any]

    def changes(self) -> list[Change]:
        """The run as the :class:`Change` objects :func:`quick_diff` makes without ``runs`` (values not copied)."""
        out: list[Change] = []
        _rest_at_own_keys(self.old, ((k, self.new[k]) for k in self.keys), self.key, self.doc, out, _same_value)
        return out


def _key_run(old: dict[Any, Any], items: Iterator[tuple[Any, Any]], key: Key, doc: str, new: dict[Any, Any]) -> KeyRun:
    """The run of ``items`` (the new side's rest): one tight loop that compares, and builds nothing per key."""
    absent = _ABSENT_KEY
    get = old.get
    changed = [k for k, v in items if (o := get(k, absent)) is absent or type(o) is not type(v) or o != v]
    return KeyRun(doc, key, changed, old, new)


def _same_value(value: Any) -> Any:
    return value


def _rest_at_own_keys(
    old: Mapping[Any, Any],
    items: Iterator[tuple[Any, Any]],
    key: Key,
    doc: str,
    out: list[Change],
    copy: Callable[[Any], Any],
) -> None:
    """Past the budget, the rest of a mapping's keys (``items``, the new side's) each as one change at its own key,
    without looking deeper: the loop a whole-document replace of 100,000 entries runs, so it is kept tight."""
    append, absent, new_change, missing = out.append, _ABSENT_KEY, object.__new__, MISSING
    for k, v in items:
        o = old.get(k, absent)
        if o is absent:
            c = new_change(Change)
            c.__dict__.update(doc=doc, key=(*key, k), op="add", old=missing, new=copy(v))
            append(c)
        elif type(o) is not type(v) or o != v:
            c = new_change(Change)
            c.__dict__.update(doc=doc, key=(*key, k), op="change", old=copy(o), new=copy(v))
            append(c)


_ABSENT_KEY: Final = object()


def _made(doc: str, key: Key, op: str, old: Any, new: Any) -> Change:
    """A :class:`Change` from parts known to be valid (``op`` one of the three, ``key`` a tuple), without the
    frozen dataclass's ``__init__`` and its checks: a third of the time, which counts when a big document has
    100,000 changed keys."""
    change = object.__new__(Change)
    change.__dict__.update(doc=doc, key=key, op=op, old=old, new=new)
    return change


def _quick(
    old: Any,
    new: Any,
    key: Key,
    doc: str,
    out: list[Change],
    budget: int,
    max_items: int,
    copy_json: Callable[[Any], Any],
    runs: list[KeyRun] | None = None,
) -> None:
    if old is MISSING or new is MISSING:
        if old is not new:
            op = "add" if old is MISSING else "remove"
            out.append(_made(doc, key, op, copy_json(old), copy_json(new)))
        return
    if type(old) is type(new) and old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and len(out) < budget:
        for k, v in old.items():
            if k not in new:
                out.append(_made(doc, (*key, k), "remove", copy_json(v), MISSING))
        items = iter(new.items())
        for k, v in items:
            if len(out) >= budget:
                rest = itertools.chain(((k, v),), items)
                if runs is None:
                    _rest_at_own_keys(old, rest, key, doc, out, copy_json)
                else:
                    run = _key_run(old, rest, key, doc, new)
                    if run.keys:
                        runs.append(run)
                break
            if k not in old:
                out.append(_made(doc, (*key, k), "add", MISSING, copy_json(v)))
            else:
                _quick(old[k], v, (*key, k), doc, out, budget, max_items, copy_json, runs)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) + len(new) <= max_items:
        out.extend(_made(doc, (*key, *c.key), c.op, c.old, c.new) for c in diff(old, new))
        return
    out.append(_made(doc, key, "change", copy_json(old), copy_json(new)))


def diff_text(old: str | None, new: str | None, *, doc: str = "", context_lines: int = 3) -> str:
    """Unified diff of two texts, formatted like ``git diff``.

    Headers are ``--- a/<doc>`` and ``+++ b/<doc>`` (``/dev/null`` for a side that is ``None``). Lines are
    split on ``\\n`` only; every output line ends with ``\\n`` and a last line without a newline is
    followed by ``\\ No newline at end of file``.

    Args:
        old: previous text, or ``None`` for a missing document.
        new: new text, or ``None`` for a missing document.
        doc: document path used in the headers.
        context_lines: unchanged lines shown around each change.

    Returns:
        The diff, or ``""`` when the texts are the same.

    Example:
        >>> print(diff_text("a\\nb\\n", "a\\nc\\n", doc="n.md"), end="")
        --- a/n.md
        +++ b/n.md
        @@ -1,2 +1,2 @@
         a
        -b
        +c
    """
    if old == new:
        return ""
    import difflib

    from_file = "/dev/null" if old is None else f"a/{doc}"
    to_file = "/dev/null" if new is None else f"b/{doc}"
    lines = difflib.unified_diff(
        split_lines(old or ""),
        split_lines(new or ""),
        fromfile=from_file,
        tofile=to_file,
        n=max(0, context_lines),
    )
    out: list[str] = []
    for line in lines:
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


# The three-way merges moved to merging.py (module size, issue 12), which imports this module; they are still
# served from here, looked up on first use so that no import cycle exists.
_IN_MERGING: Final = frozenset({"Conflict", "MergeConflictError", "MergeResult", "merge3", "merge_text3"})


def __getattr__(name: str) -> Any:
    if name in _IN_MERGING:
        from . import merging

        return getattr(merging, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
