"""How ``gitstate log`` gets its lines out: streamed as the walk reaches them, a JSON array item by item, dates
cached by the day, and the progress line while a history made by plain git is indexed.

What belongs here: getting log lines to the terminal, pager or pipe. What does not: reading the history (the
library), the text of a log line (:mod:`gitstate.cli.history`), the graph of ``--graph``
(:mod:`gitstate.cli.graph`, loaded only for it: a plain ``log`` starts without it).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import click

from ._common import Context, colour_enabled, output, pager_command, stdout_is_terminal

__all__ = [
    "BAR_DELAY_S",
    "STREAM_CHUNK",
    "DateCells",
    "indexing_bar",
    "json_array",
    "stderr_is_terminal",
    "stream_output",
]


def stream_output(ctx: Context, lines: Iterable[str]) -> None:
    """Print lines as they come (``gitstate log`` of a long history starts printing at once), in batches that
    grow from 32 lines to 4,096, or after 50 ms, whichever comes first. On a terminal with a pager, the
    pager gets the whole text (see :func:`~gitstate.cli._common.output`).

    Lines are pulled in chunks (no Python step per line for a fast producer) and the clock is read after each:
    a chunk grows to :data:`STREAM_CHUNK` lines while lines come fast and shrinks while they come slowly, so a
    batch is out about 50 ms after its first line even when each line takes milliseconds."""
    if pager_command(os.environ, terminal=stdout_is_terminal(), no_pager=ctx.no_pager) is not None:
        with indexing_bar():
            text = list(lines)
        output(text)
        return
    colour = True if colour_enabled() else None
    source = iter(lines)
    batch: list[str] = []
    extend, clock = batch.extend, time.monotonic
    size, step = 32, 1
    due = clock() + 0.05
    with indexing_bar(active=not stdout_is_terminal()):  # on a terminal the log lines show the progress
        while True:
            start, had = clock(), len(batch)
            want = min(step, size - had)  # a batch ends at its size, as with a look after each line
            extend(islice(source, want))
            if len(batch) - had < want:  # the producer is done
                break
            now = clock()
            step = min(step * 2, STREAM_CHUNK) if now - start < 0.005 else max(step // 2, 1)
            if len(batch) >= size or now > due:
                click.echo("\n".join(batch), color=colour)
                batch.clear()
                size = min(size * 4, 4096)
                due = clock() + 0.05
    if batch:
        click.echo("\n".join(batch), color=colour)


#: The most lines :func:`stream_output` pulls between two looks at the clock.
STREAM_CHUNK = 32


#: Indexing that takes longer than this shows a progress line on stderr (a terminal only).
BAR_DELAY_S = 1.0


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except ValueError:  # closed
        return False


@contextmanager
def indexing_bar(*, active: bool = True) -> Iterator[None]:
    """While a history made by plain git (or pulled) is indexed, a ``\\r`` progress line on stderr: shown
    once indexing has taken :data:`BAR_DELAY_S`, and only when stderr is a terminal."""
    from ..history import indexing_progress

    if not active or not stderr_is_terminal():
        yield
        return
    state = {"start": 0.0, "shown": 0.0, "n": 0, "width": 0}

    def report(n: int) -> None:
        now = time.monotonic()
        state["n"] = n
        if not state["start"]:
            state["start"] = now
        elif now - state["start"] >= BAR_DELAY_S and now - state["shown"] >= 0.1:
            state["shown"] = now
            text = f"Indexing the history: {n:,} commits ({n / (now - state['start']):,.0f}/s)"
            state["width"] = len(text)
            click.echo("\r" + text, nl=False, err=True)

    with indexing_progress(report):
        try:
            yield
        finally:
            if state["shown"]:
                text = f"Indexing the history: {state['n']:,} commits, done."
                click.echo("\r" + text.ljust(int(state["width"])), err=True)


def json_array(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The lines of ``emit_json(list(items))`` (orjson, indented by two), one item at a time."""
    import orjson

    pending: str | None = None
    for item in items:
        text = "  " + orjson.dumps(item, option=orjson.OPT_INDENT_2).decode().replace("\n", "\n  ")
        yield "[" if pending is None else pending + ","
        pending = text
    yield "[]" if pending is None else pending + "\n]"


class DateCells:
    """``human_time`` of commit times older than :data:`AGE_TEXT_LIMIT_S` (``2026-03-11 10:39``), one
    ``strftime`` per day and UTC offset and one format per minute of the day: ``log`` of a long history prints
    100,000 of them."""

    def __init__(self) -> None:
        self.days: dict[tuple[int, int], str] = {}
        self.minutes: dict[int, str] = {}  # filled as met: all 1,440 up front cost a short log ~0.5 ms

    def text(self, t: int, z: int) -> str:
        local = t + z
        day, second = divmod(local, 86400)
        date = self.days.get((day, z))
        if date is None:
            tz = _dt.timezone(_dt.timedelta(seconds=z))
            date = self.days[(day, z)] = _dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d")
        m = second // 60
        hm = self.minutes.get(m)
        if hm is None:
            hm = self.minutes[m] = f" {m // 60:02d}:{m % 60:02d}"
        return date + hm
