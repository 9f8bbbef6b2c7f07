"""Codecs: how a document's value becomes bytes and back, chosen by the path's suffix.

* ``.json``: JSON, 2-space indent, key order kept, UTF-8, trailing newline; JSON-like values
  (dict, list, str, int, float, bool, None).
* ``.yaml`` / ``.yml``: YAML, block style, key order kept, no aliases written; JSON-like plus dates and
  scalar keys.
* ``.txt`` / ``.md``: UTF-8 text (``str``).
* anything else: raw ``bytes``.

What belongs here: the :class:`Codec` interface and the built-in JSON, YAML, text and bytes codecs (canonical
encoding, safe decoding, the depth, integer and alias limits), the YAML 1.2 loader and dumper, value normalisation
(:func:`copy_value`, :func:`check_str`), the :class:`Codecs` registry a store owns (:meth:`Codecs.register`,
:meth:`Codecs.wrap`) and :class:`Wrapped`. What does not: writing over a human's formatting
(:mod:`gitstate.roundtrip`, behind :meth:`Codec.encode_over`), key paths inside values (:mod:`gitstate.keys`), diffs
(:mod:`gitstate.docdiff`), file I/O (:mod:`gitstate.paths`, :mod:`gitstate.worktree`), the YAML 1.1 conversion
(:mod:`gitstate.yaml11`).

Output is canonical: the same value always gives the same bytes, so a write that changes nothing makes no commit.
YAML is only ever loaded with the safe loader (the C one when PyYAML has it), and aliases in files read from
disk are bounded: a document whose aliases would expand past :data:`MAX_YAML_NODES` nodes is refused.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import logging
import math
import re
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import encoded
from .encoded import Encoded
from .errors import DecodeError, EncodeError
from .gcpause import gc_paused

if TYPE_CHECKING:
    import yaml

__all__ = [
    "BYTES",
    "DEFAULT",
    "JSON",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_YAML_NODES",
    "TEXT",
    "YAML",
    "Codec",
    "Codecs",
    "Wrapped",
    "bind",
    "check_str",
    "codec_for",
    "copy_value",
    "registry_for",
    "yaml_dumper",
    "yaml_expanded_size",
    "yaml_loader",
]

logger = logging.getLogger("gitstate.codecs")

#: Deepest nesting a value may have (deeper than 255 levels, JSON is written by the stdlib, not orjson).
MAX_DEPTH: Final = 400
#: Most decimal digits an integer may have: Python's default ``sys.get_int_max_str_digits()``. Another process (or
#: this one with a lower limit) could neither write nor read a longer one, so it is refused at the door.
MAX_INT_DIGITS: Final = 4300
#: Most nodes a YAML document may expand to once its aliases are resolved (alias-bomb guard).
MAX_YAML_NODES: Final = 200_000

_yaml_parts: tuple[Any, Any, Any] | None = None

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#103-core-schema), plus timestamps and merge keys, which
# gitstate has always read. PyYAML's own resolvers are YAML 1.1's (``NO`` is false, ``0777`` is 511).
_CORE_BOOL: Final = r"^(?:true|True|TRUE|false|False|FALSE)$"
_CORE_NULL: Final = r"^(?:~|null|Null|NULL|)$"
_CORE_INT: Final = r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"
_CORE_FLOAT: Final = (
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
#: Plain scalars a YAML 1.1 reader takes for a boolean that PyYAML's resolver misses (``y``, ``n``): the encoder
#: quotes these strings too, so that older readers see strings.
_YAML11_EXTRA_BOOL: Final = r"^(?:y|Y|n|N)$"


def _core_int(constructor: Any, node: Any) -> int:
    """An integer as YAML 1.2 reads it: ``0777`` is 777 (decimal), ``0o17`` octal, ``0x1F`` hex."""
    text = str(constructor.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    try:
        return int(text, 10)
    except ValueError:  # an explicit !!int tag on a YAML 1.1 form (0b1010, 1_000, 1:30)
        result: int = constructor.construct_yaml_int(node)
        return result


def _core_resolvers(cls: Any) -> None:
    """Give ``cls`` (a loader) the YAML 1.2 core schema's implicit resolvers instead of YAML 1.1's."""
    import re as _re

    old = cls.yaml_implicit_resolvers
    cls.yaml_implicit_resolvers = {}
    rules = [
        ("tag:yaml.org,2002:bool", _CORE_BOOL, list("tTfF")),
        ("tag:yaml.org,2002:null", _CORE_NULL, ["~", "n", "N", ""]),
        ("tag:yaml.org,2002:int", _CORE_INT, list("-+0123456789")),
        ("tag:yaml.org,2002:float", _CORE_FLOAT, list("-+.0123456789")),
    ]
    for tag, pattern, first in rules:
        cls.add_implicit_resolver(tag, _re.compile(pattern), first)
    for key in ("<", *"0123456789"):  # timestamps (2001-12-14) and merge keys (<<) as before
        for tag, regexp in old.get(key, []):
            if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"):
                cls.add_implicit_resolver(tag, regexp, [key])
    cls.add_constructor("tag:yaml.org,2002:int", _core_int)


def _quote_for_both(cls: Any) -> None:
    """Make the dumper ``cls`` quote every string that a YAML 1.1 reader (its own resolvers) or a YAML 1.2 core
    reader would take for something else: ``NO``, ``y``, ``0o17``, ``1e3`` are written quoted."""
    import re as _re

    cls.add_implicit_resolver("tag:yaml.org,2002:bool", _re.compile(_YAML11_EXTRA_BOOL), list("yYnN"))
    cls.add_implicit_resolver("tag:yaml.org,2002:int", _re.compile(_CORE_INT), list("-+0123456789"))
    cls.add_implicit_resolver("tag:yaml.org,2002:float", _re.compile(_CORE_FLOAT), list("-+.0123456789"))


def _yaml_api() -> tuple[Any, Any, Any]:
    """(yaml module, safe loader class, dumper class), imported on first use: PyYAML costs ~25 ms to import,
    which the CLI should not pay unless it touches a YAML document. The loader reads YAML 1.2 (core schema)."""
    global _yaml_parts
    if _yaml_parts is None:
        import yaml as _y

        base_loader = getattr(_y, "CSafeLoader", _y.SafeLoader)
        base_dumper = getattr(_y, "CSafeDumper", _y.SafeDumper)

        class _Loader(base_loader):  # type: ignore[misc,valid-type]
            """Safe loader (the C one when PyYAML has it) with YAML 1.2 core schema scalars."""

        class _Dumper(base_dumper):  # type: ignore[misc,valid-type]
            """Safe dumper that never writes anchors/aliases: a shared sub-value is written out in full."""

            def ignore_aliases(self, data: Any) -> bool:
                return True

        _core_resolvers(_Loader)
        _quote_for_both(_Dumper)
        _yaml_parts = (_y, _Loader, _Dumper)
    return _yaml_parts


def yaml_loader() -> Any:
    """The loader class gitstate reads YAML with: PyYAML's safe loader (C when available), YAML 1.2 core schema.
    For modules that need PyYAML's nodes (:mod:`gitstate.roundtrip`); values are read with :data:`YAML`."""
    return _yaml_api()[1]


