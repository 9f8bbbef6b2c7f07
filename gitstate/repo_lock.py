"""The store's write lock across threads and processes: an flock on .git/gitstate.lock taken in turn through a
ticket queue (a bare flock is unfair), and the removal of provably stale *.lock files git or we left behind.

What belongs here: :class:`RepositoryLock` (:meth:`~RepositoryLock.lock`, re-entrant within a thread, with a
timeout), the ticket queue in ``.git/gitstate/lock-queue/``, who holds the lock (for ``doctor``) and the stale lock
and temp files (:meth:`~RepositoryLock.recover_stale_locks`). What does not: ref compare-and-swap (repo.py), objects
(repo_objects.py), the order of a store's own locks (journal.py).

gitstate keeps its own lock: dulwich takes none over a read-modify-write, only a lock file per file it writes, and
its ``WorkTree.commit`` reads HEAD twice (with 4 processes committing, 13-19 % of the commits reported done were
lost, ARCHITECTURE.md). The queue is there because a bare flock is unfair (BENCHMARKS.md, issue 11: the slowest of
four writers made 0.99 of the median writer's commits, against 0.11 with a bare flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .errors import LockError
from .paths import is_temp_name

if TYPE_CHECKING:  # dulwich is imported where objects are touched: `gitstate log` reads refs and the index only
    pass

logger = logging.getLogger("gitstate.repo")

_LOCK_TIMEOUT_S: Final = 30.0
_LOCK_POLL_MAX_S: Final = 0.002  # longest back-off between two tries of a busy flock (the hand-off delay)
_LOCK_QUEUE_DIR: Final = "lock-queue"  # under .git/gitstate/: see _LockQueue
_SCRATCH_TICKET: Final = "new-"  # a ticket being made, not yet in the queue
_STALE_LOCK_AGE_S: Final = 10.0  # fallback when /proc cannot tell us who holds a file


def _flock_until(fd: int, op: int, deadline: float, error: LockError) -> None:
    """``flock(fd, op)``, polling until ``deadline`` (monotonic), then ``error``. flock has no timeout of its
    own, and the store's lock must give up with a LockError rather than hang behind a hung writer."""
    delay = 0.0001
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise error from None
            time.sleep(delay)  # lock back-off, not a test wait
            delay = min(delay * 2, _LOCK_POLL_MAX_S)


