"""The Git index of a repository's work tree, kept cheap: parsed once, updated entry by entry, written with
one join (dulwich's index writer is O(n) on every flush); and the work-tree scan that finds hand edits.

What belongs here: :class:`GitIndex` (``.git/index`` read, updated entry by entry and written through
``index.lock``), :class:`RepositoryIndex` (keeping the index in step with HEAD, deferred writes, rebuilding it), the
work-tree scan (:meth:`RepositoryIndex.worktree_changes`, ``.gitignore`` rules) and the racy-git-safe stat check.
What does not: objects (repo_objects.py), refs (repo.py), writing work-tree files (worktree.py), reading them for a
commit (ingest.py).

gitstate keeps its own index writer (issue 12 lists it among the parts to keep): dulwich's rewrites and
re-serialises every entry on each write (ARCHITECTURE.md: writing dulwich's index for 10,000 entries made a one-file
commit 174 ms slower).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .paths import TEMP_MARKER, is_scratch_name, is_temp_name
from .repo_objects import EMPTY_TREE, FILE_MODE, RepositoryObjects, blob_id, load_cache, save_cache, sha1

if TYPE_CHECKING:  # dulwich is imported where objects are touched: `gitstate log` reads refs and the index only
    pass


logger = logging.getLogger("gitstate.repo")

#: In ``.git/gitstate/``: the stamp of the last big index a gitstate handle wrote (see _note_own_index).
OWN_INDEX_FILE: Final = "index-written"
#: Index size from which a flush defers the index write (see Repository.sync_index).
DEFER_INDEX_ENTRIES: Final = 2000
#: The ``info/exclude`` pattern of gitstate's own temp files (written by Repository.init).
OWN_EXCLUDE: Final = b"*" + TEMP_MARKER.encode() + b"*"
#: In ``.git/gitstate/``: the file listing of one commit's tree (see committed_listing).
LISTING_FILE: Final = "head-listing.json"
#: Trees with more files than this are listed from the objects each time (the cache file stays small).
LISTING_MAX_FILES: Final = 4096


def _file_dir_clash(path: str, files: Mapping[str, str]) -> bool:
    """True when ``path`` (not a file of ``files``) is a directory there, or runs through one of its files."""
    i = path.find("/")
    while i >= 0:
        if path[:i] in files:
            return True
        i = path.find("/", i + 1)
    prefix = path + "/"
    return any(p.startswith(prefix) for p in files)


class GitIndex:
    """The Git index (``.git/index``), kept in memory as pre-encoded entries in path order.

    Only versions 2 and 3 without a split index are parsed; anything else is rebuilt from HEAD. Extensions (the
    TREE cache, the untracked cache) are dropped on rewrite, which Git allows: they are caches it recomputes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[bytes, bytes] = {}  # path -> full encoded entry (header, path, padding)
        self.shas: dict[bytes, bytes] = {}  # path -> binary sha
        self._order: list[bytes] = []
        self._sorted = True
        self.stamp: tuple[int, int, int] | None = None
        self.valid = False

    def file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> bool:
        """(Re)read the index file if it changed on disk. False if it cannot be used (must rebuild)."""
        stamp = self.file_stamp()
        if self.valid and stamp == self.stamp:
            return True
        self.clear()
        self.valid = False
        if stamp is None:
            self.stamp = None
            return False
        try:
            data = self.path.read_bytes()
            ok = self._parse(data)
        except (OSError, struct.error, ValueError) as e:
            logger.warning("index %s unreadable (%s); it will be rebuilt", self.path, e)
            ok = False
        if ok:
            self.stamp = stamp
            self.valid = True
            self._sorted = True
        else:
            self.clear()
        return ok

    def _parse(self, data: bytes) -> bool:
        if len(data) < 32 or data[:4] != b"DIRC":
            return False
        if sha1(data[:-20]).digest() != data[-20:]:
            logger.warning("index checksum mismatch (truncated write?); rebuilding it")
            return False
        version, count = struct.unpack(">II", data[4:12])
        if version not in (2, 3):
            return False
        pos = 12
        end = len(data) - 20
        for _ in range(count):
            start = pos
            flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
            sha = data[pos + 40 : pos + 60]
            pos += 62
            if flags & 0x4000:  # extended flags (skip-worktree, intent-to-add): not ours to keep
                return False
            if flags & 0x3000:  # a merge stage: the user is mid-merge with git; rebuild from HEAD
                return False
            nul = data.index(b"\x00", pos)
            name = data[pos:nul]
            entry_len = ((nul + 1 - start) + 7) & ~7
            pos = start + entry_len
            self.entries[name] = data[start:pos]
            self.shas[name] = sha
            self._order.append(name)
        # Extensions: a split index ("link") or a sparse index ("sdir") change the meaning of the entries.
        while pos + 8 <= end:
            sig = data[pos : pos + 4]
            size = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
            if sig in (b"link", b"sdir"):
                return False
            pos += 8 + size
        return True

    def set(self, name: bytes, sha_hex: str, st: os.stat_result | None, mode: int = FILE_MODE) -> None:
        sha = bytes.fromhex(sha_hex)
        if st is None:
            header = struct.pack(">10I", 0, 0, 0, 0, 0, 0, mode, 0, 0, 0)
        else:
            header = struct.pack(
                ">10I",
                int(st.st_ctime) & 0xFFFFFFFF,
                st.st_ctime_ns % 1_000_000_000,
                int(st.st_mtime) & 0xFFFFFFFF,
                st.st_mtime_ns % 1_000_000_000,
                st.st_dev & 0xFFFFFFFF,
                st.st_ino & 0xFFFFFFFF,
                mode,
                st.st_uid & 0xFFFFFFFF,
                st.st_gid & 0xFFFFFFFF,
                st.st_size & 0xFFFFFFFF,
            )
        flags = min(len(name), 0xFFF)
        raw = header + sha + struct.pack(">H", flags) + name
        raw += b"\x00" * (8 - (len(raw) % 8))
        if name not in self.entries:
            self._order.append(name)
            self._sorted = False
        self.entries[name] = raw
        self.shas[name] = sha

    def remove(self, name: bytes) -> None:
        if self.entries.pop(name, None) is not None:
            self.shas.pop(name, None)
            self._order.remove(name)

    def clear(self) -> None:
        self.entries.clear()
        self.shas.clear()
        self._order = []

    def write(self) -> bool:
        """Write the index through ``index.lock``; False (nothing written) if another git holds the lock."""
        if not self._sorted:
            self._order.sort()
            self._sorted = True
        body = b"".join([b"DIRC", struct.pack(">II", 2, len(self._order)), *map(self.entries.__getitem__, self._order)])
        body += sha1(body).digest()
        # Git's protocol: whoever creates index.lock owns the index until it renames the lock over it.
        tmp = self.path.with_name("index.lock")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            # The index is a cache Git can rebuild: atomic rename, but no fsync on the hot path.
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.stamp = self.file_stamp()
        self.valid = True
        return True


