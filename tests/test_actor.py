"""The actor a store writes as: ``library`` by default, ``human`` for commands typed at a terminal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import gitstate


def _actors(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--format=%(trailers:key=Gitstate-Actor,valueonly)"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.split("\n") if line.strip()]


def test_writes_restore_and_undo_carry_the_chosen_actor(tmp_path: Path) -> None:
    with gitstate.open(tmp_path / "s", durability="immediate") as s:
        s.set("a.json", "n", 1)
    with gitstate.open(tmp_path / "s", durability="immediate", actor="human", author="Ada <ada@example.org>") as s:
        s.set("a.json", "n", 2)
        first = s.log()[-1].id
        assert s.restore(first, actor="human").created
        assert s.undo(actor="human").created
        assert s.restore(first).created
    assert _actors(tmp_path / "s") == ["restore", "human", "human", "human", "library"]
    authors = subprocess.run(
        ["git", "log", "-4", "--format=%an <%ae>"], cwd=tmp_path / "s", check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert authors[1:4] == ["Ada <ada@example.org>"] * 3


def test_an_unknown_actor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="actor must be one of"):
        gitstate.open(tmp_path / "s", actor="robot")
