"""The CLI is a client of gitstate's public API: it imports no private name, not ``gitstate.repo`` nor dulwich,
and touches no ``_private`` attribute of a library object (anything the CLI does, a program can do)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI_DIR = Path(__file__).resolve().parent.parent / "gitstate" / "cli"
CLI_FILES = sorted(CLI_DIR.glob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(node: ast.ImportFrom) -> str:
    """The absolute module a ``from X import`` names, as seen from a module of ``gitstate.cli``."""
    if node.level == 0:
        return node.module or ""
    base = ["gitstate", "cli"][: 2 - (node.level - 1)] if node.level <= 2 else []
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported_names_problems(path: Path, node: ast.ImportFrom, module: str) -> list[str]:
    """What is wrong with the names ``from MODULE import ...`` takes (gitstate.repo, private names)."""
    if module.split(".")[0] != "gitstate" or module.split(".")[:2] == ["gitstate", "cli"]:
        return []
    found = []
    for alias in node.names:
        if alias.name == "repo" and module == "gitstate":
            found.append(f"{path.name}:{node.lineno}: imports gitstate.repo")
        elif _private(alias.name):
            found.append(f"{path.name}:{node.lineno}: imports the private name {module}.{alias.name}")
    return found


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def check_module(module: str, lineno: int) -> None:
        parts = module.split(".")
        if parts[0] == "dulwich":
            found.append(f"{path.name}:{lineno}: imports {module}")
        elif parts[0] == "gitstate":
            if parts[:2] == ["gitstate", "cli"]:
                return  # the CLI's own modules
            if parts[:2] == ["gitstate", "repo"]:
                found.append(f"{path.name}:{lineno}: imports {module}")
            elif any(_private(p) for p in parts):
                found.append(f"{path.name}:{lineno}: imports the private module {module}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = _module_of(node)
            check_module(module, node.lineno)
            found += _imported_names_problems(path, node, module)
        elif (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno}: uses the private attribute .{node.attr}")
    return found


def test_the_cli_modules_are_found() -> None:
    assert {p.name for p in CLI_FILES} >= {"__init__.py", "_common.py", "history.py", "remote.py", "watch.py"}


@pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: p.name)
def test_cli_module_uses_only_the_public_api(path: Path) -> None:
    assert _problems(path) == []


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ..repo import Repository\n"
        "from ..remote import _TOKEN_USERNAME\n"
        "from .. import repo\n"
        "import dulwich.objects\n"
        "from ..store import _install_signal_handlers\n"
        "x = store._repo\n"
        "y = self._fine\n"
        "from ._common import main\n"
        "from .. import __version__\n",
        encoding="utf-8",
    )
    problems = _problems(bad)
    assert len(problems) == 6, problems
