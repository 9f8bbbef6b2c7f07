"""Health checks for a store (``gitstate doctor``): each finding says what is wrong and what to do about it.

:func:`check` looks at a store directory without opening the store and without changing anything, so it also
works when the store cannot be opened (a missing or read-only directory, a damaged repository). It reports:

* ``directory``  the directory exists, is a gitstate store, and is writable (mode bits and read-only mounts
  too, since ``root`` writes through both);
* ``disk``       free space and free inodes on its file system;
* ``repository`` integrity: ``HEAD`` and the branch, pack and index checksums, every loose object's content
  against its id, and every object reachable from a ref present; plus the size and what packing would gain;
* ``locks``      lock files no live process holds, gitstate's own temp files left by a crash, who holds the
  store lock right now;
* ``quarantine`` hand edits that did not parse and wait for a human (``.git/gitstate/quarantine/``);
* ``history``    the last commit (when, by whom) and the snapshots;
* ``remote``     each configured remote answers, within a time bound.

The only lock taken is a non-blocking probe of the store lock, released at once.

What belongs here: :func:`check` and one check per area, :class:`Finding`, :func:`has_errors`, and the wording of
each problem and of what to do about it. What does not: reading and verifying objects (:mod:`gitstate.gc.verify`,
through :mod:`gitstate.gc`), diagnosing the branch ref (:func:`gitstate.recovery.diagnose`), reaching a remote
(:func:`gitstate.remote.check_remote`), repairing anything (the store on open, :mod:`gitstate.ingest`; packing,
``gc``), the command (:mod:`gitstate.cli.maintenance`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import re
import stat
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from . import gc as _gc
from . import messages
from .paths import TEMP_MARKER

__all__ = ["Finding", "check", "has_errors"]

logger = logging.getLogger("gitstate.doctor")

Level = Literal["ok", "warning", "error"]

#: Below this much free space, writes are about to fail.
MIN_FREE_BYTES: Final = 64 * 1024 * 1024
#: Below this much free space (or 5 % of the file system), warn.
LOW_FREE_BYTES: Final = 512 * 1024 * 1024
_LOOSE_WARN_OBJECTS: Final = 5000
_LOOSE_WARN_BYTES: Final = 64 * 1024 * 1024
_MAX_LOOSE_VERIFY: Final = 5000
_STALE_TEMP_S: Final = 3600.0
_REMOTE_RE = re.compile(r'^\s*\[\s*remote\s+"((?:[^"\\]|\\.)*)"\s*\]', re.M)


@dataclass(frozen=True)
class Finding:
    """One result of a health check.

    Attributes:
        level: ``"ok"``, ``"warning"`` (works, but needs attention) or ``"error"`` (something is broken or about
            to break).
        check: the area: ``directory``, ``disk``, ``repository``, ``locks``, ``quarantine``, ``history``,
            ``remote``.
        message: what was found.
        fix: what to do about it (None when nothing is needed).

    Example:
        >>> Finding("warning", "locks", "stale lock file .git/index.lock", "delete it").to_dict()["level"]
        'warning'
    """

    level: Level
    check: str
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict."""
        return asdict(self)


def has_errors(findings: list[Finding]) -> bool:
    """True if any finding is an error.

    Example:
        >>> has_errors([Finding("ok", "disk", "fine")])
        False
    """
    return any(f.level == "error" for f in findings)


