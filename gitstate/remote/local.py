"""Local remotes: a path or a ``file://`` URL, served in process by dulwich's LocalGitClient (no git binary).

Besides dulwich's client: a push into the checked-out branch of a non-bare repository is refused, as git does,
and a fetch from a shallow repository (a store thinned by ``gitstate forget``, or a shallow clone) stops at its
shallow commits and reports them as the fetch's new shallow boundary, as git's upload-pack does (dulwich's local
server walks their absent parents otherwise).

What belongs here: LocalTransport and its registration for paths and file:// URLs. What does not: the Transport
protocol and error translation (transport.py), what is sent or fetched and recording the shallow boundary in this
store (sync.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dulwich.client import LocalGitClient

from ..errors import RemoteError
from .endpoint import Endpoint
from .transport import Transport, register_transport

__all__ = ["LocalTransport"]


class LocalTransport(LocalGitClient):
    """dulwich's in-process client, refusing to push into a checked-out branch."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    def send_pack(self, path: Any, update_refs: Any, generate_pack_data: Any, *args: Any, **kwargs: Any) -> Any:
        """dulwich's send_pack, after checking that no work tree has the branch being pushed checked out."""

        def checked(refs: Any) -> Any:
            new: dict[bytes, bytes] = update_refs(refs)
            for ref in new:
                if ref.startswith(b"refs/heads/"):
                    _refuse_checked_out_branch(str(path), self._url, ref.decode())
            return new

        return super().send_pack(path, checked, generate_pack_data, *args, **kwargs)

    def fetch_pack(
        self, path: Any, determine_wants: Any, graph_walker: Any, pack_data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """dulwich's fetch_pack; from a shallow repository, the walk stops at its shallow commits and they come
        back as ``new_shallow`` for the fetching side's ``.git/shallow``."""
        source_shallow = _shallow_of(Path(str(path)))
        if source_shallow and getattr(graph_walker, "shallow", None) is not None:
            graph_walker.shallow.update(source_shallow)
        result = super().fetch_pack(path, determine_wants, graph_walker, pack_data, *args, **kwargs)
        if source_shallow:
            shallow: set[Any] = set(result.new_shallow or ())
            shallow.update(source_shallow)
            result.new_shallow = shallow
        return result


def _shallow_of(path: Path) -> set[bytes]:
    """The commit ids in the shallow file of the repository at ``path`` (work tree or bare)."""
    for candidate in (path / ".git" / "shallow", path / "shallow"):
        try:
            return {line for line in candidate.read_bytes().split() if len(line) == 40}
        except (FileNotFoundError, NotADirectoryError):
            continue
    return set()


def _refuse_checked_out_branch(path: str, url: str, branch_ref: str) -> None:
    """Like git's receive.denyCurrentBranch: pushing into the checked-out branch of a non-bare repository
    would leave its work tree stale (and a gitstate store there would take the stale files for edits)."""
    git_dir = Path(path) / ".git"
    if not git_dir.is_dir():
        return
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return
    if head == f"ref: {branch_ref}":
        raise RemoteError(
            f"refusing to push into the checked-out branch of the non-bare repository {url}: "
            "push to a bare repository (git init --bare) and pull from it"
        )


def _open(ep: Endpoint, timeout_s: float) -> Transport:
    return LocalTransport(ep.url)


register_transport("local", _open, url_schemes=["file"])