class _LockQueue:
    """The waiting line in front of the store's ``flock``: it makes the lock roughly first come, first served.

    A bare ``flock`` is unfair: the process that releases it takes it again before the waiters wake up (four
    busy writers made 21, 123, 296 and 419 commits in the same 8 s). So each process takes a *ticket* first: a
    file in the queue directory named by its arrival time, which it holds ``LOCK_EX`` while it waits and while
    it holds the store lock. It waits until the ticket just before its own is gone, then takes the store's
    ``flock`` (which alone keeps writers apart: the queue only decides the order). On release it drops the
    ``flock`` first, then its ticket, so the next in line finds the lock free. A process that comes back for
    the lock gets a new, later ticket: behind everyone who was waiting.

    Crash safety: the OS drops the ``flock`` of a killed process, so its ticket becomes lockable; whoever is
    behind it removes it and moves up. A ticket is renamed into the queue only once locked, so no one ever
    removes a live waiter's ticket; scratch files of a process killed in between are removed once old.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def enter(self) -> _Ticket | None:
        """Join the queue; None when the queue cannot be written (a read-only store: no order, still safe)."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}"
        scratch = self.path / f"{_SCRATCH_TICKET}{name}"
        try:
            try:
                fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            logger.debug("cannot join the lock queue in %s (%s); taking the lock without it", self.path, e)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else can hold it
            os.rename(scratch, self.path / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            os.close(fd)
            raise
        return _Ticket(self, name, fd)

    def tickets(self) -> list[str]:
        """Names of the tickets in the queue, in order; scratch files older than a minute are removed."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if not n.startswith(_SCRATCH_TICKET):
                out.append(n)
                continue
            with contextlib.suppress(OSError):  # left by a process killed between creating and renaming it
                if time.time() - os.lstat(self.path / n).st_mtime > 60:
                    os.unlink(self.path / n)
        return sorted(out)


class _Ticket:
    """One process's place in a :class:`_LockQueue` (held ``LOCK_EX`` through ``fd`` until :meth:`leave`)."""

    def __init__(self, queue: _LockQueue, name: str, fd: int) -> None:
        self.queue = queue
        self.name = name
        self.fd = fd

    def wait_turn(self, deadline: float, error: LockError) -> None:
        """Return once every ticket before this one is gone (released, or removed here after a crash)."""
        while True:
            ahead = [n for n in self.queue.tickets() if n < self.name]
            if not ahead:
                return
            path = self.queue.path / ahead[-1]
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                _flock_until(fd, fcntl.LOCK_SH, deadline, error)
                # Lockable: its owner let go of it. A live owner unlinks it before that; a killed one could not.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)

    def leave(self) -> None:
        """Leave the queue (the next ticket's owner is waiting for this)."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.queue.path / self.name)
        finally:
            os.close(self.fd)


class RepositoryLock:
    """The locking part of :class:`gitstate.repo.Repository` (see the module note)."""

    root: Path
    git_dir: Path
    meta_dir: Path
    _write_mutex: threading.RLock
    _lock_owner: int | None
    _lock_serial: int  # counts outermost acquisitions: caches checked once per hold key on it
    _lock_depth: int
    _lock_fd: int | None
    branch_ref: str

    if TYPE_CHECKING:  # given by RepositoryObjects (repo_objects.py)

        def repair_pack_indexes(self) -> list[str]: ...

    # ----------------------------------------------------------------- locking
    @contextlib.contextmanager
    def lock(self, timeout_s: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the store's inter-process lock (re-entrant within a thread), granted in arrival order.

        Threads of this process queue on a mutex; processes take a ticket in ``.git/gitstate/lock-queue/`` and
        wait for the one before theirs, then take the ``flock`` on ``.git/gitstate.lock`` (see
        :class:`_LockQueue`). A process killed while waiting or holding loses its place: the OS drops its
        ``flock`` and the next waiter removes its ticket.

        Raises:
            LockError: another process held the lock for longer than ``timeout_s``.
        """
        me = threading.get_ident()
        if self._lock_owner == me:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        deadline = time.monotonic() + timeout_s
        if not self._write_mutex.acquire(timeout=timeout_s):
            raise LockError(f"{self.root}: timed out after {timeout_s:.0f}s waiting for another thread's flush")
        try:
            ticket = _LockQueue(self.meta_dir / _LOCK_QUEUE_DIR).enter()
            try:
                fd = os.open(self.git_dir / "gitstate.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    if ticket is not None:
                        ticket.wait_turn(deadline, self._lock_timeout_error(timeout_s))
                    _flock_until(fd, fcntl.LOCK_EX, deadline, self._lock_timeout_error(timeout_s))
                    with contextlib.suppress(OSError):  # who holds it, for doctor (fixed width: no truncate)
                        os.pwrite(fd, f"{os.getpid():<20}\n".encode(), 0)
                    self._lock_fd = fd
                    self._lock_owner = me
                    self._lock_depth = 1
                    self._lock_serial += 1
                    try:
                        yield
                    finally:
                        self._lock_owner = None
                        self._lock_depth = 0
                        self._lock_fd = None
                        fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
            finally:
                if ticket is not None:
                    ticket.leave()  # after the flock is released: the next in line finds it free
        finally:
            self._write_mutex.release()

    def _lock_timeout_error(self, timeout_s: float) -> LockError:
        return LockError(
            f"{self.root}: another process has held the store lock for over {timeout_s:.0f}s "
            "(a hung writer?); 'gitstate doctor' shows who"
        )

    def lock_busy(self) -> bool:
        """True while another thread of this process holds :meth:`lock` (a flush is writing)."""
        owner = self._lock_owner
        return owner is not None and owner != threading.get_ident()

    def holds_lock(self) -> bool:
        """True if the calling thread holds :meth:`lock`."""
        return self._lock_owner == threading.get_ident()

    def lock_holder_pid(self) -> int | None:
        """PID of a process holding the store lock right now, or None (for ``doctor``)."""
        path = self.git_dir / "gitstate.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with contextlib.suppress(ValueError, OSError):
                    return int(os.pread(fd, 32, 0).decode().strip() or 0) or -1
                return -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _file_is_open_anywhere(path: Path) -> bool | None:
        """True/False if /proc says whether any process has ``path`` open; None if it cannot tell."""
        proc = Path("/proc")
        if not proc.is_dir():
            return None
        target = str(path)
        try:
            pids = [p for p in os.listdir(proc) if p.isdigit()]
        except OSError:
            return None
        for pid in pids:
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        return True
                except OSError:
                    continue
        return False

    def stale_lock_files(self) -> list[Path]:
        """Git ``*.lock`` files in the places gitstate writes that no live process holds."""
        candidates = [
            self.git_dir / "index.lock",
            self.git_dir / "HEAD.lock",
            self.git_dir / "packed-refs.lock",
            self.git_dir / f"{self.branch_ref}.lock",
            self.git_dir / "config.lock",
        ]
        candidates += list((self.git_dir / "refs").rglob("*.lock"))
        stale = []
        for p in dict.fromkeys(candidates):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            held = self._file_is_open_anywhere(p)
            if held is False or (held is None and time.time() - st.st_mtime > _STALE_LOCK_AGE_S):
                stale.append(p)
        return stale

    def recover_stale_locks(self) -> list[Path]:
        """Remove stale lock and temp files; call with :meth:`lock` held. Returns what was removed."""
        assert self.holds_lock()
        removed = []
        for p in self.stale_lock_files():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
                removed.append(p)
                logger.warning("removed stale lock file %s (left by a process that died)", p)
        # A power loss can take the index of a pack a flush wrote (written without fsync): make it again.
        self.repair_pack_indexes()
        # Our own temp files are only ever open while the store lock is held: any found now are debris.
        for d in (self.git_dir, *(self.git_dir / "objects").glob("[0-9a-f][0-9a-f]")):
            with contextlib.suppress(OSError):
                for entry in os.scandir(d):
                    if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
        return removed
