"""Reading the history index file from its newest end for a walk that goes through all of it, and spooling the
lines such a walk computes.

What belongs here: reading one block of whole lines before an offset (:func:`read_block_before`, shared with the
index's in-memory image), the walk's own buffer that lets each entry go once taken (:class:`Backwards`), and
the temporary file that holds computed lines until they are appended, last batch first (:class:`Spool`). What
does not: the in-memory image of the index and the walk order (:mod:`gitstate.history_index`), what the lines
mean (:mod:`gitstate.history_keys`).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from itertools import repeat
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from .paths import TEMP_MARKER

__all__ = [
    "FIRST_BLOCK",
    "STREAM_BLOCK",
    "Backwards",
    "IndexLike",
    "Spool",
    "load_lines",
    "parse_lines",
    "read_block_before",
    "read_into",
    "rewrite_without",
]

logger = logging.getLogger("gitstate.history")

#: The first block read backwards from the end of the index (doubling up to the largest).
FIRST_BLOCK: Final = 32 * 1024


class IndexLike(Protocol):
    """What :meth:`Spool.replay` appends to: the index file (``history_index._IndexFile``)."""

    path: Path

    def append_lines(self, data: bytes) -> None:
        """Append encoded lines as they are."""

    def rewrite_without(self, drop: AbstractSet[str], tail: Iterable[bytes]) -> bool:
        """Replace the file with its lines minus those of ``drop``, then ``tail`` (see :func:`rewrite_without`)."""


def parse_lines(data: bytes, path: Path) -> list[Any]:
    """The JSON lines of ``data`` (complete lines only), skipping those that do not parse."""
    if data.endswith(b"\n"):  # newlines become commas: one C call parses them all
        try:
            fast: list[Any] = orjson.loads(b"[" + data[:-1].replace(b"\n", b",") + b"]")
            return fast
        except orjson.JSONDecodeError:  # an empty or damaged line: line by line below
            pass
    lines = [ln for ln in data.split(b"\n") if ln]
    try:
        items: list[Any] = orjson.loads(b"[" + b",".join(lines) + b"]")
        return items
    except orjson.JSONDecodeError:
        pass
    items = []
    for ln in lines:
        try:
            items.append(orjson.loads(ln))
        except orjson.JSONDecodeError:
            logger.debug("skipping a damaged line of %s", path)
    return items


def read_block_before(path: Path, low: int, block: int, max_block: int) -> tuple[int, int, list[Any]]:
    """The whole lines of the index file that end at ``low``, read in one block of about ``block`` bytes:
    ``(new low, next block size, parsed lines)``. The next block is twice as big, up to ``max_block``; a line
    longer than the block makes the read grow until it holds the line. A read error ends the file (low 0).

    The block is read just after a spare byte and parsed with one copy (see :func:`load_lines`)."""
    while True:
        start = max(0, low - block)
        buf = bytearray(low - start + 1)  # buf[i] is the file's byte at start + i - 1
        got = read_into(path, start, buf, 1)
        if got < 0:
            return 0, block, []
        block *= 2
        begin = 0
        if start > 0:
            # The end of the partial line the block starts in (not the newline that ends the block's last line).
            begin = buf.find(b"\n", 1, got - 1)
            if begin < 0:
                continue  # no whole line in the block: read a bigger one (past max_block if need be)
        if got - 1 > begin and buf[got - 1] != 0x0A:  # no newline at the end (low is not a line's end)
            return start + begin, min(block, max_block), parse_lines(bytes(buf[begin + 1 : got]), path)
        return start + begin, min(block, max_block), load_lines(buf, begin, got - 1, path)


def read_into(path: Path, offset: int, buf: bytearray, at: int) -> int:
    """Read the file from ``offset`` into ``buf[at:]`` until it is full or the file ends: the end of what was
    read in ``buf`` (-1, logged, when the file cannot be read)."""
    got = at
    try:
        with open(path, "rb", buffering=0) as f, memoryview(buf) as view:
            f.seek(offset)
            while got < len(buf):
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
    except OSError as e:
        logger.warning("cannot read the history index %s: %s", path, e)
        return -1
    return got


def load_lines(buf: bytearray, begin: int, end: int, path: Path) -> list[Any]:
    """The JSON lines of ``buf[begin + 1 : end + 1]``, where ``buf[begin]`` is a spare byte (or the newline
    before the first line) and ``buf[end]`` the last line's newline: the newlines become commas and the two ends
    the brackets of one array, in one copy, so orjson parses thousands of lines in one C call (each extra copy
    of a 3 MB buffer costs ~5 ms of page faults in a fresh process). A damaged or empty line: line by line."""
    if end <= begin:
        return []
    arr = buf.replace(b"\n", b",")
    arr[begin] = 0x5B  # "["
    arr[end] = 0x5D  # "]"
    try:
        items: list[Any] = orjson.loads(memoryview(arr)[begin : end + 1])
        return items
    except orjson.JSONDecodeError:  # an empty line (a writer's guard after a tear) or a damaged one
        pass
    return parse_lines(bytes(buf[begin + 1 : end]), path)  # line by line (no trailing newline: no fast try)


class Backwards:
    """The index file's lines below ``low`` read from the newest end into a buffer of this walk's own, never into
    the shared image: an entry is dropped once the walk took it, so a walk of the whole history holds about one
    block of entries (:data:`STREAM_BLOCK`), not every commit it printed."""

    def __init__(self, path: Path, low: int, *, keys: bool, asked: set[str] | None = None) -> None:
        self.path = path
        self.low = low
        self.keys = keys  # keep key lines that come before their commit's metadata (else they are skipped)
        # 128 KB first (~400 entries, parsed in well under a millisecond): a short history takes one or two
        # reads, not four, and a long one still prints its first lines before the rest is read.
        self.block = min(STREAM_FIRST_BLOCK, STREAM_BLOCK)
        self.pending: dict[str, dict[str, Any]] = {}  # read, not yet taken: newer lines win over older ones
        # Commits the walk has asked for (its own set of met ids, shared): a line of one read later is older
        # than what the walk got, and is skipped, except those of the commit take() is looking for.
        self.asked: set[str] = set() if asked is None else asked
        self.want: str | None = None

    def take(self, cid: str) -> dict[str, Any] | None:
        """The entry of ``cid`` with its metadata (older blocks read until it turns up), removed from the buffer;
        None when the file has none. Later (older) lines of a taken commit are skipped."""
        e = self.pending.get(cid)
        self.want = cid
        while (e is None or "t" not in e) and self.low > 0:
            self.low, self.block, items = read_block_before(self.path, self.low, self.block, STREAM_BLOCK)
            self._add(items)
            e = self.pending.get(cid)
        self.want = None
        if e is None or "t" not in e:
            return None
        del self.pending[cid]
        self.asked.add(cid)
        return e

    def partial(self, cid: str) -> dict[str, Any] | None:
        """What the buffer holds of ``cid`` without metadata (a key supplement whose metadata line is missing)."""
        return self.pending.pop(cid, None)

    def _add(self, items: list[Any]) -> None:
        if self._add_whole(items):
            return
        pending, asked, want, keys = self.pending, self.asked, self.want, self.keys
        for it in reversed(items):  # newest line first
            try:
                cid = it["c"]
                if type(cid) is not str or (cid in asked and cid != want):
                    continue
                have = pending.get(cid)
            except (TypeError, KeyError):
                continue
            if have is None:
                if keys or "t" in it:
                    pending[cid] = it
            else:
                for k, v in it.items():
                    have.setdefault(k, v)

    def _add_whole(self, items: list[Any]) -> bool:
        """The common block in C calls, no Python step per line: every line a whole entry (an object with a
        string ``c`` and a ``t``) of a commit met nowhere else (not in the block twice, not pending, not
        asked for but the one :meth:`take` wants). False, with nothing added, when the block is not like that:
        :meth:`_add` merges it line by line."""
        try:
            ids = list(map(_commit_id, items))
        except (TypeError, KeyError):  # a line that is not an object, or has no "c"
            return False
        if set(map(type, ids)) - {str}:  # an id that is not a string (it may not even be hashable)
            return False
        block = dict(zip(ids, items, strict=True))
        if (
            len(block) != len(items)
            or not all(map(operator.contains, items, repeat("t")))
            or not (block.keys() & self.asked) <= {self.want}
            or not self.pending.keys().isdisjoint(block)
        ):
            return False
        self.pending.update(block)
        return True


_commit_id = operator.itemgetter("c")

#: The largest block a streaming walk reads at once (see :class:`Backwards`): ~3,000 entries.
STREAM_BLOCK: Final = 1 << 20
#: The first block a streaming walk reads.
STREAM_FIRST_BLOCK: Final = 128 * 1024


class Spool:
    """Batches of index lines kept in an unnamed temporary file beside the index until :meth:`replay` writes
    them to it, the last batch first (see :meth:`gitstate.history_index.History.spool`). Memory holds one batch
    at a time, plus the ids of the commits spooled."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file: Any = None
        self.chunks: list[tuple[int, int]] = []  # (offset, length) of each batch in the file
        self.ids: set[str] = set()  # the commits spooled whole, keys included (their other lines can go)

    def add(self, items: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(it) + b"\n" for it in items)
        try:
            if self.file is None:
                import tempfile  # here: with shutil, bz2, lzma and random it costs every command ~8 ms to start

                self.directory.mkdir(parents=True, exist_ok=True)
                self.file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - closed by replay()
            offset = self.file.seek(0, os.SEEK_END)
            self.file.write(data)
            self.chunks.append((offset, len(data)))
            self.ids.update(it["c"] for it in items if "k" in it)  # only an entry with keys supersedes others
        except OSError as e:  # the index is a cache: these keys are computed again by a later walk
            logger.warning("cannot keep computed history index lines in %s: %s", self.directory, e)

    def replay(self, idx: IndexLike) -> bool:
        """Write the batches to ``idx``'s file, last batch first; True if there were any.

        From :data:`REWRITE_MIN` spooled commits on, the file is rewritten without the lines these whole entries
        supersede (a history made by plain git is first indexed without keys: appending its keys as whole
        entries doubled the file, 33 to 65 MB at 100,000 commits); else the batches are appended."""
        if self.file is None:
            return False
        try:
            self.file.flush()
            if len(self.ids) < REWRITE_MIN or not idx.rewrite_without(self.ids, self._batches()):
                for data in self._batches():
                    idx.append_lines(data)
        except OSError as e:
            logger.warning("cannot append computed lines to the history index %s: %s", idx.path, e)
        finally:
            self.file.close()
        return bool(self.chunks)

    def _batches(self) -> Iterator[bytes]:
        for offset, length in reversed(self.chunks):
            self.file.seek(offset)
            yield self.file.read(length)


