"""Push and fetch: which refs and objects go where, over any Transport, never forced; the tracking refs, the
push state file (.git/gitstate/push-<remote>.json) and push_status().

What belongs here: push (the branch and the snapshot tags the remote lacks), fetch and fetch_into (tracking refs,
new tags, the shallow boundary a fetch reports), the object-store handle of one operation, known_secrets and
push_status. What does not: merging what was fetched (merge.py), the background pusher (autopush.py), the state
file's format and the per-remote push lock (state.py), the wire (transport.py and the transport modules).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from dulwich.object_store import DiskObjectStore, ObjectStoreGraphWalker
from dulwich.protocol import ZERO_SHA
from dulwich.refs import Ref, check_ref_format

from ..ancestry import ahead_behind, is_ancestor
from ..errors import GitStateError, PushRejected, RemoteError, RepositoryError
from ..paths import atomic_write
from ..repo import Repository
from . import transport
from .config import configured, endpoint, list_remotes
from .credentials import credentials_for, redact_urls_in, with_credentials
from .endpoint import Endpoint, scrub
from .progress import Progress, ProgressFn, progress_sink
from .state import as_datetime, push_lock, pushers, pushers_lock, read_state, record_push_state
from .transport import chain, timeout_s_from_env, translate

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


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


def operation_objects(repo: Repository) -> Any:
    """A private object-store handle for one network operation (dulwich objects are not thread-safe; objects
    themselves are immutable, so a second handle on the same directory is safe)."""
    return _OperationObjectStore(str(repo.git_dir / "objects"))


#: What a server says when the branch moved under a push (git, dulwich and hosted services).
_REJECTED_WORDS: Final = ("non-fast-forward", "fetch first", "stale info", "but expected", "unable to set")


# ===================================================================== refs
def tracking_ref(repo: Repository, name: str) -> str:
    return f"refs/remotes/{name}/{repo.branch}"


def set_ref(repo: Repository, ref: str, new: str) -> None:
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


def peeled(refs: Mapping[bytes, bytes | None]) -> dict[bytes, bytes]:
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
        >>> from gitstate.remote import add_remote
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     store.set("a.json", "x", 1); _ = store.flush()
        ...     add_remote(store._repo, "origin", bare)
        ...     push(store._repo, "origin") == store.head, push(store._repo, "origin")
        (True, None)
    """
    ep = endpoint(repo, name)
    with push_lock(repo, name):
        return _push_commit(repo, name, ep, commit or repo.head(), progress=progress, timeout_s=timeout_s)


def _push_commit(
    repo: Repository,
    name: str,
    ep: Endpoint,
    head: str | None,
    *,
    progress: ProgressFn | None,
    timeout_s: float | None,
) -> str | None:
    """Push ``head`` to the branch of remote ``name`` (see :func:`push`), recording the outcome."""
    timeout = timeout_s if timeout_s is not None else timeout_s_from_env()
    prog = Progress(progress or progress_sink.get(), ep.secrets())
    if head is None:
        return None
    branch_ref = repo.branch_ref.encode()
    outcome: dict[str, Any] = {}
    objects = operation_objects(repo)
    update_refs = _ref_updater(repo, objects, head, outcome)
    generate_pack_data = _pack_generator(objects, prog, outcome, repo.shallow())
    client, path = transport.open_transport(ep, timeout_s=timeout)
    prog.text(f"Pushing to {ep.url}\n", force=True)
    result: Any = None
    failure: Exception | None = None
    try:
        result = client.send_pack(path, update_refs, generate_pack_data, progress=prog.remote if prog else None)
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
        err = translate(failure, ep, "push to", timeout)
        record_push_state(repo, name, error=str(err))
        raise chain(err, failure, ep)
    _check_push_result(repo, name, ep, outcome, result)
    set_ref(repo, tracking_ref(repo, name), head)
    record_push_state(repo, name, success=head)
    if branch_ref not in (outcome.get("new") or {}):
        return None
    prog.text(f"{repo.branch} -> {ep.url} ({head[:8]})\n", force=True)
    logger.info("pushed %s to %s (%s)", head[:8], name, ep.url)
    return head