def yaml_dumper() -> Any:
    """The dumper class gitstate writes YAML with (safe, no aliases, quotes what YAML 1.1 or 1.2 would misread)."""
    return _yaml_api()[2]


_SCALARS = (str, int, float, bool, type(None))
# 2**14284 < 10**4300: an int with at most this many bits has at most MAX_INT_DIGITS digits (no str() needed).
_SAFE_INT_BITS: Final = 14284


def _int_digits_limit() -> int:
    current = sys.get_int_max_str_digits()
    return min(MAX_INT_DIGITS, current) if current else MAX_INT_DIGITS


def _int_too_long(value: int) -> bool:
    if value.bit_length() <= _SAFE_INT_BITS and _int_digits_limit() == MAX_INT_DIGITS:
        return False
    bound: int = 10 ** _int_digits_limit()
    return abs(value) >= bound


def check_str(value: str, doc: str, where: str) -> None:
    """Refuse a string that has no UTF-8 form (a lone surrogate such as ``"\\udcff"``, from
    ``surrogateescape`` decoding or a bad ``\\u`` escape): no codec could write it to a file.

    Raises:
        EncodeError: naming the document, where in it, and the first bad position.
    """
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodeError(
            f"{doc}: {where} holds {value[e.start]!r} at position {e.start}, a lone surrogate that has no UTF-8 "
            "form; pass valid text (decode bytes with errors='replace', or store them in a raw document)"
        ) from None


