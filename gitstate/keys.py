"""Key paths inside structured documents, and the pure operations the store applies with them.

A key is a dotted string (``"services.slack"``, ``"tasks.3.status"``) or a tuple of parts for keys that contain
dots (``("meetings", "event.123", "status")``). A part that is a whole number indexes a list when the container
at that point is a list; in a mapping it is a string key. ``None`` means the whole document.

The operations (:func:`get_in`, :func:`set_in`, :func:`delete_in`, :func:`merge_in`, :func:`append_in`) work in
place on a private value and return the new root; they never do I/O. :func:`check_write`, :func:`check_target`
and :func:`apply_write` are the rules of a write to a whole document, shared by the store and by migrations'
transaction view.

What belongs here: parsing keys (:func:`parse_key`), the pure operations on values, :func:`read_value`,
:func:`key_overlaps`, the :data:`ABSENT` and :data:`MISSING_KEY` markers, and the write rules above. What does not:
the journal that records writes (:mod:`gitstate.journal`), encoding and value checks per document type
(:mod:`gitstate.codecs`), document path rules (:mod:`gitstate.paths`), diffs (:mod:`gitstate.docdiff`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from .codecs import JSON, Codec, check_str, codec_for, copy_value, normalize_whole_json
from .errors import EncodeError, InvalidPath, KeyNotFound
from .paths import META_PREFIX, is_metadata_path, validate_doc_path

__all__ = [
    "ABSENT",
    "MISSING_KEY",
    "Key",
    "KeyPathError",
    "append_in",
    "apply_write",
    "check_target",
    "check_write",
    "delete_in",
    "get_in",
    "key_overlaps",
    "merge_in",
    "parse_key",
    "read_value",
    "set_in",
]

logger = logging.getLogger("gitstate.keys")

Key = tuple[str | int, ...]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING_KEY"


#: Returned by :func:`get_in` when the key does not exist.
MISSING_KEY: Final = _Missing()


class KeyPathError(Exception):
    """A key that cannot be applied to the value (a part that walks into a scalar, a bad list index).

    Attributes:
        key: the key, as parts.
        depth: how many parts were resolved before the problem.
    """

    def __init__(self, key: Key, depth: int, problem: str) -> None:
        self.key = key
        self.depth = depth
        self.problem = problem
        super().__init__(problem)


def parse_key(key: object) -> Key:
    """Turn a user's key into a tuple of parts. ``None`` gives ``()`` (the whole document).

    Example:
        >>> parse_key("tasks.3.status")
        ('tasks', '3', 'status')
        >>> parse_key(("meetings", "event.123"))
        ('meetings', 'event.123')
    """
    if key is None:
        return ()
    if isinstance(key, str):
        if key == "":
            raise ValueError("empty key; pass None for the whole document")
        parts = key.split(".")
        if any(p == "" for p in parts):
            raise ValueError(f"key {key!r} has an empty part; use a tuple for keys that contain dots")
        return tuple(parts)
    if isinstance(key, bool):
        raise TypeError("a key must be a str, an int, a tuple of parts or None, not bool")
    if isinstance(key, int):
        return (key,)
    if isinstance(key, (tuple, list)):
        out: list[str | int] = []
        for part in key:
            if isinstance(part, bool) or not isinstance(part, (str, int)):
                raise TypeError(f"key part {part!r} must be a str or an int")
            out.append(part)
        return tuple(out)
    raise TypeError(f"a key must be a str, a tuple of parts or None, not {type(key).__name__}")


def _index(container: list[Any], part: str | int, key: Key, depth: int, *, allow_end: bool = False) -> int:
    if isinstance(part, str):
        try:
            idx = int(part)
        except ValueError:
            raise KeyPathError(key, depth, f"{part!r} is not a list index") from None
    else:
        idx = part
    n = len(container)
    if idx < 0:
        idx += n
    if idx < 0 or idx > n or (idx == n and not allow_end):
        raise KeyPathError(key, depth, f"list index {part} out of range (length {n})")
    return idx


def _dict_key(container: dict[Any, Any], part: str | int) -> Any:
    """The mapping key a part names: the part itself, or its int/str twin when only that exists (YAML)."""
    if part in container:
        return part
    if isinstance(part, int) and str(part) in container:
        return str(part)
    if isinstance(part, str) and part.lstrip("-").isdigit() and int(part) in container:
        return int(part)
    return part


def get_in(value: Any, key: Key) -> Any:
    """The value at ``key``, or :data:`MISSING_KEY`. Returns the stored object itself (no copy)."""
    cur = value
    for depth, part in enumerate(key):
        if isinstance(cur, dict):
            k = _dict_key(cur, part)
            if k not in cur:
                return MISSING_KEY
            cur = cur[k]
        elif isinstance(cur, list):
            try:
                cur = cur[_index(cur, part, key, depth)]
            except KeyPathError:
                return MISSING_KEY
        else:
            return MISSING_KEY
    return cur


def _walk_create(root: Any, key: Key) -> Any:
    """Return the container that holds ``key[-1]``, creating mappings along the way."""
    cur = root
    for depth, part in enumerate(key[:-1]):
        if isinstance(cur, dict):
            k = _dict_key(cur, part)
            nxt = cur.get(k)
            if nxt is None or not isinstance(nxt, (dict, list)):
                if k in cur and nxt is not None:
                    raise KeyPathError(
                        key,
                        depth + 1,
                        f"{'.'.join(map(str, key[: depth + 1]))} is a {type(nxt).__name__}, not a mapping or list",
                    )
                nxt = {}
                cur[k] = nxt
            cur = nxt
        elif isinstance(cur, list):
            cur = cur[_index(cur, part, key, depth)]
            if not isinstance(cur, (dict, list)):
                raise KeyPathError(
                    key,
                    depth + 1,
                    f"{'.'.join(map(str, key[: depth + 1]))} is a {type(cur).__name__}, not a mapping or list",
                )
        else:
            raise KeyPathError(key, depth, f"cannot index into a {type(cur).__name__}")
    return cur


def set_in(root: Any, key: Key, value: Any) -> Any:
    """Set ``key`` to ``value``, creating intermediate mappings; return the new root."""
    if not key:
        return value
    if root is None or root is MISSING_KEY:
        root = {}
    if not isinstance(root, (dict, list)):
        raise KeyPathError(key, 0, f"the document is a {type(root).__name__}, not a mapping or list")
    parent = _walk_create(root, key)
    last = key[-1]
    if isinstance(parent, dict):
        parent[_dict_key(parent, last)] = value
    else:
        idx = _index(parent, last, key, len(key) - 1, allow_end=True)
        if idx == len(parent):
            parent.append(value)
        else:
            parent[idx] = value
    return root


def delete_in(root: Any, key: Key) -> tuple[Any, bool]:
    """Delete ``key``; return (new root, whether something was deleted). ``()`` deletes the whole value."""
    if not key:
        return MISSING_KEY, root is not MISSING_KEY
    parent = get_in(root, key[:-1])
    last = key[-1]
    if isinstance(parent, dict):
        k = _dict_key(parent, last)
        if k in parent:
            del parent[k]
            return root, True
    elif isinstance(parent, list):
        try:
            del parent[_index(parent, last, key, len(key) - 1)]
            return root, True
        except KeyPathError:
            pass
    return root, False


def _deep_merge(dst: dict[Any, Any], src: dict[Any, Any]) -> None:
    for k, v in src.items():
        cur = dst.get(k)
        if isinstance(cur, dict) and isinstance(v, dict):
            _deep_merge(cur, v)
        else:
            dst[k] = v


def merge_in(root: Any, key: Key, mapping: dict[Any, Any]) -> Any:
    """Deep-merge ``mapping`` into the mapping at ``key`` (created if missing); return the new root."""
    target = get_in(root, key) if root is not None else MISSING_KEY
    if target is MISSING_KEY or target is None:
        return set_in(root, key, mapping) if key else mapping
    if not isinstance(target, dict):
        raise KeyPathError(key, len(key), f"cannot merge a mapping into a {type(target).__name__}")
    _deep_merge(target, mapping)
    return root


def append_in(root: Any, key: Key, item: Any) -> Any:
    """Append ``item`` to the list at ``key`` (created if missing); return the new root."""
    target = get_in(root, key) if root is not None else MISSING_KEY
    if target is MISSING_KEY or target is None:
        return set_in(root, key, [item]) if key else [item]
    if not isinstance(target, list):
        raise KeyPathError(key, len(key), f"cannot append to a {type(target).__name__}; it is not a list")
    target.append(item)
    return root


def read_value(doc: str, view: Any, key: Key, default: Any, *, absent: Any, no_default: Any) -> Any:
    """What ``get()`` returns: a deep copy of the value at ``key`` in a document ``view`` (``absent`` when the
    document does not exist), else ``default`` unless it is ``no_default``.

    Raises:
        KeyNotFound: no such document or key, and no default.
    """
    from .codecs import copy_value
    from .errors import KeyNotFound

    value = MISSING_KEY if view is absent else get_in(view, key)
    if value is MISSING_KEY:
        if default is not no_default:
            return default
        raise KeyNotFound(doc, key, "no such document" if view is absent else "no such key")
    return copy_value(value)


def key_overlaps(a: Key, b: Key) -> bool:
    """True if one key is a prefix of the other (writing one affects the other). Parts compare as strings."""
    n = min(len(a), len(b))
    return all(str(x) == str(y) for x, y in zip(a[:n], b[:n], strict=True))


# ===================================================================== writes (rules shared by Store and TxView)
class _Absent:
    """The value of a document that does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def check_write(
    doc: str, kind: str, key: object, value: Any, *, codec: Codec | None = None, keep_encoded: bool = False
) -> tuple[Key, Any]:
    """The checks a write (``kind``: set, delete, update, append) passes before the document is looked at: returns
    the parsed key and the value as the document's codec stores it (``codec``: the store's codec for ``doc``;
    default: the default registry's).

    Documents under ``.gitstate/`` (in any spelling a file system may alias to it) are gitstate's own metadata:
    only gitstate writes them (the schema version, through migrations), so every write to them is refused here.
    Reading them stays allowed (``get(".gitstate/schema.json")`` shows the schema version).

    ``keep_encoded``: a whole-document set of a big plain JSON mapping may come back as an
    :class:`~gitstate.encoded.Encoded` instead of a private copy (the caller decodes it where it reads it).

    Raises:
        InvalidPath: an unsafe path, or one under ``.gitstate/``.
        EncodeError: a key into a document without keys, or a value the codec cannot store.
    """
    validate_doc_path(doc)
    if is_metadata_path(doc):
        raise InvalidPath(
            doc,
            f"documents under {META_PREFIX} hold gitstate's own metadata and cannot be written through the API "
            "(the schema version changes through store.migrate()); use another path",
        )
    if codec is None:
        codec = codec_for(doc)
    keyt = parse_key(key)
    if keyt and not codec.structured:
        raise EncodeError(f"{doc}: {codec.name} documents have no keys; pass key=None")
    for part in keyt:  # a part becomes a mapping key when the write creates it
        if isinstance(part, str):
            check_str(part, doc, f"the key {part!r}")
    if codec.structured and not codec.allow_scalar_keys and any(isinstance(p, int) for p in keyt):
        # JSON keys are strings: an int part that creates a mapping key must create "5", not 5, or the value read
        # back after a reopen would differ from the one in memory (list indexes take either form).
        keyt = tuple(str(p) for p in keyt)
    if kind == "update":
        if not isinstance(value, Mapping):
            raise EncodeError(f"{doc}: update() takes a mapping, not {type(value).__name__}")
        value = codec.normalize(dict(value), doc, keyt)
    elif kind == "set" and keep_encoded and not keyt and codec is JSON:
        value = normalize_whole_json(value, doc)
    elif kind in ("set", "append"):
        value = codec.normalize(value, doc, keyt)
    return keyt, value


