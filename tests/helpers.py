"""Small shared test helpers: wait on a condition, run real ``git``, open throwaway stores, commit at set times.

Kept small and stable: other test modules import it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import gitstate

__all__ = ["PYTHON", "fsck", "git", "git_commit_at", "make_store", "run_cli", "wait_until"]

logger = logging.getLogger("gitstate.tests")

T = TypeVar("T")

#: The interpreter running the tests (for subprocess tests).
PYTHON = sys.executable

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Test Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
}


def wait_until(
    cond: Callable[[], T], timeout_s: float = 10.0, message: str = "condition", *, interval_s: float = 0.01
) -> T:
    """Poll ``cond()`` until it returns a truthy value (returned) or ``timeout_s`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)  # polling a condition with a deadline, not sleep-and-hope


def git(*args: str, cwd: str | os.PathLike[str], env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run real ``git`` in ``cwd`` (no system or global config) and return its stdout."""
    full_env = {**os.environ, "HOME": str(cwd), **_GIT_ENV, **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def fsck(path: str | os.PathLike[str]) -> None:
    """Assert ``git fsck --strict`` finds nothing wrong."""
    proc = subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "fsck", "--strict", "--no-progress"],
        cwd=path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **_GIT_ENV},
    )
    assert proc.returncode == 0, f"git fsck failed: {proc.stdout}{proc.stderr}"
    assert "error" not in proc.stderr.lower() and "missing" not in proc.stdout.lower(), proc.stdout + proc.stderr


def make_store(path: str | os.PathLike[str], **options: Any) -> gitstate.Store:
    """Open a test store: manual durability, no fsync, no signal handlers (override with ``options``)."""
    options.setdefault("durability", "manual")
    options.setdefault("fsync", False)
    options.setdefault("handle_signals", False)
    return gitstate.open(path, **options)


def git_commit_at(
    path: str | os.PathLike[str],
    files: Mapping[str, str | bytes | None],
    when: float,
    *,
    message: str = "edit by hand",
    actor: str | None = None,
) -> str:
    """Commit ``files`` (doc -> content, None removes it) with real ``git`` at the time ``when`` (epoch seconds).

    With ``actor`` the message gets a ``Gitstate-Actor`` trailer; without it the commit looks like a plain git
    commit (actor ``human``). The store must be closed (or not writing) meanwhile. Returns the commit id.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").is_dir():
        git("init", "-q", "-b", "main", cwd=root)
    for doc, content in files.items():
        target = root / doc
        if content is None:
            if target.exists():
                git("rm", "-q", "--", doc, cwd=root)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        git("add", "--", doc, cwd=root)
    stamp = f"@{int(when)} +0000"
    msg = message + (f"\n\nGitstate-Actor: {actor}\n" if actor else "\n")
    git(
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        msg,
        cwd=root,
        env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )
    return git("rev-parse", "HEAD", cwd=root).strip()


def run_cli(
    *args: str, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gitstate ARGS`` (the ``gitstate`` command's own entry point) in a real subprocess."""
    return subprocess.run(
        [PYTHON, "-m", "gitstate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout_s,
        check=False,
    )
