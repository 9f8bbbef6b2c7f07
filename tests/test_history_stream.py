"""History reads at scale (issue 14): a history made by plain git indexed with its newest commits at the file's
end, ``log`` streamed, the progress line while indexing, and ahead/behind answered from the index."""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastimport import build_history
from helpers import git, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstate import history, history_index, history_stream
from gitstate.cli import stream
from gitstate.cli._common import Context
from gitstate.repo import Repository

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def _plain_git_history(path: Path, count: int) -> str:
    return build_history(path, count, start=START, step_s=60)


def _fresh_process() -> None:
    """Forget every index image held in memory, as a new process starts."""
    history_index._INDEXES.clear()


def _index_reads(repo: Repository) -> history_index._IndexFile:
    return history_index.index_for(repo)


@pytest.mark.parametrize("first", ["log -n 1", "whole log"])
def test_a_history_made_by_git_is_indexed_with_its_newest_commits_last(tmp_path: Path, first: str) -> None:
    head = _plain_git_history(tmp_path / "s", 600)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        if first == "log -n 1":  # the head is indexed first, the rest by a later walk
            assert [e["c"] for e in history.log_entries(repo, head, limit=1)] == [head]
        assert len(history.log_entries(repo, head)) == 600
        lines = (tmp_path / "s" / ".git" / "gitstate" / history_index.INDEX_FILE).read_bytes().splitlines()
        assert orjson.loads(lines[-1])["c"] == head
        _fresh_process()
        newest = history.log_entries(repo, head, limit=20)
        idx = _index_reads(repo)
        assert idx.reads == 1 and idx.low > 0, (idx.reads, idx.low)  # one block from the end, not the file
        assert [e["c"] for e in newest] == git(tmp_path / "s", "log", "-n", "20", "--format=%H").split()
    finally:
        repo.close()


def test_iter_log_entries_yields_before_the_history_is_read(tmp_path: Path) -> None:
    head = _plain_git_history(tmp_path / "s", 2000)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # index it
        _fresh_process()
        stream = history.iter_log_entries(repo, head)
        assert next(stream)["c"] == head
        idx = _index_reads(repo)
        assert idx.low > 0 and len(idx.entries) < 2000  # the first entry came before the older lines were read
        rest = list(stream)
        assert len(rest) == 1999
        assert [e["c"] for e in rest[:5]] == git(tmp_path / "s", "log", "-n", "6", "--format=%H").split()[1:]
    finally:
        repo.close()


def test_a_short_whole_log_reads_the_index_in_few_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's first block is big enough that a short history takes one or two reads (each read is an open,
    a parse and a merge: four of them made a 1,000-commit ``log`` slower than the list it replaced), and still
    smaller than a long history's index, whose first lines come out before the rest is read."""
    head = _plain_git_history(tmp_path / "s", 1000)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # index it
        size = (tmp_path / "s" / ".git" / "gitstate" / history_index.INDEX_FILE).stat().st_size
        assert history_stream.STREAM_FIRST_BLOCK < size <= 2 * history_stream.STREAM_FIRST_BLOCK, size
        _fresh_process()
        reads: list[int] = []
        real = history_stream.read_block_before

        def read(path: Path, low: int, block: int, max_block: int) -> tuple[int, int, list[Any]]:
            reads.append(block)
            return real(path, low, block, max_block)

        monkeypatch.setattr(history_stream, "read_block_before", read)
        stream = history.iter_log_entries(repo, head)
        assert next(stream)["c"] == head
        assert _index_reads(repo).low > 0 and len(reads) <= 1  # the first entry before the rest of the file
        ids = [head, *(e["c"] for e in stream)]
        assert ids == git(tmp_path / "s", "log", "--format=%H").split()
        assert len(reads) <= 2, reads
    finally:
        repo.close()


