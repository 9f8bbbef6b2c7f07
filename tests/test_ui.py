"""The HTTP layer of ``gitstate ui`` without a browser: token, Host and CSRF checks, JSON shapes, XSS payloads
delivered only as JSON strings, the actions landing as commits."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import git, make_store, wait_until

from gitstate.ui import UIServer, make_server

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def served(tmp_path: Any) -> Iterator[UIServer]:
    store = make_store(tmp_path / "s", durability="immediate")
    store.set("state.json", "count", 1)
    store.set("state.json", "count", 2)
    store.set("state.json", "name", XSS)
    store.snapshot("v1")
    server = make_server(store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        store.close()


def request(
    server: UIServer,
    method: str,
    path: str,
    *,
    token: bool = True,
    host: str | None = None,
    csrf: str | None = None,
    body: Any = None,
    cookie: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    sep = "&" if "?" in path else "?"
    url = path + (f"{sep}token={server.token}" if token else "")
    headers = {"Host": host or f"127.0.0.1:{server.port}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    if cookie is not None:
        headers["Cookie"] = cookie
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, url, body=data, headers=headers)
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def get_json(server: UIServer, path: str) -> Any:
    status, _, body = request(server, "GET", path)
    assert status == 200, body
    return json.loads(body)


def test_binds_to_loopback_only(served: UIServer) -> None:
    assert served.server_address[0] == "127.0.0.1"
    assert served.url.startswith(f"http://127.0.0.1:{served.port}/?token=")


def test_token_required(served: UIServer) -> None:
    assert request(served, "GET", "/", token=False)[0] == 403
    assert request(served, "GET", "/api/log", token=False)[0] == 403
    assert request(served, "GET", "/api/log?token=wrong", token=False)[0] == 403


def test_token_in_url_sets_a_cookie_that_then_suffices(served: UIServer) -> None:
    status, headers, _ = request(served, "GET", "/")
    assert status == 200
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert request(served, "GET", "/api/head", token=False, cookie=cookie)[0] == 200
    assert request(served, "GET", "/api/head", token=False, cookie="gitstate_ui_token=nope")[0] == 403


@pytest.mark.parametrize("host", ["evil.example:80", "evil.example", "127.0.0.1", "localhost:1", "0.0.0.0:{port}"])
def test_bad_host_header_refused(served: UIServer, host: str) -> None:
    assert request(served, "GET", "/api/head", host=host.format(port=served.port))[0] == 403


def test_localhost_host_accepted(served: UIServer) -> None:
    assert request(served, "GET", "/api/head", host=f"localhost:{served.port}")[0] == 200


def test_post_without_csrf_refused_and_nothing_committed(served: UIServer) -> None:
    head = get_json(served, "/api/head")["head"]
    assert request(served, "POST", "/api/undo", body={})[0] == 403
    assert request(served, "POST", "/api/undo", body={}, csrf="wrong")[0] == 403
    assert request(served, "GET", "/api/undo")[0] == 404  # state changes are POST only
    assert get_json(served, "/api/head")["head"] == head


def test_page_carries_csrf_and_no_document_content(served: UIServer) -> None:
    status, headers, body = request(served, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert served.csrf.encode() in body
    assert b"onerror" not in body  # documents never come inside the HTML
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for static in ("/app.js", "/app.css"):
        assert request(served, "GET", static)[0] == 200


def test_json_shapes(served: UIServer) -> None:
    head = get_json(served, "/api/head")
    assert set(head) == {"head"} and len(head["head"]) == 40
    log = get_json(served, "/api/log?limit=2")
    assert log["more"] is True and len(log["commits"]) == 2
    c = log["commits"][0]
    assert {"id", "time", "author", "actor", "subject", "docs", "parents", "keys", "snapshots"} <= set(c)
    assert c["snapshots"] == ["v1"] and c["actor"] == "library"
    page2 = get_json(served, "/api/log?offset=2&limit=2")
    assert page2["more"] is False and len(page2["commits"]) == 1
    docs = get_json(served, "/api/docs?rev=HEAD~1")
    assert docs["docs"] == {"state.json": {"count": 2}}
    diff = get_json(served, "/api/diff?a=HEAD~2&b=HEAD")
    ops = {(tuple(ch["key"]), ch["op"]) for ch in diff["changes"]}
    assert ops == {(("count",), "change"), (("name",), "add")}
    first = log["commits"][0]["id"]
    oldest = page2["commits"][0]["id"]
    root = get_json(served, f"/api/diff?a={oldest}~1&b={oldest}")
    assert root["changes"] == [{"doc": "state.json", "key": [], "op": "add", "new": {"count": 1}}]
    key = get_json(served, "/api/key?doc=state.json&key=count")
    assert key["numeric"] is True and [p["value"] for p in key["points"]] == [1, 2]
    text_key = get_json(served, "/api/key?doc=state.json&key=name")
    assert text_key["numeric"] is False and text_key["points"][0]["value"] == XSS
    hits = get_json(served, "/api/search?q=count")["hits"]
    assert hits == [{"doc": "state.json", "key": "count", "value": 2}]
    assert get_json(served, "/api/search?q=onerror")["hits"][0]["key"] == "name"
    assert request(served, "GET", "/api/diff?a=nope&b=HEAD")[0] == 400
    assert first


def test_xss_payload_only_as_json_string(served: UIServer) -> None:
    status, headers, body = request(served, "GET", "/api/docs")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(body)["docs"]["state.json"]["name"] == XSS
    assert body.count(b"<img") == 1 and b'"name": "<img src=x onerror=alert(1)>"' in body


def test_actions_preview_then_commit(served: UIServer, tmp_path: Any) -> None:
    csrf = served.csrf
    status, _, body = request(served, "POST", "/api/restore", csrf=csrf, body={"rev": "HEAD~2", "dry_run": True})
    assert status == 200
    preview = json.loads(body)["changes"]
    assert {(tuple(ch["key"]), ch["op"]) for ch in preview} == {(("count",), "change"), (("name",), "remove")}
    head = get_json(served, "/api/head")["head"]
    assert get_json(served, "/api/head")["head"] == head  # the preview committed nothing
    status, _, body = request(served, "POST", "/api/restore", csrf=csrf, body={"rev": "HEAD~2", "doc": "state.json"})
    assert status == 200 and json.loads(body)["created"] is True
    assert get_json(served, "/api/docs")["docs"] == {"state.json": {"count": 1}}
    status, _, body = request(served, "POST", "/api/undo", csrf=csrf, body={"dry_run": True})
    assert status == 200 and json.loads(body)["changes"]
    assert request(served, "POST", "/api/undo", csrf=csrf, body={})[0] == 200
    assert get_json(served, "/api/docs")["docs"]["state.json"]["name"] == XSS
    assert request(served, "POST", "/api/snapshot", csrf=csrf, body={"name": "after"})[0] == 200
    subjects = git(tmp_path / "s", "log", "--format=%s").splitlines()
    assert subjects[1].startswith("restore state.json to HEAD~2")
    assert "after" in git(tmp_path / "s", "tag").split()


def test_head_follows_writes_from_another_store(served: UIServer, tmp_path: Any) -> None:
    before = get_json(served, "/api/head")["head"]
    with make_store(tmp_path / "s", durability="immediate") as other:
        other.set("other.json", "x", 1)
        new = other.head
    assert new != before
    assert get_json(served, "/api/head")["head"] == new
    assert get_json(served, "/api/log?limit=1")["commits"][0]["id"] == new


@pytest.mark.parametrize("watch", [False, True])
def test_cli_ui_prints_a_tokened_url_and_serves(tmp_path: Any, watch: bool) -> None:
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from helpers import GIT_ENV

    with make_store(tmp_path / "s", durability="immediate") as store:
        store.set("state.json", "a", 1)
        head = store.head
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitstate", "-C", str(tmp_path / "s"), "ui", "--port", "0", *(["--watch"] * watch)],
        stdout=subprocess.PIPE,
        text=True,
        env={**GIT_ENV, "PYTHONUNBUFFERED": "1", "NO_COLOR": os.environ.get("NO_COLOR", "1")},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first line names the URL (pytest-timeout bounds the wait)
        url = line.rsplit(" ", 1)[-1].strip()
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.query.startswith("token=")
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
        conn.request("GET", f"/api/head?{parts.query}", headers={"Host": parts.netloc})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"head": head}
        conn.close()
        if watch:  # a hand edit is committed by the served store and the head the page polls moves
            (tmp_path / "s" / "state.json").write_text('{"a": 2}\n')

            def moved() -> bool:
                c = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
                c.request("GET", f"/api/head?{parts.query}", headers={"Host": parts.netloc})
                new = json.loads(c.getresponse().read())["head"]
                c.close()
                return bool(new != head)

            wait_until(moved, timeout_s=20, message="the hand edit to be committed")
            actor = git(tmp_path / "s", "log", "-1", "--format=%(trailers:key=Gitstate-Actor,valueonly)").strip()
            assert actor == "human"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
