"""The Transport protocol (list refs, send a pack, fetch a pack), the registry of URL schemes, and the
protocol-independent error handling around a transport (timeouts, clear errors that show no credential).

A new kind of remote is one module that calls register_transport(); the built-in ones are local.py,
gitdaemon.py, http.py and ssh.py.

What belongs here: the Transport protocol, register_transport, open_transport, registered_url_schemes, list_refs,
the timeout from $GITSTATE_REMOTE_TIMEOUT_S, translate and chain. What does not: what to send or fetch (sync.py),
the client of each kind of remote (local.py, gitdaemon.py, http.py, ssh.py), parsing URLs (credentials.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from dulwich.client import (
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
)
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.file import FileLocked

from ..errors import RemoteError
from .endpoint import Endpoint, env_name, scrub

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


#: Seconds a network read or connect may stall before the operation fails (``$GITSTATE_REMOTE_TIMEOUT_S``).
DEFAULT_TIMEOUT_S: Final = 30.0


def list_refs(ep: Endpoint, action: str, timeout_s: float) -> Any:
    """The remote's refs (dulwich's listing), or a RemoteError that shows no credential."""
    client, path = open_transport(ep, timeout_s=timeout_s)
    failure: Exception | None = None
    try:
        get_refs: Any = client.get_refs
        return get_refs(path)
    except Exception as e:
        failure = e
    finally:
        with contextlib.suppress(Exception):
            client.close()
    assert failure is not None
    raise chain(translate(failure, ep, action, timeout_s), failure, ep)


def timeout_s_from_env() -> float:
    """``$GITSTATE_REMOTE_TIMEOUT_S`` (at least 0.1), else :data:`DEFAULT_TIMEOUT_S`."""
    try:
        return max(0.1, float(os.environ.get("GITSTATE_REMOTE_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


class Transport(Protocol):
    """One kind of remote, as push, fetch and clone use it: the three calls of dulwich's ``GitClient`` (whose
    clients satisfy it as they are) plus ``close``. ``path`` is the endpoint's path; the callbacks are dulwich's:

    * ``get_refs(path)``: the remote's refs (``{ref: sha}``, bytes) or an object with a ``refs`` attribute;
    * ``send_pack(path, update_refs, generate_pack_data, *, progress=None)``: call ``update_refs(remote_refs)`` for
      the refs to set, ``generate_pack_data(have, want, ofs_delta=...)`` for the objects, store both; return a
      result with ``ref_status`` (``{ref: None or an error text}``);
    * ``fetch_pack(path, determine_wants, graph_walker, pack_data, *, progress=None, ref_prefix=None)``: call
      ``determine_wants(remote_refs)``, send a pack of the wanted objects (the ones ``graph_walker`` does not
      have) to ``pack_data(bytes)``; return a result with ``refs`` and ``symrefs``.
    """

    def get_refs(self, path: Any) -> Any:
        """The remote's refs."""

    def send_pack(self, path: Any, update_refs: Any, generate_pack_data: Any, *, progress: Any = None) -> Any:
        """Update the remote's refs, sending the objects they need."""

    def fetch_pack(
        self,
        path: Any,
        determine_wants: Any,
        graph_walker: Any,
        pack_data: Any,
        *,
        progress: Any = None,
        ref_prefix: Any = None,
    ) -> Any:
        """Receive the objects of the refs ``determine_wants`` picks."""

    def close(self) -> None:
        """Release connections (called once, even after a failure)."""


#: Makes the transport for an endpoint, given the operation's timeout in seconds.
TransportFactory = Callable[[Endpoint, float], Transport]

_TRANSPORTS: dict[str, TransportFactory] = {}
_URL_SCHEMES: dict[str, str] = {}  # URL scheme -> endpoint kind, for kinds registered with url_schemes


def register_transport(kind: str, factory: TransportFactory, *, url_schemes: Sequence[str] = ()) -> None:
    """Make ``factory`` the transport of endpoint kind ``kind``; ``url_schemes`` (lower case) are the URL schemes
    that name such remotes (``bundles`` for ``bundles:///srv/state``). A URL of a registered scheme parses to an
    endpoint of that kind with its host, port and path; credentials in it are refused, as for git:// (only http(s)
    remotes take them). Registering a kind again replaces its factory.

    Example:
        >>> registered_url_schemes()["https"], registered_url_schemes()["file"]
        ('http', 'local')
    """
    _TRANSPORTS[kind] = factory
    for scheme in url_schemes:
        _URL_SCHEMES[scheme.lower()] = kind