def check_target(doc: str, kind: str, keyt: Key, view: Any) -> None:
    """Refuse a write that cannot apply to the document's current value ``view`` (:data:`ABSENT`: no document).

    Raises:
        KeyNotFound: deleting a document or key that does not exist.
        EncodeError: a keyed write, an append or an update into a document holding a scalar.
    """
    if kind == "delete":
        if view is ABSENT or (keyt and get_in(view, keyt) is MISSING_KEY):
            raise KeyNotFound(doc, keyt, "no such document" if view is ABSENT else "no such key")
    elif kind in ("append", "update") and view is not ABSENT and not isinstance(view, (dict, list)):
        raise EncodeError(f"{doc}: cannot {kind} into a document holding a {type(view).__name__}")
    if keyt and view is not ABSENT and not isinstance(view, (dict, list)):
        raise EncodeError(
            f"{doc}: the document holds a {type(view).__name__}; only whole-document writes (key=None) apply"
        )


def apply_write(view: Any, kind: str, key: Key, value: Any) -> Any:
    """One write applied to a private document value (in place where possible); returns the new value.
    The key operations fail before they change anything, so a failed write leaves the value as it was."""
    base = None if view is ABSENT else view
    if kind == "set":
        return set_in(base, key, copy_value(value))
    if kind == "delete":
        if not key or view is ABSENT:
            return ABSENT
        return delete_in(view, key)[0]
    if kind == "update":
        return merge_in(base, key, copy_value(value))
    if kind == "append":
        return append_in(base, key, copy_value(value))
    raise AssertionError(kind)
