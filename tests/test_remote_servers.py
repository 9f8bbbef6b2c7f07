"""gitstate against real Git servers on loopback: a real ``git daemon`` (git://), a smart HTTP server (real
``git http-backend`` behind a small CGI wrapper, with Basic authentication), ssh through a stand-in ``ssh`` binary,
and failure modes: refused connections, a stalled server, a server that dies mid-push, a connection cut mid-push,
wrong credentials. Secrets must appear nowhere: output, logs, exceptions, ``.git/config``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import fsck, git, wait_until

import gitstate
from gitstate import remote as gremote
from gitstate.cli import main

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

SECRET = "s3cr3t-T0ken-9f2a"
USER = "alice"


# ============================================================================ helpers


def exception_text(exc: BaseException) -> str:
    """Everything an exception could show: its traceback, repr, args, and the same for its cause and context."""
    parts, seen = [], set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += ["".join(traceback.format_exception(e)), repr(e), repr(e.args), str(vars(e))]
        stack += [e.__cause__, e.__context__]
    return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_bare(path: Path) -> Path:
    git(".", "init", "-q", "--bare", "--initial-branch=main", str(path))
    return path


def files_of_clone(url_or_path: str, dest: Path) -> dict[str, bytes]:
    git(".", "clone", "-q", url_or_path, str(dest))
    fsck(dest)
    out = {}
    for p in dest.rglob("*"):
        if ".git" in p.relative_to(dest).parts or not p.is_file():
            continue
        out[p.relative_to(dest).as_posix()] = p.read_bytes()
    return out


def store_files(store: Any) -> dict[str, bytes]:
    root = Path(store.path)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def open_store(path: Path, **kw: Any) -> gitstate.Store:
    kw.setdefault("durability", "manual")
    return gitstate.open(path, fsync=False, **kw)


# ============================================================================ servers
class GitDaemon:
    """A real ``git daemon`` serving ``base`` on 127.0.0.1 (receive-pack enabled). Started and stopped by tests."""

    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base.parent / f"daemon-{self.port}.log"

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    f"--base-path={self.base}",
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                    str(self.base),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"},
            )
        wait_until(lambda: port_open(self.port), 10, "git daemon to listen")
        return self

    def kill(self) -> None:
        """Kill the daemon and the receive-pack/upload-pack children it forked (its own process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        wait_until(lambda: not port_open(self.port), 10, "git daemon to stop")


class _CgiHandler(BaseHTTPRequestHandler):
    """Runs the real ``git http-backend`` as a CGI program for each request, with optional Basic auth."""

    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(self.requestline)

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.server.chunked_requests += 1
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self) -> None:
        creds = self.server.credentials
        user = "anonymous"
        if creds is not None:
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            if auth != expected:
                self.server.auth_failures += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            user = creds[0]
        body = self._read_body() if self.command == "POST" else b""
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        res = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        raw = res.stdout
        sep = raw.find(b"\r\n\r\n")
        head, payload = (raw[:sep], raw[sep + 4 :]) if sep >= 0 else raw.split(b"\n\n", 1)
        status = 200
        headers = []
        for line in head.replace(b"\r\n", b"\n").split(b"\n"):
            if not line.strip():
                continue
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            else:
                headers.append((k.strip(), v.strip()))
        self.send_response(status)
        for k, v in headers:
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class HttpGitServer:
    """Smart HTTP on 127.0.0.1: ``git http-backend`` behind a threaded http.server, Basic auth if given."""

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CgiHandler)
        self.httpd.daemon_threads = True
        self.httpd.root = root  # type: ignore[attr-defined]
        self.httpd.credentials = credentials  # type: ignore[attr-defined]
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.httpd.auth_failures = 0  # type: ignore[attr-defined]
        self.httpd.chunked_requests = 0  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str, *, user: str | None = None, password: str | None = None) -> str:
        info = f"{user}:{password}@" if user and password else (f"{user}@" if user else "")
        return f"http://{info}127.0.0.1:{self.port}/{name}"

    def start(self) -> HttpGitServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class TcpProxy:
    """A loopback TCP proxy to ``upstream``: ``mode`` "pass", "cut" (reset the connection after ``cut_after``
    bytes from the client: a remote that dies mid-push), "stall" (accept, never answer) or "close"."""

    def __init__(self, upstream_port: int, mode: str = "pass", cut_after: int = 0) -> None:
        self.upstream_port = upstream_port
        self.mode = mode
        self.cut_after = cut_after
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.cuts = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(client)
            if self.mode == "close":
                client.close()
                continue
            if self.mode == "stall":
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.conns.append(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if from_client and self.mode == "cut" and sent + len(data) > self.cut_after:
                    self.cuts += 1
                    for s in (src, dst):
                        with contextlib.suppress(OSError):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            s.close()
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            with contextlib.suppress(OSError):
                dst.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    base = tmp_path / "served"
    base.mkdir()
    return base


@pytest.fixture
def daemon(served: Path) -> Iterator[GitDaemon]:
    d = GitDaemon(served).start()
    yield d
    d.kill()


@pytest.fixture
def http_server(served: Path) -> Iterator[HttpGitServer]:
    s = HttpGitServer(served, credentials=(USER, SECRET)).start()
    yield s
    s.stop()


def write_some(store: gitstate.Store, n: int, prefix: str = "k", *, payload_bytes: int = 0) -> None:
    for i in range(n):
        store.set("state.json", f"{prefix}.{i}", i)
        store.set(f"tasks/t{i % 5}.json", "status", f"{prefix}{i}")
        if payload_bytes:  # incompressible text: the pack gets big enough to be on the wire when the server dies
            store.set("log.md", None, os.urandom(payload_bytes // 2).hex() + "\n")
        store.flush()


# ============================================================================ git daemon
def test_push_to_git_daemon_then_real_git_clone_matches(tmp_path: Path, daemon: GitDaemon) -> None:
    make_bare(daemon.base / "state.git")
    with open_store(tmp_path / "a") as store:
        store.remote_add("origin", daemon.url("state.git"))
        store.set("state.json", "services", {"slack": True, "mail": False})
        store.set("memory/current_work.yaml", "follow_ups", ["check coverage"])
        store.set("notes.md", None, "# notes\n")
        store.flush()
        assert store.push() == store.head
        assert store.push() is None  # already there
        head, files = store.head, store_files(store)
    fsck(daemon.base / "state.git")
    assert git(daemon.base / "state.git", "rev-parse", "main").strip() == head
    assert files_of_clone(daemon.url("state.git"), tmp_path / "gitclone") == files


def test_two_stores_share_state_through_git_daemon(tmp_path: Path, daemon: GitDaemon) -> None:
    make_bare(daemon.base / "shared.git")
    with open_store(tmp_path / "seed") as seed:
        seed.remote_add("origin", daemon.url("shared.git"))
        seed.set("state.json", None, {"services": {}, "owner": "seed"})
        seed.flush()
        seed.push()
    a = gitstate.clone(daemon.url("shared.git"), tmp_path / "a", durability="manual", fsync=False)
    b = gitstate.clone(daemon.url("shared.git"), tmp_path / "b", durability="manual", fsync=False)
    try:
        a.set("state.json", "services.a", True)
        b.set("state.json", "services.b", False)
        a.flush(), b.flush()
        a.sync()
        b.sync()
        a.sync()
        assert a.get("state.json") == b.get("state.json") == {"services": {"a": True, "b": False}, "owner": "seed"}
        assert a.head == b.head
        parents = git(tmp_path / "b", "log", "-1", "--format=%P").split()
        assert len(parents) == 2
        assert store_files(a) == store_files(b) == files_of_clone(daemon.url("shared.git"), tmp_path / "check")
    finally:
        a.close()
        b.close()
    fsck(daemon.base / "shared.git")


def test_refused_connection_then_server_comes_up(tmp_path: Path, served: Path) -> None:
    make_bare(served / "state.git")
    port = free_port()
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", f"git://127.0.0.1:{port}/state.git")
        store.set("state.json", "a", 1)
        store.flush()
        with pytest.raises(gitstate.RemoteError, match="connection refused") as info:
            store.push()
        assert f"127.0.0.1:{port}" in str(info.value)
        with pytest.raises(gitstate.RemoteError, match="connection refused"):
            store.pull()
        store.set("state.json", "b", 2)  # still writable
        assert store.flush() is not None
        d = GitDaemon(served, port).start()
        try:
            assert store.push() == store.head
            status = store.push_status("origin")["origin"]
            assert status["commits_waiting"] == 0 and status["last_error"] is None
        finally:
            d.kill()
    finally:
        store.close()
    fsck(served / "state.git")


def test_daemon_killed_mid_push_then_push_succeeds_after_restart(tmp_path: Path, served: Path) -> None:
    make_bare(served / "state.git")
    d = GitDaemon(served).start()
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", d.url("state.git"))
        write_some(store, 100, payload_bytes=8192)  # 100 commits, ~600 objects, ~1 MB of pack
        killed = threading.Event()

        def progress(text: str) -> None:
            # Progress comes while the pack is being sent (at the latest before its last object): most of
            # the pack is on the wire, the rest is not, and the server has not answered yet.
            if "Writing objects" in text and not killed.is_set():
                killed.set()
                d.kill()

        with gremote.report_progress(progress), pytest.raises(gitstate.RemoteError) as info:
            store.push()
        assert killed.is_set()
        assert "origin" in str(info.value)
        assert git(served / "state.git", "rev-parse", "--verify", "-q", "main", check=False) == ""
        store.set("state.json", "after", True)  # the store is unharmed and writable
        store.flush()
        d = GitDaemon(served, d.port).start()
        assert store.push() == store.head
        files = store_files(store)
    finally:
        store.close()
        d.kill()
    fsck(served / "state.git")
    assert files_of_clone(str(served / "state.git"), tmp_path / "check") == files


def test_connection_cut_mid_push_leaves_both_sides_intact(tmp_path: Path, daemon: GitDaemon) -> None:
    make_bare(daemon.base / "state.git")
    proxy = TcpProxy(daemon.port, mode="cut", cut_after=8_000)
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", f"git://127.0.0.1:{proxy.port}/state.git")
        write_some(store, 60)
        with pytest.raises(gitstate.RemoteError, match="origin"):
            store.push()
        assert proxy.cuts >= 1
        fsck(daemon.base / "state.git")
        head_before = store.head
        store.set("state.json", "more", 1)
        store.flush()
        assert store._repo.is_ancestor(head_before, store.head)
        proxy.mode = "pass"
        assert store.push() == store.head
    finally:
        store.close()
        proxy.close()
    fsck(daemon.base / "state.git")


def test_stalled_server_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITSTATE_REMOTE_TIMEOUT_S", "0.5")
    proxy = TcpProxy(1, mode="stall")
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", f"git://127.0.0.1:{proxy.port}/state.git")
        store.set("state.json", "a", 1)
        store.flush()
        t0 = time.monotonic()
        with pytest.raises(gitstate.RemoteError, match=r"no answer within 0\.5 s"):
            store.push()
        assert time.monotonic() - t0 < 10
        with pytest.raises(gitstate.RemoteError, match="no answer"):
            store.pull()
        store.set("state.json", "b", 2)
        assert store.flush()
    finally:
        store.close()
        proxy.close()


def test_server_closing_the_connection_is_a_clear_error(tmp_path: Path) -> None:
    proxy = TcpProxy(1, mode="close")
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", f"git://127.0.0.1:{proxy.port}/state.git")
        store.set("state.json", "a", 1)
        store.flush()
        with pytest.raises(gitstate.RemoteError, match="origin"):
            store.push()
    finally:
        store.close()
        proxy.close()


def test_auto_push_through_daemon_outage(tmp_path: Path, served: Path) -> None:
    make_bare(served / "state.git")
    d = GitDaemon(served).start()
    store = open_store(tmp_path / "s")
    events: list[Any] = []
    store.on("pushed", events.append)
    store.on("push_error", events.append)
    try:
        store.remote_add("origin", d.url("state.git"))
        pusher = gremote.start_auto_push(
            store, "origin", batch_ms=20, min_interval_ms=0, initial_backoff_s=0.05, max_backoff_s=0.2
        )
        store.set("state.json", "a", 1)
        store.flush()
        wait_until(
            lambda: git(served / "state.git", "rev-parse", "main", check=False).strip() == store.head,
            10,
            "first auto-push",
        )
        # The server moves its ref before the client has read its report: kill the daemon only once the client
        # has seen the push succeed, or the client rightly counts that commit as still waiting.
        wait_until(lambda: any(e.name == "pushed" for e in events), 10, "the client's pushed event")
        d.kill()
        store.set("state.json", "b", 2)
        store.flush()
        wait_until(lambda: sum(e.name == "push_error" for e in events) >= 2, 10, "push errors while down")
        status = store.push_status()["origin"]
        assert status["commits_waiting"] == 1 and "connection refused" in status["last_error"]
        d = GitDaemon(served, d.port).start()
        wait_until(
            lambda: git(served / "state.git", "rev-parse", "main", check=False).strip() == store.head,
            10,
            "auto-push after the daemon came back",
        )
        assert pusher.wait_idle(5)
        assert store.push_status()["origin"]["last_error"] is None
    finally:
        store.close()
        d.kill()
    assert events[0].name == "pushed"
    assert events[-1].name == "pushed"
    fsck(served / "state.git")


# ============================================================================ smart HTTP
def test_http_push_clone_and_sync_with_basic_auth(tmp_path: Path, http_server: HttpGitServer) -> None:
    make_bare(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    url = http_server.url("state.git", user=USER, password=SECRET)
    with open_store(tmp_path / "a") as a:
        a.remote_add("origin", url)
        a.set("state.json", "services.slack", True)
        big = os.urandom(1_500_000)  # a pack over dulwich's 1 MB post buffer: sent as a chunked request body
        a.set("big.md", None, big.hex() + "\n")
        a.flush()
        assert a.push() == a.head
    b = gitstate.clone(url, tmp_path / "b", durability="manual", fsync=False)
    with b, open_store(tmp_path / "a") as a:
        assert b.get("state.json", "services.slack") is True
        assert b.get("big.md") == big.hex() + "\n"
        a.set("state.json", "services.a", 1)
        b.set("state.json", "services.b", 2)
        a.flush(), b.flush()
        a.sync()
        b.sync()
        a.sync()
        assert a.get("state.json") == b.get("state.json") == {"services": {"slack": True, "a": 1, "b": 2}}
    fsck(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    assert http_server.httpd.auth_failures == 0  # type: ignore[attr-defined]
    assert http_server.httpd.chunked_requests >= 1  # type: ignore[attr-defined]


def test_http_wrong_password_is_a_clear_error_without_the_secret(
    tmp_path: Path, http_server: HttpGitServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make_bare(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    wrong = "wr0ng-Pa55word-77"
    store = open_store(tmp_path / "s")
    try:
        store.remote_add("origin", http_server.url("state.git", user=USER, password=wrong))
        store.set("state.json", "a", 1)
        store.flush()
        for op in (store.push, store.pull):
            with pytest.raises(gitstate.RemoteError, match="authentication failed") as info:
                op()
            assert wrong not in exception_text(info.value)
        store.set("state.json", "b", 2)  # unharmed
        assert store.flush()
        status = store.push_status()["origin"]
        assert "authentication failed" in status["last_error"] and wrong not in str(status)
    finally:
        store.close()
    assert wrong not in caplog.text
    with pytest.raises(gitstate.RemoteError, match="authentication failed") as info:
        gitstate.clone(http_server.url("state.git", user=USER, password=wrong), tmp_path / "c")
    assert wrong not in exception_text(info.value)
    assert not (tmp_path / "c").exists()


def test_http_without_credentials_then_from_environment(
    tmp_path: Path, http_server: HttpGitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_bare(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", http_server.url("state.git"))
        store.set("state.json", "a", 1)
        store.flush()
        with pytest.raises(gitstate.RemoteError, match="requires authentication"):
            store.push()
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_USERNAME", USER)
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_PASSWORD", SECRET)
        assert store.push() == store.head
        monkeypatch.delenv("GITSTATE_REMOTE_ORIGIN_USERNAME")
        monkeypatch.delenv("GITSTATE_REMOTE_ORIGIN_PASSWORD")
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_TOKEN", "not-it")
        with pytest.raises(gitstate.RemoteError, match="authentication failed"):
            store.pull()


def test_secret_in_url_appears_nowhere(
    tmp_path: Path, http_server: HttpGitServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make_bare(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    url = http_server.url("state.git", user=USER, password=SECRET)
    runner = CliRunner()
    outputs = []
    store_dir = tmp_path / "s"
    for args in (
        ["init"],
        ["remote", "add", "origin", url],
        ["set", "state.json", "a", "1"],
        ["push"],
        ["pull"],
        ["sync"],
        ["remote", "list"],
        ["push", "--json"],
        ["sync", "--json"],
    ):
        res = runner.invoke(main, ["-C", str(store_dir), *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    res = runner.invoke(main, ["clone", url, str(tmp_path / "c")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    outputs.append(res.output)
    # Bad path on the same server: an error message, still without the secret.
    res = runner.invoke(main, ["clone", http_server.url("nope.git", user=USER, password=SECRET), str(tmp_path / "d")])
    assert res.exit_code == 1
    outputs.append(res.output)
    for out in outputs:
        assert SECRET not in out
    assert SECRET not in caplog.text
    for root in (store_dir, tmp_path / "c"):
        config = (root / ".git" / "config").read_text()
        assert SECRET not in config and f"127.0.0.1:{http_server.port}/state.git" in config
        creds = root / ".git" / "gitstate" / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        for p in (root / ".git").rglob("*"):
            if p.is_file() and p != creds:
                assert SECRET.encode() not in p.read_bytes(), p
        for p in root.rglob("*"):
            if p.is_file() and ".git" not in p.relative_to(root).parts:
                assert SECRET.encode() not in p.read_bytes(), p
    with open_store(store_dir) as store:
        assert SECRET not in str(store.push_status())


def test_http_cli_progress_only_on_a_terminal(tmp_path: Path, http_server: HttpGitServer) -> None:
    make_bare(http_server.httpd.root / "state.git")  # type: ignore[attr-defined]
    runner = CliRunner()
    d = str(tmp_path / "s")
    runner.invoke(main, ["-C", d, "init"], catch_exceptions=False)
    runner.invoke(main, ["-C", d, "remote", "add", "origin", http_server.url("state.git", user=USER, password=SECRET)])
    runner.invoke(main, ["-C", d, "set", "state.json", "a", "1"], catch_exceptions=False)
    res = runner.invoke(main, ["-C", d, "push"], catch_exceptions=False)
    assert res.exit_code == 0
    assert "Writing objects" not in res.output and "pushed" in res.output
    seen: list[str] = []
    with open_store(tmp_path / "s") as store, gremote.report_progress(seen.append):
        store.set("state.json", "b", 2)
        store.flush()
        store.push()
    assert any("Writing objects" in s for s in seen) and any("Pushing to" in s for s in seen)
    assert not any(SECRET in s for s in seen)


# ============================================================================ ssh (through a stand-in ssh binary)
def test_ssh_transport_uses_the_users_ssh(tmp_path: Path, served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIT_SSH_COMMAND names a fake ssh that runs the remote command locally, like git's own test suite does:
    the real ssh transport code path (subprocess, git-upload-pack/git-receive-pack over pipes) is exercised."""
    log = tmp_path / "ssh.log"
    fake = tmp_path / "fake-ssh"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'while [ $# -gt 1 ]; do case "$1" in -p|-i|-o) shift 2;; -*) shift;; *) break;; esac; done\n'
        "shift\n"
        'exec sh -c "$1"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake))
    make_bare(served / "state.git")
    url = f"ssh://git@example.invalid:2222{served / 'state.git'}"
    with open_store(tmp_path / "a") as a:
        # The repository's own config must not choose the ssh program.
        (Path(a.path) / ".git" / "config").write_text(
            (Path(a.path) / ".git" / "config").read_text() + "[core]\n\tsshCommand = touch /tmp/pwned-by-config\n"
        )
        a.remote_add("origin", url)
        a.set("state.json", "x", 1)
        a.flush()
        assert a.push() == a.head
    b = gitstate.clone(f"git@example.invalid:{served / 'state.git'}", tmp_path / "b", durability="manual", fsync=False)
    with b:
        assert b.get("state.json", "x") == 1
    calls = log.read_text()
    assert "git@example.invalid" in calls and "-p 2222" in calls
    assert not Path("/tmp/pwned-by-config").exists()
    fsck(served / "state.git")


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="server tests use Linux process groups")
