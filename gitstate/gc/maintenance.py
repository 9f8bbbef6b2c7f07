"""The gc operations: count, pack loose objects incrementally, prune debris, repack everything.

What belongs here: :func:`count_objects`, :func:`pack_loose`, :func:`prune_loose`, :func:`collect`, the loose
object scan and the gc lock. What does not: the byte formats (:mod:`.objects`, :mod:`.packwrite`), the
background process (:mod:`.background`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LockError, RepositoryError
from ..paths import TEMP_MARKER, fsync_dir, replace_with
from .objects import (
    DEFAULT_MAX_PACKS,
    DEFAULT_PRUNE_GRACE_S,
    GEOMETRIC_FACTOR,
    MIN_TEMP_AGE_S,
    TYPE_NAMES,
    MissingObject,
    ObjectSource,
    PackFile,
    Progress,
    Stopped,
    is_hex,
    list_pack_bases,
    loose_path,
    write_fault,
)
from .packwrite import write_pack
from .reach import NO_PACER, Item, Pacer, Walker, all_roots, root_list, shallow_commits

if TYPE_CHECKING:
    from ..repo import Repository

logger = logging.getLogger("gitstate.gc")


# ===================================================================== loose objects on disk
@dataclass
class LooseScan:
    """The loose objects found by :func:`scan_loose` (id -> size, mtime) and gitstate's temp files."""

    objects: dict[bytes, tuple[int, float]] = field(default_factory=dict)  # sha -> (size, mtime)
    temp_files: list[tuple[str, float]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Total size of the loose objects found."""
        return sum(s for s, _ in self.objects.values())

    def stale_temp_files(self, grace_s: float, now: float) -> list[str]:
        """Temp files old enough to remove: older than ``grace_s`` and never younger than a minute."""
        return [p for p, mtime in self.temp_files if now - mtime > max(grace_s, MIN_TEMP_AGE_S)]

    def has_debris(self, grace_s: float, now: float) -> bool:
        """True if pruning might remove something: a loose object older than ``grace_s`` or a stale temp file."""
        return any(now - m > grace_s for _, m in self.objects.values()) or bool(self.stale_temp_files(grace_s, now))


def is_stray_temp(name: str) -> bool:
    """Whether a file name in the object store is a temp file (gitstate's, dulwich's or git's)."""
    return TEMP_MARKER in name or name.startswith(("tmp_obj", "tmp_pack", "tmp_idx", ".tmp-"))


def scan_loose(objects_dir: str, *, pacer: Pacer = NO_PACER) -> LooseScan:
    """Every loose object (id, size, mtime) and temp file under ``objects_dir``, pausing through ``pacer``."""
    scan = LooseScan()
    try:
        subdirs = [n for n in os.listdir(objects_dir) if len(n) == 2 and is_hex(n)]
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
                if len(name) == 38 and is_hex(name):
                    scan.objects[bytes.fromhex(sub + name)] = (st.st_size, st.st_mtime)
                elif is_stray_temp(name):
                    scan.temp_files.append((entry.path, st.st_mtime))
    pack_dir = os.path.join(objects_dir, "pack")
    with contextlib.suppress(OSError), os.scandir(pack_dir) as it:
        for entry in it:
            if is_stray_temp(entry.name):
                with contextlib.suppress(OSError):
                    scan.temp_files.append((entry.path, entry.stat(follow_symlinks=False).st_mtime))
    return scan


def count_objects(path: str | os.PathLike[str]) -> dict[str, int]:
    """Loose objects and packs of the repository at ``path`` (a store or its ``.git``), like
    ``git count-objects -v``.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate", fsync=False) as s:  # loose objects
        ...     s.set("a.json", "x", 1)
        ...     count_objects(s.path)["loose_objects"]
        3
    """
    git_dir = _git_dir(path)
    scan = scan_loose(os.fspath(git_dir / "objects"))
    packs = list_pack_bases(os.fspath(git_dir / "objects" / "pack"))
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


def _delete_loose(objects_dir: str, shas: Iterable[bytes], *, pacer: Pacer = NO_PACER) -> int:
    """Delete the loose copies of objects that are in an installed pack.

    No store lock: whoever looks for one of these objects finds it in the pack (git and dulwich look in packs
    again when a loose object is missing), and a writer that sees the loose copy and skips writing the object
    still references a packed object. Taking the lock here would only make flushes wait.
    """
    removed = 0
    for sha in shas:
        pacer.tick()
        try:
            os.unlink(loose_path(objects_dir, sha))
            removed += 1
        except FileNotFoundError:
            pass
    # Empty fan-out directories stay: a writer may have just checked that one exists (see collect()).
    return removed


def _write_loose(objects_dir: str, sha: bytes, type_num: int, data: bytes, mtime: float, *, fsync: bool) -> str:
    """Write an object as a loose file dated ``mtime`` (unless it exists); returns its fan-out directory, which
    the caller fsyncs."""
    path = loose_path(objects_dir, sha)
    fan_out = os.path.dirname(path)
    if os.path.exists(path):
        return fan_out
    os.makedirs(fan_out, mode=0o700, exist_ok=True)
    raw = zlib.compress(b"%s %d\x00" % (TYPE_NAMES[type_num], len(data)) + data, 1)
    replace_with(Path(fan_out, f"tmp_obj{TEMP_MARKER}{secrets.token_hex(6)}"), Path(path), raw, mode=0o400, fsync=fsync)
    os.utime(path, (mtime, mtime))
    return fan_out


# ===================================================================== the gc lock
class GcLock:
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
        """Take the gc lock (waiting up to ``timeout_s`` when blocking); False when it is held and not blocking."""
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
                    raise Stopped from None
                if self.stop is None:
                    time.sleep(0.05)  # lock back-off
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        """Release the gc lock, if held."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> GcLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ===================================================================== operations
def _merge_choice(
    packs: list[PackFile], new_objects: int, *, factor: int, max_packs: int, merge_all: bool
) -> list[int]:
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
    max_packs: int = DEFAULT_MAX_PACKS,
    merge_all: bool = False,
    lock_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Pack the loose objects reachable from refs into a new pack (rolling small packs into it), then delete the
    loose copies. Unreachable loose objects are left for :func:`prune_loose`. Never takes the store lock (see the
    module docstring); waits up to ``lock_timeout_s`` for another gc. Returns figures (``packed``,
    ``loose_removed``, ``packs_merged``, ``pack``...).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate", fsync=False) as s:  # loose objects
        ...     s.set("a.json", "x", 1)
        ...     pack_loose(s._repo)["packed"]
        3
    """
    with GcLock(repo.git_dir, blocking=True, timeout_s=lock_timeout_s):
        return run_pack_loose(repo, progress=progress, fsync=fsync, max_packs=max_packs, merge_all=merge_all)


def _add_rolled_up(
    src: ObjectSource,
    merged: list[int],
    merged_set: set[int],
    items: list[Item],
    in_kept: Callable[[bytes], bool],
    pacer: Pacer,
) -> None:
    """Append to ``items`` every object of the packs ``merged`` not reached yet; a pack with an unreadable entry
    leaves ``merged_set`` (it is kept)."""
    reached = {it.sha for it in items}
    for pi in merged:
        for sha, off in src.packs[pi].idx:
            if sha not in reached and not in_kept(sha):
                pacer.tick()
                reached.add(sha)
                try:
                    items.append(Item(sha, src.type_of_packed(pi, off), None, len(items)))
                except (ValueError, IndexError, MissingObject, struct.error) as e:
                    logger.warning("%s: unreadable entry %s (%s); that pack is kept", src.packs[pi].name, sha.hex(), e)
                    merged_set.discard(pi)


def _settle(settle_s: float, pacer: Pacer) -> None:
    """Let readers that looked for a loose object just before the pack appeared find it."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        pacer.tick()
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def run_pack_loose(
    repo: Repository,
    *,
    progress: Progress | None = None,
    fsync: bool = True,
    max_packs: int = DEFAULT_MAX_PACKS,
    merge_all: bool = False,
    settle_s: float = 0.0,
    pacer: Pacer = NO_PACER,
) -> dict[str, Any]:
    """The work of :func:`pack_loose`, with the gc lock already held; ``pacer`` lets it give way to writers."""
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
    scan = scan_loose(os.fspath(objects_dir), pacer=pacer)
    with ObjectSource(objects_dir) as src:
        merged = _merge_choice(
            src.packs, len(scan.objects), factor=GEOMETRIC_FACTOR, max_packs=max_packs, merge_all=merge_all
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

        roots, index = all_roots(git_dir, strict=False)
        walker = Walker(src, want=want, strict=False, shallow=shallow_commits(git_dir), pacer=pacer, progress=progress)
        walker.walk(root_list(roots, index))
        items = walker.items
        # Everything in the packs rolled up goes into the new pack, reachable or not: only collect() drops.
        _add_rolled_up(src, merged, merged_set, items, in_kept, pacer)
        result = write_pack(src, items, objects_dir / "pack", pacer=pacer, progress=progress, fsync=fsync)
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
    _settle(settle_s, pacer)
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
    with GcLock(repo.git_dir, blocking=True, timeout_s=lock_timeout_s):
        return run_prune_loose(repo, grace_s=grace_s, fsync=fsync)


def run_prune_loose(
    repo: Repository,
    *,
    grace_s: float = DEFAULT_PRUNE_GRACE_S,
    fsync: bool = True,
    pacer: Pacer = NO_PACER,
    scan: LooseScan | None = None,
    lock_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """The work of :func:`prune_loose`, with the gc lock already held."""
    git_dir = repo.git_dir
    objects_dir = os.fspath(git_dir / "objects")
    now = time.time()
    if scan is None:
        scan = scan_loose(objects_dir, pacer=pacer)
    stats: dict[str, Any] = {"pruned": 0, "temp_removed": 0, "packed": 0}
    stale_temp = scan.stale_temp_files(grace_s, now)
    if stale_temp:
        with repo.lock(timeout_s=lock_timeout_s):  # our writers create temp files only while holding it
            for path in stale_temp:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    stats["temp_removed"] += 1
    with ObjectSource(objects_dir) as src:
        candidates = [s for s, (_, mtime) in scan.objects.items() if now - mtime > grace_s and src.locate(s) is None]
        if not candidates:
            return stats
        try:
            roots, index = all_roots(git_dir, strict=True)
            walker = Walker(src, strict=True, shallow=shallow_commits(git_dir), pacer=pacer)
            walker.walk(root_list(roots, index))
            with repo.lock(timeout_s=lock_timeout_s):
                # Refs may have moved while we walked: walk what is new, under the lock, so no writer can
                # reference a candidate between this check and the deletion.
                roots2, index2 = all_roots(git_dir, strict=True)
                walker.walk(root_list(roots2, index2))
                doomed = [s for s in candidates if s not in walker.seen]
                for sha in doomed:
                    path = loose_path(objects_dir, sha)
                    try:
                        if time.time() - os.lstat(path).st_mtime <= grace_s:
                            continue
                        os.unlink(path)
                        stats["pruned"] += 1
                    except FileNotFoundError:
                        pass
        except MissingObject as e:
            logger.warning("%s: not pruning: %s; run 'gitstate doctor'", repo.root, e)
            stats["error"] = str(e)
            return stats
        # Reachable leftovers (e.g. only referenced from the index) are packed so they are not walked for again.
        alive = [s for s in candidates if s in walker.seen and src.has_loose(s)]
        written: set[bytes] = set()
        if alive:
            items = [Item(s, src.read(s)[0], None, i) for i, s in enumerate(alive)]
            written = write_pack(src, items, git_dir / "objects" / "pack", pacer=pacer, fsync=fsync).written
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
        with GcLock(git_dir, blocking=True, timeout_s=lock_timeout_s):
            try:
                _repack_all(
                    repo, stats, progress=progress, grace_s=prune_grace_s, fsync=fsync, lock_timeout_s=lock_timeout_s
                )
            except MissingObject as e:
                raise RepositoryError(
                    f"{repo.root}: {e}; nothing was deleted. 'gitstate doctor' checks the "
                    "repository; a clone of a remote copy can replace it"
                ) from e
    except OSError as e:
        # Every step leaves the repository valid (a pack is installed whole or not at all, a copy is removed only
        # once another exists): stopping halfway loses nothing.
        reason, hint = write_fault(e)
        raise RepositoryError(f"{repo.root}: gc stopped: {reason}; no object was lost; {hint}") from e
    repo.invalidate_caches()
    stats["size_before"] = size_before
    stats["size_after"] = _dir_size(git_dir)
    stats["duration_s"] = round(time.monotonic() - t0, 3)
    return stats


def _retire_pack(
    src: ObjectSource,
    pack: PackFile,
    reachable: set[bytes],
    packed: Callable[[bytes], bool],
    *,
    keep_all: bool,
    fsync: bool,
) -> int:
    """Remove ``pack`` after writing out as loose objects those of its objects that are not ``packed`` elsewhere
    and are ``reachable`` (all of them when ``keep_all``: a young pack); the number of objects dropped."""
    odir = src.objects_dir
    dropped = 0
    rescued_dirs: set[str] = set()
    for sha, _ in pack.idx:
        if packed(sha):
            continue
        if keep_all or sha in reachable:
            # Keep it as a loose object with the pack's age, so the grace period still counts.
            type_num, data = src.read_verified(sha)
            rescued_dirs.add(_write_loose(odir, sha, type_num, data, pack.mtime, fsync=fsync))
        else:
            dropped += 1
    if fsync and rescued_dirs:
        # The loose copies must outlive a crash before the pack that held them goes.
        for d in sorted(rescued_dirs):
            fsync_dir(Path(d))
        fsync_dir(Path(odir))  # fan-out directories created for them
    _unlink_pack(pack.base)
    return dropped


def _prune_unreachable(
    odir: str, needed: Callable[[bytes], bool], grace_s: float, now: float, stats: dict[str, Any]
) -> None:
    """Delete loose objects not ``needed`` and older than ``grace_s``, stale temp files and empty fan-out
    directories (under the store lock: writers check for the directory, then create in it)."""
    scan = scan_loose(odir)
    for sha, (_, mtime) in scan.objects.items():
        if needed(sha) or now - mtime <= grace_s:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(loose_path(odir, sha))
            stats["pruned"] += 1
    for path in scan.stale_temp_files(grace_s, now):
        with contextlib.suppress(OSError):
            os.unlink(path)
            stats["temp_removed"] += 1
    for sub in os.listdir(odir):
        if len(sub) == 2 and is_hex(sub):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(odir, sub))


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
    with ObjectSource(objects_dir, full_map=True) as src:
        if src.bad_packs:
            base, err = src.bad_packs[0]
            raise RepositoryError(
                f"{base}.pack cannot be read ({err}); nothing was deleted. 'gitstate doctor' checks the repository"
            )
        kept = [i for i, p in enumerate(src.packs) if p.keep]
        old = [i for i, p in enumerate(src.packs) if not p.keep]

        def in_kept(sha: bytes) -> bool:
            return bool(kept) and src.in_packs(sha, kept)

        roots, index = all_roots(git_dir, strict=True)
        want = (lambda sha: not in_kept(sha)) if kept else None
        walker = Walker(src, want=want, strict=True, shallow=shallow_commits(git_dir), progress=progress)
        walker.walk(root_list(roots, index))
        if progress is not None:
            progress("counting objects", len(walker.items), len(walker.items))
        result = write_pack(src, walker.items, objects_dir / "pack", progress=progress, fsync=fsync, strict=True)
        stats["objects"] = len(result.written)
        stats["deltas"] = result.deltas
        stats["pack"] = result.base.name if result.base else None
        new_base = os.fspath(result.base) if result.base else None

        def packed(sha: bytes) -> bool:
            """In the new pack or in a ``.keep`` pack: its other copies can go."""
            return sha in result.written or in_kept(sha)

        scan = scan_loose(odir)
        packed_loose = [s for s in scan.objects if packed(s)]
        if progress is not None:
            progress("removing loose objects", 0, len(packed_loose))
        stats["loose_removed"] = _delete_loose(odir, packed_loose)
        if progress is not None:
            progress("removing loose objects", len(packed_loose), len(packed_loose))
            progress("pruning", 0, 0)
        with repo.lock(timeout_s=lock_timeout_s):
            roots2, index2 = all_roots(git_dir, strict=True)
            walker.walk(root_list(roots2, index2))  # anything made reachable meanwhile
            reachable = walker.seen
            for pi in old:
                pack = src.packs[pi]
                if pack.base == new_base:
                    continue
                young = now - pack.mtime <= grace_s
                stats["pruned"] += _retire_pack(src, pack, reachable, packed, keep_all=young, fsync=fsync)
                stats["packs_removed"] += 1
            if stats["packs_removed"]:
                _drop_pack_caches(objects_dir)
                # Before any flush can run: this process must not believe a dropped object is still packed.
                repo.invalidate_caches()
            _prune_unreachable(odir, lambda sha: sha in reachable or sha in result.written, grace_s, now, stats)