def check(
    path: str | os.PathLike[str],
    *,
    remote_timeout_s: float = 5.0,
    check_remotes: bool = True,
    min_free_bytes: int = MIN_FREE_BYTES,
    low_free_bytes: int = LOW_FREE_BYTES,
) -> list[Finding]:
    """Check the health of the store at ``path``; never raises for a problem it finds, never modifies anything.

    Args:
        path: the store directory.
        remote_timeout_s: how long each remote may take to answer.
        check_remotes: contact the configured remotes.
        min_free_bytes: less free space than this is an error.
        low_free_bytes: less free space than this is a warning.

    Returns:
        Findings in the order of the checks; :func:`has_errors` tells whether any is an error.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as s:
        ...     s.set("state.json", "x", 1)
        ...     has_errors(check(s.path, check_remotes=False))
        False
    """
    root = Path(path).expanduser().absolute()
    out: list[Finding] = []
    if not _check_directory(root, out):
        return out
    _check_disk(root, out, min_free_bytes=min_free_bytes, low_free_bytes=low_free_bytes)
    git_dir = root / ".git"
    _check_git_operation(git_dir, out)
    head = _check_repository(root, git_dir, out)
    _check_locks(root, git_dir, out)
    waiting = _check_quarantine(git_dir, out)
    _check_worktree(root, out, waiting=waiting)
    _check_history(git_dir, head, out)
    _check_retention(root, out)
    if check_remotes:
        _check_remotes(root, git_dir, out, timeout_s=remote_timeout_s)
    return out


# ===================================================================== directory and disk
def _check_directory(root: Path, out: list[Finding]) -> bool:
    if not root.exists():
        out.append(
            Finding("error", "directory", f"{root} does not exist", f"create a store there: gitstate -C {root} init")
        )
        return False
    if not root.is_dir():
        out.append(
            Finding(
                "error",
                "directory",
                f"{root} is not a directory",
                "point gitstate at the store directory (-C DIR or $GITSTATE_DIR)",
            )
        )
        return False
    git_dir = root / ".git"
    if git_dir.is_file():
        out.append(
            Finding(
                "error",
                "directory",
                f"{root}/.git is a file (a linked worktree or submodule)",
                "gitstate needs its own repository: use another directory",
            )
        )
        return False
    if not git_dir.is_dir():
        out.append(
            Finding(
                "error",
                "directory",
                f"{root} is not a gitstate store (no .git directory)",
                f"make it one: gitstate -C {root} init",
            )
        )
        return False
    if not os.access(git_dir, os.R_OK | os.X_OK):
        out.append(
            Finding(
                "error",
                "directory",
                f"{git_dir} cannot be read (permission denied)",
                f"run as the store's owner, or fix the permissions: chmod -R u+rwX {root}",
            )
        )
        return False
    problems = []
    places = [root, git_dir, git_dir / "objects", git_dir / "refs", git_dir / "refs" / "heads", git_dir / "gitstate"]
    for p in places:
        why = _not_writable(p)
        if why:
            problems.append(f"{p} {why}")
    readonly_fs = False
    with contextlib.suppress(OSError):
        readonly_fs = bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    if readonly_fs:
        out.append(
            Finding(
                "error",
                "directory",
                f"{root} is on a read-only file system: nothing can be saved",
                "remount the file system read-write, or move the store",
            )
        )
    elif problems:
        out.append(
            Finding(
                "error",
                "directory",
                "the store is not writable: " + "; ".join(problems[:3]),
                f"give the store's owner write access: chmod -R u+w {root} (and check the owner: "
                f"chown -R $(id -un) {root})",
            )
        )
    else:
        out.append(Finding("ok", "directory", f"{root} is a gitstate store and writable"))
    return True


