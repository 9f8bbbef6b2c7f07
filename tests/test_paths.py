"""Document path validation and crash-safe writes (gitstate.paths)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from gitstate.errors import GitStateError, InvalidPath
from gitstate.paths import (
    TEMP_MARKER,
    atomic_write,
    check_no_symlinks,
    is_scratch_name,
    is_temp_name,
    remove_file,
    validate_doc_path,
)

GOOD = [
    "state.json",
    "memory/current_work.yaml",
    "tasks/task_123.json",
    "a/b/c/d.yml",
    "notes.md",
    "weird name with spaces.json",
    "ünïcödé/файл.json",
    ".gitignore",
    ".gitattributes-like.json",
    "git/x.json",
    "gitx/.github/y.json",
    "a.git.json",
    "x.gitstate/y.json",
]

HOSTILE = [
    "../x.json",
    "a/../../b",
    "a/../b.json",
    "/etc/x",
    "/x.json",
    ".git/config",
    ".git",
    "sub/.git/config",
    ".GIT/x",
    ".Git/HEAD",
    ".git /x",
    ".git./x",
    ".git. . /x",
    "git~1/config",
    "GIT~1/x",
    ".g\u200cit/x",
    ".\u200dgit/x",
    ".git\ufeff/x",
    ".git::$INDEX_ALLOCATION/x",
    "a\x00b.json",
    "nul\x00",
    "tab\there.json",
    "new\nline.json",
    "del\x7f.json",
    "a\\b.json",
    "..\\x.json",
    "",
    "a//b.json",
    "a/",
    "./a.json",
    "a/./b.json",
    ".",
    "..",
    "x" * 1100 + ".json",
    f"a{TEMP_MARKER}123.json",
]


@pytest.mark.parametrize("doc", GOOD)
def test_valid_paths_come_back_unchanged(doc: str) -> None:
    assert validate_doc_path(doc) == doc


@pytest.mark.parametrize("doc", HOSTILE)
def test_hostile_paths_are_refused(doc: str) -> None:
    with pytest.raises(InvalidPath) as info:
        validate_doc_path(doc)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, GitStateError)
    assert info.value.path == doc
    assert info.value.reason
    assert "invalid document path" in str(info.value)


@pytest.mark.parametrize("doc", [None, 3, b"state.json", Path("state.json"), ["state.json"]])
def test_non_string_paths_are_refused(doc: object) -> None:
    with pytest.raises(InvalidPath):
        validate_doc_path(doc)


def test_surrogates_are_refused() -> None:
    with pytest.raises(InvalidPath):
        validate_doc_path("bad\udcff.json")


def test_validation_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """validate_doc_path must be pure: refuse before any file system call."""

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("I/O during validation")

    for name in ("lstat", "stat", "open", "mkdir", "listdir", "scandir"):
        monkeypatch.setattr(os, name, boom)  # gitstate.paths uses the os module
    for doc in HOSTILE:
        with pytest.raises(InvalidPath):
            validate_doc_path(doc)
    for doc in GOOD:
        validate_doc_path(doc)


def test_symlink_component_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file.json").symlink_to(outside / "target.json")
    with pytest.raises(InvalidPath, match="symlink"):
        check_no_symlinks(root, "link/x.json")
    with pytest.raises(InvalidPath, match="symlink"):
        check_no_symlinks(root, "file.json")
    with pytest.raises(InvalidPath, match="symlink"):
        atomic_write(root, "link/x.json", b"{}\n")
    with pytest.raises(InvalidPath, match="symlink"):
        atomic_write(root, "file.json", b"{}\n")
    assert list(outside.iterdir()) == []


def test_non_directory_parent_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(InvalidPath):
        check_no_symlinks(tmp_path, "a.json/b.json")
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidPath, match="not a regular file"):
        check_no_symlinks(tmp_path, "d")
    check_no_symlinks(tmp_path, "missing/deeper/x.json")  # missing parts are fine


def test_atomic_write_creates_private_file_and_dirs(tmp_path: Path) -> None:
    st = atomic_write(tmp_path, "a/b/state.json", b'{"x": 1}\n', fsync=True)
    target = tmp_path / "a" / "b" / "state.json"
    assert target.read_bytes() == b'{"x": 1}\n'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    assert st.st_size == len(b'{"x": 1}\n')
    assert st.st_ino == os.stat(target).st_ino


def test_atomic_write_keeps_existing_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    atomic_write(tmp_path, "state.json", b"new" * 1000, fsync=False)
    assert target.read_bytes() == b"new" * 1000
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def enospc(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(OSError) as info:
        atomic_write(tmp_path, "state.json", b"new")
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_failure_on_replace_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def erofs(a: object, b: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", erofs)
    with pytest.raises(OSError):
        atomic_write(tmp_path, "state.json", b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_refuses_a_directory_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a file")
    with pytest.raises(InvalidPath):
        atomic_write(tmp_path, "a/b.json", b"{}")


def test_remove_file_prunes_empty_directories_but_not_root(tmp_path: Path) -> None:
    atomic_write(tmp_path, "a/b/c.json", b"1", fsync=False)
    atomic_write(tmp_path, "a/keep.json", b"1", fsync=False)
    assert remove_file(tmp_path, "a/b/c.json")
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep.json").exists()
    assert remove_file(tmp_path, "a/keep.json")
    assert not (tmp_path / "a").exists()
    assert tmp_path.is_dir()
    assert not remove_file(tmp_path, "never.json")


def test_remove_file_refuses_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text("keep")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidPath):
        remove_file(root, "link/x.json")
    assert (outside / "x.json").read_text() == "keep"


@pytest.mark.parametrize(
    "name",
    [
        ".state.json.swp",
        ".state.json.swx",
        "state.json~",
        "4913",
        ".#state.json",
        "#state.json#",
        "state.json.tmp",
        ".goutputstream-ABC123",
        "sedAb12Cd",
        "state.json___jb_tmp___",
        ".DS_Store",
        f".state.json{TEMP_MARKER}abc",
    ],
)
def test_scratch_names(name: str) -> None:
    assert is_scratch_name(name)


@pytest.mark.parametrize("name", ["state.json", "tasks.yaml", "notes.md", "sed.json", "4914", "#", "x.swap"])
def test_not_scratch_names(name: str) -> None:
    assert not is_scratch_name(name)


def test_temp_names() -> None:
    assert is_temp_name(f".x{TEMP_MARKER}00")
    assert not is_temp_name("x.json")
