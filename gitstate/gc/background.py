"""Packing in the background: a separate Python process, driven by :class:`BackgroundPacker`.

What belongs here: the worker process, its protocol with the parent, and the scheduling of passes. What does
not: the packing itself (:mod:`.maintenance`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LockError
from .maintenance import GcLock, LooseScan, run_pack_loose, run_prune_loose, scan_loose
from .objects import DEFAULT_MAX_PACKS, DEFAULT_PRUNE_GRACE_S, Stopped, list_pack_bases, write_fault
from .reach import Pacer

if TYPE_CHECKING:
    from ..repo import Repository

logger = logging.getLogger("gitstate.gc")


# ===================================================================== background packing
def _background_pass(
    repo: Repository,
    *,
    pack: bool,
    prune: bool,
    grace_s: float,
    max_packs: int,
    fsync: bool,
    settle_s: float,
    pacer: Pacer,
    retain: bool = False,
) -> dict[str, Any]:
    """One pass of background maintenance: pack (when asked), then prune debris if there is any old enough,
    then (with ``retain``) apply the stored retention policy when it is due (:mod:`.retain`)."""
    out = _pack_and_prune(
        repo, pack=pack, prune=prune, grace_s=grace_s, max_packs=max_packs, fsync=fsync, settle_s=settle_s, pacer=pacer
    )
    if retain and "skipped" not in out:
        from .retain import apply_stored_policy

        applied = apply_stored_policy(repo, fsync=fsync)
        if applied is not None:
            out["retention"] = applied
    return out


def _pack_and_prune(
    repo: Repository,
    *,
    pack: bool,
    prune: bool,
    grace_s: float,
    max_packs: int,
    fsync: bool,
    settle_s: float,
    pacer: Pacer,
) -> dict[str, Any]:
    lock = GcLock(repo.git_dir, blocking=False)
    if not lock.acquire():
        return {"skipped": "another gc is running"}
    try:
        out: dict[str, Any] = {}
        if pack:
            out["pack"] = run_pack_loose(repo, fsync=fsync, max_packs=max_packs, settle_s=settle_s, pacer=pacer)
        if prune:
            odir = os.fspath(repo.git_dir / "objects")
            scan = scan_loose(odir, pacer=pacer)
            if scan.has_debris(grace_s, time.time()):
                try:
                    out["prune"] = run_prune_loose(
                        repo, grace_s=grace_s, fsync=fsync, pacer=pacer, scan=scan, lock_timeout_s=5.0
                    )
                except LockError:
                    out["prune_skipped"] = "the store stayed busy; pruning waits for the next pass"
        return out
    finally:
        lock.release()


class _LogCapture(logging.Handler):
    """Collects the packing process's warnings so the parent can log them (the process prints nothing)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


