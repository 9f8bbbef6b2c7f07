"""The async API: :func:`aopen` and :class:`AsyncStore`, for programs that run on an asyncio event loop.

An :class:`AsyncStore` wraps a :class:`~gitstate.store.Store`. Calls that do I/O are coroutines with the same
names as on the Store (``await store.flush()``, ``await store.log()``, ``await store.restore(rev)``...) and run
in a worker thread, so the event loop never waits on the disk or on Git. Reads and writes of documents stay plain
calls (``get``, ``set``, ``delete``, ``update``, ``append``, ``docs``, ``pending``): they work in memory, as on
the Store (a read may ``stat`` the branch ref and load a small document the first time; a write never touches the
disk). The background flusher commits debounced writes on its own thread, as always.

Every write (``set``, ``delete``, ``update``, ``append``) also returns an awaitable, the same in every durability
mode: ``await store.set(...)`` returns once the write is as durable as the mode promises. With
``durability="immediate"`` that is committed (write-through): the write lands in memory at the call, and its
commit runs in the store's commit thread, never on the event loop; awaiting waits for that commit and raises
its :class:`~gitstate.errors.SaveError`. With ``"debounced"`` and ``"manual"`` the awaitable is already done (the
flusher, or ``await store.flush()``, commits). A write that is not awaited is committed all the same.

What belongs here: :func:`aopen`, :class:`AsyncStore` (coroutines that run Store calls in a worker thread, the
:data:`Written` awaitables and the commit thread of immediate mode), :class:`AsyncStateView`,
:class:`EventStream` and handing events over to the loop. What does not: any store logic: an AsyncStore calls
only the Store's public API and ``store.services`` (:mod:`gitstate.store`, :mod:`gitstate.services`); the
transaction overlay is :class:`gitstate.transactions.TxView`; flushing at exit is :mod:`gitstate.lifecycle`.

What differs from the Store:

* With ``durability="immediate"``, the wrapped :attr:`AsyncStore.store` is opened with ``"manual"``: the
  AsyncStore commits each write itself, off the loop (a Store in immediate mode would commit on the calling
  thread, which is the loop's). A write made on ``AsyncStore.store`` directly is committed by the next one.
* Event callbacks registered with :meth:`AsyncStore.on` run **on the event loop thread** (the store emits them
  from its own threads; they are handed over with ``call_soon_threadsafe``); a callback may be a coroutine
  function. :meth:`AsyncStore.events` gives the same events as an async iterator.
* ``async with store.transaction(message) as tx:`` buffers the block's writes in ``tx`` (a
  :class:`~gitstate.transactions.TxView`: reads see the store's current values with the block's writes on top) and
  applies them in one worker-thread call when the block ends: they become one commit, or nothing if the block
  raises. The block does not lock the store: other writers go on while it runs, and its writes are applied, in
  order, to the state as it is at the end of the block.
* Cancelling a coroutine does not cancel the work already handed to the thread: a cancelled ``flush`` still
  commits.

Example:
    >>> import asyncio, gitstate, tempfile
    >>> async def main():
    ...     async with gitstate.aopen(tempfile.mkdtemp(), durability="manual") as store:
    ...         store.set("state.json", "services.slack", True)
    ...         await store.flush()
    ...         return [c.actor for c in await store.log()]
    >>> asyncio.run(main())
    ['library']
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .keys import ABSENT
from .store import Store
from .store import open as _open_store
from .transactions import TxView

if TYPE_CHECKING:
    from .docdiff import Change
    from .history import Commit, Snapshot, StateView

__all__ = ["AsyncStateView", "AsyncStore", "EventStream", "Written", "aopen"]

logger = logging.getLogger("gitstate.aio")

P = ParamSpec("P")
T = TypeVar("T")
_DEFAULT: Any = object()

#: What a write of an :class:`AsyncStore` returns: an :class:`asyncio.Future` that resolves to None once the write
#: is as durable as the store's durability mode promises (committed, for ``"immediate"``). Awaiting it is
#: optional; cancelling the waiting task does not cancel the commit.
Written = asyncio.Future[None]


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[[Any], object], tasks: set[asyncio.Future[Any]]
) -> Callable[[Any], None]:
    """Wrap ``callback`` so it runs on ``loop``'s thread; coroutines it returns become tasks kept in ``tasks``."""

    def invoke(event: Any) -> None:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                tasks.add(task)
                task.add_done_callback(_task_done(tasks, callback, event))
        except Exception:
            logger.exception("callback %r for event %r raised; ignored", callback, getattr(event, "name", event))

    def relay(event: Any) -> None:
        if loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(invoke, event)
        except RuntimeError:  # the loop closed in between
            logger.debug("event %r dropped: the event loop is closed", event)

    return relay