def test_a_whole_log_holds_one_block_of_the_index_not_every_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory of a whole ``log`` follows the block it reads, not the history: the walk's buffer never holds more
    than a block's entries, the shared image keeps none of them, and the output is git's order."""
    head = _plain_git_history(tmp_path / "s", 2000)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # index it
        _fresh_process()
        monkeypatch.setattr(history_stream, "STREAM_BLOCK", 8 * 1024)  # ~30 lines a block
        most: list[int] = []
        real_add = history_stream.Backwards._add

        def add(self: history_stream.Backwards, items: list[Any]) -> None:
            real_add(self, items)
            most.append(len(self.pending))

        monkeypatch.setattr(history_stream.Backwards, "_add", add)
        ids = [e["c"] for e in history.iter_log_entries(repo, head)]
        assert ids == git(tmp_path / "s", "log", "--format=%H").split()
        assert len(most) > 20 and max(most) <= 80, (len(most), max(most))  # blocks of ~30 lines, 2,000 commits
        assert len(_index_reads(repo).entries) < 200  # the newest end only (what HEAD's lookup read)
        keyed = [e["c"] for e in history.iter_log_entries(repo, head, keys=True)]  # log --json streams too
        assert keyed == ids and max(most) <= 80
    finally:
        repo.close()


def test_a_key_line_read_before_its_commits_metadata_joins_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Key lines appended after their commits' metadata (as a later ``log --key`` appends them) are read blocks
    before that metadata by a walk from the file's end: the walk keeps them until it reaches the commit, and the
    entry it yields carries those keys instead of computing them again."""
    head = _plain_git_history(tmp_path / "s", 600)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # metadata lines only, newest last
        ids = git(tmp_path / "s", "log", "--format=%H").split()
        chosen = set(ids[:450])  # from the head: the walk meets them while their metadata is still unread
        marker = '[["marker.json",["marker"],"change",0,1]]'
        with (tmp_path / "s" / ".git" / "gitstate" / history_index.INDEX_FILE).open("ab") as f:
            f.write(b"".join(orjson.dumps({"c": cid, "k": marker}) + b"\n" for cid in sorted(chosen)))
        _fresh_process()
        monkeypatch.setattr(history_stream, "STREAM_BLOCK", 8 * 1024)  # ~30 lines a block: many blocks
        computed: list[str] = []
        real_trees = history_index.History._trees

        def trees(self: history_index.History, e: dict[str, Any]) -> tuple[str | None, str]:
            computed.append(e["c"])
            return real_trees(self, e)

        monkeypatch.setattr(history_index.History, "_trees", trees)
        got = {e["c"]: e.get("k") for e in history.iter_log_entries(repo, head, keys=True)}
        assert list(got) == ids
        assert {cid for cid, k in got.items() if k == marker} == chosen
        assert len(computed) == len(ids) - len(chosen) and not chosen & set(computed)
    finally:
        repo.close()


def test_stream_output_prints_batches_as_they_come(capsys: pytest.CaptureFixture[str]) -> None:
    def lines() -> Iterator[str]:
        for i in range(40):
            yield f"line {i}"
        raise RuntimeError("the walk failed")

    with pytest.raises(RuntimeError):
        stream.stream_output(Context(None, no_pager=True), lines())
    assert capsys.readouterr().out.splitlines() == [f"line {i}" for i in range(32)]  # the first batch is out


