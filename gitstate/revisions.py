"""Revisions: what ``HEAD~3``, ``before-upgrade``, ``"2h ago"``, an id prefix or a range ``A..B`` names.

What belongs here: parsing revisions and times, resolving them to commit ids (through the history index), and
the rule that snapshot names cannot be read as revisions. What does not: reading what a commit holds
(:mod:`gitstate.history`), the index itself (:mod:`gitstate.history_index`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import time
from typing import TYPE_CHECKING, Final

from .errors import GitStateError, RevisionNotFound
from .repo import Repository

if TYPE_CHECKING:  # imported where used: `gitstate log` never diffs
    pass

from .history_index import History

__all__ = ["BeforeHistory", "check_snapshot_name", "parse_time", "resolve", "split_range"]

logger = logging.getLogger("gitstate.history")


_MIN_PREFIX: Final = 4


# ===================================================================== revisions
class BeforeHistory(RevisionNotFound):
    """A revision naming the moment before the branch's first commit: a time before it, or ``HEAD~N`` where N
    is the number of commits (one step past the first; further is an error).

    :func:`resolve` raises it (there is no such commit); :func:`diff`, :func:`text_diff` and :func:`log` ranges
    take it as the empty state, so ``diff("yesterday", "now")`` works on a store made today.
    """


def split_range(rev: str) -> tuple[str, str] | None:
    """``(A, B)`` for a range ``A..B`` (either side may be left out: it means ``HEAD``), None for one revision.

    Raises:
        RevisionNotFound: ``A...B`` (a symmetric difference, which gitstate does not take).

    Example:
        >>> split_range("before-upgrade..HEAD"), split_range("HEAD~3.."), split_range("HEAD")
        (('before-upgrade', 'HEAD'), ('HEAD~3', 'HEAD'), None)
    """
    if ".." not in rev:
        return None
    if "..." in rev:
        raise RevisionNotFound(rev, "A...B is not supported: use A..B (what changed from A to B)")
    a, _, b = rev.partition("..")
    return a.strip() or "HEAD", b.strip() or "HEAD"


#: Revision patterns, compiled by ``re`` on first use (and cached there): compiling them at import cost every
#: command's start about a millisecond, and a plain ``gitstate log`` resolves no revision. Flags are inline.
_REV_SUFFIX: Final = r"(?s)^(.*?)((?:[~^]\d*)*)$"


_HEX: Final = r"^[0-9a-fA-F]+$"


_FULL_ID: Final = r"^[0-9a-f]{40}$"


def _ref_name_ok(name: str) -> bool:
    return not (
        re.search(_BAD_REF_CHARS, name)
        or ".." in name
        or "//" in name
        or name.startswith(("/", "."))
        or name.endswith(("/", ".", ".lock"))
        or "/." in name
    )


_UNITS: Final = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "wk": 604800,
    "week": 604800,
    "weeks": 604800,
    "mo": 2592000,
    "month": 2592000,
    "months": 2592000,
    "y": 31536000,
    "yr": 31536000,
    "year": 31536000,
    "years": 31536000,
}


_AGO: Final = r"(?i)^((?:\s*(?:\d+(?:\.\d+)?|an?)\s*[a-z]+\s*,?\s*(?:and\s+)?)+)ago$"


_AGO_PART: Final = r"(?i)(\d+(?:\.\d+)?|an?)\s*([a-z]+)"


def parse_time(text: str, *, now: float | None = None) -> float | None:
    """Seconds since the epoch for a time expression, or None if ``text`` is not one.

    Accepts ``now``, ``yesterday``, ``N <unit>[s] ago`` (``2h ago``, ``90 minutes ago``, ``1 day 2 hours ago``,
    ``an hour ago``; units s/m/h/d/w/mo/y spelled short or long) and ISO 8601 timestamps (``2024-05-01``,
    ``2024-05-01T10:00``, ``2024-05-01 10:00:00+02:00``, ``...Z``); a timestamp without a zone is local time and
    a bare date means its midnight.

    Example:
        >>> parse_time("2h ago", now=10_000.0), parse_time("yesterday", now=100_000.0), parse_time("HEAD")
        (2800.0, 13600.0, None)
    """
    s = text.strip()
    current = time.time() if now is None else now
    low = s.lower()
    if low == "now":
        return current
    if low == "yesterday":
        return current - 86400
    m = re.match(_AGO, s)
    if m:
        total = 0.0
        for num, unit in re.findall(_AGO_PART, m.group(1)):
            size = _UNITS.get(unit.lower())
            if size is None:
                return None
            total += (1.0 if num.lower() in ("a", "an") else float(num)) * size
        return current - total
    if re.match(r"^\d{4}-\d{2}-\d{2}", s):
        try:
            when = _dt.datetime.fromisoformat(s)
        except ValueError:
            return None
        return when.timestamp()  # naive datetimes are taken as local time
    return None


def _peel_base(repo: Repository, hist: History, base: str, rev: str) -> str:
    """The commit a revision's base (before any ``~N``/``^N``) names; tried in the order :func:`resolve` documents."""
    head = repo.head()
    if base in ("HEAD", "@"):
        if head is None:
            raise RevisionNotFound(rev, "the store has no commits yet")
        return head
    if not base:
        raise RevisionNotFound(rev, "empty revision")
    by_name = _by_ref_name(repo, base)
    if by_name is not None:
        return by_name
    if re.match(_HEX, base) and len(base) == 40:
        if base.lower() == head:  # the branch's own commit: no object to look up (`status` asks for it)
            return head
        return _by_full_id(repo, base.lower(), rev)
    if re.match(_HEX, base) and _MIN_PREFIX <= len(base) < 40:
        return _by_prefix(repo, hist, head, base.lower(), rev)
    when = parse_time(base)
    if when is not None:
        return _by_time(repo, hist, head, when, rev)
    raise RevisionNotFound(
        rev, "not a commit id, snapshot name, HEAD~N or time (like '2h ago', 'yesterday' or 2024-05-01T10:00)"
    )