def _not_writable(p: Path) -> str | None:
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None if p.name == "gitstate" else "is missing"
    except OSError as e:
        return f"cannot be inspected ({e.strerror})"
    if not os.access(p, os.W_OK | os.X_OK):
        return "is not writable (permission denied)"
    # root passes os.access whatever the mode says; a read-only mode is still a mistake worth reporting.
    if not st.st_mode & stat.S_IWUSR:
        return f"is read-only (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _check_disk(root: Path, out: list[Finding], *, min_free_bytes: int, low_free_bytes: int) -> None:
    try:
        vfs = os.statvfs(root)
    except OSError as e:
        out.append(Finding("warning", "disk", f"cannot tell the free space ({e.strerror})"))
        return
    free = vfs.f_bavail * vfs.f_frsize
    total = vfs.f_blocks * vfs.f_frsize
    pct = 100.0 * free / total if total else 100.0
    msg = f"{_human_bytes(free)} free of {_human_bytes(total)} ({pct:.0f} %)"
    fix = f"free space on the file system holding {root}; 'gitstate gc' packs the store's history into less space"
    inodes_low = vfs.f_files > 0 and vfs.f_favail < 1000
    if free < min_free_bytes or inodes_low:
        what = f"only {_human_bytes(free)} free" if free < min_free_bytes else f"only {vfs.f_favail} free inodes"
        out.append(Finding("error", "disk", f"{what}: the next writes will fail ({msg})", fix))
    elif free < low_free_bytes or pct < 5 or (vfs.f_files > 0 and vfs.f_favail < 10_000):
        out.append(Finding("warning", "disk", f"disk space is low: {msg}", fix))
    else:
        out.append(Finding("ok", "disk", msg))


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ===================================================================== repository
def _read_head(git_dir: Path) -> tuple[str | None, str | None]:
    """(branch ref, problem)."""
    try:
        text = (git_dir / "HEAD").read_text().strip()
    except OSError as e:
        return None, f".git/HEAD cannot be read ({e.strerror})"
    if text.startswith("ref: refs/heads/"):
        return text[5:], None
    for state in ("rebase-merge", "rebase-apply"):  # mid-rebase: the branch being rebased (see _check_git_operation)
        with contextlib.suppress(OSError):
            name = (git_dir / state / "head-name").read_text().strip()
            if name.startswith("refs/heads/"):
                return name, None
    return None, f"HEAD is detached at {text[:12]}"


def _check_git_operation(git_dir: Path, out: list[Finding]) -> None:
    from .repo import git_operation_advice, git_operation_in_progress

    op = git_operation_in_progress(git_dir)
    if op is None or op == "detached HEAD":  # a detached HEAD alone is the repository check's error
        return
    out.append(
        Finding(
            "warning",
            "git",
            f"a git {op} is in progress in the store: gitstate holds its writes (flushes touch neither the files "
            "nor the index) until it is finished",
            git_operation_advice(op),
        )
    )


def _check_repository(root: Path, git_dir: Path, out: list[Finding]) -> bytes | None:
    """Integrity checks; returns the branch head's id when it is readable."""
    errors: list[str] = []
    restore = (
        f"the repository is damaged: restore it from a remote (gitstate clone URL DIR) or a backup; "
        f"'git -C {root} fsck --full' shows the details"
    )
    branch_ref, problem = _read_head(git_dir)
    if problem:
        if "detached" in problem:
            out.append(
                Finding(
                    "error", "repository", problem, f"check out the store's branch again: git -C {root} switch main"
                )
            )
        else:
            out.append(Finding("error", "repository", problem, restore))
        return None
    _check_refs(root, git_dir, out)
    _check_config(git_dir, out)
    roots = _gc.ref_roots(git_dir)
    assert branch_ref is not None
    head = roots.get(branch_ref) or roots.get(f"packed:{branch_ref}")
    try:
        found = _gc.check_objects(git_dir, head=head, max_loose_verify=_MAX_LOOSE_VERIFY, stale_s=_STALE_TEMP_S)
    except OSError as e:
        out.append(Finding("error", "repository", f"the object store cannot be read ({e.strerror})", restore))
        return None
    errors += found.bad_packs
    _orphan_pack_files(git_dir / "objects" / "pack", errors)
    _integrity_findings(found, errors, restore, out)
    _size_finding(root, found, out)
    return head


def _integrity_findings(found: _gc.ObjectCheck, errors: list[str], restore: str, out: list[Finding]) -> None:
    if found.corrupt_reachable:
        errors.append(
            f"{len(found.corrupt_reachable)} corrupt object(s) that history needs, e.g. {found.corrupt_reachable[0]}"
        )
    elif found.corrupt_unreachable:
        out.append(
            Finding(
                "warning",
                "repository",
                f"{len(found.corrupt_unreachable)} corrupt loose object(s) that nothing refers to (left by a "
                f"crash), e.g. {found.corrupt_unreachable[0]}",
                "delete them, or run 'gitstate gc' (it prunes them after an hour)",
            )
        )
    if found.missing:
        errors.append(f"{len(found.missing)} object(s) missing from history: " + "; ".join(found.missing[:3]))
    if errors:
        out.append(Finding("error", "repository", "; ".join(errors), restore))
    else:
        out.append(
            Finding(
                "ok",
                "repository",
                f"intact: {found.commits:,} commit(s), {found.reachable:,} object(s) reachable, all "
                "present; pack and object checksums verified",
            )
        )
    if found.index_problem:
        out.append(
            Finding(
                "warning",
                "repository",
                f"the Git index: {found.index_problem}",
                "opening the store rebuilds it (gitstate status); git status may be wrong until then",
            )
        )