def _path(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts) or "(document)"


def _where(key: tuple[Any, ...], what: str | None) -> str:
    """Where a scalar is, for an error message: ``the value at a.b`` or ``a key at a.b``."""
    return f"{what or 'the value'} at {_path(key)}"


def copy_value(value: Any) -> Any:
    """Deep copy of a JSON-like value, much faster than ``copy.deepcopy`` for this shape of data."""
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value  # immutable scalars (str, int, float, bool, None, dates, bytes)


class Codec:
    """Turns a document value into canonical bytes and back.

    A new format (TOML, say) is a subclass registered for its suffix with :meth:`Codecs.register`; ``encode``
    must give the same bytes for the same value, so that a write that changes nothing makes no commit.

    Attributes:
        name: ``json``, ``yaml``, ``text``, ``bytes``, or a registered codec's own (unique) name.
        structured: True when values are trees that keys can address.
        allow_scalar_keys: True when mapping keys may be scalars other than ``str`` (YAML).
    """

    name: str = ""
    structured: bool = False
    allow_scalar_keys: bool = False

    def encode(self, value: Any) -> bytes:
        """Canonical bytes of ``value`` (already normalized)."""
        raise NotImplementedError

    def decode(self, data: bytes, doc: str = "") -> Any:
        """Parse bytes read from disk or history. Raises :class:`~gitstate.errors.DecodeError`."""
        raise NotImplementedError

    def encode_over(self, value: Any, previous: bytes) -> bytes:
        """Bytes of ``value`` that keep what a human chose in ``previous`` (the document's current bytes):
        comments, layout and the text of untouched values. This default (and any codec without a layout to keep)
        gives :meth:`encode`; JSON and YAML override it (:mod:`gitstate.roundtrip`). The result always decodes to
        ``value``, and is ``encode(value)`` when ``previous`` is already in the canonical layout."""
        return self.encode(value)

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        """Check that ``value`` can be stored and return a private deep copy of it (tuples become lists).

        Raises:
            EncodeError: the value (or something inside it) cannot be encoded; the message names where.
        """
        raise NotImplementedError


