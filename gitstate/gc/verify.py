"""What ``gitstate doctor`` asks of the object store: integrity and connectivity, read-only, no lock taken.

What belongs here: the small public API that :mod:`gitstate.doctor` uses (:func:`check_objects`,
:func:`read_object`, :func:`ref_roots`, :func:`stale_temp_files`), so no other module needs gc's internals.
What does not: wording findings or advice (that is doctor's job), changing anything on disk.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .maintenance import scan_loose
from .objects import BLOB, COMMIT, MissingObject, ObjectSource, loose_path, object_id, read_loose_file
from .reach import Walker, index_blobs, index_files, ref_roots, root_list, shallow_commits

__all__ = ["ObjectCheck", "check_objects", "read_object", "ref_roots", "stale_temp_files"]


@dataclass
class ObjectCheck:
    """What :func:`check_objects` found. Lists hold human-readable descriptions (ids, paths), newest problem last."""

    #: Packs that cannot be opened or whose checksums do not match.
    bad_packs: list[str] = field(default_factory=list)
    #: Paths of corrupt loose objects that history needs / that nothing refers to.
    corrupt_reachable: list[str] = field(default_factory=list)
    corrupt_unreachable: list[str] = field(default_factory=list)
    #: Objects reachable from a root (or the branch head) that are absent or unreadable.
    missing: list[str] = field(default_factory=list)
    #: A damaged Git index file, if any (``"index is damaged (...)"``).
    index_problem: str | None = None
    #: Commits and objects reachable from the roots.
    commits: int = 0
    reachable: int = 0
    #: Loose objects nothing refers to that are older than ``stale_s``.
    old_unreachable: int = 0


def _verify_packs(src: ObjectSource, out: ObjectCheck) -> None:
    for base, err in src.bad_packs:
        out.bad_packs.append(f"pack {os.path.basename(base)} is unreadable ({err})")
    for pack in src.packs:
        try:
            pack.verify()
        except (ValueError, OSError) as e:
            out.bad_packs.append(f"pack {pack.name} is corrupt ({e})")


def _corrupt_loose(src: ObjectSource, loose: list[bytes], max_verify: int) -> list[bytes]:
    """Loose objects (all, or a sample of ``max_verify``) that do not inflate or do not hash to their name."""
    sample = loose if len(loose) <= max_verify else random.sample(loose, max_verify)
    corrupt = []
    for sha in sample:
        try:
            type_num, data = read_loose_file(loose_path(src.objects_dir, sha))
            if object_id(type_num, data) != sha:
                corrupt.append(sha)
        except FileNotFoundError:
            continue  # packed and removed meanwhile
        except (OSError, ValueError, zlib.error):
            corrupt.append(sha)
    return corrupt


def _index_entries(git_dir: Path) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """The blobs the Git index(es) refer to, and a description of a damaged index file."""
    problem = None
    index: list[tuple[bytes, bytes]] = []
    for p in index_files(git_dir):
        try:
            data = p.read_bytes()
            if len(data) < 32 or hashlib.sha1(data[:-20]).digest() != data[-20:]:
                raise ValueError("checksum mismatch")
            index += index_blobs(p)
        except (OSError, ValueError, IndexError) as e:
            problem = f"{p.name} is damaged ({e})"
    return index, problem


def check_objects(
    git_dir: str | os.PathLike[str],
    *,
    head: bytes | None = None,
    max_loose_verify: int = 5000,
    stale_s: float = 3600.0,
) -> ObjectCheck:
    """Verify a repository's objects without changing anything: pack checksums, loose objects against their ids
    (all of them, or a random sample of ``max_loose_verify``), and that every object reachable from a root (refs,
    reflogs, the index) and the branch ``head`` is present.

    Raises OSError when the object store cannot be read at all.
    """
    git_dir = Path(git_dir)
    out = ObjectCheck()
    with ObjectSource(git_dir / "objects", full_map=True) as src:
        _verify_packs(src, out)
        scan = scan_loose(os.fspath(git_dir / "objects"))
        loose = list(scan.objects)
        corrupt = _corrupt_loose(src, loose, max_loose_verify)
        index, out.index_problem = _index_entries(git_dir)
        walker = Walker(src, strict=False, shallow=shallow_commits(git_dir))
        try:
            walker.walk(root_list(ref_roots(git_dir), index))
        except MissingObject as e:
            out.missing.append(str(e))
        out.missing += [f"{sha.hex()} is missing or unreadable" for sha in walker.missing]
        bad_ids = set(corrupt)
        for it in walker.items:
            if it.type == BLOB and (not src.exists(it.sha) or it.sha in bad_ids):
                where = f" ({it.path.decode('utf-8', 'replace')})" if it.path else ""
                out.missing.append(f"blob {it.sha.hex()}{where} is missing or corrupt")
        if head is not None and not src.exists(head):
            out.missing.append(f"the branch head {head.hex()} is missing")
        reachable = walker.seen
        out.reachable = len(reachable)
        out.commits = sum(1 for it in walker.items if it.type == COMMIT)
        for sha in corrupt:
            bucket = out.corrupt_reachable if sha in reachable else out.corrupt_unreachable
            bucket.append(loose_path(src.objects_dir, sha))
        now = time.time()
        out.old_unreachable = sum(1 for s in loose if s not in reachable and now - scan.objects[s][1] > stale_s)
    return out


def read_object(git_dir: str | os.PathLike[str], sha: bytes) -> tuple[int, bytes]:
    """``(type number, raw content)`` of one object (1 commit, 2 tree, 3 blob, 4 tag), read without a lock.

    Raises ValueError when it is missing or unreadable.
    """
    try:
        with ObjectSource(Path(git_dir) / "objects") as src:
            return src.read(sha)
    except MissingObject as e:
        raise ValueError(str(e)) from None


def stale_temp_files(git_dir: str | os.PathLike[str], *, older_than_s: float) -> list[str]:
    """Paths of gitstate's (and dulwich's) temp files in the object store older than ``older_than_s``."""
    now = time.time()
    scan = scan_loose(os.fspath(Path(git_dir) / "objects"))
    return [p for p, mtime in scan.temp_files if now - mtime > older_than_s]
