"""Remotes: push, fetch, key-by-key merge of pulled history, clone, and the background auto-pusher.

gitstate talks to any Git server through dulwich's client: local paths and ``file://`` URLs (in process), ``git://``
(git daemon), ``http(s)://`` (smart HTTP, e.g. ``git http-backend`` or a hosted service) and ``ssh://`` /
``user@host:path`` through the user's own ``ssh`` binary. Nothing from the repository's ``.git/config`` that runs a
program is honoured (no ``core.sshCommand``, ``core.gitProxy``, credential helpers, ``http.*`` settings): a state
directory someone else wrote must not make gitstate execute anything.

**Credentials** are never written to ``.git/config``, never logged and never put in an exception message. They come,
in order of precedence, from:

1. the environment: ``GITSTATE_REMOTE_<NAME>_USERNAME`` and ``GITSTATE_REMOTE_<NAME>_PASSWORD`` (or
   ``GITSTATE_REMOTE_<NAME>_TOKEN``, sent as the password), ``<NAME>`` being the remote name upper-cased with
   every character other than letters and digits replaced by ``_`` (``origin`` ->
   ``GITSTATE_REMOTE_ORIGIN_PASSWORD``); each of the two fields falls back on its own to the next source, and a
   password with no user name anywhere is sent with the user name ``x-access-token``;
2. the arguments of :func:`add_remote` (``username=``, ``password=``), or what the URL given to it carries: user
   info (``https://user:token@host/state.git``, ``https://TOKEN@host/state.git``) and the *whole* query string of
   an http(s) URL (``?access_token=...``: which parameter a server reads a token from cannot be known, so every
   query counts as a credential; it is sent again with each request to the remote's own host). They are split off
   the URL and kept in ``.git/gitstate/credentials.json``, a file readable by its owner only (mode 0600), like
   git's own ``credential-store``. ``.git/config`` holds the URL without them; a fragment is dropped (it is
   never sent). ssh and git:// URLs with a password (``ssh://u:pw@h/x``, ``u:pw@h:x``) are refused.

A URL with credentials already in ``.git/config`` (an older version, ``git remote add``) is never shown; the first
push or fetch moves its credentials to ``credentials.json`` and rewrites the URL. URLs are shown only through
:func:`redact_url`, and while a client holding secrets is open they are hidden from urllib3's, dulwich's and
gitstate's log records (urllib3 logs request lines, query included, at DEBUG).

**Merging** (:func:`integrate`): when both sides have new commits, the merge commit (actor ``merge``, parents local
head then remote head) merges each document both sides changed key by key against the merge base
(:func:`gitstate.docdiff.merge3`; text documents line by line with :func:`gitstate.docdiff.merge_text3`). A key
both sides changed differently follows the rule: ``"ours"`` (default: keep the local value; the remote value is
named in the commit message and in the ``external_change`` event), ``"theirs"`` or ``"fail"``
(:class:`~gitstate.errors.MergeConflict`, nothing changed). Raw-bytes documents, and documents that do not parse on
one side, follow the same rule for the whole document.

**Auto-push** (:func:`start_auto_push`, ``gitstate.open(..., auto_push="origin")``): a daemon thread pushes after
commits, batching them, retrying with exponential backoff; it never blocks writes and never force-pushes. Its
state (last success, last error, attempts) is kept in ``.git/gitstate/push-<remote>.json`` so that it survives
restarts and ``gitstate status`` can show it (:func:`push_status`).

**Network**: no store lock is held while talking to a remote; a connection or read that stalls for
``$GITSTATE_REMOTE_TIMEOUT_S`` seconds (default 30) fails with :class:`~gitstate.errors.RemoteError`. Progress text
of long transfers goes to the callback given with :func:`report_progress` (the CLI prints it on a terminal).

Example:
    >>> import gitstate, subprocess, tempfile
    >>> bare = tempfile.mkdtemp()
    >>> _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
    >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
    ...     store.remote_add("origin", bare)
    ...     store.set("state.json", "services.slack", True)
    ...     store.push() == store.head
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as _dt
import heapq
import json
import logging
import os
import random
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from dulwich.client import (
    GitClient,
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    LocalGitClient,
    SSHGitClient,
    SubprocessSSHVendor,
    TCPGitClient,
    Urllib3HttpGitClient,
)
from dulwich.config import ConfigFile
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.file import FileLocked
from dulwich.object_store import DiskObjectStore, ObjectStoreGraphWalker
from dulwich.protocol import ZERO_SHA, Protocol
from dulwich.refs import Ref, check_ref_format

from . import docdiff
from .codecs import codec_for
from .errors import DecodeError, GitStateError, MergeConflict, PushRejected, RemoteError, RepositoryError
from .events import Pushed, PushError
from .repo import EMPTY_TREE, Repository
from .worktree import check_trees, checkout

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MERGE_RULES",
    "TOKEN_USERNAME",
    "AutoPusher",
    "DocConflict",
    "MergeOutcome",
    "add_remote",
    "check_remote",
    "clone_repository",
    "fetch",
    "integrate",
    "list_remotes",
    "push",
    "push_status",
    "redact_url",
    "remove_remote",
    "report_progress",
    "start_auto_push",
]

logger = logging.getLogger("gitstate.remote")

#: Seconds a network read or connect may stall before the operation fails (``$GITSTATE_REMOTE_TIMEOUT_S``).
DEFAULT_TIMEOUT_S: Final = 30.0
#: Rules for keys both sides changed.
MERGE_RULES: Final = ("ours", "theirs", "fail")
#: Auto-push: wait this long after a commit so that a burst of commits goes in one push.
AUTO_PUSH_BATCH_MS: Final = 200
#: Auto-push: at most one push per this interval, so that a steady write load is pushed in batches.
AUTO_PUSH_MIN_INTERVAL_MS: Final = 1000
#: Auto-push: first retry delay after a failure; doubles on each failure up to ``AUTO_PUSH_MAX_BACKOFF_S``.
AUTO_PUSH_INITIAL_BACKOFF_S: Final = 0.5
AUTO_PUSH_MAX_BACKOFF_S: Final = 60.0
#: Auto-push: how long ``close()`` waits for the last push attempt.
AUTO_PUSH_FINAL_TIMEOUT_S: Final = 5.0

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CREDENTIALS_FILE: Final = "credentials.json"
_TOKEN_USERNAME: Final = "x-access-token"
#: The user name sent with a token given alone (GitHub, GitLab and Gitea accept any name with a token).
TOKEN_USERNAME: Final = _TOKEN_USERNAME
_state_lock = threading.Lock()
_pushers_lock = threading.Lock()
_pushers: dict[tuple[str, str], set[AutoPusher]] = {}  # (store root, remote) -> running pushers
_push_locks: dict[tuple[str, str], threading.Lock] = {}

ProgressFn = Callable[[str], None]
_progress_sink: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar("gitstate_progress", default=None)


# ===================================================================== progress
@contextlib.contextmanager
def report_progress(callback: ProgressFn | None) -> Iterator[None]:
    """Send progress text of the remote operations run inside the block (on this thread) to ``callback``.

    The text comes in pieces ending with ``"\\r"`` (redraw the line) or ``"\\n"``; the CLI prints it on a terminal.

    Example:
        >>> with report_progress(lambda text: None):
        ...     pass  # store.push() / store.pull() / gitstate.clone() here report progress
    """
    token = _progress_sink.set(callback)
    try:
        yield
    finally:
        _progress_sink.reset(token)


class _Progress:
    """Adapts dulwich's progress (bytes from the server's side band) and our own counters to one text sink."""

    def __init__(self, sink: ProgressFn | None, hidden: list[str]) -> None:
        self.sink = sink
        self.hidden = hidden  # never shown, whatever the server sends back
        self._last = 0.0

    def __bool__(self) -> bool:
        return self.sink is not None

    def text(self, text: str, *, force: bool = False) -> None:
        if self.sink is None:
            return
        now = time.monotonic()
        if not force and text.endswith("\r") and now - self._last < 0.1:
            return  # redraws are throttled; final lines always go out
        self._last = now
        try:
            self.sink(_scrub(text, self.hidden))
        except Exception:  # a broken progress display must not break a push
            logger.debug("progress callback failed", exc_info=True)

    def remote(self, data: bytes) -> None:
        self.text("remote: " + data.decode("utf-8", "replace"), force=data.endswith(b"\n"))


# ===================================================================== URLs and credentials
@dataclass(frozen=True)
class _Credentials:
    """What authenticates to a remote, from its URL, ``credentials.json`` or the environment. Never written to
    ``.git/config`` and never shown. ``query`` is the whole query string of an http(s) URL (``access_token=...``):
    which parameter names a server takes for a token cannot be known, so all of it counts as a credential."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    query: str | None = field(default=None, repr=False)

    def given(self) -> bool:
        return any(v is not None for v in (self.username, self.password, self.query))


