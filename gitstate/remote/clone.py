"""clone_repository(): a new store from a remote URL (fetch, origin, checkout), leaving nothing behind on failure.

What belongs here: clone_repository (the remote's default branch, fetching into a new repository, origin and the
branch's upstream in .git/config, the first checkout, removing what it made when it fails). What does not: opening
the clone as a Store (gitstate.store.clone), fetching itself (sync.fetch_into), URLs and credentials
(credentials.py), the checks of every tree entry (gitstate.worktree).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RemoteError, RepositoryError
from ..repo import Repository
from ..worktree import checkout
from .config import add_remote, load_config, save_config
from .credentials import credentials_for, parse_url, with_credentials
from .progress import ProgressFn
from .sync import fetch_into, peeled, tracking_ref
from .transport import list_refs, timeout_s_from_env

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


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
    ep, found = parse_url(url, "origin")
    ep = with_credentials(ep, credentials_for(None, "origin", found))
    timeout = timeout_s if timeout_s is not None else timeout_s_from_env()
    listing = list_refs(ep, "clone from", timeout)
    refs = peeled(listing.refs)
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
            head = fetch_into(repo, ep, tracking_ref(repo, "origin"), progress=progress, timeout_s=timeout)
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
    cfg = load_config(repo)
    section = (b"branch", repo.branch.encode())
    cfg.set(section, b"remote", name.encode())
    cfg.set(section, b"merge", repo.branch_ref.encode())
    save_config(repo, cfg)


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
