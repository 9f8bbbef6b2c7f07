"""The stored retention policy, applied as part of background maintenance.

What belongs here: deciding when the background packer applies the policy stored with the store
(``.gitstate/retention.json``, see :mod:`gitstate.retention`), the size samples the budget's growth estimate is
made from, and the full repack that reclaims what ``forget`` cut. What does not: the rules and the cut
themselves (:mod:`gitstate.retention`), the packing (:mod:`.maintenance`).

The policy is applied at most once per :data:`APPLY_INTERVAL_S` across all processes of a store (a stamp file
in ``.git/gitstate/`` records the last run), and at once when the history is over its budget: that is how a
budget is enforced, within what the rules allow (the window is never touched; a budget smaller than the window's
history stays exceeded, and ``status``/``doctor`` say so). Unpushed commits are never dropped in the background
(``include_unpushed`` is for a person to choose); such a refusal is logged once per interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..repo import Repository

__all__ = ["APPLY_INTERVAL_S", "SAMPLE_INTERVAL_S", "apply_stored_policy", "policy_due"]

logger = logging.getLogger("gitstate.gc")

#: The stored policy is applied at most this often (seconds), unless the history is over its budget.
APPLY_INTERVAL_S: Final = 3600.0
#: A size sample for the budget's growth estimate is taken at most this often (seconds).
SAMPLE_INTERVAL_S: Final = 600.0
_STAMP: Final = "retention-applied"


def _stamp(repo: Repository) -> Path:
    return repo.git_dir / "gitstate" / _STAMP


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return float("inf")


def policy_due(repo: Repository, *, interval_s: float = APPLY_INTERVAL_S, now: float | None = None) -> Any:
    """The stored :class:`~gitstate.retention.Policy` when it is time to apply it (the last run is older than
    ``interval_s``, or the history is over its budget), else None. Takes a size sample when one is due.
    A stored policy that does not parse is logged and treated as none."""
    from .. import retention

    now = time.time() if now is None else now
    try:
        policy = retention.load_policy(repo.root)
    except retention.RetentionError as e:
        logger.warning("ignoring the stored retention policy: %s", e)
        return None
    if policy is None:
        return None
    log = repo.git_dir / "gitstate" / retention.SIZE_LOG
    size = retention.record_size(repo, now=now) if _age(log, now) >= SAMPLE_INTERVAL_S else None
    if _age(_stamp(repo), now) >= interval_s:
        return policy
    if policy.budget_mb is not None:
        size = repo.disk_usage() if size is None else size
        if size >= policy.budget_mb * 1e6:
            return policy
    return None


def apply_stored_policy(
    repo: Repository, *, fsync: bool = True, interval_s: float = APPLY_INTERVAL_S, now: float | None = None
) -> dict[str, Any] | None:
    """Apply the stored policy when it is due (see :func:`policy_due`); then repack, so the space is reclaimed.
    Returns what happened (``dropped``, ``points``, ``gc``; or ``refused`` with the reason), or None when nothing
    was due. Never raises for a refusal (unpushed commits, a branch that moved): the next interval retries."""
    from .. import retention
    from .maintenance import collect

    policy = policy_due(repo, interval_s=interval_s, now=now)
    if policy is None:
        return None
    stamp = _stamp(repo)
    with contextlib.suppress(OSError):  # first, so that a policy that keeps failing is not retried every pass
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        os.utime(stamp, (time.time(), time.time()) if now is None else (now, now))
    try:
        plan = retention.forget(repo, policy, fsync=fsync)
    except retention.RetentionError as e:
        logger.info("the stored retention policy was not applied: %s", e)
        return {"refused": str(e)}
    out: dict[str, Any] = {"dropped": plan.dropped, "points": len(plan.points)}
    if plan.dropped:
        out["gc"] = collect(repo, fsync=fsync)
        retention.record_size(repo)
    return out
