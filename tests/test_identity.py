"""The user's git identity for command-line writes (gitstate/identity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitstate.identity import git_identity


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_nothing_configured_gives_none(home: Path, tmp_path: Path) -> None:
    assert git_identity(tmp_path) is None
    (home / ".gitconfig").write_text("[user]\n\tname = Only Name\n")
    assert git_identity(tmp_path) is None  # no email: not made up


def test_global_then_repository_then_environment(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".gitconfig").write_text("[user]\n\tname = Grace Hopper\n\temail = grace@example.org\n")
    store = tmp_path / "store"
    (store / ".git").mkdir(parents=True)
    assert git_identity(store) == "Grace Hopper <grace@example.org>"
    (store / ".git" / "config").write_text("[user]\n\temail = <ops@example.org>\n")
    assert git_identity(store) == "Grace Hopper <ops@example.org>"  # the repository's setting wins, per field
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Name")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "env@example.org")
    assert git_identity(store) == "Env Name <env@example.org>"


def test_xdg_and_global_override_and_odd_values(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "git").mkdir(parents=True)
    (xdg / "git" / "config").write_text("[user]\n\tname = X <Y>  Z\n\temail = x@example.org\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert git_identity(None) == "X Y Z <x@example.org>"  # angle brackets cannot be part of a name
    other = tmp_path / "global"
    other.write_text("[user]\n\tname = From Global\n\temail = g@example.org\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(other))
    assert git_identity(None) == "From Global <g@example.org>"
    (tmp_path / "bad").write_text("[user\nname = =\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "bad"))
    assert git_identity(None) is None  # an unreadable config is no identity, never an error
