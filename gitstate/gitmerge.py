"""Plain git, structurally: the merge driver, the diff textconv and ``setup-git`` that tells git to use them.

What belongs here: what the user's own ``git merge``/``git pull``/``git rebase``/``git diff``/``git log -p`` call
(:func:`merge_driver`, :func:`textconv`) and :func:`setup_git`, which writes ``.gitattributes`` and the LOCAL
``.git/config`` entries naming them. What does not: gitstate's own merges (``sync``, :mod:`gitstate.remote`), which
never run anything from repository config; the key-level merge itself (:func:`gitstate.docdiff.merge3`, the same
rules as ``sync``); the format-preserving writer (:mod:`gitstate.roundtrip`).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import docdiff
from .codecs import Codec, Codecs, registry_for
from .errors import DecodeError

__all__ = [
    "ATTRIBUTE_PATTERNS",
    "DRIVER_NAME",
    "GitSetup",
    "merge_driver",
    "setup_git",
    "textconv",
    "textconv_text",
]

logger = logging.getLogger("gitstate.gitmerge")

#: The name of the merge driver and diff driver in ``.gitattributes`` and ``.git/config``.
DRIVER_NAME: Final = "gitstate"
#: The documents setup-git hands to the driver: the structured suffixes of the default registry.
ATTRIBUTE_PATTERNS: Final = ("*.json", "*.yaml", "*.yml")
_HEADER: Final = "# gitstate: key-level merges and diffs for plain git (written by 'gitstate setup-git')"
_MARKER: Final = 7


@dataclass(frozen=True)
class GitSetup:
    """What :func:`setup_git` wrote.

    Attributes:
        attributes: the ``.gitattributes`` file.
        attributes_changed: False when every line was already there.
        config: the repository's local config file (``.git/config``).
        settings: the config entries set, ``name -> value`` (``merge.gitstate.driver`` and the like).
    """

    attributes: Path
    attributes_changed: bool
    config: Path
    settings: dict[str, str]


def setup_git(directory: str | os.PathLike[str], *, command: str = "gitstate") -> GitSetup:
    """Make the user's own git merge and diff the store's JSON/YAML documents key by key.

    Appends ``<pattern> merge=gitstate diff=gitstate`` lines for :data:`ATTRIBUTE_PATTERNS` to
    ``directory/.gitattributes`` (lines already there are not repeated), and sets in the repository's LOCAL
    config (``.git/config``, never the user's global one)::

        merge.gitstate.name = gitstate key-level merge
        merge.gitstate.driver = gitstate merge-driver %O %A %B %P
        diff.gitstate.textconv = gitstate textconv

    ``command`` is how git will run gitstate (found on ``PATH`` by default). Running it again changes nothing.
    gitstate itself never reads these settings: they only tell git how to call gitstate.

    Raises:
        FileNotFoundError: ``directory`` has no ``.git`` directory.
    """
    root = Path(directory)
    git_dir = root / ".git"
    if not git_dir.is_dir():
        raise FileNotFoundError(f"{root} is not a git work tree with a .git directory")
    attributes = root / ".gitattributes"
    existing = attributes.read_text("utf-8") if attributes.exists() else ""
    have = {line.strip() for line in existing.splitlines()}
    wanted = [f"{p} merge={DRIVER_NAME} diff={DRIVER_NAME}" for p in ATTRIBUTE_PATTERNS]
    missing = [line for line in wanted if line not in have]
    if missing:
        lead = "" if not existing or existing.endswith("\n") else "\n"
        block = ([_HEADER] if _HEADER not in have else []) + missing
        _write_atomic(attributes, (existing + lead + "\n".join(block) + "\n").encode("utf-8"))
    settings = {
        f"merge.{DRIVER_NAME}.name": "gitstate key-level merge",
        f"merge.{DRIVER_NAME}.driver": f"{command} merge-driver %O %A %B %P",
        f"diff.{DRIVER_NAME}.textconv": f"{command} textconv",
    }
    config = git_dir / "config"
    _set_config(config, settings)
    return GitSetup(attributes, bool(missing), config, settings)


def _set_config(path: Path, settings: dict[str, str]) -> None:
    from dulwich.config import ConfigFile

    cfg = ConfigFile.from_path(str(path)) if path.exists() else ConfigFile()
    for name, value in settings.items():
        section, sub, key = name.split(".")
        cfg.set((section.encode(), sub.encode()), key.encode(), value.encode())
    cfg.write_to_path(str(path))  # through git's config.lock, then renamed


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ the driver


def merge_driver(
    base: str | os.PathLike[str],
    ours: str | os.PathLike[str],
    theirs: str | os.PathLike[str],
    path: str,
    *,
    codecs: Codecs | None = None,
) -> int:
    """git's merge driver (``gitstate merge-driver %O %A %B %P``): merge the three versions of the document
    ``path`` key by key with the same rules as ``sync`` (:func:`gitstate.docdiff.merge3`), and write the result
    to ``ours`` (git's ``%A``), which git then takes as the merged file.

    A clean merge keeps the layout of the files: git's own line merge when it agrees with the key-level result
    (both sides' comments kept), else ours rewritten through the format-preserving writer. On a real conflict
    (both sides changed one key differently) every other key is merged, the conflicting keys are written between
    ``<<<<<<< ours`` / ``=======`` / ``>>>>>>> theirs`` lines with both values readable, and the return value is
    1 (git reports the conflict). A version that does not decode (or a document that is not JSON/YAML) is left
    to git's line merge (``git merge-file``).

    Returns:
        The exit status for git: 0 merged cleanly, 1 conflict.
    """
    codec = (codecs or registry_for(None)).for_doc(path)
    data = [Path(p).read_bytes() for p in (base, ours, theirs)]
    values = _decode_all(codec, data) if codec.structured else None
    if values is None:
        return _line_merge(base, ours, theirs)
    b, o, t = values
    result = docdiff.merge3(b, o, t, prefer="ours")
    ours_bytes = data[1]
    if not result.conflicts:
        merged = _line_merged_if_same(codec, base, ours, theirs, result.value)
        Path(ours).write_bytes(merged if merged is not None else codec.encode_over(result.value, ours_bytes))
        return 0
    mine = codec.encode_over(result.value, ours_bytes).decode("utf-8")
    other = docdiff.merge3(b, o, t, prefer="theirs").value
    yours = codec.encode_over(other, ours_bytes).decode("utf-8")
    Path(ours).write_bytes(_with_markers(mine, yours).encode("utf-8"))
    keys = ", ".join(docdiff.format_key(c.key) or "(document)" for c in result.conflicts)
    logger.info("%s: %d conflict(s): %s", path, len(result.conflicts), keys)
    return 1


def _decode_all(codec: Codec, data: list[bytes]) -> list[Any] | None:
    out: list[Any] = []
    for i, blob in enumerate(data):
        if i == 0 and not blob.strip():
            out.append(docdiff.MISSING)  # added on both sides: git passes an empty base
            continue
        try:
            out.append(codec.decode(blob))
        except DecodeError:
            return None
    return out


def _line_merge(base: str | os.PathLike[str], ours: str | os.PathLike[str], theirs: str | os.PathLike[str]) -> int:
    """git's own line merge into ``ours``: 0 clean, 1 conflict markers left."""
    files = [os.fspath(ours), os.fspath(base), os.fspath(theirs)]
    proc = subprocess.run(
        ["git", "merge-file", "-L", "ours", "-L", "base", "-L", "theirs", *files],
        capture_output=True,
        check=False,
    )
    return 0 if proc.returncode == 0 else 1


def _line_merged_if_same(
    codec: Codec,
    base: str | os.PathLike[str],
    ours: str | os.PathLike[str],
    theirs: str | os.PathLike[str],
    value: Any,
) -> bytes | None:
    """git's line merge of the three files when it is clean and decodes to the key-level result ``value``."""
    proc = subprocess.run(
        ["git", "merge-file", "-p", os.fspath(ours), os.fspath(base), os.fspath(theirs)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    try:
        ok = docdiff.same(codec.decode(proc.stdout), value)
    except DecodeError:
        return None
    return proc.stdout if ok else None


def _with_markers(mine: str, yours: str) -> str:
    """``mine`` with the lines where ``yours`` differs written as git conflict regions."""
    a = mine.splitlines(keepends=True)
    b = yours.splitlines(keepends=True)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out += a[i1:i2]
            continue
        out.append("<" * _MARKER + " ours\n")
        out += _ended(a[i1:i2])
        out.append("=" * _MARKER + "\n")
        out += _ended(b[j1:j2])
        out.append(">" * _MARKER + " theirs\n")
    return "".join(out)


def _ended(lines: list[str]) -> list[str]:
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines


# ------------------------------------------------------------------------------------------------ textconv


def textconv_text(data: bytes, path: str, *, codecs: Codecs | None = None) -> str:
    """A document as one ``key: value`` line per leaf (``servers.0.port: 80``), in document order, so that a
    line diff of two versions (``git diff``, ``git log -p``) is a key-level diff. Comments and layout are not
    shown. A document that is not JSON/YAML, or does not decode, is shown as its text.

    Example:
        >>> print(textconv_text(b"a: 1  # note\\nb:\\n  c: [x, {}]\\n", "s.yaml"), end="")
        a: 1
        b.c.0: "x"
        b.c.1: {}
    """
    codec = (codecs or registry_for(None)).for_doc(path)
    if codec.structured:
        try:
            value = codec.decode(data)
        except DecodeError:
            pass
        else:
            lines: list[str] = []
            _leaves(value, (), lines)
            return "".join(line + "\n" for line in lines)
    return data.decode("utf-8", "replace")


def _leaves(value: Any, key: tuple[Any, ...], out: list[str]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _leaves(v, (*key, k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _leaves(v, (*key, i), out)
    else:
        out.append(f"{docdiff.format_key(key) or '(document)'}: {json.dumps(value, ensure_ascii=False, default=str)}")


def textconv(path: str | os.PathLike[str]) -> str:
    """``gitstate textconv FILE`` for git: :func:`textconv_text` of the file git names (a temporary copy of a
    blob, so the codec is chosen by the file's own suffix)."""
    p = Path(path)
    return textconv_text(p.read_bytes(), p.name)
