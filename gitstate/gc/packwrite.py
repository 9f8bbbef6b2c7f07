"""Writing one pack and its version-2 index: objects in walk order, deltas depth-capped, fsynced, renamed.

What belongs here: the pack/idx byte writers and the depth-capped delta choice. What does not: which objects go
in (:mod:`.maintenance`).

Kept instead of ``dulwich.pack``: dulwich's delta choice calls its ``create_delta`` (2.4x-39x slower on this
data, ``benchmarks/bench_delta.py``) and caps no chain depth per path; the index writer makes the same bytes as
``write_pack_index_v2`` in 0.64x the time (30,000 entries: 67 ms against 105 ms).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import TEMP_MARKER, fsync_dir
from .delta import make_delta
from .objects import (
    BLOB,
    COMMIT,
    DELTA_WINDOW,
    MAX_DELTA_DEPTH,
    OFS_DELTA,
    REF_DELTA,
    TAG,
    TREE,
    TYPE_RANK,
    MissingObject,
    ObjectSource,
    Progress,
    name_hash,
)
from .reach import NO_PACER, Item, Pacer

logger = logging.getLogger("gitstate.gc")


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


def ofs_encoding(rel: int) -> bytes:
    """Git's offset encoding of an ``OFS_DELTA`` base distance (inverse of ``read_ofs_varint``)."""
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


class PackWriter:
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
        """Append a whole object; its offset in the pack."""
        self.full += 1
        return self._entry(sha, _entry_header(type_num, len(data)), data)

    def add_delta(self, sha: bytes, base_offset: int, delta: bytes) -> int:
        """Append ``sha`` as a delta against the entry at ``base_offset``; its offset."""
        self.deltas += 1
        header = _entry_header(OFS_DELTA, len(delta)) + ofs_encoding(self.offset - base_offset)
        return self._entry(sha, header, delta)

    def add_raw(
        self, sha: bytes, header: bytes, payload: bytes, *, base_offset: int | None = None, size: int = 0
    ) -> int:
        """Copy an entry of another pack as it is; a delta gets a new header pointing at ``base_offset``."""
        if base_offset is not None:
            self.deltas += 1
            header = _entry_header(OFS_DELTA, size) + ofs_encoding(self.offset - base_offset)
        else:
            self.full += 1
        return self._append(sha, header, payload)

    def abort(self) -> None:
        """Close and delete the temp files: nothing of this pack is left."""
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
            _write_file(self.tmp_idx, index_v2(self.entries, checksum), fsync=self.fsync)
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


def index_v2(entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    """A version-2 pack index for ``entries`` (id, offset, CRC-32), sorted by id."""
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
        delta = make_delta(cand.data, data, limit)
        if delta is not None:
            return cand, delta
    return None


def _reuse_entry(
    src: ObjectSource, writer: PackWriter, it: Item, placed: dict[bytes, tuple[int, int]], max_depth: int
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
    if type_num in (COMMIT, TAG):
        return writer.add_raw(it.sha, header, payload), 0
    if type_num == OFS_DELTA:
        assert isinstance(base, int)
        base_sha = src.sha_at_offset(pi, base)
    elif type_num == REF_DELTA:
        assert isinstance(base, bytes)
        base_sha = base
    else:
        return None  # a whole tree or blob: worth a new delta against a newer version
    where = placed.get(base_sha) if base_sha is not None else None
    if where is None or where[1] + 1 > max_depth:
        return None
    return writer.add_raw(it.sha, header, payload, base_offset=where[0], size=size), where[1] + 1


def write_pack(
    src: ObjectSource,
    items: list[Item],
    pack_dir: Path,
    *,
    pacer: Pacer = NO_PACER,
    progress: Progress | None = None,
    fsync: bool = True,
    strict: bool = False,
    max_depth: int = MAX_DELTA_DEPTH,
    window: int = DELTA_WINDOW,
) -> _PackResult:
    """Write ``items`` into one new pack (deltas against earlier entries only) and install it."""
    result = _PackResult()
    if not items:
        return result
    items.sort(key=lambda it: (TYPE_RANK[it.type], name_hash(it.path), it.path or b"", it.order))
    writer = PackWriter(pack_dir, fsync=fsync)
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
            except MissingObject as e:
                if strict:
                    raise
                logger.warning("not packing %s: %s", it.sha.hex(), e)
                result.failed.append(it.sha)
                continue
            if recent and recent[-1].type != type_num:
                recent.clear()
            # Commits and tags are small and mostly object ids: deltas between them do not pay.
            choice = _choose_delta(recent, type_num, it.path, data, max_depth) if type_num in (TREE, BLOB) else None
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