def index_has_conflicts(data: bytes) -> bool:
    """True if the index file ``data`` (version 2, 3 or 4) has an entry at a merge stage (1-3)."""
    if len(data) < 12 or data[:4] != b"DIRC":
        return False
    version, count = struct.unpack(">II", data[4:12])
    pos = 12
    try:
        for _ in range(count):
            flags = struct.unpack(">H", data[pos + 60 : pos + 62])[0]
            if flags & 0x3000:
                return True
            start, pos = pos, pos + 62 + (2 if flags & 0x4000 and version >= 3 else 0)
            if version == 4:
                while data[pos] & 0x80:  # the varint of the prefix to strip
                    pos += 1
                pos = data.index(b"\x00", pos + 1) + 1
            else:
                nul = data.index(b"\x00", pos)
                pos = start + (((nul + 1 - start) + 7) & ~7)
    except (IndexError, ValueError, struct.error):
        return False
    return False


class RepositoryIndex(RepositoryObjects):
    """The index and work-tree half of :class:`gitstate.repo.Repository` (see the module note)."""

    root: Path
    git_dir: Path
    meta_dir: Path
    index: GitIndex
    _index_behind: bool
    _deferred: dict[bytes, tuple[str, os.stat_result | None] | None]
    _conflicts_checked: tuple[int, int, int] | None
    _index_conflicts: bool
    #: (commit, listing) of the last commit listed or carried over (see committed_listing, listing_moved).
    _head_listing: tuple[str, dict[str, str]] | None = None

    if TYPE_CHECKING:  # given by Repository (repo.py) and RepositoryLock (repo_lock.py)

        def head(self) -> str | None: ...

        def holds_lock(self) -> bool: ...

        def stale_lock_files(self) -> list[Path]: ...

    # ----------------------------------------------------------------- index and work tree
    def sync_index(
        self,
        head_tree: str,
        changed: dict[str, str | None],
        *,
        stats: Mapping[str, os.stat_result | None] | None = None,
        defer: bool = False,
    ) -> None:
        """Bring index entries of ``changed`` paths (path -> blob id or None) up to date and write the index.
        Call with :meth:`lock` held, after the work-tree files are written. Rebuilds the whole index from
        ``head_tree`` when the file is missing or unusable.

        With ``defer`` and a big index (:data:`DEFER_INDEX_ENTRIES` entries or more), the entries are updated in
        memory only and written by :meth:`write_deferred_index` a moment later (the store does it when flushes
        pause, and on close): rewriting a megabyte of index on every flush would make flush cost grow with the
        store's size. Nor is the index read again when another process (a second handle) rewrote it meanwhile:
        the entries go into the copy in memory, which serves only as a stat cache (an entry counts only where it
        names the head's blob), and the file is re-read once, when the deferred updates are written."""
        new: dict[bytes, tuple[str, os.stat_result | None] | None] = {}
        for path, sha in changed.items():
            name = path.encode("utf-8", "surrogateescape")
            if sha is None:
                self._deferred[name] = None
            elif stats is not None and path in stats:
                self._deferred[name] = (sha, stats[path])  # the stat taken when the content was read
            else:
                try:
                    st = os.lstat(self.root / path)
                except FileNotFoundError:
                    st = None
                self._deferred[name] = (sha, st)
            new[name] = self._deferred[name]
        if defer and self.index.valid and not self._index_behind and len(self.index.entries) >= DEFER_INDEX_ENTRIES:
            self._apply_deferred(new)  # no re-read of a big index on the flush path (see above)
            return
        if not self._load_index_with_updates(head_tree):
            return
        if defer and len(self.index.entries) >= DEFER_INDEX_ENTRIES:
            return
        self._write_index()

    def _load_index_with_updates(self, head_tree: str) -> bool:
        """Load the index (re-reading it if another process wrote it) and apply our unwritten updates; False if
        it had to be rebuilt from ``head_tree`` instead (which includes them)."""
        if self._index_behind or not self.index.load():
            self.rebuild_index(head_tree)
            return False
        self._apply_deferred()
        return True

    def _apply_deferred(self, updates: Mapping[bytes, tuple[str, os.stat_result | None] | None] | None = None) -> None:
        """Apply the index updates :meth:`sync_index` deferred (or just ``updates``) to the index in memory."""
        for name, entry in (self._deferred if updates is None else updates).items():
            if entry is None:
                self.index.remove(name)
            else:
                self.index.set(name, entry[0], entry[1])

    def index_has_unwritten_updates(self) -> bool:
        """True when :meth:`sync_index` deferred a write."""
        return bool(self._deferred)

    def write_deferred_index(self) -> None:
        """Write index updates that :meth:`sync_index` deferred. Call with :meth:`lock` held."""
        if not self._deferred:
            return
        head = self.head()
        if head is None:
            return
        if self._load_index_with_updates(self.commit_info(head).tree):
            self._write_index()

    def index_is_behind(self) -> bool:
        """True when the index missed an update and must be rebuilt from HEAD."""
        return self._index_behind

    def index_fell_behind(self) -> None:
        """The index could not be updated (disk full...): rebuild it from HEAD on the next sync."""
        self._index_behind = True
        self.index.valid = False

    def _write_index(self) -> None:
        lock = self.git_dir / "index.lock"
        if os.path.lexists(lock) and self.holds_lock() and lock in self.stale_lock_files():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
                logger.warning("removed stale %s", lock)
        if self.index.write():
            self._index_behind = False
            self._deferred.clear()
            if len(self.index.entries) >= DEFER_INDEX_ENTRIES:
                self._note_own_index()
        else:
            # A live git is updating the index; ours is rebuilt from HEAD on the next sync.
            self.index_fell_behind()
            logger.info("index.lock is held by another git process; the index will be refreshed later")

    def _note_own_index(self) -> None:
        """Record the stamp of the index file just written (with the lock held), so that another handle finds
        it has no merge stages without reading a big index through (:meth:`index_written_by_gitstate`)."""
        stamp = self.index.stamp
        if stamp is None:
            return
        tmp = self.meta_dir / f"{OWN_INDEX_FILE}{TEMP_MARKER}{os.getpid()}"
        with contextlib.suppress(OSError):  # a cache: without it the index is read through
            tmp.write_text(" ".join(map(str, stamp)) + "\n")
            os.replace(tmp, self.meta_dir / OWN_INDEX_FILE)

    def index_written_by_gitstate(self, stamp: tuple[int, int, int]) -> bool:
        """True when the index file with ``stamp`` is the one a gitstate handle wrote last (so it holds no
        merge stages: gitstate never writes them)."""
        try:
            text = (self.meta_dir / OWN_INDEX_FILE).read_text()
        except OSError:
            return False
        return text.split() == [str(n) for n in stamp]

    def rebuild_index(self, head_tree: str) -> None:
        """Write a fresh index for ``head_tree``; stat data is taken only where the file matches the blob."""
        self.index.clear()
        for path, sha in self.list_blobs(head_tree).items():
            st = None
            full = self.root / path
            with contextlib.suppress(OSError):
                st_ = os.lstat(full)
                if stat.S_ISREG(st_.st_mode) and blob_id(full.read_bytes()) == sha:
                    st = st_
            self.index.set(path.encode("utf-8", "surrogateescape"), sha, st)
        self._write_index()

    def committed_listing(self, commit: str | None) -> dict[str, str]:
        """Every file of a commit's tree: path -> blob id (empty for None, no commit yet).

        A commit's listing never changes, so the last one asked for is kept in ``.git/gitstate/`` under its
        commit id, and :meth:`listing_moved` carries it over to each commit built on it: `gitstate status` of a
        small store then reads no object (and loads no object store). Trees over :data:`LISTING_MAX_FILES` files
        are read from the objects each time.
        """
        if commit is None:
            return {}
        files = self._saved_listing(commit)
        if files is not None:
            return files
        listing = self.list_blobs(self.commit_info(commit).tree)
        if len(listing) <= LISTING_MAX_FILES:
            self._head_listing = (commit, dict(listing))
            save_cache(self.meta_dir / LISTING_FILE, {"commit": commit, "files": listing})
        else:
            self._drop_listing()
        return listing

    def _saved_listing(self, commit: str) -> dict[str, str] | None:
        """The cached listing of ``commit`` (in memory, else from the file), or None."""
        held = self._head_listing
        if held is not None and held[0] == commit:
            return held[1]
        saved = load_cache(self.meta_dir / LISTING_FILE)
        if isinstance(saved, dict) and saved.get("commit") == commit and isinstance(saved.get("files"), dict):
            files: dict[str, str] = saved["files"]
            self._head_listing = (commit, files)
            return files
        return None

    def listing_moved(self, parent: str | None, commit: str, changes: Mapping[str, str | None]) -> None:
        """The branch moved from ``parent`` to ``commit``, whose tree is ``parent``'s with ``changes`` (path ->
        new blob id, None: deleted): carry the cached listing over, so the first `status` after a program's
        write reads no object either. Nothing is done when no listing of ``parent`` is cached (nobody asked for
        one), or when a change could turn a file into a directory or back (then the next look lists the tree);
        a cached listing that cannot be carried over is removed, so later commits do not read it again."""
        files = self._saved_listing(parent) if parent is not None else None
        # A path the listing does not hold is a new file, or was a directory (then it is gone as a whole).
        if files is None or any(_file_dir_clash(p, files) for p in changes if p not in files):
            self._drop_listing()
            return
        files = dict(files)
        for p, sha in changes.items():
            if sha is None:
                files.pop(p, None)
            else:
                files[p] = sha
        if len(files) > LISTING_MAX_FILES:
            self._drop_listing()
            return
        self._head_listing = (commit, files)
        save_cache(self.meta_dir / LISTING_FILE, {"commit": commit, "files": files})

    def _drop_listing(self) -> None:
        self._head_listing = None
        with contextlib.suppress(OSError):
            os.unlink(self.meta_dir / LISTING_FILE)

    def worktree_changes(
        self,
        head_tree: str | None,
        *,
        ignored: Any = None,
        max_bytes: int | None = None,
        oversized: dict[str, int] | None = None,
        committed: dict[str, str] | None = None,
    ) -> dict[str, bytes | None]:
        """Files whose content differs from ``head_tree``: path -> current bytes, or None if deleted.

        Unchanged files are recognised by the index's stat data without being read. Scratch files and what
        ``.gitignore`` ignores are skipped; gitstate's own stale temp files are removed. A changed file larger
        than ``max_bytes`` is not read: it goes into ``oversized`` (path -> size) instead of the result.
        ``committed``: the listing of ``head_tree`` when the caller has it (:meth:`committed_listing`; then
        ``head_tree`` may be None).
        """
        if committed is None:
            committed = self.list_blobs(head_tree or EMPTY_TREE)
        index_ok = self.index.load()
        if index_ok:  # our own unwritten updates (deferred by sync_index) still count
            self._apply_deferred()
        out: dict[str, bytes | None] = {}
        seen: set[str] = set()
        for path, full in self._walk_files(ignored):
            sha = committed.get(path)
            if sha is not None:
                seen.add(path)
            elif is_scratch_name(path.rsplit("/", 1)[-1]) or (ignored is not None and ignored(path)):
                continue
            data = self._changed_content(path, full, sha if index_ok else None, max_bytes, oversized)
            if data is not None and (sha is None or blob_id(data) != sha):
                out[path] = data
        for path in committed.keys() - seen:
            if not os.path.lexists(self.root / path):
                out[path] = None
        return out

    def _walk_files(self, ignored: Any) -> Iterator[tuple[str, str]]:
        """(store path, file system path) of every file in the work tree, outside ``.git``, not through a
        symlinked directory, not in an ignored directory; gitstate's own stale temp files are removed (with the
        lock held) and skipped."""
        for dirpath, dirnames, filenames in os.walk(str(self.root)):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if not (rel_dir == "" and d == ".git")
                and not os.path.islink(os.path.join(dirpath, d))
                and not (ignored is not None and ignored(rel_dir + d + "/"))
            ]
            for name in filenames:
                full = os.path.join(dirpath, name)
                if is_temp_name(name):
                    with contextlib.suppress(OSError):
                        if self.holds_lock():
                            os.unlink(full)
                    continue
                yield rel_dir + name, full

    def _changed_content(
        self, path: str, full: str, indexed_sha: str | None, max_bytes: int | None, oversized: dict[str, int] | None
    ) -> bytes | None:
        """The bytes of a regular file whose stat does not match the index entry for ``indexed_sha`` (None: no
        usable entry), or None: unchanged by its stat, not a regular file, gone, unreadable, or over ``max_bytes``
        (then recorded in ``oversized``)."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if indexed_sha is not None and self._stat_matches(path, indexed_sha, st):
            return None
        if max_bytes is not None and st.st_size > max_bytes:
            if oversized is not None:
                oversized[path] = st.st_size
            return None
        try:
            return Path(full).read_bytes()
        except OSError as e:
            logger.warning("cannot read %s: %s", full, e)
            return None

    def stat_matches(self, path: str, sha: str, st: os.stat_result) -> bool:
        """True when the index entry of ``path`` names blob ``sha`` and ``st`` matches its stat (racy-git safe):
        the file holds that blob without being read."""
        return self._stat_matches(path, sha, st)

    def _stat_matches(self, path: str, sha: str, st: os.stat_result) -> bool:
        entry = self.index.entries.get(path.encode("utf-8", "surrogateescape"))
        if entry is None or entry[40:60] != bytes.fromhex(sha):
            return False
        ctime_s, ctime_ns, mtime_s, mtime_ns, _, ino, _, _, _, size = struct.unpack(">10I", entry[:40])
        if not (
            mtime_s == int(st.st_mtime) & 0xFFFFFFFF
            and mtime_ns == st.st_mtime_ns % 1_000_000_000
            and ctime_s == int(st.st_ctime) & 0xFFFFFFFF
            and ctime_ns == st.st_ctime_ns % 1_000_000_000
            and size == st.st_size & 0xFFFFFFFF
            and ino == st.st_ino & 0xFFFFFFFF
            and size != 0
        ):
            return False
        # Racy git: a file changed in the same clock tick as the index was written may differ while its stat
        # matches; only its content can tell.
        index_mtime_ns = self.index.stamp[1] if self.index.stamp else 0
        return st.st_mtime_ns < index_mtime_ns

    def ignore_matcher(self) -> Any:
        """A function ``path -> bool`` applying the store's ``.gitignore`` files and ``info/exclude``.

        dulwich's rules are loaded on the first question a ``.gitignore`` (in the path's directory or above it)
        or ``info/exclude`` could answer: a store without ignore rules never imports them (`gitstate status`)."""
        exclude = self.git_dir / "info" / "exclude"
        try:
            excludes = [ln for ln in exclude.read_bytes().splitlines() if ln.strip() and not ln.startswith(b"#")]
        except OSError:
            excludes = []
        # The pattern every store's info/exclude starts with (Repository.init) is answered without dulwich.
        others = [ln for ln in excludes if ln.strip() != OWN_EXCLUDE]
        own_pattern = len(others) < len(excludes)
        has_rules: dict[str, bool] = {}  # directory ("" for the root, else "a/b/") -> holds a .gitignore
        rules: list[Any] = []  # dulwich's matcher once loaded (a function path -> bool)

        def rules_apply(path: str) -> bool:
            if others:
                return True
            d = ""
            for part in ["", *path.rstrip("/").split("/")[:-1]]:
                d += f"{part}/" if part else ""
                known = has_rules.get(d)
                if known is None:
                    known = has_rules[d] = os.path.lexists(os.path.join(self.root, d, ".gitignore"))
                if known:
                    return True
            return False

        def is_ignored(path: str) -> bool:
            if not rules_apply(path):
                return own_pattern and TEMP_MARKER in path.rstrip("/").rsplit("/", 1)[-1]
            try:
                if not rules:
                    rules.append(self._ignore_rules(excludes))
                return bool(rules[0](path))
            except Exception as e:  # a broken .gitignore must not stop the store
                if not rules:
                    logger.warning("cannot read .gitignore rules: %s", e)
                    rules.append(lambda _path: False)
                return False

        return is_ignored

    def _ignore_rules(self, excludes: list[bytes]) -> Any:
        """dulwich's matcher of the store's ``.gitignore`` files plus the ``info/exclude`` patterns."""
        from dulwich.ignore import IgnoreFilter, IgnoreFilterManager

        mgr = IgnoreFilterManager(str(self.root), [], False)
        if excludes:
            mgr._global_filters.append(IgnoreFilter(excludes))
        return mgr.is_ignored
