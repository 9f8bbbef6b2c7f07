"""http(s):// remotes (smart HTTP): dulwich's urllib3 client, releasing connections on error answers and sending
the URL's query string (a token) only to the remote's own origin. Nothing from git config is used.

What belongs here: HttpTransport and its registration for http:// and https:// URLs. What does not: credentials and
hiding them in log records (credentials.py), the Transport protocol and error translation (transport.py), what is
sent or fetched (sync.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from dulwich.client import (
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    Urllib3HttpGitClient,
)
from dulwich.errors import GitProtocolError, NotGitRepository

from .credentials import hide_in_logs, unhide_in_logs
from .endpoint import Endpoint

if TYPE_CHECKING:
    pass


from .transport import Transport, register_transport

logger = logging.getLogger("gitstate.remote")


class HttpTransport(Urllib3HttpGitClient):
    """dulwich's smart-HTTP client, releasing connections on error answers and on close (dulwich leaves the
    socket of a 401 or 404 answer open), and sending the remote URL's query string (a token kept in
    credentials.json) with every request to the remote's own origin, never to another one a redirect names."""

    def __init__(self, base_url: str, *, query: str | None, hidden: list[str], **options: Any) -> None:
        super().__init__(base_url, **options)
        self._query = query
        self._query_origin = self._origin(base_url)
        self._hidden: list[str] | None = list(dict.fromkeys(s for s in hidden if s))
        hide_in_logs(self._hidden)

    def _http_request(
        self, url: str, headers: dict[str, str] | None = None, data: Any = None, raise_for_status: bool = True
    ) -> tuple[Any, Callable[[int], bytes]]:
        sent = url
        if self._query and self._origin(url) == self._query_origin:
            sent += ("&" if "?" in url else "?") + self._query
        resp, read = super()._http_request(sent, headers, data, raise_for_status=False)
        location = getattr(resp, "redirect_location", "")
        if sent != url and location:
            # dulwich takes any difference from the URL it asked for as a redirect: take our query off again.
            if urljoin(sent, location) == sent:
                resp.redirect_location = ""
            else:
                query = self._query or ""
                resp.redirect_location = location.replace("&" + query, "").replace("?" + query, "")
        status = resp.status
        if raise_for_status and status != 200:
            auth = resp.headers.get("WWW-Authenticate")
            proxy_auth = resp.headers.get("Proxy-Authenticate")
            with contextlib.suppress(Exception):
                resp.drain_conn()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                resp.release_conn()  # type: ignore[attr-defined]
            if status == 404:
                raise NotGitRepository()
            if status == 401:
                raise HTTPUnauthorized(auth, url)
            if status == 407:
                raise HTTPProxyUnauthorized(proxy_auth, url)
            raise GitProtocolError(f"unexpected HTTP status {status} for {url}")
        return resp, read

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pool_manager.clear()
        if self._hidden is not None:
            unhide_in_logs(self._hidden)
            self._hidden = None

    def __del__(self) -> None:  # a client dropped without close() must not keep its secrets registered
        with contextlib.suppress(Exception):
            self.close()


def _open(ep: Endpoint, timeout_s: float) -> Transport:
    return HttpTransport(
        ep.url,
        query=ep.query,
        hidden=ep.secrets(),
        config=None,
        username=ep.username,
        password=ep.password,
        timeout=timeout_s,
    )


register_transport("http", _open, url_schemes=["http", "https"])
