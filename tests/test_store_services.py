"""The Store's internal services interface (issue 12), its module layout, and the O(1) new-document check."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from helpers import git, make_store

import gitstate
from gitstate.errors import InvalidPath, RepositoryError, StoreClosed
from gitstate.events import Committed

PACKAGE = Path(gitstate.__file__).parent


# ===================================================================== file/directory slots of new documents
def test_new_document_slot_conflicts_are_still_refused(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="manual") as store:
        store.set("a/b.json", "x", 1)  # pending: a/ is a directory of documents
        with pytest.raises(InvalidPath, match="directory of other documents"):
            store.set("a", None, b"raw")
        with pytest.raises(InvalidPath, match="is a document"):
            store.set("a/b.json/c.json", "x", 1)
        store.delete("a/b.json")  # a pending deletion frees the slot again
        store.set("a", None, b"raw")
        store.flush()
        with pytest.raises(InvalidPath):  # committed: a file on disk now
            store.set("a/c.json", "x", 1)
        store.set("d/e/f.json", "x", 1)
        with pytest.raises(InvalidPath, match="directory of other documents"):  # pending, two levels up
            store.set("d", None, b"raw")
        store.flush()
        with pytest.raises(InvalidPath):  # committed: a directory on disk now
            store.set("d/e", None, b"raw")


def test_new_document_check_does_not_scan_the_pending_documents(tmp_path: Path, monkeypatch: Any) -> None:
    with make_store(tmp_path / "s", durability="manual") as store:
        for i in range(50):
            store.set(f"tasks/t{i}.json", "id", i)

        def no_scan(self: Any) -> Any:
            raise AssertionError("the new-document check scanned every pending document")

        with monkeypatch.context() as patched:
            patched.setattr(type(store._dirty), "__iter__", no_scan)
            store.set("tasks/t50.json", "id", 50)
            with pytest.raises(InvalidPath, match="directory of other documents"):
                store.set("tasks", None, b"raw")


# ===================================================================== store.services
def test_services_commit_under_the_lock_emit_and_hooks(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="manual") as store:
        services = store.services
        assert services.repo.root == store.path
        seen: list[str] = []
        committed: list[Any] = []
        remove = services.add_after_commit(seen.append)
        store.on("committed", committed.append)
        with services.commit_lock():
            head = services.repo.head()
            cid = services.commit_external([({"a.json": b'{"x":1}\n'}, "made elsewhere")], actor="restore")
        assert cid is not None and cid != head and store.head == cid
        assert seen == [cid] and committed[-1].actor == "restore"
        assert store.get("a.json", "x") == 1
        assert "made elsewhere" in git(store.path, "log", "-1", "--format=%s")
        with pytest.raises(RepositoryError):
            services.commit_external([({"a.json": b'{"x":2}\n'}, "late")], actor="restore", expected_head=head)
        remove()
        store.set("a.json", "x", 3)
        store.flush()
        assert seen == [cid]
        services.emit(Committed(commit="0" * 40, actor="library", docs=[]))
        assert committed[-1].commit == "0" * 40


def test_services_schema_head_tree_and_push_queue(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="immediate") as store:
        services = store.services
        assert services.expected_schema == 0
        services.expected_schema = 3
        assert store.services.expected_schema == 3
        services.expected_schema = 0
        store.set("a.json", "x", 1)
        other = make_store(store.path, durability="immediate")
        other.set("b.json", "y", 1)
        other.close()
        services.refresh()  # picks up the other process's commit
        assert services.head_tree == services.repo.commit_info(services.repo.head()).tree
        assert services.push_queue is None
        marker = object()
        services.push_queue = marker
        assert services.push_queue is marker
        services.push_queue = None
    with pytest.raises(StoreClosed):
        services.check_open()


# ===================================================================== one class split over modules, no privates
_MY_MODULES = ("store.py", "journal.py", "flusher.py", "ingest.py", "transactions.py", "services.py",
               "migrate.py", "aio.py", "lifecycle.py", "watcher.py", "docdiff.py")  # fmt: skip


@pytest.mark.parametrize("name", _MY_MODULES)
def test_no_private_attribute_of_another_object(name: str) -> None:
    """These modules reach no ``_private`` attribute of an object of another module: outside ``self``/``cls``,
    a private name is used only when this module defines it (a method, or an attribute set on ``self``)."""
    path = PACKAGE / name
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for n in ast.walk(tree):
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                    defined.add(sub.attr)
        if isinstance(n, ast.ClassDef):
            for item in n.body:  # __slots__ and class-level annotations
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    defined.add(item.target.id)
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr in defined:
                continue
            offenders.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


@pytest.mark.parametrize("name", ["store.py", "journal.py", "flusher.py", "ingest.py", "docdiff.py", "migrate.py"])
def test_module_size_goals(name: str) -> None:
    lines = (PACKAGE / name).read_text(encoding="utf-8").count("\n")
    assert lines <= 900, f"{name} has {lines} lines"
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno
            assert size <= 700, f"{name}: class {node.name} has {size} lines"


def test_services_cover_the_background_pusher(tmp_path: Path) -> None:
    """What remote.py's background pusher needs, through services only: the repository, an after-commit hook it
    can remove, events, and the push queue that close() stops."""

    class FakePusher:
        def __init__(self) -> None:
            self.heads: list[str] = []
            self.stopped = False

        def stop(self) -> None:
            self.stopped = True

    store = make_store(tmp_path / "s", durability="manual")
    services = store.services
    pusher = FakePusher()
    services.push_queue = pusher
    remove = services.add_after_commit(pusher.heads.append)
    pushed: list[Any] = []
    store.on("pushed", pushed.append)
    store.set("a.json", "x", 1)
    cid = store.flush()
    assert pusher.heads == [cid] and services.repo.head() == cid
    from gitstate.events import Pushed

    services.emit(Pushed(remote="origin", commit=cid, count=1))
    assert pushed and pushed[0].commit == cid
    remove()
    remove()  # idempotent
    store.set("a.json", "x", 2)
    store.flush()
    assert pusher.heads == [cid]
    store.close()
    assert pusher.stopped