#: From this many spooled commits on, :meth:`Spool.replay` rewrites the index instead of appending to it.
REWRITE_MIN: Final = 1000


def rewrite_without(path: Path, drop: AbstractSet[str], tail: Iterable[bytes]) -> bool:
    """Replace the index file at ``path`` with its lines minus those of the commits in ``drop``, then ``tail``
    (whole lines), then whatever other processes append meanwhile; False, with the file as it was, when it
    cannot be done (it is a cache: the caller appends instead). Only whole lines are copied; lines that do not
    name a commit are kept as they are. A line appended by another process in the moment between the last look
    and the rename is lost, and indexed again by the next walk that needs it."""
    try:
        src = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return False  # nothing to rewrite: the caller's append makes the file
    except OSError as e:
        logger.warning("cannot rewrite the history index %s: %s", path, e)
        return False
    tmp = path.with_name(f".{path.name}{TEMP_MARKER}{os.urandom(6).hex()}")
    try:
        with src, open(tmp, "xb") as out:
            done = _copy_lines_without(src, out, drop)
            for data in tail:
                out.write(data)
            ino = os.fstat(src.fileno()).st_ino
            while True:  # lines another process appended while this one copied: after ours, as they came
                st = os.stat(path)
                if st.st_ino != ino:
                    raise _Replaced
                if st.st_size <= done:
                    break
                src.seek(done)
                extra = src.read(st.st_size - done)
                end = extra.rfind(b"\n") + 1
                if not end:
                    break
                out.write(extra[:end])
                done += end
        os.replace(tmp, path)
        return True
    except (OSError, _Replaced) as e:
        if isinstance(e, OSError):
            logger.warning("cannot rewrite the history index %s: %s", path, e)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


class _Replaced(Exception):
    """Another process replaced the index file while this one rewrote it."""


def _copy_lines_without(src: Any, out: Any, drop: AbstractSet[str]) -> int:
    """Copy the whole lines of ``src`` to ``out``, except those of the commits in ``drop``: how many bytes of
    ``src`` were read (up to its last newline)."""
    done = 0
    rest = b""
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            return done
        data = rest + chunk
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        lines = data[:end].split(b"\n")
        lines.pop()  # the empty piece after the last newline
        kept = [ln for ln in lines if ln and _line_commit(ln) not in drop]
        if kept:
            out.write(b"\n".join(kept) + b"\n")
        done += end


def _line_commit(line: bytes) -> str | None:
    """The commit id an index line names (None for a damaged line): the id's place in a line as gitstate writes
    it (``{"c":"<40 hex digits>",``) is looked at first, without parsing the line."""
    if line.startswith(b'{"c":"') and line[46:48] in (b'",', b'"}'):
        return line[6:46].decode("ascii", "replace")
    try:
        cid = orjson.loads(line).get("c")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return cid if isinstance(cid, str) else None
