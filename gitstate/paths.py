"""Document path validation and crash-safe file writes.

A document path is relative to the store root and ``/``-separated. :func:`validate_doc_path` refuses anything
that could escape the store or touch Git's own files, before any I/O. :func:`atomic_write` writes a file so that
a crash leaves either the old or the new content, never a mix: temp file in the same directory, fsync,
``os.replace``, fsync of the directory.

What belongs here: document path rules (:func:`validate_doc_path`, metadata paths under ``.gitstate/``, ``.git`` in
every spelling a file system accepts), temp and scratch file names (:func:`is_temp_name`, :func:`is_scratch_name`),
the crash-safe file writers (:func:`atomic_write`, :func:`replace_with`, :func:`fsync_dir`) and :func:`remove_file`.
What does not: checking whole trees and writing the work tree (:mod:`gitstate.worktree`, which calls these), key
paths inside documents (:mod:`gitstate.keys`), reading work-tree files (:mod:`gitstate.ingest`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import unicodedata
from pathlib import Path
from typing import Final

from .errors import InvalidPath

__all__ = [
    "GIT_FILES",
    "METADATA_DOCS",
    "META_PREFIX",
    "SCHEMA_DOC",
    "TEMP_MARKER",
    "atomic_write",
    "check_no_symlinks",
    "fsync_dir",
    "is_git_file",
    "is_metadata_path",
    "is_scratch_name",
    "is_temp_name",
    "remove_file",
    "replace_with",
    "validate_doc_path",
]

logger = logging.getLogger("gitstate.paths")

#: Marker in the names of gitstate's own temp files; the watcher ignores them and open() removes stale ones.
TEMP_MARKER = ".gitstate-tmp-"

# Characters that HFS+ and some Git hosts ignore when comparing names, so ".g\u200cit" is ".git" there.
_IGNORABLE = {
    chr(c)
    for c in (
        0x200B,
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        0x202A,
        0x202B,
        0x202C,
        0x202D,
        0x202E,
        0x206A,
        0x206B,
        0x206C,
        0x206D,
        0x206E,
        0x206F,
        0xFEFF,
    )
}
_MAX_PATH_BYTES = 1024

#: Documents under this directory hold gitstate's own metadata.
META_PREFIX: Final = ".gitstate/"
#: The schema document (see :mod:`gitstate.migrate`, which owns its meaning).
SCHEMA_DOC: Final = ".gitstate/schema.json"
#: The metadata documents gitstate itself writes (the schema version of :mod:`gitstate.migrate`); nothing else
#: under :data:`META_PREFIX` is ever written to the work tree.
METADATA_DOCS: Final = frozenset({".gitstate/schema.json", ".gitstate/retention.json"})


#: Work-tree files that tell git how to treat the documents (``gitstate setup-git`` writes them): committed with
#: the documents, so that a clone merges and diffs the same way, but not documents themselves.
GIT_FILES: Final = frozenset({".gitattributes"})


def is_git_file(doc: str) -> bool:
    """True for a path that is one of :data:`GIT_FILES` (at the top, or in a subdirectory: git reads
    ``.gitattributes`` at every level), in any spelling a file system may alias to it.

    Example:
        >>> is_git_file(".gitattributes"), is_git_file("conf/.GitAttributes"), is_git_file("attributes.yaml")
        (True, True, False)
    """
    return _fold(doc.rsplit("/", 1)[-1]) in GIT_FILES


def _is_git_name(part: str) -> bool:
    """True if ``part`` names ``.git`` on some file system: any case, trailing dots/spaces (NTFS), the 8.3
    short name ``GIT~1``, NTFS streams (``.git::$INDEX_ALLOCATION``) and HFS+ ignorable code points."""
    return _fold(part) in (".git", "git~1")


def _fold(part: str) -> str:
    """``part`` as file systems that ignore case, trailing dots/spaces, NTFS streams and HFS+ ignorable code
    points see it."""
    p = "".join(ch for ch in unicodedata.normalize("NFC", part) if ch not in _IGNORABLE).casefold()
    return p.split(":", 1)[0].rstrip(". ")


def is_metadata_path(doc: str) -> bool:
    """True if ``doc`` is, or lies under, gitstate's metadata directory ``.gitstate/`` in any spelling a file
    system may alias to it (``.GITSTATE/``, ``.gitstate./``, the 8.3 name ``GITSTA~1``).

    Example:
        >>> is_metadata_path(".gitstate/schema.json"), is_metadata_path(".GitState"), is_metadata_path("a.json")
        (True, True, False)
    """
    return _fold(doc.split("/", 1)[0]) in (".gitstate", "gitsta~1")


def validate_doc_path(doc: object) -> str:
    """Check a document path and return it in normal form. Pure: touches no file.

    Raises:
        InvalidPath: absolute path, ``..`` or ``.`` parts, empty parts, a ``.git`` part in any spelling,
            NUL or control characters, backslashes, gitstate temp names, or a path over 1024 bytes.

    Example:
        >>> validate_doc_path("memory/current_work.yaml")
        'memory/current_work.yaml'
        >>> validate_doc_path("../x.json")
        Traceback (most recent call last):
        ...
        gitstate.errors.InvalidPath: invalid document path '../x.json': '..' is not allowed
    """
    if not isinstance(doc, str):
        raise InvalidPath(doc, f"must be a str, not {type(doc).__name__}")
    if not doc:
        raise InvalidPath(doc, "empty path")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in doc):
        raise InvalidPath(doc, "NUL or control characters are not allowed")
    if "\\" in doc:
        raise InvalidPath(doc, "backslashes are not allowed; use '/'")
    if doc.startswith("/"):
        raise InvalidPath(doc, "absolute paths are not allowed; give a path relative to the store")
    try:
        encoded = doc.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidPath(doc, "not valid UTF-8") from e
    if len(encoded) > _MAX_PATH_BYTES:
        raise InvalidPath(doc, f"longer than {_MAX_PATH_BYTES} bytes")
    parts = doc.split("/")
    for part in parts:
        if part == "":
            raise InvalidPath(doc, "empty path component (double or trailing '/')")
        if part == "..":
            raise InvalidPath(doc, "'..' is not allowed")
        if part == ".":
            raise InvalidPath(doc, "'.' components are not allowed")
        if _is_git_name(part):
            raise InvalidPath(doc, "'.git' is reserved for the repository")
        if TEMP_MARKER in part:
            raise InvalidPath(doc, "names containing '.gitstate-tmp-' are reserved for gitstate's temp files")
    return doc


def is_temp_name(name: str) -> bool:
    """True for the names of gitstate's own temp files."""
    return TEMP_MARKER in name


