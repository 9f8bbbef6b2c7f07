"""Remote URLs and credentials: parsing a URL into an endpoint and the secrets it carries, redaction for display,
credentials.json (0600) and the environment, hiding secrets from log records.

What belongs here: parse_url, redact_url, credentials.json (store_credentials, credentials_for), with_credentials,
the owner-only file writer write_private_json (also used by state.py) and hide_in_logs. What does not: .git/config
(config.py), talking to a server (the transport modules), the Endpoint and Credentials types and scrub()
(endpoint.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import RemoteError
from ..repo import Repository
from .endpoint import TOKEN_USERNAME, Credentials, Endpoint, env_name, scrub

if TYPE_CHECKING:
    pass


from .transport import registered_url_schemes

logger = logging.getLogger("gitstate.remote")


CREDENTIALS_FILE: Final = "credentials.json"
state_lock = threading.Lock()

# An scp-style URL, [user[:password]@]host:path. The password may hold anything but "@": a token with "/" in it
# must not be taken for a path (and leak); the price is that "host:dir/a@b:c" reads as user "host" at "b".
_SCP_RE: Final = re.compile(
    r"^(?:(?P<user>[^@/:]*)(?::(?P<password>[^@]*))?@)?(?P<host>\[[^\]/@]*\]|[^@/:\[\]]+):(?P<path>.*)$", re.S
)
_BUILT_IN_KINDS: Final = frozenset({"local", "git", "http", "ssh"})
_BUILT_IN_SCHEMES: Final = frozenset({"file", "git", "http", "https", "ssh", "git+ssh", "ssh+git"})
_URL_IN_TEXT_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s()'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` as it may be shown: without anything that can be a credential. Dropped: the whole user info of an
    http(s) URL (a user name may itself be a token), the password of any URL (``ssh://u:pw@h``, ``u:pw@h:path``),
    the query string and the fragment. The user name of an ssh URL (``git@host:path``) is kept: it is part of
    the address.

    Example:
        >>> redact_url("https://bob:s3cret@example.com/state.git?private_token=abc")
        'https://example.com/state.git'
        >>> redact_url("git:s3cret@example.com:me/state.git")
        'git@example.com:me/state.git'
    """
    if _is_scp_like(url):
        m = _SCP_RE.match(url)
        if m is None:
            return url.rpartition("@")[2]
        return f"{m['user'] + '@' if m['user'] else ''}{m['host']}:{m['path']}"
    if "://" not in url:
        return url  # a local path
    scheme, _, rest = url.partition("://")
    authority = re.match(r"[^/?#]*", rest)
    assert authority is not None
    path = re.split(r"[?#]", rest[authority.end() :], maxsplit=1)[0]
    userinfo, at, hostport = authority.group().rpartition("@")
    user = userinfo.split(":", 1)[0] if at and scheme.lower() not in ("http", "https") else ""
    return f"{scheme}://{user + '@' if user else ''}{hostport}{path}"


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it shown by :func:`redact_url` (for texts written by older versions)."""
    return _URL_IN_TEXT_RE.sub(lambda m: redact_url(m.group()), text)


def _is_scp_like(url: str) -> bool:
    if "://" in url:
        return False
    colon = url.find(":")
    if colon <= 0:
        return False
    slash = url.find("/")
    return slash == -1 or colon < slash


def parse_url(url: str, name: str = "", *, strict: bool = True) -> tuple[Endpoint, Credentials]:
    """Split ``url`` into an endpoint without credentials plus the credentials it carried.

    ``strict`` (adding a remote, cloning): a password where it cannot be used (ssh, git://) is an error.
    Otherwise (a URL already in ``.git/config``) it is split off all the same, so that it can be moved out."""
    if not isinstance(url, str) or not url.strip():
        raise RemoteError("a remote URL is required (a path, file://, git://, http(s):// or ssh:// URL)")
    url = url.strip()
    if "\n" in url or "\x00" in url:
        raise RemoteError("a remote URL cannot contain control characters")
    if _is_scp_like(url):
        return _parse_scp(url, name, strict=strict)
    if "://" not in url:
        path = str(Path(url).expanduser().absolute())
        return Endpoint(name, path, "local", path=path), Credentials()
    return _parse_scheme_url(url, name, strict=strict)


def _parse_scp(url: str, name: str, *, strict: bool) -> tuple[Endpoint, Credentials]:
    """An scp-style ssh address, ``[user@]host:path``."""
    m = _SCP_RE.match(url)
    if m is None or m["host"].startswith("-"):
        raise RemoteError(f"invalid ssh URL {redact_url(url)!r}")
    if m["password"] is not None and strict:
        raise RemoteError("ssh URLs cannot carry a password; use an ssh key or agent")
    user, host, path = m["user"] or None, m["host"], m["path"]
    clean = f"{user + '@' if user else ''}{host}:{path}"
    return Endpoint(name, clean, "ssh", host.strip("[]"), None, path, user), Credentials(password=m["password"])


def _parse_scheme_url(url: str, name: str, *, strict: bool) -> tuple[Endpoint, Credentials]:
    """A ``scheme://`` URL: file, git, http(s), ssh, or a scheme a transport module registered."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RemoteError(f"invalid remote URL {redact_url(url)!r} (bad host or port)") from None
    scheme = parts.scheme.lower()
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    found = Credentials(username, password, parts.query or None)
    host = parts.hostname
    if scheme == "file":
        if username or password or (host and host != "localhost"):
            raise RemoteError("file:// URLs name a local path (file:///srv/state.git)")
        path = unquote(parts.path)
        return Endpoint(name, f"file://{path}", "local", path=path), Credentials(query=found.query)
    hostport = (f"[{host}]" if host and ":" in host else host or "") + (f":{port}" if port else "")
    kind = registered_url_schemes().get(scheme)
    if kind is not None and kind not in _BUILT_IN_KINDS:
        if found.given() and strict:
            raise RemoteError(f"{scheme}:// URLs cannot carry credentials")
        clean = f"{scheme}://{hostport}{parts.path}"
        return Endpoint(name, clean, kind, host, port, unquote(parts.path)), Credentials()
    if not host:
        raise RemoteError(f"remote URL {redact_url(url)!r} has no host")
    if scheme == "git":
        if (username or password) and strict:
            raise RemoteError("git:// URLs cannot carry credentials (the git daemon has no authentication)")
        clean = urlunsplit(("git", hostport, parts.path, "", ""))
        return Endpoint(name, clean, "git", host, port, parts.path or "/"), found
    if scheme in ("http", "https"):
        clean = urlunsplit((scheme, hostport, parts.path, "", ""))
        return Endpoint(name, clean, "http", host, port, parts.path or "/"), found
    if scheme in ("ssh", "git+ssh", "ssh+git"):
        if password and strict:
            raise RemoteError("ssh URLs cannot carry a password; use an ssh key or agent")
        netloc = (f"{quote(username, safe='')}@" if username else "") + hostport
        clean = urlunsplit(("ssh", netloc, parts.path, "", ""))
        ep = Endpoint(name, clean, "ssh", host, port, unquote(parts.path), username)
        return ep, Credentials(password=password, query=found.query)
    others = "".join(f", {s}://" for s in sorted(set(registered_url_schemes()) - _BUILT_IN_SCHEMES))
    raise RemoteError(
        f"unsupported remote URL scheme {scheme!r}: use a path, file://, git://, http(s):// or ssh://{others}"
    )


def _read_credentials(repo: Repository) -> dict[str, dict[str, str]]:
    path = repo.meta_dir / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        logger.warning("cannot read the stored remote credentials (%s); ignoring them", type(e).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def replace_private(tmp: Path, path: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp`` (created here, only its owner can read it: 0600), fsync it and rename it over
    ``path``; ``tmp`` is removed if that fails.

    Raises:
        FileExistsError: ``tmp`` exists (it is left alone).
    """
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private_json(path: Path, data: object) -> None:
    """Write JSON atomically to a file only its owner can read (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.gitstate-tmp-{secrets.token_hex(4)}")
    replace_private(tmp, path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def store_credentials(repo: Repository, name: str, creds: Credentials | None, *, keep_stored: bool = False) -> None:
    """Keep ``creds`` for remote ``name`` in credentials.json (None or nothing given: forget them).
    ``keep_stored``: fields already stored win over ``creds`` (the order in which they are read)."""
    with state_lock:
        stored = _read_credentials(repo)
        given = creds or Credentials()
        entry = {
            k: v
            for k, v in (("username", given.username), ("password", given.password), ("query", given.query))
            if v is not None
        }
        if keep_stored:
            entry.update(stored.get(name) or {})
        if not entry:
            if stored.pop(name, None) is None:
                return
        else:
            stored[name] = entry
        path = repo.meta_dir / CREDENTIALS_FILE
        if stored:
            write_private_json(path, stored)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def credentials_for(repo: Repository | None, name: str, url: Credentials) -> Credentials:
    """Credentials for remote ``name``, each of user name, password and query taken from the environment (no
    query there), else the stored file, else the URL. A password without any user name is sent with
    ``x-access-token``."""
    env = env_name(name) if name else None
    user = password = None
    if env:
        user = os.environ.get(f"{env}_USERNAME") or None
        password = os.environ.get(f"{env}_PASSWORD") or os.environ.get(f"{env}_TOKEN") or None
    stored = (_read_credentials(repo).get(name) or {}) if repo is not None and name else {}
    user = user or stored.get("username") or url.username
    password = password or stored.get("password") or url.password
    query = stored.get("query") or url.query
    if password is not None and not user:
        user = TOKEN_USERNAME
    return Credentials(user, password, query)


def with_credentials(ep: Endpoint, creds: Credentials) -> Endpoint:
    """``ep`` with what it sends to authenticate (only http(s) sends any: ssh uses the user's key or agent)."""
    if ep.scheme != "http":
        return ep
    return dataclasses.replace(ep, username=creds.username, password=creds.password, query=creds.query)


class _ScrubSecrets(logging.Filter):
    """Hides the secrets of the remote operations running right now in log records: urllib3 logs each request
    line, query string included, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _log_secrets_lock:
            hidden = list(_log_secrets)
        if not hidden:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is the handler's problem, not ours
            return True
        clean = scrub(text, hidden)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, hidden)
        return True


_log_secrets_lock = threading.Lock()
_log_secrets: dict[str, int] = {}  # secret -> operations hiding it
_SCRUBBER: Final = _ScrubSecrets()
_SCRUBBED_LOGGERS: Final = ("urllib3", "dulwich", "gitstate")


def hide_in_logs(hidden: list[str]) -> None:
    """From now until :func:`unhide_in_logs` (the client that sends them is closed), ``hidden`` appears in no
    record of urllib3's, dulwich's or gitstate's loggers. A filter on a logger only sees that logger's own
    records, so it goes on each of them (they exist once their modules are imported: before any client)."""
    for logger_name, obj in list(logging.root.manager.loggerDict.items()):
        ours = logger_name.split(".", 1)[0] in _SCRUBBED_LOGGERS
        if ours and isinstance(obj, logging.Logger) and _SCRUBBER not in obj.filters:
            obj.addFilter(_SCRUBBER)
    with _log_secrets_lock:
        for s in hidden:
            _log_secrets[s] = _log_secrets.get(s, 0) + 1


def unhide_in_logs(hidden: list[str]) -> None:
    with _log_secrets_lock:
        for s in hidden:
            _log_secrets[s] -= 1
            if not _log_secrets[s]:
                del _log_secrets[s]
