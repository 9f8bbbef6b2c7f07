"""Three-way merges of document values: key by key for structured documents, line by line for texts.

What belongs here: :func:`merge3`, :func:`merge_text3`, their results and conflicts. What does not: diffs and
value helpers (:mod:`gitstate.docdiff`, which re-exports these names), deciding which side wins for a store
(the callers: pulls, hand edits rebased over pending writes). Pure: no I/O.

Example:
    >>> merge3({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 3}).value
    {'a': 2, 'b': 3}
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any, Final

from .docdiff import MISSING, copy_json, format_key, jsonable, jsonable_key, kind_of, same, split_lines

__all__ = ["Conflict", "MergeConflictError", "MergeResult", "merge3", "merge_text3"]

logger = logging.getLogger("gitstate.docdiff")

_PREFERS: Final = frozenset({"ours", "theirs", "fail"})


@dataclass(frozen=True)
class Conflict:
    """Both sides changed the same key differently.

    Attributes:
        key: where (``()`` is the whole document).
        base: the common ancestor's value (:data:`MISSING` where absent).
        ours: our value (:data:`MISSING` where absent, e.g. we deleted it).
        theirs: their value (:data:`MISSING` where absent).
        chosen: ``"ours"`` or ``"theirs"``: the side the merged value took. With ``prefer="fail"`` nothing is
            merged; the conflicts carried by :class:`MergeConflictError` say ``"ours"``.

    Example:
        >>> merge3({"a": 1}, {"a": 2}, {"a": 3}).conflicts[0].to_dict()
        {'key': ['a'], 'base': 1, 'ours': 2, 'theirs': 3, 'chosen': 'ours'}
    """

    key: tuple[str | int, ...]
    base: Any
    ours: Any
    theirs: Any
    chosen: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form ``{"key": [...], "base", "ours", "theirs", "chosen"}``; absent sides left out.

        Example:
            >>> Conflict(("a",), MISSING, 1, MISSING, "theirs").to_dict()
            {'key': ['a'], 'ours': 1, 'chosen': 'theirs'}
        """
        out: dict[str, Any] = {"key": jsonable_key(self.key)}
        for name in ("base", "ours", "theirs"):
            value = getattr(self, name)
            if value is not MISSING:
                out[name] = jsonable(value)
        out["chosen"] = self.chosen
        return out


@dataclass(frozen=True)
class MergeResult:
    """Outcome of :func:`merge3` / :func:`merge_text3`.

    Attributes:
        value: the merged value, a private copy (:data:`MISSING` when the document ends up deleted).
        conflicts: the conflicts that were resolved by ``prefer`` (empty for a clean merge).

    Example:
        >>> merge3({"a": 1}, {"a": 2}, {"a": 1})
        MergeResult(value={'a': 2}, conflicts=[])
    """

    value: Any
    conflicts: list[Conflict]


