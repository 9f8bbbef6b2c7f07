"""Progress text of remote operations: the callback set with report_progress() and the adapter that feeds it.

What belongs here: report_progress, the context variable it sets, and Progress (dulwich's side-band bytes and
gitstate's own counters as lines of text). What does not: what is transferred (sync.py), secrets (endpoint.py, whose
scrub() cleans every line shown), printing (the CLI).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .endpoint import scrub

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


ProgressFn = Callable[[str], None]
progress_sink: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar("gitstate_progress", default=None)


# ===================================================================== progress
@contextlib.contextmanager
def report_progress(callback: ProgressFn | None) -> Iterator[None]:
    """Send progress text of the remote operations run inside the block (on this thread) to ``callback``.

    The text comes in pieces ending with ``"\\r"`` (redraw the line) or ``"\\n"``; the CLI prints it on a terminal.

    Example:
        >>> with report_progress(lambda text: None):
        ...     pass  # store.push() / store.pull() / gitstate.clone() here report progress
    """
    token = progress_sink.set(callback)
    try:
        yield
    finally:
        progress_sink.reset(token)


class Progress:
    """Adapts dulwich's progress (bytes from the server's side band) and our own counters to one text sink."""

    def __init__(self, sink: ProgressFn | None, hidden: list[str]) -> None:
        self.sink = sink
        self.hidden = hidden  # never shown, whatever the server sends back
        self._last = 0.0

    def __bool__(self) -> bool:
        return self.sink is not None

    def text(self, text: str, *, force: bool = False) -> None:
        if self.sink is None:
            return
        now = time.monotonic()
        if not force and text.endswith("\r") and now - self._last < 0.1:
            return  # redraws are throttled; final lines always go out
        self._last = now
        try:
            self.sink(scrub(text, self.hidden))
        except Exception:  # a broken progress display must not break a push
            logger.debug("progress callback failed", exc_info=True)

    def remote(self, data: bytes) -> None:
        self.text("remote: " + data.decode("utf-8", "replace"), force=data.endswith(b"\n"))