def test_stream_output_prints_a_slow_producers_first_lines_after_50_ms(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines that take 10 ms each (a history being indexed): the first batch is out once 50 ms have passed, not
    after its 32 lines, and each later batch too; a fast producer's lines go in batches of 32, 128, ..."""
    now = [0.0]
    monkeypatch.setattr(stream.time, "monotonic", lambda: now[0])
    out: list[str] = []
    printed: dict[int, int] = {}  # line number -> how many lines were out when the producer made it

    def lines() -> Iterator[str]:
        for i in range(40):
            out.extend(capsys.readouterr().out.splitlines())
            printed[i] = len(out)
            now[0] += 0.01
            yield f"line {i}"

    stream.stream_output(Context(None, no_pager=True), lines())
    out.extend(capsys.readouterr().out.splitlines())
    assert out == [f"line {i}" for i in range(40)]
    # Each line is out within 50 ms and one line of its batch's first line (5 lines of 10 ms, plus one).
    assert all(printed[i] >= i - 6 for i in range(40)), printed
    fast_batches: list[int] = []
    monkeypatch.setattr(stream.click, "echo", lambda text, **kw: fast_batches.append(len(text.splitlines())))
    stream.stream_output(Context(None, no_pager=True), (f"line {i}" for i in range(1000)))
    assert fast_batches == [32, 128, 512, 328]


_ids = st.sampled_from("abcd")
_line = st.one_of(
    st.fixed_dictionaries(
        {"c": _ids, "t": st.integers(0, 9)}, optional={"k": st.integers(0, 9), "m": st.text(max_size=3)}
    ),
    st.fixed_dictionaries({"c": _ids, "k": st.integers(0, 9)}),  # a key line without metadata
    st.sampled_from([[1, 2], "x", {"t": 1}, {"c": 7, "t": 1}, {"c": [1], "t": 1}]),  # what a damaged index may hold
)


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.lists(_line, max_size=30), st.permutations("abcd"), st.integers(8, 400), st.booleans())
def test_the_buffer_adds_a_whole_block_as_it_adds_line_by_line(
    tmp_path: Path, lines: list[Any], order: list[str], block: int, keys: bool
) -> None:
    """Backwards._add_whole (a block in C calls) is a shortcut of the line-by-line merge: for any index lines,
    block sizes and walk order, the walk gets the same entries with it as without it."""
    path = tmp_path / "index.jsonl"
    path.write_bytes(b"".join(orjson.dumps(ln) + b"\n" for ln in lines))

    def walk(whole: bool) -> list[Any]:
        asked: set[str] = set()
        back = history_stream.Backwards(path, path.stat().st_size, keys=keys, asked=asked)
        back.block = block
        if not whole:
            back._add_whole = lambda items: False  # type: ignore[method-assign]
        got: list[Any] = []
        for cid in order:
            asked.add(cid)
            got.append(back.take(cid) or back.partial(cid))
        return [got, back.pending]  # and what the buffer still holds (nothing of a commit already asked)

    assert walk(True) == walk(False)


