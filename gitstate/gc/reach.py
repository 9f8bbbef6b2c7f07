"""What history needs: the roots (refs, ``*HEAD`` files, reflogs, the index) and the walk from them.

What belongs here: collecting roots, the reachability walk (:class:`Walker`) that orders objects for packing,
and the :class:`Pacer` that lets background work give way to writers. What does not: reading objects
(:mod:`.objects`), deciding what to delete (:mod:`.maintenance`). Kept instead of dulwich's object walker: the
walk must also yield each blob's path (for git's name hash) and read reflogs, the index and ``packed:`` roots.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RepositoryError
from ..paths import TEMP_MARKER
from .objects import (
    BLOB,
    COMMIT,
    HEX40,
    TAG,
    TREE,
    TYPE_NAMES,
    MissingObject,
    ObjectSource,
    Progress,
    Stopped,
    commit_links,
    read_ofs_varint,
    tag_target,
    tree_entries,
)

if TYPE_CHECKING:
    from ..repo import Repository

logger = logging.getLogger("gitstate.gc")


# ===================================================================== roots
def _read_sha_file(path: Path) -> bytes | None:
    try:
        text = path.read_bytes()[:41].strip()
    except OSError:
        return None
    return bytes.fromhex(text.decode()) if HEX40.match(text) else None


def _loose_refs(git_dir: Path, roots: dict[str, bytes]) -> None:
    refs_dir = git_dir / "refs"
    if not refs_dir.is_dir():
        return
    for dirpath, _, files in os.walk(refs_dir):
        for name in files:
            if name.endswith(".lock") or TEMP_MARKER in name:
                continue
            p = Path(dirpath, name)
            sha = _read_sha_file(p)
            if sha is not None:
                roots[str(p.relative_to(git_dir))] = sha


def _packed_refs(git_dir: Path, roots: dict[str, bytes]) -> None:
    with contextlib.suppress(OSError), open(git_dir / "packed-refs", "rb") as f:
        last = "packed-refs"
        for i, line in enumerate(f):
            line = line.strip()
            if line.startswith(b"^") and HEX40.match(line[1:41]):
                roots[f"{last}^{{}}#{i}"] = bytes.fromhex(line[1:41].decode())
            elif HEX40.match(line[:40]):
                last = line[41:].decode("utf-8", "replace")
                roots[f"packed:{last}"] = bytes.fromhex(line[:40].decode())


def _head_files(g: Path, roots: dict[str, bytes]) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(g):
            if entry.name.endswith("HEAD") and entry.is_file():
                with contextlib.suppress(OSError), open(entry.path, "rb") as f:
                    for j, line in enumerate(f):
                        if HEX40.match(line[:40]):
                            roots[f"{entry.path}#{j}"] = bytes.fromhex(line[:40].decode())


def _reflogs(g: Path, roots: dict[str, bytes]) -> None:
    logs = g / "logs"
    if not logs.is_dir():
        return
    for dirpath, _, files in os.walk(logs):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(dirpath, name), "rb") as f:
                for j, line in enumerate(f):
                    for k, part in enumerate(line.split(b" ", 2)[:2]):
                        if HEX40.match(part) and part != b"0" * 40:
                            roots[f"{dirpath}/{name}#{j}.{k}"] = bytes.fromhex(part.decode())


def ref_roots(git_dir: Path) -> dict[str, bytes]:
    """Every object id the repository refers to by name: refs (loose and packed, peeled tags too), the
    ``*HEAD`` files (``FETCH_HEAD`` lines), reflogs, and the same for linked worktrees.

    Keys name where each id was found (``refs/heads/main``, ``packed:refs/tags/v1``, ``<ref>^{}#<line>`` for a
    peeled line of ``packed-refs``, ``<file>#<line>`` for ``*HEAD`` files and reflogs)."""
    git_dir = Path(git_dir)
    roots: dict[str, bytes] = {}
    _loose_refs(git_dir, roots)
    _packed_refs(git_dir, roots)
    gits = [git_dir]
    wt = git_dir / "worktrees"
    if wt.is_dir():
        gits += [p for p in wt.iterdir() if p.is_dir()]
    for g in gits:
        _head_files(g, roots)
        _reflogs(g, roots)
    return roots


def index_files(git_dir: Path) -> list[Path]:
    """The Git index files of the repository and its linked worktrees (split-index parts too)."""
    out = [git_dir / "index"]
    wt = git_dir / "worktrees"
    if wt.is_dir():
        out += [p / "index" for p in wt.iterdir() if p.is_dir()]
    out += sorted(git_dir.glob("sharedindex.*"))
    return [p for p in out if p.exists()]


def index_blobs(path: Path) -> list[tuple[bytes, bytes]]:
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
            strip, pos = read_ofs_varint(data, pos)
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


def shallow_commits(git_dir: Path) -> set[bytes]:
    """The ids listed in ``.git/shallow`` (history cut off below them)."""
    out: set[bytes] = set()
    with contextlib.suppress(OSError):
        for line in (git_dir / "shallow").read_bytes().split():
            if HEX40.match(line):
                out.add(bytes.fromhex(line.decode()))
    return out


# ===================================================================== walking
@dataclass(slots=True)
class Item:
    """An object met by the walk: its id, type, path (for blobs and trees) and order."""

    sha: bytes
    type: int
    path: bytes | None
    order: int


class Pacer:
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
        """Between units of work: raise Stopped when asked to stop, give way to a writer when one waits."""
        if self.stop is not None and self.stop.is_set():
            raise Stopped
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
                raise Stopped
            if self.stop is None:
                time.sleep(0.001)
        self._t = time.perf_counter()


NO_PACER = Pacer()


class Walker:
    """Walks objects from roots, newest commit first, each commit's tree right after it (so versions of a path
    are met newest first). ``want(sha)`` decides whether an object is included and descended into."""

    def __init__(
        self,
        src: ObjectSource,
        *,
        want: Callable[[bytes], bool] | None = None,
        strict: bool = True,
        shallow: set[bytes] | None = None,
        pacer: Pacer = NO_PACER,
        progress: Progress | None = None,
    ) -> None:
        self.src = src
        self.want = want
        self.strict = strict
        self.shallow = shallow or set()
        self.pacer = pacer
        self.progress = progress
        self.seen: set[bytes] = set()
        self.items: list[Item] = []
        self.missing: list[bytes] = []
        self._order = 0
        self._paths: dict[bytes, bytes] = {}

    def _add(self, sha: bytes, type_num: int, path: bytes | None) -> None:
        if path is not None:
            path = self._paths.setdefault(path, path)
        self.items.append(Item(sha, type_num, path, self._order))
        self._order += 1
        if self.progress is not None and self._order % 1000 == 0:
            self.progress("counting objects", self._order, 0)

    def _read(self, sha: bytes, *, optional: bool = False) -> tuple[int, bytes] | None:
        try:
            return self.src.read(sha)
        except MissingObject:
            if optional:
                return None
            if self.strict:
                raise
            self.missing.append(sha)
            return None

    def walk(self, roots: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Walk from ``roots`` (id, path or None), adding every object reached to :attr:`items`."""
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
            if type_num == COMMIT:
                self._add(sha, COMMIT, None)
                try:
                    tree, parents = commit_links(data)
                except ValueError as e:
                    raise MissingObject(sha, str(e)) from e
                self._walk_tree(tree, b"")
                if sha not in self.shallow:  # as git does: a shallow commit's parents are not reachable through it
                    stack.extend((p, None, False) for p in reversed(parents))
            elif type_num == TAG:
                self._add(sha, TAG, None)
                try:
                    stack.append((tag_target(data), None, False))
                except ValueError as e:
                    raise MissingObject(sha, str(e)) from e
            elif type_num == TREE:
                self.seen.discard(sha)
                self._walk_tree(sha, path or b"")
            else:
                self._add(sha, BLOB, path)

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
            if type_num != TREE:
                raise MissingObject(sha, f"expected a tree, found a {TYPE_NAMES[type_num].decode()}")
            self._add(sha, TREE, path)
            try:
                entries = list(tree_entries(data))
            except ValueError as e:
                raise MissingObject(sha, str(e)) from e
            for mode, name, esha in reversed(entries):
                child = path + b"/" + name if path else name
                if mode == 0o40000:
                    stack.append((esha, child))
                elif mode == 0o160000 or esha in self.seen:
                    continue
                else:
                    self.seen.add(esha)
                    if self.want is None or self.want(esha):
                        self._add(esha, BLOB, child)


def all_roots(git_dir: Path, *, strict: bool) -> tuple[dict[str, bytes], list[tuple[bytes, bytes]]]:
    """The ref roots and the index's blobs; with ``strict``, an unreadable index raises RepositoryError."""
    roots = ref_roots(git_dir)
    index: list[tuple[bytes, bytes]] = []
    for p in index_files(git_dir):
        try:
            index += index_blobs(p)
        except (OSError, ValueError, IndexError, struct.error) as e:
            if strict:
                raise RepositoryError(
                    f"{p} cannot be read ({e}); nothing was pruned. 'gitstate doctor' checks the repository"
                ) from e
            logger.debug("ignoring unreadable index %s: %s", p, e)
    return roots, index


def root_list(roots: dict[str, bytes], index: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes | None]]:
    """Roots in walk order without duplicates: branch heads first, then other refs, then the index's blobs."""
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
