"""History reads whose cost follows what they print (issue 14): the index is read from its newest end."""

from __future__ import annotations

from pathlib import Path

from helpers import make_store

from gitstate import history_index


def test_log_n_reads_only_the_newest_end_of_the_index(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        for i in range(400):
            s.set("state.json", "counter", i)
            s.flush()
    size = (path / ".git" / "gitstate" / history_index.INDEX_FILE).stat().st_size
    history_index._INDEXES.clear()  # a new process: nothing in memory
    with make_store(path) as s:
        assert len(s.log(limit=5)) == 5
        idx = history_index.index_for(s._repo)
        assert idx.low > 0 and idx.reads == 1, (idx.low, idx.reads, size)  # one block of the newest lines
        assert len(idx.entries) < 400
        assert len(s.log()) == 400  # the whole log still reads everything
        assert idx.low == 0
