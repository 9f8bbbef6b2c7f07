"""Pausing Python's cyclic garbage collector while gitstate builds many acyclic objects at once.

What belongs here: :func:`gc_paused`, shared by every layer (the codecs' private copy of a big value, the flush's
diff of a big document, the history index's parse of thousands of entries). What does not: anything that decides
*when* to pause (the callers do, around one piece of work that builds many objects; while it lasts, no thread
of the process collects cycles).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_GC_PAUSE_LOCK = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building thousands of acyclic objects (index entries, commits,
    a document's copy or its changes).

    Every 700 new containers trigger a young collection, and the survivors are scanned again as they age into the
    older generations, so building 100,000 changes collects hundreds of times and finds nothing (they hold no
    cycles: measured, half the time of a 10 MB document's diff). Nested and concurrent pauses count; the
    collector's previous state comes back when the last one ends.

    Example:
        >>> import gc
        >>> with gc_paused():
        ...     gc.isenabled()
        False
    """
    global _gc_pauses, _gc_was_enabled
    with _GC_PAUSE_LOCK:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_PAUSE_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
