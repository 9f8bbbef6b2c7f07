"""Trust: nothing a tree names can write outside the store, into ``.git/`` or over gitstate's own metadata.

A hostile remote is a real bare repository (``git init --bare``) whose commits are crafted with dulwich objects
directly, so that they hold what real git would never check out: ``../x.json``, an absolute name, ``.git/config``
in every spelling, symlinks, gitlinks, executables, ``.gitstate/evil.json``. Clone, pull (fast-forward and merge),
restore and undo must each refuse the whole operation with :class:`gitstate.UnsafeTree` naming the entry, and
leave everything as it was: the files outside the store, ``.git/config``, the branch, the index, ``git status``,
and the acknowledged state.

Also: the API refuses writes under ``.gitstate/`` (the store's own metadata), and cloning a remote without
branches is an error unless asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo
from helpers import GIT_ENV, fsck, git, make_store, run_cli, status_porcelain

import gitstate

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

STATE = b'{\n  "a": 1\n}\n'


# ============================================================================ the hostile remote


@dataclass(frozen=True)
class Case:
    """One hostile tree entry: its path parts as the tree spells them, mode and content."""

    id: str
    parts: tuple[bytes, ...]
    mode: int = 0o100644
    content: bytes = b'{"pwned": true}\n'

    def entry(self) -> str:
        return "/".join(p.decode("utf-8", "surrogateescape") for p in self.parts)


def _fsmonitor_config(marker: Path) -> bytes:
    # git runs core.fsmonitor through the shell at the next plain `git status` (git appends its own arguments).
    return (
        b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n" + f'\tfsmonitor = "touch {marker}; false"\n'.encode()
    )


def cases(tmp: Path) -> list[Case]:
    marker = tmp / "fsmonitor-ran"
    config = _fsmonitor_config(marker)
    return [
        Case("dotdot", (b"..", b"x.json")),
        Case("absolute", (str(tmp / "abs.json").encode(),)),
        Case("dotgit", (b".git", b"config"), content=config),
        Case("DOTGIT", (b".GIT", b"config"), content=config),
        Case("git~1", (b"GIT~1", b"config"), content=config),
        Case("sub-dotgit", (b"sub", b".git", b"config"), content=config),
        Case("dotgit-space", (b".git ", b"config"), content=config),
        Case("symlink", (b"link.json",), mode=0o120000, content=str(tmp / "x.json").encode()),
        Case("gitlink", (b"mod",), mode=0o160000),
        Case("exec", (b"run.sh",), mode=0o100755, content=f"#!/bin/sh\ntouch {marker}\n".encode()),
        Case("metadata", (b".gitstate", b"evil.json")),
    ]


CASE_IDS = [c.id for c in cases(Path("/x"))]


def _insert(repo: Repo, tree: Tree, parts: tuple[bytes, ...], mode: int, sha: bytes) -> None:
    if len(parts) == 1:
        tree.add(parts[0], mode, sha)
        return
    try:
        _, sub_sha = tree[parts[0]]
        sub = repo.object_store[sub_sha]
        assert isinstance(sub, Tree)
        sub = sub.copy()  # type: ignore[assignment]
    except KeyError:
        sub = Tree()
    _insert(repo, sub, parts[1:], mode, sha)
    repo.object_store.add_object(sub)
    tree.add(parts[0], 0o040000, sub.id)


def craft_commit(bare: Path, parent: str | None, entries: dict[tuple[bytes, ...], tuple[int, bytes]]) -> str:
    """A commit (with dulwich objects, no checks) whose tree is the parent's plus ``entries``."""
    repo = Repo(str(bare))
    try:
        tree = Tree()
        if parent is not None:
            base = repo.object_store[repo.object_store[parent.encode()].tree]  # type: ignore[attr-defined]
            tree = base.copy()  # type: ignore[attr-defined]
        for parts, (mode, content) in entries.items():
            if mode == 0o160000:
                sha = (parent or "0" * 40).encode()  # a gitlink names a commit of another repository
            else:
                blob = Blob.from_string(content)
                repo.object_store.add_object(blob)
                sha = blob.id
            _insert(repo, tree, parts, mode, sha)
        repo.object_store.add_object(tree)
        c = Commit()
        c.tree = tree.id
        c.parents = [parent.encode()] if parent else []
        c.author = c.committer = b"Mallory <m@example.com>"
        c.author_time = c.commit_time = 1_700_000_000
        c.author_timezone = c.commit_timezone = 0
        c.message = b"innocent update\n"
        repo.object_store.add_object(c)
        return c.id.decode()
    finally:
        repo.close()


