"""A big flush overlaps its slow steps: the work-tree file is written in a thread while the commit's objects are
built, the blob is compressed in a thread while the flush describes the changes, and the blob is hashed once.
What these tests hold: the branch moves only once the file is written, a failure in either thread leaves the
branch where it was (or is redone in place) and loses nothing, and the result is the same commit git checks."""

from __future__ import annotations

import errno
import json
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import dulwich.objects
import pytest
from helpers import commit_ids, fsck, git, make_store, status_porcelain

import gitstate
import gitstate.flusher
from gitstate import codecs, repo_packs, worktree
from gitstate import repo as gs_repo
from gitstate.paths import TEMP_MARKER

#: Canonical JSON of this is well over both thresholds (1 MiB): the overlapped path runs.
BIG = {f"k{i:06d}": {"n": i, "text": "x" * 40} for i in range(20_000)}


def _big(salt: int) -> dict[str, Any]:
    return {k: {**v, "n": v["n"] + salt} for k, v in BIG.items()}


def _open(path: Path) -> gitstate.Store:
    # fsync on: a durable flush writes its objects as one small pack, where the compressed blob goes
    return make_store(path, fsync=True, auto_pack=False)


def _debris(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(f"*{TEMP_MARKER}*")]


def test_thresholds_are_below_the_test_document() -> None:
    size = len(codecs.JSON.encode(BIG))
    assert size >= worktree.BACKGROUND_BYTES and size >= repo_packs.DEFLATE_AHEAD_BYTES


def test_the_branch_moves_only_once_the_big_file_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    seen: list[Any] = []
    original = gs_repo.RefUpdate.install

    def install(self: gs_repo.RefUpdate) -> None:  # the moment the branch moves
        if self.ref == self._repo.branch_ref:
            seen.append(json.loads((path / "big.json").read_bytes()))
        original(self)

    monkeypatch.setattr(gs_repo.RefUpdate, "install", install)
    with _open(path) as s:
        for salt in (0, 1):
            s.set("big.json", None, _big(salt))
            s.flush()
    assert seen == [_big(0), _big(1)]
    assert json.loads(git(path, "show", "HEAD:big.json")) == _big(1)
    fsck(path)
    assert status_porcelain(path) == ""


def test_a_failed_big_work_tree_write_leaves_the_branch_and_keeps_the_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    real_write = os.write
    threads: list[str] = []

    def write(fd: int, data: Any) -> int:
        if threading.current_thread().name == "gitstate-worktree":
            threads.append("worktree")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with _open(path) as s:
        s.set("big.json", None, _big(0))
        first = s.flush()
        monkeypatch.setattr(os, "write", write)
        s.set("big.json", None, _big(1))
        with pytest.raises(gitstate.SaveError, match="disk is full"):
            s.flush()
        assert threads, "the file was not written in a thread: the test proves nothing"
        assert s.head == first and commit_ids(path)[0] == first  # the branch did not move
        assert s.pending == 1 and s.get("big.json") == _big(1)
        monkeypatch.setattr(os, "write", real_write)
        second = s.flush()
        assert second is not None and second != first
    assert json.loads((path / "big.json").read_bytes()) == _big(1)
    assert json.loads(git(path, "show", "HEAD:big.json")) == _big(1)
    fsck(path)
    assert status_porcelain(path) == ""
    assert _debris(path) == []


def test_the_blob_is_compressed_ahead_and_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    big_in_main: list[str] = []
    real_compress = zlib.compress

    def compress(data: Any, *a: Any, **k: Any) -> bytes:
        if len(data) >= repo_packs.DEFLATE_AHEAD_BYTES:
            big_in_main.append(threading.current_thread().name)
        return real_compress(data, *a, **k)

    monkeypatch.setattr(repo_packs.zlib, "compress", compress)
    hashed: list[int] = []
    real_sha1 = dulwich.objects.sha1

    class CountingSha1:
        def __init__(self, *a: Any) -> None:
            self._h = real_sha1(*a)

        def update(self, data: bytes) -> None:
            hashed.append(len(data))
            self._h.update(data)

        def digest(self) -> bytes:
            return self._h.digest()

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(dulwich.objects, "sha1", CountingSha1)
    with _open(path) as s:
        s.set("big.json", None, _big(0))
        s.flush()
    assert big_in_main == ["gitstate-deflate"]  # compressed once, in its thread, never again by the pack writer
    assert not [n for n in hashed if n >= repo_packs.DEFLATE_AHEAD_BYTES]  # dulwich did not hash it again
    assert json.loads(git(path, "show", "HEAD:big.json")) == _big(0)
    fsck(path)


def test_a_failed_compression_ahead_is_done_by_the_pack_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    real_compress = zlib.compress
    failed: list[str] = []

    def compress(data: Any, *a: Any, **k: Any) -> bytes:
        if threading.current_thread().name == "gitstate-deflate":
            failed.append("ahead")
            raise MemoryError
        return real_compress(data, *a, **k)

    monkeypatch.setattr(repo_packs.zlib, "compress", compress)
    with _open(path) as s:
        s.set("big.json", None, _big(0))
        assert s.flush() is not None
    assert failed == ["ahead"]
    assert json.loads(git(path, "show", "HEAD:big.json")) == _big(0)
    fsck(path)
    assert status_porcelain(path) == ""


@pytest.mark.parametrize("fsync", [True, False])
def test_only_a_flush_that_writes_a_pack_compresses_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """Without fsync a commit's objects are loose files, each compressed with its header inside the stream: a
    compression made ahead for a pack entry would be thrown away, so none is started."""
    started: list[int] = []

    class Counting(repo_packs.Deflating):
        def __init__(self, data: bytes) -> None:
            started.append(len(data))
            super().__init__(data)

    monkeypatch.setattr(gitstate.flusher, "Deflating", Counting)
    with make_store(tmp_path / "s", fsync=fsync, auto_pack=False) as s:
        s.set("big.json", None, _big(0))
        s.flush()
    assert len(started) == (1 if fsync else 0)
    assert json.loads(git(tmp_path / "s", "show", "HEAD:big.json")) == _big(0)
    fsck(tmp_path / "s")
