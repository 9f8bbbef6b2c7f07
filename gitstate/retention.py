"""Retention: thin old local history restic-style, without rewriting anything a remote holds.

What belongs here: the retention policy (``--keep-within 7d --keep-hourly 48 --keep-daily 30 ...``), choosing
which old points to keep, and the one operation that cuts the branch's history at the window edge. What does
not: reading history for ``log``/``at`` (:mod:`gitstate.history` reads the kept points through
:func:`kept_points`), deleting the unreachable objects (:mod:`gitstate.gc` honours ``.git/shallow``), the
command line (``gitstate forget``).

The design (push-safe by construction):

* **The window stays as it is.** Every commit newer than the window edge keeps its id. The branch is cut at the
  edge the way git's own shallow clones are: the oldest commits of the window are listed in ``.git/shallow``,
  so git (``fsck``, ``log``, ``clone``, ``push``) and gitstate treat their parents as absent, and ``gc`` may
  delete everything older that nothing else holds.
* **Thinned points live on their own lineage**, ``refs/gitstate/kept``: one commit per kept hour / day / week /
  month / year, oldest first, each with the tree, author and time of the last commit of its period and a
  message saying what it replaced (how many commits, which documents). This lineage is local: it is never
  pushed, so rewriting it on the next ``forget`` is safe.
* **Nothing a remote holds is rewritten.** Commits are only ever dropped locally; a remote that has the full
  history keeps it (it is the long-term backup) and ``push``/``pull``/``sync`` go on without ``--force``
  because the branch's tip and every id in the window are unchanged. By default ``forget`` refuses to drop
  commits that no remote has when the store has a remote (``include_unpushed=True`` overrides).
* **Snapshots and other refs are kept readable**: a tag, remote-tracking ref or other ref that points into the
  dropped part keeps its commit (it is added to ``.git/shallow`` too, so only that commit's tree stays, not its
  whole past).
* **Crash-safe**: objects are written and fsynced first, then the kept ref is moved by compare-and-swap, then
  ``.git/shallow`` is replaced atomically (the commit point), then reflog entries naming dropped commits are
  pruned. A kill at any step leaves the old history or the new one; a rerun finishes the job with the same ids.

Periods are read in each commit's own recorded UTC offset (the author's local day), so a plan does not depend on
the machine's time zone. The window is measured back from the newest commit, not the clock (as restic does): a
store left idle for months is not thinned to nothing, and a commit newer than ``now - keep_within`` is never
touched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson

from . import messages
from .errors import GitStateError
from .paths import atomic_write
from .repo import CommitInfo, Repository

__all__ = [
    "KEPT_REF",
    "POLICY_FILE",
    "SIZE_LOG",
    "BudgetReport",
    "ForgetPlan",
    "KeptPoint",
    "Policy",
    "RetentionError",
    "apply_plan",
    "budget_report",
    "forget",
    "kept_points",
    "load_policy",
    "parse_duration",
    "plan_forget",
    "policy_bytes",
    "read_shallow",
    "record_size",
    "save_policy",
]

#: The local lineage of thinned points (never pushed).
KEPT_REF: Final = "refs/gitstate/kept"
#: Where a store keeps its policy, inside the work tree so it travels with clones.
POLICY_FILE: Final = ".gitstate/retention.json"
#: Size samples (``.git/gitstate/``): one JSON line ``[time, bytes]`` per packing pass, for growth per day.
SIZE_LOG: Final = "size-log-v1.jsonl"
_SIZE_LOG_MAX: Final = 2000
_RULES: Final = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_UNITS: Final = {"h": 3600, "d": 86400, "w": 7 * 86400}


class RetentionError(GitStateError):
    """A retention policy cannot be applied: a bad policy, unpushed commits in the way, or a moved branch."""


# ===================================================================== the policy
_DURATION = re.compile(r"(\d+)(y|m|w|d|h)")


def parse_duration(text: str) -> tuple[int, int, int]:
    """``"1y6m"``, ``"7d"``, ``"48h"``, ``"2w3d"`` as ``(years, months, seconds)`` (restic's units: y, m(onth),
    w, d, h). Years and months are calendar steps, the rest fixed lengths.

    Raises:
        RetentionError: an empty, zero or malformed duration.

    Example:
        >>> parse_duration("1y2m3d"), parse_duration("48h")
        ((1, 2, 259200), (0, 0, 172800))
    """
    text = text.strip().lower()
    pos, years, months, seconds = 0, 0, 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        n, unit = int(m.group(1)), m.group(2)
        if unit == "y":
            years += n
        elif unit == "m":
            months += n
        else:
            seconds += n * _UNITS[unit]
        pos = m.end()
    if not text or pos != len(text) or (years, months, seconds) == (0, 0, 0):
        raise RetentionError(f"not a duration: {text!r} (use e.g. 7d, 48h, 2w, 6m, 1y, 1y6m)")
    return years, months, seconds


def _minus(when: float, duration: tuple[int, int, int]) -> float:
    years, months, seconds = duration
    d = _dt.datetime.fromtimestamp(when, _dt.UTC)
    total = d.year * 12 + (d.month - 1) - (years * 12 + months)
    year, month = divmod(total, 12)
    day = min(d.day, _days_in(year, month + 1))
    return d.replace(year=year, month=month + 1, day=day).timestamp() - seconds


def _days_in(year: int, month: int) -> int:
    nxt = _dt.date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - _dt.timedelta(days=1)).day


@dataclass(frozen=True)
class Policy:
    """Which history to keep, in restic's and borg's terms.

    Attributes:
        keep_within: a duration (``"7d"``): every commit within it of the newest commit stays exactly as it is.
        last: keep the N newest older commits as points.
        hourly, daily, weekly, monthly, yearly: keep the last commit of each of the N newest hours / days / ISO
            weeks / months / years that have commits (older than the window).
        budget_mb: an optional size budget for the repository, reported by ``status``/``doctor``.

    Example:
        >>> Policy(keep_within="7d", daily=30).describe()
        'keep-within 7d, daily 30'
    """

    keep_within: str | None = None
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    budget_mb: float | None = None

    def __post_init__(self) -> None:
        for rule in _RULES:
            n = getattr(self, rule)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise RetentionError(f"--keep-{rule} must be a whole number >= 0, not {n!r}")
        if self.keep_within is not None:
            parse_duration(self.keep_within)
        if self.budget_mb is not None and not (isinstance(self.budget_mb, (int, float)) and self.budget_mb > 0):
            raise RetentionError(f"budget_mb must be a positive number, not {self.budget_mb!r}")

    @property
    def empty(self) -> bool:
        """No rule at all: applying it would keep only the newest commit, so :func:`plan_forget` refuses it."""
        return self.keep_within is None and not any(getattr(self, r) for r in _RULES)

    def describe(self) -> str:
        """The policy as a short phrase (``keep-within 7d, daily 30``)."""
        parts = [f"keep-within {self.keep_within}"] if self.keep_within else []
        parts += [f"{r} {getattr(self, r)}" for r in _RULES if getattr(self, r)]
        return ", ".join(parts) or "no rules"

    def to_json(self) -> dict[str, Any]:
        """The policy as stored in :data:`POLICY_FILE` (only the rules that are set)."""
        out: dict[str, Any] = {r: getattr(self, r) for r in _RULES if getattr(self, r)}
        if self.keep_within:
            out["keep_within"] = self.keep_within
        if self.budget_mb is not None:
            out["budget_mb"] = self.budget_mb
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """The inverse of :meth:`to_json`; unknown keys are an error (a typo must not silently keep nothing)."""
        known = {*_RULES, "keep_within", "budget_mb"}
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(unknown)
            raise RetentionError(f"unknown retention setting(s) {names}; known: {', '.join(sorted(known))}")
        return cls(**dict(data))


def load_policy(workdir: str | os.PathLike[str]) -> Policy | None:
    """The policy stored with a store (:data:`POLICY_FILE`), or None when it has none.

    Raises:
        RetentionError: the file exists but is not a valid policy.
    """
    path = Path(workdir) / POLICY_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as e:
        raise RetentionError(f"{path}: not JSON ({e})") from e
    if not isinstance(data, dict):
        raise RetentionError(f"{path}: expected an object of retention settings")
    return Policy.from_json(data)


def policy_bytes(policy: Policy) -> bytes:
    """The stored form of ``policy`` (what :data:`POLICY_FILE` holds): indented JSON, keys sorted."""
    return orjson.dumps(policy.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def save_policy(workdir: str | os.PathLike[str], policy: Policy | None) -> Path:
    """Write (or with ``None`` remove) the stored policy file; the store commits it like any other file."""
    path = Path(workdir) / POLICY_FILE
    if policy is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, policy_bytes(policy))
    return path


# ===================================================================== choosing points
@dataclass(frozen=True)
class _Candidate:
    id: str  # the original commit's id
    tree: str
    time: int
    tz: int
    author: str
    replaces: int  # how many original commits this point stands for (itself included)
    message: str


def _periods(when: int, tz: int) -> dict[str, tuple[int, ...]]:
    d = _dt.datetime.fromtimestamp(when + tz, _dt.UTC)
    iso = d.isocalendar()
    return {
        "hourly": (d.year, d.month, d.day, d.hour),
        "daily": (d.year, d.month, d.day),
        "weekly": (iso[0], iso[1]),
        "monthly": (d.year, d.month),
        "yearly": (d.year,),
    }


def _choose(candidates: Sequence[_Candidate], policy: Policy) -> dict[str, list[str]]:
    """restic's rule: walking newest first, each rule keeps the first (newest) commit of each new period until it
    has kept N; ``last`` keeps the N newest. Returns id -> the rules that kept it."""
    kept: dict[str, list[str]] = {}
    if policy.last:
        for c in candidates[: policy.last]:
            kept.setdefault(c.id, []).append("last")
    for rule in _RULES[1:]:
        want = getattr(policy, rule)
        last: tuple[int, ...] | None = None
        count = 0
        for c in candidates:
            if count >= want:
                break
            period = _periods(c.time, c.tz)[rule]
            if period != last:
                kept.setdefault(c.id, []).append(rule)
                last = period
                count += 1
    return kept


# ===================================================================== the plan
@dataclass(frozen=True)
class KeptPoint:
    """A point of old history that ``forget`` keeps on :data:`KEPT_REF`.

    Attributes:
        original: id of the commit whose state it keeps (the last commit of its period).
        time: that commit's author time (seconds since the epoch); ``tz_offset_s`` its UTC offset.
        author: that commit's author.
        reasons: the rules that kept it (``daily``, ``weekly`` ...).
        replaces: how many original commits it stands for, itself included.
        docs: documents changed since the previous kept point (first ones only; see ``docs_more``).
        actor: the original commit's actor (a kept point speaks for whoever made the state it keeps).
        id: the kept commit's own id on :data:`KEPT_REF` (set once the plan is applied).
    """

    original: str
    time: int
    tz_offset_s: int
    author: str
    reasons: tuple[str, ...]
    replaces: int
    docs: tuple[str, ...] = ()
    docs_more: int = 0
    actor: str = messages.LIBRARY
    id: str | None = None


@dataclass(frozen=True)
class ForgetPlan:
    """What ``forget`` keeps and drops (``dry_run`` returns this without changing anything).

    Attributes:
        policy: the policy applied.
        head: the branch tip the plan was made for (it never changes).
        window_edge: commits at or after this time (seconds since the epoch) are kept as they are.
        window: how many commits stay as they are.
        boundary: commits listed in ``.git/shallow`` after the cut (the window's oldest, plus commits other refs
            hold).
        points: the kept points, newest first.
        dropped: how many commits (original and earlier kept points) go.
        held: refs that point into the dropped part and so keep their commit (``refs/tags/v1`` -> id).
        unpushed: dropped commits no remote has (refused unless ``include_unpushed``).
        applied: True once the plan was carried out.
    """

    policy: Policy
    head: str | None
    window_edge: float
    window: int
    boundary: tuple[str, ...]
    points: tuple[KeptPoint, ...]
    dropped: int
    held: Mapping[str, str] = field(default_factory=dict)
    unpushed: int = 0
    applied: bool = False

    @property
    def changes_anything(self) -> bool:
        """False when there is nothing older than the window to thin."""
        return self.dropped > 0

    def lines(self) -> list[str]:
        """The plan as ``forget --dry-run`` prints it."""
        edge = _fmt_time(int(self.window_edge), 0)
        out = [f"policy: {self.policy.describe()}", f"keep as is: {self.window} commits since {edge}"]
        if not self.changes_anything:
            out.append("nothing older to thin")
            return out
        out.append(f"keep {len(self.points)} older points, drop {self.dropped} commits:")
        for p in self.points:
            docs = ", ".join(p.docs) + (f" (+{p.docs_more} more)" if p.docs_more else "")
            out.append(
                f"  {p.original[:10]}  {_fmt_time(p.time, p.tz_offset_s)}  {'/'.join(p.reasons):<14}"
                f" replaces {p.replaces}{'  ' + docs if docs else ''}"
            )
        for ref, sha in sorted(self.held.items()):
            out.append(f"kept readable for {ref}: {sha[:10]}")
        if self.unpushed:
            out.append(f"{self.unpushed} of the dropped commits are on no remote")
        return out


def _fmt_time(when: int, tz: int) -> str:
    d = _dt.datetime.fromtimestamp(when, _dt.timezone(_dt.timedelta(seconds=tz)))
    return d.strftime("%Y-%m-%d %H:%M") + ("" if tz == 0 else d.strftime(" %z"))


def read_shallow(repo: Repository) -> set[str]:
    """Commit ids listed in ``.git/shallow`` (their parents are absent on purpose): :meth:`Repository.shallow`."""
    return repo.shallow()


def kept_points(repo: Repository) -> list[CommitInfo]:
    """The commits on :data:`KEPT_REF`, newest first (empty when ``forget`` never ran)."""
    out: list[CommitInfo] = []
    sha = repo.read_ref(KEPT_REF)
    while sha:
        info = repo.commit_info(sha)
        out.append(info)
        sha = info.parents[0] if info.parents else None
    return out


def _reachable(repo: Repository, head: str, shallow: set[str]) -> dict[str, CommitInfo]:
    infos: dict[str, CommitInfo] = {}
    stack = [head]
    while stack:
        sha = stack.pop()
        if sha in infos:
            continue
        c = infos[sha] = repo.commit_info(sha)
        if sha not in shallow:
            stack.extend(p for p in c.parents if p not in infos)
    return infos


def _droppable(infos: Mapping[str, CommitInfo], edge: float, shallow: set[str]) -> set[str]:
    """Commits that are older than ``edge`` *and* all of whose ancestors are too: only those may go. A commit
    with a skewed clock (older than its parents) in the middle of recent history therefore never cuts it."""
    verdict: dict[str, bool] = {}
    for start in infos:
        stack = [(start, False)]
        while stack:
            sha, expanded = stack.pop()
            if sha in verdict:
                continue
            parents = [] if sha in shallow else [p for p in infos[sha].parents if p in infos]
            if not expanded:
                stack.append((sha, True))
                stack.extend((p, False) for p in parents if p not in verdict)
            else:
                verdict[sha] = infos[sha].time < edge and all(verdict[p] for p in parents)
    return {sha for sha, ok in verdict.items() if ok}


def _split(repo: Repository, head: str, edge: float, shallow: set[str]) -> tuple[list[CommitInfo], list[CommitInfo]]:
    """(window, older): the commits that stay as they are, and the ones behind the cut (newest first).

    A commit stays unless it and all its ancestors are older than ``edge``. A merge commit in the window with a
    parent behind the cut keeps that parent as a boundary commit too: a commit in ``.git/shallow`` loses *all*
    its parents, so cutting the merge itself would drop window commits."""
    infos = _reachable(repo, head, shallow)
    dropped = _droppable(infos, edge, shallow)
    inside = {sha for sha in infos if sha not in dropped}
    for sha in list(inside):
        parents = [] if sha in shallow else infos[sha].parents
        if any(p in inside for p in parents):
            inside.update(p for p in parents if p in infos)
    window = [infos[sha] for sha in inside]
    older = [infos[sha] for sha in infos if sha not in inside]
    return window, sorted(older, key=lambda c: (c.time, c.commit_time), reverse=True)


def _remote_held(repo: Repository) -> tuple[bool, set[str]]:
    """(has remotes, ids every remote-tracking ref can reach): what a remote already holds."""
    tracking = repo.list_refs("refs/remotes/")
    has_remote = bool(tracking) or _configured_remotes(repo)
    reach: set[str] = set()
    stack = list(tracking.values())
    shallow = read_shallow(repo)
    while stack:
        sha = stack.pop()
        if sha in reach or not repo.object_present(sha):
            continue
        reach.add(sha)
        if sha not in shallow:
            with contextlib.suppress(Exception):
                stack.extend(repo.commit_info(sha).parents)
    return has_remote, reach


def _configured_remotes(repo: Repository) -> bool:
    try:
        text = (repo.git_dir / "config").read_text("utf-8", "replace")
    except OSError:
        return False
    return re.search(r'^\s*\[remote\s+"', text, re.M) is not None


def _old_points(repo: Repository) -> list[_Candidate]:
    out = []
    for info in kept_points(repo):
        msg = messages.parse(info.message)
        original = msg.trailer(messages.KEPT_FROM_TRAILER) or info.id
        try:
            replaces = int(msg.trailer(messages.KEPT_REPLACES_TRAILER) or "1")
        except ValueError:
            replaces = 1
        out.append(_Candidate(original, info.tree, info.time, info.tz_offset_s, info.author, replaces, info.message))
    return out


def plan_forget(
    repo: Repository, policy: Policy, *, include_unpushed: bool = False, now: float | None = None
) -> ForgetPlan:
    """Work out what :func:`forget` would keep and drop, without changing anything.

    Raises:
        RetentionError: an empty policy, or (without ``include_unpushed``) dropped commits that no remote has,
            in a store that has a remote.
    """
    if policy.empty:
        raise RetentionError("no retention rule given: say what to keep (e.g. --keep-within 7d --keep-daily 30)")
    head = repo.head()
    if head is None:
        return ForgetPlan(policy, None, 0.0, 0, (), (), 0)
    now = time.time() if now is None else now
    head_info = repo.commit_info(head)
    reference = min(now, float(head_info.time))
    edge = _minus(reference, parse_duration(policy.keep_within)) if policy.keep_within else float(head_info.time)
    shallow = read_shallow(repo)
    window, older = _split(repo, head, edge, shallow)
    inside = {c.id for c in window}
    older_ids = {c.id for c in older}
    # Earlier kept points, unless their original commit is still here (a forget killed before its cut left a
    # lineage behind: the originals are the authority, and counting both would change the points' messages).
    previous = [p for p in _old_points(repo) if p.id not in inside and p.id not in older_ids]
    if not older and not previous:
        kept_shallow = tuple(sorted(s for s in shallow if s in inside))
        return ForgetPlan(policy, head, edge, len(window), kept_shallow, (), 0)
    candidates = [_Candidate(c.id, c.tree, c.time, c.tz_offset_s, c.author, 1, c.message) for c in older] + previous
    candidates.sort(key=lambda c: c.time, reverse=True)
    chosen = _choose(candidates, policy)
    points = _points(repo, candidates, chosen)
    held = {
        ref: sha
        for prefix in ("refs/tags/", "refs/remotes/", "refs/heads/", "refs/gitstate/")
        for ref, sha in repo.list_refs(prefix).items()
        if ref != KEPT_REF and (sha in older_ids or (prefix == "refs/tags/" and _peels_into(repo, sha, older_ids)))
    }
    has_remote, on_remote = _remote_held(repo)
    unpushed = sum(1 for c in older if c.id not in on_remote) if has_remote else 0
    if unpushed and not include_unpushed:
        raise RetentionError(
            f"{unpushed} commits older than the window are on no remote; push first "
            "(gitstate push), or pass --include-unpushed to drop them anyway"
        )
    boundary = {c.id for c in window if any(p not in inside for p in c.parents) or c.id in shallow}
    boundary |= {_peel(repo, sha) for sha in held.values()}
    kept_ids = {p.original for p in points}
    dropped = sum(1 for c in older if c.id not in kept_ids) + sum(1 for p in previous if p.id not in kept_ids)
    return ForgetPlan(policy, head, edge, len(window), tuple(sorted(boundary)), tuple(points), dropped, held, unpushed)


def _peel(repo: Repository, sha: str) -> str:
    from dulwich.objects import Tag

    for _ in range(10):
        obj = repo.read_object(sha)
        if not isinstance(obj, Tag):
            return sha
        sha = obj.object[1].decode()
    return sha


def _peels_into(repo: Repository, sha: str, ids: set[str]) -> bool:
    with contextlib.suppress(Exception):
        return _peel(repo, sha) in ids
    return False


def _points(repo: Repository, candidates: Sequence[_Candidate], chosen: Mapping[str, list[str]]) -> list[KeptPoint]:
    """The kept points newest first, each counting the candidates it replaces (those older than it and newer than
    the next kept point) and naming the documents changed since that point."""
    points: list[KeptPoint] = []
    pending = 0
    kept_rev: list[tuple[_Candidate, int]] = []
    for c in reversed(candidates):  # oldest first
        pending += c.replaces
        if c.id in chosen:
            kept_rev.append((c, pending))
            pending = 0
    prev_tree: str | None = None
    for c, count in kept_rev:
        changed = sorted(repo.changed_paths(prev_tree, c.tree))
        prev_tree = c.tree
        points.append(
            KeptPoint(
                c.id,
                c.time,
                c.tz,
                c.author,
                tuple(chosen[c.id]),
                count,
                tuple(changed[:5]),
                max(0, len(changed) - 5),
                messages.actor(c.message),
            )
        )
    points.reverse()
    return points


# ===================================================================== carrying it out
def _point_message(p: KeptPoint) -> str:
    when = _fmt_time(p.time, p.tz_offset_s)
    body = [f"Kept by forget ({', '.join(p.reasons)}): the state at {when}, standing for {p.replaces} commits."]
    if p.docs:
        body.append("Documents changed: " + ", ".join(p.docs) + (f" and {p.docs_more} more" if p.docs_more else ""))
    return messages.build(
        f"kept point {when}: {p.replaces} commit{'s' if p.replaces != 1 else ''}",
        body,
        [
            (messages.ACTOR_TRAILER, p.actor),
            (messages.KEPT_FROM_TRAILER, p.original),
            (messages.KEPT_REPLACES_TRAILER, p.replaces),
            (messages.KEPT_RULES_TRAILER, " ".join(p.reasons)),
        ],
    )


def apply_plan(repo: Repository, plan: ForgetPlan, *, fsync: bool = True) -> ForgetPlan:
    """Carry out a plan from :func:`plan_forget` (call with the repository lock held).

    Raises:
        RetentionError: the branch moved since the plan was made (plan again).
    """
    if not plan.changes_anything or plan.head is None:
        if (repo.git_dir / "shallow").exists():
            _prune_reflogs(repo, fsync=fsync)  # finish a run that was killed after its cut
        return replace(plan, applied=True)
    if repo.head() != plan.head:
        raise RetentionError("the branch moved while forget was planning; run it again")
    lineage: list[KeptPoint] = []
    objects = []
    parent: list[str] = []
    for p in reversed(plan.points):  # oldest first: each kept point's parent is the one before it
        tree = repo.commit_info(p.original).tree if repo.object_present(p.original) else None
        if tree is None:
            tree = _tree_of_old_point(repo, p.original)
        c = repo.make_commit(
            tree, parent, _point_message(p), author=p.author, committer=p.author, when=p.time, tz_offset_s=p.tz_offset_s
        )
        objects.append(c)
        sha = c.id.decode()
        parent = [sha]
        lineage.append(replace(p, id=sha))
    repo.write_objects(objects, fsync=fsync)
    tip = parent[0] if parent else None
    old_tip = repo.read_ref(KEPT_REF)
    if tip != old_tip:
        repo.update_ref(KEPT_REF, tip, old_tip, fsync=fsync)
    _write_shallow(repo, plan.boundary, fsync=fsync)
    _reset_history_index(repo)
    _prune_reflogs(repo, fsync=fsync)
    repo.invalidate_caches()
    lineage.reverse()
    return replace(plan, points=tuple(lineage), applied=True)


def _reset_history_index(repo: Repository) -> None:
    """Empty the history index (a cache: rebuilt on demand, now only over the window). Its lines name the
    parents of the commits now at the cut; readers in other processes see a shorter file and read it again."""
    from .history_index import INDEX_FILE

    path = repo.meta_dir / INDEX_FILE
    if path.exists():
        _atomic_write(path, b"", fsync=False)


def _tree_of_old_point(repo: Repository, original: str) -> str:
    for info in kept_points(repo):
        if messages.trailer(info.message, messages.KEPT_FROM_TRAILER) == original:
            return info.tree
    raise RetentionError(f"kept point {original[:10]} cannot be read; run 'gitstate doctor'")


def _reachable_ids(repo: Repository) -> set[str]:
    """Commit ids still reachable after the cut (the window and the refs it holds), for pruning reflogs."""
    shallow = read_shallow(repo)
    seen: set[str] = set()
    stack = [sha for prefix in ("refs/",) for sha in repo.list_refs(prefix).values()]
    head = repo.head()
    if head:
        stack.append(head)
    while stack:
        sha = stack.pop()
        if sha in seen or not repo.object_present(sha):
            continue
        seen.add(sha)
        with contextlib.suppress(Exception):
            obj = repo.read_object(sha)
            if obj.type_name == b"tag":
                stack.append(obj.object[1].decode())  # type: ignore[attr-defined]
            elif obj.type_name == b"commit" and sha not in shallow:
                stack.extend(p.decode() for p in obj.parents)  # type: ignore[attr-defined]
    return seen


def _write_shallow(repo: Repository, boundary: Iterable[str], *, fsync: bool) -> None:
    repo.shallow_changed()
    ids = sorted(set(boundary))
    path = repo.git_dir / "shallow"
    if not ids:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    _atomic_write(path, "".join(f"{i}\n" for i in ids).encode("ascii"), fsync=fsync)
    repo.shallow_changed()


def _prune_reflogs(repo: Repository, *, fsync: bool) -> None:
    keep = _reachable_ids(repo)
    for dirpath, _, files in os.walk(repo.git_dir / "logs"):
        for name in files:
            _prune_reflog(Path(dirpath) / name, keep, fsync=fsync)


def _prune_reflog(path: Path, keep: set[str], *, fsync: bool) -> None:
    """Drop the entries of one reflog that name a commit the cut dropped (git fsck reports them otherwise)."""
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    zero = "0" * 40
    kept = []
    for line in lines:
        parts = line.split(b" ", 2)
        if len(parts) < 3:
            continue
        old, new = parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace")
        if new not in keep:
            continue
        if old != zero and old not in keep:
            line = zero.encode() + line[40:]
        kept.append(line)
    if kept != lines:
        _atomic_write(path, b"".join(kept), fsync=fsync)


def _atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """``data`` into ``path`` atomically (:func:`gitstate.paths.atomic_write`, the one temp-file writer)."""
    atomic_write(path.parent, path.name, data, fsync=fsync)


def forget(
    repo: Repository,
    policy: Policy,
    *,
    dry_run: bool = False,
    include_unpushed: bool = False,
    now: float | None = None,
    fsync: bool = True,
) -> ForgetPlan:
    """Thin history older than the policy's window (see the module note for what is kept and why it is
    push-safe). Takes the repository lock; ``dry_run`` only plans.

    Raises:
        RetentionError: an empty policy, unpushed commits in the way, or the branch moved meanwhile.
        RepositoryError: the lock could not be taken, or a write failed (the old history is then intact).
    """
    if dry_run:
        return plan_forget(repo, policy, include_unpushed=include_unpushed, now=now)
    with repo.lock():
        plan = plan_forget(repo, policy, include_unpushed=include_unpushed, now=now)
        return apply_plan(repo, plan, fsync=fsync)


# ===================================================================== the size budget
@dataclass(frozen=True)
class BudgetReport:
    """The repository's size against the policy's budget, as ``status`` and ``doctor`` report it.

    Attributes:
        size: bytes of ``.git`` now.
        budget: the budget in bytes, or None when the policy sets none.
        growth_per_day: bytes per day, from the size samples of the last 30 days (None until there are two
            samples at least an hour apart).
        days_left: days until the budget at that rate (None without a budget or growth; 0 when over it).
        warning: a sentence when the budget is exceeded or will be within 7 days, else None.
    """

    size: int
    budget: int | None
    growth_per_day: float | None
    days_left: float | None
    warning: str | None

    def line(self) -> str:
        """One line for ``status``: ``history 12.3 MB of 500 MB (+1.2 MB/day, 400 days left)``."""
        text = f"history {_fmt_bytes(self.size)}"
        if self.budget is not None:
            text += f" of {_fmt_bytes(self.budget)}"
        extras = []
        if self.growth_per_day is not None:
            extras.append(f"{'+' if self.growth_per_day >= 0 else ''}{_fmt_bytes(int(self.growth_per_day))}/day")
        if self.days_left is not None:
            extras.append(f"{self.days_left:.0f} days left" if self.days_left else "over budget")
        return text + (f" ({', '.join(extras)})" if extras else "")


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _size_log(repo: Repository) -> Path:
    return repo.git_dir / "gitstate" / SIZE_LOG


def record_size(repo: Repository, *, now: float | None = None) -> int:
    """Append a size sample (the packer calls this after each pass); returns the size. Never raises for a
    full or read-only disk (a missed sample only makes the growth estimate coarser)."""
    size = repo.disk_usage()
    path = _size_log(repo)
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(orjson.dumps([round(now, 1), size]) + b"\n")
        if path.stat().st_size > _SIZE_LOG_MAX * 40:
            lines = path.read_bytes().splitlines()[-_SIZE_LOG_MAX // 2 :]
            _atomic_write(path, b"\n".join(lines) + b"\n", fsync=False)
    return size


def _samples(repo: Repository) -> list[tuple[float, int]]:
    out = []
    with contextlib.suppress(OSError):
        for line in _size_log(repo).read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
                when, size = orjson.loads(line)
                out.append((float(when), int(size)))
    return out


def budget_report(repo: Repository, policy: Policy | None, *, now: float | None = None) -> BudgetReport:
    """The size, growth per day and days until the budget (see :class:`BudgetReport`).

    Growth is the least-squares slope of the samples of the last 30 days (robust to one odd sample; a gc that
    shrank the repository shows as negative growth)."""
    now = time.time() if now is None else now
    size = repo.disk_usage()
    recent = [(t, s) for t, s in _samples(repo) if now - t <= 30 * 86400] + [(now, size)]
    growth = None
    if len(recent) >= 2 and recent[-1][0] - recent[0][0] >= 3600:
        mean_t = sum(t for t, _ in recent) / len(recent)
        mean_s = sum(s for _, s in recent) / len(recent)
        var = sum((t - mean_t) ** 2 for t, _ in recent)
        if var > 0:
            growth = sum((t - mean_t) * (s - mean_s) for t, s in recent) / var * 86400
    budget = int(policy.budget_mb * 1e6) if policy is not None and policy.budget_mb is not None else None
    days_left = None
    warning = None
    if budget is not None:
        if size >= budget:
            days_left = 0.0
            warning = f"history is {_fmt_bytes(size)}, over its budget of {_fmt_bytes(budget)}: run 'gitstate forget'"
        elif growth is not None and growth > 0:
            days_left = (budget - size) / growth
            if days_left < 7:
                warning = (
                    f"history grows {_fmt_bytes(int(growth))}/day and reaches its budget of {_fmt_bytes(budget)} in "
                    f"{days_left:.1f} days: run 'gitstate forget' or raise budget_mb"
                )
    return BudgetReport(size, budget, growth, days_left, warning)
