"""Secrets in remote URLs (issue 11, item 6): no credential from any URL form is written to ``.git/config``,
printed, logged or put in an exception, and the remote is still reached with it.

URL forms: user info (``https://user:pass@host/r``, ``https://TOKEN@host/r``, ``ssh://user:pass@host/r``), scp-style
(``user:TOKEN@host:path``), a query string (``?access_token=``, ``?token=``, ``?private_token=``, any query: the whole
query of an http(s) URL is a credential) and a fragment (never sent, dropped). Surfaces: ``.git/config`` (and every
other file but ``credentials.json``, which is 0600), ``remote add/list``, ``status``, ``doctor`` (text and
``--json``), ``clone``, ``push/pull/sync`` output, progress text, log records at DEBUG, exception text (with chained
causes) and the CLI's stderr. Servers are on loopback: ``git http-backend`` behind a handler that checks the
credential (test_remote_servers' CGI wrapper), and ssh through a stand-in ``ssh`` binary that records its arguments.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from click.testing import Result
from helpers import git, invoke
from test_remote_servers import _CgiHandler, exception_text, free_port, make_bare

import gitstate
from gitstate import remote as gremote

SECRET = "Zq81-tok3n-Secret-77"
OTHER = "Second-s3cret-Token-42"
_SECRET_PARAMS = ("access_token", "token", "private_token")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ============================================================================ a server that checks the credential
Accepts = Callable[[list[tuple[str, str]], str], bool]


class _TokenHandler(_CgiHandler):
    """``git http-backend`` behind a check of the request's credential (``server.accepts(query, authorization)``);
    records every request's query string and Authorization header."""

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        ok = self.server.accepts(params, auth)
        self.server.seen.append((path, query, auth, ok))
        if not ok or self.server.fail_with:
            self.send_response(self.server.fail_with or 401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        kept = [(k, v) for k, v in params if k not in _SECRET_PARAMS and k != "x"]
        self.path = path + ("?" + urlencode(kept) if kept else "")
        super()._cgi()


class TokenServer:
    """Smart HTTP on 127.0.0.1 that only answers requests carrying the expected credential."""

    def __init__(self, root: Path, accepts: Accepts, *, fail_with: int | None = None) -> None:
        import threading

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        self.httpd.daemon_threads = True
        for key, value in {
            "root": root,
            "credentials": None,
            "requests": [],
            "auth_failures": 0,
            "chunked_requests": 0,
            "seen": [],
            "accepts": accepts,
            "fail_with": fail_with,
        }.items():
            setattr(self.httpd, key, value)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> list[tuple[str, str, str, bool]]:
        return self.httpd.seen  # type: ignore[attr-defined, no-any-return]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@dataclass(frozen=True)
class Form:
    """A URL form: ``template`` with {host} (127.0.0.1:port), {s} (the secret) and {s2}; what the server accepts;
    and whether a credential goes to credentials.json."""

    template: str
    accepts: Accepts
    stored: bool = True

    def url(self, host: str) -> str:
        return self.template.format(host=host, s=SECRET, s2=OTHER)


HTTP_FORMS = {
    "userinfo": Form("http://alice:{s}@{host}/state.git", lambda q, a: a == _basic("alice", SECRET)),
    "token-as-user": Form("http://{s}@{host}/state.git", lambda q, a: a == _basic(SECRET, "")),
    "access_token": Form("http://{host}/state.git?access_token={s}", lambda q, a: ("access_token", SECRET) in q),
    "token": Form("http://{host}/state.git?token={s}", lambda q, a: ("token", SECRET) in q),
    "private_token": Form("http://{host}/state.git?private_token={s}", lambda q, a: ("private_token", SECRET) in q),
    "whole-query": Form(
        "http://{host}/state.git?x=1&access_token={s}", lambda q, a: ("x", "1") in q and ("access_token", SECRET) in q
    ),
    "userinfo-and-query": Form(
        "https://alice:{s}@{host}/state.git?private_token={s2}",
        lambda q, a: a == _basic("alice", SECRET) and ("private_token", OTHER) in q,
    ),
    "fragment": Form("http://{host}/state.git#{s}", lambda q, a: True, stored=False),
}


def _secrets_in(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in (SECRET, OTHER) if s in text]


def _no_secret(text: str | bytes, where: str) -> None:
    found = _secrets_in(text)
    assert not found, f"{where} shows a secret: {text!r}"


def _cli(args: list[str], *, input: str | None = None) -> Result:
    res = invoke(args, input=input)
    _no_secret(res.output, f"gitstate {' '.join(a for a in args if SECRET not in a and OTHER not in a)}")
    _no_secret(res.stderr, "stderr")
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        _no_secret(exception_text(res.exception), "the exception")
    return res


def _files_hold_no_secret(root: Path) -> None:
    """No file of the store holds a secret, except credentials.json (owner-only)."""
    creds = root / ".git" / "gitstate" / "credentials.json"
    for p in root.rglob("*"):
        if p.is_file() and p != creds:
            _no_secret(p.read_bytes(), str(p))


def _stored(root: Path) -> str:
    creds = root / ".git" / "gitstate" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    return creds.read_text()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    records = caplog.get_records("call")  # at teardown, caplog.text only holds the teardown's records
    _no_secret("\n".join(logging.Formatter().format(r) for r in records), "the log")


# ============================================================================ http(s): every form, every surface
@pytest.mark.parametrize("form", HTTP_FORMS.values(), ids=list(HTTP_FORMS))
def test_http_url_secret_is_kept_apart_and_still_sent(
    tmp_path: Path, form: Form, logs: pytest.LogCaptureFixture
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    bare = make_bare(served / "state.git")
    server = TokenServer(served, form.accepts)
    https = form.template.startswith("https")
    try:
        host = f"127.0.0.1:{server.port}"
        url = form.url(host).replace("https://", "http://")  # the test server speaks plain HTTP
        if https:  # the https form only goes through the parser: stored apart, printed without it
            with gitstate.open(tmp_path / "h", durability="manual", fsync=False) as store:
                store.remote_add("origin", form.url(host))
                assert store.remotes() == {"origin": f"https://{host}/state.git"}
            _files_hold_no_secret(tmp_path / "h")
            assert SECRET in _stored(tmp_path / "h") and OTHER in _stored(tmp_path / "h")
        d = str(tmp_path / "s")
        root = Path(d)
        assert _cli(["-C", d, "init"]).exit_code == 0
        res = _cli(["-C", d, "remote", "add", "origin", url])
        assert res.exit_code == 0 and f"remote origin -> http://{host}/state.git" in res.output
        config = (root / ".git" / "config").read_text()
        assert f"url = http://{host}/state.git\n" in config
        _files_hold_no_secret(root)
        if form.stored:
            assert all(s in _stored(root) for s in (SECRET, OTHER) if s in url)
        else:
            assert not (root / ".git" / "gitstate" / "credentials.json").exists()

        # push, pull, sync: the server gets the credential every time
        assert _cli(["-C", d, "set", "state.json", "a", "1"]).exit_code == 0
        res = _cli(["-C", d, "push"])
        assert res.exit_code == 0 and "pushed" in res.output, res.output
        head = git(root, "rev-parse", "HEAD").strip()
        assert git(bare, "rev-parse", "main").strip() == head
        assert server.seen and all(ok for *_, ok in server.seen)
        for args in (["pull"], ["sync"], ["pull", "--json"], ["push", "--json"]):
            assert _cli(["-C", d, *args]).exit_code == 0
        for args in (["remote", "list"], ["remote", "list", "--json"], ["status"], ["status", "--json"]):
            res = _cli(["-C", d, *args])
            assert res.exit_code == 0, res.output
            assert f"{host}/state.git" in res.output or args[0] == "status"
        # doctor's reachability check authenticates too
        before = len(server.seen)
        for args in (["doctor"], ["doctor", "--json"]):
            res = _cli(["-C", d, *args])
            assert res.exit_code == 0, res.output
        assert len(server.seen) > before and all(ok for *_, ok in server.seen)
        findings = [f for f in json.loads(res.output)["findings"] if f["check"] == "remote"]
        assert [f["level"] for f in findings] == ["ok"], findings

        # the library: progress text and log records at DEBUG for a whole push and pull
        progress: list[str] = []
        with (
            gitstate.open(root, durability="manual", fsync=False) as store,
            gremote.report_progress(progress.append),
        ):
            store.set("state.json", "b", 2)
            store.flush()
            assert store.push() == store.head
            store.pull()
            _no_secret(str(store.push_status()), "push_status")
            _no_secret(str(store.remotes()), "remotes()")
        assert any("Pushing to" in p for p in progress)
        _no_secret("".join(progress), "the progress text")

        # clone: output, the clone's files; its remote still authenticates
        res = _cli(["clone", url, str(tmp_path / "c")])
        assert res.exit_code == 0 and f"cloned http://{host}/state.git into" in res.output, res.output
        res = _cli(["clone", "--json", url, str(tmp_path / "c2")])
        assert res.exit_code == 0
        for clone in (tmp_path / "c", tmp_path / "c2"):
            _files_hold_no_secret(clone)
            assert json.loads((clone / "state.json").read_text()) == {"a": 1, "b": 2}
            if form.stored:
                assert all(s in _stored(clone) for s in (SECRET, OTHER) if s in url)
        assert _cli(["-C", str(tmp_path / "c"), "pull"]).exit_code == 0
        _files_hold_no_secret(root)
    finally:
        server.stop()
    assert all(ok for *_, ok in server.seen)


# ============================================================================ errors never carry the secret
def _failing_push_and_clone(tmp_path: Path, url: str, match: str) -> None:
    """Push, pull and clone through ``url`` fail with ``match``; no error text, output, status or push-state
    file shows the secret."""
    root = tmp_path / "s"
    with gitstate.open(root, durability="manual", fsync=False) as store:
        store.remote_add("origin", url)
        store.set("state.json", "a", 1)
        store.flush()
        for op in (store.push, store.pull, store.sync):
            with pytest.raises(gitstate.RemoteError, match=match) as info:
                op()
            _no_secret(exception_text(info.value), "the exception")
        _no_secret(str(store.push_status()), "push_status")
    for args in (["push"], ["pull"], ["push", "--json"]):
        res = _cli(["-C", str(root), *args])
        assert res.exit_code == 1 and match in res.stderr, res.output
    for args in (
        ["status"],
        ["status", "--json"],
        ["doctor", "--timeout", "2"],
        ["doctor", "--json", "--timeout", "2"],
    ):
        res = _cli(["-C", str(root), *args])
        assert res.exit_code == (1 if args[0] == "doctor" else 0), res.output
    assert "last push failed" in _cli(["-C", str(root), "status"]).output
    _files_hold_no_secret(root)
    with pytest.raises(gitstate.RemoteError, match=match) as info:
        gitstate.clone(url, tmp_path / "c")
    _no_secret(exception_text(info.value), "the exception")
    res = _cli(["clone", url, str(tmp_path / "c")])
    assert res.exit_code == 1 and match in res.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("form", HTTP_FORMS.values(), ids=list(HTTP_FORMS))
def test_unreachable_remote_error_hides_the_secret(
    tmp_path: Path, form: Form, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSTATE_REMOTE_TIMEOUT_S", "2")
    url = form.url(f"127.0.0.1:{free_port()}").replace("https://", "http://")
    _failing_push_and_clone(tmp_path, url, "connection refused")


@pytest.mark.parametrize(("status", "match"), [(401, "authentication"), (500, "500"), (404, "no Git repository")])
def test_refusing_server_error_hides_the_query_token(
    tmp_path: Path, status: int, match: str, logs: pytest.LogCaptureFixture
) -> None:
    """dulwich puts the request URL (with the query) in HTTPUnauthorized's fields and in its status errors."""
    served = tmp_path / "served"
    served.mkdir()
    make_bare(served / "state.git")
    server = TokenServer(served, lambda q, a: True, fail_with=status)
    try:
        url = f"http://alice:{OTHER}@127.0.0.1:{server.port}/state.git?access_token={SECRET}"
        _failing_push_and_clone(tmp_path, url, match)
    finally:
        server.stop()
    assert server.seen and all(("access_token", SECRET) in parse_qsl(q) for _, q, *_ in server.seen)


# ============================================================================ ssh: user info and scp-style
SSH_FORMS = {
    "ssh-userinfo": "ssh://git:{s}@example.invalid:2222{path}",
    "scp": "git:{s}@example.invalid:{path}",
}


@pytest.mark.parametrize("template", SSH_FORMS.values(), ids=list(SSH_FORMS))
def test_ssh_url_with_a_password_is_refused_without_echoing_it(
    tmp_path: Path, template: str, logs: pytest.LogCaptureFixture
) -> None:
    url = template.format(s=SECRET, path="/srv/state.git")
    root = tmp_path / "s"
    with gitstate.open(root, durability="manual", fsync=False) as store:
        with pytest.raises(gitstate.RemoteError, match="ssh URLs cannot carry a password") as info:
            store.remote_add("origin", url)
        _no_secret(exception_text(info.value), "the exception")
        assert store.remotes() == {}
    res = _cli(["-C", str(root), "remote", "add", "origin", url])
    assert res.exit_code == 1 and "cannot carry a password" in res.stderr
    _files_hold_no_secret(root)
    with pytest.raises(gitstate.RemoteError, match="cannot carry a password") as info:
        gitstate.clone(url, tmp_path / "c")
    _no_secret(exception_text(info.value), "the exception")
    assert _cli(["clone", url, str(tmp_path / "c")]).exit_code == 1


def _fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ssh that records its arguments and runs the remote command locally."""
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
    return log


# ============================================================================ stores written by older versions
OLD_FORMS = {
    **{k: v.template for k, v in HTTP_FORMS.items() if not v.template.startswith("https")},
    **SSH_FORMS,
}


@pytest.mark.parametrize("template", OLD_FORMS.values(), ids=list(OLD_FORMS))
def test_secret_already_in_git_config_is_never_shown_and_moved_on_first_use(
    tmp_path: Path, template: str, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL with a secret written to .git/config by an older gitstate (or by ``git remote add``): remote list,
    status and doctor never print it (doctor changes nothing); the first push/fetch moves it into
    credentials.json, rewrites the URL without it and still reaches the remote with it."""
    served = tmp_path / "served"
    served.mkdir()
    bare = make_bare(served / "state.git")
    ssh = "://" not in template or template.startswith("ssh")
    form = next((f for f in HTTP_FORMS.values() if f.template == template), None)
    server = TokenServer(served, form.accepts) if form else None
    log = _fake_ssh(tmp_path, monkeypatch) if ssh else None
    try:
        raw = template.format(host=f"127.0.0.1:{server.port if server else 0}", s=SECRET, s2=OTHER, path=bare)
        root = tmp_path / "s"
        with gitstate.open(root, durability="manual", fsync=False) as store:
            store.set("state.json", "a", 1)
        git(root, "config", "remote.origin.url", raw)
        git(root, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        config_before = (root / ".git" / "config").read_bytes()
        for args in (["remote", "list"], ["remote", "list", "--json"], ["status"], ["status", "--json"]):
            res = _cli(["-C", str(root), *args])
            assert res.exit_code == 0 and ("origin" in res.output), res.output
        assert _cli(["-C", str(root), "doctor", "--json"]).exit_code in (0, 1)
        assert (root / ".git" / "config").read_bytes() == config_before  # reading commands change nothing
        with gitstate.open(root, durability="manual", fsync=False) as store:
            _no_secret(str(store.remotes()), "remotes()")
            head = store.head
            assert store.push() == head
        assert git(bare, "rev-parse", "main").strip() == head
        _files_hold_no_secret(root)
        if form is None or form.stored:
            assert SECRET in _stored(root)
        url = git(root, "config", "remote.origin.url").strip()
        assert url == gremote.redact_url(raw) and url != raw
        if server is not None:
            assert server.seen and all(ok for *_, ok in server.seen)
        if log is not None:
            calls = log.read_text()
            assert "git@example.invalid" in calls
            _no_secret(calls, "the ssh command line")
        res = _cli(["-C", str(root), "pull"])
        assert res.exit_code == 0, res.output
        if not ssh:
            assert _cli(["-C", str(root), "doctor", "--json"]).exit_code == 0
    finally:
        if server is not None:
            server.stop()


def test_old_push_state_with_a_token_is_not_shown(tmp_path: Path) -> None:
    """An older version recorded errors naming the URL with its query token in push-<remote>.json."""
    root = tmp_path / "s"
    url = f"http://127.0.0.1:{free_port()}/state.git?access_token={SECRET}"
    with gitstate.open(root, durability="manual", fsync=False) as store:
        store.set("state.json", "a", 1)
    git(root, "config", "remote.origin.url", url)
    state = root / ".git" / "gitstate" / "push-origin.json"
    state.write_text(json.dumps({"last_error": f"cannot push to origin ({url}): refused", "last_error_time": 1.0}))
    for args in (["status"], ["status", "--json"]):
        res = _cli(["-C", str(root), *args])
        assert res.exit_code == 0 and "refused" in res.output


# ============================================================================ redact_url
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://u:{SECRET}@h:8443/x?y=1", "https://h:8443/x"),
        (f"https://{SECRET}@h/x.git", "https://h/x.git"),
        (f"https://h/x.git?access_token={SECRET}", "https://h/x.git"),
        (f"https://h/x.git?a=1&private_token={SECRET}#frag", "https://h/x.git"),
        (f"http://h/x.git#{SECRET}", "http://h/x.git"),
        (f"ssh://git:{SECRET}@h:2222/x.git", "ssh://git@h:2222/x.git"),
        (f"git:{SECRET}@h:x.git", "git@h:x.git"),
        (f"git:{SECRET}/with/slash@h:x.git", "git@h:x.git"),
        (f"git@h:path/with@sign-{SECRET}", f"git@h:path/with@sign-{SECRET}"),  # a path, not a password
        ("git@h:me/x.git", "git@h:me/x.git"),
        (f"git://h/x.git?token={SECRET}", "git://h/x.git"),
        (f"https://u:{SECRET}@h:99999/x", "https://h:99999/x"),  # an invalid port: redacted all the same
        ("/srv/state.git", "/srv/state.git"),
    ],
)
def test_redact_url_hides_every_credential(url: str, shown: str) -> None:
    assert gremote.redact_url(url) == shown


def test_secret_values_scrubbed_from_error_text_cover_the_query() -> None:
    ep, found = gremote._parse_url(f"https://alice:{OTHER}@h/x.git?a=1&access_token={SECRET}#f", "origin")
    assert ep.url == "https://h/x.git" and SECRET not in repr(ep) and SECRET not in repr(found)
    assert (found.username, found.password, found.query) == ("alice", OTHER, f"a=1&access_token={SECRET}")
    text = f"GET /x.git/info/refs?service=git-upload-pack&a=1&access_token={SECRET} failed ({OTHER})"
    full = gremote._Endpoint("origin", ep.url, "http", "h", None, "/x.git", "alice", OTHER, found.query)
    assert _secrets_in(gremote._scrub(text, full.secrets())) == []


def test_cli_remote_add_with_password_stdin_and_query_token(tmp_path: Path) -> None:
    d = str(tmp_path / "s")
    assert _cli(["-C", d, "init"]).exit_code == 0
    res = _cli(
        [
            "-C",
            d,
            "remote",
            "add",
            "origin",
            f"https://h.example/s.git?access_token={OTHER}",
            "--username",
            "bob",
            "--password-stdin",
        ],
        input=SECRET + "\n",
    )
    assert res.exit_code == 0 and "remote origin -> https://h.example/s.git" in res.output
    assert json.loads(_stored(Path(d))) == {
        "origin": {"username": "bob", "password": SECRET, "query": f"access_token={OTHER}"}
    }
    _files_hold_no_secret(Path(d))