def _size_finding(root: Path, found: _gc.ObjectCheck, out: list[Finding]) -> None:
    counts = _gc.count_objects(root)
    size_msg = (
        f"{_human_bytes(counts['git_bytes'])} in .git: {counts['packs']} pack(s) "
        f"({_human_bytes(counts['pack_bytes'])}), {counts['loose_objects']} loose object(s) "
        f"({_human_bytes(counts['loose_bytes'])})"
    )
    if counts["loose_objects"] > _LOOSE_WARN_OBJECTS or counts["loose_bytes"] > _LOOSE_WARN_BYTES:
        out.append(
            Finding(
                "warning",
                "repository",
                f"history is not packed: {size_msg}",
                "run 'gitstate gc' (a program that keeps the store open packs in the background)",
            )
        )
    elif found.old_unreachable:
        out.append(
            Finding(
                "warning",
                "repository",
                f"{size_msg}; {found.old_unreachable} unreachable loose object(s) older than an hour "
                "(debris of interrupted writes)",
                "run 'gitstate gc' to prune them",
            )
        )
    else:
        out.append(Finding("ok", "repository", size_msg))


_PACKED_LINE = re.compile(rb"^(?:#.*|\^[0-9a-f]{40}|[0-9a-f]{40} refs/\S+)?$")
_CONFIG_SECTION = re.compile(r'^\[\s*[A-Za-z0-9.-]+(\s+"(?:[^"\\\n]|\\.)*")?\s*\]\s*([#;].*)?$')
_CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*\s*(=.*)?$")


def _check_refs(root: Path, git_dir: Path, out: list[Finding]) -> None:
    """The branch ref (empty, garbage, missing, gone back: see gitstate.recovery) and packed-refs' lines."""
    from .errors import GitStateError
    from .recovery import diagnose
    from .repo import Repository

    try:
        with open(git_dir / "packed-refs", "rb") as f:
            bad = [n for n, line in enumerate(f, 1) if not _PACKED_LINE.match(line.rstrip(b"\r\n"))]
    except FileNotFoundError:
        bad = []
    except OSError as e:
        bad = []
        out.append(Finding("error", "repository", f".git/packed-refs cannot be read ({e.strerror})"))
    if bad:
        out.append(
            Finding(
                "error",
                "repository",
                f".git/packed-refs is damaged: line(s) {', '.join(map(str, bad[:5]))} name no ref; git and "
                "gitstate skip them, so the refs they held (a branch, snapshots) are not seen",
                f"restore .git/packed-refs from a backup or a clone, or delete the damaged lines; 'git -C {root} "
                "fsck --lost-found' finds the commits they pointed at",
            )
        )
    try:
        repo = Repository(root)
    except (GitStateError, OSError) as e:
        logger.debug("cannot open the repository for the ref checks: %s", e)
        return
    try:
        fault = diagnose(repo)
    except (GitStateError, OSError) as e:
        logger.debug("ref diagnosis failed: %s", e)
        return
    finally:
        repo.close()
    if fault is not None:
        if fault.good is not None:
            fix = (
                f"open the store once (gitstate -C {root} status) to repair it: the branch is set back to "
                f"{fault.good}; or by hand: git -C {root} update-ref {fault.ref} {fault.good}"
            )
        else:
            fix = fault.fix or "restore the store from a remote (gitstate clone URL DIR) or a backup"
        out.append(Finding("error", "repository", f"the branch ref is damaged: {fault.describe()}", fix))


