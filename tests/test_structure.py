"""Issue 12's house rules for the whole package, checked from the source: imports point one way (no cycle), no
module over ~900 lines and no class over ~700, no module uses another gitstate module's ``_private`` names, and
every module's docstring says what belongs in it and what does not.

(``tests/test_structure_cli.py`` checks that the CLI uses only the public API; ``tests/test_store_services.py``
that the store's services reach no private attribute of the store.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitstate"
MAX_MODULE_LINES = 900
MAX_CLASS_LINES = 700


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` in ``module`` names."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The gitstate modules (or packages) one import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "gitstate"}
    base = _absolute(module, node)
    if base.split(".")[0] != "gitstate":
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}


def _runtime_imports(module: str) -> set[str]:
    """The gitstate modules ``module`` imports when it is imported: top-level statements (also inside ``if`` and
    ``try``), without ``if TYPE_CHECKING:`` blocks and without imports inside functions (those run later)."""
    deps: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(imported_modules(module, node))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")).body)
    return {d for d in deps if d in MODULES and d != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_is_read() -> None:
    assert "gitstate.repo" in _runtime_imports("gitstate.store") or "gitstate.journal" in _runtime_imports(
        "gitstate.store"
    )
    assert {"gitstate.gc", "gitstate.remote", "gitstate.cli"} <= set(MODULES)


def test_no_import_cycle_in_the_package() -> None:
    graph = {m: _runtime_imports(m) for m in MODULES}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_class_sizes(module: str) -> None:
    text = MODULES[module].read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{module}: {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno
            assert size <= MAX_CLASS_LINES, f"{module}: class {node.name} has {size} lines"


def _private_uses(module: str) -> list[str]:
    """``from gitstate.X import _y`` and ``X._y`` where ``X`` names an imported gitstate module."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    module_names: dict[str, str] = {}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            if base.split(".")[0] != "gitstate":
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module}:{node.lineno}: from {base} import {alias.name}")
                if f"{base}.{alias.name}" in MODULES:
                    module_names[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gitstate":
                    module_names[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_names
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{module}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    offenders = [line for module in sorted(MODULES) for line in _private_uses(module)]
    assert offenders == []


NOTE_PHRASES = ("What belongs here", "What does not")


def _missing_note_phrases(source: str) -> list[str]:
    """The phrases of a newcomer's note (:data:`NOTE_PHRASES`) that the module docstring of ``source`` lacks."""
    doc = ast.get_docstring(ast.parse(source)) or ""
    text = " ".join(doc.split())  # a phrase may be wrapped over two lines
    return [phrase for phrase in NOTE_PHRASES if phrase not in text]


def test_the_note_checker_finds_missing_notes() -> None:
    assert _missing_note_phrases('"""Title.\n\nWhat belongs here: x. What does\nnot: y."""') == []
    assert _missing_note_phrases('"""Title.\n\nWhat belongs here: x."""') == ["What does not"]
    assert _missing_note_phrases("x = 1") == list(NOTE_PHRASES)


def test_every_module_says_what_belongs_in_it_and_what_does_not() -> None:
    """Issue 12: a note at the top of each module names its jobs and where the neighbouring ones live."""
    offenders = []
    for module, path in sorted(MODULES.items()):
        if path.name == "__main__.py" or "_hooks" in path.relative_to(PACKAGE).parts:
            continue
        missing = _missing_note_phrases(path.read_text(encoding="utf-8"))
        if missing:
            offenders.append(f"{module} ({path.relative_to(PACKAGE.parent)}): no {' / '.join(map(repr, missing))}")
    assert offenders == [], "module docstrings without a newcomer's note:\n" + "\n".join(offenders)
