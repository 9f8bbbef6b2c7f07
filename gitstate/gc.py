"""Keeping the repository small: history packed with deltas, debris pruned — without the ``git`` binary.

Every flush writes loose objects: a 100 KB document changed 10,000 times is hundreds of megabytes of them, and
dulwich's own ``repack`` stores no deltas. This module writes Git packs itself (standard library only):

* **Packs with deltas.** Objects are grouped by type and path (git's name hash), newest first; each one is stored
  as a delta against a recent version of the same path when that saves at least half (``OFS_DELTA``, bases
  always earlier in the same pack, chains at most :data:`MAX_DELTA_DEPTH` long). The pack and its version-2 index
  are written under temp names, fsynced, then renamed ``.pack`` first and ``.idx`` last: git and dulwich only
  use a pack whose index exists.
* **Incremental, geometric.** :class:`BackgroundPacker` packs the loose objects reachable from refs into a new
  pack once there are enough of them, rolling the smallest existing packs into it while they are not more than
  twice as big, so there are few packs and each object is rewritten a logarithmic number of times.
  :func:`collect` (``gitstate gc``) repacks everything reachable into one pack.
* **Nothing reachable is ever deleted.** Roots are every ref (branches, tags = snapshots, remote-tracking refs,
  ``refs/gitstate/*``), the ``*HEAD`` files, reflogs and the index. A loose object is deleted only once it is in
  an installed pack, or when it is unreachable *and* older than the grace period (writers write objects before
  they move a ref). Pruning runs under the store's lock, after re-reading the refs, so no flush can start using
  an object between the check and the deletion.
* **Out of the way of writers.** :class:`BackgroundPacker` does the work in a separate Python process, so it
  never competes with the application's threads for the interpreter: flushes keep their latency even when they
  run back to back. Writing a pack needs no lock (objects are immutable); deleting the loose copies of packed
  objects needs none either (readers look in the packs again when a loose object is gone), nor does removing
  rolled-up packs whose every object is in the new one. The store lock is taken only to prune (and, in
  :func:`collect`, to replace the old packs), a few file operations.

Reading uses the same stdlib code (loose objects, pack index v1/v2, ``OFS``/``REF`` deltas), so packing never
contends for the :class:`~gitstate.repo.Repository`'s object mutex, and needs neither dulwich nor ``git``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import re
import secrets
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import LockError, RepositoryError
from .paths import TEMP_MARKER, fsync_dir, replace_with

if TYPE_CHECKING:
    from .repo import Repository

__all__ = [
    "DEFAULT_PRUNE_GRACE_S",
    "MAX_DELTA_DEPTH",
    "BackgroundPacker",
    "collect",
    "count_objects",
    "pack_loose",
    "prune_loose",
]

logger = logging.getLogger("gitstate.gc")

#: Unreachable objects younger than this are kept: a writer may be about to reference them.
DEFAULT_PRUNE_GRACE_S: Final = 3600.0
#: Longest delta chain written (git's default ``pack.depth``).
MAX_DELTA_DEPTH: Final = 50
_WINDOW: Final = 10
_GEOMETRIC_FACTOR: Final = 2
_DEFAULT_MAX_PACKS: Final = 16
_CACHE_BYTES: Final = 64 * 1024 * 1024
_MAX_CHAIN: Final = 10_000
#: Temp files younger than this are never removed, whatever the grace period (a fetch may be writing one).
_MIN_TEMP_AGE_S: Final = 60.0

Progress = Callable[[str, int, int], None]

_COMMIT, _TREE, _BLOB, _TAG = 1, 2, 3, 4
_OFS_DELTA, _REF_DELTA = 6, 7
_TYPE_NAMES: Final = {_COMMIT: b"commit", _TREE: b"tree", _BLOB: b"blob", _TAG: b"tag"}
_TYPE_NUMS: Final = {v: k for k, v in _TYPE_NAMES.items()}
_TYPE_RANK: Final = {_COMMIT: 0, _TAG: 1, _TREE: 2, _BLOB: 3}
_HEX = frozenset("0123456789abcdef")
_HEX40 = re.compile(rb"^[0-9a-f]{40}$")
_TREE_ENTRY = re.compile(rb"([0-7]{1,6}) ([^\x00]*)\x00(.{20})", re.S)


class _Stopped(Exception):
    """The background packer was asked to stop in the middle of its work."""


class _MissingObject(Exception):
    def __init__(self, sha: bytes, detail: str = "") -> None:
        self.sha = sha
        super().__init__(f"object {sha.hex()} is missing or unreadable" + (f" ({detail})" if detail else ""))


_WRITE_FAULTS: Final = {
    errno.EROFS: ("the file system is read-only", "run it where the store is writable, or remount it read-write"),
    errno.ENOSPC: ("the disk is full", "free some space and run it again"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space and run it again"),
    errno.EACCES: ("permission denied", "check the permissions of the store's .git directory"),
    errno.EPERM: ("operation not permitted", "check the permissions of the store's .git directory"),
}


def _write_fault(e: OSError) -> tuple[str, str]:
    """``(what went wrong, what to do)`` for an OS error met while writing the repository."""
    reason, hint = _WRITE_FAULTS.get(e.errno or 0, (e.strerror or str(e), "'gitstate doctor' checks the store"))
    return reason + (f" ({e.filename})" if e.filename else ""), hint


def _object_id(type_num: int, data: bytes) -> bytes:
    h = hashlib.sha1(b"%s %d\x00" % (_TYPE_NAMES[type_num], len(data)))
    h.update(data)
    return h.digest()


def _is_hex(name: str) -> bool:
    return all(c in _HEX for c in name)


# ===================================================================== deltas
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _apply_delta(base: bytes, delta: bytes) -> bytes:
    """Apply a Git delta to ``base``. Raises ValueError on a malformed delta."""
    src_size, pos = _read_varint(delta, 0)
    dst_size, pos = _read_varint(delta, pos)
    if src_size != len(base):
        raise ValueError(f"delta expects a base of {src_size} bytes, not {len(base)}")
    src = memoryview(base)
    out: list[bytes | memoryview] = []
    end = len(delta)
    while pos < end:
        op = delta[pos]
        pos += 1
        if op & 0x80:
            offset = size = 0
            for bit, shift in ((0x01, 0), (0x02, 8), (0x04, 16), (0x08, 24)):
                if op & bit:
                    offset |= delta[pos] << shift
                    pos += 1
            for bit, shift in ((0x10, 0), (0x20, 8), (0x40, 16)):
                if op & bit:
                    size |= delta[pos] << shift
                    pos += 1
            if size == 0:
                size = 0x10000
            if offset + size > len(base):
                raise ValueError("delta copies past the end of its base")
            out.append(src[offset : offset + size])
        elif op:
            out.append(delta[pos : pos + op])
            pos += op
        else:
            raise ValueError("delta opcode 0 is reserved")
    result = b"".join(out)
    if len(result) != dst_size:
        raise ValueError(f"delta produced {len(result)} bytes, expected {dst_size}")
    return result


def _emit_copy(out: bytearray, offset: int, size: int) -> None:
    while size > 0:
        n = min(size, 0x10000)
        op = 0x80
        args = bytearray()
        for i in range(4):
            byte = (offset >> (8 * i)) & 0xFF
            if byte:
                op |= 1 << i
                args.append(byte)
        if n != 0x10000:  # a size of 0 means 0x10000
            for i in range(3):
                byte = (n >> (8 * i)) & 0xFF
                if byte:
                    op |= 0x10 << i
                    args.append(byte)
        out.append(op)
        out += args
        offset += n
        size -= n


def _emit_insert(out: bytearray, data: bytes | memoryview) -> None:
    for i in range(0, len(data), 127):
        chunk = data[i : i + 127]
        out.append(len(chunk))
        out += chunk


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    block = 4096
    i = 0
    while i < limit:
        j = min(i + block, limit)
        if a[i:j] != b[i:j]:
            lo, hi = i, j  # a[:lo] == b[:lo]; a[:hi] != b[:hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[lo:mid] == b[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        i = j
    return limit


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    la, lb = len(a), len(b)
    block = 4096
    n = 0
    while n < limit:
        m = min(n + block, limit)
        if a[la - m : la - n] != b[lb - m : lb - n]:
            lo, hi = n, m  # suffixes of length lo match, hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
                    lo = mid
                else:
                    hi = mid
            return lo
        n = m
    return limit


_MIN_COPY: Final = 12


def _match_len(base: bytes, b: int, target: bytes, t: int, limit: int) -> int:
    """Length of the common run of ``base[b:]`` and ``target[t:]`` (at most ``limit``), compared in growing
    blocks at C speed."""
    limit = min(limit, len(base) - b)
    n = 0
    step = 32
    while n < limit:
        m = min(n + step, limit)
        if base[b + n : b + m] != target[t + n : t + m]:
            lo, hi = n, m
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if base[b + lo : b + mid] == target[t + lo : t + mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        n = m
        step = min(step * 2, 1 << 16)
    return max(limit, 0)


def _delta_middle(out: bytearray, base: bytes, b0: int, b1: int, target: bytes, t0: int, t1: int) -> None:
    """Encode ``target[t0:t1]`` against ``base[b0:b1]``. Text documents change line by line: matching runs are
    copied (found at C speed), a differing target line is inserted and the base line it replaced skipped; when
    the next line does not follow, it is looked up by content (lines inserted or removed). The Python work grows
    with the number of changes, not with the size."""
    index: dict[bytes, int] | None = None
    pending = bytearray()
    t, b = t0, b0
    while t < t1:
        run = _match_len(base, b, target, t, t1 - t) if b < len(base) else 0
        nl = target.find(b"\n", t, t1)
        line_end = t1 if nl < 0 else nl + 1
        if run < line_end - t and line_end - t >= _MIN_COPY and (t == 0 or target[t - 1] == 0x0A):
            # A whole line that does not follow here: maybe lines were inserted or removed before it.
            if index is None:
                index = {}
                pos = b0
                for bline in base[b0:b1].splitlines(keepends=True):
                    if len(bline) >= _MIN_COPY:
                        index.setdefault(bline, pos)
                    pos += len(bline)
            found = index.get(target[t:line_end])
            if found is not None and found != b:
                b = found
                continue
        if run >= _MIN_COPY or (run and run == t1 - t):
            if pending:
                _emit_insert(out, bytes(pending))
                pending.clear()
            _emit_copy(out, b, run)
            t += run
            b += run
            continue
        pending += target[t:line_end]
        t = line_end
        nlb = base.find(b"\n", b, b1)
        b = b1 if nlb < 0 else nlb + 1
    if pending:
        _emit_insert(out, bytes(pending))


def _make_delta(base: bytes, target: bytes, limit: int) -> bytes | None:
    """A Git delta turning ``base`` into ``target``, or None when it would exceed ``limit`` bytes.

    Common prefix and suffix are found with C-speed comparisons; the changed middle is matched line by line.
    Good for what a state store holds (text documents and trees that change in a few places), linear in size.
    """
    out = bytearray(_varint(len(base)))
    out += _varint(len(target))
    limit_both = min(len(base), len(target))
    p = _common_prefix(base, target, limit_both)
    s = _common_suffix(base, target, limit_both - p)
    b1, t1 = len(base) - s, len(target) - s
    if p:
        _emit_copy(out, 0, p)
    mid = t1 - p
    if mid > 0:
        if mid > 64 and b1 - p > 64:
            _delta_middle(out, base, p, b1, target, p, t1)
        else:
            _emit_insert(out, target[p:t1])
    if len(out) > limit:
        return None
    if s:
        _emit_copy(out, b1, s)
    return bytes(out) if len(out) <= limit else None


# ===================================================================== reading objects
def _read_loose_file(path: str) -> tuple[int, bytes]:
    with open(path, "rb") as f:
        raw = f.read()
    data = zlib.decompress(raw)
    nul = data.find(b"\x00", 0, 32)
    if nul < 0:
        raise ValueError("no object header")
    kind, _, size = data[:nul].partition(b" ")
    type_num = _TYPE_NUMS.get(kind)
    if type_num is None or not size.isdigit() or int(size) != len(data) - nul - 1:
        raise ValueError("bad object header")
    return type_num, data[nul + 1 :]


def _loose_path(objects_dir: str, sha: bytes) -> str:
    hx = sha.hex()
    return os.path.join(objects_dir, hx[:2], hx[2:])


class _Idx:
    """A pack index (version 1 or 2), memory-mapped; lookups bisect like git's."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        mm = self._mm
        try:
            if mm[:4] == b"\xfftOc":
                if struct.unpack(">I", mm[4:8])[0] != 2:
                    raise ValueError("unsupported pack index version")
                self.version, fan = 2, 8
            else:
                self.version, fan = 1, 0
            self.fanout = struct.unpack(">256I", mm[fan : fan + 1024])
            self.count = self.fanout[255]
            self._names = fan + 1024
            if self.version == 2:
                self._crcs = self._names + 20 * self.count
                self._offs = self._crcs + 4 * self.count
                self._large = self._offs + 4 * self.count
                if len(mm) < self._large + 40:
                    raise ValueError("truncated pack index")
            elif len(mm) < 1024 + 24 * self.count + 40:
                raise ValueError("truncated pack index")
            self.pack_checksum = mm[len(mm) - 40 : len(mm) - 20]
        except BaseException:
            mm.close()
            raise

    def sha_at(self, i: int) -> bytes:
        pos = self._names + 20 * i if self.version == 2 else 1024 + 24 * i + 4
        return self._mm[pos : pos + 20]

    def offset_at(self, i: int) -> int:
        if self.version == 1:
            return int(struct.unpack(">I", self._mm[1024 + 24 * i : 1028 + 24 * i])[0])
        off = int(struct.unpack(">I", self._mm[self._offs + 4 * i : self._offs + 4 * i + 4])[0])
        if off & 0x80000000:
            j = off & 0x7FFFFFFF
            off = int(struct.unpack(">Q", self._mm[self._large + 8 * j : self._large + 8 * j + 8])[0])
        return off

    def find(self, sha: bytes) -> int | None:
        first = sha[0]
        lo = self.fanout[first - 1] if first else 0
        hi = self.fanout[first]
        while lo < hi:
            mid = (lo + hi) // 2
            probe = self.sha_at(mid)
            if probe < sha:
                lo = mid + 1
            elif probe > sha:
                hi = mid
            else:
                return self.offset_at(mid)
        return None

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        n = self.count
        if self.version == 1:
            for i in range(n):
                yield self.sha_at(i), self.offset_at(i)
            return
        names = self._mm[self._names : self._names + 20 * n]
        offsets = struct.unpack(f">{n}I", self._mm[self._offs : self._offs + 4 * n])
        for i, off in enumerate(offsets):
            if off & 0x80000000:
                off = self.offset_at(i)
            yield names[20 * i : 20 * i + 20], off

    def verify(self) -> None:
        """Raise ValueError if the index's own checksum is wrong."""
        if hashlib.sha1(self._mm[: len(self._mm) - 20]).digest() != self._mm[len(self._mm) - 20 :]:
            raise ValueError("pack index checksum mismatch")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._mm.close()