_raw_line = st.one_of(
    st.builds(lambda c, n: orjson.dumps({"c": c, "t": n}), st.text(max_size=40), st.integers(0, 9)),
    st.sampled_from([b"", b"{damaged", b"[1,", b"7"]),  # an empty line (a guard after a tear), damaged lines
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_raw_line, max_size=25), st.integers(1, 120), st.booleans())
def test_blocks_read_backwards_hold_every_line_once(lines: list[bytes], block: int, torn: bool) -> None:
    """read_block_before from the file's end down to 0, for any lines and block size: the blocks hold every
    line that parses, once and in order, however the blocks fall (a line longer than a block included)."""
    import tempfile

    data = b"".join(ln + b"\n" for ln in lines) + (b'{"c": "torn' if torn else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.jsonl"
        path.write_bytes(data)
        low = len(data) - (len(b'{"c": "torn') if torn else 0)  # a walk starts at the end of a whole line
        blocks: list[list[Any]] = []
        while low > 0:
            new_low, block, items = history_stream.read_block_before(path, low, block, 64)
            assert new_low < low
            low = new_low
            blocks.append(items)
    got = [it for items in reversed(blocks) for it in items]
    assert got == history_stream.parse_lines(b"".join(ln + b"\n" for ln in lines), path)


def test_log_and_log_json_stream_the_same_text_as_before(tmp_path: Path) -> None:
    _plain_git_history(tmp_path / "s", 150)
    path = str(tmp_path / "s")
    ids = git(tmp_path / "s", "log", "--format=%H").split()
    oneline = invoke(["-C", path, "log", "--oneline"]).stdout.splitlines()
    assert [ln.split()[0] for ln in oneline] == [c[:8] for c in ids]
    as_json = invoke(["-C", path, "log", "--json"]).stdout
    items: list[dict[str, Any]] = orjson.loads(as_json)
    assert [it["id"] for it in items] == ids
    assert as_json == orjson.dumps(items, option=orjson.OPT_INDENT_2).decode() + "\n"  # emit_json's layout
    assert orjson.loads(invoke(["-C", path, "log", "--json", "-n", "1"]).stdout)[0]["id"] == ids[0]
    empty = tmp_path / "e"
    empty.mkdir()
    git(empty, "init", "-q")
    assert invoke(["-C", str(empty), "log", "--json"]).stdout == "[]\n"


def test_indexing_shows_a_progress_line_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plain_git_history(tmp_path / "s", 300)
    monkeypatch.setattr(stream, "BAR_DELAY_S", 0.0)
    monkeypatch.setattr(stream, "stderr_is_terminal", lambda: True)
    result = invoke(["-C", str(tmp_path / "s"), "log"])
    assert result.exit_code == 0
    assert "\rIndexing the history: " in result.stderr and result.stderr.rstrip(" \n").endswith("300 commits, done.")
    assert len(result.stdout.splitlines()) == 300
    # Indexed now: nothing to report the next time.
    assert invoke(["-C", str(tmp_path / "s"), "log"]).stderr == ""


def test_indexing_is_silent_when_stderr_is_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plain_git_history(tmp_path / "s", 300)
    monkeypatch.setattr(stream, "BAR_DELAY_S", 0.0)
    result = invoke(["-C", str(tmp_path / "s"), "log", "--json"])
    assert result.exit_code == 0 and result.stderr == ""


def test_indexing_progress_counts_the_commits_a_read_indexes(tmp_path: Path) -> None:
    head = _plain_git_history(tmp_path / "s", 50)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        seen: list[int] = []
        with history.indexing_progress(seen.append):
            history.log_entries(repo, head, limit=10)
            history.log_entries(repo, head)
        assert seen == [*range(1, 11), *range(1, 41)]  # the second read indexed only the 40 it did not know
    finally:
        repo.close()


def test_ahead_behind_reads_the_graph_from_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    head = _plain_git_history(path, 200)
    git(path, "checkout", "-q", "-b", "other", "HEAD~5")
    for i in range(3):
        (path / "other.json").write_text(f'{{"n": {i}}}\n')
        git(path, "add", "other.json")
        git(path, "commit", "-q", "-m", f"other {i}")
    other = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "main")
    repo = Repository.open(path, create=False)
    try:
        history.log_entries(repo, head)
        history.log_entries(repo, other)  # both sides indexed
        _fresh_process()
        reads: list[str] = []
        real = Repository.commit_info

        def counting(self: Repository, cid: str) -> Any:
            reads.append(cid)
            return real(self, cid)

        monkeypatch.setattr(Repository, "commit_info", counting)
        assert history.ahead_behind(repo, head, other) == (5, 3)
        assert history.ahead_behind(repo, other, head) == (3, 5)
        assert reads == []  # every commit the paint-down met was in the index's newest block
        assert history.ahead_behind(repo, head, head) == (0, 0)
        assert history.ahead_behind(repo, head, None) == (200, 0)
    finally:
        repo.close()


