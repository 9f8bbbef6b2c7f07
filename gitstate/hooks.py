"""Git hooks for people who commit to a store with plain git: :func:`install_hooks` copies gitstate's hooks
(``pre-commit``, ``commit-msg``) into a store, :func:`hook_sources` finds them in the installed package.

What belongs here: finding and installing the hook files. What does not: the hooks themselves (shell scripts in
``gitstate/_hooks/``, or ``hooks/`` in a source checkout) and the ``gitstate hooks`` command
(``gitstate.cli.watch``). The library never runs repository hooks itself.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GitStateError, StoreNotFound

__all__ = ["HookResult", "hook_sources", "install_hooks"]

#: Files in ``hooks/`` that are not hooks.
_NOT_HOOKS = {"README.md", "README", "__init__.py"}


@dataclass(frozen=True)
class HookResult:
    """What ``install_hooks`` did with one hook: ``installed``, ``updated`` (an older copy was replaced),
    ``unchanged``, ``replaced`` (a foreign hook was moved to ``backup``) or ``skipped`` (a foreign hook is in
    the way; pass ``force``)."""

    name: str
    path: Path
    action: str
    backup: Path | None = None


def hook_sources() -> dict[str, bytes]:
    """The hooks gitstate ships: ``gitstate/_hooks/`` inside the installed package, else the project's
    top-level ``hooks/`` directory (editable installs and source checkouts).

    Example:
        >>> sorted(hook_sources())  # doctest: +SKIP
        ['commit-msg', 'pre-commit']
    """
    from importlib import resources

    candidates: list[Any] = []
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        candidates.append(resources.files("gitstate") / "_hooks")
    candidates.append(Path(__file__).resolve().parent.parent / "hooks")
    for directory in candidates:
        try:
            if not directory.is_dir():
                continue
            found = {
                e.name: e.read_bytes()
                for e in directory.iterdir()
                if e.is_file() and e.name not in _NOT_HOOKS and not e.name.startswith(".") and "." not in e.name
            }
        except OSError:
            continue
        if found:
            return found
    raise GitStateError("cannot find gitstate's hooks (gitstate/_hooks or hooks/); reinstall gitstate")


def _hooks_dir(root: Path) -> Path:
    """Where git looks for hooks: ``core.hooksPath`` when set, else ``.git/hooks``."""
    from .repo import Repository

    try:
        repo = Repository.open(root, create=False)
    except GitStateError as e:
        raise StoreNotFound(f"no gitstate store at {root}: {e}") from e
    try:
        configured = repo.config_get("core", "hooksPath")
        git_dir = repo.git_dir
    finally:
        repo.close()
    if configured:
        path = Path(os.path.expanduser(configured))
        return path if path.is_absolute() else root / path
    return git_dir / "hooks"


def install_hooks(root: str | os.PathLike[str], *, force: bool = False) -> list[HookResult]:
    """Copy gitstate's git hooks into the store at ``root`` (``core.hooksPath`` is honoured). A hook of the
    same name that gitstate did not write is left alone unless ``force``, which moves it aside first.

    Example:
        >>> [r.action for r in install_hooks("/var/lib/agent")]  # doctest: +SKIP
        ['installed', 'installed']
    """
    root = Path(root)
    if not (root / ".git").is_dir():
        raise StoreNotFound(f"no gitstate store at {root.absolute()}")
    sources = hook_sources()
    target_dir = _hooks_dir(root)
    target_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    results: list[HookResult] = []
    for name, data in sorted(sources.items()):
        target = target_dir / name
        backup = None
        try:
            old: bytes | None = target.read_bytes()
        except FileNotFoundError:
            old = None
        except OSError as e:
            raise GitStateError(f"cannot read the existing hook {target}: {e.strerror}") from e
        if old == data:
            with contextlib.suppress(OSError):
                os.chmod(target, 0o755)
            results.append(HookResult(name, target, "unchanged"))
            continue
        ours = old is not None and b"gitstate" in old[:2048]
        if old is not None and not ours:
            if not force:
                results.append(HookResult(name, target, "skipped"))
                continue
            backup = target.with_name(f"{name}.before-gitstate")
            n = 1
            while backup.exists():
                n += 1
                backup = target.with_name(f"{name}.before-gitstate.{n}")
            os.replace(target, backup)
        tmp = target.with_name(f".{name}.gitstate-tmp-{os.urandom(4).hex()}")
        try:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise GitStateError(f"cannot write the hook {target}: {e.strerror}") from e
        action = "replaced" if backup else ("updated" if old is not None else "installed")
        results.append(HookResult(name, target, action, backup))
    return results
