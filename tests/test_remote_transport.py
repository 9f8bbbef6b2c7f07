"""A new kind of remote is one file: an in-memory transport defined here, registered with
``gitstate.remote.register_transport``, carries push, pull, sync and clone without any other change."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

# ----------------------------------------------------------------------------- the whole new kind of remote
from dulwich.client import LocalGitClient
from dulwich.repo import MemoryRepo
from helpers import fsck, make_store

import gitstate
from gitstate import remote as gremote
from gitstate.remote.endpoint import Endpoint

_REPOS: dict[str, MemoryRepo] = {}  # memory://NAME -> the repository


class MemoryTransport(LocalGitClient):
    """dulwich's local client, pointed at an in-memory repository instead of a directory."""

    def _open_repo(self, path: Any) -> Any:  # type: ignore[override]
        name = path.decode() if isinstance(path, bytes) else path
        return contextlib.nullcontext(_REPOS[name.strip("/")])


def _open(ep: Endpoint, timeout_s: float) -> MemoryTransport:
    return MemoryTransport()


gremote.register_transport("memory", _open, url_schemes=["memory"])


# ----------------------------------------------------------------------------- tests
@pytest.fixture
def server() -> str:
    repo = MemoryRepo()
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    _REPOS["shared"] = repo
    yield "memory:///shared"  # type: ignore[misc]
    _REPOS.pop("shared", None)


def test_url_of_a_registered_scheme_parses_to_its_kind() -> None:
    ep, found = gremote.parse_url("memory:///shared", "origin")
    assert (ep.scheme, ep.path, ep.url) == ("memory", "/shared", "memory:///shared")
    assert not found.given()
    with pytest.raises(gitstate.RemoteError, match="cannot carry credentials"):
        gremote.parse_url("memory://u:pw@x/shared", "origin")
    with pytest.raises(gitstate.RemoteError, match="memory://"):
        gremote.parse_url("nosuch://h/x", "origin")  # the message lists the registered schemes


def test_push_pull_sync_through_a_registered_transport(tmp_path: Path, server: str) -> None:
    a = make_store(tmp_path / "a")
    b = make_store(tmp_path / "b")
    try:
        a.remote_add("origin", server)
        b.remote_add("origin", server)
        a.set("state.json", "x", 1)
        a.flush()
        assert a.push() == a.head
        assert _REPOS["shared"].refs[b"refs/heads/main"].decode() == a.head
        b.pull()
        assert b.get("state.json", "x") == 1 and b.head == a.head
        # both sides change: sync merges key by key and pushes the merge
        a.set("state.json", "y", 2)
        a.flush()
        a.push()
        b.set("state.json", "z", 3)
        b.flush()
        pushed = b.sync()
        assert pushed == b.head
        assert b.get("state.json") == {"x": 1, "y": 2, "z": 3}
        assert b.get_commit(b.head).actor == "merge"
        a.pull()
        assert a.head == b.head and a.get("state.json") == {"x": 1, "y": 2, "z": 3}
        assert a.push_status("origin")["origin"]["commits_waiting"] == 0
    finally:
        a.close()
        b.close()
    fsck(tmp_path / "a")
    fsck(tmp_path / "b")


def test_clone_through_a_registered_transport(tmp_path: Path, server: str) -> None:
    with make_store(tmp_path / "a") as a:
        a.remote_add("origin", server)
        a.set("state.json", "x", 1)
        a.flush()
        a.push()
        head = a.head
    gitstate.clone(server, tmp_path / "c")
    with gitstate.open(tmp_path / "c") as c:
        assert c.head == head and c.get("state.json", "x") == 1
    fsck(tmp_path / "c")