def set_branch(bare: Path, commit: str) -> None:
    git(bare, "update-ref", "refs/heads/main", commit)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A bare remote holding a clean base commit, and a sentinel file next to where stores are made."""
    bare = tmp_path / "remote.git"
    git(".", "init", "-q", "--bare", "--initial-branch=main", str(bare))
    base = craft_commit(bare, None, {(b"state.json",): (0o100644, STATE)})
    set_branch(bare, base)
    (tmp_path / "x.json").write_text("outside: must never change\n")
    yield {"tmp": tmp_path, "bare": bare, "base": base}


def outside(tmp: Path, store: Path) -> dict[str, bytes | str]:
    """Everything under ``tmp`` except the store itself (and the remote, which the victim never writes)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        rel = Path(dirpath).relative_to(tmp)
        dirnames[:] = [d for d in dirnames if (rel / d) not in (store.relative_to(tmp), Path("remote.git"))]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            out[str(rel / name)] = os.readlink(p) if p.is_symlink() else p.read_bytes()
        for d in dirnames:
            out[str(rel / d) + "/"] = "dir"
    return out


def fsck_tolerating(repo: Path, hostile: set[str]) -> None:
    """``git fsck --strict`` of a store that fetched hostile objects: every problem it reports must be about one
    of them (they sit in the object store under the tracking ref); the rest must be clean. Without hostile
    objects this is :func:`helpers.fsck`."""
    if not hostile:
        fsck(repo)
        return
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "core.fsmonitor=false", "fsck", "--strict", "--no-progress"],
        capture_output=True,
        env=GIT_ENV,
        timeout=120,
        check=False,
    )
    text = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert "missing" not in text.lower(), text
    for line in text.splitlines():
        if line.startswith(("dangling", "Checking")) or not line.strip():
            continue
        ids = set(re.findall(r"\b[0-9a-f]{40}\b", line))
        assert ids and ids <= hostile, f"fsck problem not about the hostile objects: {line!r}\n{text}"


def hostile_ids(bare: Path, commit: str, base: str) -> set[str]:
    """The commit's objects that the base does not have."""
    mine = set(git(bare, "rev-list", "--objects", commit, f"^{base}").split())
    return {x for x in mine if re.fullmatch(r"[0-9a-f]{40}", x)} | {commit}


@dataclass
class Before:
    outside: dict[str, bytes | str]
    config: bytes
    branch: str
    index: bytes
    status: str


def snapshot(tmp: Path, store: Path) -> Before:
    return Before(
        outside(tmp, store),
        (store / ".git" / "config").read_bytes(),
        git(store, "rev-parse", "refs/heads/main").strip(),
        (store / ".git" / "index").read_bytes(),
        status_porcelain(store),
    )


def assert_untouched(tmp: Path, store: Path, before: Before, *, hostile: set[str]) -> None:
    assert outside(tmp, store) == before.outside
    assert (store / ".git" / "config").read_bytes() == before.config
    assert git(store, "rev-parse", "refs/heads/main").strip() == before.branch
    assert (store / ".git" / "index").read_bytes() == before.index
    assert status_porcelain(store) == before.status
    assert not (tmp / "fsmonitor-ran").exists()
    for name in ("run.sh", "link.json", "mod", ".gitstate/evil.json", "sub/.git"):
        assert not os.path.lexists(store / name), name
    fsck_tolerating(store, hostile)


