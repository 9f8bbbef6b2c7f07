"""The small internal interface through which services (migrate, remote, aio, watcher...) use a store.

What belongs here: :class:`StoreServices`, the Protocol of what a service may ask of an open
:class:`~gitstate.store.Store` (``store.services`` hands one out): the repository, commits under the store's
lock, events, after-commit hooks, the schema version the program writes, the head tree after a refresh, the
background push queue, background components. What does not: the implementation (``store.py``), or anything
the public API already offers (``store.head``, ``store.flush()``, ``store.get()``...). A service never touches
``Store``'s ``_private`` attributes; what it needs and this interface lacks is added here first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .events import Event
    from .repo import Repository

__all__ = ["NO_EXPECTED_HEAD", "StoreServices"]

#: ``expected_head`` default of :meth:`StoreServices.commit_external`: commit on whatever the head is.
NO_EXPECTED_HEAD: Any = object()


class StoreServices(Protocol):
    """What a service may use of an open store (``store.services``).

    Lock order: :meth:`commit_lock` is the store's flush lock, then the repository lock; a service that holds
    it may call :meth:`commit_external` and the repository's writers, and must not wait on another thread that
    flushes the same store.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     services = store.services
        ...     with services.commit_lock():
        ...         cid = services.commit_external([({"a.json": b'{"x":1}\\n'}, "made elsewhere")], actor="restore")
        ...     store.get("a.json", "x"), store.head == cid
        (1, True)
    """

    @property
    def repo(self) -> Repository:
        """The store's repository (for reading objects and refs, and for writers that hold :meth:`commit_lock`)."""
        ...

    @property
    def author(self) -> str:
        """The author of the store's commits (``Name <email>``)."""
        ...

    @property
    def fsync(self) -> bool:
        """Whether the store fsyncs what it writes."""
        ...

    def check_open(self) -> None:
        """Raise :class:`~gitstate.errors.StoreClosed` if the store is closed."""
        ...

    def commit_lock(self) -> AbstractContextManager[None]:
        """Hold the store's flush lock and the repository lock: no flush of this process and no other process
        commits meanwhile."""
        ...

    def commit_external(
        self,
        steps: list[tuple[Mapping[str, bytes | None], str]],
        *,
        actor: str,
        author: str | None = None,
        expected_head: Any = NO_EXPECTED_HEAD,
        extra_parents: tuple[str, ...] = (),
    ) -> str | None:
        """Commit file contents made elsewhere (one commit per ``(files, message)`` step; None: a deleted file),
        move the branch once, update the work tree and index, re-apply pending writes on top, emit ``committed``
        and ``external_change`` and run the after-commit hooks. A message without an actor trailer gets the
        change lines and ``actor``'s trailer. Returns the last commit id (None if nothing changed).

        Raises:
            RepositoryError: ``expected_head`` was given and the branch is elsewhere.
            GitBusy: a git operation is in progress in the store.
        """
        ...

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to the store's callbacks (a callback that raises is logged)."""
        ...

    def add_after_commit(self, hook: Callable[[str], None]) -> Callable[[], None]:
        """Call ``hook(commit_id)`` after each commit the store makes or takes in; returns a function that
        removes it again (idempotent)."""
        ...

    @property
    def expected_schema(self) -> int | None:
        """The schema version the program writes (None: unguarded); see :mod:`gitstate.migrate`."""
        ...

    @expected_schema.setter
    def expected_schema(self, version: int | None) -> None: ...

    def refresh(self) -> None:
        """Catch up with commits other processes made (what a read does first)."""
        ...

    @property
    def head_tree(self) -> str | None:
        """The tree of the branch head as this store last saw it (call :meth:`refresh` first for the newest)."""
        ...

    @property
    def push_queue(self) -> Any:
        """The background pusher of ``open(auto_push=...)`` (stopped on close), or None."""
        ...

    @push_queue.setter
    def push_queue(self, queue: Any) -> None: ...

    def add_background(self, component: Any) -> None:
        """A background component (with ``stop()``) that :meth:`Store.close <gitstate.store.Store.close>` stops."""
        ...
