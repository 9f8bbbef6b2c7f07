"""Worker processes for tests/test_processes.py and tests/test_hardening.py.

Run as ``python tests/workers/writer.py COMMAND STORE [options]``. Each command opens the store through the
library, writes, and reports on stdout, one line per event, flushed at once (the parent reads them through a pipe,
so a line printed is a fact the parent may rely on even if this process is killed a moment later).

Commands:
    loop       set ``n`` (and a rotating key in a second document) then flush(), forever or ``--count`` times;
               after each flush() returns print ``<n> <commit id>`` (the kill -9 torture uses this).
    keys       write ``--count`` different keys ``w<worker>.k<i>`` of one document, flushing each (or debounced).
    samekey    write the same key ``shared`` ``--count`` times with this worker's own values.
    pending    leave writes pending (long debounce), print ``ready``, then exit normally (``--then exit``),
               or wait for a signal (``--then wait``), or keep writing until killed (``--then busy``).
    set        one set() + flush(); print the commit id.
    race       print ``ready``, wait for a line on stdin, then set() + flush() back to back for ``--seconds``;
               print one JSON line: ``{"commits": N, "waits_ms": [...]}`` (time spent getting the store lock,
               measured around each flush's lock).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator

import gitstate

logger = logging.getLogger("gitstate.tests.worker")


def _say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["loop", "keys", "samekey", "pending", "set", "race"])
    ap.add_argument("path")
    ap.add_argument("--doc", default="state.json")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--worker", default="0")
    ap.add_argument("--durability", default="manual")
    ap.add_argument("--debounce-ms", type=int, default=60_000)
    ap.add_argument("--max-delay-ms", type=int, default=120_000)
    ap.add_argument("--fsync", type=int, default=0)
    ap.add_argument("--then", default="exit", choices=["exit", "wait", "busy", "close"])
    ap.add_argument("--key", default="n")
    ap.add_argument("--value", default="1")
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # conftest.wait_exit asks for the stacks of a hang
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    store = gitstate.open(
        args.path,
        durability=args.durability,
        debounce_ms=args.debounce_ms,
        max_delay_ms=args.max_delay_ms,
        fsync=bool(args.fsync),
    )

    if args.command == "loop":
        n = int(store.get(args.doc, "n", default=0))
        i = 0
        while args.count == 0 or i < args.count:
            i += 1
            n += 1
            store.set(args.doc, "n", n)
            store.set("rotating.json", f"k{n % 16}", {"n": n, "pad": "x" * args.pad})
            cid = store.flush()
            _say(n, cid)
        store.close()
        _say("done")
        return 0

    if args.command == "keys":
        ids = []
        for i in range(args.count):
            store.set(args.doc, ("w" + args.worker, f"k{i}"), i)
            if args.durability == "manual":
                cid = store.flush()
                if cid:
                    ids.append(cid)
                    _say("commit", cid)
        store.close()
        _say("done", len(ids))
        return 0

    if args.command == "samekey":
        for i in range(args.count):
            store.set(args.doc, "shared", {"writer": args.worker, "i": i, "pad": "y" * args.pad})
            cid = store.flush()
            if cid:
                _say("commit", cid)
        store.close()
        _say("done")
        return 0

    if args.command == "race":
        return _race(store, args)

    if args.command == "set":
        store.set(args.doc, args.key, args.value)
        _say("commit", store.flush())
        store.close()
        return 0

    return _pending(store, args)


def _pending(store: gitstate.Store, args: argparse.Namespace) -> int:
    """Writes that only exit/signal handling can save; ``--then`` says how the process ends."""
    for i in range(args.count or 3):
        store.set(args.doc, f"k{i}", i)
    store.set(args.doc, args.key, args.value)
    _say("ready", store.pending)
    if args.then == "exit":
        return 0  # no close(): the exit handler must flush
    if args.then == "close":
        store.close()
        return 0
    if args.then == "wait":
        threading.Event().wait()  # until a signal ends us
        return 0
    i = 0
    while True:  # busy: the main thread is inside the store when the signal lands
        i += 1
        store.set(args.doc, "busy", i)


def _race(store: gitstate.Store, args: argparse.Namespace) -> int:
    """Write back to back for ``args.seconds`` after the parent's go; report commits and lock waits."""
    repo = store._repo
    take = repo.lock
    waits_ms: list[float] = []

    @contextlib.contextmanager
    def timed_lock(timeout_s: float = 30.0) -> Iterator[None]:
        outer = not repo.holds_lock()
        t0 = time.perf_counter()
        with take(timeout_s):
            if outer:
                waits_ms.append((time.perf_counter() - t0) * 1000)
            yield

    repo.lock = timed_lock  # type: ignore[method-assign]
    _say("ready")
    sys.stdin.readline()
    deadline = time.monotonic() + args.seconds
    commits = 0
    i = 0
    while time.monotonic() < deadline:
        i += 1
        store.set(args.doc, ("w" + args.worker, "n"), i)
        if store.flush():
            commits += 1
    store.close()
    _say(json.dumps({"commits": commits, "waits_ms": waits_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