def _task_done(tasks: set[asyncio.Future[Any]], callback: object, event: Any) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "async callback %r for event %r raised; ignored",
                callback,
                getattr(event, "name", event),
                exc_info=task.exception(),
            )

    return done


class AsyncStateView:
    """A read-only view of the store as of a revision (from :meth:`AsyncStore.at`); reads run in a thread.

    Attributes:
        view: the synchronous :class:`~gitstate.history.StateView`, for anything else it offers.
    """

    def __init__(self, view: StateView) -> None:
        self.view = view

    async def get(self, doc: str, key: object = None, default: Any = _DEFAULT) -> Any:
        """The value at ``key`` in ``doc`` as of the revision (see ``StateView.get``)."""
        if default is _DEFAULT:
            return await _in_thread(self.view.get, doc, key)
        return await _in_thread(self.view.get, doc, key, default=default)

    async def docs(self) -> list[str]:
        """The documents as of the revision."""
        return await _in_thread(self.view.docs)


class EventStream:
    """Store events as an async iterator (from :meth:`AsyncStore.events`). Use it as an async context manager,
    or call :meth:`close`, to stop receiving events.

    Example:
        >>> # async with store.events("external_change") as stream:
        >>> #     async for event in stream:
        >>> #         print(event.docs)
    """

    def __init__(self, store: AsyncStore, names: tuple[str, ...], *, maxsize: int) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self._closed = False
        self.dropped = 0
        self._offs = [store.on(name, self._put) for name in names]

    def _put(self, event: Any) -> None:  # runs on the loop thread
        if self._closed:
            return
        if self._queue.full():  # keep the newest: drop the oldest
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def close(self) -> None:
        """Stop receiving events; a waiting ``__anext__`` ends."""
        if self._closed:
            return
        self._closed = True
        for off in self._offs:
            off()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is _END:
            raise StopAsyncIteration
        return event

    async def get(self, *, timeout_s: float | None = None) -> Any:
        """The next event; raises :class:`TimeoutError` after ``timeout_s``."""
        event = await asyncio.wait_for(self.__anext__(), timeout_s)
        return event

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


_END: Any = object()


