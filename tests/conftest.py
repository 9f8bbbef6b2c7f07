"""Shared fixtures and helpers for the core tests.

* ``open_store(path=None, **options)``: open a store (manual durability, no fsync by default) that is closed at
  teardown.
* ``store``: a manual-durability store in ``tmp_path / "store"``; ``doc``: parametrized over a JSON and a YAML
  document, so a test that takes both runs once per codec.
* :func:`worker` / :func:`start_worker`: run ``tests/workers/writer.py`` in a new interpreter.

Plain helpers (``git``, ``fsck``, ``GIT_ENV``, ``wait_until``...) live in ``helpers.py``: import them from there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gitstate

__all__ = ["TORTURE", "WORKERS", "reaped", "start_worker", "worker", "worker_stderr"]

logger = logging.getLogger("gitstate.tests")

WORKERS = Path(__file__).parent / "workers"
TORTURE = os.environ.get("GITSTATE_TORTURE") == "1"


def _worker_cmd(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, str(WORKERS / "writer.py"), *args]


def _worker_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("GITSTATE_DIR", None)
    return env


def worker(
    *args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/workers/writer.py args...`` to completion in a fresh interpreter."""
    proc = subprocess.run(_worker_cmd(args), capture_output=True, text=True, timeout=timeout_s, env=_worker_env(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"worker {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


_ERR_FILES: dict[int, Any] = {}


def start_worker(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``tests/workers/writer.py args...``; its stdout is a text pipe, its stderr goes to a temp file
    (read it with :func:`worker_stderr`) so a chatty child can never block on a full pipe."""
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by reaped()
    proc = subprocess.Popen(_worker_cmd(args), stdout=subprocess.PIPE, stderr=err, text=True, env=_worker_env(env))
    _ERR_FILES[proc.pid] = err
    return proc


def worker_stderr(proc: subprocess.Popen[str], limit: int = 4000) -> str:
    """What a worker started by :func:`start_worker` wrote to stderr so far (the last ``limit`` characters)."""
    err = _ERR_FILES.get(proc.pid)
    if err is None:
        return ""
    err.seek(0)
    data: bytes = err.read()
    return data.decode("utf-8", "replace")[-limit:]


def wait_exit(proc: subprocess.Popen[str], timeout_s: float) -> int:
    """Wait for a worker to exit; if it overstays ``timeout_s``, fail with the stacks of all its threads (the
    worker dumps them on SIGUSR1 through :mod:`faulthandler`) and the rest of its stderr."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5.0
        while "most recent call first" not in worker_stderr(proc) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the dump, with a deadline
        raise AssertionError(
            f"the worker did not exit within {timeout_s}s; its threads and stderr:\n{worker_stderr(proc, 20_000)}"
        ) from None


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Make sure a worker is dead and its pipes closed when the block ends (no ResourceWarning)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(Exception):
            proc.communicate(timeout=30)
        for f in (proc.stdout, proc.stderr, proc.stdin, _ERR_FILES.pop(proc.pid, None)):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., gitstate.Store]]:
    """Factory: ``open_store(path=None, **options)``; defaults: manual durability, fsync off. Closed at
    teardown (errors at close are ignored: a test may have broken the store on purpose)."""
    stores: list[gitstate.Store] = []

    def _open(path: Path | str | None = None, **options: Any) -> gitstate.Store:
        options.setdefault("durability", "manual")
        options.setdefault("fsync", False)
        s = gitstate.open(tmp_path / "store" if path is None else path, **options)
        stores.append(s)
        return s

    yield _open
    for s in reversed(stores):
        with contextlib.suppress(Exception):
            s.close()


@pytest.fixture(params=["state.json", "state.yaml"])
def doc(request: pytest.FixtureRequest) -> str:
    """A structured document path: once JSON, once YAML."""
    return str(request.param)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(open_store: Callable[..., gitstate.Store], store_path: Path) -> gitstate.Store:
    """A fresh manual-durability store (fsync off)."""
    return open_store(store_path)
