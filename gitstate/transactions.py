"""Transaction views: an overlay over a store's documents whose writes stay private until its owner commits them.

What belongs here: :class:`TxView` (reads fall through to a base, writes are checked like the Store's and kept
in the view) and its write records. Migration steps get one (``migrate.py`` adds per-step change tracking) and
so do :meth:`AsyncStore.transaction <gitstate.aio.AsyncStore.transaction>` blocks. What does not: committing
(the owner applies :meth:`TxView.replay` or the computed files), the Store's own in-memory transaction
(:meth:`Store.transaction <gitstate.store.Store.transaction>`, which rolls back its journal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .codecs import DEFAULT as DEFAULT_CODECS
from .codecs import Codecs, copy_value
from .errors import KeyNotFound
from .keys import ABSENT, Key, KeyPathError, apply_write, check_target, check_write, parse_key, read_value
from .paths import META_PREFIX, validate_doc_path

__all__ = ["TxView", "TxWrite"]

_DEFAULT: Any = object()


# ===================================================================== the transaction view
@dataclass(frozen=True)
class TxWrite:
    """One write made through a :class:`TxView`."""

    kind: str
    doc: str
    key: Key
    value: Any = None


class TxView:
    """A transaction view over a store: reads fall through to the base state, writes stay in the view.

    Migration steps receive one as ``tx``; :meth:`AsyncStore.transaction <gitstate.aio.AsyncStore.transaction>`
    yields one too. It has the read and write calls of a :class:`~gitstate.store.Store` with the same checks
    (paths, keys, values the codec cannot store), applied to private copies: nothing reaches the store until the
    owner of the view commits it.

    Attributes:
        version: during a migration step, the version the step migrates to (else None).
        from_version: during a migration step, the version it migrates from (else None).
        commit: after an :class:`~gitstate.aio.AsyncStore` transaction, the commit it made (else None).

    Example:
        >>> tx = TxView(lambda doc: {"a": 1} if doc == "s.json" else ABSENT, lambda: {"s.json"})
        >>> tx.set("s.json", "b", 2); tx.get("s.json"), tx.docs()
        ({'a': 1, 'b': 2}, ['s.json'])
    """

    def __init__(
        self, read: Callable[[str], Any], list_docs: Callable[[], Iterable[str]], *, codecs: Codecs | None = None
    ) -> None:
        self._read = read
        self._codecs = codecs if codecs is not None else DEFAULT_CODECS
        self._list_docs = list_docs
        self._base: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._writes: list[TxWrite] = []
        self._base_docs: set[str] | None = None
        self.version: int | None = None
        self.from_version: int | None = None
        self.commit: str | None = None

    def __repr__(self) -> str:
        return f"<gitstate.TxView writes={len(self._writes)} docs={sorted(self._values)}>"

    # ----------------------------------------------------------------- reading
    def _check(self, doc: str) -> str:
        validate_doc_path(doc)
        return doc

    def _base_value(self, doc: str) -> Any:
        if doc not in self._base:
            self._base[doc] = self._read(doc)
        return self._base[doc]

    def _current(self, doc: str) -> Any:
        if doc in self._values:
            return self._values[doc]
        return self._base_value(doc)

    def get(self, doc: str, key: object = None, default: Any = _DEFAULT) -> Any:
        """A deep copy of the value at ``key`` in ``doc`` as the view sees it (the view's writes included).

        Raises:
            KeyNotFound: no such document or key, and no ``default``.
        """
        self._check(doc)
        keyt = parse_key(key)
        return read_value(doc, self._current(doc), keyt, default, absent=ABSENT, no_default=_DEFAULT)

    def exists(self, doc: str, key: object = None) -> bool:
        """True if the document (and key, when given) exists in the view."""
        marker = object()
        return self.get(doc, key, default=marker) is not marker

    def docs(self, prefix: str = "") -> list[str]:
        """Sorted paths of the documents in the view (its creations and deletions included)."""
        if self._base_docs is None:
            self._base_docs = set(self._list_docs())
        paths = set(self._base_docs)
        for doc, value in self._values.items():
            if value is ABSENT:
                paths.discard(doc)
            else:
                paths.add(doc)
        return sorted(p for p in paths if p.startswith(prefix) and not p.startswith(META_PREFIX))

    # ----------------------------------------------------------------- writing
    def _write(self, kind: str, doc: str, key: object, value: Any) -> None:
        # Refuses paths under .gitstate/ too.
        keyt, value = check_write(doc, kind, key, value, codec=self._codecs.for_doc(doc))
        view = self._current(doc)
        check_target(doc, kind, keyt, view)
        if doc not in self._values and view is not ABSENT:
            view = copy_value(view)  # the base value stays pristine: it is what diffs compare against
        self._before_write(doc)
        try:
            self._values[doc] = apply_write(view, kind, keyt, value)
        except KeyPathError as e:
            raise KeyNotFound(doc, keyt, e.problem) from None
        self._writes.append(TxWrite(kind, doc, keyt, copy_value(value)))

    def _before_write(self, doc: str) -> None:
        """Hook for subclasses: called before the first change of ``doc``'s value."""

    def set(self, doc: str, key: object, value: Any) -> None:
        """Set ``key`` in ``doc`` to ``value``; ``key=None`` replaces the document."""
        self._write("set", doc, key, value)

    def delete(self, doc: str, key: object = None) -> None:
        """Delete ``key`` from ``doc``; ``key=None`` removes the document.

        Raises:
            KeyNotFound: the document or key does not exist.
        """
        self._write("delete", doc, key, None)

    def update(self, doc: str, mapping: Mapping[str, Any], key: object = None) -> None:
        """Deep-merge ``mapping`` into the document (or into the mapping at ``key``)."""
        self._write("update", doc, key, mapping)

    def append(self, doc: str, key: object, value: Any) -> None:
        """Append ``value`` to the list at ``key`` (created if missing)."""
        self._write("append", doc, key, value)

    @property
    def writes(self) -> int:
        """Number of writes made through the view."""
        return len(self._writes)

    def replay(self) -> Iterator[TxWrite]:
        """The view's writes, in order (what its owner applies to the store when it commits)."""
        return iter(list(self._writes))