class AsyncStore:
    """A :class:`~gitstate.store.Store` for asyncio programs: I/O calls are coroutines, document reads and writes
    are plain calls. Open one with :func:`aopen`.

    Attributes:
        store: the synchronous Store it wraps (its in-memory calls are safe from the loop; do not call its I/O
            methods from the loop thread).
        path: the store directory.

    Example:
        >>> import asyncio, gitstate, tempfile
        >>> async def main():
        ...     async with gitstate.aopen(tempfile.mkdtemp(), durability="manual") as store:
        ...         store.set("tasks/t1.json", None, {"status": "open"})
        ...         commit = await store.flush("add task 1")
        ...         return store.get("tasks/t1.json", "status"), len(commit)
        >>> asyncio.run(main())
        ('open', 40)
    """

    def __init__(
        self,
        store: Store,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        durability: str | None = None,
        tasks: set[asyncio.Future[Any]] | None = None,
    ) -> None:
        self.store = store
        self.path = store.path
        self._loop = loop or asyncio.get_running_loop()
        #: Async callbacks in flight (``tasks``: the set the open callbacks already use); close() awaits them.
        self._tasks: set[asyncio.Future[Any]] = tasks if tasks is not None else set()
        self._durability = durability or store.durability
        # immediate mode: one thread commits the writes, in the order they were made
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        if self._durability == "immediate":
            self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gitstate-aio-commit")

    def __repr__(self) -> str:
        return f"<gitstate.AsyncStore {str(self.path)!r} head={(self.store.head or 'none')[:8]}>"

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------- plain calls: in memory
    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.store.closed

    @property
    def durability(self) -> str:
        """``"immediate"``, ``"debounced"`` or ``"manual"``: what awaiting a write waits for (see the module)."""
        return self._durability

    @property
    def head(self) -> str | None:
        """Id of the last commit the store has seen on its branch."""
        return self.store.head

    @property
    def pending(self) -> int:
        """Number of writes not yet committed."""
        return self.store.pending

    @property
    def schema_version(self) -> int:
        """The schema version of the state (0 for a store that never migrated)."""
        return self.store.schema_version

    def get(self, doc: str, key: object = None, default: Any = _DEFAULT) -> Any:
        """A deep copy of the value at ``key`` in ``doc`` (see :meth:`Store.get <gitstate.store.Store.get>`)."""
        if default is _DEFAULT:
            return self.store.get(doc, key)
        return self.store.get(doc, key, default)

    def exists(self, doc: str, key: object = None) -> bool:
        """True if the document (and key, when given) exists."""
        return self.store.exists(doc, key)

    def set(self, doc: str, key: object, value: Any) -> Written:
        """Set ``key`` in ``doc`` to ``value`` in memory now; returns a :data:`Written` to await for durability
        (``immediate``: committed off the loop; otherwise committed by the next flush).

        Example:
            >>> import asyncio, gitstate, tempfile
            >>> async def main():
            ...     async with gitstate.aopen(tempfile.mkdtemp(), durability="immediate") as store:
            ...         await store.set("state.json", "services.slack", True)
            ...         return store.pending, (await store.log())[0].actor
            >>> asyncio.run(main())
            (0, 'library')
        """
        self.store.set(doc, key, value)
        return self._written()

    def delete(self, doc: str, key: object = None) -> Written:
        """Delete ``key`` from ``doc`` (``key=None``: the document) in memory now; a :data:`Written`, as
        :meth:`set`."""
        self.store.delete(doc, key)
        return self._written()

    def update(self, doc: str, mapping: Mapping[str, Any], key: object = None) -> Written:
        """Deep-merge ``mapping`` into the document (or the mapping at ``key``) in memory now; a
        :data:`Written`, as :meth:`set`."""
        self.store.update(doc, mapping, key)
        return self._written()

    def append(self, doc: str, key: object, value: Any) -> Written:
        """Append ``value`` to the list at ``key`` (created if missing) in memory now; a :data:`Written`, as
        :meth:`set`."""
        self.store.append(doc, key, value)
        return self._written()

    def _written(self) -> Written:
        """The awaitable of a write just made in memory: done at once, or (immediate mode) once the commit
        thread has committed it. Runs on the loop thread."""
        done: Written = self._loop.create_future()
        if self._committer is None:
            done.set_result(None)
            return done
        loop = self._loop

        def settle(job: concurrent.futures.Future[Any]) -> None:  # on the commit thread
            error = job.exception()

            def resolve() -> None:  # on the loop thread
                if done.cancelled():
                    return
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(resolve)

        # One flush per write, in order: a flush commits every write made before it, so a later one finds
        # nothing left and returns at once.
        self._committer.submit(self.store.flush).add_done_callback(settle)
        return done

    def docs(self, prefix: str = "") -> list[str]:
        """Sorted paths of the documents in the store."""
        return self.store.docs(prefix)

    def on(self, event: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback(event_object)`` on the event loop's thread for each ``event`` (a coroutine function
        is run as a task). Returns a function that unregisters it. Events as for
        :meth:`Store.on <gitstate.store.Store.on>`.

        Example:
            >>> # off = store.on("external_change", lambda e: print("changed:", e.docs))
        """
        return self.store.on(event, _on_loop(self._loop, callback, self._tasks))

    def events(self, *names: str, maxsize: int = 1000) -> EventStream:
        """The events ``names`` (all kinds when none given) as an async iterator; the oldest are dropped past
        ``maxsize`` unread events.

        Example:
            >>> # async with store.events("external_change", "invalid_edit") as stream:
            >>> #     async for event in stream: ...
        """
        from .events import EVENT_TYPES

        return EventStream(self, names or tuple(EVENT_TYPES), maxsize=maxsize)

    # ----------------------------------------------------------------- transactions
    @contextlib.asynccontextmanager
    async def transaction(
        self, message: str | None = None, *, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[TxView]:
        """Buffer the block's writes and commit them as one commit when it ends (nothing if it raises).

        ``tx`` reads the store's current values with the block's own writes on top. The store is not locked
        while the block runs; at the end the writes are applied in order, in one thread call, with the
        Store's transaction (pending writes from before are committed first, on their own). ``tx.commit`` is
        the commit id afterwards (None if the writes changed nothing).

        Raises:
            KeyNotFound, EncodeError, InvalidPath: a write in the block is invalid (raised at the write).
            SaveError: the commit failed; the writes stay pending and a later flush retries them.

        Example:
            >>> import asyncio, gitstate, tempfile
            >>> async def main():
            ...     async with gitstate.aopen(tempfile.mkdtemp()) as store:
            ...         async with store.transaction("task 3 done") as tx:
            ...             tx.set("tasks/t3.json", "status", "done")
            ...             tx.append("state.json", "done", 3)
            ...         return (await store.log(limit=1))[0].docs
            >>> asyncio.run(main())
            ['state.json', 'tasks/t3.json']
        """
        self.store.services.check_open()
        tx = TxView(functools.partial(self.store.get, default=ABSENT), self.store.docs, codecs=self.store.codecs)
        yield tx
        if tx.writes:
            tx.commit = await _in_thread(self._apply_tx, tx, message, metadata)

    def _apply_tx(self, tx: TxView, message: str | None, metadata: Mapping[str, str] | None) -> str | None:
        store = self.store
        before = store.head
        with store.transaction(message, metadata=metadata):
            before = store.head  # after the commit of writes pending from before the block
            for w in tx.replay():
                if w.kind == "set":
                    store.set(w.doc, w.key, w.value)
                elif w.kind == "delete":
                    store.delete(w.doc, w.key)
                elif w.kind == "update":
                    store.update(w.doc, w.value, w.key)
                else:
                    store.append(w.doc, w.key, w.value)
        return store.head if store.head != before else None

    # ----------------------------------------------------------------- coroutines: I/O in a worker thread
    async def flush(self, message: str | None = None, *, metadata: Mapping[str, str] | None = None) -> str | None:
        """Commit pending writes and wait until they are durable; the commit id (None if nothing was pending)."""
        return await _in_thread(self.store.flush, message, metadata=metadata)

    async def close(self) -> None:
        """Flush pending writes and close the store. Idempotent."""
        if self._committer is not None:  # let the commits of immediate writes finish, in order
            committer, self._committer = self._committer, None
            await _in_thread(committer.shutdown, wait=True)
        if not self.store.closed:
            await _in_thread(self.store.close)
        if self._tasks:  # let async callbacks of the last events finish
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def log(self, doc: str | None = None, key: object = None, limit: int | None = None) -> list[Commit]:
        """Commits, newest first (see :meth:`Store.log <gitstate.store.Store.log>`)."""
        return await _in_thread(self.store.log, doc, key, limit)

    async def diff(self, a: str = "HEAD~1", b: str = "HEAD", doc: str | None = None) -> list[Change]:
        """Key-level changes from revision ``a`` to ``b``."""
        return await _in_thread(self.store.diff, a, b, doc)

    async def at(self, rev: str) -> AsyncStateView:
        """A read-only view of the store as of ``rev``; its reads are coroutines too."""
        return AsyncStateView(await _in_thread(self.store.at, rev))

    async def resolve(self, rev: str) -> str:
        """The commit id a revision names."""
        return await _in_thread(self.store.resolve, rev)

    async def restore(self, rev: str, docs: list[str] | None = None, message: str | None = None) -> str:
        """Restore documents (all, or ``docs``) to their content at ``rev`` as a new commit."""
        return await _in_thread(self.store.restore, rev, docs, message)

    async def undo(self) -> str:
        """Revert the last commit as a new commit."""
        return await _in_thread(self.store.undo)

    async def snapshot(self, name: str, message: str | None = None) -> str:
        """Tag the current state as ``name``; returns the commit id."""
        return await _in_thread(self.store.snapshot, name, message)

    async def snapshots(self) -> list[Snapshot]:
        """Snapshots (Git tags), oldest first."""
        return await _in_thread(self.store.snapshots)

    async def migrate(self, steps: Mapping[int, Callable[[Any], object]], *, dry_run: bool = False) -> list[str]:
        """Run migration steps (see :meth:`Store.migrate <gitstate.store.Store.migrate>`). The steps run in the
        worker thread: they are plain functions of ``tx``."""
        return await _in_thread(self.store.migrate, steps, dry_run=dry_run)

    async def remote_add(self, name: str, url: str) -> None:
        """Add a remote."""
        await _in_thread(self.store.remote_add, name, url)

    async def push(self, remote: str = "origin") -> str | None:
        """Flush, then push the branch to ``remote``."""
        return await _in_thread(self.store.push, remote)

    async def pull(self, remote: str = "origin", *, on_conflict: str = "ours") -> str | None:
        """Fetch ``remote`` and merge its changes in."""
        return await _in_thread(self.store.pull, remote, on_conflict=on_conflict)

    async def sync(self, remote: str = "origin", *, on_conflict: str = "ours") -> str | None:
        """Pull, then push."""
        return await _in_thread(self.store.sync, remote, on_conflict=on_conflict)

    async def gc(self) -> dict[str, Any]:
        """Pack history and prune debris (see :meth:`Store.gc <gitstate.store.Store.gc>`)."""
        return await _in_thread(self.store.gc)

    async def watch(self, **options: Any) -> Any:
        """Start the watcher thread that commits hand edits; returns the Watcher (``.stop()`` is quick)."""
        return await _in_thread(self.store.watch, **options)

    async def stats(self) -> dict[str, Any]:
        """Flush figures and repository size (see :meth:`Store.stats <gitstate.store.Store.stats>`)."""
        return await _in_thread(self.store.stats)

    async def quarantined(self) -> list[Any]:
        """Hand edits waiting in quarantine (see :meth:`Store.quarantined <gitstate.store.Store.quarantined>`)."""
        return await _in_thread(self.store.quarantined)

    async def quarantine_text(self, doc: str) -> bytes:
        """The bytes of ``doc``'s quarantined save (KeyError when it is not in quarantine)."""
        return await _in_thread(self.store.quarantine_text, doc)

    async def quarantine_drop(self, doc: str) -> bool:
        """Put the committed version of ``doc`` back on disk and clear its quarantine (False: not quarantined)."""
        return await _in_thread(self.store.quarantine_drop, doc)


