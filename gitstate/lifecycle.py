"""Process-wide life cycle of open stores: flush them at interpreter exit and on SIGTERM.

What belongs here: the registry of open stores, the ``atexit`` hook and the SIGTERM handler. What does not:
anything about one store's flush (that is the store's and the flusher's business); this module only calls the
small :class:`Saver` interface, so it imports nothing else of gitstate.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Protocol

__all__ = ["Saver", "Terminated", "install_signal_handlers", "register", "unregister"]

logger = logging.getLogger("gitstate.store")


class Saver(Protocol):
    """What the exit and signal handlers need of an open store."""

    @property
    def path(self) -> Any:
        """The store's directory (for messages)."""

    def flush(self) -> object:
        """Commit what is pending."""

    def close(self) -> None:
        """Flush and release the store."""

    def flushing_in(self, thread_id: int) -> bool:
        """True while the thread ``thread_id`` is inside this store's flush (its writes not yet acknowledged)."""


_open_stores: set[Saver] = set()
_registry_lock = threading.Lock()
_handlers_installed = False
_previous_sigterm: Any = None


def register(store: Saver) -> None:
    """Flush and close ``store`` at interpreter exit, and flush it on SIGTERM (once handlers are installed)."""
    with _registry_lock:
        _open_stores.add(store)


def unregister(store: Saver) -> None:
    """Forget ``store`` (it was closed)."""
    with _registry_lock:
        _open_stores.discard(store)


def _flush_all(reason: str) -> None:
    with _registry_lock:
        stores = list(_open_stores)
    me = threading.get_ident()
    for store in stores:
        if store.flushing_in(me):
            continue  # interrupted in the middle of this very flush (its writes were not acknowledged yet)
        try:
            if reason == "exit":
                store.close()
            else:
                store.flush()
        except Exception as e:
            logger.error("could not save %s on %s: %s", store.path, reason, e)


@atexit.register
def _at_exit() -> None:
    _flush_all("exit")
    if _terminating_signal is not None:
        # Keep the signal's usual effect: the parent sees "terminated by SIGTERM".
        signal.signal(_terminating_signal, signal.SIG_DFL)
        os.kill(os.getpid(), _terminating_signal)


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM (when no other handler was installed): the program unwinds, releasing
    every lock it held, the exit handler flushes the open stores, and the process then dies by SIGTERM as it
    would have without gitstate (exit status -15)."""


_terminating_signal: int | None = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminating_signal
    prev = _previous_sigterm
    if callable(prev):
        _flush_all("SIGTERM")
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    # Flushing here could deadlock: the interrupted code may hold a store's locks. Unwind instead.
    _terminating_signal = signum
    raise Terminated(128 + signum)


def install_signal_handlers() -> None:
    """Flush open stores on SIGTERM, then let the signal take its usual effect. SIGINT needs nothing: it raises
    KeyboardInterrupt, and the exit handler flushes. Only possible from the main thread."""
    global _handlers_installed, _previous_sigterm
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _handlers_installed = True
    except (ValueError, OSError):  # not the main interpreter
        logger.debug("cannot install the SIGTERM handler here")