class _Pack:
    """A pack file and its index, memory-mapped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.name = os.path.basename(base)
        self.idx = _Idx(base + ".idx")
        try:
            with open(base + ".pack", "rb") as f:
                st = os.fstat(f.fileno())
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self.idx.close()
            raise
        self.size = st.st_size
        self.mtime = st.st_mtime
        self.keep = os.path.exists(base + ".keep")
        mm = self._mm
        if mm[:4] != b"PACK" or struct.unpack(">I", mm[4:8])[0] not in (2, 3):
            self.close()
            raise ValueError(f"{base}.pack is not a pack file")
        self.count = int(struct.unpack(">I", mm[8:12])[0])
        if self.count != self.idx.count:
            self.close()
            raise ValueError(f"{base}: pack holds {self.count} objects but its index {self.idx.count}")

    def header(self, offset: int) -> tuple[int, int, int, int | bytes | None]:
        """``(type, size, data position, base)`` of the entry at ``offset``; base is an absolute offset for
        ``OFS_DELTA``, a 20-byte id for ``REF_DELTA``, else None."""
        mm = self._mm
        pos = offset
        byte = mm[pos]
        pos += 1
        type_num = (byte >> 4) & 7
        size = byte & 0x0F
        shift = 4
        while byte & 0x80:
            byte = mm[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
        base: int | bytes | None = None
        if type_num == _OFS_DELTA:
            rel, pos = _read_ofs_varint(mm, pos)
            base = offset - rel
            if base <= 0:
                raise ValueError(f"{self.name}: bad delta base offset at {offset}")
        elif type_num == _REF_DELTA:
            base = mm[pos : pos + 20]
            pos += 20
        elif type_num not in _TYPE_NAMES:
            raise ValueError(f"{self.name}: bad object type {type_num} at {offset}")
        return type_num, size, pos, base

    def _inflate(self, pos: int, size: int, where: int) -> tuple[bytes, int]:
        """``(data, compressed length)`` of the zlib stream at ``pos`` that must inflate to ``size`` bytes.
        Raises ValueError (naming the entry at ``where``) if it does not."""
        mm = self._mm
        end = len(mm) - 20
        d = zlib.decompressobj()
        got = min(pos + size + 64 + size // 4, end)
        out = d.decompress(mm[pos:got], size + 1)
        while not d.eof and got < end and len(out) <= size:
            nxt = min(got + 65536, end)
            out += d.decompress(mm[got:nxt], size + 1 - len(out))
            got = nxt
        if not d.eof or len(out) != size:
            raise ValueError(f"{self.name}: corrupt entry data at {where}")
        return out, got - pos - len(d.unused_data)

    def inflate(self, pos: int, size: int) -> bytes:
        """The ``size`` bytes of the entry data at ``pos`` (from :meth:`header`)."""
        return self._inflate(pos, size, pos)[0]

    def raw_entry(self, offset: int) -> tuple[int, int, int | bytes | None, bytes, bytes]:
        """``(type, size, base, header, compressed payload)`` of the entry at ``offset``, for copying it into
        another pack as it is (zlib checks the payload's integrity on the way)."""
        type_num, size, pos, base = self.header(offset)
        used = self._inflate(pos, size, offset)[1]
        return type_num, size, base, self._mm[offset:pos], self._mm[pos : pos + used]

    def verify(self) -> None:
        """Raise ValueError if the pack's trailing checksum or its index's is wrong."""
        mm = self._mm
        h = hashlib.sha1()
        end = len(mm) - 20
        for i in range(0, end, 1 << 20):
            h.update(mm[i : min(i + (1 << 20), end)])
        if h.digest() != mm[end:]:
            raise ValueError("pack checksum mismatch")
        if self.idx.pack_checksum != mm[end:]:
            raise ValueError("the index belongs to another pack")
        self.idx.verify()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._mm.close()
        self.idx.close()


def _list_pack_bases(pack_dir: str) -> list[str]:
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    return sorted(
        os.path.join(pack_dir, n[:-5])
        for n in names
        if n.endswith(".pack") and n[:-5] + ".idx" in names and TEMP_MARKER not in n
    )


class _ObjectSource:
    """Read-only access to a repository's objects: packs (mapped when this is created), loose files, alternates."""

    def __init__(
        self,
        objects_dir: str | os.PathLike[str],
        *,
        cache_bytes: int = _CACHE_BYTES,
        alternates: bool = True,
        full_map: bool = False,
    ) -> None:
        self.objects_dir = os.fspath(objects_dir)
        self.packs: list[_Pack] = []
        self.bad_packs: list[tuple[str, str]] = []
        for base in _list_pack_bases(os.path.join(self.objects_dir, "pack")):
            try:
                self.packs.append(_Pack(base))
            except (OSError, ValueError, struct.error) as e:
                self.bad_packs.append((base, str(e)))
        self.alternates: list[_ObjectSource] = []
        if alternates:
            with contextlib.suppress(OSError):
                for line in Path(self.objects_dir, "info", "alternates").read_text().splitlines():
                    line = line.strip()
                    if line and not line.startswith("#"):
                        alt = os.path.join(self.objects_dir, line)
                        if os.path.isdir(alt):
                            self.alternates.append(_ObjectSource(alt, cache_bytes=0, alternates=False))
        self._cache: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()
        self._cache_size = 0
        self._cache_limit = cache_bytes
        self._map: dict[bytes, tuple[int, int]] | None = None
        self._memo: dict[bytes, tuple[int, int] | None] = {}
        self._rev: dict[int, dict[int, bytes]] = {}
        # A map of every packed object pays off when most of them will be looked up (a full repack); a pass
        # that packs a few hundred new objects bisects the indexes instead, so its cost does not grow with
        # the history.
        if full_map and sum(p.count for p in self.packs) <= 1_000_000:
            m: dict[bytes, tuple[int, int]] = {}
            for pi in range(len(self.packs) - 1, -1, -1):
                for sha, off in self.packs[pi].idx:
                    m[sha] = (pi, off)
            self._map = m

    def close(self) -> None:
        for p in self.packs:
            p.close()
        for a in self.alternates:
            a.close()
        self._cache.clear()

    def __enter__(self) -> _ObjectSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- lookup
    def locate(self, sha: bytes) -> tuple[int, int] | None:
        """``(pack number, offset)`` of a packed object, or None."""
        if self._map is not None:
            return self._map.get(sha)
        if sha in self._memo:
            return self._memo[sha]
        found: tuple[int, int] | None = None
        for pi, p in enumerate(self.packs):
            off = p.idx.find(sha)
            if off is not None:
                found = (pi, off)
                break
        if len(self._memo) < 2_000_000:
            self._memo[sha] = found
        return found

    def sha_at_offset(self, pi: int, offset: int) -> bytes | None:
        """The id of the object at ``offset`` in pack ``pi`` (for ``OFS_DELTA`` bases)."""
        rev = self._rev.get(pi)
        if rev is None:
            rev = self._rev[pi] = {off: sha for sha, off in self.packs[pi].idx}
        return rev.get(offset)

    def in_packs(self, sha: bytes, packs: Iterable[int]) -> bool:
        """True if one of the given packs holds ``sha``."""
        return any(self.packs[pi].idx.find(sha) is not None for pi in packs)

    def has_loose(self, sha: bytes) -> bool:
        return os.path.exists(_loose_path(self.objects_dir, sha))

    def exists(self, sha: bytes) -> bool:
        return self.locate(sha) is not None or self.has_loose(sha) or any(a.exists(sha) for a in self.alternates)

    # ---------------------------------------------------------------- reading
    def read(self, sha: bytes) -> tuple[int, bytes]:
        """``(type, content)`` of an object. Raises _MissingObject."""
        loc = self.locate(sha)
        if loc is not None:
            try:
                return self._read_packed(*loc)
            except (ValueError, IndexError, zlib.error, struct.error, OSError) as e:
                if not self.has_loose(sha):
                    raise _MissingObject(sha, str(e)) from e
        try:
            return _read_loose_file(_loose_path(self.objects_dir, sha))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, zlib.error) as e:
            raise _MissingObject(sha, f"corrupt loose object: {e}") from e
        for alt in self.alternates:
            with contextlib.suppress(_MissingObject):
                return alt.read(sha)
        raise _MissingObject(sha)

    def read_verified(self, sha: bytes) -> tuple[int, bytes]:
        """Like :meth:`read`, and check the content hashes to ``sha``."""
        type_num, data = self.read(sha)
        if _object_id(type_num, data) != sha:
            raise _MissingObject(sha, "content does not match its id")
        return type_num, data

    def type_of_packed(self, pi: int, offset: int) -> int:
        """The type of a packed object, following delta headers without inflating anything."""
        for _ in range(_MAX_CHAIN):
            hit = self._cache.get((pi, offset))
            if hit is not None:
                return hit[0]
            type_num, _, _, base = self.packs[pi].header(offset)
            if type_num == _OFS_DELTA:
                assert isinstance(base, int)
                offset = base
            elif type_num == _REF_DELTA:
                assert isinstance(base, bytes)
                loc = self.locate(base)
                if loc is None:
                    return self.read(base)[0]
                pi, offset = loc
            else:
                return type_num
        raise ValueError("delta chain too long")

    def _cache_put(self, key: tuple[int, int], value: tuple[int, bytes]) -> None:
        if self._cache_limit <= 0 or len(value[1]) > self._cache_limit // 4:
            return
        if key in self._cache:
            return
        self._cache[key] = value
        self._cache_size += len(value[1])
        while self._cache_size > self._cache_limit:
            _, old = self._cache.popitem(last=False)
            self._cache_size -= len(old[1])

    def _read_packed(self, pi: int, offset: int) -> tuple[int, bytes]:
        chain: list[tuple[int, int, int, int]] = []
        base_type: int
        base_data: bytes
        while True:
            hit = self._cache.get((pi, offset))
            if hit is not None:
                self._cache.move_to_end((pi, offset))
                base_type, base_data = hit
                break
            if len(chain) > _MAX_CHAIN:
                raise ValueError("delta chain too long (a cycle?)")
            pack = self.packs[pi]
            type_num, size, pos, base = pack.header(offset)
            if type_num == _OFS_DELTA:
                assert isinstance(base, int)
                chain.append((pi, offset, pos, size))
                offset = base
                continue
            if type_num == _REF_DELTA:
                assert isinstance(base, bytes)
                chain.append((pi, offset, pos, size))
                same = pack.idx.find(base)
                if same is not None:
                    offset = same
                    continue
                loc = self.locate(base)
                if loc is not None:
                    pi, offset = loc
                    continue
                base_type, base_data = self.read(base)
                break
            base_type, base_data = type_num, pack.inflate(pos, size)
            self._cache_put((pi, offset), (base_type, base_data))
            break
        for cpi, coff, pos, size in reversed(chain):
            delta = self.packs[cpi].inflate(pos, size)
            base_data = _apply_delta(base_data, delta)
            self._cache_put((cpi, coff), (base_type, base_data))
        return base_type, base_data


