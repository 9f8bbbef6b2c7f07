"""A fork server for the kill -9 tests: imports gitstate once, then forks one writer per request.

Starting a fresh interpreter costs ~0.3 s here; forking a process that already imported the library costs a
few milliseconds, so the crash tests can afford many rounds. The server has no threads and never opens a
store, so a fork is as clean as a new process.

Protocol (one JSON object per stdin line): ``{"argv": [...writer.py arguments...], "out": "/path/to/fifo"}``.
The server answers with the child's pid on a line of its own; the child writes its output to the fifo.
Children are reaped automatically (SIGCHLD ignored), so the parent waits for a pid to disappear.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import writer

import gitstate  # noqa: F401  (imported once, shared by every fork)


def main() -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            rc = 70
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                fd = os.open(req["out"], os.O_WRONLY)
                os.dup2(fd, 1)
                os.close(fd)
                sys.stdout = os.fdopen(1, "w", buffering=1)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                rc = writer.main(req["argv"])
                sys.stdout.flush()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(rc)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