class _TreeCodec(Codec):
    structured = True
    allow_dates = False

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        return self._normalize(value, doc, key)

    def _normalize(self, value: Any, doc: str, key: tuple[Any, ...], *, keep_encoded: bool = False) -> Any:
        """:meth:`normalize`; with ``keep_encoded`` (JSON, a whole document) a big plain mapping comes back as an
        :class:`~gitstate.encoded.Encoded` of the bytes its check wrote."""
        if type(value) is dict or type(value) is list:
            fast = _plain_copy(value, len(key), keep_encoded=keep_encoded)
            if fast is not None:
                return fast
        try:
            return self._norm(value, doc, key, len(key))
        except RecursionError:
            raise EncodeError(f"{doc}: value at {_path(key)} is nested too deeply (or contains itself)") from None

    def _norm(self, value: Any, doc: str, key: tuple[Any, ...], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise EncodeError(f"{doc}: value at {_path(key[:8])}... is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _SCALARS):
            return self._scalar(value, doc, key, None)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) or (self.allow_scalar_keys and isinstance(k, _SCALARS)):
                    k = self._scalar(k, doc, key, "a key")
                else:
                    raise EncodeError(
                        f"{doc}: key {k!r} at {_path(key)} is a {type(k).__name__}; {self.name} keys must be strings"
                    )
                if k in out:  # two subclass keys that are equal as plain values (or 1 and True in YAML)
                    raise EncodeError(f"{doc}: key {k!r} at {_path(key)} appears twice")
                out[k] = self._norm(v, doc, (*key, k), depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self._norm(v, doc, (*key, i), depth + 1) for i, v in enumerate(value)]
        if self.allow_dates and isinstance(value, (_dt.date, _dt.datetime)):
            return _plain_date(value, doc, key)
        raise EncodeError(
            f"{doc}: a {type(value).__name__} at {_path(key)} cannot be stored in a {self.name} document "
            "(use dict, list, str, int, float, bool or None)"
        )

    def _scalar(self, value: Any, doc: str, key: tuple[Any, ...], what: str | None) -> Any:
        """A scalar as the plain type the decoder gives back (subclasses such as enums or ``str`` wrappers are
        written by their value and would not read back as themselves), refused when no file can hold it. ``what``
        is ``"a key"`` for a mapping key, None for a value; the place is spelled out only for an error."""
        kind = type(value)
        if kind is str or isinstance(value, str):
            value = str.__str__(value) if kind is not str else value
            if not value.isascii():
                check_str(value, doc, _where(key, what))
        elif kind is bool or value is None:
            pass
        elif isinstance(value, bool):
            value = bool(value)
        elif isinstance(value, int):
            value = int.__index__(value) if kind is not int else value
            if _int_too_long(value):
                raise EncodeError(
                    f"{doc}: {_where(key, what)} is an integer of more than {_int_digits_limit()} digits, which "
                    "Python cannot read back by default (sys.get_int_max_str_digits); store it as a string"
                )
        else:
            value = float(value) if kind is not float else value
            if not math.isfinite(value):
                raise EncodeError(f"{doc}: {value!r} at {_path(key)} cannot be stored ({self.name} has no NaN/inf)")
        return value


#: orjson serializes these natively: as the option says, they go to ``default`` (none: an error) instead.
_PLAIN_ONLY: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)
#: From this size on the private copy is built with the garbage collector paused.
_BIG_COPY_BYTES: Final = 1 << 16
#: orjson's nesting limit: a value this deep (plus where it goes) stays within MAX_DEPTH.
_ORJSON_DEPTH: Final = 255


def _plain_copy(value: dict[Any, Any] | list[Any], depth: int, *, keep_encoded: bool = False) -> Any:
    """The private copy :meth:`Codec.normalize` returns, made at C speed when ``value`` is plain JSON already
    (a 10 MB document: ~3x faster than the walk); None sends the caller to the walk, which also names the place
    of any fault.

    orjson writes what it can and refuses the rest: non-``str`` keys, subclasses, dates, dataclasses, integers
    beyond 64 bits, lone surrogates, nesting past 255. What it writes but the walk refuses or changes (NaN and
    infinities, which it writes as null; tuples, UUIDs, enums) makes the copy differ from ``value``: the deep
    ``==`` (also C) catches each, and orjson keeps ``True`` apart from ``1`` and ``1`` apart from ``1.0``.

    ``keep_encoded``: a mapping whose bytes here are :data:`gitstate.encoded.MIN_BYTES` or more is kept as the
    bytes ``JSON.encode`` writes (:func:`gitstate.encoded.keep`) instead of copied; smaller ones pay nothing more."""
    if depth + _ORJSON_DEPTH > MAX_DEPTH:
        return None
    try:
        data = orjson.dumps(value, option=_PLAIN_ONLY)
        if keep_encoded and type(value) is dict and len(data) >= encoded.MIN_BYTES:
            kept = encoded.keep(value, orjson.dumps(value, option=encoded.OPTIONS))
            if kept is not None:
                return kept
        if len(data) < _BIG_COPY_BYTES:
            copy = orjson.loads(data)
        else:
            with gc_paused():  # hundreds of thousands of new containers, none in a cycle
                copy = orjson.loads(data)
    except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None
    try:
        return copy if copy == value else None
    except Exception:  # an __eq__ that raises: the walk says what it is
        return None