def _ref_updater(
    repo: Repository, objects: Any, head: str, outcome: dict[str, Any]
) -> Callable[[dict[bytes, bytes]], dict[bytes, bytes]]:
    """dulwich's ``update_refs`` for a push of ``head``: the branch moves only forward (else ``outcome`` says
    rejected and nothing is sent), and tags the remote lacks go along. Records the remote head and the refs sent."""
    branch_ref = repo.branch_ref.encode()
    head_b = head.encode()
    local_tags = {k.encode(): v.encode() for k, v in repo.list_refs("refs/tags/").items()}

    def update_refs(remote_refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        refs = peeled(remote_refs)
        remote_head = refs.get(branch_ref)
        outcome["remote_head"] = remote_head
        new: dict[bytes, bytes] = {}
        if remote_head != head_b:
            if remote_head is None or (remote_head in objects and is_ancestor(repo, remote_head.decode(), head)):
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

    return update_refs


def _pack_generator(
    objects: Any, prog: Progress, outcome: dict[str, Any], shallow: set[str]
) -> Callable[..., tuple[int, Iterator[Any]]]:
    """dulwich's ``generate_pack_data`` over ``objects``, reporting "Writing objects" progress. Commits in
    ``shallow`` (.git/shallow: cut by forget, or a shallow clone) have no parents here: dulwich must not walk
    them."""
    shallow_ids = {s.encode() for s in shallow}

    def generate_pack_data(
        have: set[bytes], want: set[bytes], *, ofs_delta: bool = True, progress: Any = None
    ) -> tuple[int, Iterator[Any]]:
        count, records = objects.generate_pack_data(have, want, shallow=shallow_ids, ofs_delta=ofs_delta)
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

    return generate_pack_data


def _check_push_result(repo: Repository, name: str, ep: Endpoint, outcome: dict[str, Any], result: Any) -> None:
    """Raise (and record) PushRejected or RemoteError if the push was refused; a refused tag only warns."""
    branch_ref = repo.branch_ref.encode()
    err: RemoteError | None = None
    if outcome.get("rejected"):
        err = PushRejected(
            f"push to {name} ({ep.url}) was rejected: the remote {repo.branch} has commits this store does not "
            f"have (another machine pushed). Run 'gitstate sync {name}' (store.sync({name!r})) to merge them and "
            "push; nothing is lost on either side."
        )
    for ref, status in (getattr(result, "ref_status", None) or {}).items():
        if err is not None or status is None:
            continue
        status = scrub(str(status), ep.secrets())
        if ref != branch_ref:
            logger.warning("%s refused %s: %s", name, ref.decode(), status)
        elif any(w in status for w in _REJECTED_WORDS):
            err = PushRejected(
                f"push to {name} ({ep.url}) was rejected ({status}): the remote moved; run "
                f"'gitstate sync {name}' to merge and push again"
            )
        else:
            err = RemoteError(f"{name} ({ep.url}) refused the push of {repo.branch}: {status}")
    if err is not None:
        record_push_state(repo, name, error=str(err))
        raise err


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
        >>> from gitstate.remote import add_remote
        >>> bare = tempfile.mkdtemp(); _ = subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        >>> repo = Repository.open(tempfile.mkdtemp()); add_remote(repo, "origin", bare)
        >>> fetch(repo, "origin") is None  # an empty remote
        True
        >>> repo.close()
    """
    ep = endpoint(repo, name)
    return fetch_into(repo, ep, tracking_ref(repo, name), progress=progress, timeout_s=timeout_s)


def fetch_into(
    repo: Repository, ep: Endpoint, tracking_ref: str, *, progress: ProgressFn | None, timeout_s: float | None
) -> str | None:
    """Fetch the remote branch (and tags this store lacks) from ``ep`` and point ``tracking_ref`` at it (see
    :func:`fetch`); returns the fetched head, None if the remote has no such branch."""
    timeout = timeout_s if timeout_s is not None else timeout_s_from_env()
    prog = Progress(progress or progress_sink.get(), ep.secrets())
    branch_ref = repo.branch_ref.encode()
    objects = operation_objects(repo)
    local_heads = [h.encode() for h in (repo.head(), repo.read_ref(tracking_ref)) if h and repo.has_object(h)]

    def get_parents(sha: bytes) -> list[bytes]:
        return list(objects[sha].parents)

    walker = ObjectStoreGraphWalker(local_heads, get_parents)  # type: ignore[arg-type]
    local_tags = {k.encode(): v for k, v in repo.list_refs("refs/tags/").items()}
    seen: dict[str, Any] = {}

    def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        refs = peeled(refs)
        seen["refs"] = refs
        wants: list[bytes] = []
        remote_head = refs.get(branch_ref)
        if remote_head is not None and remote_head not in objects:
            wants.append(remote_head)
        for ref, sha in refs.items():
            if ref.startswith(b"refs/tags/") and ref not in local_tags and sha not in objects and sha not in wants:
                wants.append(sha)
        return wants

    try:
        result = _receive(
            repo,
            ep,
            objects,
            prog,
            timeout,
            lambda client, path, on_pack_data: client.fetch_pack(
                path,
                determine_wants,
                walker,
                on_pack_data,
                progress=prog.remote if prog else None,
                ref_prefix=[branch_ref, b"refs/tags/"],
            ),
        )
    finally:
        with contextlib.suppress(Exception):
            objects.close()
    _record_shallow(repo, getattr(result, "new_shallow", None))
    refs: dict[bytes, bytes] = seen.get("refs") or {}
    _store_new_tags(repo, ep, refs, set(local_tags))
    remote_head = refs.get(branch_ref)
    if remote_head is None:
        return None
    head = remote_head.decode()
    if not repo.has_object(head):
        raise RemoteError(f"{ep.url} did not send commit {head[:8]} of {repo.branch}; try again")
    set_ref(repo, tracking_ref, head)
    return head


def _receive(
    repo: Repository,
    ep: Endpoint,
    objects: Any,
    prog: Progress,
    timeout: float,
    call: Callable[[Any, str, Callable[[bytes], int]], Any],
) -> Any:
    """Open the transport, run ``call(client, path, on_pack_data)`` (its fetch_pack) and add the pack received
    to ``objects``; the pack is spooled in ``objects/pack`` under git's temporary name (gc removes stale ones).
    Returns what ``call`` returned (dulwich's FetchPackResult)."""
    received = [0]
    buf = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in the finally below
        max_size=32 * 1024 * 1024,
        prefix="tmp_pack_incoming_",
        dir=str(repo.git_dir / "objects" / "pack"),
    )

    def on_pack_data(data: bytes) -> int:
        received[0] += len(data)
        if prog:
            prog.text(f"Receiving objects: {received[0] / 1024:.0f} KiB\r")
        buf.write(data)
        return len(data)

    client, path = transport.open_transport(ep, timeout_s=timeout)
    prog.text(f"Fetching from {ep.url}\n", force=True)
    failure: Exception | None = None
    result: Any = None
    try:
        try:
            result = call(client, path, on_pack_data)
        except GitStateError:
            raise
        except Exception as e:
            failure = e
        if failure is not None:
            raise chain(translate(failure, ep, "fetch from", timeout), failure, ep)
        if buf.tell():
            if prog:
                prog.text(f"Receiving objects: {received[0] / 1024:.0f} KiB, done.\n", force=True)
            buf.seek(0)
            try:
                objects.add_thin_pack(buf.read, None)
            except Exception as e:
                raise RemoteError(
                    f"the data fetched from {ep.url} is damaged ({type(e).__name__}: "
                    f"{scrub(str(e), ep.secrets())}); try again"
                ) from e
            repo.invalidate_caches()
    finally:
        buf.close()
        with contextlib.suppress(Exception):
            client.close()
    return result


def _record_shallow(repo: Repository, new_shallow: Any) -> None:
    """Add the shallow boundary a fetch reported (the remote's history is cut there: a thinned store, a shallow
    clone) to ``.git/shallow``: only commits we now hold whose parents we lack, so walks stop there as git's do."""
    if not new_shallow:
        return
    current = repo.shallow()
    add = set()
    for raw in new_shallow:
        sha = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
        if sha in current or not repo.has_object(sha):
            continue
        if any(not repo.has_object(p) for p in repo.commit_info(sha).parents):
            add.add(sha)
    if add:
        data = "".join(f"{s}\n" for s in sorted(current | add)).encode("ascii")
        atomic_write(repo.git_dir, "shallow", data, file_mode=0o644)
        repo.shallow_changed()


def _store_new_tags(repo: Repository, ep: Endpoint, refs: Mapping[bytes, bytes], local_tags: set[bytes]) -> None:
    """Create the fetched tags this store lacks (a name that is not a valid ref name is ignored)."""
    for ref, sha in refs.items():
        if not ref.startswith(b"refs/tags/") or ref in local_tags:
            continue
        if not check_ref_format(Ref(ref)):  # a name like refs/tags/../../info/x would write elsewhere in .git/
            logger.warning("ignoring the tag %r from %s: not a valid Git ref name", ref, ep.url)
            continue
        if repo.has_object(sha.decode()):
            with contextlib.suppress(GitStateError, OSError):
                repo.update_ref(ref.decode(), sha.decode(), None)


def known_secrets(repo: Repository, name: str) -> list[str]:
    """The secrets of remote ``name``: those sent (environment, stored) and any still in its configured URL."""
    try:
        ep, _, found = configured(repo, name)
    except GitStateError:
        return []
    as_http = dataclasses.replace(ep, scheme="http")
    sent = with_credentials(as_http, credentials_for(repo, name, found))
    return sent.secrets() + with_credentials(as_http, found).secrets()


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
        >>> from gitstate.remote import add_remote
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
        state = read_state(repo, rname)
        last_error = state.get("last_error")
        if isinstance(last_error, str):  # written by an older version, it may name a URL with its token
            last_error = redact_urls_in(scrub(last_error, known_secrets(repo, rname)))
        tracking = repo.read_ref(tracking_ref(repo, rname))
        try:
            ahead, behind = ahead_behind(repo, head, tracking)
        except GitStateError as e:
            logger.warning("cannot compare with %s: %s", rname, e)
            ahead, behind = -1, -1
        last_success, last_error_time = state.get("last_success"), state.get("last_error_time")
        error_is_current = state.get("last_error") and (
            not isinstance(last_success, (int, float))
            or (isinstance(last_error_time, (int, float)) and last_error_time > last_success)
        )
        with pushers_lock:
            active = bool(pushers.get((str(repo.root), rname)))
        out[rname] = {
            "url": url,
            "branch": repo.branch,
            "tracking": tracking,
            "commits_waiting": ahead,
            "behind": behind,
            "last_success": as_datetime(last_success),
            "last_success_commit": state.get("last_success_commit"),
            "last_error": last_error if error_is_current else None,
            "last_error_time": as_datetime(last_error_time),
            "attempts": int(state.get("attempts") or 0),
            "next_retry": as_datetime(state.get("next_retry")),
            "auto_push": active,
        }
    return out
