"""The HTTP layer of ``gitstate ui``: token, Host and CSRF checks, JSON endpoints, static files.

Safe by default: binds to 127.0.0.1; every request presents the random token (``?token=`` once, then a cookie);
the Host header must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (no DNS rebinding); state-changing requests are
POST and carry the CSRF header. Document values only ever leave as JSON; the page renders them with
``textContent``.

What belongs here: :class:`UIServer` and :func:`make_server` (token, cookie, Host and CSRF checks), the request
handler, the ``api_*`` endpoints (head, log, docs, diff, key, search, restore, undo, snapshot) and serving
``static/``. What does not: anything that reads Git directly (all reads go through the public Store API), the
command line (:mod:`gitstate.cli.ui`), rendering in the browser (``static/app.js``).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import GitStateError, RevisionNotFound
from ..messages import HUMAN

__all__ = ["UIServer", "make_server"]

_STATIC = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/app.css": ("app.css", "text/css"),
}
_COOKIE = "gitstate_ui_token"
PAGE_SIZE = 50


def _jsonable(value: Any) -> Any:
    from ..docdiff import Change

    if isinstance(value, Change):
        return value.to_dict()
    return json.loads(json.dumps(value, default=str))


class UIServer(ThreadingHTTPServer):
    """A threading HTTP server serving one open store. ``token`` must be presented by every request."""

    daemon_threads = True

    def __init__(self, store: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.store = store
        self.token = secrets.token_urlsafe(24)
        self.csrf = secrets.token_urlsafe(24)
        self.lock = threading.Lock()  # one store call at a time: the Store is used from many handler threads

    @property
    def port(self) -> int:
        """The port bound (useful when started on port 0)."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The URL to open, with the token."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


def make_server(store: Any, port: int = 0) -> UIServer:
    """A :class:`UIServer` for ``store`` on 127.0.0.1:``port`` (0: any free port); call ``serve_forever()``."""
    return UIServer(store, port=port)