def _check_config(git_dir: Path, out: list[Finding]) -> None:
    """``.git/config`` must parse as git's syntax: real git refuses every command in a repository whose config
    does not (``fatal: bad config line``), so a plain ``git status`` or ``git log`` in the store would fail."""
    try:
        data = (git_dir / "config").read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        out.append(Finding("error", "repository", f".git/config cannot be read ({e.strerror})"))
        return
    line_no = _bad_config_line(data)
    if line_no is not None:
        out.append(
            Finding(
                "error",
                "repository",
                f".git/config is damaged (line {line_no} is not git config syntax): real git refuses to work in "
                "the store",
                f"repair the line by hand (or restore the file from a backup); 'git -C {git_dir.parent} config -l' "
                "shows where git stops",
            )
        )


def _bad_config_line(data: bytes) -> int | None:
    """The first line of a git config file that git would not parse, or None (a strict subset of git's rules:
    sections, ``key = value`` lines, comments, quoted values and continuations)."""
    if b"\x00" in data:
        return data[: data.index(b"\x00")].count(b"\n") + 1
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data[: e.start].count(b"\n") + 1
    in_section = False
    continued = False
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if continued:
            continued = line.endswith("\\") and not line.endswith("\\\\")
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not _CONFIG_SECTION.match(line):
                return n
            in_section = True
            continue
        if not in_section or not _CONFIG_KEY.match(line):
            return n
        continued = line.endswith("\\") and not line.endswith("\\\\")
    return None


def _orphan_pack_files(pack_dir: Path, errors: list[str]) -> None:
    try:
        names = set(os.listdir(pack_dir))
    except OSError:
        return
    for n in sorted(names):
        if TEMP_MARKER in n or n.startswith("tmp_"):
            continue
        if n.endswith(".idx") and n[:-4] + ".pack" not in names:
            errors.append(f"pack index {n} has no pack")


# ===================================================================== locks
def _check_locks(root: Path, git_dir: Path, out: list[Finding]) -> None:
    from .errors import GitStateError
    from .repo import Repository

    found = False
    repo: Repository | None = None
    try:
        repo = Repository(root)  # the constructor only reads; Repository.open() would create directories
    except (GitStateError, OSError) as e:
        logger.debug("cannot open the repository for the lock checks: %s", e)
    try:
        stale: list[Path] = []
        if repo is not None:
            try:
                stale = repo.stale_lock_files()
            except OSError as e:
                logger.debug("stale lock scan failed: %s", e)
        else:
            stale = [
                p for p in (git_dir / "index.lock", git_dir / "HEAD.lock", git_dir / "packed-refs.lock") if p.exists()
            ]
        for p in stale:
            found = True
            rel = p.relative_to(root) if p.is_relative_to(root) else p
            out.append(
                Finding(
                    "warning",
                    "locks",
                    f"stale lock file {rel}: no process holds it (left by a process "
                    "that died); real git commands fail while it exists",
                    f"opening the store removes it, or delete it: rm {p}",
                )
            )
        if repo is not None:
            with contextlib.suppress(OSError):
                pid = repo.lock_holder_pid()
                if pid:
                    who = f"process {pid}" if pid > 0 else "another process"
                    out.append(
                        Finding(
                            "ok",
                            "locks",
                            f"the store lock is held by {who} right now (a writer at "
                            "work); it is released when that process finishes or dies",
                        )
                    )
    finally:
        if repo is not None:
            repo.close()
    now = time.time()
    temps = _gc.stale_temp_files(git_dir, older_than_s=_STALE_TEMP_S)
    with contextlib.suppress(OSError):
        for entry in os.scandir(git_dir):
            if TEMP_MARKER in entry.name:
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_S:
                        temps.append(entry.path)
    if temps:
        found = True
        out.append(
            Finding(
                "warning",
                "locks",
                f"{len(temps)} temp file(s) left by interrupted writes, e.g. {temps[0]}",
                "run 'gitstate gc' (or open the store) to remove them",
            )
        )
    if not found:
        out.append(Finding("ok", "locks", "no stale lock or temp files"))


