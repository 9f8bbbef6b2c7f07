"""git:// remotes (a git daemon): dulwich's TCP client with connect and read timeouts and batched writes.

gitstate keeps its own connect: dulwich's sets no timeout (a stalled daemon would hang a pusher) and sends
one packet per object.

What belongs here: GitDaemonTransport and its registration for git:// URLs. What does not: the Transport protocol
and error translation (transport.py), what is sent or fetched (sync.py).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from dulwich.client import (
    TCPGitClient,
)
from dulwich.protocol import Protocol

from .endpoint import Endpoint

if TYPE_CHECKING:
    pass


from .transport import Transport, register_transport

logger = logging.getLogger("gitstate.remote")


# ===================================================================== transports
class GitDaemonTransport(TCPGitClient):
    """dulwich's git:// client with connect and read timeouts (a stalled daemon must not hang a pusher)."""

    def __init__(self, host: str, port: int | None, *, timeout_s: float) -> None:
        super().__init__(host, port=port)
        self._timeout_s = timeout_s
        self._opened: list[Any] = []

    def close(self) -> None:
        # dulwich leaves the connection open when the server hangs up before the protocol starts.
        for proto in self._opened:
            with contextlib.suppress(Exception):
                proto.close()
        self._opened.clear()

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Any, Callable[[], bool], IO[bytes] | None]:
        import dulwich.client as dc

        fileno_can_read: Callable[[int], bool] = dc._fileno_can_read

        if not isinstance(path, bytes):
            path = path.encode(self._remote_path_encoding)
        s = socket.create_connection((self._host, self._port), timeout=self._timeout_s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = s.makefile("rb", -1)
        # Writes are gathered and sent before each read: dulwich writes a pack object by object, and one
        # send() per object made the system calls, not the data, the cost of a push.
        pending = bytearray()

        def write(data: bytes) -> None:
            pending.extend(data)
            if len(pending) >= 256 * 1024:
                flush()

        def flush() -> None:
            if pending:
                s.sendall(pending)
                pending.clear()

        def read(size: int) -> bytes:
            flush()
            return bytes(rfile.read(size))

        def can_read() -> bool:
            flush()
            return bool(fileno_can_read(s.fileno()))

        def close() -> None:
            for f in (rfile, s):
                with contextlib.suppress(OSError):
                    f.close()

        def shutdown_write() -> None:
            flush()
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_WR)

        proto = Protocol(read, write, close, report_activity=self._report_activity, shutdown_write=shutdown_write)
        self._opened.append(proto)
        if path.startswith(b"/~"):
            path = path[1:]
        if cmd == b"upload-pack":
            self.protocol_version = (
                dc.DEFAULT_GIT_PROTOCOL_VERSION_FETCH  # type: ignore[attr-defined]
                if protocol_version is None
                else protocol_version
            )
        else:
            self.protocol_version = dc.DEFAULT_GIT_PROTOCOL_VERSION_SEND  # type: ignore[attr-defined]
        version_str = (
            b"\0\0version=%d\0" % self.protocol_version if cmd == b"upload-pack" and self.protocol_version == 2 else b""
        )
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + version_str)
        return proto, can_read, None


def _open(ep: Endpoint, timeout_s: float) -> Transport:
    assert ep.host is not None
    return GitDaemonTransport(ep.host, ep.port, timeout_s=timeout_s)


register_transport("git", _open, url_schemes=["git"])
