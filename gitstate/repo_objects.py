"""Git objects of a repository: reading and writing them (dulwich's object store, opened on first use), the
blob, tree and commit caches, trees read and built path by path, commits made and parsed.

What belongs here: :class:`RepositoryObjects` (:meth:`~RepositoryObjects.read_object` as the one place objects are
read, :meth:`~RepositoryObjects.write_objects`, trees read, compared and built path by path,
:meth:`~RepositoryObjects.make_commit`, :meth:`~RepositoryObjects.commit_info` and the commit walk), blob ids,
:class:`CommitInfo` and :class:`TagInfo`. What does not: refs and the branch (repo.py), the index (repo_index.py),
ancestry (ancestry.py). Part of :class:`gitstate.repo.Repository`, split off by job (issue 12).

dulwich's pack-index fan-out reader is replaced by one ``struct.unpack_from`` (:func:`_fan_out_in_one_call`: the
same result, 25x faster; a second handle opens the index of each pack the other one writes).

Loose objects are written here rather than with dulwich's ``add_object``, which fsyncs the file but never the
fan-out directory that holds it (ARCHITECTURE.md); :mod:`gitstate.repo` promises both before a commit is reported.
A durable flush's objects go into one small pack (:mod:`gitstate.repo_packs`); the packer's packs of many
objects are written by :class:`gitstate.gc.packwrite.PackWriter`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import stat
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from .errors import ObjectUnreadable, RepositoryError, RevisionNotFound
from .paths import TEMP_MARKER, fsync_dir, replace_with

if TYPE_CHECKING:  # dulwich is imported where objects are touched: `gitstate log` reads refs and the index only
    import hashlib

    from dulwich.objects import Commit, ShaFile, Tree

    from .repo_packs import Deflating
    from .repo_trees import TreePatcher

logger = logging.getLogger("gitstate.repo")

#: Id of the empty tree.
EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILE_MODE: Final = 0o100644
EXEC_MODE: Final = 0o100755
TREE_MODE: Final = 0o040000
#: Bytes of recently read or written blobs kept in memory (blobs over a quarter of it are never kept). A flush
#: reads the committed version of each document it writes (to skip unchanged ones and describe the change):
#: usually the blob the previous flush wrote, served from here instead of being read back and inflated.
BLOB_CACHE_BYTES: Final = 8 << 20
#: What one entry of the blob cache costs besides the content: the id, the bytes object, the dict's slot and
#: link (measured: ~190 bytes). A history of small documents read whole (``log --json``) held 102,000 blobs of
#: ~50 bytes, 8 MB of content in ~35 MB, when only the content was counted.
BLOB_ENTRY_BYTES: Final = 256
#: Parsed commits kept in memory (~600 bytes each with a short message). A walk reads each commit once and its
#: parent right after, so a few thousand serve it; 50,000 held ~35 MB through the first `log` of a 100,000-commit
#: history.
COMMIT_CACHE_ENTRIES: Final = 8192
HEX40: Final = re.compile(r"[0-9a-f]{40}")
#: How to get a damaged repository back, said by every error about one.
REPAIR_ADVICE: Final = (
    "run 'gitstate doctor' for the details; restore the history from a remote (gitstate clone URL DIR) or a "
    "backup (the files in the store directory are the latest state)"
)


#: Inputs under this size are hashed by CPython's own SHA-1 while OpenSSL's is not loaded yet (see sha1).
SMALL_HASH_BYTES: Final = 64 << 10


def sha1(data: bytes, *, total: int | None = None) -> hashlib._Hash:
    """A SHA-1 of ``data`` (more may be fed with ``update``; ``total``: the whole input's size, if larger).

    ``hashlib`` is imported on first use: loading OpenSSL is ~4 ms of the CLI's start-up. Until something has
    loaded it, small inputs (`gitstate status` checks a small index's checksum) go through CPython's built-in
    ``_sha1``, which loads in ~1.4 ms but hashes ~9x slower, so big inputs always use OpenSSL's."""
    if "hashlib" not in sys.modules and (len(data) if total is None else total) < SMALL_HASH_BYTES:
        try:
            import _sha1  # type: ignore[import-not-found]

            return cast("hashlib._Hash", _sha1.sha1(data))
        except ImportError:  # an interpreter without it
            pass
    import hashlib

    return hashlib.sha1(data)


def blob_id(data: bytes) -> str:
    """The Git object id of a blob holding ``data``."""
    header = b"blob %d\x00" % len(data)
    h = sha1(header, total=len(header) + len(data))
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class CommitInfo:
    """A commit as gitstate needs it.

    Attributes:
        id: hex id.
        tree: hex id of the root tree.
        parents: hex ids of the parents.
        author: ``Name <email>``.
        time: author time, seconds since the epoch.
        tz_offset_s: the author's UTC offset in seconds.
        message: the full message.
    """

    id: str
    tree: str
    parents: tuple[str, ...]
    author: str
    time: int
    tz_offset_s: int
    message: str
    commit_time: int = 0


@dataclass(frozen=True)
class TagInfo:
    """A tag: its name, the commit it points at, when it was made (tagger time, else the commit's)."""

    name: str
    commit: str
    time: int
    message: str = ""


def load_cache(path: Path) -> Any:
    """The JSON value of a cache file under ``.git/gitstate/``, or None when it is missing or unreadable.

    Such caches hold what was read from objects, keyed by the objects' ids (an object never changes), so a
    value is right for as long as its key matches; a torn or foreign file is a miss."""
    import orjson

    try:
        return orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def save_cache(path: Path, value: Any) -> None:
    """Replace the cache file ``path`` with ``value`` as JSON (mode 0600, no fsync: a lost or torn file is a
    miss); a read-only store or a full disk leaves it as it was."""
    import orjson

    tmp = path.with_name(f"{path.name}{TEMP_MARKER}{os.urandom(6).hex()}")
    try:
        replace_with(tmp, path, orjson.dumps(value), mode=0o600, fsync=False)
    except OSError as e:
        logger.debug("cannot save the cache %s: %s", path, e)


_warned: set[str] = set()


def warn_once(what: str, msg: str, *args: object) -> None:
    """Log a damaged file once per process (refs are read on every flush)."""
    if what not in _warned:
        _warned.add(what)
        logger.warning(msg, *args)


def describe_fault(e: BaseException) -> str:
    """A damaged file's fault in a few words (dulwich's own messages can quote kilobytes of binary)."""
    text = str(e).replace("\n", " ")
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def fmt_person(ident: str) -> bytes:
    return ident.encode("utf-8")


def open_object_store(objects_dir: str) -> Any:
    """dulwich's object store over ``objects_dir``, with packs looked up newest first.

    dulwich tries its packs in the order it opened them (a set's order: any) and, when none holds the object,
    lists the pack directory and tries again. A store writes one small pack per durable flush, and a flush reads
    what the previous commit wrote (its own or another handle's): with dozens of packs (the packer off, or not
    yet run) each such read tried most of them twice (BENCHMARKS.md, issue 12: a flush after 65 small packs
    took 1.6x as long as with loose objects). Here
    packs newly seen go to the front, newest first, and a change of the pack directory (its mtime) is picked up
    before the lookup instead of after a miss. Only the order changes: a pack missed this way is still found by
    dulwich's own rescan."""
    return _recent_first_store_class()(objects_dir)


def _fan_out_in_one_call(self: Any, start_offset: int) -> list[int]:
    """dulwich's ``FilePackIndex._read_fan_out_table`` with one ``struct.unpack_from`` instead of 256 slices and
    ``struct.unpack`` calls: the same 256 counts (the same ``struct.error`` on a short file), in 3 us instead of
    77, which were two thirds of opening a small pack's index, done once for each pack another handle writes."""
    return list(struct.unpack_from(">256L", self._contents, start_offset))


def _faster_fan_out() -> None:
    from dulwich.pack import FilePackIndex

    if getattr(FilePackIndex, "_read_fan_out_table", None) is not None:  # the dulwich this module was measured on
        FilePackIndex._read_fan_out_table = _fan_out_in_one_call  # type: ignore[method-assign]


@functools.cache
def _recent_first_store_class() -> Any:
    from dulwich.object_store import DiskObjectStore

    _faster_fan_out()

    class RecentFirstObjectStore(DiskObjectStore):
        _pack_dir_stamp: tuple[int, int] | None = None

        def _stamp(self) -> tuple[int, int] | None:
            try:
                st = os.stat(self.pack_dir)
            except OSError:
                return None
            return (st.st_mtime_ns, st.st_ino)

        def _update_pack_cache(self) -> list[Any]:
            self._pack_dir_stamp = self._stamp()  # before the listing: a pack landing during it is seen next time
            new: list[Any] = super()._update_pack_cache()
            if new:
                cache = self._pack_cache
                fresh = {id(p) for p in new}

                def mtime(name: str) -> int:
                    try:
                        return os.stat(os.path.join(self.pack_dir, name + ".pack")).st_mtime_ns
                    except OSError:
                        return 0

                front = sorted((k for k, v in cache.items() if id(v) in fresh), key=mtime, reverse=True)
                ordered = {k: cache[k] for k in front} | {k: v for k, v in cache.items() if id(v) not in fresh}
                cache.clear()
                cache.update(ordered)
            return new

        def _lookup_in_packs(self, lookup: Any) -> Any:
            if self._stamp() != self._pack_dir_stamp:
                self._update_pack_cache()
            return super()._lookup_in_packs(lookup)

    return RecentFirstObjectStore


class RepositoryObjects:
    """The object half of :class:`gitstate.repo.Repository` (see the module note)."""

    root: Path
    git_dir: Path
    _mutex: threading.RLock
    _object_store: Any
    _tree_cache: OrderedDict[str, Tree]
    _tree_patcher: TreePatcher
    _paths_cache: OrderedDict[str, dict[str, str]]
    _blob_cache: OrderedDict[str, bytes]
    _blob_cache_bytes: int
    _commit_cache: OrderedDict[str, CommitInfo]
    _shallow_cache: tuple[tuple[int, int, int] | None, frozenset[str]] | None
    _shallow_serial: int
    _lock_serial: int
    _lock_owner: int | None
    #: Write a durable commit's objects as one small pack instead of loose files (see :meth:`write_objects`);
    #: off only where a test needs one object of a commit alone in its own file.
    pack_writes: bool = True

    # ----------------------------------------------------------------- objects
    @property
    def _objects(self) -> Any:
        """dulwich's object store, opened on first use: commands that read only refs and the history index (``gitstate
        log``) never import it (~25 ms of start-up). Typed Any: dulwich's ObjectID NewTypes would need a cast at
        every lookup by hex id."""
        store = self._object_store
        if store is None:
            from dulwich.errors import NotGitRepository

            with self._mutex:
                if self._object_store is None:
                    try:
                        self._object_store = open_object_store(str(self.git_dir / "objects"))
                    except (OSError, NotGitRepository) as e:
                        raise RepositoryError(f"{self.root}: cannot open the Git object store: {e}") from e
                    except Exception as e:  # dulwich reads objects/info/alternates and the config here
                        raise RepositoryError(
                            f"{self.root}: cannot open the Git object store ({describe_fault(e)}); {REPAIR_ADVICE}"
                        ) from e
                store = self._object_store
        return store

    def read_object(self, sha: str) -> ShaFile:
        """Read any object by hex id: the one place objects are read, so every dulwich, zlib or OS fault of a
        damaged repository becomes an error of gitstate's tree here.

        Raises:
            ObjectUnreadable: the object is missing, or its file (loose or packed) is damaged.
        """
        if not HEX40.fullmatch(sha):
            raise ObjectUnreadable(f"{self.root}: {sha[:60]!r} is not an object id; {REPAIR_ADVICE}", sha=sha)
        with self._mutex:
            try:
                return cast("ShaFile", self._objects[sha.encode()])
            except KeyError:
                pass
            except Exception as e:  # a damaged pack or loose file: dulwich raises anything (AssertionError too)
                return self._read_loose_after_fault(sha, e)
            # A packer may have moved the object from a loose file into a new pack between dulwich's pack scan
            # and its loose lookup: rescan the packs once.
            with contextlib.suppress(Exception):
                self._objects._update_pack_cache()
            try:
                return cast("ShaFile", self._objects[sha.encode()])
            except KeyError as e:
                raise ObjectUnreadable(f"{self.root}: object {sha} is missing; {REPAIR_ADVICE}", sha=sha) from e
            except Exception as e:
                return self._read_loose_after_fault(sha, e)

    def _read_loose_after_fault(self, sha: str, fault: Exception) -> ShaFile:
        """dulwich looks in the packs first, so one damaged pack fails every read: try the loose file alone (the
        newest objects are loose), else report the fault. Call with ``_mutex`` held."""
        try:
            obj = self._objects._get_loose_object(sha.encode())
        except Exception as e:
            raise ObjectUnreadable(
                f"{self.root}: object {sha} is damaged ({describe_fault(e)}); {REPAIR_ADVICE}", sha=sha
            ) from e
        if obj is None:
            raise ObjectUnreadable(
                f"{self.root}: object {sha} cannot be read: a pack is damaged ({describe_fault(fault)}); "
                f"{REPAIR_ADVICE}",
                sha=sha,
            ) from fault
        warn_once(
            f"{self.root}:packs",
            "%s: a pack is damaged (%s); objects are read from their loose copies where they have one; run "
            "'gitstate doctor'",
            self.root,
            describe_fault(fault),
        )
        return cast("ShaFile", obj)

    def has_object(self, sha: str) -> bool:
        """True if the object exists (loose or packed); False too when it is named in a damaged pack only."""
        if not HEX40.fullmatch(sha):
            return False
        with self._mutex:
            try:
                return sha.encode() in self._objects
            except Exception as e:  # a damaged pack index
                warn_once(f"{self.root}:packs", "%s: a pack index is damaged (%s)", self.root, describe_fault(e))
                try:
                    return self._objects._get_loose_object(sha.encode()) is not None
                except Exception:
                    return False

    def read_blob(self, sha: str) -> bytes:
        """The content of a blob (recent ones from memory: blobs never change)."""
        with self._mutex:
            data = self._blob_cache.get(sha)
            if data is not None:
                self._blob_cache.move_to_end(sha)
                return data
        from dulwich.objects import Blob

        obj = self.read_object(sha)
        if not isinstance(obj, Blob):
            raise ObjectUnreadable(
                f"{self.root}: {sha} is a {obj.type_name.decode()}, not a blob; {REPAIR_ADVICE}", sha=sha
            )
        data = obj.as_raw_string()
        self._remember_blob(sha, data)
        return data

    def _remember_blob(self, sha: str, data: bytes) -> None:
        if len(data) > BLOB_CACHE_BYTES // 4:
            return
        with self._mutex:
            if sha in self._blob_cache:
                return
            self._blob_cache[sha] = data
            self._blob_cache_bytes += len(data) + BLOB_ENTRY_BYTES
            while self._blob_cache_bytes > BLOB_CACHE_BYTES:
                _, old = self._blob_cache.popitem(last=False)
                self._blob_cache_bytes -= len(old) + BLOB_ENTRY_BYTES

    def write_objects(
        self, objs: Iterable[ShaFile], *, fsync: bool = True, deflated: Mapping[str, Deflating] | None = None
    ) -> None:
        """Write objects durably (``fsync``): two or more go into one small pack (two fsyncs: pack, directory),
        which the packer's geometric roll-up absorbs later; a single one, or any number without
        ``fsync``, as loose files (temp file, rename; with ``fsync`` each file and each touched directory once).

        A flush's blob, trees and commit as loose files cost an fsync each plus one per fan-out directory (seven
        for a one-document commit); as a pack they cost two, and the pack is installed ``.pack`` first,
        ``.idx`` last, so no reader ever sees half of it (unless :attr:`pack_writes` is off)."""
        objs = list(objs)
        if len(objs) >= 2 and self.writes_packs(fsync=fsync):
            self._write_pack(objs, deflated or {})
            return
        self._write_loose(objs, fsync=fsync)

    def writes_packs(self, *, fsync: bool) -> bool:
        """Whether :meth:`write_objects` puts a commit's objects (two or more) in a pack: when they are written
        durably and :attr:`pack_writes` is on. Only then does a blob compressed ahead (``deflated``) serve."""
        return fsync and self.pack_writes

    def _write_pack(self, objs: list[ShaFile], deflated: Mapping[str, Deflating]) -> None:
        """Write ``objs`` as one new pack (:func:`gitstate.repo_packs.write_small_pack`); :meth:`repair_pack_indexes`
        makes its index again on open if a power loss took it. The object store is not told: a flush reads nothing
        back, and the next lookup finds the pack directory changed and lists it once (listing it after every
        flush took 0.77 of 9.1 ms of a profiled durable flush at 10,000 files)."""
        from .repo_packs import write_small_pack

        write_small_pack(self.git_dir / "objects" / "pack", objs, deflated)

    def repair_pack_indexes(self) -> list[str]:
        """Make again the index of a pack whose ``.idx`` is missing or damaged (a flush writes small packs'
        indexes without fsync; see :meth:`_write_pack`) from the pack itself, when the pack is whole. Only
        indexes of up to :data:`SMALL_IDX_BYTES` are checked in full (bigger ones were fsynced by whoever wrote
        them). Call on open with the store lock held; returns the packs repaired."""
        from .repo_packs import index_is_sound

        pack_dir = self.git_dir / "objects" / "pack"
        try:
            names = os.listdir(pack_dir)
        except OSError:
            return []
        repaired = []
        for name in names:
            if not (name.startswith("pack-") and name.endswith(".pack")):
                continue
            base = pack_dir / name[: -len(".pack")]
            if index_is_sound(Path(f"{base}.idx"), Path(f"{base}.pack")):
                continue
            if self._reindex(base):
                repaired.append(str(base))
        if repaired and self._object_store is not None:
            with self._mutex, contextlib.suppress(Exception):
                self._object_store._update_pack_cache()
        return repaired

    def _reindex(self, base: Path) -> bool:
        """Write ``base``'s ``.idx`` from its ``.pack`` (fsynced); False when the pack itself is not whole."""
        from .repo_packs import SMALL_IDX_BYTES

        pack = Path(f"{base}.pack")
        try:
            size = pack.stat().st_size
            if size > SMALL_IDX_BYTES * 64:
                return False  # a big pack is not a flush's: left to 'gitstate doctor' and git
            data = pack.read_bytes()
        except OSError:
            return False
        if len(data) < 32 or data[:4] != b"PACK" or sha1(data[:-20]).digest() != data[-20:]:
            logger.warning("%s: pack %s is damaged; run 'gitstate doctor'", self.root, pack.name)
            return False
        from dulwich.object_format import SHA1
        from dulwich.pack import PackData

        tmp = Path(f"{base}{TEMP_MARKER}idx")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            pd = PackData(str(pack), SHA1)
            try:
                pd.create_index_v2(str(tmp))
            finally:
                pd.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, f"{base}.idx")
            fsync_dir(pack.parent)
        except Exception as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            logger.warning("%s: cannot index pack %s again (%s)", self.root, pack.name, describe_fault(e))
            return False
        logger.warning("%s: made the index of pack %s again (it was missing or damaged)", self.root, pack.name)
        return True

    def _write_loose(self, objs: Iterable[ShaFile], *, fsync: bool) -> None:
        """Write objects as loose files: temp file, fsync, rename, then fsync each touched directory once."""
        dirs: set[str] = set()
        objects_dir = self.git_dir / "objects"
        for obj in objs:
            sha = obj.id.decode()
            d = objects_dir / sha[:2]
            target = d / sha[2:]
            if os.path.exists(target):
                continue
            # An object that is only in a pack is written loose again rather than looked up (a lookup miss
            # rescans the pack directory); the packer drops the duplicate.
            try:
                os.mkdir(d, 0o700)
                dirs.add(str(objects_dir))
            except FileExistsError:
                pass
            data = obj.as_legacy_object(compression_level=1)
            tmp = d / f"tmp_obj{'.gitstate-tmp-'}{os.urandom(6).hex()}"
            try:  # read-only for the owner only (git uses 0444; the store keeps everything private)
                replace_with(tmp, target, data, mode=0o400, fsync=fsync)
            except FileNotFoundError:  # `git gc` / `git prune` removed the empty fan-out directory meanwhile
                os.makedirs(d, 0o700, exist_ok=True)
                dirs.add(str(objects_dir))
                replace_with(tmp, target, data, mode=0o400, fsync=fsync)
            dirs.add(str(d))
        if fsync:
            for d2 in sorted(dirs, reverse=True):
                fsync_dir(Path(d2))

    # ----------------------------------------------------------------- trees
    def read_tree(self, sha: str) -> Tree:
        """A tree object (cached; trees never change)."""
        cached = self._tree_cache.get(sha)
        if cached is not None:
            self._tree_cache.move_to_end(sha)
            return cached
        from dulwich.objects import Tree

        if sha == EMPTY_TREE:
            tree = Tree()
        else:
            obj = self.read_object(sha)
            if not isinstance(obj, Tree):
                raise ObjectUnreadable(
                    f"{self.root}: {sha} is a {obj.type_name.decode()}, not a tree; {REPAIR_ADVICE}", sha=sha
                )
            tree = obj
        self._tree_cache[sha] = tree
        if len(self._tree_cache) > 4096:
            self._tree_cache.popitem(last=False)
        return tree

    def is_dir_at(self, tree_sha: str, path: str) -> bool:
        """True if ``path`` is a directory (a subtree) in the tree."""
        tree = self.read_tree(tree_sha)
        for part in path.encode().split(b"/"):
            try:
                mode, sha = tree[part]
            except KeyError:
                return False
            if not stat.S_ISDIR(mode):
                return False
            tree = self.read_tree(sha.decode())
        return True

    def blob_id_at(self, tree_sha: str, path: str) -> str | None:
        """Id of the blob at ``path`` in the tree, or None."""
        tree = self.read_tree(tree_sha)
        parts = path.encode().split(b"/")
        for i, part in enumerate(parts):
            try:
                mode, sha = tree[part]
            except KeyError:
                return None
            if i == len(parts) - 1:
                return sha.decode() if stat.S_ISREG(mode) else None
            if not stat.S_ISDIR(mode):
                return None
            tree = self.read_tree(sha.decode())
        return None

    def read_at(self, tree_sha: str, path: str) -> bytes | None:
        """Content of ``path`` in the tree, or None if absent.

        When the blob itself is damaged, the file in the work tree serves instead if it hashes to the blob's id
        (ids name content, so it is the very same bytes): the latest state stays readable while ``doctor`` reports
        the damage."""
        sha = self.blob_id_at(tree_sha, path)
        if sha is None:
            return None
        try:
            return self.read_blob(sha)
        except ObjectUnreadable:
            data = None
            with contextlib.suppress(OSError):
                data = (self.root / path).read_bytes()
            if data is None or blob_id(data) != sha:
                raise
            logger.warning(
                "%s: blob %s (%s) is damaged; served from the identical file in the store", self.root, sha, path
            )
            self._remember_blob(sha, data)
            return data

    def list_blobs(self, tree_sha: str, prefix: str = "") -> dict[str, str]:
        """Every file in the tree (recursively): path -> blob id, in Git's path order."""
        cached = self._paths_cache.get(tree_sha)
        if cached is None:
            cached = {}
            self._collect(tree_sha, "", cached)
            self._paths_cache[tree_sha] = cached
            if len(self._paths_cache) > 8:
                self._paths_cache.popitem(last=False)
        if prefix:
            return {p: s for p, s in cached.items() if p.startswith(prefix)}
        return cached

    def _collect(self, tree_sha: str, base: str, out: dict[str, str]) -> None:
        for entry in self.read_tree(tree_sha).iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            path = f"{base}{name}"
            if stat.S_ISDIR(entry.mode):
                self._collect(entry.sha.decode(), path + "/", out)
            elif stat.S_ISREG(entry.mode):
                out[path] = entry.sha.decode()

    def changed_paths(self, tree_a: str | None, tree_b: str | None) -> dict[str, tuple[str | None, str | None]]:
        """Files that differ between two trees: path -> (blob id in a, blob id in b). Equal subtrees are
        skipped without being read, so the cost follows the change."""
        out: dict[str, tuple[str | None, str | None]] = {}
        for path, (ea, eb) in self.changed_entries(tree_a, tree_b).items():
            fa = ea[1] if ea is not None and stat.S_ISREG(ea[0]) else None
            fb = eb[1] if eb is not None and stat.S_ISREG(eb[0]) else None
            if fa != fb:
                out[path] = (fa, fb)
        return out

    def changed_entries(
        self, tree_a: str | None, tree_b: str | None, *, bad_names: list[str] | None = None
    ) -> dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]]:
        """Like :meth:`changed_paths` for entries of every mode but directories (symlinks, gitlinks,
        executables too): path -> ((mode, id) in a, (mode, id) in b), None where a side lacks it. Paths are
        spelled as the trees spell them, unchecked; entries whose name is empty or holds a ``/`` (so that the
        path would not say what the tree holds) are appended to ``bad_names`` when it is given."""
        out: dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]] = {}
        self._diff_trees(tree_a or EMPTY_TREE, tree_b or EMPTY_TREE, "", out, bad_names)
        return out

    def _diff_trees(
        self,
        a: str,
        b: str,
        base: str,
        out: dict[str, tuple[tuple[int, str] | None, tuple[int, str] | None]],
        bad_names: list[str] | None,
    ) -> None:
        if a == b:
            return
        ta = {e.path: (e.mode, e.sha.decode()) for e in self.read_tree(a).iteritems()}
        tb = {e.path: (e.mode, e.sha.decode()) for e in self.read_tree(b).iteritems()}
        for name in ta.keys() | tb.keys():
            ea, eb = ta.get(name), tb.get(name)
            if ea == eb:
                continue
            path = base + name.decode("utf-8", "surrogateescape")
            if bad_names is not None and (not name or b"/" in name):
                bad_names.append(path)
            da = ea is not None and stat.S_ISDIR(ea[0])
            db = eb is not None and stat.S_ISDIR(eb[0])
            if da or db:
                self._diff_trees(
                    ea[1] if da and ea else EMPTY_TREE, eb[1] if db and eb else EMPTY_TREE, path + "/", out, bad_names
                )
            fa = None if da else ea
            fb = None if db else eb
            if fa != fb:
                out[path] = (fa, fb)

    def build_tree(
        self,
        base_tree: str | None,
        changes: dict[str, bytes | None],
        new_objects: list[ShaFile],
        *,
        blobs: dict[str, ShaFile] | None = None,
        ids: Mapping[str, str] | None = None,
    ) -> str:
        """A new root tree: ``base_tree`` with each path set to a blob of the given bytes, or removed (None).

        Only trees on the changed paths are rebuilt. New objects are appended to ``new_objects`` (not written);
        ``blobs`` gets each written path's blob. ``ids`` gives blob ids already computed from these very bytes
        (:func:`blob_id`), so a big document is not hashed a second time.
        """
        from dulwich.objects import Blob, ObjectID, Tree

        nested: dict[str, Any] = {}
        for path, data in changes.items():
            node = nested
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise RepositoryError(f"{path}: a parent is also a file in this change")
            known = None if ids is None or data is None else ids.get(path)
            if data is None:
                blob = None
            else:
                blob = Blob()
                blob.set_raw_string(data, None if known is None else ObjectID(known.encode()))
            node[parts[-1]] = blob
            if blobs is not None and blob is not None:
                blobs[path] = blob
        sha = self._build(base_tree or EMPTY_TREE, nested, new_objects)
        if sha is None:  # everything was removed: the commit points at the empty tree, which must exist too
            new_objects.append(Tree())
            return EMPTY_TREE
        return sha

    def _build(self, tree_sha: str, nested: dict[str, Any], new_objects: list[ShaFile]) -> str | None:
        base = self.read_tree(tree_sha)
        entries: dict[bytes, tuple[int, bytes] | None] = {}  # name -> (mode, hex id), None: removed
        for name, change in nested.items():
            bname = name.encode("utf-8", "surrogateescape")
            try:
                mode, sha = base[bname]
            except KeyError:
                mode, sha = 0, None
            if isinstance(change, dict):
                sub = sha.decode() if sha is not None and stat.S_ISDIR(mode) else EMPTY_TREE
                new_sub = self._build(sub, change, new_objects)
                if new_sub is not None:
                    entries[bname] = (TREE_MODE, new_sub.encode())
                elif sha is not None and stat.S_ISDIR(mode):
                    entries[bname] = None
            elif change is None:
                if sha is not None:
                    entries[bname] = None
            else:
                new_objects.append(change)
                entries[bname] = (EXEC_MODE if mode == EXEC_MODE else FILE_MODE, change.id)
        patched = self._tree_patcher.patch(tree_sha, base, entries)
        if patched is None:
            patched = cast("Tree", base.copy())
            for bname, entry in entries.items():
                if entry is None:
                    del patched[bname]
                else:
                    patched[bname] = cast(Any, entry)
        tree = patched
        if not len(tree):
            return None
        new_objects.append(tree)
        tid = tree.id.decode()
        self._tree_cache[tid] = tree
        return tid

    # ----------------------------------------------------------------- commits
    def make_commit(
        self,
        tree: str,
        parents: Iterable[str],
        message: str,
        *,
        author: str,
        committer: str | None = None,
        when: float | None = None,
        tz_offset_s: int | None = None,
    ) -> Commit:
        """A commit object (not yet written)."""
        now = int(time.time() if when is None else when)
        if tz_offset_s is None:
            tz_offset_s = -time.altzone if time.localtime(now).tm_isdst > 0 else -time.timezone
        from dulwich.objects import Commit

        c = Commit()
        c.tree = tree.encode()
        c.parents = [p.encode() for p in parents]  # type: ignore[misc]
        c.author = fmt_person(author)
        c.committer = fmt_person(committer or author)
        c.author_time = c.commit_time = now
        c.author_timezone = c.commit_timezone = tz_offset_s
        c.encoding = None
        c.message = message.encode("utf-8")
        return c

    def _shallow_ids(self) -> frozenset[str]:
        """``.git/shallow`` (re-read when the file changes; the commit cache is dropped then, since the parents
        it shows change). Checked once per hold of the store's lock by the thread that holds it (a flush asks
        for several commits; gitstate's own writers call :meth:`shallow_changed`), on every call otherwise."""
        cached = self._shallow_cache
        held = self._lock_owner is not None and self._lock_owner == threading.get_ident()
        if held and cached is not None and self._shallow_serial == self._lock_serial:
            return cached[1]
        self._shallow_serial = self._lock_serial if held else -1
        try:
            st = os.stat(self.git_dir / "shallow")
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except (FileNotFoundError, NotADirectoryError):
            stamp = None
        if cached is not None and cached[0] == stamp:
            return cached[1]
        ids: frozenset[str] = frozenset()
        if stamp is not None:
            with contextlib.suppress(OSError):
                text = (self.git_dir / "shallow").read_text("ascii")
                ids = frozenset(line for line in text.split() if HEX40.fullmatch(line))
        if cached is not None:
            self._commit_cache.clear()
        self._shallow_cache = (stamp, ids)
        return ids

    def shallow_changed(self) -> None:
        """Say that ``.git/shallow`` was just written by this process: the next commit read checks it again."""
        self._shallow_serial = -1

    def commit_info(self, sha: str) -> CommitInfo:
        """Parsed commit by id (cached). A commit listed in ``.git/shallow`` (history cut there by ``gitstate
        forget``, or a shallow clone) shows no parents, as git's grafts do: every walk stops there."""
        shallow = self._shallow_ids()
        cached = self._commit_cache.get(sha)
        if cached is not None:
            return cached
        from dulwich.objects import Commit

        obj = self.read_object(sha)
        if not isinstance(obj, Commit):
            raise RevisionNotFound(sha, f"it is a {obj.type_name.decode()}, not a commit")
        info = CommitInfo(
            id=sha,
            tree=obj.tree.decode(),
            parents=() if sha in shallow else tuple(p.decode() for p in obj.parents),
            author=obj.author.decode("utf-8", "replace"),
            time=obj.author_time,
            tz_offset_s=obj.author_timezone,
            message=obj.message.decode("utf-8", "replace"),
            commit_time=obj.commit_time,
        )
        self._commit_cache[sha] = info
        if len(self._commit_cache) > COMMIT_CACHE_ENTRIES:
            self._commit_cache.popitem(last=False)
        return info

    def iter_commits(self, start: str | None, *, first_parent: bool = False) -> Iterator[CommitInfo]:
        """Commits reachable from ``start``, newest first by commit time (like ``git log``)."""
        if start is None:
            return
        import heapq

        seen = {start}
        first = self.commit_info(start)
        heap: list[tuple[int, int, CommitInfo]] = [(-first.commit_time, 0, first)]
        counter = 1
        while heap:
            _, _, info = heapq.heappop(heap)
            yield info
            parents = info.parents[:1] if first_parent else info.parents
            for p in parents:
                if p in seen:
                    continue
                seen.add(p)
                pi = self.commit_info(p)
                heapq.heappush(heap, (-pi.commit_time, counter, pi))
                counter += 1