def registered_url_schemes() -> dict[str, str]:
    """URL scheme -> endpoint kind, for every scheme a remote URL may use."""
    return dict(_URL_SCHEMES)


def open_transport(ep: Endpoint, *, timeout_s: float) -> tuple[Transport, str]:
    """The transport for ``ep`` (nothing from any git config is used) and the path to give it."""
    factory = _TRANSPORTS.get(ep.scheme)
    if factory is None:
        raise RemoteError(f"no transport for remotes of kind {ep.scheme!r} ({ep.url})")
    return factory(ep, timeout_s), ep.path


def translate(e: BaseException, ep: Endpoint, action: str, timeout_s: float) -> RemoteError:
    """A clear RemoteError for a transport failure; no credentials in it."""
    where = f"{ep.name} ({ep.url})" if ep.name else ep.url
    if isinstance(e, HTTPUnauthorized):
        if ep.password or ep.username:
            msg = (
                f"authentication failed for {where}: the server refused the user name and password/token; "
                f"check them (set {env_name(ep.name or 'origin')}_PASSWORD or re-add the remote with "
                "credentials in its URL)"
            )
        else:
            msg = (
                f"{where} requires authentication: give credentials in the URL to 'gitstate remote add' "
                f"(kept out of .git/config) or set {env_name(ep.name or 'origin')}_USERNAME and _PASSWORD"
            )
    elif isinstance(e, HTTPProxyUnauthorized):
        msg = f"the HTTP proxy refused to carry the {action} to {where} (proxy authentication required)"
    elif isinstance(e, FileLocked):
        msg = f"{where} is busy: another push is updating it right now; try again"
    elif isinstance(e, NotGitRepository):
        msg = f"no Git repository at {where}; create one (git init --bare) or fix the URL"
    elif isinstance(e, ConnectionRefusedError):
        msg = f"cannot {action} {where}: connection refused (is the server running?)"
    elif isinstance(e, socket.gaierror):
        msg = f"cannot {action} {where}: host not found ({e.strerror})"
    elif isinstance(e, (TimeoutError, socket.timeout)):
        msg = f"cannot {action} {where}: no answer within {timeout_s:g} s (network down or server stalled)"
    elif isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        msg = f"the connection to {where} broke during the {action} ({type(e).__name__}); try again"
    elif isinstance(e, HangupException):
        detail = " ".join(
            line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line) for line in (e.stderr_lines or [])
        )
        msg = f"{where} hung up during the {action}" + (f": {detail}" if detail else "; try again")
    elif isinstance(e, GitProtocolError):
        text = str(e) or type(e).__name__
        if "Connection refused" in text:
            msg = f"cannot {action} {where}: connection refused (is the server running?)"
        elif "timed out" in text.lower() or "timeout" in text.lower():
            msg = f"cannot {action} {where}: no answer within {timeout_s:g} s (network down or server stalled)"
        else:
            msg = f"{action} {where} failed: {text}"
    elif isinstance(e, OSError):
        msg = f"cannot {action} {where}: {e.strerror or e}"
    else:
        msg = f"{action} {where} failed: {type(e).__name__}: {e}"
    return RemoteError(scrub(msg, ep.secrets()))


def chain(err: RemoteError, cause: BaseException, ep: Endpoint) -> RemoteError:
    """Set ``cause`` as the error's ``__cause__`` (shown in tracebacks) unless its text could carry a secret.
    Raise the result outside the ``except`` block, so that no ``__context__`` is attached either."""
    err.__cause__ = None if _leaks(cause, ep.secrets()) else cause
    err.__suppress_context__ = True
    return err


def _leaks(error: BaseException, hidden: list[str]) -> bool:
    """Whether any text an exception chain can show holds a secret: each exception's message, arguments and
    attributes (dulwich keeps the request URL, query string included, in ``HTTPUnauthorized.url``), and those
    of its causes and contexts."""
    if not hidden:
        return False
    stack: list[BaseException | None] = [error]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts = [str(e), repr(e.args), repr(getattr(e, "__dict__", {}))]
        if any(scrub(t, hidden) != t for t in texts):
            return True
        stack += [e.__cause__, e.__context__]
    return False