def victim(world: dict[str, Any], *, diverge: bool = False) -> tuple[Path, gitstate.Store]:
    """A clone of the clean remote with one acknowledged write (and one local commit the remote lacks)."""
    path = world["tmp"] / "victim"
    store = gitstate.clone(str(world["bare"]), path, durability="manual", fsync=False, handle_signals=False)
    store.set("mine.json", "acked", 1)
    store.flush()
    if diverge:
        store.set("mine.json", "local", 2)
        store.flush()
    assert status_porcelain(path) == ""
    return path, store


def _case(tmp: Path, case_id: str) -> Case:
    return next(c for c in cases(tmp) if c.id == case_id)


def _push_hostile(world: dict[str, Any], case: Case) -> str:
    bad = craft_commit(
        world["bare"], world["base"], {case.parts: (case.mode, case.content), (b"state.json",): (0o100644, b"{}\n")}
    )
    set_branch(world["bare"], bad)
    return bad


def _raises_naming(case: Case) -> Any:
    return pytest.raises(gitstate.UnsafeTree, match=re.escape(repr(case.entry())))


# ============================================================================ the payload is real


def test_the_fsmonitor_payload_runs_a_command_when_written_into_git_config(tmp_path: Path) -> None:
    """Control: the ``.git/config`` the hostile trees carry does run a command at a plain ``git status``, so
    the tests below that assert it did not run prove something."""
    repo = tmp_path / "scratch"
    git(".", "init", "-q", str(repo))
    (repo / ".git" / "config").write_bytes(_fsmonitor_config(tmp_path / "fsmonitor-ran"))
    subprocess.run(["git", "-C", str(repo), "status"], env=GIT_ENV, capture_output=True, timeout=60, check=False)
    assert (tmp_path / "fsmonitor-ran").exists()


# ============================================================================ clone, pull, restore, undo


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_clone_refuses_a_hostile_tree(world: dict[str, Any], case_id: str) -> None:
    tmp = world["tmp"]
    case = _case(tmp, case_id)
    _push_hostile(world, case)
    before = outside(tmp, tmp / "copy")
    with _raises_naming(case):
        gitstate.clone(str(world["bare"]), tmp / "copy", durability="manual", handle_signals=False)
    assert not (tmp / "copy").exists()  # clone removes what it created
    assert outside(tmp, tmp / "copy") == before
    assert not (tmp / "fsmonitor-ran").exists()


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("diverge", [False, True], ids=["fast-forward", "merge"])
def test_pull_refuses_a_hostile_tree_and_changes_nothing(world: dict[str, Any], case_id: str, diverge: bool) -> None:
    tmp = world["tmp"]
    case = _case(tmp, case_id)
    path, store = victim(world, diverge=diverge)
    with store:
        before = snapshot(tmp, path)
        bad = _push_hostile(world, case)
        with _raises_naming(case):
            store.pull()
        # The tracking ref may move (the objects were fetched); nothing else did.
        assert git(path, "rev-parse", "refs/remotes/origin/main").strip() == bad
        assert_untouched(tmp, path, before, hostile=hostile_ids(world["bare"], bad, world["base"]))
        assert status_porcelain(path) == ""
        assert store.get("mine.json", "acked") == 1
        assert store.get("state.json") == {"a": 1}
    with make_store(path) as again:
        assert again.get("mine.json", "acked") == 1
    assert not (tmp / "fsmonitor-ran").exists()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_restore_refuses_a_hostile_target(world: dict[str, Any], case_id: str) -> None:
    tmp = world["tmp"]
    case = _case(tmp, case_id)
    path, store = victim(world)
    with store:
        bad = _push_hostile(world, case)
        with pytest.raises(gitstate.UnsafeTree):
            store.pull()
        before = snapshot(tmp, path)
        with _raises_naming(case):
            store.restore(bad)
        assert_untouched(tmp, path, before, hostile=hostile_ids(world["bare"], bad, world["base"]))
        assert status_porcelain(path) == ""
        assert store.get("mine.json", "acked") == 1


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_undo_after_a_hostile_commit_refuses_and_deletes_nothing_outside(world: dict[str, Any], case_id: str) -> None:
    """The branch reached the hostile commit by other means (a human's plain git): undoing it must neither
    delete nor write anything it names."""
    tmp = world["tmp"]
    case = _case(tmp, case_id)
    path, store = victim(world)
    store.close()
    acked = git(path, "rev-parse", "HEAD").strip()
    entries = {case.parts: (case.mode, case.content)}
    bad = craft_commit(path, acked, entries)
    git(path, "update-ref", "refs/heads/main", bad, acked)
    with make_store(path) as store:
        before = snapshot(tmp, path)
        with _raises_naming(case):
            store.undo()
        assert_untouched(tmp, path, before, hostile=hostile_ids(path, bad, acked))
        assert store.get("mine.json", "acked") == 1
    assert (tmp / "x.json").read_text() == "outside: must never change\n"