class MergeConflictError(ValueError):
    """Raised by :func:`merge3` / :func:`merge_text3` with ``prefer="fail"`` when anything conflicts.

    Attributes:
        conflicts: every conflict found (not just the first).

    Example:
        >>> try:
        ...     merge3({"a": 1}, {"a": 2}, {"a": 3}, prefer="fail")
        ... except MergeConflictError as e:
        ...     [c.key for c in e.conflicts]
        [('a',)]
    """

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = list(conflicts)
        keys = ", ".join(format_key(c.key) or "(document)" for c in self.conflicts[:5])
        if len(self.conflicts) > 5:
            keys += ", …"
        count = len(self.conflicts)
        super().__init__(f"{count} merge conflict{'s' if count != 1 else ''}: {keys}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.conflicts,))


def _check_prefer(prefer: str) -> None:
    if prefer not in _PREFERS:
        raise ValueError(f"prefer must be 'ours', 'theirs' or 'fail', not {prefer!r}")


def merge3(base: Any, ours: Any, theirs: Any, *, prefer: str = "ours") -> MergeResult:
    """Key-level three-way merge of document values.

    Rules, applied recursively from the document down:

    * A side that is the same as ``base`` (see :func:`same`) yields to the other; equal sides merge trivially.
    * Two dicts (``base`` a dict, or :data:`MISSING` taken as ``{}``) merge per key: a key changed (added,
      removed, modified) on one side only takes that side; keys changed on both sides are merged recursively.
    * Two lists (``base`` a list, or :data:`MISSING` taken as ``[]``): if both only appended to ``base``, the
      result is ``base`` + our new items + their new items not already appended by us. Otherwise, when all
      three have the same length, items are merged index by index; else the whole list is one conflict.
    * Anything else (scalars, a change of kind, removal vs modification) is a conflict at that key.
    * Whole-document text (``str`` on both sides, ``base`` a ``str`` or missing) is merged line by line with
      :func:`merge_text3`.

    A conflict is resolved by taking the ``prefer`` side's value at that key (which may mean removing it);
    ``prefer="fail"`` collects every conflict and raises :class:`MergeConflictError`. Inputs are never mutated
    and the result shares no mutable structure with them.

    Args:
        base: common ancestor, or :data:`MISSING`.
        ours: our version, or :data:`MISSING` (deleted / never created).
        theirs: their version, or :data:`MISSING`.
        prefer: ``"ours"``, ``"theirs"`` or ``"fail"``.

    Returns:
        The merged value and the conflicts that were resolved.

    Raises:
        MergeConflictError: ``prefer="fail"`` and at least one conflict.
        ValueError: ``prefer`` is not one of the three values.

    Example:
        >>> merge3({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 3}).value
        {'a': 2, 'b': 3}
    """
    _check_prefer(prefer)
    if isinstance(ours, str) and isinstance(theirs, str) and (base is MISSING or isinstance(base, str)):
        text_base: str | None = base if isinstance(base, str) else None
        return merge_text3(text_base, ours, theirs, prefer=prefer)
    conflicts: list[Conflict] = []
    value = _merge(base, ours, theirs, (), prefer, conflicts)
    if conflicts:
        logger.debug("merge3: %d conflict(s) resolved with prefer=%s", len(conflicts), prefer)
        if prefer == "fail":
            raise MergeConflictError(conflicts)
    return MergeResult(value, conflicts)


def _merge(
    base: Any,
    ours: Any,
    theirs: Any,
    key: tuple[Any, ...],
    prefer: str,
    conflicts: list[Conflict],
) -> Any:
    if same(ours, base):
        return copy_json(theirs)
    if same(theirs, base) or same(ours, theirs):
        return copy_json(ours)
    k_base, k_ours, k_theirs = kind_of(base), kind_of(ours), kind_of(theirs)
    if k_ours == k_theirs == "dict" and k_base in ("dict", "missing"):
        b = base if k_base == "dict" else {}
        merged: dict[Any, Any] = {}
        keys = list(ours) + [k for k in theirs if k not in ours]
        for k in keys:
            sides = (b.get(k, MISSING), ours.get(k, MISSING), theirs.get(k, MISSING))
            v = _merge(*sides, (*key, k), prefer, conflicts)
            if v is not MISSING:
                merged[k] = v
        return merged
    if k_ours == k_theirs == "list" and k_base in ("list", "missing"):
        b_list = list(base) if k_base == "list" else []
        n = len(b_list)
        ours_appended = len(ours) >= n and same(list(ours[:n]), b_list)
        if ours_appended and len(theirs) >= n and same(list(theirs[:n]), b_list):
            ours_new = [copy_json(x) for x in ours[n:]]
            pending = list(ours_new)
            extra: list[Any] = []
            for item in theirs[n:]:
                match = next((i for i, x in enumerate(pending) if same(x, item)), None)
                if match is None:
                    extra.append(copy_json(item))
                else:
                    del pending[match]
            return [copy_json(x) for x in b_list] + ours_new + extra
        if len(ours) == len(theirs) == n:
            return [_merge(b_list[i], ours[i], theirs[i], (*key, i), prefer, conflicts) for i in range(n)]
    return _conflict(base, ours, theirs, key, prefer, conflicts)


def _conflict(
    base: Any,
    ours: Any,
    theirs: Any,
    key: tuple[Any, ...],
    prefer: str,
    conflicts: list[Conflict],
) -> Any:
    chosen = "theirs" if prefer == "theirs" else "ours"
    conflicts.append(Conflict(key, copy_json(base), copy_json(ours), copy_json(theirs), chosen))
    return copy_json(theirs if chosen == "theirs" else ours)


def _side_hunks(base: list[str], side: list[str]) -> list[tuple[int, int, int, int]]:
    matcher = difflib.SequenceMatcher(None, base, side, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _region_text(
    base: list[str], side: list[str], hunks: list[tuple[int, int, int, int]], start: int, end: int
) -> list[str]:
    """The side's replacement for ``base[start:end]``, given its hunks inside that region."""
    out: list[str] = []
    pos = start
    for i1, i2, j1, j2 in hunks:
        out.extend(base[pos:i1])
        out.extend(side[j1:j2])
        pos = i2
    out.extend(base[pos:end])
    return out


def _merge_lines(base: list[str], ours: list[str], theirs: list[str]) -> list[str] | None:
    """diff3-style merge of line lists; None when changes overlap (touching counts, as in git)."""
    tagged = [(h, 0) for h in _side_hunks(base, ours)] + [(h, 1) for h in _side_hunks(base, theirs)]
    tagged.sort(key=lambda item: (item[0][0], item[0][1], item[1]))
    sides = (ours, theirs)
    out: list[str] = []
    pos = 0
    index = 0
    while index < len(tagged):
        (start, end, _, _), _side = tagged[index]
        region = [tagged[index]]
        index += 1
        while index < len(tagged) and tagged[index][0][0] <= end:
            region.append(tagged[index])
            end = max(end, tagged[index][0][1])
            index += 1
        out.extend(base[pos:start])
        versions = []
        for side_no in (0, 1):
            hunks = [h for h, s in region if s == side_no]
            if hunks:
                versions.append(_region_text(base, sides[side_no], hunks, start, end))
        if len(versions) == 2 and versions[0] != versions[1]:
            return None
        out.extend(versions[0])
        pos = end
    out.extend(base[pos:])
    return out


def merge_text3(
    base: str | None,
    ours: str | None,
    theirs: str | None,
    *,
    prefer: str = "ours",
) -> MergeResult:
    """Line-based three-way merge of texts (diff3 style).

    Changes by the two sides to separate line regions are both applied; identical changes are applied once.
    Changes that overlap or touch (as in git) and differ make one conflict at key ``()``, resolved by taking
    the ``prefer`` side's WHOLE text (``prefer="fail"`` raises :class:`MergeConflictError`). ``None`` means a
    missing document; a missing base merges as an empty text, and deletion vs modification is a conflict.

    Args:
        base: common ancestor text, or ``None``.
        ours: our text, or ``None`` (deleted).
        theirs: their text, or ``None``.
        prefer: ``"ours"``, ``"theirs"`` or ``"fail"``.

    Returns:
        The merged text (:data:`MISSING` when the document ends up deleted) and at most one conflict.

    Raises:
        MergeConflictError: ``prefer="fail"`` and the changes conflict.
        ValueError: ``prefer`` is not one of the three values.

    Example:
        >>> merge_text3("a\\nb\\nc\\n", "A\\nb\\nc\\n", "a\\nb\\nC\\n").value
        'A\\nb\\nC\\n'
    """
    _check_prefer(prefer)

    def present(text: str | None) -> Any:
        return MISSING if text is None else text

    if ours == base:
        return MergeResult(present(theirs), [])
    if theirs == base or ours == theirs:
        return MergeResult(present(ours), [])
    if ours is not None and theirs is not None:
        merged = _merge_lines(split_lines(base or ""), split_lines(ours), split_lines(theirs))
        if merged is not None:
            return MergeResult("".join(merged), [])
    chosen = "theirs" if prefer == "theirs" else "ours"
    conflict = Conflict((), present(base), present(ours), present(theirs), chosen)
    logger.debug("merge_text3: conflict resolved with prefer=%s", prefer)
    if prefer == "fail":
        raise MergeConflictError([conflict])
    return MergeResult(present(theirs if chosen == "theirs" else ours), [conflict])