def check_no_symlinks(root: Path, doc: str) -> None:
    """Refuse a document path that goes through a symlink (or a non-directory) inside the store.

    Raises:
        InvalidPath: a component of ``doc`` is a symlink, or the final file is not a regular file.
    """
    _checked_path(root, doc)


def _checked_path(root: Path, doc: str) -> tuple[bool, os.stat_result | None]:
    """:func:`check_no_symlinks`, returning what it saw: whether every directory of ``doc`` exists, and the
    file's own ``lstat`` (None when it does not exist)."""
    current = os.fspath(root)
    parts = doc.split("/")
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return i == len(parts) - 1, None
        except NotADirectoryError as e:
            raise InvalidPath(doc, f"{'/'.join(parts[:i])!r} is not a directory") from e
        if stat.S_ISLNK(st.st_mode):
            raise InvalidPath(doc, f"{'/'.join(parts[: i + 1])!r} is a symlink; symlinks are not followed")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            raise InvalidPath(doc, f"{'/'.join(parts[: i + 1])!r} is not a directory")
        if last and not stat.S_ISREG(st.st_mode):
            raise InvalidPath(doc, "exists and is not a regular file")
    return True, st


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or a new entry in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems (tmpfs on old kernels) refuse; the data is still written
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _makedirs(root: Path, rel_dir: str, dir_mode: int) -> list[Path]:
    """Create the directories of ``rel_dir`` below ``root``; return the parents whose entries changed."""
    created_in: list[Path] = []
    current = root
    for part in rel_dir.split("/") if rel_dir else []:
        nxt = current / part
        try:
            os.mkdir(nxt, dir_mode)
            created_in.append(current)
        except FileExistsError:
            st = os.lstat(nxt)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidPath(rel_dir, f"{part!r} exists and is not a directory") from None
        current = nxt
    return created_in