def test_a_clean_pull_after_a_refused_one_still_works(world: dict[str, Any]) -> None:
    tmp = world["tmp"]
    path, store = victim(world)
    with store:
        bad = _push_hostile(world, _case(tmp, "dotgit"))
        with pytest.raises(gitstate.UnsafeTree):
            store.pull()
        good = craft_commit(world["bare"], world["base"], {(b"state.json",): (0o100644, b'{\n  "a": 2\n}\n')})
        set_branch(world["bare"], good)
        store.pull()
        assert store.get("state.json") == {"a": 2}
        assert store.get("mine.json", "acked") == 1
    assert status_porcelain(path) == ""
    fsck_tolerating(path, hostile_ids(world["bare"], bad, world["base"]))


# ============================================================================ metadata through the API


@pytest.mark.parametrize(
    "write",
    [
        lambda s, d: s.set(d, "version", 99),
        lambda s, d: s.set(d, None, {"version": 99}),
        lambda s, d: s.update(d, {"version": 99}),
        lambda s, d: s.append(d, "xs", 1),
        lambda s, d: s.delete(d),
    ],
    ids=["set", "set-doc", "update", "append", "delete"],
)
@pytest.mark.parametrize("doc", [".gitstate/schema.json", ".gitstate/other.json", ".GITSTATE/x.json", ".gitstate"])
def test_the_api_refuses_writes_to_internal_metadata(tmp_path: Path, write: Any, doc: str) -> None:
    with make_store(tmp_path / "s") as store:
        store.migrate({1: lambda tx: tx.set("a.json", "x", 1)})
        with pytest.raises(gitstate.InvalidPath, match="gitstate's own metadata"):
            write(store, doc)
        with pytest.raises(gitstate.InvalidPath, match="gitstate's own metadata"), store.transaction():
            write(store, doc)
        assert store.pending == 0
        assert store.schema_version == 1
        # Reads stay allowed: the schema version is not a secret.
        assert store.get(".gitstate/schema.json") == {"version": 1}


def test_migrations_still_write_the_schema_and_their_tx_refuses_metadata(tmp_path: Path) -> None:
    with make_store(tmp_path / "s") as store:

        def step(tx: Any) -> None:
            tx.set(".gitstate/schema.json", "version", 7)

        with pytest.raises(gitstate.MigrationError):
            store.migrate({1: step})
        assert store.schema_version == 0
        store.migrate({1: lambda tx: tx.set("a.json", "x", 1), 2: lambda tx: tx.set("a.json", "x", 2)})
        assert store.schema_version == 2
        assert store.undo()  # the store's own metadata goes through the guarded writer
        assert store.schema_version == 1
    assert status_porcelain(tmp_path / "s") == ""
    fsck(tmp_path / "s")


# ============================================================================ clone of an empty remote


def test_clone_of_a_remote_without_branches_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "empty.git"
    git(".", "init", "-q", "--bare", "--initial-branch=main", str(bare))
    with pytest.raises(gitstate.RemoteError, match="no branches; nothing to clone"):
        gitstate.clone(str(bare), tmp_path / "c")
    assert not (tmp_path / "c").exists()
    (tmp_path / "d").mkdir()
    with pytest.raises(gitstate.RemoteError, match="allow_empty"):
        gitstate.clone(str(bare), tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []  # it existed: kept, empty as it was
    proc = run_cli("clone", str(bare), str(tmp_path / "e"))
    assert proc.returncode == 1
    assert "no branches" in proc.stderr and "--allow-empty" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "e").exists()