def _by_ref_name(repo: Repository, base: str) -> str | None:
    """Snapshots (tags), then branches and remote-tracking branches, then full ref names. Only names git would
    accept as refs are looked up: a ref name is a path under .git/."""
    if not _ref_name_ok(base):
        return None
    if repo.read_ref(f"refs/tags/{base}") is not None:
        for t in repo.tags():
            if t.name == base:
                return t.commit
    for ref in (f"refs/heads/{base}", f"refs/remotes/{base}", base if base.startswith("refs/") else ""):
        if ref:
            sha = repo.read_ref(ref)
            if sha is not None and re.match(_FULL_ID, sha):
                return sha
    return None


def _by_full_id(repo: Repository, sha: str, rev: str) -> str:
    if not repo.has_object(sha):
        raise RevisionNotFound(rev, "no such commit in this store")
    try:
        repo.commit_info(sha)
    except RevisionNotFound as e:
        raise RevisionNotFound(rev, "that object is not a commit") from e
    return sha


def _by_prefix(repo: Repository, hist: History, head: str | None, prefix: str, rev: str) -> str:
    found: set[str] = {str(e["c"]) for e in hist.walk(head) if e["c"].startswith(prefix)}
    found |= {t.commit for t in repo.tags() if t.commit.startswith(prefix)}
    if len(found) == 1:
        return found.pop()
    if found:
        sample = ", ".join(sorted(c[:12] for c in found)[:4])
        raise RevisionNotFound(rev, f"ambiguous: {len(found)} commits start with it ({sample}); give more digits")
    raise RevisionNotFound(rev, f"no commit on {repo.branch} starts with {prefix!r}")