class _Opening:
    """What :func:`aopen` returns: await it for an :class:`AsyncStore`, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str] | None, options: dict[str, Any]) -> None:
        self._path = path
        self._options = options
        self._store: AsyncStore | None = None

    async def _open(self) -> AsyncStore:
        if self._store is not None:
            return self._store
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Future[Any]] = set()
        options = dict(self._options)
        callbacks = {name: _on_loop(loop, cb, tasks) for name, cb in (options.pop("on", None) or {}).items()}
        handle_signals = options.pop("handle_signals", True)
        durability = options.get("durability", "debounced")
        if durability == "immediate":  # the AsyncStore commits each write itself, off the loop
            options["durability"] = "manual"
        store = await _in_thread(_open_store, self._path, on=callbacks, handle_signals=False, **options)
        if handle_signals and threading.current_thread() is threading.main_thread():
            from .lifecycle import install_signal_handlers

            install_signal_handlers()
        astore = AsyncStore(store, loop=loop, durability=durability, tasks=tasks)
        self._store = astore
        return astore

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncStore:
        return await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.close()


def aopen(path: str | os.PathLike[str] | None = None, **options: Any) -> _Opening:
    """Open (or create) a store for an asyncio program, without blocking the event loop.

    Takes the options of :func:`gitstate.open`, every durability mode included (with ``"immediate"``, each write's
    commit runs in the store's commit thread, off the loop: ``await store.set(...)`` returns once it is
    committed). Use it as ``async with gitstate.aopen(path) as store:`` (closed at the end) or
    ``store = await gitstate.aopen(path)`` (then ``await store.close()``). Callbacks given as ``on=`` run on the
    loop's thread, like those of :meth:`AsyncStore.on`.

    Raises:
        ValueError: an unknown durability mode.
        StoreNotFound, RepositoryError: as :func:`gitstate.open`.

    Example:
        >>> import asyncio, gitstate, tempfile
        >>> async def main():
        ...     store = await gitstate.aopen(tempfile.mkdtemp())
        ...     store.set("state.json", "jobs.standup", True)
        ...     await store.close()
        ...     return store.closed
        >>> asyncio.run(main())
        True
    """
    return _Opening(path, options)