# ===================================================================== parsing objects
def _tree_entries(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """``(mode, name, sha)`` of each tree entry. Raises ValueError on a malformed tree."""
    pos = 0
    for m in _TREE_ENTRY.finditer(data):
        if m.start() != pos:
            raise ValueError("malformed tree")
        pos = m.end()
        yield m.group(1), m.group(2), m.group(3)
    if pos != len(data):
        raise ValueError("malformed tree")


def _commit_links(data: bytes) -> tuple[bytes, list[bytes]]:
    tree = b""
    parents: list[bytes] = []
    end = data.find(b"\n\n")
    for line in (data if end < 0 else data[:end]).split(b"\n"):
        if line.startswith(b"tree "):
            tree = bytes.fromhex(line[5:45].decode("ascii"))
        elif line.startswith(b"parent "):
            parents.append(bytes.fromhex(line[7:47].decode("ascii")))
    if len(tree) != 20:
        raise ValueError("commit without a tree")
    return tree, parents


def _tag_target(data: bytes) -> bytes:
    if not data.startswith(b"object "):
        raise ValueError("tag without an object")
    return bytes.fromhex(data[7:47].decode("ascii"))


def _name_hash(path: bytes | None) -> int:
    """Git's ``pack_name_hash``: sorts paths by their last characters, so versions of a file (and files with
    similar names) sit next to each other when looking for delta bases."""
    if not path:
        return 0
    h = 0
    for c in path:
        if c in b" \t\n\r\x0b\x0c":
            continue
        h = ((h >> 2) + (c << 24)) & 0xFFFFFFFF
    return h


# ===================================================================== roots
def _read_sha_file(path: Path) -> bytes | None:
    try:
        text = path.read_bytes()[:41].strip()
    except OSError:
        return None
    return bytes.fromhex(text.decode()) if _HEX40.match(text) else None


def _roots(git_dir: Path) -> dict[str, bytes]:
    """Every object id the repository refers to by name: refs (loose and packed, peeled tags too), the
    ``*HEAD`` files (``FETCH_HEAD`` lines), reflogs, and the same for linked worktrees."""
    roots: dict[str, bytes] = {}
    refs_dir = git_dir / "refs"
    if refs_dir.is_dir():
        for dirpath, _, files in os.walk(refs_dir):
            for name in files:
                if name.endswith(".lock") or TEMP_MARKER in name:
                    continue
                p = Path(dirpath, name)
                sha = _read_sha_file(p)
                if sha is not None:
                    roots[str(p.relative_to(git_dir))] = sha
    with contextlib.suppress(OSError), open(git_dir / "packed-refs", "rb") as f:
        last = "packed-refs"
        for i, line in enumerate(f):
            line = line.strip()
            if line.startswith(b"^") and _HEX40.match(line[1:41]):
                roots[f"{last}^{{}}#{i}"] = bytes.fromhex(line[1:41].decode())
            elif _HEX40.match(line[:40]):
                last = line[41:].decode("utf-8", "replace")
                roots[f"packed:{last}"] = bytes.fromhex(line[:40].decode())
    gits = [git_dir]
    wt = git_dir / "worktrees"
    if wt.is_dir():
        gits += [p for p in wt.iterdir() if p.is_dir()]
    for g in gits:
        with contextlib.suppress(OSError):
            for entry in os.scandir(g):
                if entry.name.endswith("HEAD") and entry.is_file():
                    with contextlib.suppress(OSError), open(entry.path, "rb") as f:
                        for j, line in enumerate(f):
                            if _HEX40.match(line[:40]):
                                roots[f"{entry.path}#{j}"] = bytes.fromhex(line[:40].decode())
        logs = g / "logs"
        if logs.is_dir():
            for dirpath, _, files in os.walk(logs):
                for name in files:
                    with contextlib.suppress(OSError), open(os.path.join(dirpath, name), "rb") as f:
                        for j, line in enumerate(f):
                            for k, part in enumerate(line.split(b" ", 2)[:2]):
                                if _HEX40.match(part) and part != b"0" * 40:
                                    roots[f"{dirpath}/{name}#{j}.{k}"] = bytes.fromhex(part.decode())
    return roots


def _index_files(git_dir: Path) -> list[Path]:
    out = [git_dir / "index"]
    wt = git_dir / "worktrees"
    if wt.is_dir():
        out += [p / "index" for p in wt.iterdir() if p.is_dir()]
    out += sorted(git_dir.glob("sharedindex.*"))
    return [p for p in out if p.exists()]


def _index_blobs(path: Path) -> list[tuple[bytes, bytes]]:
    """``(blob id, path)`` of every entry of a Git index file (versions 2-4). Raises ValueError if it does not
    parse."""
    data = path.read_bytes()
    if len(data) < 32 or data[:4] != b"DIRC":
        raise ValueError(f"{path} is not a Git index")
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3, 4):
        raise ValueError(f"{path}: index version {version} not supported")
    out: list[tuple[bytes, bytes]] = []
    pos = 12
    prev = b""
    for _ in range(count):
        start = pos
        mode = struct.unpack(">I", data[pos + 24 : pos + 28])[0]
        sha = data[pos + 40 : pos + 60]
        flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
        pos += 62
        if version >= 3 and flags & 0x4000:
            pos += 2
        if version == 4:
            strip, pos = _read_ofs_varint(data, pos)
            nul = data.index(b"\x00", pos)
            name = prev[: len(prev) - strip] + data[pos:nul]
            pos = nul + 1
            prev = name
        else:
            nul = data.index(b"\x00", pos)
            name = data[pos:nul]
            pos = start + ((nul + 1 - start + 7) & ~7)
        if (mode >> 12) != 0o16 and len(sha) == 20:  # gitlinks name commits of other repositories
            out.append((sha, name))
    return out


