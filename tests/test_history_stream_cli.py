"""``gitstate log`` streams through :meth:`StoreDirectory.iter_log_entries` (issue 14): lines are out before the
older part of the history index is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastimport import build_history
from helpers import invoke

from gitstate import history_index, history_stream

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def test_log_prints_its_first_lines_although_older_history_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's ``log`` prints lines while it walks: here the walk fails after its first block, and what it
    had reached is already out."""
    head = build_history(tmp_path / "s", 2000, start=START, step_s=60)
    assert invoke(["-C", str(tmp_path / "s"), "log", "--oneline"]).exit_code == 0  # index it
    history_index._INDEXES.clear()  # a new process: nothing in memory
    real = history_stream.read_block_before
    reads: list[int] = []

    def first_block_only(*args: Any) -> Any:
        if reads:
            raise OSError("older part of the index unreadable")
        reads.append(1)
        return real(*args)

    monkeypatch.setattr(history_stream, "read_block_before", first_block_only)
    result = invoke(["-C", str(tmp_path / "s"), "--no-pager", "log", "--oneline"])
    assert result.exit_code != 0
    printed = result.stdout.splitlines()
    assert printed and printed[0].startswith(head[:8]), printed[:3]
    assert 32 <= len(printed) < 2000
