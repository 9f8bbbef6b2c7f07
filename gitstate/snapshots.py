"""Deleting and thinning snapshots (Git tags), as checkpointing programs need: "keep the last 5 checkpoints".

What belongs here: removing a snapshot's tag under the store's lock (loose and packed, through git's lock-file
protocol in :meth:`Repository.update_ref`) and choosing which snapshots of a prefix go. What does not: making
snapshots and listing them (:mod:`gitstate.history`), the history a deleted snapshot pointed at (it stays on the
branch; ``forget`` and ``gc`` decide what old history is kept).
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import GitStateError
from .repo import Repository

__all__ = ["delete_snapshot", "thin_snapshots", "thin_snapshots_in"]


def delete_snapshot(repo: Repository, name: str) -> str:
    """Delete snapshot ``name`` (its tag, loose or packed); returns the commit it named. Takes the lock.

    Raises:
        GitStateError: no snapshot of that name.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="immediate") as store:
        ...     store.set("state.json", "a", 1)
        ...     _ = store.snapshot("checkpoint-1")
        ...     delete_snapshot(store.services.repo, "checkpoint-1") == store.head, store.snapshots()
        (True, [])
    """
    from .history import snapshots
    from .revisions import check_snapshot_name

    check_snapshot_name(name)
    ref = f"refs/tags/{name}"
    with repo.lock():
        current = repo.read_ref(ref)
        if current is None:
            known = ", ".join(s.name for s in snapshots(repo)[-5:]) or "none"
            raise GitStateError(f"no snapshot named {name!r} (the newest are: {known})")
        commit = next((s.commit for s in snapshots(repo) if s.name == name), current)
        repo.update_ref(ref, None, current)
    return commit


def thin_snapshots(tags: Mapping[str, float], *, prefix: str, keep_last: int) -> list[str]:
    """Snapshot names to delete so that only the ``keep_last`` newest of those starting with ``prefix`` remain
    (``tags``: name -> time), oldest first. Snapshots with another prefix are never chosen.

    Example:
        >>> thin_snapshots({"checkpoint-1": 1, "checkpoint-2": 2, "checkpoint-3": 3, "v1": 0},
        ...                prefix="checkpoint-", keep_last=2)
        ['checkpoint-1']
    """
    if keep_last < 0:
        raise GitStateError(f"keep_last must be >= 0, not {keep_last}")
    matching = sorted((t, n) for n, t in tags.items() if n.startswith(prefix))
    return [n for _, n in matching[: max(0, len(matching) - keep_last)]]


def thin_snapshots_in(repo: Repository, *, prefix: str, keep_last: int, dry_run: bool = False) -> list[str]:
    """Delete all but the ``keep_last`` newest snapshots whose name starts with ``prefix`` (see
    :func:`thin_snapshots`); returns the names deleted (with ``dry_run``: that would be), oldest first.

    Raises:
        GitStateError: ``keep_last`` is negative, or ``prefix`` is empty (that would thin every snapshot; name
            the prefix you mean).
    """
    from .history import snapshots

    if not prefix:
        raise GitStateError("thinning snapshots needs a prefix (e.g. 'checkpoint-'): an empty one matches all")
    with repo.lock():
        doomed = thin_snapshots(
            {s.name: s.time.timestamp() for s in snapshots(repo)}, prefix=prefix, keep_last=keep_last
        )
        if not dry_run:
            for name in doomed:
                delete_snapshot(repo, name)
    return doomed
