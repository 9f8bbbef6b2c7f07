"""Corruption matrix: each repository file truncated, zero-filled or garbled; the store serves the latest state
or fails with a GitStateError, never starts a new root commit, loses nothing acknowledged, and ``doctor`` reports
the damage it can see. Heavier variants (the CLI on every case) run with GITSTATE_TORTURE=1."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import git, make_store, run_cli

import gitstate

TORTURE = os.environ.get("GITSTATE_TORTURE") == "1"
DAMAGES = ("truncate", "zero", "garble")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A store with history: three commits and a snapshot packed by a plain `git gc`, then three loose ones."""
    root = tmp_path_factory.mktemp("base") / "s"
    s = make_store(root, auto_pack=False)
    s.set("a.json", "n", 1)
    s.set("b.json", "x", "keep")
    s.flush()
    s.set("a.json", "n", 2)
    s.flush()
    s.snapshot("before-risky")
    s.set("a.json", "n", 3)
    s.flush()
    s.close()
    git(root, "gc", "-q")
    s = make_store(root, auto_pack=False)
    for doc, key, value in (("a.json", "n", 4), ("c.json", "y", [1]), ("a.json", "n", 5)):
        s.set(doc, key, value)
        s.flush()
    s.close()
    rev = lambda r: git(root, "rev-parse", r).strip()  # noqa: E731
    pack = next((root / ".git/objects/pack").glob("*.pack"))
    return {
        "root": root,
        "commits": git(root, "rev-list", "HEAD").split(),
        "head": rev("HEAD"),
        "tree": rev("HEAD^{tree}"),
        "blob": rev("HEAD:a.json"),
        "old_blob": rev("HEAD~1:a.json"),
        "pack": pack.name,
    }


def _loose(key: str) -> Callable[[Path, dict[str, object]], Path]:
    return lambda r, b: r / ".git/objects" / str(b[key])[:2] / str(b[key])[2:]


TARGETS: dict[str, Callable[[Path, dict[str, object]], Path]] = {
    "branch": lambda r, b: r / ".git/refs/heads/main",
    "HEAD": lambda r, b: r / ".git/HEAD",
    "packed-refs": lambda r, b: r / ".git/packed-refs",
    "head-commit": _loose("head"),
    "head-tree": _loose("tree"),
    "head-blob": _loose("blob"),
    "old-blob": _loose("old_blob"),
    "pack": lambda r, b: r / ".git/objects/pack" / str(b["pack"]),
    "idx": lambda r, b: r / ".git/objects/pack" / (str(b["pack"])[:-5] + ".idx"),
    "index": lambda r, b: r / ".git/index",
    "config": lambda r, b: r / ".git/config",
    "history": lambda r, b: r / ".git/gitstate/history-index-v1.jsonl",
}
#: Damage doctor must report as an error (before the store is opened and repairs what it can). The index and
#: the history index are caches; an empty packed-refs or config is valid for git too.
DOCTOR_ERRORS = {t for t in TARGETS if t not in ("index", "history", "packed-refs", "config")}


def damage(p: Path, how: str) -> None:
    data = p.read_bytes()
    os.chmod(p, 0o600)
    if how == "truncate":
        p.write_bytes(b"")
    elif how == "zero":
        p.write_bytes(b"\0" * len(data))
    else:
        m, n = len(data) // 2, max(1, min(8, len(data) // 4))
        p.write_bytes(data[:m] + bytes(b ^ 0x5A for b in data[m : m + n]) + data[m + n :])


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("target", list(TARGETS))
def test_corruption_matrix(base: dict[str, object], tmp_path: Path, target: str, how: str) -> None:
    root = tmp_path / "s"
    shutil.copytree(Path(str(base["root"])), root, symlinks=True)
    files = {n: (root / n).read_bytes() for n in ("a.json", "b.json", "c.json")}
    damage(TARGETS[target](root, base), how)
    doctor = run_cli("-C", str(root), "doctor", "--no-remote")
    git_refuses_config = (
        target == "config" and git(root, "config", "-l", check=False) == "" and (git(root, "status", check=False) == "")
    )
    if target in DOCTOR_ERRORS or git_refuses_config or (target == "packed-refs" and how != "truncate"):
        assert doctor.returncode == 1, doctor.stdout
    try:
        s = make_store(root, auto_pack=False)
    except gitstate.GitStateError:
        s = None
    if s is not None:
        try:
            assert s.get("a.json", "n") == 5 and s.get("b.json", "x") == "keep"
            try:
                s.log()
                s.diff()
            except gitstate.GitStateError:
                pass
        finally:
            s.close()
    for args in (("get", "a.json", "n"), ("log",), ("diff",), ("status",))[: 4 if TORTURE else 2]:
        r = run_cli("-C", str(root), *args)
        assert "Traceback" not in r.stderr, r.stderr
        if r.returncode:
            assert r.returncode == 1 and r.stderr.strip(), r.stderr
    # The branch never gains a new root commit and keeps its commits; nothing acknowledged is lost.
    listed = git(root, "rev-list", "HEAD", check=False).split()
    if listed:
        assert set(base["commits"]) <= set(listed) or target in ("pack", "idx", "head-commit", "head-tree")  # type: ignore[call-overload]
        assert git(root, "rev-list", "--max-parents=0", "HEAD", check=False).split() == [
            list(base["commits"])[-1]  # type: ignore[call-overload]
        ] or target in ("pack", "idx")
    for n, data in files.items():
        assert (root / n).read_bytes() == data


def test_empty_branch_ref_is_repaired_not_reset(base: dict[str, object], tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(Path(str(base["root"])), root, symlinks=True)
    (root / ".git/refs/heads/main").write_bytes(b"")
    seen: list[gitstate.events.Loaded] = []
    with make_store(root, auto_pack=False, on={"loaded": seen.append}) as s:
        assert s.head == base["head"]
    assert seen[0].repaired and "history index" in seen[0].repaired[0]
    assert git(root, "rev-parse", "HEAD").strip() == base["head"]


def test_lost_loose_ref_with_stale_packed_ref_is_repaired(base: dict[str, object], tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(Path(str(base["root"])), root, symlinks=True)
    (root / ".git/refs/heads/main").unlink()  # packed-refs still names the commit of before `git gc`
    assert run_cli("-C", str(root), "doctor", "--no-remote").returncode == 1
    with make_store(root, auto_pack=False) as s:
        assert s.head == base["head"]


def test_no_good_commit_refuses_to_open(base: dict[str, object], tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(Path(str(base["root"])), root, symlinks=True)
    (root / ".git/refs/heads/main").write_bytes(b"garbage\n")
    (root / ".git/gitstate/history-index-v1.jsonl").unlink()
    (root / ".git/packed-refs").write_text("")
    with pytest.raises(gitstate.RepositoryError, match="update-ref"):
        make_store(root, auto_pack=False)
    assert (root / ".git/refs/heads/main").read_bytes() == b"garbage\n"


def test_fresh_repository_still_initialises(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a.json").write_text('{"x": 1}')
    with make_store(tmp_path / "s") as s:
        assert s.get("a.json", "x") == 1 and s.head is not None


def test_doctor_counts_peeled_snapshots_once(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with make_store(root, auto_pack=False) as s:
        for i, name in enumerate(("v1", "v2", "before-risky")):
            s.set("a.json", "n", i)
            s.flush()
            s.snapshot(name)
    git(root, "gc", "-q")
    assert "^" in (root / ".git/packed-refs").read_text()
    out = run_cli("-C", str(root), "doctor", "--no-remote").stdout
    assert "3 snapshot(s)" in out and "^{}" not in out, out
