"""The small packs a durable flush writes: one pack of a commit's few objects, built in memory without deltas,
installed ``.pack`` first and ``.idx`` last (two fsyncs for the whole commit), a big blob compressed ahead in a
thread (:class:`Deflating`), and the check that a pack's index is whole (an ``.idx`` is written without fsync and
made again from its pack on open).

What belongs here: those small packs. What does not: reading objects and packs (dulwich, through
:mod:`gitstate.repo_objects`), the packer's roll-up and its big packs with deltas (:mod:`gitstate.gc`).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .paths import TEMP_MARKER, fsync_dir, replace_with
from .repo_objects import sha1

if TYPE_CHECKING:
    from dulwich.objects import ShaFile

__all__ = [
    "DEFLATE_AHEAD_BYTES",
    "SMALL_IDX_BYTES",
    "Deflating",
    "index_is_sound",
    "pack_entry_header",
    "write_small_pack",
]


#: From this size on a flush compresses a blob ahead, in a thread (:class:`Deflating`).
DEFLATE_AHEAD_BYTES: Final = 1 << 20


class Deflating:
    """A blob's bytes compressed as a pack entry stores them (zlib level 1), in a thread started at once: a flush
    starts it as soon as it knows a big document's bytes and describes the document's changes meanwhile (zlib
    releases the interpreter's lock). :meth:`result` waits for it; None if it failed (the pack writer then
    compresses the bytes itself)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._out: list[bytes] = []
        self._thread = threading.Thread(target=self._run, name="gitstate-deflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # MemoryError and the like: the pack writer compresses it again
            self._out.append(zlib.compress(self._data, 1))

    def result(self) -> bytes | None:
        """The compressed bytes, once the thread is done."""
        self._thread.join()
        return self._out[0] if self._out else None


#: Pack indexes up to this size are checked in full on open (the ones a flush writes without fsync).
SMALL_IDX_BYTES: Final = 64 << 10


def pack_entry_header(type_num: int, size: int) -> bytes:
    """A pack entry's header: the type and the size, 4 bits then 7 bits a byte, little end first."""
    out = bytearray([type_num << 4 | size & 0x0F])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def index_is_sound(idx: Path, pack: Path) -> bool:
    """True when ``idx`` is a whole version-2 index of ``pack`` (small ones checksummed in full; a big one by
    its size and the pack checksum it names)."""
    try:
        size = idx.stat().st_size
        with open(pack, "rb") as f:
            f.seek(-20, os.SEEK_END)
            pack_sum = f.read(20)
        with open(idx, "rb") as f:
            if size > SMALL_IDX_BYTES:
                head = f.read(8 + 1024)
                f.seek(-40, os.SEEK_END)
                tail = f.read(40)
                ok = head[:8] == b"\xfftOc\x00\x00\x00\x02" and len(head) == 1032
                count = struct.unpack(">I", head[-4:])[0] if ok else 0
                return ok and size >= 8 + 1024 + 28 * count + 40 and tail[:20] == pack_sum
            data = f.read()
    except (OSError, ValueError):
        return False
    return (
        len(data) >= 8 + 1024 + 40
        and data[:8] == b"\xfftOc\x00\x00\x00\x02"
        and sha1(data[:-20]).digest() == data[-20:]
        and data[-40:-20] == pack_sum
    )


def write_small_pack(pack_dir: Path, objs: list[ShaFile], deflated: Mapping[str, Deflating]) -> None:
    """Write ``objs`` as one new pack in ``pack_dir`` (built in memory, without deltas: a flush's few objects).
    The ``.pack`` is fsynced before it is renamed into place, the ``.idx`` is not: it is made from the pack alone,
    and a repair on open makes it again if a power loss took it. One directory fsync covers both names.
    ``deflated``: blobs (by id) compressed ahead of time (:class:`Deflating`)."""
    from .gc.packwrite import index_v2

    entries: list[tuple[bytes, int, int]] = []
    chunks = [b""]
    offset = 12
    seen: set[bytes] = set()
    for obj in objs:
        sha = obj.sha().digest()
        if sha in seen:
            continue
        seen.add(sha)
        raw = obj.as_raw_string()
        header = pack_entry_header(obj.type_num, len(raw))
        ahead = deflated.get(sha.hex()) if deflated else None  # the id hashes the content: the same bytes
        packed = ahead.result() if ahead is not None else None
        if packed is None:
            packed = zlib.compress(raw, 1)
        entries.append((sha, offset, zlib.crc32(packed, zlib.crc32(header))))
        chunks += (header, packed)
        offset += len(header) + len(packed)
    chunks[0] = b"PACK" + struct.pack(">II", 2, len(entries))
    body = b"".join(chunks)
    checksum = sha1(body).digest()
    pack_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = pack_dir / f"pack-{checksum.hex()}"
    if not (os.path.exists(f"{final}.pack") and os.path.exists(f"{final}.idx")):
        token = os.urandom(8).hex()
        # .pack first, .idx last: git and dulwich only use a pack once its index exists.
        tmp = pack_dir / f"tmp-{token}{TEMP_MARKER}"
        replace_with(Path(f"{tmp}pack"), Path(f"{final}.pack"), body + checksum, mode=0o400)
        try:
            idx = index_v2(entries, checksum)
            replace_with(Path(f"{tmp}idx"), Path(f"{final}.idx"), idx, mode=0o400, fsync=False)
        except BaseException:
            with contextlib.suppress(OSError):  # a pack without its index is never used: take it back
                os.unlink(f"{final}.pack")
            raise
        fsync_dir(pack_dir)