# ===================================================================== quarantine
def _check_quarantine(git_dir: Path, out: list[Finding]) -> set[str]:
    """Report the documents waiting in quarantine, and return their names."""
    from .quarantine import Quarantine

    waiting = Quarantine(git_dir / "gitstate").list()
    for q in waiting:
        since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(q.since))
        out.append(
            Finding(
                "warning",
                "quarantine",
                f"{q.where}: {q.error} (saved by hand, waiting in quarantine since {since}); the file is left "
                "as saved, programs' writes are committed beside it and the last good version is served",
                f"fix {q.doc} by hand (the next save that parses is merged and clears it); 'gitstate quarantine show "
                f"{q.doc}' prints it, 'gitstate quarantine drop {q.doc}' puts the last good version back",
            )
        )
    if not waiting:
        out.append(Finding("ok", "quarantine", "no edits waiting for a human"))
    return {q.doc for q in waiting}


# ===================================================================== retention
def _check_retention(root: Path, out: list[Finding]) -> None:
    """The stored retention policy and the history's size against its budget (:mod:`gitstate.retention`)."""
    from . import retention
    from .repo import Repository

    try:
        policy = retention.load_policy(root)
    except retention.RetentionError as e:
        out.append(Finding("warning", "retention", str(e), f"fix or remove {retention.POLICY_FILE}"))
        return
    if policy is None:
        return
    try:
        repo = Repository(root)
    except Exception:  # reported by the repository check
        return
    try:
        report = retention.budget_report(repo, policy)
    finally:
        repo.close()
    if report.warning:
        out.append(
            Finding(
                "warning",
                "retention",
                report.warning,
                "thin history ('gitstate forget --prune'), tighten the rules, or raise budget_mb in "
                f"{retention.POLICY_FILE}",
            )
        )
    else:
        out.append(Finding("ok", "retention", f"{report.line()}; policy: {policy.describe()}"))


# ===================================================================== work tree
def _check_worktree(root: Path, out: list[Finding], *, waiting: set[str]) -> None:
    """Files edited but not committed that the next open cannot commit: over the size limit, or unreadable
    (they will be quarantined). Reads only changed files, and none over the limit; the documents already
    ``waiting`` in quarantine are reported by the quarantine check alone."""
    from .codecs import codec_for
    from .errors import DecodeError, EncodeError, GitStateError
    from .limits import default_max_doc_bytes, too_big
    from .repo import EMPTY_TREE, Repository

    limit = default_max_doc_bytes()
    oversized: dict[str, int] = {}
    try:
        repo = Repository(root)
        try:
            head = repo.head()
            tree = repo.commit_info(head).tree if head else EMPTY_TREE
            edits = repo.worktree_changes(tree, ignored=repo.ignore_matcher(), max_bytes=limit, oversized=oversized)
        finally:
            repo.close()
    except (GitStateError, OSError) as e:
        logger.debug("cannot scan the work tree: %s", e)
        return
    for doc, size in sorted(oversized.items()):
        out.append(Finding("warning", "worktree", f"{too_big(doc, size, limit)}; it is never read or committed"))
    for doc, data in sorted(edits.items()):
        if data is None or doc in waiting:
            continue
        codec = codec_for(doc)
        try:
            value = codec.decode(data, doc)
            if codec.structured:
                codec.normalize(value, doc)
        except (DecodeError, EncodeError) as e:
            out.append(
                Finding(
                    "warning",
                    "worktree",
                    f"{doc} was edited and cannot be read ({e}); the next open quarantines it",
                    f"fix {doc} by hand, or restore it with 'git checkout -- {doc}'",
                )
            )