class _Handler(BaseHTTPRequestHandler):
    server: UIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL only
        pass

    # ------------------------------------------------------------ checks
    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, token came in the URL)."""
        host = self.headers.get("Host", "")
        if host not in (f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"):
            return False, False
        token = self.server.token
        given = query.get("token", [""])[0]
        if given and hmac.compare_digest(given, token):
            return True, True
        jar = cookies.SimpleCookie(self.headers.get("Cookie", ""))
        morsel = jar.get(_COOKIE)
        return bool(morsel and hmac.compare_digest(morsel.value, token)), False

    def _send(self, status: int, body: bytes, ctype: str, set_cookie: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype + "; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header(
            "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"
        )
        if set_cookie:
            self.send_header("Set-Cookie", f"{_COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    # ------------------------------------------------------------ verbs
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ok, from_url = self._authorised(query)
        if not ok:
            self._send(403, b"forbidden: token or Host missing or wrong\n", "text/plain")
            return
        if url.path in _STATIC:
            name, ctype = _STATIC[url.path]
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            if name == "index.html":
                body = body.replace(b"{{CSRF}}", self.server.csrf.encode())
            self._send(200, body, ctype, set_cookie=from_url)
            return
        handler = _GET_ROUTES.get(url.path)
        if handler is None:
            self._json(404, {"error": "not found"})
            return
        self._run(handler, {k: v[0] for k, v in query.items() if k != "token"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        ok, _ = self._authorised(parse_qs(url.query))
        csrf = self.headers.get("X-CSRF-Token", "")
        if not ok or not hmac.compare_digest(csrf, self.server.csrf):
            self._send(403, b"forbidden: token, Host or CSRF header missing or wrong\n", "text/plain")
            return
        handler = _POST_ROUTES.get(url.path)
        if handler is None:
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            params = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        self._run(handler, params if isinstance(params, dict) else {})

    def _run(self, handler: Any, params: dict[str, Any]) -> None:
        try:
            with self.server.lock:
                result = handler(self.server.store, params)
        except (GitStateError, ValueError, KeyError, TypeError) as e:
            self._json(400, {"error": str(e)})
            return
        self._json(200, _jsonable(result))


# ===================================================================== endpoints (all through the public Store API)
def _commit_item(c: Any, snaps: dict[str, list[str]]) -> dict[str, Any]:
    d: dict[str, Any] = c.to_dict()
    d.pop("message", None)
    d["snapshots"] = snaps.get(c.id, [])
    return d


def _snap_map(store: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in store.snapshots():
        out.setdefault(s.commit, []).append(s.name)
    return out


def api_head(store: Any, p: dict[str, Any]) -> Any:
    """The current head (the page polls this cheap endpoint to follow the store live)."""
    latest = store.log(limit=1)  # through log: it picks up commits made by other processes
    return {"head": latest[0].id if latest else None}


def api_log(store: Any, p: dict[str, Any]) -> Any:
    """A page of the timeline, newest first: ``offset``, ``limit`` (at most 500)."""
    offset = max(0, int(p.get("offset", 0)))
    limit = min(500, max(1, int(p.get("limit", PAGE_SIZE))))
    commits = store.log(limit=offset + limit + 1)
    snaps = _snap_map(store)
    page = commits[offset : offset + limit]
    return {"commits": [_commit_item(c, snaps) for c in page], "more": len(commits) > offset + limit}


def api_docs(store: Any, p: dict[str, Any]) -> Any:
    """Every document and its value at revision ``rev`` (default HEAD)."""
    rev = p.get("rev") or "HEAD"
    if store.head is None:
        return {"rev": rev, "docs": {}}
    view = store.at(rev)
    return {"rev": rev, "commit": view.commit, "docs": {d: _safe_value(view, d) for d in view.docs()}}


def _safe_value(view: Any, doc: str) -> Any:
    try:
        return view.get(doc)
    except GitStateError as e:
        return {"error": str(e)}


def api_diff(store: Any, p: dict[str, Any]) -> Any:
    """Key-level changes from ``a`` to ``b``."""
    a, b, doc = p.get("a") or "HEAD~1", p.get("b") or "HEAD", p.get("doc") or None
    try:
        store.resolve(a)
    except RevisionNotFound:
        if not a.endswith("~1"):
            raise
        store.resolve(a[:-2])  # "FIRST~1", the parent of the first commit: everything at b is new
        view = store.at(b)
        docs = [d for d in view.docs() if doc is None or d == doc]
        return {"changes": [{"doc": d, "key": [], "op": "add", "new": _safe_value(view, d)} for d in docs]}
    return {"changes": [c.to_dict() for c in store.diff(a, b, doc=doc)]}


def api_key(store: Any, p: dict[str, Any]) -> Any:
    """The history of one key (``doc``, dotted ``key``): the value after each commit that changed it, oldest
    first, and whether every value is a number (then the page draws a chart)."""
    doc, key = p["doc"], p["key"]
    points = []
    for c in reversed(store.log(doc=doc, key=key)):
        value = store.at(c.id).get(doc, key, default=None)
        points.append({"id": c.id, "time": c.time.isoformat(), "actor": c.actor, "value": value})
    numeric = bool(points) and all(
        isinstance(x["value"], int | float) and not isinstance(x["value"], bool) for x in points
    )
    return {"doc": doc, "key": key, "points": points, "numeric": numeric}


def api_search(store: Any, p: dict[str, Any]) -> Any:
    """Keys or values at HEAD containing ``q`` (case-insensitive), at most 200 hits."""
    q = str(p.get("q", "")).lower()
    hits: list[dict[str, Any]] = []
    if not q or store.head is None:
        return {"hits": hits}
    for doc in store.docs():
        _walk(doc, (), store.get(doc), q, hits)
        if len(hits) >= 200:
            break
    return {"hits": hits[:200]}


def _walk(doc: str, key: tuple[Any, ...], value: Any, q: str, hits: list[dict[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(doc, (*key, k), v, q, hits)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _walk(doc, (*key, i), v, q, hits)
        return
    path = ".".join(str(k) for k in key)
    if q in path.lower() or q in str(value).lower() or q in doc.lower():
        hits.append({"doc": doc, "key": path, "value": value})


def _preview(store: Any, p: dict[str, Any], target: str) -> Any:
    return {"changes": [c.to_dict() for c in store.diff("HEAD", target, doc=p.get("doc") or None)]}


def api_restore(store: Any, p: dict[str, Any]) -> Any:
    """Restore one document (``doc``) or all to ``rev``, as a commit by actor ``human`` (a person clicked it);
    with ``dry_run`` only the diff it would make."""
    rev = str(p["rev"])
    if p.get("dry_run"):
        return _preview(store, p, rev)
    docs = [p["doc"]] if p.get("doc") else None
    commit = store.restore(rev, docs=docs, actor=HUMAN)
    return {"commit": str(commit), "created": commit.created}


def api_undo(store: Any, p: dict[str, Any]) -> Any:
    """Undo the last commit, as a commit by actor ``human``; with ``dry_run`` only the diff it would make."""
    if p.get("dry_run"):
        return _preview(store, p, "HEAD~1") if len(store.log(limit=2)) > 1 else {"changes": []}
    commit = store.undo(actor=HUMAN)
    return {"commit": str(commit), "created": commit.created}


def api_snapshot(store: Any, p: dict[str, Any]) -> Any:
    """Take a snapshot named ``name``."""
    if p.get("dry_run"):
        return {"changes": []}
    return {"commit": store.snapshot(str(p["name"]))}


_GET_ROUTES = {
    "/api/head": api_head,
    "/api/log": api_log,
    "/api/docs": api_docs,
    "/api/diff": api_diff,
    "/api/key": api_key,
    "/api/search": api_search,
}
_POST_ROUTES = {"/api/restore": api_restore, "/api/undo": api_undo, "/api/snapshot": api_snapshot}
