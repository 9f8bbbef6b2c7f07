"""Issue 12 in the history code: one job per module, each under ~900 lines, the old names still importable from
gitstate.history, and the CLI built on gitstate's public API only."""

from __future__ import annotations

import ast
from pathlib import Path

from gitstate import history, history_index, revisions

PACKAGE = Path(history.__file__).resolve().parent


def test_history_modules_are_small() -> None:
    for module in (history, history_index, revisions):
        n = len(Path(module.__file__ or "").read_text(encoding="utf-8").splitlines())
        assert n <= 900, (module.__name__, n)


def test_history_reexports_what_it_always_offered() -> None:
    assert history.resolve is revisions.resolve and history.parse_time is revisions.parse_time
    assert history.record is history_index.record and history.indexed_commits is history_index.indexed_commits
    assert set(history.__all__) <= set(dir(history))


def test_the_cli_uses_no_private_names_of_other_modules() -> None:
    offenders = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..x import y
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                offenders += [f"{path.name}: {name}" for name in private]
                if node.module in ("repo", "history_index"):
                    offenders.append(f"{path.name}: imports gitstate.{node.module}")
    assert offenders == []
