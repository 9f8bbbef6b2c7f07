"""Build long store histories with explicit commit times through ``git fast-import`` (seconds for 100k commits).

Used by the retention tests and by the benchmarks (``benchmarks/`` puts ``tests/`` on ``sys.path``). Every
commit changes ``state.json`` the way a program's flush would (a counter and the time) and carries gitstate's
actor trailer, so the result reads like a history gitstate made itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from helpers import GIT_ENV, git

__all__ = ["Doc", "build_history", "default_docs"]

#: A function of the commit number and its time that returns the documents it writes (path -> JSON value).
Doc = Callable[[int, int], dict[str, object]]


def default_docs(i: int, when: int) -> dict[str, object]:
    """The program's state at commit ``i``: a counter, a tick time, and a task document every 50 commits."""
    docs: dict[str, object] = {"state.json": {"counter": i, "updated": when, "mode": "busy" if i % 7 else "idle"}}
    if i % 50 == 0:
        docs[f"tasks/t{i // 50 % 20:02d}.json"] = {"id": i // 50, "done": i % 100 == 0}
    return docs


def _stream(count: int, start: int, step_s: int, docs: Doc, branch: str, tz: str) -> Iterator[bytes]:
    for i in range(count):
        when = start + i * step_s
        files = docs(i, when)
        msg = f"state.json: counter {i - 1} -> {i}\n\nGitstate-Actor: library\n".encode()
        parts = [
            f"commit refs/heads/{branch}\nmark :{i + 1}\n".encode(),
            f"author gitstate <gitstate@localhost> {when} {tz}\n".encode(),
            f"committer gitstate <gitstate@localhost> {when} {tz}\n".encode(),
            b"data %d\n%s\n" % (len(msg), msg),
        ]
        for path, value in files.items():
            data = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            parts.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
        yield b"".join(parts)


def build_history(
    path: str | os.PathLike[str],
    count: int,
    *,
    start: int,
    step_s: int,
    docs: Doc = default_docs,
    branch: str = "main",
    tz: str = "+0000",
) -> str:
    """Make ``path`` a git repository whose branch has ``count`` commits, the first at ``start`` (epoch seconds)
    and then one every ``step_s`` seconds; check out the last one. Returns its id."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", branch)
    proc = subprocess.Popen(
        ["git", "-C", os.fspath(root), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
        env=GIT_ENV,
    )
    assert proc.stdin is not None
    for chunk in _stream(count, start, step_s, docs, branch, tz):
        proc.stdin.write(chunk)
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    assert proc.wait(timeout=600) == 0, "git fast-import failed"
    git(root, "checkout", "-q", "-f", branch)
    return git(root, "rev-parse", "HEAD").strip()