def test_clone_of_an_empty_remote_when_asked_for_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = tmp_path / "empty.git"
    git(".", "init", "-q", "--bare", "--initial-branch=main", str(bare))
    with caplog.at_level("WARNING", logger="gitstate.remote"):
        store = gitstate.clone(str(bare), tmp_path / "c", allow_empty=True, durability="manual")
    assert any("empty" in r.getMessage() for r in caplog.records)
    with store:
        assert store.head is None and store.remotes() == {"origin": str(bare)}
        store.set("state.json", "x", 1)
        store.flush()
        assert store.push() == git(bare, "rev-parse", "main").strip()
    proc = run_cli("clone", "--allow-empty", str(bare), str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    assert "empty" in proc.stdout + proc.stderr
    assert (tmp_path / "e" / ".git").is_dir()


# ============================================================================ the guarded writer itself


def test_apply_refuses_the_whole_batch_before_touching_anything(tmp_path: Path) -> None:
    from gitstate import worktree

    root = tmp_path / "s"
    root.mkdir()
    (root / "keep.json").write_text("{}\n")
    (root / "link").symlink_to(tmp_path)
    for bad in ("../x.json", ".git/config", "link/x.json", ".gitstate/evil.json", "a\x01.json"):
        with pytest.raises(gitstate.UnsafeTree, match=re.escape(repr(bad))):
            worktree.apply(root, {"new.json": b"1\n", "keep.json": None, bad: b"x"})
        assert sorted(p.name for p in root.iterdir()) == ["keep.json", "link"]
    assert not (tmp_path / "x.json").exists()
    worktree.apply(root, {".gitstate/schema.json": b'{"version": 1}\n'})  # the store's own metadata
    # A file that becomes a directory in the same batch (and back) makes room for itself.
    worktree.apply(root, {"keep.json": None, "keep.json/inner.json": b"2\n"})
    assert (root / "keep.json" / "inner.json").read_bytes() == b"2\n"
    worktree.apply(root, {"keep.json/inner.json": None, "keep.json": b"3\n"})
    assert (root / "keep.json").read_bytes() == b"3\n"


def test_pull_refuses_to_write_through_a_symlink_in_the_work_tree(world: dict[str, Any]) -> None:
    tmp = world["tmp"]
    path, store = victim(world)
    with store:
        (tmp / "elsewhere").mkdir()
        (path / "dir").symlink_to(tmp / "elsewhere")  # put there by hand; gitstate never follows it
        good = craft_commit(world["bare"], world["base"], {(b"dir", b"x.json"): (0o100644, b"{}\n")})
        set_branch(world["bare"], good)
        head = store.head
        with pytest.raises(gitstate.UnsafeTree, match="symlink"):
            store.pull()
        assert store.head == head and list((tmp / "elsewhere").iterdir()) == []


def test_fetch_ignores_tag_names_that_would_write_elsewhere_in_git_dir(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may advertise any ref name (the local transport checks them, the wire protocols do not): a
    fetched tag is stored only when its name is a valid Git ref name."""
    from gitstate import remote as gremote

    path, store = victim(world)
    real_client = gremote.transport.open_transport

    class Hostile:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def fetch_pack(self, rpath: Any, determine_wants: Any, *args: Any, **kw: Any) -> Any:
            def wants(refs: Any, depth: Any = None) -> Any:
                head = refs[b"refs/heads/main"]
                refs = {**refs, b"refs/tags/../../info/evil": head, b"refs/tags/ok": head}
                return determine_wants(refs, depth)

            return self.inner.fetch_pack(rpath, wants, *args, **kw)

        def close(self) -> None:
            self.inner.close()

    def client(*args: Any, **kw: Any) -> Any:
        inner, rpath = real_client(*args, **kw)
        return Hostile(inner), rpath

    monkeypatch.setattr(gremote.transport, "open_transport", client)
    with store:
        store.pull()
    assert not (path / ".git" / "info" / "evil").exists()
    assert git(path, "rev-parse", "refs/tags/ok").strip() == world["base"]
    fsck(path)