@pytest.mark.parametrize("how", ["cli", "commits"])
def test_keys_of_a_whole_git_history_leave_the_head_at_the_file_end(tmp_path: Path, how: str) -> None:
    """`log --json` of a history made by plain git computes every commit's keys: those lines are appended in
    batches, oldest first, with the branch head's entry after them, so the next `log -n 20` still reads one
    block from the end (they were appended newest first, one per commit, and `log -n 20` then read the file)."""
    head = _plain_git_history(tmp_path / "s", 1500)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # metadata indexed
        _fresh_process()
        if how == "cli":
            out = invoke(["-C", str(tmp_path / "s"), "--no-pager", "log", "--json"])
            assert out.exit_code == 0, out.output
            items = orjson.loads(out.output)
        else:
            items = [
                history.commit_from_entry(e, repo).to_dict() for e in history.iter_log_entries(repo, head, keys=True)
            ]
        assert len(items) == 1500 and items[0]["id"] == head and items[-1]["keys"]
        lines = (tmp_path / "s" / ".git" / "gitstate" / history_index.INDEX_FILE).read_bytes().splitlines()
        last = orjson.loads(lines[-1])
        assert last["c"] == head and "t" in last
        _fresh_process()
        newest = [e["c"] for e in history.log_entries(repo, head, limit=20)]
        assert newest == git(tmp_path / "s", "log", "-n", "20", "--format=%H").split()
        idx = _index_reads(repo)
        assert idx.reads == 1, idx.reads
        _fresh_process()  # and the keys are there: no commit is diffed again
        assert history.commit_from_entry(history.log_entries(repo, head)[-1], repo).keys
    finally:
        repo.close()


def test_keys_computed_by_a_whole_log_json_end_the_index_newest_last_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`log --json` computes the keys of a history made by plain git in batches; they go to a spool and are
    appended last batch first, as whole entries, so afterwards a key query reads one block from the end and a
    second `log --json` holds about one block of entries (appended batch by batch while walking, the newest
    commits' keys ended up furthest from the end: `log --key K -n 20` at 100k read the whole file, 130 MB)."""
    head = _plain_git_history(tmp_path / "s", 2500)
    repo = Repository.open(tmp_path / "s", create=False)
    try:
        history.log_entries(repo, head)  # metadata indexed
        shutil.copytree(tmp_path / "s", tmp_path / "copy", symlinks=True)
        other = Repository.open(tmp_path / "copy", create=False)  # the same query, keys diffed as it goes
        try:
            expected = [e["c"] for e in history.log_entries(other, head, doc="state.json", key=("mode",), limit=20)]
        finally:
            other.close()
        _fresh_process()
        monkeypatch.setattr(history, "_KEYS_BATCH", 300)  # several batches
        first = [history.commit_from_entry(e, repo).to_dict() for e in history.iter_log_entries(repo, head, keys=True)]
        assert len(first) == 2500 and all("keys" in c for c in first)
        _fresh_process()
        idle = [e["c"] for e in history.log_entries(repo, head, doc="state.json", key=("mode",), limit=20)]
        assert idle == expected and len(idle) == 20
        idx = _index_reads(repo)  # ~70 newest commits hold 20 changes of mode: the last block or two, not the file
        assert idx.reads <= 2 and idx.low > 0, (idx.reads, idx.low)
        _fresh_process()
        most: list[int] = []
        real_add = history_stream.Backwards._add

        def add(self: history_stream.Backwards, items: list[Any]) -> None:
            real_add(self, items)
            most.append(len(self.pending))

        monkeypatch.setattr(history_stream, "STREAM_BLOCK", 16 * 1024)
        monkeypatch.setattr(history_stream.Backwards, "_add", add)
        again = [history.commit_from_entry(e, repo).to_dict() for e in history.iter_log_entries(repo, head, keys=True)]
        assert again == first
        assert max(most) <= 120, max(most)  # ~one block of lines, not the 2,500 commits' keys
    finally:
        repo.close()


def _index_lines(path: Path) -> list[dict[str, Any]]:
    data = (path / ".git" / "gitstate" / history_index.INDEX_FILE).read_bytes()
    return [orjson.loads(ln) for ln in data.splitlines() if ln]


def test_keys_computed_for_a_whole_git_history_replace_the_lines_they_complete(tmp_path: Path) -> None:
    """`log` then `log --json` of a history made by plain git: the whole entries with keys replace the
    metadata lines the first walk wrote (appending them doubled the file: 33 to 65 MB at 100,000 commits), and
    lines of commits the walk did not meet (another branch) stay."""
    path = tmp_path / "s"
    head = _plain_git_history(path, 1200)
    git(path, "checkout", "-q", "-b", "side", "HEAD~600")
    git(path, "commit", "-q", "--allow-empty", "-m", "on the side")
    side = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "-")
    repo = Repository.open(path, create=False)
    try:
        history.log_entries(repo, side, limit=3)  # the side commit and two of main's, metadata only
        history.log_entries(repo, head)  # main's metadata
        before = _index_lines(path)
        assert len(before) >= 1201 and not any("k" in e for e in before if e["c"] != side)
        _fresh_process()
        out = invoke(["-C", str(path), "--no-pager", "log", "--json"])
        assert out.exit_code == 0, out.output
        assert len(orjson.loads(out.output)) == 1200
        after = _index_lines(path)
        ids = git(path, "log", "--format=%H").split()
        assert {e["c"] for e in after} == {*ids, side}
        assert all("k" in e and "t" in e for e in after if e["c"] != side)
        assert [e for e in after if e["c"] == side] == [e for e in before if e["c"] == side]  # kept as it was
        assert len(after) <= 1201 + history_index.FRONT + 1, len(after)  # one line a commit, plus the tail
        assert after[-1]["c"] == head
        assert not [p for p in (path / ".git" / "gitstate").iterdir() if ".gitstate-tmp-" in p.name]
        _fresh_process()
        assert [e["c"] for e in history.iter_log_entries(repo, head)] == ids
        assert invoke(["-C", str(path), "log", "-n", "1", "--json"]).exit_code == 0
    finally:
        repo.close()


