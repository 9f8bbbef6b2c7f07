"""Who is typing: the user's git identity, for commits made from the command line (actor ``human``).

What belongs here: reading ``user.name`` / ``user.email`` the way git does (``GIT_AUTHOR_NAME`` /
``GIT_AUTHOR_EMAIL`` first, then the store's ``.git/config``, then the user's global config and the system's),
without running anything: the files are parsed by dulwich, ``include`` directives are not followed and nothing a
config names is executed. What does not: choosing the actor, or the identity of library writes (the store's
``author`` option).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["git_identity"]


def _from_configs(root: Path | None) -> tuple[str | None, str | None]:
    from dulwich.config import ConfigFile, StackedConfig

    backends = []
    if root is not None:
        with contextlib.suppress(OSError, ValueError):
            backends.append(ConfigFile.from_path(str(root / ".git" / "config")))
    with contextlib.suppress(OSError, ValueError):
        backends.extend(StackedConfig.default_backends())
    name = email = None
    for cfg in backends:
        for field in ("name", "email"):
            try:
                value = cfg.get((b"user",), field.encode()).decode("utf-8", "replace").strip()
            except KeyError:
                continue
            if field == "name" and name is None and value:
                name = value
            elif field == "email" and email is None and value:
                email = value
    return name, email


def git_identity(root: str | os.PathLike[str] | None = None) -> str | None:
    """``Name <email>`` as git would sign a commit made in ``root``, or None when no name or no email is
    configured (then the caller keeps its own default rather than a made-up address).

    Example:
        >>> import os
        >>> os.environ["GIT_AUTHOR_NAME"], os.environ["GIT_AUTHOR_EMAIL"] = "Ada", "ada@example.org"
        >>> git_identity()
        'Ada <ada@example.org>'
        >>> del os.environ["GIT_AUTHOR_NAME"], os.environ["GIT_AUTHOR_EMAIL"]
    """
    name = os.environ.get("GIT_AUTHOR_NAME") or None
    email = os.environ.get("GIT_AUTHOR_EMAIL") or None
    if name is None or email is None:
        cfg_name, cfg_email = _from_configs(Path(root) if root is not None else None)
        name, email = name or cfg_name, email or cfg_email
    if not name or not email:
        return None
    email = email.strip().removeprefix("<").removesuffix(">")
    clean = " ".join(name.replace("<", "").replace(">", "").split())
    return f"{clean} <{email}>" if clean and email and "\n" not in email else None