def _by_time(repo: Repository, hist: History, head: str | None, when: float, rev: str) -> str:
    for entry in hist.first_parent_chain(head):
        if int(entry.get("ct", entry["t"])) <= when:
            return str(entry["c"])
    if head is None:
        raise RevisionNotFound(rev, "the store has no commits yet")
    moment = _dt.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
    if repo.shallow():  # history was thinned by forget: the kept point that covers that moment
        from .retention import kept_points

        for point in kept_points(repo):  # newest first
            if point.commit_time <= when:
                return point.id
        raise BeforeHistory(
            rev,
            f"{moment} is before the oldest point kept by 'gitstate forget' on {repo.branch}; a remote that holds "
            "the full history can bring it back: git fetch --unshallow <remote>",
        )
    raise BeforeHistory(rev, f"{moment} is before the first commit of {repo.branch}")


def resolve(repo: Repository, rev: str) -> str:
    """The commit id a revision names.

    Accepts ``HEAD``, ``HEAD~N``, ``HEAD^``, ``<rev>~N``/``<rev>^N`` on any of the following, a full id or a
    unique prefix (4+ hex digits, among the branch's commits and snapshots), a snapshot name, a branch name,
    and a time (see :func:`parse_time`), which names the newest commit at or before that moment on the branch's
    first-parent history.

    Raises:
        RevisionNotFound: nothing matches, a prefix is ambiguous, ``~N`` goes past the first commit, or the
            time is before the first commit.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1); store.set("state.json", "a", 2)
        ...     resolve(store._repo, "HEAD~1") == store.log()[1].id
        True
    """
    if not isinstance(rev, str):
        raise TypeError(f"a revision must be a str, not {type(rev).__name__}")
    text = rev.strip()
    with History(repo) as hist:
        # Whole-string matches first: a snapshot or a time expression may not be split on ~ and ^.
        m = re.match(_REV_SUFFIX, text)
        assert m is not None
        base, suffix = m.group(1), m.group(2)
        if not suffix:
            return _peel_base(repo, hist, text, rev)
        cid = _peel_base(repo, hist, base, rev)
        steps = re.findall(r"[~^]\d*", suffix)
        for s_i, step in enumerate(steps):
            kind, num = step[0], step[1:]
            n = int(num) if num else 1
            if kind == "~":
                for i in range(n):
                    parents = hist.parents(cid)
                    if not parents:
                        # One step past the first commit is the state before it: empty (diff takes it so).
                        error = BeforeHistory if s_i == len(steps) - 1 and i == n - 1 else RevisionNotFound
                        raise error(
                            rev,
                            f"{base} has only {i} commit(s) before it"
                            if i
                            else f"{cid[:8]} is the first commit; it has no parent",
                        )
                    cid = parents[0]
            else:
                if n == 0:
                    continue
                parents = hist.parents(cid)
                if len(parents) < n:
                    raise RevisionNotFound(rev, f"{cid[:8]} has {len(parents)} parent(s)")
                cid = parents[n - 1]
        return cid


# ===================================================================== snapshots
_BAD_REF_CHARS: Final = r"[\x00-\x20\x7f~^:?*\[\\]"


def check_snapshot_name(name: str) -> None:
    """Git's ``check-ref-format`` rules for a tag name, plus names that would read as something else."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif re.search(_BAD_REF_CHARS, name):
        problem = "spaces, control characters and ~ ^ : ? * [ \\ are not allowed"
    elif ".." in name or "@{" in name or "//" in name:
        problem = "'..', '@{' and '//' are not allowed"
    elif name.startswith(("-", "/")) or name.endswith(("/", ".")) or name == "@":
        problem = "it may not start with '-' or '/', end with '/' or '.', or be '@'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problem = "no part may start with '.' or end with '.lock'"
    elif name in ("HEAD", "now", "yesterday") or parse_time(name, now=0.0) is not None:
        problem = "it would read as a revision or a time"
    elif re.match(_HEX, name) and len(name) >= _MIN_PREFIX:
        problem = "it looks like a commit id"
    if problem:
        raise GitStateError(f"invalid snapshot name {name!r}: {problem}")
