"""Remotes as .git/config names them: list, add, remove, and the endpoint (with credentials) of a named remote.

What belongs here: reading and writing .git/config (save_config, through git's lock file, mode 0600), remote names
(check_name), list_remotes, add_remote, remove_remote, the endpoint of a named remote (credentials found in the
config are moved out on first use) and check_remote for ``gitstate doctor``. What does not: URL parsing and secrets
(credentials.py), network operations (sync.py, transport.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dulwich.config import ConfigFile

from ..errors import GitStateError, RemoteError, RepositoryError
from ..repo import Repository
from .credentials import (
    CREDENTIALS_FILE,
    credentials_for,
    parse_url,
    redact_url,
    replace_private,
    store_credentials,
    with_credentials,
)
from .endpoint import Credentials, Endpoint, scrub
from .state import pushers, pushers_lock, state_path
from .transport import chain, list_refs, translate

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ===================================================================== .git/config
def _config_path(repo: Repository) -> Path:
    return repo.git_dir / "config"


def load_config(repo: Repository) -> ConfigFile:
    try:
        return ConfigFile.from_path(str(_config_path(repo)))
    except FileNotFoundError:
        return ConfigFile()
    except Exception as e:
        raise RepositoryError(f"{repo.root}: cannot read .git/config: {e}") from e


def save_config(repo: Repository, cfg: ConfigFile) -> None:
    """Write .git/config through git's lock-file protocol, keeping it private (0600)."""
    import io

    buf = io.BytesIO()
    cfg.write_to_file(buf)
    path = _config_path(repo)
    lock = path.with_name("config.lock")
    try:
        replace_private(lock, path, buf.getvalue())
    except FileExistsError:
        raise RepositoryError(
            f"{lock} exists: another git process is changing the configuration; retry, or "
            "remove the file if no git is running"
        ) from None


def check_name(name: str) -> str:
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
    cfg = load_config(repo)
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
    check_name(name)
    endpoint, found = parse_url(url, name)
    user = username if username is not None else found.username
    pw = password if password is not None else found.password
    if pw is not None and endpoint.scheme != "http":
        raise RemoteError(f"{endpoint.scheme} remotes take no password; only http(s) remotes use one")
    cfg = load_config(repo)
    section = (b"remote", name.encode())
    cfg.set(section, b"url", endpoint.url.encode())
    cfg.set(section, b"fetch", f"+refs/heads/*:refs/remotes/{name}/*".encode())
    save_config(repo, cfg)
    # Only http(s) sends credentials; for the others, stale ones (an earlier URL of this name) are forgotten.
    store_credentials(repo, name, Credentials(user, pw, found.query) if endpoint.scheme == "http" else None)
    logger.info("remote %s -> %s", name, endpoint.url)
    with pushers_lock:
        running = list(pushers.get((str(repo.root), name), ()))
    for pusher in running:
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
    check_name(name)
    cfg = load_config(repo)
    section = (b"remote", name.encode())
    if not cfg.has_section(section):
        raise RemoteError(f"no remote named {name!r}; 'gitstate remote list' shows the remotes")
    del cfg[section]
    for other in list(cfg.sections()):  # like git: branches that tracked it no longer do
        if len(other) == 2 and other[0] == b"branch":
            with contextlib.suppress(KeyError):
                if cfg.get(other, b"remote") == name.encode():
                    del cfg[other]
    save_config(repo, cfg)
    store_credentials(repo, name, None)
    for ref, sha in repo.list_refs(f"refs/remotes/{name}/").items():
        with contextlib.suppress(GitStateError, OSError):
            repo.update_ref(ref, None, sha)
    with contextlib.suppress(FileNotFoundError):
        state_path(repo, name).unlink()


def configured(repo: Repository, name: str) -> tuple[Endpoint, str, Credentials]:
    """Remote ``name`` as ``.git/config`` has it: the endpoint (no credentials yet), the URL as written there and
    the credentials that URL carries (a URL written by an older version or by ``git remote add`` may)."""
    check_name(name)
    url = repo.config_get("remote", "url", subsection=name)
    if not url:
        known = ", ".join(sorted(list_remotes(repo))) or "none"
        raise RemoteError(
            f"no remote named {name!r} (configured: {known}); add one with "
            f"'gitstate remote add {name} URL' or store.remote_add({name!r}, url)"
        )
    ep, found = parse_url(url, name, strict=False)
    return ep, url, found


def _move_credentials_out_of_config(repo: Repository, ep: Endpoint, found: Credentials) -> None:
    """Move the credentials of a URL in ``.git/config`` into credentials.json (fields already stored there
    win, as when they are read), then write the URL without them. Stored first: a crash in between loses
    nothing. A config that cannot be written only costs a warning: the URL is never shown either way."""
    try:
        if found.given():
            store_credentials(repo, ep.name, found, keep_stored=True)
        cfg = load_config(repo)
        cfg.set((b"remote", ep.name.encode()), b"url", ep.url.encode())
        save_config(repo, cfg)
    except (GitStateError, OSError) as e:
        hidden = with_credentials(dataclasses.replace(ep, scheme="http"), found).secrets()
        logger.warning(
            "could not move the credentials of remote %s out of .git/config: %s", ep.name, scrub(str(e), hidden)
        )
        return
    logger.info("moved the credentials in the URL of remote %s from .git/config to %s", ep.name, CREDENTIALS_FILE)
    if found.password is not None and ep.scheme != "http":
        logger.warning(
            "remote %s: %s remotes cannot use a password (kept in %s); your ssh key or agent is used",
            ep.name,
            ep.scheme,
            CREDENTIALS_FILE,
        )


def endpoint(repo: Repository, name: str) -> Endpoint:
    """Remote ``name`` with the credentials to send; on first use, a URL in .git/config that carries
    credentials has them moved out (:func:`_move_credentials_out_of_config`)."""
    ep, url, found = configured(repo, name)
    if ep.scheme != "local" and (found.given() or "#" in url):
        _move_credentials_out_of_config(repo, ep, found)
    return with_credentials(ep, credentials_for(repo, name, found))


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
    ep, _, found = configured(repo, name)
    ep = dataclasses.replace(with_credentials(ep, credentials_for(repo, name, found)), name="")
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
            raise chain(translate(failure, ep, "connect to", timeout_s), failure, ep)
        return f"{ep.host}:{port} accepts connections"
    list_refs(ep, "connect to", timeout_s)
    sent = ep.password is not None or ep.username is not None or ep.query is not None
    return "it answers" + (" to the stored credentials" if sent else "")