@dataclass(frozen=True)
class _Endpoint:
    """Where a remote is and how to reach it. ``url`` never carries a credential (no password, query or fragment);
    an http(s) endpoint's ``username``, ``password`` and ``query`` are sent with each request."""

    name: str
    url: str
    scheme: str  # "local" | "git" | "http" | "ssh"
    host: str | None = None
    port: int | None = None
    path: str = ""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    query: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Every text to hide in messages and logs: the password, a user name sent without one (then it is the
        token), the query and each of its values of 4 characters or more (shorter ones are no secret, and
        hiding them would garble port numbers and the like)."""
        out = [self.password] if self.password else []
        if self.scheme == "http" and self.username and not self.password and self.username != _TOKEN_USERNAME:
            out.append(self.username)
        if self.query:
            out.append(self.query)
            for part in self.query.split("&"):
                value = part.partition("=")[2]
                out += [v for v in {value, unquote(value.replace("+", " "))} if len(v) >= 4]
        return out


def _scrub(text: str, hidden: list[str]) -> str:
    """``text`` with every secret (as is and URL-quoted) replaced by ``***``."""
    for s in sorted({s for s in hidden if s}, key=len, reverse=True):  # a whole query before its values
        for form in {s, quote(s, safe=""), quote(s)}:
            text = text.replace(form, "***")
    return text


# An scp-style URL, [user[:password]@]host:path. The password may hold anything but "@": a token with "/" in it
# must not be taken for a path (and leak); the price is that "host:dir/a@b:c" reads as user "host" at "b".
_SCP_RE: Final = re.compile(
    r"^(?:(?P<user>[^@/:]*)(?::(?P<password>[^@]*))?@)?(?P<host>\[[^\]/@]*\]|[^@/:\[\]]+):(?P<path>.*)$", re.S
)
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


def _redact_urls_in(text: str) -> str:
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


def _parse_url(url: str, name: str = "", *, strict: bool = True) -> tuple[_Endpoint, _Credentials]:
    """Split ``url`` into an endpoint without credentials plus the credentials it carried.

    ``strict`` (adding a remote, cloning): a password where it cannot be used (ssh, git://) is an error.
    Otherwise (a URL already in ``.git/config``) it is split off all the same, so that it can be moved out."""
    if not isinstance(url, str) or not url.strip():
        raise RemoteError("a remote URL is required (a path, file://, git://, http(s):// or ssh:// URL)")
    url = url.strip()
    if "\n" in url or "\x00" in url:
        raise RemoteError("a remote URL cannot contain control characters")
    if _is_scp_like(url):
        m = _SCP_RE.match(url)
        if m is None or m["host"].startswith("-"):
            raise RemoteError(f"invalid ssh URL {redact_url(url)!r}")
        if m["password"] is not None and strict:
            raise RemoteError("ssh URLs cannot carry a password; use an ssh key or agent")
        user, host, path = m["user"] or None, m["host"], m["path"]
        clean = f"{user + '@' if user else ''}{host}:{path}"
        return _Endpoint(name, clean, "ssh", host.strip("[]"), None, path, user), _Credentials(password=m["password"])
    if "://" not in url:
        path = str(Path(url).expanduser().absolute())
        return _Endpoint(name, path, "local", path=path), _Credentials()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RemoteError(f"invalid remote URL {redact_url(url)!r} (bad host or port)") from None
    scheme = parts.scheme.lower()
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    found = _Credentials(username, password, parts.query or None)
    host = parts.hostname
    if scheme == "file":
        if username or password or (host and host != "localhost"):
            raise RemoteError("file:// URLs name a local path (file:///srv/state.git)")
        path = unquote(parts.path)
        return _Endpoint(name, f"file://{path}", "local", path=path), _Credentials(query=found.query)
    if not host:
        raise RemoteError(f"remote URL {redact_url(url)!r} has no host")
    bracketed = f"[{host}]" if ":" in host else host
    hostport = bracketed + (f":{port}" if port else "")
    if scheme == "git":
        if (username or password) and strict:
            raise RemoteError("git:// URLs cannot carry credentials (the git daemon has no authentication)")
        clean = urlunsplit(("git", hostport, parts.path, "", ""))
        return _Endpoint(name, clean, "git", host, port, parts.path or "/"), found
    if scheme in ("http", "https"):
        clean = urlunsplit((scheme, hostport, parts.path, "", ""))
        return _Endpoint(name, clean, "http", host, port, parts.path or "/"), found
    if scheme in ("ssh", "git+ssh", "ssh+git"):
        if password and strict:
            raise RemoteError("ssh URLs cannot carry a password; use an ssh key or agent")
        netloc = (f"{quote(username, safe='')}@" if username else "") + hostport
        clean = urlunsplit(("ssh", netloc, parts.path, "", ""))
        ep = _Endpoint(name, clean, "ssh", host, port, unquote(parts.path), username)
        return ep, _Credentials(password=password, query=found.query)
    raise RemoteError(f"unsupported remote URL scheme {scheme!r}: use a path, file://, git://, http(s):// or ssh://")


def _env_name(name: str) -> str:
    return "GITSTATE_REMOTE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _read_credentials(repo: Repository) -> dict[str, dict[str, str]]:
    path = repo.meta_dir / _CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        logger.warning("cannot read the stored remote credentials (%s); ignoring them", type(e).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def _replace_private(tmp: Path, path: Path, data: bytes) -> None:
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


def _write_private_json(path: Path, data: object) -> None:
    """Write JSON atomically to a file only its owner can read (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.gitstate-tmp-{secrets.token_hex(4)}")
    _replace_private(tmp, path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _store_credentials(repo: Repository, name: str, creds: _Credentials | None, *, keep_stored: bool = False) -> None:
    """Keep ``creds`` for remote ``name`` in credentials.json (None or nothing given: forget them).
    ``keep_stored``: fields already stored win over ``creds`` (the order in which they are read)."""
    with _state_lock:
        stored = _read_credentials(repo)
        given = creds or _Credentials()
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
        path = repo.meta_dir / _CREDENTIALS_FILE
        if stored:
            _write_private_json(path, stored)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _credentials_for(repo: Repository | None, name: str, url: _Credentials) -> _Credentials:
    """Credentials for remote ``name``, each of user name, password and query taken from the environment (no
    query there), else the stored file, else the URL. A password without any user name is sent with
    ``x-access-token``."""
    env = _env_name(name) if name else None
    user = password = None
    if env:
        user = os.environ.get(f"{env}_USERNAME") or None
        password = os.environ.get(f"{env}_PASSWORD") or os.environ.get(f"{env}_TOKEN") or None
    stored = (_read_credentials(repo).get(name) or {}) if repo is not None and name else {}
    user = user or stored.get("username") or url.username
    password = password or stored.get("password") or url.password
    query = stored.get("query") or url.query
    if password is not None and not user:
        user = _TOKEN_USERNAME
    return _Credentials(user, password, query)


def _with_credentials(ep: _Endpoint, creds: _Credentials) -> _Endpoint:
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
        clean = _scrub(text, hidden)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _scrub(record.exc_text, hidden)
        return True


_log_secrets_lock = threading.Lock()
_log_secrets: dict[str, int] = {}  # secret -> operations hiding it
_SCRUBBER: Final = _ScrubSecrets()
_SCRUBBED_LOGGERS: Final = ("urllib3", "dulwich", "gitstate")


def _hide_in_logs(hidden: list[str]) -> None:
    """From now until :func:`_unhide_in_logs` (the client that sends them is closed), ``hidden`` appears in no
    record of urllib3's, dulwich's or gitstate's loggers. A filter on a logger only sees that logger's own
    records, so it goes on each of them (they exist once their modules are imported: before any client)."""
    for logger_name, obj in list(logging.root.manager.loggerDict.items()):
        ours = logger_name.split(".", 1)[0] in _SCRUBBED_LOGGERS
        if ours and isinstance(obj, logging.Logger) and _SCRUBBER not in obj.filters:
            obj.addFilter(_SCRUBBER)
    with _log_secrets_lock:
        for s in hidden:
            _log_secrets[s] = _log_secrets.get(s, 0) + 1


def _unhide_in_logs(hidden: list[str]) -> None:
    with _log_secrets_lock:
        for s in hidden:
            _log_secrets[s] -= 1
            if not _log_secrets[s]:
                del _log_secrets[s]


# ===================================================================== .git/config
def _config_path(repo: Repository) -> Path:
    return repo.git_dir / "config"


def _load_config(repo: Repository) -> ConfigFile:
    try:
        return ConfigFile.from_path(str(_config_path(repo)))
    except FileNotFoundError:
        return ConfigFile()
    except Exception as e:
        raise RepositoryError(f"{repo.root}: cannot read .git/config: {e}") from e


def _save_config(repo: Repository, cfg: ConfigFile) -> None:
    """Write .git/config through git's lock-file protocol, keeping it private (0600)."""
    import io

    buf = io.BytesIO()
    cfg.write_to_file(buf)
    path = _config_path(repo)
    lock = path.with_name("config.lock")
    try:
        _replace_private(lock, path, buf.getvalue())
    except FileExistsError:
        raise RepositoryError(
            f"{lock} exists: another git process is changing the configuration; retry, or "
            "remove the file if no git is running"
        ) from None


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name or name.endswith((".lock", ".")):
        raise RemoteError(f"invalid remote name {name!r}: use letters, digits, '.', '_' and '-' (e.g. 'origin')")
    return name


def list_remotes(repo: Repository) -> dict[str, str]:
    """Configured remotes: name -> URL (never with credentials).

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp())
        >>> add_remote(repo, "backup", "/srv/state.git"); list_remotes(repo)
        {'backup': '/srv/state.git'}
        >>> repo.close()
    """
    cfg = _load_config(repo)
    out: dict[str, str] = {}
    for section in cfg.sections():
        if len(section) == 2 and section[0] == b"remote":
            try:
                url = cfg.get(section, b"url").decode("utf-8", "replace")
            except KeyError:
                continue
            out[section[1].decode("utf-8", "replace")] = redact_url(url)
    return out


def add_remote(
    repo: Repository, name: str, url: str, *, username: str | None = None, password: str | None = None
) -> None:
    """Add remote ``name`` at ``url``, or point an existing one at ``url`` (so calling it on every start is fine).

    ``.git/config`` gets ``[remote "name"]`` with the URL *without* user info and the usual fetch refspec.
    Credentials in the URL, or given as ``username``/``password``, are kept in ``.git/gitstate/credentials.json``
    (mode 0600); environment variables ``GITSTATE_REMOTE_<NAME>_USERNAME`` / ``_PASSWORD`` / ``_TOKEN`` take
    precedence over them at push and fetch time. A relative path is made absolute.

    Raises:
        RemoteError: the name or URL is invalid.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp())
        >>> add_remote(repo, "origin", "https://bob:s3cret@git.example.com/state.git")
        >>> list_remotes(repo)
        {'origin': 'https://git.example.com/state.git'}
        >>> repo.close()
    """
    _check_name(name)
    endpoint, found = _parse_url(url, name)
    user = username if username is not None else found.username
    pw = password if password is not None else found.password
    if pw is not None and endpoint.scheme != "http":
        raise RemoteError(f"{endpoint.scheme} remotes take no password; only http(s) remotes use one")
    cfg = _load_config(repo)
    section = (b"remote", name.encode())
    cfg.set(section, b"url", endpoint.url.encode())
    cfg.set(section, b"fetch", f"+refs/heads/*:refs/remotes/{name}/*".encode())
    _save_config(repo, cfg)
    # Only http(s) sends credentials; for the others, stale ones (an earlier URL of this name) are forgotten.
    _store_credentials(repo, name, _Credentials(user, pw, found.query) if endpoint.scheme == "http" else None)
    logger.info("remote %s -> %s", name, endpoint.url)
    with _pushers_lock:
        pushers = list(_pushers.get((str(repo.root), name), ()))
    for pusher in pushers:
        pusher.poke()


def remove_remote(repo: Repository, name: str) -> None:
    """Remove remote ``name``: its configuration, stored credentials, tracking refs and push state.

    Raises:
        RemoteError: no such remote.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp())
        >>> add_remote(repo, "old", "/srv/old.git"); remove_remote(repo, "old"); list_remotes(repo)
        {}
        >>> repo.close()
    """
    _check_name(name)
    cfg = _load_config(repo)
    section = (b"remote", name.encode())
    if not cfg.has_section(section):
        raise RemoteError(f"no remote named {name!r}; 'gitstate remote list' shows the remotes")
    del cfg[section]
    for other in list(cfg.sections()):  # like git: branches that tracked it no longer do
        if len(other) == 2 and other[0] == b"branch":
            with contextlib.suppress(KeyError):
                if cfg.get(other, b"remote") == name.encode():
                    del cfg[other]
    _save_config(repo, cfg)
    _store_credentials(repo, name, None)
    for ref, sha in repo.list_refs(f"refs/remotes/{name}/").items():
        with contextlib.suppress(GitStateError, OSError):
            repo.update_ref(ref, None, sha)
    with contextlib.suppress(FileNotFoundError):
        _state_path(repo, name).unlink()


def _configured(repo: Repository, name: str) -> tuple[_Endpoint, str, _Credentials]:
    """Remote ``name`` as ``.git/config`` has it: the endpoint (no credentials yet), the URL as written there and
    the credentials that URL carries (a URL written by an older version or by ``git remote add`` may)."""
    _check_name(name)
    url = repo.config_get("remote", "url", subsection=name)
    if not url:
        known = ", ".join(sorted(list_remotes(repo))) or "none"
        raise RemoteError(
            f"no remote named {name!r} (configured: {known}); add one with "
            f"'gitstate remote add {name} URL' or store.remote_add({name!r}, url)"
        )
    ep, found = _parse_url(url, name, strict=False)
    return ep, url, found


def _move_credentials_out_of_config(repo: Repository, ep: _Endpoint, found: _Credentials) -> None:
    """Move the credentials of a URL in ``.git/config`` into credentials.json (fields already stored there
    win, as when they are read), then write the URL without them. Stored first: a crash in between loses
    nothing. A config that cannot be written only costs a warning: the URL is never shown either way."""
    try:
        if found.given():
            _store_credentials(repo, ep.name, found, keep_stored=True)
        cfg = _load_config(repo)
        cfg.set((b"remote", ep.name.encode()), b"url", ep.url.encode())
        _save_config(repo, cfg)
    except (GitStateError, OSError) as e:
        hidden = _with_credentials(dataclasses.replace(ep, scheme="http"), found).secrets()
        logger.warning(
            "could not move the credentials of remote %s out of .git/config: %s", ep.name, _scrub(str(e), hidden)
        )
        return
    logger.info("moved the credentials in the URL of remote %s from .git/config to %s", ep.name, _CREDENTIALS_FILE)
    if found.password is not None and ep.scheme != "http":
        logger.warning(
            "remote %s: %s remotes cannot use a password (kept in %s); your ssh key or agent is used",
            ep.name,
            ep.scheme,
            _CREDENTIALS_FILE,
        )


def _endpoint(repo: Repository, name: str) -> _Endpoint:
    """Remote ``name`` with the credentials to send; on first use, a URL in .git/config that carries
    credentials has them moved out (:func:`_move_credentials_out_of_config`)."""
    ep, url, found = _configured(repo, name)
    if ep.scheme != "local" and (found.given() or "#" in url):
        _move_credentials_out_of_config(repo, ep, found)
    return _with_credentials(ep, _credentials_for(repo, name, found))


def check_remote(repo: Repository, name: str, *, timeout_s: float = 5.0) -> str:
    """Check within ``timeout_s`` that remote ``name`` answers (for ``gitstate doctor``); returns what was seen.

    Nothing is written (credentials in the URL of .git/config are not moved here) and no program is started:
    an http(s) remote is asked for its refs with the credentials a push would send (so a refused token is an
    error), a git:// or ssh remote must accept a TCP connection (ssh itself could ask for a passphrase), a
    local one must be a Git repository.

    Raises:
        RemoteError: no such remote, or it does not answer; the message names the URL without credentials.

    Example:
        >>> import subprocess, tempfile
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> repo = Repository.open(tempfile.mkdtemp()); add_remote(repo, "origin", bare)
        >>> check_remote(repo, "origin")
        'a local repository'
        >>> repo.close()
    """
    ep, _, found = _configured(repo, name)
    ep = dataclasses.replace(_with_credentials(ep, _credentials_for(repo, name, found)), name="")
    failure: Exception | None = None
    if ep.scheme == "local":
        path = Path(ep.path)
        if ((path / "HEAD").is_file() and (path / "objects").is_dir()) or (path / ".git" / "HEAD").is_file():
            return "a local repository"
        raise RemoteError(f"no Git repository at {ep.url}")
    if ep.scheme in ("git", "ssh"):
        assert ep.host is not None
        port = ep.port or (9418 if ep.scheme == "git" else 22)
        try:
            socket.create_connection((ep.host, port), timeout=timeout_s).close()
        except OSError as e:
            failure = e
        if failure is not None:
            raise _chain(_translate(failure, ep, "connect to", timeout_s), failure, ep)
        return f"{ep.host}:{port} accepts connections"
    _list_refs(ep, "connect to", timeout_s)
    sent = ep.password is not None or ep.username is not None or ep.query is not None
    return "it answers" + (" to the stored credentials" if sent else "")


def _list_refs(ep: _Endpoint, action: str, timeout_s: float) -> Any:
    """The remote's refs (dulwich's listing), or a RemoteError that shows no credential."""
    client, path = _client(ep, timeout_s=timeout_s)
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
    raise _chain(_translate(failure, ep, action, timeout_s), failure, ep)


def _timeout_s() -> float:
    try:
        return max(0.1, float(os.environ.get("GITSTATE_REMOTE_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


# ===================================================================== transports
class _TimeoutTCPGitClient(TCPGitClient):
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


class _HttpGitClient(Urllib3HttpGitClient):
    """dulwich's smart-HTTP client, releasing connections on error answers and on close (dulwich leaves the
    socket of a 401 or 404 answer open), and sending the remote URL's query string (a token kept in
    credentials.json) with every request to the remote's own origin, never to another one a redirect names."""

    def __init__(self, base_url: str, *, query: str | None, hidden: list[str], **options: Any) -> None:
        super().__init__(base_url, **options)
        self._query = query
        self._query_origin = self._origin(base_url)
        self._hidden: list[str] | None = list(dict.fromkeys(s for s in hidden if s))
        _hide_in_logs(self._hidden)

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
            _unhide_in_logs(self._hidden)
            self._hidden = None

    def __del__(self) -> None:  # a client dropped without close() must not keep its secrets registered
        with contextlib.suppress(Exception):
            self.close()


def _ssh_command() -> str:
    """The user's ssh: ``$GIT_SSH_COMMAND``, ``$GIT_SSH``, else ``ssh`` (never the repository's config)."""
    cmd = os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH") or "ssh"
    if os.environ.get("GIT_SSH") and not os.environ.get("GIT_SSH_COMMAND"):
        import shlex

        cmd = shlex.quote(cmd)
    return cmd


def _client(ep: _Endpoint, *, timeout_s: float) -> tuple[GitClient, str]:
    """A dulwich client for the endpoint (config=None: nothing from any git config is used) and the path."""
    if ep.scheme == "local":
        return LocalGitClient(), ep.path
    if ep.scheme == "git":
        assert ep.host is not None
        return _TimeoutTCPGitClient(ep.host, ep.port, timeout_s=timeout_s), ep.path
    if ep.scheme == "http":
        client = _HttpGitClient(
            ep.url,
            query=ep.query,
            hidden=ep.secrets(),
            config=None,
            username=ep.username,
            password=ep.password,
            timeout=timeout_s,
        )
        return client, ep.path
    if ep.scheme == "ssh":
        assert ep.host is not None
        ssh = SSHGitClient(
            ep.host,
            port=ep.port,
            username=ep.username,
            vendor=SubprocessSSHVendor(),
            config=None,
            ssh_command=_ssh_command(),
        )
        return ssh, ep.path
    raise AssertionError(ep.scheme)


def _translate(e: BaseException, ep: _Endpoint, action: str, timeout_s: float) -> RemoteError:
    """A clear RemoteError for a transport failure; no credentials in it."""
    where = f"{ep.name} ({ep.url})" if ep.name else ep.url
    if isinstance(e, HTTPUnauthorized):
        if ep.password or ep.username:
            msg = (
                f"authentication failed for {where}: the server refused the user name and password/token; "
                f"check them (set {_env_name(ep.name or 'origin')}_PASSWORD or re-add the remote with "
                "credentials in its URL)"
            )
        else:
            msg = (
                f"{where} requires authentication: give credentials in the URL to 'gitstate remote add' "
                f"(kept out of .git/config) or set {_env_name(ep.name or 'origin')}_USERNAME and _PASSWORD"
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
    return RemoteError(_scrub(msg, ep.secrets()))


def _chain(err: RemoteError, cause: BaseException, ep: _Endpoint) -> RemoteError:
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
        if any(_scrub(t, hidden) != t for t in texts):
            return True
        stack += [e.__cause__, e.__context__]
    return False


_TYPE_NUMS: Final = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


class _OperationObjectStore(DiskObjectStore):
    """The object store as one push or fetch sees it: loose objects read directly (dulwich looks in every pack
    first and rescans the pack directory on each miss, while a store's recent history is loose), and commits
    and trees cached, since the pack is generated after a walk that already read them."""

    def __init__(self, path: str) -> None:
        super().__init__(path, fsync_object_files=True)
        self._raw_cache: dict[bytes, tuple[int, bytes]] = {}

    def get_raw(self, name: Any) -> tuple[int, bytes]:
        hexsha = bytes(name) if len(name) == 40 else bytes(name).hex().encode()
        hit = self._raw_cache.get(hexsha)
        if hit is not None:
            return hit
        raw: tuple[int, bytes] | None = None
        try:
            with open(os.path.join(self.path, hexsha[:2].decode(), hexsha[2:].decode()), "rb") as f:
                data = zlib.decompress(f.read())
            header, _, body = data.partition(b"\0")
            kind, _, size = header.partition(b" ")
            if int(size) == len(body):
                raw = (_TYPE_NUMS[kind], body)
        except (OSError, KeyError, ValueError, zlib.error):
            raw = None
        if raw is None:
            raw = super().get_raw(name)
        if raw[0] in (1, 2) and len(raw[1]) < 65536 and len(self._raw_cache) < 100_000:
            self._raw_cache[hexsha] = raw
        return raw


def _read_shallow(repo: Repository) -> list[str]:
    try:
        return (repo.git_dir / "shallow").read_text("ascii").split()
    except FileNotFoundError:
        return []


def _objects(repo: Repository) -> Any:
    """A private object-store handle for one network operation (dulwich objects are not thread-safe; objects
    themselves are immutable, so a second handle on the same directory is safe)."""
    return _OperationObjectStore(str(repo.git_dir / "objects"))


# ===================================================================== history walks
_STALE: Final = 4


def _paint(repo: Repository, a: str, b: str, *, limit: int = 2_000_000) -> tuple[dict[str, int], list[str]]:
    """Walk from ``a`` (flag 1) and ``b`` (flag 2), newest first, until only common history is left (git's
    paint-down). Returns the flags of every commit visited and the merge bases found, best first. The cost
    follows how far the two sides diverged, not the length of history."""
    flags: dict[str, int] = {a: 1}
    flags[b] = flags.get(b, 0) | 2
    heap: list[tuple[int, int, str]] = []
    queued: set[str] = set()
    counter = 0

    def push(sha: str) -> None:
        nonlocal counter
        heapq.heappush(heap, (-repo.commit_info(sha).commit_time, counter, sha))
        counter += 1
        queued.add(sha)

    for start in dict.fromkeys((a, b)):
        push(start)
    bases: list[str] = []
    while heap and any(not flags[s] & _STALE for _, _, s in heap):
        _, _, c = heapq.heappop(heap)
        queued.discard(c)
        f = flags[c]
        if f & 3 == 3 and not f & _STALE:
            bases.append(c)
            f |= _STALE
            flags[c] = f
        for p in repo.commit_info(c).parents:
            pf = flags.get(p, 0)
            if pf | f != pf:
                flags[p] = pf | f
                if p not in queued:
                    push(p)
        if len(flags) > limit:
            raise RepositoryError("history too large to compare")
    return flags, bases


def _merge_base(repo: Repository, a: str, b: str) -> str | None:
    return _paint(repo, a, b)[1][0] if a != b else a


def _is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    if ancestor == descendant:
        return True
    return ancestor in _paint(repo, ancestor, descendant)[1]


def _count_commits(repo: Repository, start: str, *, limit: int = 1_000_000) -> int:
    seen = {start}
    stack = [start]
    while stack and len(seen) < limit:
        for p in repo.commit_info(stack.pop()).parents:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return len(seen)


def _ahead_behind(repo: Repository, local: str | None, remote: str | None) -> tuple[int, int]:
    """(commits in ``local`` not in ``remote``, commits in ``remote`` not in ``local``)."""
    if local == remote:
        return 0, 0
    if remote is None or not repo.has_object(remote):
        return (_count_commits(repo, local) if local else 0), 0
    if local is None:
        return 0, _count_commits(repo, remote)
    flags, _ = _paint(repo, local, remote)
    ahead = sum(1 for f in flags.values() if f & 3 == 1)
    behind = sum(1 for f in flags.values() if f & 3 == 2)
    return ahead, behind


# ===================================================================== refs
def _tracking_ref(repo: Repository, name: str) -> str:
    return f"refs/remotes/{name}/{repo.branch}"


def _set_ref(repo: Repository, ref: str, new: str) -> None:
    """Move a bookkeeping ref (tracking ref, fetched tag) to ``new``, retrying if another process moves it."""
    for _ in range(5):
        current = repo.read_ref(ref)
        if current == new:
            return
        try:
            repo.update_ref(ref, new, current)
            return
        except RepositoryError:
            continue
    logger.warning("could not update %s (another process keeps moving it)", ref)


def _peeled(refs: Mapping[bytes, bytes | None]) -> dict[bytes, bytes]:
    return {k: v for k, v in refs.items() if v is not None and not k.endswith(b"^{}") and v != ZERO_SHA}


# ===================================================================== push
def push(
    repo: Repository,
    name: str,
    *,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    commit: str | None = None,
) -> str | None:
    """Push the store's branch (and snapshot tags the remote lacks) to remote ``name``; never forced.

    Returns the pushed commit id, or None when the remote already had it (or the store has no commit yet).
    On success ``refs/remotes/<name>/<branch>`` points at the pushed commit. No store lock is held: the network
    I/O never blocks writers. Pushes to one remote from one process run one at a time. ``commit`` pushes that
    commit of the branch instead of its current head.

    Raises:
        PushRejected: the remote branch has commits this store does not have; run ``sync``.
        RemoteError: the remote is unreachable, refused the connection or the push, or authentication failed.

    Example:
        >>> import gitstate, subprocess, tempfile
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     store.set("a.json", "x", 1); _ = store.flush()
        ...     add_remote(store._repo, "origin", bare)
        ...     push(store._repo, "origin") == store.head, push(store._repo, "origin")
        (True, None)
    """
    ep = _endpoint(repo, name)
    with _push_lock(repo, name):
        return _push(repo, name, ep, commit or repo.head(), progress=progress, timeout_s=timeout_s)


def _push_lock(repo: Repository, name: str) -> threading.Lock:
    with _pushers_lock:
        return _push_locks.setdefault((str(repo.root), name), threading.Lock())


def _push(
    repo: Repository,
    name: str,
    ep: _Endpoint,
    head: str | None,
    *,
    progress: ProgressFn | None,
    timeout_s: float | None,
) -> str | None:
    timeout = timeout_s if timeout_s is not None else _timeout_s()
    prog = _Progress(progress or _progress_sink.get(), ep.secrets())
    if head is None:
        return None
    branch_ref = repo.branch_ref.encode()
    head_b = head.encode()
    local_tags = {k.encode(): v.encode() for k, v in repo.list_refs("refs/tags/").items()}
    outcome: dict[str, Any] = {}
    objects = _objects(repo)

    def update_refs(remote_refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        refs = _peeled(remote_refs)
        remote_head = refs.get(branch_ref)
        outcome["remote_head"] = remote_head
        new: dict[bytes, bytes] = {}
        if remote_head != head_b:
            if remote_head is None or (remote_head in objects and _is_ancestor(repo, remote_head.decode(), head)):
                new[branch_ref] = head_b
            else:
                outcome["rejected"] = True
                return {}
        for ref, sha in local_tags.items():
            if ref not in refs:
                new[ref] = sha
            elif refs[ref] != sha:
                logger.info("not pushing tag %s: the remote has a different %s", ref.decode(), ref.decode())
        outcome["new"] = new
        return new

    def generate_pack_data(
        have: set[bytes], want: set[bytes], *, ofs_delta: bool = True, progress: Any = None
    ) -> tuple[int, Iterator[Any]]:
        # Commits behind .git/shallow (cut by forget, or a shallow clone) are absent: dulwich must not walk them.
        shallow = {line.strip().encode() for line in _read_shallow(repo)}
        count, records = objects.generate_pack_data(have, want, shallow=shallow, ofs_delta=ofs_delta)
        outcome["objects"] = count

        def counted() -> Iterator[Any]:
            for i, rec in enumerate(records, 1):
                if prog and (i == count or i % 200 == 0):
                    prog.text(
                        f"Writing objects: {100 * i // max(count, 1)}% ({i}/{count})" + ("\n" if i == count else "\r"),
                        force=i == count,
                    )
                yield rec

        return count, counted()

    if ep.scheme == "local":
        _refuse_checked_out_branch(ep, repo.branch_ref)
    client, path = _client(ep, timeout_s=timeout)
    prog.text(f"Pushing to {ep.url}\n", force=True)
    send_pack: Any = client.send_pack
    result: Any = None
    failure: Exception | None = None
    try:
        result = send_pack(path, update_refs, generate_pack_data, progress=prog.remote if prog else None)
    except GitStateError:
        raise
    except Exception as e:
        failure = e
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            objects.close()
    if failure is not None:
        err = _translate(failure, ep, "push to", timeout)
        _record_push_state(repo, name, error=str(err))
        raise _chain(err, failure, ep)
    if outcome.get("rejected"):
        err = PushRejected(
            f"push to {name} ({ep.url}) was rejected: the remote {repo.branch} has commits this store does not "
            f"have (another machine pushed). Run 'gitstate sync {name}' (store.sync({name!r})) to merge them and "
            "push; nothing is lost on either side."
        )
        _record_push_state(repo, name, error=str(err))
        raise err
    for ref, status in (result.ref_status or {}).items():
        if status is None:
            continue
        status = _scrub(str(status), ep.secrets())
        if ref == branch_ref:
            if any(
                w in status for w in ("non-fast-forward", "fetch first", "stale info", "but expected", "unable to set")
            ):
                err = PushRejected(
                    f"push to {name} ({ep.url}) was rejected ({status}): the remote moved; run "
                    f"'gitstate sync {name}' to merge and push again"
                )
            else:
                err = RemoteError(f"{name} ({ep.url}) refused the push of {repo.branch}: {status}")
            _record_push_state(repo, name, error=str(err))
            raise err
        logger.warning("%s refused %s: %s", name, ref.decode(), status)
    _set_ref(repo, _tracking_ref(repo, name), head)
    _record_push_state(repo, name, success=head)
    new = outcome.get("new") or {}
    if branch_ref not in new:
        return None
    prog.text(f"{repo.branch} -> {ep.url} ({head[:8]})\n", force=True)
    logger.info("pushed %s to %s (%s)", head[:8], name, ep.url)
    return head


def _refuse_checked_out_branch(ep: _Endpoint, branch_ref: str) -> None:
    """Like git's receive.denyCurrentBranch: pushing into the checked-out branch of a non-bare repository
    would leave its work tree stale (and a gitstate store there would take the stale files for edits)."""
    git_dir = Path(ep.path) / ".git"
    if not git_dir.is_dir():
        return
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return
    if head == f"ref: {branch_ref}":
        raise RemoteError(
            f"refusing to push into the checked-out branch of the non-bare repository {ep.url}: "
            "push to a bare repository (git init --bare) and pull from it"
        )


# ===================================================================== fetch
def fetch(
    repo: Repository, name: str, *, progress: ProgressFn | None = None, timeout_s: float | None = None
) -> str | None:
    """Fetch the remote's copy of the store's branch (and tags this store lacks) into
    ``refs/remotes/<name>/<branch>``. Returns its commit id, None if the remote has no such branch yet.

    Objects are written as a pack into the store's object store; no store lock is held during network I/O.

    Raises:
        RemoteError: the remote is unreachable, refused the connection, or authentication failed.

    Example:
        >>> import gitstate, subprocess, tempfile
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> repo = Repository.open(tempfile.mkdtemp()); add_remote(repo, "origin", bare)
        >>> fetch(repo, "origin") is None  # an empty remote
        True
        >>> repo.close()
    """
    ep = _endpoint(repo, name)
    return _fetch(repo, ep, _tracking_ref(repo, name), progress=progress, timeout_s=timeout_s)


def _fetch(
    repo: Repository, ep: _Endpoint, tracking_ref: str, *, progress: ProgressFn | None, timeout_s: float | None
) -> str | None:
    timeout = timeout_s if timeout_s is not None else _timeout_s()
    prog = _Progress(progress or _progress_sink.get(), ep.secrets())
    branch_ref = repo.branch_ref.encode()
    objects = _objects(repo)
    local_heads = [h.encode() for h in (repo.head(), repo.read_ref(tracking_ref)) if h and repo.has_object(h)]

    def get_parents(sha: bytes) -> list[bytes]:
        return list(objects[sha].parents)

    walker = ObjectStoreGraphWalker(local_heads, get_parents)  # type: ignore[arg-type]
    local_tags = {k.encode(): v for k, v in repo.list_refs("refs/tags/").items()}
    seen: dict[str, Any] = {}

    def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        refs = _peeled(refs)
        seen["refs"] = refs
        wants: list[bytes] = []
        remote_head = refs.get(branch_ref)
        if remote_head is not None and remote_head not in objects:
            wants.append(remote_head)
        for ref, sha in refs.items():
            if ref.startswith(b"refs/tags/") and ref not in local_tags and sha not in objects and sha not in wants:
                wants.append(sha)
        return wants

    received = [0]

    def on_pack_data(data: bytes) -> int:
        received[0] += len(data)
        if prog:
            prog.text(f"Receiving objects: {received[0] / 1024:.0f} KiB\r")
        buf.write(data)
        return len(data)

    client, path = _client(ep, timeout_s=timeout)
    prog.text(f"Fetching from {ep.url}\n", force=True)
    buf = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in the finally below
        max_size=32 * 1024 * 1024,
        prefix="tmp_pack_incoming_",  # git's name for temporary pack files: gc removes stale ones
        dir=str(repo.git_dir / "objects" / "pack"),
    )
    try:
        try:
            fetch_pack: Any = client.fetch_pack
            fetch_pack(
                path,
                determine_wants,
                walker,
                on_pack_data,
                progress=prog.remote if prog else None,
                ref_prefix=[branch_ref, b"refs/tags/"],
            )
        except GitStateError:
            raise
        except Exception as e:
            failure: Exception | None = e
        else:
            failure = None
        if failure is not None:
            raise _chain(_translate(failure, ep, "fetch from", timeout), failure, ep)
        if buf.tell():
            if prog:
                prog.text(f"Receiving objects: {received[0] / 1024:.0f} KiB, done.\n", force=True)
            buf.seek(0)
            try:
                objects.add_thin_pack(buf.read, None)
            except Exception as e:
                raise RemoteError(
                    f"the data fetched from {ep.url} is damaged ({type(e).__name__}: "
                    f"{_scrub(str(e), ep.secrets())}); try again"
                ) from e
            repo.invalidate_caches()
    finally:
        buf.close()
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            objects.close()
    refs: dict[bytes, bytes] = seen.get("refs") or {}
    remote_head = refs.get(branch_ref)
    for ref, sha in refs.items():
        if not ref.startswith(b"refs/tags/") or ref in local_tags:
            continue
        if not check_ref_format(Ref(ref)):  # a name like refs/tags/../../info/x would write elsewhere in .git/
            logger.warning("ignoring the tag %r from %s: not a valid Git ref name", ref, ep.url)
            continue
        if repo.has_object(sha.decode()):
            with contextlib.suppress(GitStateError, OSError):
                repo.update_ref(ref.decode(), sha.decode(), None)
    if remote_head is None:
        return None
    head = remote_head.decode()
    if not repo.has_object(head):
        raise RemoteError(f"{ep.url} did not send commit {head[:8]} of {repo.branch}; try again")
    _set_ref(repo, tracking_ref, head)
    return head


# ===================================================================== merge
@dataclass(frozen=True)
class DocConflict:
    """A key both sides changed differently, in one document, and how the merge rule resolved it.

    Attributes:
        doc: the document path.
        key: where in the document (``()`` is the whole document).
        base: the merge base's value (:data:`gitstate.docdiff.MISSING` where absent).
        ours: the local value.
        theirs: the remote value.
        chosen: ``"ours"`` or ``"theirs"``: the side the merged value took.

    Example:
        >>> DocConflict("state.json", ("a",), 1, 2, 3, "ours").to_dict()["doc"]
        'state.json'
    """

    doc: str
    key: tuple[str | int, ...]
    base: Any
    ours: Any
    theirs: Any
    chosen: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (absent sides left out)."""
        out = docdiff.Conflict(self.key, self.base, self.ours, self.theirs, self.chosen).to_dict()
        return {"doc": self.doc, **out}

    def describe(self) -> str:
        """One line for a commit message or a terminal."""
        where = f"{self.doc}: {docdiff.format_key(self.key)}" if self.key else self.doc
        ours, theirs = docdiff.format_value(self.ours), docdiff.format_value(self.theirs)
        if self.chosen == "ours":
            return f"conflict {where}: kept local {ours}; remote value {theirs} not applied"
        return f"conflict {where}: took remote {theirs}; local value {ours} replaced"


@dataclass(frozen=True)
class MergeOutcome:
    """What :func:`integrate` did.

    Attributes:
        kind: ``"none"`` (nothing new), ``"fast-forward"`` or ``"merge"``.
        commit: the new head (the fetched commit for a fast-forward, the merge commit), or the unchanged head.
        changes: what the remote side brought, relative to the local head (:class:`gitstate.Change`).
        conflicts: keys both sides changed, resolved by the rule (:class:`DocConflict`).
        base: the merge base (``"merge"`` only).
    """

    kind: str
    commit: str | None
    changes: list[docdiff.Change] = field(default_factory=list)
    conflicts: list[DocConflict] = field(default_factory=list)
    base: str | None = None


def _decode(path: str, data: bytes | None) -> Any:
    if data is None:
        return docdiff.MISSING
    return codec_for(path).decode(data, path)


def _merge_document(
    path: str, base: bytes | None, ours: bytes | None, theirs: bytes | None, prefer: str
) -> tuple[bytes | None, list[DocConflict]]:
    """Merge one document changed on both sides. Returns the merged bytes (None: deleted) and conflicts."""
    codec = codec_for(path)
    side_bytes = {"ours": ours, "theirs": theirs}
    if codec.name != "bytes":
        try:
            b, o, t = _decode(path, base), _decode(path, ours), _decode(path, theirs)
        except (DecodeError, ValueError) as e:
            logger.info("%s does not parse on one side (%s); merged as a whole document", path, e)
        else:
            result = docdiff.merge3(b, o, t, prefer=prefer)
            value = result.value
            conflicts = [DocConflict(path, c.key, c.base, c.ours, c.theirs, c.chosen) for c in result.conflicts]
            if value is docdiff.MISSING:
                return None, conflicts
            if docdiff.same(value, o) and ours is not None:
                return ours, conflicts
            if docdiff.same(value, t) and theirs is not None:
                return theirs, conflicts
            return codec.encode(value), conflicts
    chosen = "theirs" if prefer == "theirs" else "ours"

    def shown(data: bytes | None) -> Any:
        if data is None:
            return docdiff.MISSING
        try:
            return _decode(path, data)
        except (DecodeError, ValueError):
            return data

    return side_bytes[chosen], [DocConflict(path, (), shown(base), shown(ours), shown(theirs), chosen)]


def _describe(repo: Repository, tree: str | None, files: Mapping[str, bytes | None]) -> list[docdiff.Change]:
    """Structured changes that ``files`` make to ``tree``."""
    changes: list[docdiff.Change] = []
    for path, data in sorted(files.items()):
        old_b = repo.read_at(tree, path) if tree else None
        try:
            old, new = _decode(path, old_b), _decode(path, data)
        except (DecodeError, ValueError):  # compared as raw bytes, which docdiff.diff takes whole
            old = docdiff.MISSING if old_b is None else old_b
            new = docdiff.MISSING if data is None else data
        changes.extend(docdiff.diff(old, new, doc=path))
    return changes


def _describe_trees(repo: Repository, old_tree: str | None, new_tree: str) -> list[docdiff.Change]:
    changed = repo.changed_paths(old_tree, new_tree)
    return _describe(repo, old_tree, {p: None if s is None else repo.read_blob(s) for p, (_, s) in changed.items()})


def _remote_label(repo: Repository, fetched: str) -> str:
    for ref, sha in sorted(repo.list_refs("refs/remotes/").items()):
        if sha == fetched:
            return ref[len("refs/remotes/") :]
    return fetched[:8]


def integrate(
    repo: Repository,
    head: str | None,
    fetched: str | None,
    *,
    rule: str = "ours",
    author: str,
    remote: str | None = None,
) -> MergeOutcome:
    """Bring commit ``fetched`` into the branch at ``head``: nothing, a fast-forward, or a merge commit.

    Call with the repository lock held. A merge commit (parents ``head`` then ``fetched``, trailer
    ``Gitstate-Actor: merge``) is written to the object store but the branch is NOT moved: the caller checks it
    out (``Store._checkout``). Documents both sides changed are merged key by key against the merge base; keys
    both changed differently follow ``rule``.

    Raises:
        UnsafeTree: the fetched tree holds an entry gitstate will not write (see :mod:`gitstate.worktree`);
            nothing is written.
        MergeConflict: ``rule="fail"`` and at least one key conflicts (nothing is written).
        ValueError: an unknown rule.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp())
        >>> with repo.lock():
        ...     base = repo.commit_files(None, {"s.json": b'{"a": 1, "b": 1}'}, "base", author="t <t@x>")
        ...     theirs = repo.commit_files(base, {"s.json": b'{"a": 1, "b": 2}'}, "remote", author="t <t@x>",
        ...                                move_branch=False)
        ...     ours = repo.commit_files(base, {"s.json": b'{"a": 3, "b": 1}'}, "local", author="t <t@x>")
        ...     out = integrate(repo, ours, theirs, author="t <t@x>")
        >>> out.kind, [c.key for c in out.changes]
        ('merge', [('b',)])
        >>> repo.close()
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"the merge rule must be one of {', '.join(MERGE_RULES)}, not {rule!r}")
    if fetched is None or fetched == head:
        return MergeOutcome("none", head)
    if not repo.has_object(fetched):
        raise RemoteError(f"commit {fetched[:8]} has not been fetched; pull again")
    fetched_tree = repo.commit_info(fetched).tree
    what = f"to bring in commit {fetched[:8]}"
    if head is None:
        check_trees(repo, None, fetched_tree, what=what)
        return MergeOutcome("fast-forward", fetched, _describe_trees(repo, None, fetched_tree))
    _, bases = _paint(repo, head, fetched)
    if fetched in bases:
        return MergeOutcome("none", head)
    head_tree = repo.commit_info(head).tree
    # Everything the fetched tree holds that ours does not is what a fast-forward or a merge could write:
    # check it all before anything is merged, written or moved.
    check_trees(repo, head_tree, fetched_tree, what=what)
    if head in bases:
        return MergeOutcome("fast-forward", fetched, _describe_trees(repo, head_tree, fetched_tree), base=head)
    base = bases[0] if bases else None
    if base is None:
        logger.warning("%s and %s share no history; merging them as if from an empty store", head[:8], fetched[:8])
    base_tree = repo.commit_info(base).tree if base else EMPTY_TREE
    ours_changed = repo.changed_paths(base_tree, head_tree)
    theirs_changed = repo.changed_paths(base_tree, fetched_tree)
    prefer = "theirs" if rule == "theirs" else "ours"
    files: dict[str, bytes | None] = {}
    conflicts: list[DocConflict] = []
    for path, (b_sha, t_sha) in sorted(theirs_changed.items()):
        if path not in ours_changed:
            files[path] = None if t_sha is None else repo.read_blob(t_sha)
            continue
        o_sha = ours_changed[path][1]
        if o_sha == t_sha:
            continue

        def read(sha: str | None) -> bytes | None:
            return None if sha is None else repo.read_blob(sha)

        ours_b = read(o_sha)
        merged, doc_conflicts = _merge_document(path, read(b_sha), ours_b, read(t_sha), prefer)
        conflicts.extend(doc_conflicts)
        if merged != ours_b:
            files[path] = merged
    if rule == "fail" and conflicts:
        keys = ", ".join(f"{c.doc}: {docdiff.format_key(c.key)}" if c.key else c.doc for c in conflicts[:10])
        more = f" (+{len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
        raise MergeConflict(
            f"{len(conflicts)} key(s) changed on both sides: {keys}{more}. Nothing was merged; "
            "pull again with on_conflict='ours' (keep local values) or 'theirs' (take the remote "
            "ones), or change one side first",
            conflicts,
        )
    changes = _describe(repo, head_tree, files)
    label = remote or _remote_label(repo, fetched)
    docs = sorted({c.doc for c in changes})
    subject = f"merge {label} into {repo.branch}" + (
        f": {len(changes)} change(s) in {len(docs)} document(s)" if changes else ""
    )
    body = docdiff.summarize(changes, max_lines=50) if changes else []
    if conflicts:
        body = [*body, f"{len(conflicts)} conflict(s), rule {rule}:"] + [c.describe() for c in conflicts[:100]]
    message = subject + "\n\n" + ("\n".join(body) + "\n\n" if body else "") + "Gitstate-Actor: merge\n"
    commit = repo.commit_files(
        head, files, message, author=author, extra_parents=(fetched,), move_branch=False, base_tree=head_tree
    )
    logger.info(
        "merged %s into %s as %s (%d change(s), %d conflict(s))",
        fetched[:8],
        head[:8],
        commit[:8],
        len(changes),
        len(conflicts),
    )
    return MergeOutcome("merge", commit, changes, conflicts, base)


# ===================================================================== clone
def clone_repository(
    url: str,
    path: Path,
    *,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    allow_empty: bool = False,
) -> None:
    """Make ``path`` a store from the remote at ``url``: remote ``origin``, the remote's default branch checked
    out (files written, index built) so that :func:`gitstate.open` then finds a clean store. On failure nothing
    that clone created is left behind (a directory that existed before stays, empty).

    A remote without branches (a fresh ``git init --bare``) is an error: a typo in the URL must not look like a
    successful clone of nothing. With ``allow_empty=True`` it gives an empty store with ``origin`` set (first
    time set-up: write, then push), and says so in a warning.

    Raises:
        RemoteError: the remote cannot be reached or read, or has no branches (and not ``allow_empty``).
        UnsafeTree: the remote's tree holds an entry gitstate will not write (see :mod:`gitstate.worktree`).
        RepositoryError: ``path`` exists and is not an empty directory.

    Example:
        >>> import gitstate, subprocess, tempfile
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> target = Path(tempfile.mkdtemp()) / "copy"
        >>> clone_repository(bare, target, allow_empty=True); (target / ".git").is_dir()
        True
    """
    path = Path(path).expanduser().absolute()
    existed = path.exists()
    if existed and (not path.is_dir() or any(path.iterdir())):
        raise RepositoryError(f"cannot clone into {path}: it exists and is not an empty directory")
    ep, found = _parse_url(url, "origin")
    ep = _with_credentials(ep, _credentials_for(None, "origin", found))
    timeout = timeout_s if timeout_s is not None else _timeout_s()
    listing = _list_refs(ep, "clone from", timeout)
    refs = _peeled(listing.refs)
    if not any(r.startswith(b"refs/heads/") for r in refs):
        if not allow_empty:
            raise RemoteError(
                f"{ep.url} has no branches; nothing to clone. Check the URL; to start a new store there, create "
                "it with init, remote add and push, or clone with allow_empty=True (gitstate clone --allow-empty)"
            )
        logger.warning("%s is empty (no branches): cloning it gives an empty store with origin set", ep.url)
    branch = _default_branch(refs, dict(listing.symrefs or {}))
    created: list[Path] = []
    try:
        if not existed:
            path.mkdir(mode=0o700, parents=True)
            created.append(path)
        repo = Repository.open(path, create=True, branch=branch)
        try:
            add_remote(repo, "origin", url)  # credentials in the URL are kept; from the environment, not
            _set_upstream(repo, "origin")
            head = _fetch(repo, ep, _tracking_ref(repo, "origin"), progress=progress, timeout_s=timeout)
            if head is not None:
                _checkout_fresh(repo, head)
        finally:
            repo.close()
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            shutil.rmtree(path / ".git", ignore_errors=True)
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
        raise


def _set_upstream(repo: Repository, name: str) -> None:
    """``[branch "<branch>"] remote/merge``, as ``git clone`` writes, so real git shows ahead/behind too."""
    cfg = _load_config(repo)
    section = (b"branch", repo.branch.encode())
    cfg.set(section, b"remote", name.encode())
    cfg.set(section, b"merge", repo.branch_ref.encode())
    _save_config(repo, cfg)


def _default_branch(refs: Mapping[bytes, bytes], symrefs: Mapping[bytes, bytes]) -> str:
    target = symrefs.get(b"HEAD")
    if target and target.startswith(b"refs/heads/") and target in refs:
        return target[len(b"refs/heads/") :].decode()
    heads = sorted(r for r in refs if r.startswith(b"refs/heads/"))
    head_sha = refs.get(b"HEAD")
    for preferred in (b"refs/heads/main", b"refs/heads/master"):
        if preferred in heads and (head_sha is None or refs[preferred] == head_sha):
            return preferred[len(b"refs/heads/") :].decode()
    for ref in heads:
        if head_sha is not None and refs[ref] == head_sha:
            return ref[len(b"refs/heads/") :].decode()
    if target and target.startswith(b"refs/heads/"):
        return target[len(b"refs/heads/") :].decode()
    return heads[0][len(b"refs/heads/") :].decode() if heads else "main"


def _checkout_fresh(repo: Repository, head: str) -> None:
    """Write the files of ``head`` into an empty work tree, point the branch at it and build the index."""
    with repo.lock():
        tree = repo.commit_info(head).tree
        checkout(repo, None, tree, what=f"to clone commit {head[:8]}")  # every entry checked before any write
        repo.update_ref(repo.branch_ref, head, None)
        repo.rebuild_index(tree)


# ===================================================================== push state and status
def _state_path(repo: Repository, name: str) -> Path:
    return repo.meta_dir / f"push-{name}.json"


def _read_state(repo: Repository, name: str) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(repo, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record_push_state(
    repo: Repository,
    name: str,
    *,
    success: str | None = None,
    error: str | None = None,
    attempts: int | None = None,
    next_retry_s: float | None = None,
) -> None:
    """Persist what the last push did (a cache for ``status``: failures to write it are only logged)."""
    try:
        with _state_lock:
            state = _read_state(repo, name)
            now = time.time()
            if success is not None:
                state.update(last_success=now, last_success_commit=success, attempts=0, next_retry=None)
            if error is not None:
                state.update(last_error=error, last_error_time=now)
            if attempts is not None:
                state["attempts"] = attempts
                state["next_retry"] = now + next_retry_s if next_retry_s is not None else None
            _write_private_json(_state_path(repo, name), state)
    except OSError as e:
        logger.warning("could not save the push state of %s: %s", name, e)


def _known_secrets(repo: Repository, name: str) -> list[str]:
    """The secrets of remote ``name``: those sent (environment, stored) and any still in its configured URL."""
    try:
        ep, _, found = _configured(repo, name)
    except GitStateError:
        return []
    as_http = dataclasses.replace(ep, scheme="http")
    sent = _with_credentials(as_http, _credentials_for(repo, name, found))
    return sent.secrets() + _with_credentials(as_http, found).secrets()


def _when(ts: object) -> _dt.datetime | None:
    if not isinstance(ts, (int, float)):
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)


def push_status(repo: Repository, name: str | None = None) -> dict[str, dict[str, Any]]:
    """Push state per remote (all remotes, or just ``name``): ``{name: info}``.

    ``info`` holds ``url`` (no credentials), ``branch``, ``tracking`` (the remote branch as last seen),
    ``commits_waiting`` (local commits the remote lacks), ``behind`` (remote commits not merged here, as of the
    last fetch), ``last_success`` / ``last_error_time`` (aware datetimes or None), ``last_success_commit``,
    ``last_error`` (text, None after a later success), ``attempts`` (failures in a row), ``next_retry`` and
    ``auto_push`` (a background pusher runs in this process). The state survives restarts.

    Raises:
        RemoteError: ``name`` is not a configured remote.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp()); add_remote(repo, "origin", "/srv/state.git")
        >>> push_status(repo)["origin"]["commits_waiting"]
        0
        >>> repo.close()
    """
    remotes = list_remotes(repo)
    if name is not None:
        if name not in remotes:
            raise RemoteError(f"no remote named {name!r} (configured: {', '.join(sorted(remotes)) or 'none'})")
        remotes = {name: remotes[name]}
    head = repo.head()
    out: dict[str, dict[str, Any]] = {}
    for rname, url in sorted(remotes.items()):
        state = _read_state(repo, rname)
        last_error = state.get("last_error")
        if isinstance(last_error, str):  # written by an older version, it may name a URL with its token
            last_error = _redact_urls_in(_scrub(last_error, _known_secrets(repo, rname)))
        tracking = repo.read_ref(_tracking_ref(repo, rname))
        try:
            ahead, behind = _ahead_behind(repo, head, tracking)
        except GitStateError as e:
            logger.warning("cannot compare with %s: %s", rname, e)
            ahead, behind = -1, -1
        last_success, last_error_time = state.get("last_success"), state.get("last_error_time")
        error_is_current = state.get("last_error") and (
            not isinstance(last_success, (int, float))
            or (isinstance(last_error_time, (int, float)) and last_error_time > last_success)
        )
        with _pushers_lock:
            active = bool(_pushers.get((str(repo.root), rname)))
        out[rname] = {
            "url": url,
            "branch": repo.branch,
            "tracking": tracking,
            "commits_waiting": ahead,
            "behind": behind,
            "last_success": _when(last_success),
            "last_success_commit": state.get("last_success_commit"),
            "last_error": last_error if error_is_current else None,
            "last_error_time": _when(last_error_time),
            "attempts": int(state.get("attempts") or 0),
            "next_retry": _when(state.get("next_retry")),
            "auto_push": active,
        }
    return out


# ===================================================================== auto-push
class AutoPusher:
    """Pushes a store's branch to one remote in the background after commits (see :func:`start_auto_push`).

    Commits only set a flag (O(1), on the committing thread); a daemon thread waits ``batch_ms`` so a burst of
    commits goes in one push, and starts pushes at least ``min_interval_ms`` apart so a steady write load is
    pushed in batches (one push per interval, however many commits). It pushes without any store lock, and on
    failure retries after an exponential backoff (``initial_backoff_s`` doubling up to ``max_backoff_s``, with
    jitter). It never force-pushes: a rejected push (the remote moved) is reported as ``push_error`` until
    someone syncs.

    Example:
        >>> store = gitstate.open("/var/lib/agent", auto_push="origin")  # doctest: +SKIP
        >>> off = store.on("pushed", lambda e: print(e.remote, e.commit[:8], e.count))  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        remote: str,
        *,
        batch_ms: int = AUTO_PUSH_BATCH_MS,
        min_interval_ms: int = AUTO_PUSH_MIN_INTERVAL_MS,
        initial_backoff_s: float = AUTO_PUSH_INITIAL_BACKOFF_S,
        max_backoff_s: float = AUTO_PUSH_MAX_BACKOFF_S,
        final_timeout_s: float = AUTO_PUSH_FINAL_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.remote = _check_name(remote)
        self.batch_ms = batch_ms
        self.min_interval_ms = min_interval_ms
        self._last_start = 0.0
        self._retry_in_s = 0.0
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max(max_backoff_s, initial_backoff_s)
        self.final_timeout_s = final_timeout_s
        self.attempts = 0
        self.pushes = 0
        self._repo: Repository = store._repo
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._key = (str(self._repo.root), self.remote)

    @property
    def running(self) -> bool:
        """True while the pusher thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; it pushes at once if the branch is ahead of the remote."""
        with _pushers_lock:
            _pushers.setdefault(self._key, set()).add(self)
        self._unsubscribe = self.store.on("committed", self._on_commit)
        self.store._after_commit_hooks.append(self._on_head_moved)
        self._thread = threading.Thread(target=self._run, name=f"gitstate-autopush[{self.remote}]", daemon=True)
        self._thread.start()
        self._wake.set()

    def poke(self) -> None:
        """Ask for a push attempt now (e.g. the remote was just added)."""
        self.attempts = 0
        self._wake.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the pusher has nothing left to push (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic()))) and not self._wake.is_set():
                return True
        return False

    def _on_commit(self, event: object) -> None:
        self._idle.clear()
        self._wake.set()

    def _on_head_moved(self, commit: str) -> None:
        self._idle.clear()
        self._wake.set()

    def _backoff(self) -> float:
        delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(0, self.attempts - 1))
        return float(delay * random.uniform(0.8, 1.0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                break
            self._idle.clear()
            delay = max(self.batch_ms / 1000, self._last_start + self.min_interval_ms / 1000 - time.monotonic())
            if delay > 0 and self._stop.wait(delay):
                break
            self._wake.clear()
            self._last_start = time.monotonic()
            if self._attempt():
                if not self._wake.is_set():
                    self._idle.set()
                continue
            if self._stop.wait(self._retry_in_s):
                break
            self._last_start = 0.0  # the backoff was the wait: no minimum interval on top
            self._wake.set()
        self._final_attempt()

    def _final_attempt(self) -> None:
        deadline = self._deadline
        if deadline is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return
        try:
            head = self._repo.head()
            if head is None or head == self._repo.read_ref(_tracking_ref(self._repo, self.remote)):
                return
        except GitStateError:
            return
        self._attempt(timeout_s=max(0.1, remaining), final=True)

    def _attempt(self, *, timeout_s: float | None = None, final: bool = False) -> bool:
        """One push; True on success or when there was nothing to push."""
        repo = self._repo
        try:
            head = repo.head()
            if head is None:
                return True
            tracking = repo.read_ref(_tracking_ref(repo, self.remote))
            if head == tracking:
                return True
            try:
                count = _ahead_behind(repo, head, tracking)[0]
            except GitStateError:
                count = 0
            pushed = push(repo, self.remote, timeout_s=timeout_s, progress=None, commit=head)
        except Exception as e:
            self.attempts += 1
            self._retry_in_s = self._backoff()
            retry = None if final else self._retry_in_s
            message = str(e) if isinstance(e, GitStateError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, GitStateError):
                logger.exception("unexpected error in the background push to %s", self.remote)
            _record_push_state(repo, self.remote, error=message, attempts=self.attempts, next_retry_s=retry)
            (logger.info if self.attempts > 1 else logger.warning)(
                "background push to %s failed (attempt %d%s): %s",
                self.remote,
                self.attempts,
                f", retry in {retry:.1f} s" if retry is not None else "",
                message,
            )
            self.store._emit(PushError(remote=self.remote, error=message, attempts=self.attempts, retry_in_s=retry))
            return False
        self.attempts = 0
        if pushed is not None:
            self.pushes += 1
            self.store._emit(Pushed(remote=self.remote, commit=pushed, count=count))
        return True

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop the thread after one last push attempt bounded by ``timeout_s`` (default ``final_timeout_s``);
        gives up (commits stay waiting for the next run) rather than hold up the exit. Idempotent."""
        budget = self.final_timeout_s if timeout_s is None else timeout_s
        if self._stop.is_set():
            return
        self._deadline = time.monotonic() + budget
        self._stop.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        with contextlib.suppress(ValueError):
            self.store._after_commit_hooks.remove(self._on_head_moved)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(budget + 0.5)
            if self._thread.is_alive():
                logger.warning(
                    "auto-push to %s did not finish in %.1f s; the waiting commits are pushed on the next run",
                    self.remote,
                    budget,
                )
        with _pushers_lock:
            running = _pushers.get(self._key, set())
            running.discard(self)
            if not running:
                _pushers.pop(self._key, None)


def start_auto_push(store: Store, name: str, **options: Any) -> AutoPusher:
    """Push ``store``'s branch to remote ``name`` in the background after each commit (``open(...,
    auto_push=name)`` calls this). ``store.close()`` stops it after one last bounded attempt. A remote that is not
    configured yet is reported as ``push_error`` and retried; adding it triggers a push at once.

    Options: ``batch_ms``, ``min_interval_ms``, ``initial_backoff_s``, ``max_backoff_s``, ``final_timeout_s`` (see
    :class:`AutoPusher`).

    Example:
        >>> store = gitstate.open("/var/lib/agent", auto_push="origin")  # doctest: +SKIP
        >>> store._push_queue.wait_idle(5)  # doctest: +SKIP
        True
    """
    existing = store._push_queue
    if isinstance(existing, AutoPusher) and existing.running:
        if existing.remote == name:
            return existing
        existing.stop(timeout_s=0)
    pusher = AutoPusher(store, name, **options)
    pusher.start()
    store._push_queue = pusher
    return pusher