def atomic_write(
    root: Path,
    doc: str,
    data: bytes,
    *,
    file_mode: int = 0o600,
    dir_mode: int = 0o700,
    fsync: bool = True,
    dirs: set[Path] | None = None,
) -> os.stat_result:
    """Write ``data`` to ``root/doc`` atomically and durably; return the new file's stat.

    An existing file keeps its permission bits. A crash at any point leaves the old content or the new one.
    ``dirs``: the directories whose entries changed are added there for the caller to fsync once for a batch
    (:func:`fsync_dirs`), instead of here.
    """
    dirs_exist, existing = _checked_path(root, doc)
    rel_dir, _, name = doc.rpartition("/")
    created_in = [] if dirs_exist else _makedirs(root, rel_dir, dir_mode)
    directory = root / rel_dir if rel_dir else root
    target = directory / name
    if existing is not None:
        file_mode = stat.S_IMODE(existing.st_mode)
    tmp = directory / f".{name[:80]}{TEMP_MARKER}{os.urandom(6).hex()}"
    st = replace_with(tmp, target, data, mode=file_mode, fsync=fsync)
    if fsync:
        _sync_dirs_now_or_later({directory, *created_in}, dirs)
    return st


def _sync_dirs_now_or_later(changed: set[Path], batch: set[Path] | None) -> None:
    """fsync the directories whose entries changed now, or add them to the caller's ``batch``."""
    if batch is None:
        fsync_dirs(changed)
    else:
        batch.update(changed)


def fsync_dirs(dirs: set[Path]) -> None:
    """fsync each directory of a batch once (see ``dirs`` of :func:`atomic_write` and :func:`remove_file`).
    One removed by a later step of the batch is skipped: its removal was fsynced in the directory above it."""
    for d in sorted(dirs, key=lambda p: (-len(p.parts), str(p))):
        try:
            fsync_dir(d)
        except FileNotFoundError:
            continue


def replace_with(tmp: Path, target: Path, data: bytes, *, mode: int, fsync: bool = True) -> os.stat_result:
    """Write ``data`` to the new file ``tmp`` (exclusive create, exact ``mode``, fsynced), then rename it over
    ``target``. The temp file is removed if anything fails. Returns the written file's stat. The caller fsyncs
    the directory (once, for a batch of files)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if fsync:
                os.fsync(fd)
            os.fchmod(fd, mode)  # exact, whatever the umask
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st


def remove_file(root: Path, doc: str, *, fsync: bool = True, dirs: set[Path] | None = None) -> bool:
    """Remove ``root/doc`` and the directories it leaves empty; True if a file was removed. ``dirs``: as for
    :func:`atomic_write`."""
    check_no_symlinks(root, doc)
    target = root / doc
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    directory = target.parent
    while directory != root:
        try:
            os.rmdir(directory)
        except OSError:
            break
        directory = directory.parent
    if fsync:
        _sync_dirs_now_or_later({directory}, dirs)
    return True


# Names editors and tools create next to the files they save; never state, never committed.
_SCRATCH_SUFFIXES = (
    ".swp",
    ".swx",
    ".swo",
    ".swn",
    "~",
    ".tmp",
    ".temp",
    ".part",
    ".crswap",
    ".kate-swp",
    ".orig.tmp",
    "___jb_tmp___",
    "___jb_old___",
    ".bak~",
)
_SCRATCH_PREFIXES = (".#", ".goutputstream-", ".nfs", ".~lock.")
_SCRATCH_NAMES = frozenset({"4913", ".DS_Store", "Thumbs.db", "desktop.ini"})


def is_scratch_name(name: str) -> bool:
    """True for editor swap/backup/temp files and gitstate's own temp files (by base name).

    Covers vim (``.x.swp``, ``x~``, the ``4913`` probe), emacs (``#x#``, ``.#x``), JetBrains safe-write files,
    GNOME's ``.goutputstream-*``, ``sed -i``'s ``sedXXXXXX``, NFS silly-renames, ``*.tmp`` and the like.

    Example:
        >>> is_scratch_name(".state.json.swp"), is_scratch_name("state.json")
        (True, False)
    """
    if TEMP_MARKER in name or name in _SCRATCH_NAMES:
        return True
    if name.endswith(_SCRATCH_SUFFIXES) or name.startswith(_SCRATCH_PREFIXES):
        return True
    if len(name) > 1 and name.startswith("#") and name.endswith("#"):
        return True
    # sed -i writes "sed" + 6 random alphanumerics in the same directory, then renames it over the file.
    return len(name) == 9 and name.startswith("sed") and name[3:].isalnum()
