"""The commit graph of ``gitstate log --graph``: git's ``*``/``|``/``\\``/``/`` columns drawn beside each commit.

What belongs here: turning commits (id and parents, newest first) into the text columns drawn before each log
line. What does not: reading the history (the library), the text of a log line (:mod:`gitstate.cli.history`),
getting the lines out (:mod:`gitstate.cli.stream`). Drawn here rather than by ``git log --graph``: the CLI reads
history from gitstate's index and needs no git binary. Loaded only for ``--graph``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["GraphRow", "graph_rows"]


@dataclass(frozen=True)
class GraphRow:
    """The drawing for one commit.

    Attributes:
        commit: the prefix of the commit's own line (``* | ``).
        fork: whole lines drawn right after the commit's line (``|\\`` after a merge).
        detail: the prefix of lines that belong to the commit (``--stat``, ``--name-only``).
        join: whole lines drawn after the commit's details (``|/`` where two lines of history join).
    """

    commit: str
    fork: tuple[str, ...]
    detail: str
    join: tuple[str, ...]


def graph_rows(commits: Iterable[tuple[str, list[str]]]) -> Iterator[GraphRow]:
    """One :class:`GraphRow` per ``(id, parents)``, in the order given (newest first, parents after children).

    Example:
        >>> [r.commit for r in graph_rows([("m", ["a", "b"]), ("b", ["c"]), ("a", ["c"]), ("c", [])])]
        ['*   ', '| * ', '* | ', '* ']
    """
    columns: list[str] = []  # the commit each column of the drawing waits for
    for cid, parents in commits:
        if cid not in columns:
            columns.append(cid)
        col = columns.index(cid)
        cells = ["*" if i == col else "|" for i in range(len(columns))]
        merge = len(parents) > 1
        commit = " ".join(cells) + ("   " if merge and col == len(columns) - 1 else " ")
        new = list(columns)
        fork: list[str] = []
        join: list[str] = []
        if merge:
            fork.append("| " * col + "|\\" + " \\" * (len(columns) - col - 1))
        if parents:
            new[col] = parents[0]
            for p in reversed(parents[1:]):
                if p not in new:
                    new.insert(col + 1, p)
        else:
            new.pop(col)
        detail = ("| " * len(new)) if new else "  "
        for i in range(len(new) - 1, 0, -1):  # two lines of history now wait for one commit: they join
            if new[i] in new[:i]:
                join.append("| " * (i - 1) + "|/" + " /" * (len(new) - i - 1))
                del new[i]
        columns = new
        yield GraphRow(commit, tuple(fork), detail, tuple(join))
