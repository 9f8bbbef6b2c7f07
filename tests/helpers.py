"""Small shared test helpers: wait on a condition, run real ``git``, open throwaway stores, commit at set times.

Kept small and stable: other test modules import it (``from helpers import ...``; ``conftest.py`` holds the
fixtures and the worker-process helpers).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gitstate

if TYPE_CHECKING:
    from click.testing import Result

__all__ = [
    "GIT_ENV",
    "PYTHON",
    "YAML_ALIAS_BOMB",
    "commit_ids",
    "fsck",
    "git",
    "git_commit_at",
    "git_show",
    "invoke",
    "make_store",
    "run_cli",
    "status_porcelain",
    "wait_until",
]

logger = logging.getLogger("gitstate.tests")

T = TypeVar("T")

#: The interpreter running the tests (for subprocess tests).
PYTHON = sys.executable

# An empty HOME of our own: git finds no ~/.config/git/{ignore,attributes}, ~/.git-credentials... there.
_GIT_HOME = tempfile.mkdtemp(prefix="gitstate-tests-home-")
atexit.register(shutil.rmtree, _GIT_HOME, ignore_errors=True)

#: The environment for real git (and the subprocesses tests run it in), isolated from whatever the machine's
#: config says (a global hooksPath, an fsmonitor, a global excludes file...), with a fixed identity.
GIT_ENV = {
    **os.environ,
    "HOME": _GIT_HOME,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Test Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
    "LC_ALL": "C",
    "GIT_TERMINAL_PROMPT": "0",
}
GIT_ENV.pop("XDG_CONFIG_HOME", None)  # would stand in for ~/.config
GIT_ENV.pop("GITSTATE_DIR", None)

#: A "billion laughs" YAML document: 9 levels of aliases, 9**9 (~387 million) scalars once expanded.
YAML_ALIAS_BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


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


def git(
    repo: str | os.PathLike[str],
    *args: str,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run real ``git -C repo args...`` (with :data:`GIT_ENV`, plus ``env``); return its stdout (text).

    With ``check`` (the default) a failure raises AssertionError with git's stderr.
    """
    proc = subprocess.run(
        ["git", "-C", os.fspath(repo), *args],
        capture_output=True,
        env={**GIT_ENV, **(env or {})},
        input=input,
        timeout=60,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8", "replace")


def fsck(repo: str | os.PathLike[str]) -> None:
    """Assert ``git fsck --strict`` is clean: exit 0, no error/fatal/warning, nothing missing.

    Dangling objects are not a failure.
    """
    # core.fsmonitor would make git itself run a command named by a (hostile) repository config.
    proc = subprocess.run(
        ["git", "-C", os.fspath(repo), "-c", "core.fsmonitor=false", "fsck", "--strict", "--no-progress"],
        capture_output=True,
        env=GIT_ENV,
        timeout=120,
        check=False,
    )
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"git fsck --strict failed ({proc.returncode}): {out} {err}"
    bad = [ln for ln in err.splitlines() if ln.startswith(("error", "fatal", "warning"))]
    assert not bad, bad
    assert "error" not in err.lower(), err
    assert "missing" not in out.lower() and "missing" not in err.lower(), out + err


def status_porcelain(repo: str | os.PathLike[str]) -> str:
    """``git status --porcelain`` output (empty when the work tree and index match HEAD)."""
    return git(repo, "status", "--porcelain", "--untracked-files=all")


def commit_ids(repo: str | os.PathLike[str], rev: str = "HEAD") -> list[str]:
    """Ids of the commits reachable from ``rev``, newest first (``[]`` before the first commit)."""
    if not git(repo, "rev-parse", "--verify", "-q", rev, check=False).strip():
        return []
    return git(repo, "rev-list", rev).split()


def git_show(repo: str | os.PathLike[str], rev: str, doc: str) -> str:
    """Content of ``doc`` at ``rev`` through real git."""
    return git(repo, "show", f"{rev}:{doc}")


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
        git(root, "init", "-q", "-b", "main")
    for doc, content in files.items():
        target = root / doc
        if content is None:
            if target.exists():
                git(root, "rm", "-q", "--", doc)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        git(root, "add", "--", doc)
    stamp = f"@{int(when)} +0000"
    msg = message + (f"\n\nGitstate-Actor: {actor}\n" if actor else "\n")
    git(root, "commit", "-q", "--allow-empty", "-m", msg, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
    return git(root, "rev-parse", "HEAD").strip()


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


def invoke(args: list[str], *, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """Run the ``gitstate`` command in-process (click's CliRunner) with ``args``; stdout and stderr kept apart."""
    from click.testing import CliRunner

    from gitstate.cli import main

    return CliRunner().invoke(main, args, input=input, env=dict(env) if env else None)


def load_benchmark(script: str, name: str) -> Any:
    """The module of ``benchmarks/<script>``, loaded under ``name`` (the benchmarks are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