def _read_ofs_varint(data: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    """Git's "offset encoding" (``OFS_DELTA`` base distances, index v4 path prefixes): ``(value, next pos)``;
    the inverse of :func:`_ofs_encoding`."""
    byte = data[pos]
    pos += 1
    value = byte & 0x7F
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos


def _shallow(git_dir: Path) -> set[bytes]:
    out: set[bytes] = set()
    with contextlib.suppress(OSError):
        for line in (git_dir / "shallow").read_bytes().split():
            if _HEX40.match(line):
                out.add(bytes.fromhex(line.decode()))
    return out


# ===================================================================== walking
@dataclass(slots=True)
class _Item:
    sha: bytes
    type: int
    path: bytes | None
    order: int


class _Pacer:
    """Called between small units of work: stops on request and, in the background, gives way to writers."""

    def __init__(
        self,
        *,
        stop: threading.Event | None = None,
        repo: Repository | None = None,
        slice_s: float = 0.002,
        pause_s: float = 0.0005,
        max_wait_s: float = 2.0,
    ) -> None:
        self.stop = stop
        self.repo = repo
        self.slice_s = slice_s
        self.pause_s = pause_s
        self.max_wait_s = max_wait_s
        self._t = time.perf_counter()

    def _writer_active(self) -> bool:
        if self.repo is None:
            return False
        return self.repo.lock_busy()

    def tick(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stopped
        if self.repo is None:
            return
        now = time.perf_counter()
        if now - self._t < self.slice_s and not self._writer_active():
            return
        # Let other threads have the interpreter, and wait out a flush in progress.
        time.sleep(self.pause_s)
        deadline = time.monotonic() + self.max_wait_s
        while self._writer_active() and time.monotonic() < deadline:
            if self.stop is not None and self.stop.wait(0.001):
                raise _Stopped
            if self.stop is None:
                time.sleep(0.001)
        self._t = time.perf_counter()


_NO_PACER = _Pacer()


class _Walker:
    """Walks objects from roots, newest commit first, each commit's tree right after it (so versions of a path
    are met newest first). ``want(sha)`` decides whether an object is included and descended into."""

    def __init__(
        self,
        src: _ObjectSource,
        *,
        want: Callable[[bytes], bool] | None = None,
        strict: bool = True,
        shallow: set[bytes] | None = None,
        pacer: _Pacer = _NO_PACER,
        progress: Progress | None = None,
    ) -> None:
        self.src = src
        self.want = want
        self.strict = strict
        self.shallow = shallow or set()
        self.pacer = pacer
        self.progress = progress
        self.seen: set[bytes] = set()
        self.items: list[_Item] = []
        self.missing: list[bytes] = []
        self._order = 0
        self._paths: dict[bytes, bytes] = {}

    def _add(self, sha: bytes, type_num: int, path: bytes | None) -> None:
        if path is not None:
            path = self._paths.setdefault(path, path)
        self.items.append(_Item(sha, type_num, path, self._order))
        self._order += 1
        if self.progress is not None and self._order % 1000 == 0:
            self.progress("counting objects", self._order, 0)

    def _read(self, sha: bytes, *, optional: bool = False) -> tuple[int, bytes] | None:
        try:
            return self.src.read(sha)
        except _MissingObject:
            if optional:
                return None
            if self.strict:
                raise
            self.missing.append(sha)
            return None

    def walk(self, roots: Iterable[tuple[bytes, bytes | None]]) -> None:
        stack: list[tuple[bytes, bytes | None, bool]] = [(s, p, False) for s, p in reversed(list(roots))]
        while stack:
            sha, path, optional = stack.pop()
            if sha in self.seen:
                continue
            self.seen.add(sha)
            if self.want is not None and not self.want(sha):
                continue
            self.pacer.tick()
            got = self._read(sha, optional=optional)
            if got is None:
                continue
            type_num, data = got
            if type_num == _COMMIT:
                self._add(sha, _COMMIT, None)
                try:
                    tree, parents = _commit_links(data)
                except ValueError as e:
                    raise _MissingObject(sha, str(e)) from e
                self._walk_tree(tree, b"")
                if sha not in self.shallow:  # as git does: a shallow commit's parents are not reachable through it
                    stack.extend((p, None, False) for p in reversed(parents))
            elif type_num == _TAG:
                self._add(sha, _TAG, None)
                try:
                    stack.append((_tag_target(data), None, False))
                except ValueError as e:
                    raise _MissingObject(sha, str(e)) from e
            elif type_num == _TREE:
                self.seen.discard(sha)
                self._walk_tree(sha, path or b"")
            else:
                self._add(sha, _BLOB, path)

    def _walk_tree(self, root: bytes, root_path: bytes) -> None:
        stack = [(root, root_path)]
        while stack:
            sha, path = stack.pop()
            if sha in self.seen:
                continue
            self.seen.add(sha)
            if self.want is not None and not self.want(sha):
                continue
            self.pacer.tick()
            got = self._read(sha)
            if got is None:
                continue
            type_num, data = got
            if type_num != _TREE:
                raise _MissingObject(sha, f"expected a tree, found a {_TYPE_NAMES[type_num].decode()}")
            self._add(sha, _TREE, path)
            try:
                entries = list(_tree_entries(data))
            except ValueError as e:
                raise _MissingObject(sha, str(e)) from e
            for mode, name, esha in reversed(entries):
                child = path + b"/" + name if path else name
                if mode == b"40000":
                    stack.append((esha, child))
                elif mode == b"160000" or esha in self.seen:
                    continue
                else:
                    self.seen.add(esha)
                    if self.want is None or self.want(esha):
                        self._add(esha, _BLOB, child)


def _all_roots(git_dir: Path, *, strict: bool) -> tuple[dict[str, bytes], list[tuple[bytes, bytes]]]:
    roots = _roots(git_dir)
    index: list[tuple[bytes, bytes]] = []
    for p in _index_files(git_dir):
        try:
            index += _index_blobs(p)
        except (OSError, ValueError, IndexError, struct.error) as e:
            if strict:
                raise RepositoryError(
                    f"{p} cannot be read ({e}); nothing was pruned. 'gitstate doctor' checks the repository"
                ) from e
            logger.debug("ignoring unreadable index %s: %s", p, e)
    return roots, index


def _root_list(roots: dict[str, bytes], index: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes | None]]:
    out: list[tuple[bytes, bytes | None]] = []
    seen: set[bytes] = set()
    # Branch heads first (the newest history), then everything else.
    for _name, sha in sorted(roots.items(), key=lambda kv: (not kv[0].startswith("refs/heads/"), kv[0])):
        if sha not in seen:
            seen.add(sha)
            out.append((sha, None))
    for sha, path in index:
        if sha not in seen:
            seen.add(sha)
            out.append((sha, path))
    return out


# ===================================================================== writing packs
def _entry_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _ofs_encoding(rel: int) -> bytes:
    out = [rel & 0x7F]
    rel >>= 7
    while rel:
        rel -= 1
        out.append(0x80 | (rel & 0x7F))
        rel >>= 7
    return bytes(reversed(out))


def _write_file(path: Path, data: bytes, *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class _PackWriter:
    """Streams objects into a temp pack file; :meth:`finish` adds the index and installs both atomically."""

    def __init__(self, pack_dir: Path, *, fsync: bool = True, compression: int = 6) -> None:
        pack_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pack_dir = pack_dir
        self.fsync = fsync
        self.compression = compression
        token = secrets.token_hex(8)
        self.tmp_pack = pack_dir / f"tmp-{token}{TEMP_MARKER}pack"
        self.tmp_idx = pack_dir / f"tmp-{token}{TEMP_MARKER}idx"
        fd = os.open(self.tmp_pack, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            self._f = os.fdopen(fd, "w+b")
            self._f.write(b"PACK" + struct.pack(">II", 2, 0))
        except BaseException:
            os.close(fd)
            os.unlink(self.tmp_pack)
            raise
        self.offset = 12
        self.entries: list[tuple[bytes, int, int]] = []
        self.full = 0
        self.deltas = 0

    def _append(self, sha: bytes, header: bytes, compressed: bytes) -> int:
        offset = self.offset
        self._f.write(header)
        self._f.write(compressed)
        self.entries.append((sha, offset, zlib.crc32(compressed, zlib.crc32(header))))
        self.offset += len(header) + len(compressed)
        return offset

    def _entry(self, sha: bytes, header: bytes, payload: bytes) -> int:
        return self._append(sha, header, zlib.compress(payload, self.compression))

    def add(self, sha: bytes, type_num: int, data: bytes) -> int:
        self.full += 1
        return self._entry(sha, _entry_header(type_num, len(data)), data)

    def add_delta(self, sha: bytes, base_offset: int, delta: bytes) -> int:
        self.deltas += 1
        header = _entry_header(_OFS_DELTA, len(delta)) + _ofs_encoding(self.offset - base_offset)
        return self._entry(sha, header, delta)

    def add_raw(
        self, sha: bytes, header: bytes, payload: bytes, *, base_offset: int | None = None, size: int = 0
    ) -> int:
        """Copy an entry of another pack as it is; a delta gets a new header pointing at ``base_offset``."""
        if base_offset is not None:
            self.deltas += 1
            header = _entry_header(_OFS_DELTA, size) + _ofs_encoding(self.offset - base_offset)
        else:
            self.full += 1
        return self._append(sha, header, payload)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()
        for p in (self.tmp_pack, self.tmp_idx):
            with contextlib.suppress(OSError):
                os.unlink(p)

    def finish(self) -> Path | None:
        """Install the pack; returns its path without extension (``.../pack-<sha>``), None if it is empty."""
        if not self.entries:
            self.abort()
            return None
        try:
            f = self._f
            f.seek(8)
            f.write(struct.pack(">I", len(self.entries)))
            f.flush()
            f.seek(0)
            h = hashlib.sha1()
            while chunk := f.read(1 << 20):
                h.update(chunk)
            checksum = h.digest()
            f.seek(0, os.SEEK_END)
            f.write(checksum)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
            f.close()
            _write_file(self.tmp_idx, _index_v2(self.entries, checksum), fsync=self.fsync)
            final = self.pack_dir / f"pack-{checksum.hex()}"
            if os.path.exists(f"{final}.pack") and os.path.exists(f"{final}.idx"):
                self.abort()  # the very same pack is installed already
                return final
            # .pack first, .idx last: git and dulwich only use a pack once its index exists.
            os.replace(self.tmp_pack, f"{final}.pack")
            try:
                os.replace(self.tmp_idx, f"{final}.idx")
            except BaseException:
                # A pack without its index is never used, but git reports it as garbage: take it back.
                with contextlib.suppress(OSError):
                    os.unlink(f"{final}.pack")
                raise
            if self.fsync:
                fsync_dir(self.pack_dir)
            return final
        except BaseException:
            self.abort()
            raise


def _index_v2(entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    entries = sorted(entries)
    fanout = [0] * 256
    for sha, _, _ in entries:
        fanout[sha[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    offsets = bytearray()
    large = bytearray()
    for _, off, _ in entries:
        if off < 0x80000000:
            offsets += struct.pack(">I", off)
        else:
            offsets += struct.pack(">I", 0x80000000 | (len(large) // 8))
            large += struct.pack(">Q", off)
    body = b"".join(
        [
            b"\xfftOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(e[0] for e in entries),
            b"".join(struct.pack(">I", e[2] & 0xFFFFFFFF) for e in entries),
            bytes(offsets),
            bytes(large),
            pack_checksum,
        ]
    )
    return body + hashlib.sha1(body).digest()


@dataclass(slots=True)
class _Written:
    offset: int
    type: int
    path: bytes | None
    data: bytes
    depth: int


@dataclass
class _PackResult:
    base: Path | None = None
    written: set[bytes] = field(default_factory=set)
    failed: list[bytes] = field(default_factory=list)
    full: int = 0
    deltas: int = 0
    bytes: int = 0


def _choose_delta(
    recent: deque[_Written], type_num: int, path: bytes | None, data: bytes, max_depth: int
) -> tuple[_Written, bytes] | None:
    limit = len(data) // 2 - 20
    if limit < 16:
        return None
    same = [w for w in reversed(recent) if w.type == type_num and w.path == path and path is not None]
    candidates: list[_Written] = []
    if same:
        nearest = same[0]
        if nearest.depth < max_depth:
            candidates.append(nearest)
        shallow = min(same, key=lambda w: w.depth)
        if shallow is not nearest and shallow.depth < max_depth:
            candidates.append(shallow)
    else:
        for w in reversed(recent):
            if w.type == type_num and w.depth < max_depth and len(data) // 2 <= len(w.data) <= len(data) * 2:
                candidates.append(w)
                if len(candidates) == 2:
                    break
    for cand in candidates:
        delta = _make_delta(cand.data, data, limit)
        if delta is not None:
            return cand, delta
    return None


def _reuse_entry(
    src: _ObjectSource, writer: _PackWriter, it: _Item, placed: dict[bytes, tuple[int, int]], max_depth: int
) -> tuple[int, int] | None:
    """Copy a packed object's entry as it is when that is as good as redoing it: a delta whose base is already in
    the new pack (chains stay within ``max_depth``), or a commit or tag (never deltified). Returns ``(offset,
    depth)``, or None to process the object normally."""
    loc = src.locate(it.sha)
    if loc is None:
        return None
    pi, off = loc
    try:
        type_num, size, base, header, payload = src.packs[pi].raw_entry(off)
    except (ValueError, IndexError, zlib.error, struct.error):
        return None  # read it the normal way, which reports the damage
    if type_num in (_COMMIT, _TAG):
        return writer.add_raw(it.sha, header, payload), 0
    if type_num == _OFS_DELTA:
        assert isinstance(base, int)
        base_sha = src.sha_at_offset(pi, base)
    elif type_num == _REF_DELTA:
        assert isinstance(base, bytes)
        base_sha = base
    else:
        return None  # a whole tree or blob: worth a new delta against a newer version
    where = placed.get(base_sha) if base_sha is not None else None
    if where is None or where[1] + 1 > max_depth:
        return None
    return writer.add_raw(it.sha, header, payload, base_offset=where[0], size=size), where[1] + 1


def _write_pack(
    src: _ObjectSource,
    items: list[_Item],
    pack_dir: Path,
    *,
    pacer: _Pacer = _NO_PACER,
    progress: Progress | None = None,
    fsync: bool = True,
    strict: bool = False,
    max_depth: int = MAX_DELTA_DEPTH,
    window: int = _WINDOW,
) -> _PackResult:
    """Write ``items`` into one new pack (deltas against earlier entries only) and install it."""
    result = _PackResult()
    if not items:
        return result
    items.sort(key=lambda it: (_TYPE_RANK[it.type], _name_hash(it.path), it.path or b"", it.order))
    writer = _PackWriter(pack_dir, fsync=fsync)
    recent: deque[_Written] = deque(maxlen=window)
    placed: dict[bytes, tuple[int, int]] = {}  # id -> (offset in the new pack, delta depth)
    total = len(items)
    try:
        for i, it in enumerate(items):
            pacer.tick()
            if progress is not None and (i % 256 == 0 or i == total - 1):
                progress("writing objects", i + 1, total)
            if it.sha in result.written:
                continue
            reused = _reuse_entry(src, writer, it, placed, max_depth)
            if reused is not None:
                placed[it.sha] = reused
                result.written.add(it.sha)
                continue
            try:
                type_num, data = src.read_verified(it.sha)
            except _MissingObject as e:
                if strict:
                    raise
                logger.warning("not packing %s: %s", it.sha.hex(), e)
                result.failed.append(it.sha)
                continue
            if recent and recent[-1].type != type_num:
                recent.clear()
            # Commits and tags are small and mostly object ids: deltas between them do not pay.
            choice = _choose_delta(recent, type_num, it.path, data, max_depth) if type_num in (_TREE, _BLOB) else None
            if choice is not None:
                base, delta = choice
                offset = writer.add_delta(it.sha, base.offset, delta)
                depth = base.depth + 1
            else:
                offset = writer.add(it.sha, type_num, data)
                depth = 0
            recent.append(_Written(offset, type_num, it.path, data, depth))
            placed[it.sha] = (offset, depth)
            result.written.add(it.sha)
        result.base = writer.finish()
    except BaseException:
        writer.abort()
        raise
    result.full, result.deltas = writer.full, writer.deltas
    result.bytes = writer.offset + 20
    return result


# ===================================================================== loose objects on disk
@dataclass
class _LooseScan:
    objects: dict[bytes, tuple[int, float]] = field(default_factory=dict)  # sha -> (size, mtime)
    temp_files: list[tuple[str, float]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(s for s, _ in self.objects.values())

    def stale_temp_files(self, grace_s: float, now: float) -> list[str]:
        """Temp files old enough to remove: older than ``grace_s`` and never younger than a minute."""
        return [p for p, mtime in self.temp_files if now - mtime > max(grace_s, _MIN_TEMP_AGE_S)]

    def has_debris(self, grace_s: float, now: float) -> bool:
        """True if pruning might remove something: a loose object older than ``grace_s`` or a stale temp file."""
        return any(now - m > grace_s for _, m in self.objects.values()) or bool(self.stale_temp_files(grace_s, now))


def _is_stray_temp(name: str) -> bool:
    return TEMP_MARKER in name or name.startswith(("tmp_obj", "tmp_pack", "tmp_idx", ".tmp-"))


def _scan_loose(objects_dir: str, *, pacer: _Pacer = _NO_PACER) -> _LooseScan:
    scan = _LooseScan()
    try:
        subdirs = [n for n in os.listdir(objects_dir) if len(n) == 2 and _is_hex(n)]
    except FileNotFoundError:
        return scan
    for sub in subdirs:
        pacer.tick()
        with contextlib.suppress(OSError), os.scandir(os.path.join(objects_dir, sub)) as it:
            for entry in it:
                name = entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if len(name) == 38 and _is_hex(name):
                    scan.objects[bytes.fromhex(sub + name)] = (st.st_size, st.st_mtime)
                elif _is_stray_temp(name):
                    scan.temp_files.append((entry.path, st.st_mtime))
    pack_dir = os.path.join(objects_dir, "pack")
    with contextlib.suppress(OSError), os.scandir(pack_dir) as it:
        for entry in it:
            if _is_stray_temp(entry.name):
                with contextlib.suppress(OSError):
                    scan.temp_files.append((entry.path, entry.stat(follow_symlinks=False).st_mtime))
    return scan


def count_objects(path: str | os.PathLike[str]) -> dict[str, int]:
    """Loose objects and packs of the repository at ``path`` (a store or its ``.git``), like
    ``git count-objects -v``.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
        ...     s.set("a.json", "x", 1)
        ...     count_objects(s.path)["loose_objects"]
        3
    """
    git_dir = _git_dir(path)
    scan = _scan_loose(os.fspath(git_dir / "objects"))
    packs = _list_pack_bases(os.fspath(git_dir / "objects" / "pack"))
    pack_bytes = 0
    for base in packs:
        for ext in (".pack", ".idx"):
            with contextlib.suppress(OSError):
                pack_bytes += os.stat(base + ext).st_size
    return {
        "loose_objects": len(scan.objects),
        "loose_bytes": scan.bytes,
        "packs": len(packs),
        "pack_bytes": pack_bytes,
        "temp_files": len(scan.temp_files),
        "git_bytes": _dir_size(git_dir),
    }


def _git_dir(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p if (p / "objects").is_dir() and not (p / ".git").exists() else p / ".git"


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _unlink_pack(base: str) -> None:
    # The index first: readers discover packs by their index.
    for ext in (".idx", ".pack", ".rev", ".bitmap", ".mtimes", ".promisor"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(base + ext)


def _drop_pack_caches(objects_dir: Path) -> None:
    """Optional caches that name packs or objects; git rebuilds them, and stale ones would confuse it."""
    for p in (objects_dir / "pack" / "multi-pack-index", objects_dir / "info" / "commit-graph"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    chain = objects_dir / "info" / "commit-graphs"
    if chain.is_dir():
        for p in chain.iterdir():
            with contextlib.suppress(OSError):
                os.unlink(p)


def _delete_loose(objects_dir: str, shas: Iterable[bytes], *, pacer: _Pacer = _NO_PACER) -> int:
    """Delete the loose copies of objects that are in an installed pack.

    No store lock: whoever looks for one of these objects finds it in the pack (git and dulwich look in packs
    again when a loose object is missing), and a writer that sees the loose copy and skips writing the object
    still references a packed object. Taking the lock here would only make flushes wait.
    """
    removed = 0
    for sha in shas:
        pacer.tick()
        try:
            os.unlink(_loose_path(objects_dir, sha))
            removed += 1
        except FileNotFoundError:
            pass
    # Empty fan-out directories stay: a writer may have just checked that one exists (see collect()).
    return removed


def _write_loose(objects_dir: str, sha: bytes, type_num: int, data: bytes, mtime: float, *, fsync: bool) -> str:
    """Write an object as a loose file dated ``mtime`` (unless it exists); returns its fan-out directory, which
    the caller fsyncs."""
    path = _loose_path(objects_dir, sha)
    fan_out = os.path.dirname(path)
    if os.path.exists(path):
        return fan_out
    os.makedirs(fan_out, mode=0o700, exist_ok=True)
    raw = zlib.compress(b"%s %d\x00" % (_TYPE_NAMES[type_num], len(data)) + data, 1)
    replace_with(Path(fan_out, f"tmp_obj{TEMP_MARKER}{secrets.token_hex(6)}"), Path(path), raw, mode=0o400, fsync=fsync)
    os.utime(path, (mtime, mtime))
    return fan_out


# ===================================================================== the gc lock
class _GcLock:
    """Only one packer per repository at a time (``.git/gitstate/gc.lock``, an ``flock``)."""

    def __init__(
        self, git_dir: Path, *, blocking: bool, timeout_s: float = 600.0, stop: threading.Event | None = None
    ) -> None:
        self.root = git_dir.parent
        self.path = git_dir / "gitstate" / "gc.lock"
        self.blocking = blocking
        self.timeout_s = timeout_s
        self.stop = stop
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not self.blocking or time.monotonic() >= deadline:
                    os.close(fd)
                    if self.blocking:
                        raise LockError(
                            f"{self.root}: another gc has been running for over {self.timeout_s:.0f}s; try again later"
                        ) from None
                    return False
                if self.stop is not None and self.stop.wait(0.05):
                    os.close(fd)
                    raise _Stopped from None
                if self.stop is None:
                    time.sleep(0.05)  # lock back-off
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> _GcLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ===================================================================== operations
def _merge_choice(packs: list[_Pack], new_objects: int, *, factor: int, max_packs: int, merge_all: bool) -> list[int]:
    """Indexes (into ``packs``) of the packs to roll into the new pack: the smallest ones while each is at most
    ``factor`` times what has been gathered so far (geometric repacking), and enough of them that at most
    ``max_packs`` packs remain."""
    candidates = sorted((i for i, p in enumerate(packs) if not p.keep), key=lambda i: packs[i].count)
    if merge_all:
        return candidates
    chosen: list[int] = []
    total = new_objects
    for i in candidates:
        if packs[i].count <= factor * total or len(candidates) - len(chosen) + 1 > max_packs:
            chosen.append(i)
            total += packs[i].count
        else:
            break
    if len(chosen) == 1 and new_objects == 0:
        return []  # rewriting one pack alone gains nothing
    return chosen


def pack_loose(
    repo: Repository,
    *,
    progress: Progress | None = None,
    fsync: bool = True,
    max_packs: int = _DEFAULT_MAX_PACKS,
    merge_all: bool = False,
    lock_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Pack the loose objects reachable from refs into a new pack (rolling small packs into it), then delete the
    loose copies. Unreachable loose objects are left for :func:`prune_loose`. Never takes the store lock (see the
    module docstring); waits up to ``lock_timeout_s`` for another gc. Returns figures (``packed``,
    ``loose_removed``, ``packs_merged``, ``pack``...).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
        ...     s.set("a.json", "x", 1)
        ...     pack_loose(s._repo)["packed"]
        3
    """
    with _GcLock(repo.git_dir, blocking=True, timeout_s=lock_timeout_s):
        return _pack_loose(repo, progress=progress, fsync=fsync, max_packs=max_packs, merge_all=merge_all)


def _pack_loose(
    repo: Repository,
    *,
    progress: Progress | None = None,
    fsync: bool = True,
    max_packs: int = _DEFAULT_MAX_PACKS,
    merge_all: bool = False,
    settle_s: float = 0.0,
    pacer: _Pacer = _NO_PACER,
) -> dict[str, Any]:
    git_dir = repo.git_dir
    objects_dir = git_dir / "objects"
    t0 = time.monotonic()
    stats: dict[str, Any] = {
        "packed": 0,
        "deltas": 0,
        "loose_removed": 0,
        "packs_merged": 0,
        "pack": None,
        "skipped": 0,
    }
    scan = _scan_loose(os.fspath(objects_dir), pacer=pacer)
    with _ObjectSource(objects_dir) as src:
        merged = _merge_choice(
            src.packs, len(scan.objects), factor=_GEOMETRIC_FACTOR, max_packs=max_packs, merge_all=merge_all
        )
        merged_set = set(merged)
        if not scan.objects and not merged:
            return stats
        loose = scan.objects

        def in_kept(sha: bytes) -> bool:
            # An object also present in a rolled-up pack is simply written again: duplicates are harmless.
            loc = src.locate(sha)
            return loc is not None and loc[0] not in merged_set

        def want(sha: bytes) -> bool:
            # Loose *now*: commits made since the scan are packed too (a loose file is complete once visible).
            if in_kept(sha):
                return False
            return sha in loose or src.locate(sha) is not None or src.has_loose(sha)

        roots, index = _all_roots(git_dir, strict=False)
        walker = _Walker(src, want=want, strict=False, shallow=_shallow(git_dir), pacer=pacer, progress=progress)
        walker.walk(_root_list(roots, index))
        items = walker.items
        # Everything in the packs rolled up goes into the new pack, reachable or not: only collect() drops.
        reached = {it.sha for it in items}
        for pi in merged:
            for sha, off in src.packs[pi].idx:
                if sha not in reached and not in_kept(sha):
                    pacer.tick()
                    reached.add(sha)
                    try:
                        items.append(_Item(sha, src.type_of_packed(pi, off), None, len(items)))
                    except (ValueError, IndexError, _MissingObject, struct.error) as e:
                        logger.warning(
                            "%s: unreadable entry %s (%s); that pack is kept", src.packs[pi].name, sha.hex(), e
                        )
                        merged_set.discard(pi)
        result = _write_pack(src, items, objects_dir / "pack", pacer=pacer, progress=progress, fsync=fsync)
        stats.update(
            packed=len(result.written),
            deltas=result.deltas,
            skipped=len(result.failed),
            pack=result.base.name if result.base else None,
            pack_bytes=result.bytes,
        )
        # Loose copies of objects that are now packed (or were packed already) can go.
        removable = [s for s in result.written if s in loose or src.locate(s) is None]
        removable += [s for s in loose if s not in result.written and in_kept(s)]
        old_packs = []
        for pi in sorted(merged_set):
            p = src.packs[pi]
            if result.base is not None and p.base == os.fspath(result.base):
                continue
            if all(sha in result.written or in_kept(sha) for sha, _ in p.idx):
                old_packs.append(p.base)
    if settle_s > 0:  # let readers that looked for a loose object just before the pack appeared find it
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            pacer.tick()
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    if old_packs:
        # Every object of these packs is in the new one: removing them drops nothing, so, like deleting loose
        # copies, it needs no lock (a writer that still sees an object in an old pack references an object
        # that exists in the new one; readers look for vanished packs again).
        for base in old_packs:
            _unlink_pack(base)
        _drop_pack_caches(objects_dir)
        repo.invalidate_caches()
        stats["packs_merged"] = len(old_packs)
    stats["loose_removed"] = _delete_loose(os.fspath(objects_dir), removable, pacer=pacer)
    repo.invalidate_caches()
    stats["duration_s"] = round(time.monotonic() - t0, 3)
    return stats


def prune_loose(
    repo: Repository, *, grace_s: float = DEFAULT_PRUNE_GRACE_S, fsync: bool = True, lock_timeout_s: float = 600.0
) -> dict[str, Any]:
    """Delete loose objects that nothing reaches and that are older than ``grace_s`` (debris of crashed writes),
    and stale temp files; pack the loose objects that turn out to be reachable. Walks the whole history; takes
    the store lock only to re-check the refs and delete.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
        ...     s.set("a.json", "x", 1)
        ...     prune_loose(s._repo, grace_s=0)["pruned"]
        0
    """
    with _GcLock(repo.git_dir, blocking=True, timeout_s=lock_timeout_s):
        return _prune_loose(repo, grace_s=grace_s, fsync=fsync)


def _prune_loose(
    repo: Repository,
    *,
    grace_s: float = DEFAULT_PRUNE_GRACE_S,
    fsync: bool = True,
    pacer: _Pacer = _NO_PACER,
    scan: _LooseScan | None = None,
    lock_timeout_s: float = 30.0,
) -> dict[str, Any]:
    git_dir = repo.git_dir
    objects_dir = os.fspath(git_dir / "objects")
    now = time.time()
    if scan is None:
        scan = _scan_loose(objects_dir, pacer=pacer)
    stats: dict[str, Any] = {"pruned": 0, "temp_removed": 0, "packed": 0}
    stale_temp = scan.stale_temp_files(grace_s, now)
    if stale_temp:
        with repo.lock(timeout_s=lock_timeout_s):  # our writers create temp files only while holding it
            for path in stale_temp:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    stats["temp_removed"] += 1
    with _ObjectSource(objects_dir) as src:
        candidates = [s for s, (_, mtime) in scan.objects.items() if now - mtime > grace_s and src.locate(s) is None]
        if not candidates:
            return stats
        try:
            roots, index = _all_roots(git_dir, strict=True)
            walker = _Walker(src, strict=True, shallow=_shallow(git_dir), pacer=pacer)
            walker.walk(_root_list(roots, index))
            with repo.lock(timeout_s=lock_timeout_s):
                # Refs may have moved while we walked: walk what is new, under the lock, so no writer can
                # reference a candidate between this check and the deletion.
                roots2, index2 = _all_roots(git_dir, strict=True)
                walker.walk(_root_list(roots2, index2))
                doomed = [s for s in candidates if s not in walker.seen]
                for sha in doomed:
                    path = _loose_path(objects_dir, sha)
                    try:
                        if time.time() - os.lstat(path).st_mtime <= grace_s:
                            continue
                        os.unlink(path)
                        stats["pruned"] += 1
                    except FileNotFoundError:
                        pass
        except _MissingObject as e:
            logger.warning("%s: not pruning: %s; run 'gitstate doctor'", repo.root, e)
            stats["error"] = str(e)
            return stats
        # Reachable leftovers (e.g. only referenced from the index) are packed so they are not walked for again.
        alive = [s for s in candidates if s in walker.seen and src.has_loose(s)]
        written: set[bytes] = set()
        if alive:
            items = [_Item(s, src.read(s)[0], None, i) for i, s in enumerate(alive)]
            written = _write_pack(src, items, git_dir / "objects" / "pack", pacer=pacer, fsync=fsync).written
            stats["packed"] = len(written)
    if written:
        _delete_loose(objects_dir, [s for s in alive if s in written], pacer=pacer)
        repo.invalidate_caches()
    if stats["pruned"]:
        logger.info("%s: pruned %d unreachable loose object(s)", repo.root, stats["pruned"])
    return stats


def collect(
    repo: Repository,
    *,
    progress: Progress | None = None,
    prune_grace_s: float = DEFAULT_PRUNE_GRACE_S,
    fsync: bool = True,
    lock_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Repack everything reachable into one pack with deltas and prune what crashes left behind.

    Reachable objects are never removed; unreachable ones go only when older than ``prune_grace_s``.
    ``progress(phase, done, total)`` is called as it goes (``total`` is 0 while unknown). Works without the
    ``git`` binary.

    Returns:
        ``objects`` (packed), ``deltas``, ``pack`` (its name), ``loose_removed``, ``pruned``, ``packs_removed``,
        ``temp_removed``, ``size_before``, ``size_after`` (bytes of ``.git``), ``duration_s``.

    Raises:
        RepositoryError: a reachable object is missing or corrupt (nothing was deleted), or the repository cannot
            be written (read-only file system, disk full; the repository stays valid and complete).
        LockError: another gc held the repository for longer than ``lock_timeout_s``.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
        ...     for i in range(3):
        ...         s.set("a.json", "x", i)
        ...     collect(s._repo)["objects"]
        9
    """
    git_dir = repo.git_dir
    t0 = time.monotonic()
    size_before = _dir_size(git_dir)
    stats: dict[str, Any] = {
        "objects": 0,
        "deltas": 0,
        "loose_removed": 0,
        "pruned": 0,
        "packs_removed": 0,
        "temp_removed": 0,
    }
    try:
        with _GcLock(git_dir, blocking=True, timeout_s=lock_timeout_s):
            try:
                _repack_all(
                    repo, stats, progress=progress, grace_s=prune_grace_s, fsync=fsync, lock_timeout_s=lock_timeout_s
                )
            except _MissingObject as e:
                raise RepositoryError(
                    f"{repo.root}: {e}; nothing was deleted. 'gitstate doctor' checks the "
                    "repository; a clone of a remote copy can replace it"
                ) from e
    except OSError as e:
        # Every step leaves the repository valid (a pack is installed whole or not at all, a copy is removed only
        # once another exists): stopping halfway loses nothing.
        reason, hint = _write_fault(e)
        raise RepositoryError(f"{repo.root}: gc stopped: {reason}; no object was lost; {hint}") from e
    repo.invalidate_caches()
    stats["size_before"] = size_before
    stats["size_after"] = _dir_size(git_dir)
    stats["duration_s"] = round(time.monotonic() - t0, 3)
    return stats


def _repack_all(
    repo: Repository,
    stats: dict[str, Any],
    *,
    progress: Progress | None,
    grace_s: float,
    fsync: bool,
    lock_timeout_s: float,
) -> None:
    git_dir = repo.git_dir
    objects_dir = git_dir / "objects"
    odir = os.fspath(objects_dir)
    now = time.time()
    with _ObjectSource(objects_dir, full_map=True) as src:
        if src.bad_packs:
            base, err = src.bad_packs[0]
            raise RepositoryError(
                f"{base}.pack cannot be read ({err}); nothing was deleted. 'gitstate doctor' checks the repository"
            )
        kept = [i for i, p in enumerate(src.packs) if p.keep]
        old = [i for i, p in enumerate(src.packs) if not p.keep]

        def in_kept(sha: bytes) -> bool:
            return bool(kept) and src.in_packs(sha, kept)

        roots, index = _all_roots(git_dir, strict=True)
        want = (lambda sha: not in_kept(sha)) if kept else None
        walker = _Walker(src, want=want, strict=True, shallow=_shallow(git_dir), progress=progress)
        walker.walk(_root_list(roots, index))
        if progress is not None:
            progress("counting objects", len(walker.items), len(walker.items))
        result = _write_pack(src, walker.items, objects_dir / "pack", progress=progress, fsync=fsync, strict=True)
        stats["objects"] = len(result.written)
        stats["deltas"] = result.deltas
        stats["pack"] = result.base.name if result.base else None
        new_base = os.fspath(result.base) if result.base else None

        def packed(sha: bytes) -> bool:
            """In the new pack or in a ``.keep`` pack: its other copies can go."""
            return sha in result.written or in_kept(sha)

        scan = _scan_loose(odir)
        packed_loose = [s for s in scan.objects if packed(s)]
        if progress is not None:
            progress("removing loose objects", 0, len(packed_loose))
        stats["loose_removed"] = _delete_loose(odir, packed_loose)
        if progress is not None:
            progress("removing loose objects", len(packed_loose), len(packed_loose))
            progress("pruning", 0, 0)
        with repo.lock(timeout_s=lock_timeout_s):
            roots2, index2 = _all_roots(git_dir, strict=True)
            walker.walk(_root_list(roots2, index2))  # anything made reachable meanwhile
            reachable = walker.seen
            for pi in old:
                pack = src.packs[pi]
                if pack.base == new_base:
                    continue
                young = now - pack.mtime <= grace_s
                rescued_dirs: set[str] = set()
                for sha, _ in pack.idx:
                    if packed(sha):
                        continue
                    if sha in reachable or young:
                        # Keep it as a loose object with the pack's age, so the grace period still counts.
                        type_num, data = src.read_verified(sha)
                        rescued_dirs.add(_write_loose(odir, sha, type_num, data, pack.mtime, fsync=fsync))
                    else:
                        stats["pruned"] += 1
                if fsync and rescued_dirs:
                    # The loose copies must outlive a crash before the pack that held them goes.
                    for d in sorted(rescued_dirs):
                        fsync_dir(Path(d))
                    fsync_dir(objects_dir)  # fan-out directories created for them
                _unlink_pack(pack.base)
                stats["packs_removed"] += 1
            if stats["packs_removed"]:
                _drop_pack_caches(objects_dir)
                # Before any flush can run: this process must not believe a dropped object is still packed.
                repo.invalidate_caches()
            scan = _scan_loose(odir)
            for sha, (_, mtime) in scan.objects.items():
                if sha in reachable or sha in result.written or now - mtime <= grace_s:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_loose_path(odir, sha))
                    stats["pruned"] += 1
            for path in scan.stale_temp_files(grace_s, now):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    stats["temp_removed"] += 1
            # Empty fan-out directories, under the lock: writers check for the directory, then create in it.
            for sub in os.listdir(odir):
                if len(sub) == 2 and _is_hex(sub):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(odir, sub))


# ===================================================================== background packing
def _background_pass(
    repo: Repository,
    *,
    pack: bool,
    prune: bool,
    grace_s: float,
    max_packs: int,
    fsync: bool,
    settle_s: float,
    pacer: _Pacer,
) -> dict[str, Any]:
    """One pass of background maintenance: pack (when asked), then prune debris if there is any old enough."""
    lock = _GcLock(repo.git_dir, blocking=False)
    if not lock.acquire():
        return {"skipped": "another gc is running"}
    try:
        out: dict[str, Any] = {}
        if pack:
            out["pack"] = _pack_loose(repo, fsync=fsync, max_packs=max_packs, settle_s=settle_s, pacer=pacer)
        if prune:
            odir = os.fspath(repo.git_dir / "objects")
            scan = _scan_loose(odir, pacer=pacer)
            if scan.has_debris(grace_s, time.time()):
                try:
                    out["prune"] = _prune_loose(
                        repo, grace_s=grace_s, fsync=fsync, pacer=pacer, scan=scan, lock_timeout_s=5.0
                    )
                except LockError:
                    out["prune_skipped"] = "the store stayed busy; pruning waits for the next pass"
        return out
    finally:
        lock.release()


class _LogCapture(logging.Handler):
    """Collects the packing process's warnings so the parent can log them (the process prints nothing)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


def _worker_main(argv: list[str]) -> int:
    """The packing process :class:`BackgroundPacker` starts (``argv``: store root, idle seconds).

    Reads one JSON line of options per pass from stdin, answers with one JSON line on stdout; exits when stdin
    closes, after ``idle`` seconds without work, or on SIGTERM (abandoning a pass cleanly).
    """
    import json
    import select
    import signal

    root, idle_s = argv[0], float(argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this stops
    with contextlib.suppress(OSError):
        os.nice(19)  # the application's threads come first
    capture = _LogCapture()
    logging.getLogger("gitstate").addHandler(capture)
    from .repo import Repository

    def answer(result: dict[str, Any]) -> None:
        result["log"] = capture.messages[-20:]
        capture.messages.clear()
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()

    try:
        repo = Repository.open(root, create=False)
    except Exception as e:
        answer({"error": f"{type(e).__name__}: {e}"})
        return 1
    try:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([sys.stdin], [], [], idle_s)
            except InterruptedError:
                continue
            if not ready:
                break  # idle: the parent starts a new process when there is work again
            line = sys.stdin.readline()
            if not line:
                break
            try:
                answer(_background_pass(repo, pacer=_Pacer(stop=stop), **json.loads(line)))
            except _Stopped:
                answer({"stopped": True})
                break
            except Exception as e:
                # The parent reports it (once, not every pass): no log line of its own here.
                failure: dict[str, Any] = {"error": f"{type(e).__name__}: {e}"}
                if isinstance(e, OSError):
                    failure.update(errno=e.errno, strerror=e.strerror, filename=e.filename)
                answer(failure)
        return 0
    finally:
        repo.close()


class _Worker:
    """The parent's side of a packing process: started on first use, restarted if it exited (idle or crashed)."""

    def __init__(self, root: Path, *, idle_s: float = 60.0) -> None:
        self.root = root
        self.idle_s = idle_s
        self.proc: Any = None

    def _start(self) -> None:
        import subprocess

        # The process must import this very gitstate, wherever the application found it.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        code = "import sys; from gitstate.gc import _worker_main; sys.exit(_worker_main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, os.fspath(self.root), str(self.idle_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=os.fspath(self.root),
            start_new_session=True,  # a Ctrl-C meant for the application does not cut a pass in half
            text=True,
        )

    def run(
        self, options: dict[str, Any], stop: threading.Event, preempt: threading.Event | None = None
    ) -> dict[str, Any]:
        """Run one pass in the process. Raises _Stopped when ``stop`` is set meanwhile, OSError if no process
        can be started. When ``preempt`` is set meanwhile, the pass is abandoned (``{"preempted": True}``)."""
        import json
        import select

        for attempt in range(2):
            if self.proc is None or self.proc.poll() is not None:
                self.close()
                self._start()
            proc = self.proc
            try:
                proc.stdin.write(json.dumps(options) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self.close()  # it was exiting (idle); start another
                continue
            while True:
                if stop.is_set():
                    self.close()
                    raise _Stopped
                if preempt is not None and preempt.is_set():
                    self.close()  # it removes its temp files and releases the gc lock
                    return {"preempted": True}
                ready, _, _ = select.select([proc.stdout], [], [], 0.1)
                if ready:
                    line = proc.stdout.readline()
                    break
            if not line:  # it exited without answering (idle at the wrong moment, or it crashed)
                self.close()
                if attempt == 0:
                    continue
                return {"error": "the packing process exited without an answer"}
            try:
                result: dict[str, Any] = json.loads(line)
            except ValueError:
                return {"error": f"unexpected answer from the packing process: {line[:200]!r}"}
            for message in result.pop("log", []):
                logger.warning("background packing: %s", message)
            return result
        return {"error": "the packing process could not be started"}

    def close(self) -> None:
        """End the process: a pass in progress is abandoned (it removes its temp files)."""
        import subprocess

        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdout.close()


class BackgroundPacker:
    """Packs a store's history in the background so the repository stays small (see the module docstring).

    Call :meth:`notify` after each commit (cheap: a counter). Every ``check_every_commits`` commits, or every
    ``check_interval_s`` seconds, the packer's thread counts the loose objects; once there are
    ``loose_threshold`` of them or ``loose_bytes_threshold`` bytes (or more than ``max_packs`` packs), it packs
    them. Loose objects nothing reaches are pruned once older than ``prune_grace_s``. They stay bounded even when
    the pass cannot keep up: while one runs, the writers check every ``check_every_commits`` commits, and once
    there are ``loose_bytes_limit`` bytes (default twice ``loose_bytes_threshold``) or twice ``loose_threshold``
    objects, the committing thread packs them itself (back-pressure; counted in ``held_back``).

    The work runs in a separate Python process by default (``mode="process"``): it does not compete with the
    application's threads for the interpreter, so flushes keep their latency even when they run back to back. The
    process is started on the first pass and exits after ``worker_idle_s`` seconds without work. ``mode="thread"``
    does the work in the thread itself, in small steps that pause while a flush holds the store lock (used
    automatically when no process can be started). :meth:`stop` ends the thread and the process.

    Example:
        >>> import gitstate, tempfile
        >>> store = gitstate.open(tempfile.mkdtemp(), durability="immediate")
        >>> packer = BackgroundPacker(store._repo, loose_threshold=3)
        >>> store._after_commit_hooks.append(packer.notify); store._background.append(packer)
        >>> store.set("a.json", "x", 1)
        >>> packer.run_now()["pack"]["packed"]
        3
        >>> store.close()
    """

    def __init__(
        self,
        repo: Repository,
        *,
        loose_threshold: int = 500,
        loose_bytes_threshold: int = 2 * 1024 * 1024,
        check_every_commits: int = 16,
        check_interval_s: float = 30.0,
        loose_bytes_limit: int | None = None,
        prune_grace_s: float = DEFAULT_PRUNE_GRACE_S,
        prune_interval_s: float = 600.0,
        max_packs: int = _DEFAULT_MAX_PACKS,
        fsync: bool = True,
        start_delay_s: float = 2.0,
        settle_s: float = 0.5,
        mode: str = "process",
        worker_idle_s: float = 60.0,
        start: bool = True,
    ) -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        self.repo = repo
        self.loose_threshold = loose_threshold
        self.loose_bytes_threshold = loose_bytes_threshold
        self.check_every_commits = max(1, check_every_commits)
        self.check_interval_s = check_interval_s
        self.loose_bytes_limit = 2 * loose_bytes_threshold if loose_bytes_limit is None else loose_bytes_limit
        self.hold_back_wait_s = 1.0
        self.prune_grace_s = prune_grace_s
        self.prune_interval_s = prune_interval_s
        self.max_packs = max_packs
        self.fsync = fsync
        self.start_delay_s = start_delay_s
        self.settle_s = settle_s
        self.mode = mode
        self.cycles = 0
        self.passes = 0
        self.packs_written = 0
        self.held_back = 0
        self.last_result: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._error_key: str | None = None
        self._started = 0
        self._commits = 0
        self._busy = False
        self._forced = False
        self._busy_commits = 0
        self._preempt = threading.Event()
        self._inline = threading.Lock()
        self._worker = _Worker(repo.root, idle_s=worker_idle_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._last_prune = -float("inf")
        self._thread = threading.Thread(target=self._run, name=f"gitstate-packer[{repo.root.name}]", daemon=True)
        if start:
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """True while a pass is packing or pruning (not while it only counts loose objects)."""
        return self._busy

    def start(self) -> None:
        """Start the thread (when made with ``start=False``)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def notify(self, commit_id: str) -> None:
        """A commit was made (an after-commit hook): counts, and wakes the thread every few commits. While a pass
        runs, every few commits also check the hard limit (see :meth:`_hold_back`)."""
        self._commits += 1
        if self._stop.is_set():
            return
        if self._commits >= self.check_every_commits:
            self._wake.set()
        if self._busy:
            # The thread counts nothing while its pass runs: the writers watch the limit meanwhile.
            self._busy_commits += 1
            if self._busy_commits >= self.check_every_commits:
                self._busy_commits = 0
                self._hold_back()

    def _hold_back(self) -> None:
        """Back-pressure, in the committing thread: when the loose objects reach ``loose_bytes_limit`` bytes (or
        twice ``loose_threshold``) while a pass runs, the pass is not keeping up (the packing process runs at the
        lowest priority, so a busy machine can starve it for minutes). The writer then packs them itself, at the
        application's priority, taking over from that pass; other writers wait for it. Never raises: a failure is
        logged (once) and the write it follows stays done."""
        odir = os.fspath(self.repo.git_dir / "objects")

        def over() -> _LooseScan | None:
            scan = _scan_loose(odir)
            return (
                scan if scan.bytes >= self.loose_bytes_limit or len(scan.objects) >= 2 * self.loose_threshold else None
            )

        try:
            if over() is None:
                return
            with self._inline:
                # A pass that is merely slow is about to delete what it packed: give it a moment first.
                with self._done:
                    self._done.wait_for(lambda: not self._busy or self._stop.is_set(), timeout=self.hold_back_wait_s)
                scan = over()  # another writer or the pass may have packed meanwhile
                if scan is None or self._stop.is_set():
                    return
                self._preempt.set()
                try:
                    lock = _GcLock(self.repo.git_dir, blocking=True, timeout_s=60.0, stop=self._stop)
                    lock.acquire()
                finally:
                    self._preempt.clear()
                try:
                    out = _pack_loose(self.repo, fsync=self.fsync, max_packs=self.max_packs, settle_s=self.settle_s)
                finally:
                    lock.release()
                    self.repo.invalidate_caches()
                self.held_back += 1
                if out.get("pack"):
                    self.packs_written += 1
                logger.info(
                    "%s: packed %d loose objects (%d bytes) in the writing thread: background packing fell behind",
                    self.repo.root,
                    len(scan.objects),
                    scan.bytes,
                )
        except _Stopped:
            return
        except Exception as e:
            self._report(e)

    def request(self) -> None:
        """Ask for a pass now, whatever the thresholds: pack the loose objects, prune debris."""
        self._forced = True
        self._wake.set()

    def run_now(self, *, timeout_s: float = 120.0) -> dict[str, Any]:
        """Run a forced pass and wait for it; returns its figures (for tests and tools).

        Raises:
            TimeoutError: the pass did not finish within ``timeout_s``.
        """
        with self._done:
            target = self._started + 1  # the next pass to start sees the request
            self.request()
            if not self._done.wait_for(lambda: self.cycles >= target or not self.running, timeout=timeout_s):
                raise TimeoutError(f"the packing pass did not finish within {timeout_s}s")
        return self.last_result or {}

    def wait_for_cycle(self, cycles: int, *, timeout_s: float = 60.0) -> bool:
        """Wait until at least ``cycles`` checks have completed; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.cycles >= cycles or not self.running, timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the thread; a pass in progress is abandoned (its temp files are removed)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
        self._worker.close()
        with self._done:
            self._done.notify_all()

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        self._wake.wait(self.start_delay_s)
        first = True
        while not self._stop.is_set():
            if not first:
                self._wake.wait(self.check_interval_s)
            first = False
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._done:
                self._started += 1
                ticket = self._started
                forced, self._forced = self._forced, False
            result: dict[str, Any] = {}
            try:
                result = self._cycle(forced)
                if result.get("errno"):
                    raise OSError(result["errno"], result.get("strerror"), result.get("filename"))
                if "error" in result:
                    raise RuntimeError(result["error"])
                if self.last_error is not None:
                    logger.info("%s: background packing works again", self.repo.root)
                self.last_error = self._error_key = None
            except _Stopped:
                break
            except Exception as e:  # never take the application down; try again later
                self._report(e)
                result = {"error": self.last_error}
                if self._stop.wait(min(60.0, self.check_interval_s)):
                    break
            finally:
                with self._done:
                    self.cycles = ticket
                    self.last_result = result
                    self._done.notify_all()
        with self._done:
            self._done.notify_all()

    def _report(self, e: Exception) -> None:
        """Log a failed pass once: a read-only or full disk fails every pass the same way until it is fixed."""
        if isinstance(e, OSError):
            reason, _ = _write_fault(e)
            # The same fault on another temp file is the same fault.
            key = f"{errno.errorcode.get(e.errno or 0, e.errno)}"
            message = f"{reason}; the store keeps working, loose objects wait to be packed"
        else:
            key = message = f"{e}"
        if key != self._error_key:
            logger.warning("%s: background packing failed: %s", self.repo.root, message)
        else:
            logger.debug("%s: background packing failed again: %s", self.repo.root, message)
        self._error_key = key
        self.last_error = message

    def _cycle(self, forced: bool) -> dict[str, Any]:
        self._commits = 0
        odir = os.fspath(self.repo.git_dir / "objects")
        scan = _scan_loose(odir)
        packs = len(_list_pack_bases(os.path.join(odir, "pack")))
        need_pack = (
            forced
            or len(scan.objects) >= self.loose_threshold
            or scan.bytes >= self.loose_bytes_threshold
            or packs > self.max_packs
        )
        may_prune = forced or time.monotonic() - self._last_prune >= self.prune_interval_s
        if not need_pack and not (may_prune and scan.has_debris(self.prune_grace_s, time.time())):
            return {"loose": len(scan.objects)}
        options: dict[str, Any] = {
            "pack": need_pack,
            "prune": may_prune,
            "grace_s": self.prune_grace_s,
            "max_packs": self.max_packs,
            "fsync": self.fsync,
            "settle_s": self.settle_s,
        }
        self._busy = True
        try:
            if self.mode == "process":
                out = self._in_process(options)
            else:
                out = _background_pass(self.repo, pacer=_Pacer(stop=self._stop, repo=self.repo), **options)
        finally:
            self._busy = False
            self.repo.invalidate_caches()  # forget packs that were rolled up
        self.passes += 1
        if "prune" in out or "prune_skipped" in out:
            self._last_prune = time.monotonic()
        if (out.get("pack") or {}).get("pack"):
            self.packs_written += 1
        out["loose"] = len(scan.objects)
        return out

    def _in_process(self, options: dict[str, Any]) -> dict[str, Any]:
        if not sys.executable:
            self.mode = "thread"
        else:
            try:
                return self._worker.run(options, self._stop, self._preempt)
            except OSError as e:
                logger.warning("cannot start a packing process (%s); packing in a thread instead", e)
                self.mode = "thread"
        return _background_pass(self.repo, pacer=_Pacer(stop=self._stop, repo=self.repo), **options)
