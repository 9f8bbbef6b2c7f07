"""History reads whose cost follows what they print (issue 14): the index is read from its newest end."""

from __future__ import annotations

from pathlib import Path

from helpers import git, make_store

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


def test_the_index_names_the_documents_each_commit_changed_as_git_does(tmp_path: Path) -> None:
    """A flush hands the history index the documents it wrote (no tree diff): for every kind of commit the
    store makes, the index's changed paths are git's own."""
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("a.json", "n", 1)
        s.set("dir/b.json", None, {"x": [1, 2]})
        s.set("dir/deep/c.yaml", "k", "v")
        s.flush()
        s.set("a.json", "n", 2)
        s.set("a.json", "n", 1)  # back to the head's value: not part of the next commit
        s.set("dir/b.json", "x", [1, 2, 3])
        s.flush()
        s.delete("dir/deep/c.yaml")
        s.set("notes.txt", None, "hello\n")
        s.flush()
        s.set("tmp.json", None, {"t": 1})
        s.delete("tmp.json")  # made and removed between two flushes: never committed
        s.set("a.json", "n", 3)
        s.flush()
        with s.transaction("two at once"):
            s.set("a.json", "n", 4)
            s.set("dir/b.json", "x", [])
        s.undo()
        s.restore("HEAD~3")
        s.set("dir/deep/c.yaml", "k", "again")
        s.flush()
        repo = s._repo
    history_index._INDEXES.clear()
    idx = history_index.index_for(repo)
    idx.refresh()
    idx.load_all()
    commits = git(path, "log", "--format=%H").split()
    assert len(commits) == 8
    for c in commits:
        expected = git(path, "show", "--format=", "--name-only", "--no-renames", c).split()
        assert idx.entries[c]["d"] == sorted(expected), (c, idx.entries[c]["d"], expected)