def _plain_date(value: _dt.date, doc: str, key: tuple[Any, ...]) -> _dt.date:
    """A date or datetime as its plain type, refused when YAML's timestamp format cannot carry it back: a time
    zone offset with seconds is written as ``+00:00:30``, which no YAML loader reads."""
    if isinstance(value, _dt.datetime):
        offset = value.utcoffset()
        if offset is not None and offset % _dt.timedelta(minutes=1):
            raise EncodeError(
                f"{doc}: the datetime at {_path(key)} has a UTC offset of {offset}, not whole minutes; YAML cannot "
                "store it (convert it to UTC)"
            )
        if type(value) is not _dt.datetime:
            value = _dt.datetime(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
                value.tzinfo,
                fold=value.fold,
            )
        return value
    return value if type(value) is _dt.date else _dt.date(value.year, value.month, value.day)


class _JsonCodec(_TreeCodec):
    name = "json"

    def encode(self, value: Any) -> bytes:
        if type(value) is Encoded:  # a big document set whole, kept as these very bytes
            return value.data
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            # orjson refuses integers beyond 64 bits; the stdlib handles them (same layout otherwise).
            return (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()

    def encode_over(self, value: Any, previous: bytes) -> bytes:
        """JSON in ``previous``'s indentation, separators and key order
        (:func:`gitstate.roundtrip.json_encode_over`)."""
        from .roundtrip import json_encode_over

        return json_encode_over(value, previous)

    def decode(self, data: bytes, doc: str = "") -> Any:
        # orjson reads integers beyond 64 bits as floats (losing digits): those documents take the stdlib path.
        if _LONG_RUN not in data.translate(_DIGITS_AS_ZERO):
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
        try:  # the stdlib gives line and column, and keeps big integers exact
            return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError as e:
            raise DecodeError(doc, f"not valid UTF-8 at byte {e.start}") from e
        except json.JSONDecodeError as e:
            raise DecodeError(doc, f"invalid JSON: {e.msg}", line=e.lineno, column=e.colno) from e
        except _NonFiniteNumber as e:
            raise DecodeError(doc, f"invalid JSON: {e} is not a JSON number") from e
        except RecursionError as e:
            raise DecodeError(doc, "invalid JSON: nested too deeply") from e
        except ValueError as e:  # int(): more digits than sys.get_int_max_str_digits() allows
            raise _too_long_number(doc, data, e) from e


_LONG_DIGITS = re.compile(rb"[0-9]{%d,}" % (MAX_INT_DIGITS + 1))


def _too_long_number(doc: str, data: bytes, cause: ValueError) -> DecodeError:
    """The DecodeError for a document holding an integer too long to read, with the line and column of the
    first run of digits past the limit (when there is one: the limit may have been lowered)."""
    m = _LONG_DIGITS.search(data)
    if m is None:
        return DecodeError(doc, f"unreadable value: {cause}")
    line = data.count(b"\n", 0, m.start()) + 1
    column = m.start() - (data.rfind(b"\n", 0, m.start()) + 1) + 1
    return DecodeError(
        doc,
        f"a number of {len(m.group())} digits; more than {MAX_INT_DIGITS} cannot be read (store it as a string)",
        line=line,
        column=column,
    )


# A run of 19+ digits may be an integer beyond 64 bits. Found with translate + substring search (C speed, about
# 15x faster than a regex over a 100 KB document).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19


class _NonFiniteNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteNumber(name)


def yaml_expanded_size(node: yaml.Node) -> int:
    """Number of nodes ``node`` (a PyYAML node) expands to with aliases resolved; stops counting past
    :data:`MAX_YAML_NODES` (the alias-bomb guard)."""
    return _expanded(node, _yaml_api()[0], {}, set())


def _expanded(n: yaml.Node, yaml_mod: Any, memo: dict[int, int], on_stack: set[int]) -> int:
    """:func:`yaml_expanded_size` of ``n``, counted once per node (``memo``). A module function, not a recursive
    inner one: that would refer to itself through its closure and leave a reference cycle (with the memo) per
    decoded document for the cyclic collector, which a history walk pauses."""
    nid = id(n)
    if nid in memo:
        return memo[nid]
    if nid in on_stack:  # recursive alias: infinite expansion
        return MAX_YAML_NODES + 1
    on_stack.add(nid)
    total = 1
    if isinstance(n, yaml_mod.SequenceNode):
        for child in n.value:
            total += _expanded(child, yaml_mod, memo, on_stack)
            if total > MAX_YAML_NODES:
                break
    elif isinstance(n, yaml_mod.MappingNode):
        for k, v in n.value:
            total += _expanded(k, yaml_mod, memo, on_stack) + _expanded(v, yaml_mod, memo, on_stack)
            if total > MAX_YAML_NODES:
                break
    on_stack.discard(nid)
    memo[nid] = total
    return total


class _YamlCodec(_TreeCodec):
    name = "yaml"
    allow_dates = True
    allow_scalar_keys = True

    def encode(self, value: Any) -> bytes:
        if value is None:
            return b""
        yaml_mod, _, dumper = _yaml_api()
        text: str = yaml_mod.dump(
            value, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
        )
        return text.encode("utf-8")

    def encode_over(self, value: Any, previous: bytes) -> bytes:
        """``previous`` with only the changed entries rewritten (:func:`gitstate.roundtrip.yaml_encode_over`)."""
        from .roundtrip import yaml_encode_over

        return yaml_encode_over(value, previous)

    def decode(self, data: bytes, doc: str = "") -> Any:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(doc, f"not valid UTF-8 at byte {e.start}") from e
        yaml, loader_cls, _ = _yaml_api()
        loader = loader_cls(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if yaml_expanded_size(node) > MAX_YAML_NODES:
                raise DecodeError(
                    doc,
                    f"YAML aliases expand to more than {MAX_YAML_NODES} nodes; refused (possible alias bomb)",
                )
            return loader.construct_document(node)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
            raise DecodeError(
                doc,
                f"invalid YAML: {problem}",
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            ) from e
        except yaml.YAMLError as e:
            raise DecodeError(doc, f"invalid YAML: {e}") from e
        except RecursionError as e:
            raise DecodeError(doc, "invalid YAML: nested too deeply") from e
        except (ValueError, TypeError, AttributeError, OverflowError) as e:
            # PyYAML's constructors call int()/datetime() unguarded: a 5,000-digit integer, "2001-13-01", or a
            # "!!timestamp" tag on text that is not one.
            if _LONG_DIGITS.search(data):
                raise _too_long_number(doc, data, e if isinstance(e, ValueError) else ValueError(e)) from e
            raise DecodeError(doc, f"invalid YAML: a value cannot be read ({e})") from e
        finally:
            loader.dispose()


class _TextCodec(Codec):
    name = "text"

    def encode(self, value: Any) -> bytes:
        return str(value).encode("utf-8")

    def decode(self, data: bytes, doc: str = "") -> Any:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(doc, f"not valid UTF-8 at byte {e.start}") from e

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        if not isinstance(value, str):
            raise EncodeError(f"{doc}: text documents hold a str, not a {type(value).__name__}")
        if key:
            raise EncodeError(f"{doc}: text documents have no keys; pass key=None")
        value = str.__str__(value)
        check_str(value, doc, "the text")
        return value


class _BytesCodec(Codec):
    name = "bytes"

    def encode(self, value: Any) -> bytes:
        return bytes(value)

    def decode(self, data: bytes, doc: str = "") -> Any:
        return bytes(data)

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(
                f"{doc}: documents without a .json/.yaml/.txt/.md suffix hold bytes, not {type(value).__name__}"
            )
        if key:
            raise EncodeError(f"{doc}: raw documents have no keys; pass key=None")
        return bytes(value)


_JSON: Final = _JsonCodec()
JSON: Final[Codec] = _JSON


def normalize_whole_json(value: Any, doc: str = "") -> Any:
    """``JSON.normalize(value, doc)`` for a whole document, except that a plain mapping of
    :data:`gitstate.encoded.MIN_BYTES` or more comes back as an :class:`~gitstate.encoded.Encoded` of its bytes
    instead of a private copy (what a store's whole-document ``set()`` keeps).

    Raises:
        EncodeError: as :meth:`Codec.normalize`.
    """
    return _JSON._normalize(value, doc, (), keep_encoded=True)


YAML: Final[Codec] = _YamlCodec()
TEXT: Final[Codec] = _TextCodec()
BYTES: Final[Codec] = _BytesCodec()

_BY_SUFFIX: Final = {".json": JSON, ".yaml": YAML, ".yml": YAML, ".txt": TEXT, ".md": TEXT}


class Wrapped(Codec):
    """A codec that transforms another codec's bytes on their way to and from disk (encryption, compression, a
    signature). Values are checked and normalized by the inner codec; only the bytes differ.

    Subclass it and override :meth:`wrap_bytes` and :meth:`unwrap_bytes`. ``name`` defaults to
    ``"<kind>+<inner name>"``: the name keys gitstate's decode caches, so it must differ from the inner codec's.

    Example:
        >>> class Reversed(Wrapped):
        ...     kind = "reversed"
        ...     def wrap_bytes(self, data: bytes) -> bytes: return data[::-1]
        ...     def unwrap_bytes(self, data: bytes, doc: str) -> bytes: return data[::-1]
        >>> c = Reversed(JSON)
        >>> c.name, c.decode(c.encode({"a": 1}))
        ('reversed+json', {'a': 1})
    """

    kind: str = "wrapped"

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.name = f"{self.kind}+{inner.name}"
        self.structured = inner.structured
        self.allow_scalar_keys = inner.allow_scalar_keys

    def wrap_bytes(self, data: bytes) -> bytes:
        """The bytes written to disk and history for the inner codec's ``data``."""
        raise NotImplementedError

    def unwrap_bytes(self, data: bytes, doc: str) -> bytes:
        """The inner codec's bytes from what is on disk. Raise :class:`~gitstate.errors.DecodeError` if they
        cannot be recovered (wrong key, damaged data)."""
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        """The inner codec's canonical bytes of ``value``, wrapped."""
        return self.wrap_bytes(self.inner.encode(value))

    def encode_over(self, value: Any, previous: bytes) -> bytes:
        """The inner codec's format-preserving bytes over the unwrapped ``previous``, wrapped (canonical when
        ``previous`` cannot be unwrapped)."""
        try:
            inner_previous = self.unwrap_bytes(previous, "")
        except DecodeError:
            return self.encode(value)
        return self.wrap_bytes(self.inner.encode_over(value, inner_previous))

    def decode(self, data: bytes, doc: str = "") -> Any:
        """Unwrap ``data`` and parse it with the inner codec."""
        return self.inner.decode(self.unwrap_bytes(data, doc), doc)

    def normalize(self, value: Any, doc: str = "", key: tuple[Any, ...] = ()) -> Any:
        """The inner codec's check and copy."""
        return self.inner.normalize(value, doc, key)


class Codecs:
    """Which codec serves which document: one registry, owned by a store (``gitstate.open(..., codecs=...)``),
    through which every encode and decode of that store goes (flushes, hand edits, history views, merges).

    A document's codec is chosen by its path's suffix (:meth:`register`), then wrapped by every
    :meth:`wrap` rule whose pattern matches the path (:func:`fnmatch.fnmatchcase` on the whole store path, so
    ``secrets/*`` matches ``secrets/a.json``; ``*`` crosses ``/``). Change the registry before opening the store:
    a store caches its documents decoded. The command line (``gitstate log``, ``diff``, ``show``) uses the default
    registry: documents of a custom suffix show as bytes there.

    Example:
        >>> reg = Codecs()
        >>> reg.register(".state", JSON)
        >>> reg.for_doc("agent/run.state").name, reg.for_doc("notes.md").name, reg.for_doc("blob").name
        ('json', 'text', 'bytes')
    """

    def __init__(self) -> None:
        self._by_suffix: dict[str, Codec] = dict(_BY_SUFFIX)
        self._wrappers: list[tuple[str, Callable[[Codec], Codec]]] = []
        self._cache: dict[str, Codec] = {}

    def register(self, suffix: str, codec: Codec) -> None:
        """Serve documents whose name ends in ``suffix`` (like ``".toml"``, compared without case) with ``codec``."""
        if not suffix.startswith(".") or len(suffix) < 2 or "/" in suffix:
            raise ValueError(f"a suffix starts with a dot and names no directory, like '.toml', not {suffix!r}")
        if not isinstance(codec, Codec):
            raise TypeError(f"a codec is a gitstate.codecs.Codec, not {type(codec).__name__}")
        self._by_suffix[suffix.lower()] = codec
        self._cache.clear()

    def wrap(self, pattern: str, wrapper: Callable[[Codec], Codec]) -> None:
        """Wrap the codec of every document matching ``pattern`` with ``wrapper(codec)`` (e.g. a
        :class:`Wrapped` subclass). Rules apply in the order they were added, the first innermost."""
        self._wrappers.append((pattern, wrapper))
        self._cache.clear()

    def for_doc(self, doc: str) -> Codec:
        """The codec that encodes and decodes ``doc``."""
        codec = self._cache.get(doc)
        if codec is None:
            name = doc.rsplit("/", 1)[-1]
            dot = name.rfind(".")
            codec = self._by_suffix.get(name[dot:].lower(), BYTES) if dot > 0 else BYTES
            for pattern, wrapper in self._wrappers:
                if fnmatch.fnmatchcase(doc, pattern):
                    codec = wrapper(codec)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[doc] = codec
        return codec


#: The registry of stores opened without ``codecs=``, and of the command line.
DEFAULT: Final = Codecs()

# Which registry serves which repository handle: the store binds its registry to its Repository, so that the
# services it hands the repository to (history views, merges, migrations, hand-edit checks) decode with the
# store's codecs without each call passing them. Weak keys: a closed store's repository goes with it.
_BOUND: weakref.WeakKeyDictionary[object, Codecs] = weakref.WeakKeyDictionary()


def bind(owner: object, codecs: Codecs) -> None:
    """Make ``codecs`` the registry :func:`registry_for` gives for ``owner`` (a store's repository handle)."""
    _BOUND[owner] = codecs


def registry_for(owner: object | None) -> Codecs:
    """The registry bound to ``owner`` with :func:`bind`, else :data:`DEFAULT`."""
    if owner is None:
        return DEFAULT
    return _BOUND.get(owner, DEFAULT)


def codec_for(doc: str) -> Codec:
    """The codec the default registry (:data:`DEFAULT`) gives a document path.

    Example:
        >>> codec_for("memory/work.yaml").name
        'yaml'
    """
    return DEFAULT.for_doc(doc)