def test_a_rewrite_keeps_the_lines_another_process_appends_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.jsonl"
    old = [{"c": f"{i:040x}", "t": i} for i in range(5)]
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in old))
    late = orjson.dumps({"c": "f" * 40, "t": 9}) + b"\n"
    real_copy = history_stream._copy_lines_without

    def copy(src: Any, out: Any, drop: Any) -> int:
        done = real_copy(src, out, drop)
        with open(path, "ab") as f:  # another store records a commit now
            f.write(late)
        return done

    monkeypatch.setattr(history_stream, "_copy_lines_without", copy)
    tail = [orjson.dumps({"c": f"{1:040x}", "t": 1, "k": "[]"}) + b"\n"]
    assert history_stream.rewrite_without(path, {f"{1:040x}"}, tail)
    got = [orjson.loads(ln) for ln in path.read_bytes().splitlines()]
    assert [e["c"][-1] for e in got] == ["0", "2", "3", "4", "1", "f"]  # the kept lines, ours, then theirs
    assert got[4]["k"] == "[]"


def test_a_rewrite_gives_way_when_the_file_is_replaced_or_cannot_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process replaced the index meanwhile, or the directory is read-only: the file is left as it
    is (False), and Spool.replay appends its batches instead."""
    path = tmp_path / "index.jsonl"
    path.write_bytes(orjson.dumps({"c": "a" * 40, "t": 1}) + b"\n")
    real_copy = history_stream._copy_lines_without

    def copy(src: Any, out: Any, drop: Any) -> int:
        done = real_copy(src, out, drop)
        replacement = tmp_path / "other"
        replacement.write_bytes(orjson.dumps({"c": "b" * 40, "t": 2}) + b"\n")
        replacement.replace(path)
        return done

    monkeypatch.setattr(history_stream, "_copy_lines_without", copy)
    assert not history_stream.rewrite_without(path, {"a" * 40}, [b""])
    assert orjson.loads(path.read_bytes())["c"] == "b" * 40
    monkeypatch.setattr(history_stream, "_copy_lines_without", real_copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl"]  # no temporary file left

    class Index:
        def __init__(self) -> None:
            self.path = path
            self.appended: list[bytes] = []

        def append_lines(self, data: bytes) -> None:
            self.appended.append(data)

        def rewrite_without(self, drop: Any, tail: Any) -> bool:
            return history_stream.rewrite_without(self.path, drop, tail)

    def full(src: Any, out: Any, drop: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(history_stream, "_copy_lines_without", full)
    spool = history_stream.Spool(tmp_path / "spool")
    spool.add([{"c": f"{i:040x}", "t": i, "k": "[]"} for i in range(history_stream.REWRITE_MIN)])
    idx = Index()
    assert spool.replay(idx)
    assert len(b"".join(idx.appended).splitlines()) == history_stream.REWRITE_MIN  # appended instead
    assert orjson.loads(path.read_bytes())["c"] == "b" * 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl", "spool"]  # no temporary file left


def test_the_first_log_of_a_git_history_indexes_it_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first whole `log` of a history made by plain git indexes every commit: the entries leave memory in
    batches through the spool (they stayed in the session and in the shared image, 170 MB at 100,000 commits),
    and the file still ends with the newest commits. With no index file yet, there is nothing to rewrite, and
    nothing to warn about."""
    path = tmp_path / "s"
    head = _plain_git_history(path, 2500)
    index_file = path / ".git" / "gitstate" / history_index.INDEX_FILE
    index_file.unlink(missing_ok=True)
    monkeypatch.setattr(history_index, "SAVE_BATCH", 300)
    most = [0]
    real_save = history_index.History.save

    def save(self: history_index.History) -> None:
        most[0] = max(most[0], len(self.new))
        real_save(self)

    monkeypatch.setattr(history_index.History, "save", save)
    repo = Repository.open(path, create=False)
    try:
        ids = [e["c"] for e in history.iter_log_entries(repo, head)]
        assert ids == git(path, "log", "--format=%H").split()
        assert most[0] <= 300, most[0]
        assert len(_index_reads(repo).entries) < 300  # the shared image did not take the walk's entries
        lines = _index_lines(path)
        assert {e["c"] for e in lines} == set(ids) and len(lines) <= 2500 + history_index.FRONT + 1
        assert lines[-1]["c"] == head
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
        _fresh_process()
        assert [e["c"] for e in history.log_entries(repo, head, limit=20)] == ids[:20]
        assert _index_reads(repo).reads == 1  # the newest commits are at the end: one block
        _fresh_process()
        assert [e["c"] for e in history.iter_log_entries(repo, head)] == ids
    finally:
        repo.close()


def test_only_entries_with_keys_make_a_spool_rewrite_the_index(tmp_path: Path) -> None:
    """A spool of metadata alone (the first `log` of a git history) supersedes nothing: it is appended, and a
    key line already in the file for one of its commits stays (a rewrite would have dropped those keys)."""
    path = tmp_path / "index.jsonl"
    key_line = orjson.dumps({"c": f"{1:040x}", "k": "[]"}) + b"\n"
    path.write_bytes(key_line)
    calls: list[str] = []

    class Index:
        def __init__(self) -> None:
            self.path = path

        def append_lines(self, data: bytes) -> None:
            calls.append("append")
            with open(path, "ab") as f:
                f.write(data)

        def rewrite_without(self, drop: Any, tail: Any) -> bool:
            calls.append("rewrite")
            return history_stream.rewrite_without(path, drop, tail)

    spool = history_stream.Spool(tmp_path / "spool")
    spool.add([{"c": f"{i:040x}", "t": i} for i in range(history_stream.REWRITE_MIN)])
    assert spool.replay(Index())
    assert calls == ["append"] and path.read_bytes().startswith(key_line)
