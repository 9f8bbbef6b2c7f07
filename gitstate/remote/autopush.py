"""The background auto-pusher (AutoPusher, start_auto_push): pushes after commits, batched, with backoff.

It talks to the store only through ``store.services`` (gitstate.services.StoreServices) and public methods.

What belongs here: AutoPusher (its thread, batching commits, exponential backoff, one last bounded push on stop),
start_auto_push and the AUTO_PUSH_* timings. What does not: the push itself (sync.py), the push state file and the
registry of running pushers (state.py), the Pushed and PushError events (gitstate.events).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..ancestry import ahead_behind
from ..errors import GitStateError
from ..events import Pushed, PushError
from ..repo import Repository
from .config import check_name
from .state import pushers, pushers_lock, record_push_state
from .sync import push, tracking_ref

if TYPE_CHECKING:
    from ..store import Store


logger = logging.getLogger("gitstate.remote")


#: Auto-push: wait this long after a commit so that a burst of commits goes in one push.
AUTO_PUSH_BATCH_MS: Final = 200
#: Auto-push: at most one push per this interval, so that a steady write load is pushed in batches.
AUTO_PUSH_MIN_INTERVAL_MS: Final = 1000
#: Auto-push: first retry delay after a failure; doubles on each failure up to ``AUTO_PUSH_MAX_BACKOFF_S``.
AUTO_PUSH_INITIAL_BACKOFF_S: Final = 0.5
AUTO_PUSH_MAX_BACKOFF_S: Final = 60.0
#: Auto-push: how long ``close()`` waits for the last push attempt.
AUTO_PUSH_FINAL_TIMEOUT_S: Final = 5.0


# ===================================================================== auto-push
class AutoPusher:
    """Pushes a store's branch to one remote in the background after commits (see :func:`start_auto_push`).

    Commits only set a flag (O(1), on the committing thread); a daemon thread waits ``batch_ms`` so a burst of
    commits goes in one push, and starts pushes at least ``min_interval_ms`` apart so a steady write load is
    pushed in batches (one push per interval, however many commits). It pushes without any store lock, and on
    failure retries after an exponential backoff (``initial_backoff_s`` doubling up to ``max_backoff_s``, with
    jitter). It never force-pushes: a rejected push (the remote moved) is reported as ``push_error`` until
    someone syncs.

    Example:
        >>> store = gitstate.open("/var/lib/agent", auto_push="origin")  # doctest: +SKIP
        >>> off = store.on("pushed", lambda e: print(e.remote, e.commit[:8], e.count))  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        remote: str,
        *,
        batch_ms: int = AUTO_PUSH_BATCH_MS,
        min_interval_ms: int = AUTO_PUSH_MIN_INTERVAL_MS,
        initial_backoff_s: float = AUTO_PUSH_INITIAL_BACKOFF_S,
        max_backoff_s: float = AUTO_PUSH_MAX_BACKOFF_S,
        final_timeout_s: float = AUTO_PUSH_FINAL_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.remote = check_name(remote)
        self.batch_ms = batch_ms
        self.min_interval_ms = min_interval_ms
        self._last_start = 0.0
        self._retry_in_s = 0.0
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max(max_backoff_s, initial_backoff_s)
        self.final_timeout_s = final_timeout_s
        self.attempts = 0
        self.pushes = 0
        self._repo: Repository = store.services.repo
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._unhook: Callable[[], None] | None = None
        self._key = (str(self._repo.root), self.remote)

    @property
    def running(self) -> bool:
        """True while the pusher thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; it pushes at once if the branch is ahead of the remote."""
        with pushers_lock:
            pushers.setdefault(self._key, set()).add(self)
        self._unsubscribe = self.store.on("committed", self._on_commit)
        self._unhook = self.store.services.add_after_commit(self._on_head_moved)
        self._thread = threading.Thread(target=self._run, name=f"gitstate-autopush[{self.remote}]", daemon=True)
        self._thread.start()
        self._wake.set()

    def poke(self) -> None:
        """Ask for a push attempt now (e.g. the remote was just added)."""
        self.attempts = 0
        self._wake.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the pusher has nothing left to push (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic()))) and not self._wake.is_set():
                return True
        return False

    def _on_commit(self, event: object) -> None:
        self._idle.clear()
        self._wake.set()

    def _on_head_moved(self, commit: str) -> None:
        self._idle.clear()
        self._wake.set()

    def _backoff(self) -> float:
        delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, self.attempts - 1))
        return float(delay * random.uniform(0.8, 1.0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                break
            self._idle.clear()
            delay = max(self.batch_ms / 1000, self._last_start + self.min_interval_ms / 1000 - time.monotonic())
            if delay > 0 and self._stop.wait(delay):
                break
            self._wake.clear()
            self._last_start = time.monotonic()
            if self._attempt():
                if not self._wake.is_set():
                    self._idle.set()
                continue
            if self._stop.wait(self._retry_in_s):
                break
            self._last_start = 0.0  # the backoff was the wait: no minimum interval on top
            self._wake.set()
        self._final_attempt()

    def _final_attempt(self) -> None:
        deadline = self._deadline
        if deadline is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return
        try:
            head = self._repo.head()
            if head is None or head == self._repo.read_ref(tracking_ref(self._repo, self.remote)):
                return
        except GitStateError:
            return
        self._attempt(timeout_s=max(0.1, remaining), final=True)

    def _attempt(self, *, timeout_s: float | None = None, final: bool = False) -> bool:
        """One push; True on success or when there was nothing to push."""
        repo = self._repo
        try:
            head = repo.head()
            if head is None:
                return True
            tracking = repo.read_ref(tracking_ref(repo, self.remote))
            if head == tracking:
                return True
            try:
                count = ahead_behind(repo, head, tracking)[0]
            except GitStateError:
                count = 0
            pushed = push(repo, self.remote, timeout_s=timeout_s, progress=None, commit=head)
        except Exception as e:
            self.attempts += 1
            self._retry_in_s = self._backoff()
            retry = None if final else self._retry_in_s
            message = str(e) if isinstance(e, GitStateError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, GitStateError):
                logger.exception("unexpected error in the background push to %s", self.remote)
            record_push_state(repo, self.remote, error=message, attempts=self.attempts, next_retry_s=retry)
            (logger.info if self.attempts > 1 else logger.warning)(
                "background push to %s failed (attempt %d%s): %s",
                self.remote,
                self.attempts,
                f", retry in {retry:.1f} s" if retry is not None else "",
                message,
            )
            self.store.services.emit(
                PushError(remote=self.remote, error=message, attempts=self.attempts, retry_in_s=retry)
            )
            return False
        self.attempts = 0
        if pushed is not None:
            self.pushes += 1
            self.store.services.emit(Pushed(remote=self.remote, commit=pushed, count=count))
        return True

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop the thread after one last push attempt bounded by ``timeout_s`` (default ``final_timeout_s``);
        gives up (commits stay waiting for the next run) rather than hold up the exit. Idempotent."""
        budget = self.final_timeout_s if timeout_s is None else timeout_s
        if self._stop.is_set():
            return
        self._deadline = time.monotonic() + budget
        self._stop.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(budget + 0.5)
            if self._thread.is_alive():
                logger.warning(
                    "auto-push to %s did not finish in %.1f s; the waiting commits are pushed on the next run",
                    self.remote,
                    budget,
                )
        with pushers_lock:
            running = pushers.get(self._key, set())
            running.discard(self)
            if not running:
                pushers.pop(self._key, None)


def start_auto_push(store: Store, name: str, **options: Any) -> AutoPusher:
    """Push ``store``'s branch to remote ``name`` in the background after each commit (``open(...,
    auto_push=name)`` calls this). ``store.close()`` stops it after one last bounded attempt. A remote that is not
    configured yet is reported as ``push_error`` and retried; adding it triggers a push at once.

    Options: ``batch_ms``, ``min_interval_ms``, ``initial_backoff_s``, ``max_backoff_s``, ``final_timeout_s`` (see
    :class:`AutoPusher`).

    Example:
        >>> store = gitstate.open("/var/lib/agent", auto_push="origin")  # doctest: +SKIP
        >>> store.services.push_queue.wait_idle(5)  # doctest: +SKIP
        True
    """
    existing = store.services.push_queue
    if isinstance(existing, AutoPusher) and existing.running:
        if existing.remote == name:
            return existing
        existing.stop(timeout_s=0)
    pusher = AutoPusher(store, name, **options)
    pusher.start()
    store.services.push_queue = pusher
    return pusher