# ===================================================================== history
def _check_history(git_dir: Path, head: bytes | None, out: list[Finding]) -> None:
    if head is None:
        out.append(
            Finding(
                "warning",
                "history",
                "no commits yet: nothing has been saved",
                "write something (gitstate set DOC KEY VALUE) or check that the program uses this store",
            )
        )
    else:
        try:
            _, data = _gc.read_object(git_dir, head)
            when, actor = _commit_when_actor(data)
            stamp = _dt.datetime.fromtimestamp(when, tz=_dt.UTC)
            out.append(
                Finding(
                    "ok",
                    "history",
                    f"last commit {head.hex()[:8]} {_ago(when)} ({stamp.isoformat(timespec='seconds')}) by {actor}",
                )
            )
        except ValueError as e:
            out.append(
                Finding(
                    "error",
                    "history",
                    f"the last commit cannot be read: {e}",
                    "restore the store from a remote (gitstate clone URL DIR) or a backup",
                )
            )
    # Peeled lines of packed-refs ("^<id>" after an annotated tag, written by a plain `git gc`) are roots too,
    # named "<ref>^{}#<line>": they are the same snapshot, not another one.
    tags = sorted(
        r for r in _gc.ref_roots(git_dir) if r.startswith(("refs/tags/", "packed:refs/tags/")) and "^{}" not in r
    )
    names = sorted({t.split("refs/tags/", 1)[1] for t in tags})
    if names:
        out.append(
            Finding(
                "ok",
                "history",
                f"{len(names)} snapshot(s): {', '.join(names[-3:])}" + (" ..." if len(names) > 3 else ""),
            )
        )
    else:
        out.append(
            Finding("ok", "history", "no snapshots yet", "take one before risky changes: gitstate snapshot NAME")
        )


def _commit_when_actor(data: bytes) -> tuple[int, str]:
    when = 0
    end = data.find(b"\n\n")
    for line in data[: end if end >= 0 else len(data)].split(b"\n"):
        if line.startswith(b"committer "):
            parts = line.rsplit(b" ", 2)
            when = int(parts[-2])
    message = data[end + 2 :].decode("utf-8", "replace") if end >= 0 else ""
    return when, messages.actor(message)


def _ago(when: float) -> str:
    seconds = int(time.time() - when)
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


# ===================================================================== remotes
def _remote_names(git_dir: Path) -> list[str]:
    try:
        text = (git_dir / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(m.group(1) for m in _REMOTE_RE.finditer(text)))


def _check_remotes(root: Path, git_dir: Path, out: list[Finding], *, timeout_s: float) -> None:
    from .errors import GitStateError
    from .repo import Repository

    names = _remote_names(git_dir)
    if not names:
        out.append(
            Finding(
                "ok",
                "remote",
                "no remote: the history lives on this machine only",
                "for an off-machine backup: gitstate remote add origin URL",
            )
        )
        return
    try:
        repo = Repository(root)
    except (GitStateError, OSError) as e:
        out.append(Finding("warning", "remote", f"remotes not checked: the repository cannot be opened ({e})"))
        return
    try:
        results: dict[str, Finding] = {}
        threads = []
        for name in names:
            t = threading.Thread(
                target=lambda n=name: results.__setitem__(n, _check_one_remote(repo, n, timeout_s)),
                name=f"gitstate-doctor-remote[{name}]",
                daemon=True,
            )
            t.start()
            threads.append((name, t))
        deadline = time.monotonic() + timeout_s + 2.0
        for name, t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            out.append(
                results.get(name)
                or Finding(
                    "error",
                    "remote",
                    f"{name}: no answer within {timeout_s:.0f}s",
                    f"check the network and the URL (gitstate remote add {name} URL changes it)",
                )
            )
    finally:
        repo.close()


def _check_one_remote(repo: Any, name: str, timeout_s: float) -> Finding:
    """Ask ``remote.check_remote``, which reaches the remote the way a push does (credentials included) and
    shows its URL only through ``remote.redact_url``."""
    from . import remote as _remote
    from .errors import GitStateError

    shown = _remote.redact_url(repo.config_get("remote", "url", subsection=name) or "")
    fix = f"check the network and the URL ({shown}); 'gitstate remote add {name} URL' changes it"
    try:
        detail = _remote.check_remote(repo, name, timeout_s=timeout_s)
    except GitStateError as e:
        return Finding("error", "remote", f"{name} is not reachable: {e}", fix)
    except Exception as e:  # a bug there must not hide the other findings
        logger.debug("check_remote failed", exc_info=True)
        return Finding("error", "remote", f"{name} ({shown}) could not be checked: {type(e).__name__}", fix)
    return Finding("ok", "remote", f"{name} ({shown}) is reachable: {detail}")
