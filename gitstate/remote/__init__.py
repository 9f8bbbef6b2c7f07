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

**Layout** (one job per module; imports point down this list): ``endpoint`` (Endpoint, Credentials, scrub) ->
``transport`` (the :class:`Transport` protocol, :func:`register_transport`, error translation) -> one module per
kind of remote (``local``, ``gitdaemon``, ``http``, ``ssh``; a new kind is one such file) -> ``credentials``
(URL parsing, credentials.json, log hiding) -> ``config`` (.git/config remotes) -> ``state`` (push state, pusher
registry) -> ``sync`` (push, fetch, push_status) -> ``merge`` (integrate) -> ``clone`` -> ``autopush``. This
``__init__`` only re-exports; nothing is defined here.

What belongs here: the package's public names, re-exported, and the import of the built-in transports (``local``,
``gitdaemon``, ``http``, ``ssh``) so that they register. What does not: any code of its own (each job is one module
of the layout above), the Store's ``push``/``pull``/``sync``/``remote_add`` that call in (gitstate.store), the
remote commands (gitstate.cli.remote), commit-graph walks (gitstate.ancestry).
"""

from __future__ import annotations

from . import gitdaemon, http, local, ssh  # noqa: F401 - the built-in transports register themselves
from .autopush import (
    AUTO_PUSH_BATCH_MS,
    AUTO_PUSH_FINAL_TIMEOUT_S,
    AUTO_PUSH_INITIAL_BACKOFF_S,
    AUTO_PUSH_MAX_BACKOFF_S,
    AUTO_PUSH_MIN_INTERVAL_MS,
    AutoPusher,
    start_auto_push,
)
from .clone import clone_repository
from .config import add_remote, check_remote, endpoint, list_remotes, remove_remote
from .credentials import parse_url, redact_url
from .endpoint import TOKEN_USERNAME, Credentials, Endpoint, scrub
from .merge import MERGE_RULES, DocConflict, MergeOutcome, integrate
from .progress import ProgressFn, report_progress
from .sync import fetch, push, push_status
from .transport import DEFAULT_TIMEOUT_S, Transport, TransportFactory, open_transport, register_transport

__all__ = [
    "AUTO_PUSH_BATCH_MS",
    "AUTO_PUSH_FINAL_TIMEOUT_S",
    "AUTO_PUSH_INITIAL_BACKOFF_S",
    "AUTO_PUSH_MAX_BACKOFF_S",
    "AUTO_PUSH_MIN_INTERVAL_MS",
    "DEFAULT_TIMEOUT_S",
    "MERGE_RULES",
    "TOKEN_USERNAME",
    "AutoPusher",
    "Credentials",
    "DocConflict",
    "Endpoint",
    "MergeOutcome",
    "ProgressFn",
    "Transport",
    "TransportFactory",
    "add_remote",
    "check_remote",
    "clone_repository",
    "endpoint",
    "fetch",
    "integrate",
    "list_remotes",
    "open_transport",
    "parse_url",
    "push",
    "push_status",
    "redact_url",
    "register_transport",
    "remove_remote",
    "report_progress",
    "scrub",
    "start_auto_push",
]

# Names of the single-module remote.py before issue 12, still used by tests written against it.
_TOKEN_USERNAME = TOKEN_USERNAME
_Endpoint = Endpoint
_endpoint = endpoint
_parse_url = parse_url
_scrub = scrub
