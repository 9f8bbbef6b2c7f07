"""Per-remote bookkeeping shared by push, fetch, config and the auto-pusher: the push state file
(.git/gitstate/push-<remote>.json), the registry of running auto-pushers and the per-remote push locks.

What belongs here: push_lock, state_path, read_state, record_push_state and the pushers registry. What does not: the
push itself (sync.py); reading the state for display (sync.push_status); the owner-only file writer
(credentials.write_private_json).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..repo import Repository
from .credentials import state_lock, write_private_json

if TYPE_CHECKING:
    from .autopush import AutoPusher


logger = logging.getLogger("gitstate.remote")


#: (store root, remote) -> running auto-pushers; guarded by ``pushers_lock``.
pushers: dict[tuple[str, str], set[AutoPusher]] = {}
pushers_lock = threading.Lock()
_push_locks: dict[tuple[str, str], threading.Lock] = {}


def push_lock(repo: Repository, name: str) -> threading.Lock:
    """The lock that makes pushes to one remote from this process run one at a time."""
    with pushers_lock:
        return _push_locks.setdefault((str(repo.root), name), threading.Lock())


# ===================================================================== push state and status
def state_path(repo: Repository, name: str) -> Path:
    return repo.meta_dir / f"push-{name}.json"


def read_state(repo: Repository, name: str) -> dict[str, Any]:
    try:
        data = json.loads(state_path(repo, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_push_state(
    repo: Repository,
    name: str,
    *,
    success: str | None = None,
    error: str | None = None,
    attempts: int | None = None,
    next_retry_s: float | None = None,
) -> None:
    """Persist what the last push did (a cache for ``status``: failures to write it are only logged)."""
    try:
        with state_lock:
            state = read_state(repo, name)
            now = time.time()
            if success is not None:
                state.update(last_success=now, last_success_commit=success, attempts=0, next_retry=None)
            if error is not None:
                state.update(last_error=error, last_error_time=now)
            if attempts is not None:
                state["attempts"] = attempts
                state["next_retry"] = now + next_retry_s if next_retry_s is not None else None
            write_private_json(state_path(repo, name), state)
    except OSError as e:
        logger.warning("could not save the push state of %s: %s", name, e)


def as_datetime(ts: object) -> _dt.datetime | None:
    if not isinstance(ts, (int, float)):
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
