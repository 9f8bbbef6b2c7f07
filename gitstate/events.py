"""Event types delivered to callbacks registered with ``Store.on(event, callback)``.

Every event is a frozen dataclass with a ``name`` class attribute. Callbacks run on the thread that caused the
event (often the background flusher); an exception in a callback is logged and never breaks a write.

What belongs here: the event dataclasses (:class:`Committed`, :class:`Loaded`, :class:`ExternalChange`,
:class:`InvalidEdit`, :class:`Pushed`...), :data:`EVENT_TYPES` by name and the :class:`EventBus` that registers
callbacks and emits to them. What does not: deciding when an event happens (the emitters: ``flusher.py``,
``ingest.py``, ``journal.py``, ``store.py``, ``remote/autopush.py``), delivering events on an asyncio loop
(:mod:`gitstate.aio`), printing them (:mod:`gitstate.cli.watch`).

Example:
    >>> import gitstate, tempfile
    >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
    ...     off = store.on("committed", lambda e: print(e.docs))
    ...     store.set("state.json", "a", 1)
    ...     _ = store.flush()
    ['state.json']
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "EVENT_TYPES",
    "Committed",
    "Event",
    "EventBus",
    "ExternalChange",
    "GitOperationInProgress",
    "InvalidEdit",
    "Loaded",
    "PushError",
    "Pushed",
    "QuarantineCleared",
    "SaveErrorEvent",
]

logger = logging.getLogger("gitstate.events")


@dataclass(frozen=True)
class Event:
    """Base of all events."""

    name: ClassVar[str] = "event"


@dataclass(frozen=True)
class Committed(Event):
    """A commit landed on the store's branch.

    Attributes:
        commit: the new commit id.
        actor: ``library``, ``human``, ``restore``, ``migration`` or ``merge``.
        docs: the document paths it changed.
        message: the full commit message.
        duration_ms: how long the flush took.
    """

    name: ClassVar[str] = "committed"
    commit: str
    actor: str
    docs: list[str]
    message: str = ""
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Loaded(Event):
    """The store opened. ``recovered`` lists documents found changed on disk and committed on open;
    ``quarantined`` maps documents that did not parse to where their content was kept; ``repaired`` says what
    was repaired in the repository (a damaged branch ref set back to its last good commit)."""

    name: ClassVar[str] = "loaded"
    head: str | None
    recovered: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SaveErrorEvent(Event):
    """A flush failed; the pending writes are kept and retried. ``error`` is the exception."""

    name: ClassVar[str] = "save_error"
    error: BaseException
    pending: int


@dataclass(frozen=True)
class GitOperationInProgress(Event):
    """A git operation (``merge``, ``rebase``, ``cherry-pick``, ``revert``, ``bisect``...) started in the store
    directory: flushes hold the pending writes (``pending``) and touch neither the work tree nor the index.
    Emitted once when the store notices it, and again with ``finished=True`` when git is done and flushes
    resume."""

    name: ClassVar[str] = "git_busy"
    operation: str
    pending: int = 0
    finished: bool = False


@dataclass(frozen=True)
class ExternalChange(Event):
    """Documents changed under the store (a human edit, another process, a restore, a pull).

    Attributes:
        docs: the changed document paths.
        changes: the structured changes (``gitstate.Change``).
        overwritten: the program's pending values that a human edit overrode (``gitstate.Conflict``).
        source: ``human``, ``process``, ``restore``, ``merge`` or ``migration``.
    """

    name: ClassVar[str] = "external_change"
    docs: list[str]
    changes: list[Any] = field(default_factory=list)
    overwritten: list[Any] = field(default_factory=list)
    source: str = "process"
    commit: str | None = None


@dataclass(frozen=True)
class InvalidEdit(Event):
    """A file edited by hand did not parse: not committed; its content was kept at ``quarantined_to``."""

    name: ClassVar[str] = "invalid_edit"
    doc: str
    error: str
    line: int | None = None
    column: int | None = None
    quarantined_to: str | None = None


@dataclass(frozen=True)
class QuarantineCleared(Event):
    """A quarantined document is no longer waiting: the human saved a version that parses (merged key by key with
    what programs committed meanwhile, in ``commit``), saved the committed version back, deleted the file, or the
    edit was dropped (``dropped``: the committed version was put back on disk).

    Attributes:
        doc: the document.
        commit: the commit of the fixed save (None when nothing had to be committed).
        merged: keys programs had committed while the document waited, kept in the fixed version.
        dropped: the edit was given up (``quarantine drop``).
    """

    name: ClassVar[str] = "quarantine_cleared"
    doc: str
    commit: str | None = None
    merged: list[Any] = field(default_factory=list)
    dropped: bool = False


@dataclass(frozen=True)
class Pushed(Event):
    """Commits reached a remote."""

    name: ClassVar[str] = "pushed"
    remote: str
    commit: str
    count: int = 0


@dataclass(frozen=True)
class PushError(Event):
    """A background push failed; it is retried with backoff."""

    name: ClassVar[str] = "push_error"
    remote: str
    error: str
    attempts: int = 0
    retry_in_s: float | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        Committed,
        Loaded,
        SaveErrorEvent,
        ExternalChange,
        InvalidEdit,
        QuarantineCleared,
        Pushed,
        PushError,
        GitOperationInProgress,
    )
}


class EventBus:
    """Callbacks by event name. Thread-safe; a raising callback is logged, never propagated."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], object]]] = {}

    def on(self, name: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Register ``callback`` for ``name``; returns a function that unregisters it."""
        if name not in EVENT_TYPES:
            raise ValueError(f"unknown event {name!r}; known events: {', '.join(sorted(EVENT_TYPES))}")
        # Copy-on-write so emit() can iterate without a lock.
        self._callbacks = {**self._callbacks, name: [*self._callbacks.get(name, []), callback]}

        def off() -> None:
            cbs = [c for c in self._callbacks.get(name, []) if c is not callback]
            self._callbacks = {**self._callbacks, name: cbs}

        return off

    def emit(self, event: Event) -> None:
        """Call every callback registered for the event's name."""
        for cb in self._callbacks.get(event.name, ()):
            try:
                cb(event)
            except Exception:
                logger.exception("callback %r for event %r raised; ignored", cb, event.name)
