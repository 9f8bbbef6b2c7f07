"""The document size limit: how big a document the store reads, writes or commits, and the error that says so.

What belongs here: :data:`DEFAULT_MAX_DOC_BYTES`, :func:`default_max_doc_bytes` (``$GITSTATE_MAX_DOC_BYTES``),
:func:`too_big` and :func:`size_text`. What does not: enforcing the limit (the journal and flusher on writes,
the ingester and ``Repository.worktree_changes`` on reads, ``doctor`` when it looks), codecs' own guards
against alias bombs and huge integers (``codecs.py``).
"""

from __future__ import annotations

import logging
import os
from typing import Final

from .errors import EncodeError

__all__ = ["DEFAULT_MAX_DOC_BYTES", "default_max_doc_bytes", "size_text", "too_big"]

logger = logging.getLogger("gitstate.store")

#: Largest document (file) the store reads, writes or commits; open(max_doc_bytes=...) or $GITSTATE_MAX_DOC_BYTES.
#: A document is held in memory whole (decoded, it takes several times its size), so a file dropped into the
#: store by mistake (a database dump, a video) must not be loaded just because it is there.
DEFAULT_MAX_DOC_BYTES: Final = 64 * 1024 * 1024


def default_max_doc_bytes() -> int:
    """The document size limit: ``$GITSTATE_MAX_DOC_BYTES`` when set to a number, else ``DEFAULT_MAX_DOC_BYTES``."""
    raw = os.environ.get("GITSTATE_MAX_DOC_BYTES", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MAX_DOC_BYTES
    except ValueError:
        logger.warning("ignoring GITSTATE_MAX_DOC_BYTES=%r: not a number of bytes", raw)
        return DEFAULT_MAX_DOC_BYTES


def size_text(n: int) -> str:
    """``n`` bytes for a message: MiB from 1 MiB on.

    Example:
        >>> size_text(512), size_text(3 << 20)
        ('512 bytes', '3.0 MiB')
    """
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def too_big(doc: str, size: int, limit: int, verb: str = "is") -> EncodeError:
    """The error for a document over the size limit; it says how to raise the limit."""
    return EncodeError(
        f"{doc} {verb} {size_text(size)}, over the store's limit of {size_text(limit)} (max_doc_bytes); pass "
        "a larger max_doc_bytes to gitstate.open() or set GITSTATE_MAX_DOC_BYTES, or keep the file out of the "
        "store (.gitignore)"
    )
