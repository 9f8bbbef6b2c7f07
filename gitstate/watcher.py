"""The watcher: notices files edited by hand in a store and hands them, once settled, to a callback.

It is the only module that imports watchfiles. Two threads per watcher:

* the *watch* thread runs :func:`watchfiles.watch` over the store directory and records every path that changed
  (filtered: ``.git``, gitstate's temp files, editor swap/backup/temp files and what ``.gitignore`` ignores);
* the *dispatch* thread waits until each recorded path has *settled* (no event and the same size, mtime and
  inode for ``settle_ms``; a structured document must also parse), then calls ``on_change(paths)``. A path
  still changing (or not parsing) ``settle_timeout_ms`` after its first event is passed on anyway: the store's
  parse gate decides.

Paths are judged by what is on disk after the batch, never by the event type: an editor's atomic save arrives
as added/deleted pairs, and a deleted path is passed on like any other (the store compares with ``HEAD``).
Echoes of the store's own writes are passed on too and recognised by the store by content.

When the OS refuses native watches (inotify's watch or instance limit) or the store lives on a file system
without native change events (NFS, SMB, sshfs...), the watcher polls instead and logs one line saying so. Idle,
it wakes every ``step_ms`` in watchfiles' loop and otherwise sleeps.

What belongs here: :class:`Watcher` (its two threads, the settle rule, the polling fallback),
:func:`is_watched_name` and the timing defaults (``DEFAULT_*_MS``). What does not: committing what it hands on,
merging it with pending writes and quarantining what does not parse (:mod:`gitstate.ingest`, wired up by
:meth:`Store.watch <gitstate.store.Store.watch>`), the rules for temp and editor scratch names
(:mod:`gitstate.paths`), the ``watch`` command (:mod:`gitstate.cli.watch`).

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> seen = []
    >>> with Watcher(root, seen.append, settle_ms=50) as w:
    ...     _ = (root / "state.json").write_text('{"a": 1}')
    ...     w.wait_idle(timeout_s=10)
    True
    >>> seen
    [{'state.json'}]
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

from .codecs import DEFAULT as DEFAULT_CODECS
from .codecs import Codecs
from .errors import GitStateError
from .paths import is_scratch_name, is_temp_name

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_POLL_DELAY_MS",
    "DEFAULT_SETTLE_MS",
    "DEFAULT_SETTLE_TIMEOUT_MS",
    "Watcher",
    "is_watched_name",
]

logger = logging.getLogger("gitstate.watcher")

#: Longest time watchfiles groups a stream of events into one batch.
DEFAULT_DEBOUNCE_MS: Final = 500
#: A path must be quiet (no event, same size/mtime/inode) this long before it is handed on.
DEFAULT_SETTLE_MS: Final = 200
#: A path still changing (or not parsing) this long after its first event is handed on anyway.
DEFAULT_SETTLE_TIMEOUT_MS: Final = 2000
#: Interval between two scans when polling.
DEFAULT_POLL_DELAY_MS: Final = 300

_STEP_MS: Final = 50
#: How much earlier than the events show a file's change time is trusted (wall-clock jumps, coarse timestamps).
_MAX_TRUSTED_AGE_S: Final = 0.25
_RUST_TIMEOUT_MS: Final = 5000
_START_TIMEOUT_S: Final = 15.0
_RESTART_DELAY_S: Final = 1.0
_PROBE_PREFIX: Final = "gitstate-watch-probe-"
# File systems whose changes made by other machines (or at all, for some FUSE ones) raise no native events.
_NO_NATIVE_EVENTS: Final = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "vboxsf",
        "vmhgfs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.vmhgfs-fuse",
        "davfs",
        "fuse.davfs2",
    }
)

# (size, mtime_ns, inode, ctime_ns) of a regular file, None when there is no regular file at the path.
Sig = tuple[int, int, int, int] | None


def is_watched_name(name: str) -> bool:
    """False for base names the watcher never hands on: gitstate's temp files and editor scratch files
    (vim's ``.x.swp``/``x~``/``4913``, emacs' ``#x#``/``.#x``, ``*.tmp``, ``sed -i``'s ``sedXXXXXX``...).

    Example:
        >>> is_watched_name("state.json"), is_watched_name(".state.json.swp"), is_watched_name("4913")
        (True, False, False)
    """
    return not (is_temp_name(name) or is_scratch_name(name))


def _sig(full: str) -> Sig:
    try:
        st = os.lstat(full)
    except OSError:  # gone, or unreadable: no regular file to judge
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _fs_type(path: str) -> str | None:
    """The file system type holding ``path`` (Linux ``/proc/self/mountinfo``), None when unknown."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, best_len = None, -1
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best_len:
            kind = right.split()
            best, best_len = (kind[0] if kind else None), len(mount)
    return best


def _is_limit_error(e: BaseException) -> bool:
    """True for the errors the OS gives when it has no more native watches (or watch instances) to hand out."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
        return True
    text = str(e).lower()
    return any(
        s in text
        for s in (
            "watch limit",
            "maxfileswatch",
            "no space left",
            "too many open files",
            "os error 28",
            "os error 24",
            "error creating recommended watcher",
        )
    )


@dataclass
class _Pending:
    first: float  # monotonic time of the first event
    touched: float  # monotonic time of the last event
    sig: Sig = None
    stable_since: float = 0.0
    checked: bool = False  # sig taken at least once
    bad_parse_sig: Sig | None = None  # the sig that failed to parse (re-check only when it changes)
    bad_parse: bool = False


class Watcher:
    """Watches a store directory and calls ``on_change(paths)`` with the store-relative, ``/``-separated paths
    of files that changed and have settled.

    Usually started by :meth:`gitstate.Store.watch` (or ``gitstate.open(..., watch=True)``) or by
    ``gitstate watch``; the callback is then the store's ingest of hand edits.

    Args:
        root: the directory to watch (recursively).
        on_change: called on the watcher's dispatch thread with a set of paths; deleted files are included.
            Exceptions are logged and do not stop the watcher.
        is_ignored: ``path -> bool`` for what ``.gitignore`` ignores (directories are asked with a trailing
            ``/``).
        ignore_factory: builds a fresh ``is_ignored`` when a ``.gitignore`` changes.
        debounce_ms: longest time events are grouped into one batch by watchfiles.
        settle_ms: how long a path must be quiet before it is handed on.
        settle_timeout_ms: bound on the wait for a path to settle and parse.
        wait_for_parse: hold a settled JSON/YAML/text file that does not parse until it does or the timeout.
        force_polling: True to poll, False for native events, None to decide (polling on network and FUSE file
            systems, and as a fallback when the OS watch limit is hit).
        poll_delay_ms: interval between scans when polling.
        step_ms: watchfiles' wake-up interval (its latency floor and idle cost).
        dispatch_on_stop: on :meth:`stop`, hand on paths still waiting to settle instead of dropping them.
        codecs: the registry that decides whether a file parses (a store passes its own); default
            :data:`gitstate.codecs.DEFAULT`.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> w = Watcher(root, lambda paths: print(sorted(paths)), settle_ms=50)
        >>> w.start()
        >>> _ = (root / "notes.md").write_text("hello\\n")
        >>> w.wait_idle(timeout_s=10)
        ['notes.md']
        True
        >>> w.stop()
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        on_change: Callable[[set[str]], object],
        *,
        is_ignored: Callable[[str], bool] | None = None,
        ignore_factory: Callable[[], Callable[[str], bool]] | None = None,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        settle_ms: int = DEFAULT_SETTLE_MS,
        settle_timeout_ms: int = DEFAULT_SETTLE_TIMEOUT_MS,
        wait_for_parse: bool = True,
        force_polling: bool | None = None,
        poll_delay_ms: int = DEFAULT_POLL_DELAY_MS,
        step_ms: int = _STEP_MS,
        dispatch_on_stop: bool = True,
        codecs: Codecs | None = None,
    ) -> None:
        if min(debounce_ms, settle_ms, settle_timeout_ms, poll_delay_ms) < 0 or step_ms <= 0:
            raise ValueError("debounce_ms, settle_ms, settle_timeout_ms and poll_delay_ms must be >= 0, step_ms > 0")
        self.root = Path(os.path.realpath(root))
        self._prefix = str(self.root).rstrip("/") + "/"
        self._on_change = on_change
        self._codecs = codecs if codecs is not None else DEFAULT_CODECS
        self._ignore_factory = ignore_factory
        self._is_ignored: Callable[[str], bool] = is_ignored or (
            ignore_factory() if ignore_factory else (lambda path: False)
        )
        self.debounce_ms = debounce_ms
        self.settle_ms = settle_ms
        self.settle_timeout_ms = max(settle_timeout_ms, settle_ms)
        self.wait_for_parse = wait_for_parse
        self.poll_delay_ms = poll_delay_ms
        self.step_ms = step_ms
        self.dispatch_on_stop = dispatch_on_stop
        self._force_polling = force_polling
        self._polling = False
        self._stop = threading.Event()
        self._cv = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._known: dict[str, Sig] = {}
        self._busy = False  # the dispatch thread is inside on_change
        self._watch_thread: threading.Thread | None = None
        self._dispatch_thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._probe_name = f"{_PROBE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-"
        git_dir = self.root / ".git"
        self._probe_dir = git_dir if git_dir.is_dir() else self.root
        self._probe_sent = 0  # generation of the last probe file written
        self._probe_seen = 0  # highest generation the watch thread has recorded a batch for
        self._fatal: BaseException | None = None
        self.dispatched = 0  # number of on_change calls made (for tests and stats)

    # ================================================================= lifecycle
    def __repr__(self) -> str:
        mode = "polling" if self._polling else "native"
        return f"<gitstate.Watcher {str(self.root)!r} {'running' if self.running else 'stopped'} {mode}>"

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        t = self._watch_thread
        return t is not None and t.is_alive() and not self._stop.is_set()

    @property
    def polling(self) -> bool:
        """True when the watcher polls instead of using the OS's native change events."""
        return self._polling

    def start(self, *, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Start watching in background (daemon) threads; return once watching has begun, so no later edit is
        missed. Idempotent while running.

        Raises:
            GitStateError: the directory cannot be watched at all (missing, permission denied).
        """
        if self.running:
            return
        if not self.root.is_dir():
            raise GitStateError(f"cannot watch {self.root}: not a directory")
        self._stop.clear()
        self._error = self._fatal = None
        self._known = dict(self._scan())
        self._polling = bool(self._force_polling)
        if self._force_polling is None:
            fs = _fs_type(str(self.root))
            if fs in _NO_NATIVE_EVENTS or (fs or "").startswith("fuse."):
                self._polling = True
                logger.warning(
                    "%s is on a %s file system without reliable change events; polling every %d ms",
                    self.root,
                    fs,
                    self.poll_delay_ms,
                )
        self._watch_thread = threading.Thread(
            target=self._watch_loop, name=f"gitstate-watch[{self.root.name}]", daemon=True
        )
        self._dispatch_thread = threading.Thread(
            target=self._dispatch_loop, name=f"gitstate-watch-dispatch[{self.root.name}]", daemon=True
        )
        self._dispatch_thread.start()
        self._watch_thread.start()
        self._await_ready(timeout_s)

    def _await_ready(self, timeout_s: float) -> None:
        if self._sync(timeout_s=timeout_s):
            return
        fatal = self._fatal or (self._error if not self._watch_thread_alive() else None)
        if fatal is not None:
            self.stop()
            raise GitStateError(f"cannot watch {self.root}: {fatal}") from fatal
        logger.warning(
            "%s: the watcher did not confirm it started within %.0f s; edits made now may be picked up late",
            self.root,
            timeout_s,
        )

    def _sync(self, *, timeout_s: float) -> bool:
        """Write a probe file and wait until the watch thread has recorded the batch that holds it: every event
        of a write made before this call has then been recorded. Rewrites the probe while waiting (a poller
        compares snapshots; a backend still starting may miss the first write)."""
        with self._cv:
            self._probe_sent += 1
            gen = self._probe_sent
        probe = self._probe_dir / f"{self._probe_name}{gen}"
        deadline = time.monotonic() + timeout_s
        n = 0
        try:
            while True:
                with self._cv:
                    if self._probe_seen >= gen:
                        return True
                if self._fatal is not None or self._stop.is_set() or time.monotonic() > deadline:
                    return False
                n += 1
                try:
                    probe.write_bytes(b"x" * (n % 64 + 1))
                except OSError as e:  # a read-only store: nothing can confirm; the caller decides
                    logger.debug("cannot write the watcher probe %s: %s", probe, e)
                    return False
                interval = (self.poll_delay_ms if self._polling else 0) / 1000 + 0.1
                with self._cv:
                    if self._probe_seen < gen:
                        self._cv.wait(interval)
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def _watch_thread_alive(self) -> bool:
        t = self._watch_thread
        return t is not None and t.is_alive()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Stop watching and join the threads. Paths still settling are handed on first (see
        ``dispatch_on_stop``). Idempotent; safe to call from ``on_change``."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        me = threading.current_thread()
        for t in (self._watch_thread, self._dispatch_thread):
            if t is not None and t is not me and t.is_alive():
                t.join(timeout_s)

    def run(self, *, handle_signals: bool = True, on_ready: Callable[[], object] | None = None) -> None:
        """Watch in the foreground until :meth:`stop` is called or, from the main thread, SIGINT or SIGTERM
        arrives; then stop cleanly and return. Works on a watcher already started (``Store.watch()``).

        Args:
            handle_signals: stop on SIGINT and SIGTERM (main thread only; the previous handlers come back
                afterwards).
            on_ready: called once watching has begun and the signal handlers are in place.

        Raises:
            GitStateError: the directory cannot be watched, or went away.

        Example:
            >>> Watcher("/var/lib/agent", print).run()  # doctest: +SKIP
        """
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                logger.info("received signal %d; stopping the watcher", signum)
                self._stop.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, OSError):
                    previous[signum] = signal.signal(signum, on_signal)
        try:
            self.start()
            if on_ready is not None:
                on_ready()
            while not self._stop.wait(1.0):
                if not self._watch_thread_alive():
                    break
        finally:
            self.stop()
            for number, handler in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(number, handler)
        if self._fatal is not None:
            raise GitStateError(f"stopped watching {self.root}: {self._fatal}") from self._fatal

    def wait_idle(self, *, timeout_s: float = 30.0) -> bool:
        """Wait until no path is waiting to settle and no ``on_change`` call is running; True if reached.
        Meant for tests and scripts ("the edits I just made have been handed on").

        Example:
            >>> watcher.wait_idle(timeout_s=5)  # doctest: +SKIP
            True
        """
        deadline = time.monotonic() + timeout_s
        if not self.running:
            return False
        if not self._sync(timeout_s=timeout_s):
            if self._fatal is not None or self._stop.is_set() or time.monotonic() >= deadline:
                return False
            # No probe possible (read-only store): give the OS a moment to deliver earlier events.
            time.sleep(min(1.0, deadline - time.monotonic()))
        with self._cv:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    # ================================================================= filtering
    def _relative(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        return path[len(self._prefix) :]

    def _excluded(self, rel: str, *, is_dir: bool = False) -> bool:
        parts = rel.split("/")
        if any(p.casefold() == ".git" for p in parts):
            return True
        if any(not is_watched_name(p) for p in parts):
            return True
        try:
            return bool(self._is_ignored(rel + "/" if is_dir else rel))
        except Exception:
            return False

    def _accept(self, change: Any, path: str) -> bool:
        """watchfiles filter (called on the watch thread for every raw event): drop ``.git`` early, keep the
        probe files (:meth:`_record` notes and drops them)."""
        rel = self._relative(path)
        if not rel:
            return path == self._prefix[:-1]  # the directory itself (deleted, moved): the loop checks it
        if rel.startswith(".git/") or rel == ".git":
            return self._probe_name in rel
        return True

    def _scan(self, under: str = "") -> Iterable[tuple[str, Sig]]:
        """Regular files below ``under`` (store-relative) that the watcher hands on, with their signatures."""
        start = self.root / under if under else self.root
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if not os.path.islink(os.path.join(dirpath, d)) and not self._excluded(rel_dir + d, is_dir=True)
            ]
            for name in filenames:
                rel = rel_dir + name
                if self._excluded(rel):
                    continue
                sig = _sig(os.path.join(dirpath, name))
                if sig is not None:
                    yield rel, sig

    def _expand(self, rel: str) -> set[str]:
        """The file paths a raw changed path stands for: itself, the files in a directory that appeared, the
        known files below a directory that went away."""
        full = self._prefix + rel
        try:
            st = os.lstat(full)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            if self._excluded(rel, is_dir=True):
                return set()
            return {p for p, _ in self._scan(rel)} | self._known_under(rel)
        if self._excluded(rel):
            return set()
        if st is None:  # gone: it may have been a directory
            return {rel} | self._known_under(rel)
        return {rel}

    def _known_under(self, rel_dir: str) -> set[str]:
        prefix = rel_dir + "/"
        with self._cv:
            return {p for p in self._known if p.startswith(prefix)}

    def _record(self, raw_paths: Iterable[str]) -> None:
        """Note the paths of one batch as pending (watch thread)."""
        rels: set[str] = set()
        probe = 0
        for raw in raw_paths:
            rel = self._relative(raw)
            if not rel:
                continue
            _, _, name = rel.rpartition("/")
            if name.startswith(self._probe_name):
                with contextlib.suppress(ValueError):
                    probe = max(probe, int(name[len(self._probe_name) :]))
                continue
            rels.add(rel)
        try:
            self._record_paths(rels)
        finally:
            if probe:
                with self._cv:
                    self._probe_seen = max(self._probe_seen, probe)
                    self._cv.notify_all()

    def _record_paths(self, rels: set[str]) -> None:
        if self._ignore_factory is not None and any(r == ".gitignore" or r.endswith("/.gitignore") for r in rels):
            try:
                self._is_ignored = self._ignore_factory()
            except Exception as e:
                logger.warning("cannot reload .gitignore rules: %s", e)
        paths: set[str] = set()
        for rel in rels:
            paths |= self._expand(rel)
        if not paths:
            return
        now = time.monotonic()
        with self._cv:
            for p in paths:
                entry = self._pending.get(p)
                if entry is None:
                    self._pending[p] = _Pending(first=now, touched=now)
                else:
                    entry.touched = now
            self._cv.notify_all()
        logger.debug("changed: %s", ", ".join(sorted(paths)))

    # ================================================================= the watch thread
    def _watch_loop(self) -> None:
        import watchfiles

        first = True
        while not self._stop.is_set():
            if not first:
                self._rescan()
            first = False
            try:
                for changes in watchfiles.watch(
                    self.root,
                    watch_filter=self._accept,
                    debounce=self.debounce_ms,
                    step=self.step_ms,
                    stop_event=self._stop,
                    rust_timeout=_RUST_TIMEOUT_MS,
                    yield_on_timeout=False,
                    raise_interrupt=False,
                    force_polling=True if self._polling else self._force_polling,
                    poll_delay_ms=self.poll_delay_ms,
                    recursive=True,
                    ignore_permission_denied=True,
                ):
                    self._record(path for _, path in changes)
                    if not self.root.is_dir():
                        raise FileNotFoundError(errno.ENOENT, "the directory was removed or moved", str(self.root))
                return  # stop_event set, or a signal in the main thread
            except Exception as e:
                if self._stop.is_set():
                    return
                if not self.root.is_dir() or isinstance(e, (FileNotFoundError, PermissionError)):
                    self._error = self._fatal = e
                    logger.error("stopped watching %s: %s", self.root, e)
                    self._stop.set()
                    with self._cv:
                        self._cv.notify_all()
                    return
                if not self._polling and _is_limit_error(e):
                    self._polling = True
                    logger.warning(
                        "the OS file watch limit is reached (%s); watching %s by polling every %d ms "
                        "instead (raise fs.inotify.max_user_watches to avoid this)",
                        str(e).splitlines()[0][:200],
                        self.root,
                        self.poll_delay_ms,
                    )
                    continue
                self._error = e
                logger.error("the watcher of %s failed (%s); restarting in %.0f s", self.root, e, _RESTART_DELAY_S)
                if self._stop.wait(_RESTART_DELAY_S):
                    return

    def _rescan(self) -> None:
        """After a restart of the backend: hand on what changed while nothing was watching."""
        current = dict(self._scan())
        with self._cv:
            known = dict(self._known)
        changed = {p for p in current.keys() | known.keys() if current.get(p) != known.get(p)}
        if changed:
            logger.info("%d file(s) changed while the watcher restarted", len(changed))
            self._record_paths(changed)

    # ================================================================= the dispatch thread
    def _parses(self, rel: str) -> bool:
        codec = self._codecs.for_doc(rel)
        if codec.name == "bytes":
            return True
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            return True  # gone or unreadable: let the store decide
        try:
            codec.decode(data, rel)
        except Exception:  # DecodeError, or anything a codec raises on odd input
            return False
        return True

    def _dispatch_loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stop.is_set():
                    self._cv.wait()
                if self._stop.is_set():
                    break
                items = list(self._pending.items())
            now = time.monotonic()
            ready, next_due = self._settled(items, now)
            batch = self._take(ready, now)
            if batch:
                self._call(batch)
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
                continue
            with self._cv:
                wait = next_due - time.monotonic()
                if wait > 0 and not self._stop.is_set():
                    self._cv.wait(wait)
        if self.dispatch_on_stop:
            with self._cv:
                left = set(self._pending)
                self._pending.clear()
            if left:
                self._call(left)
        with self._cv:
            self._pending.clear()
            self._busy = False
            self._cv.notify_all()

    def _settled(self, items: list[tuple[str, _Pending]], now: float) -> tuple[dict[str, Sig], float]:
        """Which pending paths are ready to hand on (path -> signature), and when to look again."""
        settle_s = self.settle_ms / 1000
        timeout_s = self.settle_timeout_ms / 1000
        ready: dict[str, Sig] = {}
        next_due = now + max(settle_s, 0.01)
        for rel, p in items:
            sig = _sig(self._prefix + rel)
            if not p.checked or sig != p.sig:
                p.sig, p.stable_since, p.checked = sig, self._changed_at(sig, now), True
            quiet_since = self._quiet_since(p, now)
            timed_out = now - p.first >= timeout_s
            due = quiet_since + settle_s
            if now < due and not timed_out:
                next_due = min(next_due, due)
                continue
            if not timed_out and sig is not None and self._still_unparsable(rel, p, sig):
                next_due = min(next_due, p.first + timeout_s)
                continue
            if timed_out and now - quiet_since < settle_s:
                logger.warning("%s is still changing after %d ms; handing it on as it is", rel, self.settle_timeout_ms)
            ready[rel] = sig
        return ready, next_due

    @staticmethod
    def _changed_at(sig: Sig, now: float) -> float:
        """When the file last changed, on the monotonic clock: its ctime (every write and rename updates it), so
        the settle time counts from the save itself rather than from when watchfiles reported it (~50-100 ms
        later). ``now`` for a file that is gone."""
        if sig is None:
            return now
        age = time.time() - sig[3] / 1e9
        return now - min(max(age, 0.0), _MAX_TRUSTED_AGE_S + 10.0)

    def _quiet_since(self, p: _Pending, now: float) -> float:
        """Since when a pending path has been quiet. With the file present, its change time; never earlier than
        ``_MAX_TRUSTED_AGE_S`` before what the events alone prove (watchfiles yields after ``step_ms`` without
        events), so a wall-clock jump cannot cut the settle time by more than that. Without the file, the last
        event."""
        by_events = p.touched - self.step_ms / 1000
        if p.sig is None:
            return max(p.touched, p.stable_since)
        return max(p.stable_since, by_events - _MAX_TRUSTED_AGE_S)

    def _still_unparsable(self, rel: str, p: _Pending, sig: Sig) -> bool:
        """With ``wait_for_parse``, True while the file (as of ``sig``) does not parse; parsed once per signature."""
        if self.wait_for_parse and (p.bad_parse_sig != sig or not p.bad_parse):
            ok = self._parses(rel)
            p.bad_parse, p.bad_parse_sig = (not ok), sig
            if not ok:
                logger.debug("%s does not parse yet; waiting", rel)
        return p.bad_parse and p.bad_parse_sig == sig

    def _take(self, ready: dict[str, Sig], now: float) -> set[str]:
        """Remove the ready paths from the pending set (unless a newer event came for one) and return them."""
        batch: set[str] = set()
        with self._cv:
            for rel, sig in ready.items():
                entry = self._pending.get(rel)
                if entry is None or entry.touched > now:
                    continue  # a new event arrived after the check: wait for it to settle too
                del self._pending[rel]
                batch.add(rel)
                if sig is None:
                    self._known.pop(rel, None)
                else:
                    self._known[rel] = sig
            if batch:
                self._busy = True
        return batch

    def _call(self, paths: set[str]) -> None:
        logger.debug("handing on %s", ", ".join(sorted(paths)))
        self.dispatched += 1
        try:
            self._on_change(paths)
        except Exception:
            logger.exception("the watcher callback failed for %s", ", ".join(sorted(paths)))