def worker_main(argv: list[str]) -> int:
    """The packing process :class:`BackgroundPacker` starts (``argv``: store root, idle seconds).

    Reads one JSON line of options per pass from stdin, answers with one JSON line on stdout; exits when stdin
    closes, after ``idle`` seconds without work, or on SIGTERM (abandoning a pass cleanly).
    """
    import json
    import select
    import signal

    root, idle_s = argv[0], float(argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this stops
    with contextlib.suppress(OSError):
        os.nice(19)  # the application's threads come first
    capture = _LogCapture()
    logging.getLogger("gitstate").addHandler(capture)
    from ..repo import Repository

    def answer(result: dict[str, Any]) -> None:
        result["log"] = capture.messages[-20:]
        capture.messages.clear()
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()

    try:
        repo = Repository.open(root, create=False)
    except Exception as e:
        answer({"error": f"{type(e).__name__}: {e}"})
        return 1
    try:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([sys.stdin], [], [], idle_s)
            except InterruptedError:
                continue
            if not ready:
                break  # idle: the parent starts a new process when there is work again
            line = sys.stdin.readline()
            if not line:
                break
            try:
                answer(_background_pass(repo, pacer=Pacer(stop=stop), **json.loads(line)))
            except Stopped:
                answer({"stopped": True})
                break
            except Exception as e:
                # The parent reports it (once, not every pass): no log line of its own here.
                failure: dict[str, Any] = {"error": f"{type(e).__name__}: {e}"}
                if isinstance(e, OSError):
                    failure.update(errno=e.errno, strerror=e.strerror, filename=e.filename)
                answer(failure)
        return 0
    finally:
        repo.close()


class Worker:
    """The parent's side of a packing process: started on first use, restarted if it exited (idle or crashed)."""

    def __init__(self, root: Path, *, idle_s: float = 60.0) -> None:
        self.root = root
        self.idle_s = idle_s
        self.proc: Any = None

    def _start(self) -> None:
        import subprocess

        # The process must import this very gitstate, wherever the application found it.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        code = "import sys; from gitstate.gc.background import worker_main; sys.exit(worker_main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, os.fspath(self.root), str(self.idle_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=os.fspath(self.root),
            start_new_session=True,  # a Ctrl-C meant for the application does not cut a pass in half
            text=True,
        )

    def run(
        self, options: dict[str, Any], stop: threading.Event, preempt: threading.Event | None = None
    ) -> dict[str, Any]:
        """Run one pass in the process. Raises Stopped when ``stop`` is set meanwhile, OSError if no process
        can be started. When ``preempt`` is set meanwhile, the pass is abandoned (``{"preempted": True}``)."""
        import json
        import select

        for attempt in range(2):
            if self.proc is None or self.proc.poll() is not None:
                self.close()
                self._start()
            proc = self.proc
            try:
                proc.stdin.write(json.dumps(options) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self.close()  # it was exiting (idle); start another
                continue
            while True:
                if stop.is_set():
                    self.close()
                    raise Stopped
                if preempt is not None and preempt.is_set():
                    self.close()  # it removes its temp files and releases the gc lock
                    return {"preempted": True}
                ready, _, _ = select.select([proc.stdout], [], [], 0.1)
                if ready:
                    line = proc.stdout.readline()
                    break
            if not line:  # it exited without answering (idle at the wrong moment, or it crashed)
                self.close()
                if attempt == 0:
                    continue
                return {"error": "the packing process exited without an answer"}
            try:
                result: dict[str, Any] = json.loads(line)
            except ValueError:
                return {"error": f"unexpected answer from the packing process: {line[:200]!r}"}
            for message in result.pop("log", []):
                logger.warning("background packing: %s", message)
            return result
        return {"error": "the packing process could not be started"}

    def close(self) -> None:
        """End the process: a pass in progress is abandoned (it removes its temp files)."""
        import subprocess

        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdout.close()


class BackgroundPacker:
    """Packs a store's history in the background so the repository stays small (see the module docstring).

    Call :meth:`notify` after each commit (cheap: a counter). Every ``check_every_commits`` commits, or every
    ``check_interval_s`` seconds, the packer's thread counts the loose objects; once there are
    ``loose_threshold`` of them or ``loose_bytes_threshold`` bytes (or more than ``max_packs`` packs), it packs
    them. Loose objects nothing reaches are pruned once older than ``prune_grace_s``. They stay bounded even when
    the pass cannot keep up: while one runs, the writers check every ``check_every_commits`` commits, and once
    there are ``loose_bytes_limit`` bytes (default twice ``loose_bytes_threshold``) or twice ``loose_threshold``
    objects, the committing thread packs them itself (back-pressure; counted in ``held_back``).

    The work runs in a separate Python process by default (``mode="process"``): it does not compete with the
    application's threads for the interpreter, so flushes keep their latency even when they run back to back. The
    process is started on the first pass and exits after ``worker_idle_s`` seconds without work. ``mode="thread"``
    does the work in the thread itself, in small steps that pause while a flush holds the store lock (used
    automatically when no process can be started). :meth:`stop` ends the thread and the process.

    Example:
        >>> import gitstate, tempfile
        >>> store = gitstate.open(tempfile.mkdtemp(), durability="immediate", fsync=False)  # loose objects
        >>> packer = BackgroundPacker(store.services.repo, loose_threshold=3)
        >>> _ = store.services.add_after_commit(packer.notify); store.services.add_background(packer)
        >>> store.set("a.json", "x", 1)
        >>> packer.run_now()["pack"]["packed"]
        3
        >>> store.close()
    """

    def __init__(
        self,
        repo: Repository,
        *,
        loose_threshold: int = 500,
        loose_bytes_threshold: int = 2 * 1024 * 1024,
        check_every_commits: int = 16,
        check_interval_s: float = 30.0,
        loose_bytes_limit: int | None = None,
        prune_grace_s: float = DEFAULT_PRUNE_GRACE_S,
        prune_interval_s: float = 600.0,
        max_packs: int = DEFAULT_MAX_PACKS,
        fsync: bool = True,
        start_delay_s: float = 2.0,
        settle_s: float = 0.5,
        mode: str = "process",
        worker_idle_s: float = 60.0,
        retention_check_s: float = 60.0,
        start: bool = True,
    ) -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        self.repo = repo
        self.loose_threshold = loose_threshold
        self.loose_bytes_threshold = loose_bytes_threshold
        self.check_every_commits = max(1, check_every_commits)
        self.check_interval_s = check_interval_s
        self.loose_bytes_limit = 2 * loose_bytes_threshold if loose_bytes_limit is None else loose_bytes_limit
        self.hold_back_wait_s = 1.0
        self.prune_grace_s = prune_grace_s
        self.prune_interval_s = prune_interval_s
        self.max_packs = max_packs
        self.fsync = fsync
        self.start_delay_s = start_delay_s
        self.settle_s = settle_s
        self.mode = mode
        self.cycles = 0
        self.passes = 0
        self.packs_written = 0
        self.held_back = 0
        self.last_result: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._error_key: str | None = None
        self._started = 0
        self._commits = 0
        self._busy = False
        self._forced = False
        self._busy_commits = 0
        self._preempt = threading.Event()
        self._inline = threading.Lock()
        self._worker = Worker(repo.root, idle_s=worker_idle_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._last_prune = -float("inf")
        self.retention_check_s = retention_check_s
        self._last_retention_check = -float("inf")
        self._thread = threading.Thread(target=self._run, name=f"gitstate-packer[{repo.root.name}]", daemon=True)
        if start:
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """True while a pass is packing or pruning (not while it only counts loose objects)."""
        return self._busy

    def start(self) -> None:
        """Start the thread (when made with ``start=False``)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def notify(self, commit_id: str) -> None:
        """A commit was made (an after-commit hook): counts, and wakes the thread every few commits. While a pass
        runs, every few commits also check the hard limit (see :meth:`_hold_back`)."""
        self._commits += 1
        if self._stop.is_set():
            return
        if self._commits >= self.check_every_commits:
            self._wake.set()
        if self._busy:
            # The thread counts nothing while its pass runs: the writers watch the limit meanwhile.
            self._busy_commits += 1
            if self._busy_commits >= self.check_every_commits:
                self._busy_commits = 0
                self._hold_back()

    def _hold_back(self) -> None:
        """Back-pressure, in the committing thread: when the loose objects reach ``loose_bytes_limit`` bytes (or
        twice ``loose_threshold``) while a pass runs, the pass is not keeping up (the packing process runs at the
        lowest priority, so a busy machine can starve it for minutes). The writer then packs them itself, at the
        application's priority, taking over from that pass; other writers wait for it. Never raises: a failure is
        logged (once) and the write it follows stays done."""
        odir = os.fspath(self.repo.git_dir / "objects")

        def over() -> LooseScan | None:
            scan = scan_loose(odir)
            return (
                scan if scan.bytes >= self.loose_bytes_limit or len(scan.objects) >= 2 * self.loose_threshold else None
            )

        try:
            if over() is None:
                return
            with self._inline:
                # A pass that is merely slow is about to delete what it packed: give it a moment first.
                with self._done:
                    self._done.wait_for(lambda: not self._busy or self._stop.is_set(), timeout=self.hold_back_wait_s)
                scan = over()  # another writer or the pass may have packed meanwhile
                if scan is None or self._stop.is_set():
                    return
                self._preempt.set()
                try:
                    lock = GcLock(self.repo.git_dir, blocking=True, timeout_s=60.0, stop=self._stop)
                    lock.acquire()
                finally:
                    self._preempt.clear()
                try:
                    out = run_pack_loose(self.repo, fsync=self.fsync, max_packs=self.max_packs, settle_s=self.settle_s)
                finally:
                    lock.release()
                    self.repo.invalidate_caches()
                self.held_back += 1
                if out.get("pack"):
                    self.packs_written += 1
                logger.info(
                    "%s: packed %d loose objects (%d bytes) in the writing thread: background packing fell behind",
                    self.repo.root,
                    len(scan.objects),
                    scan.bytes,
                )
        except Stopped:
            return
        except Exception as e:
            self._report(e)

    def request(self) -> None:
        """Ask for a pass now, whatever the thresholds: pack the loose objects, prune debris."""
        self._forced = True
        self._wake.set()

    def run_now(self, *, timeout_s: float = 120.0) -> dict[str, Any]:
        """Run a forced pass and wait for it; returns its figures (for tests and tools).

        Raises:
            TimeoutError: the pass did not finish within ``timeout_s``.
        """
        with self._done:
            target = self._started + 1  # the next pass to start sees the request
            self.request()
            if not self._done.wait_for(lambda: self.cycles >= target or not self.running, timeout=timeout_s):
                raise TimeoutError(f"the packing pass did not finish within {timeout_s}s")
        return self.last_result or {}

    def wait_for_cycle(self, cycles: int, *, timeout_s: float = 60.0) -> bool:
        """Wait until at least ``cycles`` checks have completed; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.cycles >= cycles or not self.running, timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the thread; a pass in progress is abandoned (its temp files are removed)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
        self._worker.close()
        with self._done:
            self._done.notify_all()

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        self._wake.wait(self.start_delay_s)
        first = True
        while not self._stop.is_set():
            if not first:
                self._wake.wait(self.check_interval_s)
            first = False
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._done:
                self._started += 1
                ticket = self._started
                forced, self._forced = self._forced, False
            result: dict[str, Any] = {}
            try:
                result = self._cycle(forced)
                if result.get("errno"):
                    raise OSError(result["errno"], result.get("strerror"), result.get("filename"))
                if "error" in result:
                    raise RuntimeError(result["error"])
                if self.last_error is not None:
                    logger.info("%s: background packing works again", self.repo.root)
                self.last_error = self._error_key = None
            except Stopped:
                break
            except Exception as e:  # never take the application down; try again later
                self._report(e)
                result = {"error": self.last_error}
                if self._stop.wait(min(60.0, self.check_interval_s)):
                    break
            finally:
                with self._done:
                    self.cycles = ticket
                    self.last_result = result
                    self._done.notify_all()
        with self._done:
            self._done.notify_all()

    def _report(self, e: Exception) -> None:
        """Log a failed pass once: a read-only or full disk fails every pass the same way until it is fixed."""
        if isinstance(e, OSError):
            reason, _ = write_fault(e)
            # The same fault on another temp file is the same fault.
            key = f"{errno.errorcode.get(e.errno or 0, e.errno)}"
            message = f"{reason}; the store keeps working, loose objects wait to be packed"
        else:
            key = message = f"{e}"
        if key != self._error_key:
            logger.warning("%s: background packing failed: %s", self.repo.root, message)
        else:
            logger.debug("%s: background packing failed again: %s", self.repo.root, message)
        self._error_key = key
        self.last_error = message

    def _cycle(self, forced: bool) -> dict[str, Any]:
        self._commits = 0
        odir = os.fspath(self.repo.git_dir / "objects")
        scan = scan_loose(odir)
        packs = len(list_pack_bases(os.path.join(odir, "pack")))
        need_pack = (
            forced
            or len(scan.objects) >= self.loose_threshold
            or scan.bytes >= self.loose_bytes_threshold
            or packs > self.max_packs
        )
        may_prune = forced or time.monotonic() - self._last_prune >= self.prune_interval_s
        retain = self._retention_check_due(forced)
        if not retain and not need_pack and not (may_prune and scan.has_debris(self.prune_grace_s, time.time())):
            return {"loose": len(scan.objects)}
        options: dict[str, Any] = {
            "pack": need_pack,
            "prune": may_prune,
            "retain": retain,
            "grace_s": self.prune_grace_s,
            "max_packs": self.max_packs,
            "fsync": self.fsync,
            "settle_s": self.settle_s,
        }
        self._busy = True
        try:
            if self.mode == "process":
                out = self._in_process(options)
            else:
                out = _background_pass(self.repo, pacer=Pacer(stop=self._stop, repo=self.repo), **options)
        finally:
            self._busy = False
            self.repo.invalidate_caches()  # forget packs that were rolled up
        self.passes += 1
        if "prune" in out or "prune_skipped" in out:
            self._last_prune = time.monotonic()
        if (out.get("pack") or {}).get("pack"):
            self.packs_written += 1
        out["loose"] = len(scan.objects)
        return out

    def _retention_check_due(self, forced: bool) -> bool:
        """Whether this pass looks at the stored retention policy (:mod:`.retain` decides whether it is applied):
        at most every ``retention_check_s`` seconds, and only when the store has a policy."""
        from ..retention import POLICY_FILE

        if not forced and time.monotonic() - self._last_retention_check < self.retention_check_s:
            return False
        self._last_retention_check = time.monotonic()
        return (self.repo.root / POLICY_FILE).is_file()

    def _in_process(self, options: dict[str, Any]) -> dict[str, Any]:
        if not sys.executable:
            self.mode = "thread"
        else:
            try:
                return self._worker.run(options, self._stop, self._preempt)
            except OSError as e:
                logger.warning("cannot start a packing process (%s); packing in a thread instead", e)
                self.mode = "thread"
        return _background_pass(self.repo, pacer=Pacer(stop=self._stop, repo=self.repo), **options)
