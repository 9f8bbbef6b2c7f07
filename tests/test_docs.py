"""The docs tell the truth: every command has help with an example and is in the README, the README's Python runs,
public names have docstrings, and CI runs the README's own test command."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import click
import pytest
from helpers import invoke

import gitstate
from gitstate.cli import main
from gitstate.cli._common import load_all_commands

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, path)
    return out


load_all_commands()  # the root group imports a command's module only when that command runs
COMMANDS = _commands(main)


def test_the_cli_has_every_command_of_the_spec() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    spec = {
        "init",
        "status",
        "get",
        "set",
        "log",
        "show",
        "diff",
        "restore",
        "undo",
        "snapshot",
        "snapshots",
        "watch",
        "clone",
        "remote add",
        "push",
        "pull",
        "sync",
        "migrate",
        "gc",
        "hooks install",
        "doctor",
    }
    assert spec <= names, spec - names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = dict(COMMANDS)[path]
    if isinstance(cmd, click.Group):
        assert cmd.help, path
    else:
        assert "example" in result.output.lower(), f"`gitstate {' '.join(path)} --help` shows no example"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert f"`{' '.join(path)}" in README or f"gitstate {' '.join(path)}" in README, (
        f"`gitstate {' '.join(path)}` is not documented in README.md"
    )


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_readme_starts_with_the_two_setup_commands() -> None:
    quick = README.index("## Quickstart")
    first_two = [b.strip() for b in _blocks("sh")][:2]
    assert README.index(first_two[0]) > quick
    assert "examples/demo.py" in first_two[0]
    assert "pytest" in first_two[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert first_two[1] in ci, "CI must run the README's own test command"


def test_ci_runs_nothing_the_readme_does_not_show() -> None:
    """Every command of .ci/run (past its own set-up: shell options, cd) is a line of the README, so a step CI
    needs is a step a new user is told to take."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [ln.strip() for ln in ci if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    readme_lines = {ln.split("  #")[0].strip() for block in _blocks("sh") for ln in block.splitlines()}
    missing = [c for c in commands if c not in readme_lines]
    assert not missing, f"in .ci/run but not in the README: {missing}"


def test_the_readme_library_example_runs(tmp_path: Path) -> None:
    (code,) = [b for b in _blocks("python") if "gitstate.open(" in b][:1]
    code = code.replace('"/tmp/agent-state"', repr(str(tmp_path / "agent-state")))
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    with gitstate.open(tmp_path / "agent-state", durability="manual") as store:
        assert store.get("state.json", "services.slack") is True
        assert store.get("tasks/task_3.json", "status") == "done"
        assert store.get("memory/current_work.yaml", "follow_ups") == ["check coverage"]
        assert store.log(limit=1)[0].actor == "library"


def _public_members() -> list[tuple[str, Any]]:
    out = []
    for name in gitstate.__all__:
        if name.startswith("_"):
            continue
        obj = getattr(gitstate, name)
        out.append((name, obj))
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                    out.append((f"{name}.{attr}", member))
    return out


@pytest.mark.parametrize("name,obj", _public_members(), ids=[n for n, _ in _public_members()])
def test_every_public_name_has_a_docstring(name: str, obj: Any) -> None:
    if isinstance(obj, str):  # __version__
        return
    assert inspect.getdoc(obj), f"{name} has no docstring"
