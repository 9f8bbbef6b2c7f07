"""Layers only point down (issue 12): every module of the package has a place in the layer map of the README's
"How it works", and no import, at module level or inside a function (outside ``if TYPE_CHECKING:``), reaches a
module of a higher layer. Imports within one layer are allowed (``tests/test_structure.py`` forbids cycles)."""

from __future__ import annotations

import ast

from test_structure import MODULES, imported_modules

#: The README's layer map, top to bottom (a bigger number is a higher layer).
LAYERS: dict[int, tuple[str, ...]] = {
    70: ("gitstate.__main__",),
    60: ("gitstate.cli", "gitstate.ui"),  # packages: every module under them
    50: ("gitstate", "gitstate.aio", "gitstate.store"),
    40: ("gitstate.direct",),
    35: ("gitstate.ingest",),
    34: ("gitstate.flusher",),
    33: ("gitstate.journal",),
    32: ("gitstate.lifecycle", "gitstate.services"),
    # services: reached through store.services only
    20: (
        "gitstate.history",
        "gitstate.history_index",
        "gitstate.history_keys",
        "gitstate.history_stream",
        "gitstate.revisions",
        "gitstate.watcher",
        "gitstate.migrate",
        "gitstate.yaml11",
        "gitstate.remote",
        "gitstate.gc",
        "gitstate.retention",
        "gitstate.snapshots",
        "gitstate.doctor",
        "gitstate.quarantine",
        "gitstate.gitmerge",
        "gitstate.hooks",
        "gitstate.recovery",
    ),
    # the model: values, changes, messages, codecs
    10: (
        "gitstate.messages",
        "gitstate.docdiff",
        "gitstate.merging",
        "gitstate.codecs",
        "gitstate.encoded",
        "gitstate.roundtrip",
        "gitstate.keys",
        "gitstate.events",
        "gitstate.limits",
        "gitstate.transactions",
    ),
    # Git: the only door to Git's formats (gc's pack readers and writer are shared with repo_objects)
    0: (
        "gitstate.worktree",
        "gitstate.ancestry",
        "gitstate.repo",
        "gitstate.repo_objects",
        "gitstate.repo_packs",
        "gitstate.repo_trees",
        "gitstate.repo_index",
        "gitstate.repo_lock",
        "gitstate.gc.objects",
        "gitstate.gc.delta",
        "gitstate.gc.packwrite",
        "gitstate.gc.reach",
        "gitstate.paths",
        "gitstate.identity",
    ),
    -10: ("gitstate.errors", "gitstate.gcpause"),
}
PACKAGES = ("gitstate.cli", "gitstate.ui", "gitstate.remote", "gitstate.gc", "gitstate._hooks")


def layer_of(module: str) -> int | None:
    """The layer of ``module``: its own entry, else its package's (None: not on the map)."""
    for rank, names in LAYERS.items():
        if module in names:
            return rank
    for rank, names in LAYERS.items():
        if any(module.startswith(f"{n}.") for n in names if n in PACKAGES):
            return rank
    return None


def imports_of(module: str) -> set[str]:
    """Every gitstate module ``module`` imports, also inside functions, but not under ``if TYPE_CHECKING:``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    deps: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            deps.update(imported_modules(module, node))
    return {d for d in deps if d in MODULES and d != module}


def test_every_module_is_on_the_map() -> None:
    unplaced = [m for m in MODULES if layer_of(m) is None and not m.startswith("gitstate._hooks")]
    assert not unplaced, f"add these modules to LAYERS (and to the README's layer map): {unplaced}"


def test_imports_only_point_down() -> None:
    upward = []
    for module in sorted(MODULES):
        rank = layer_of(module)
        if rank is None:
            continue
        for dep in sorted(imports_of(module)):
            dep_rank = layer_of(dep)
            if dep_rank is not None and dep_rank > rank:
                upward.append(f"{module} (layer {rank}) imports {dep} (layer {dep_rank})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_checker_sees_a_lazy_import_inside_a_function() -> None:
    assert "gitstate.history" in imports_of("gitstate.recovery")  # `from . import history` inside a function
    assert layer_of("gitstate.cli.history") == 60 and layer_of("gitstate.gc.packwrite") == 0
