"""History: log (and its key index), diff, point-in-time reads, restore, undo, snapshots, revisions."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import GIT_ENV, PYTHON, fsck, git, git_commit_at, make_store, wait_until

import gitstate
from gitstate import docdiff, history, history_index
from gitstate.errors import GitStateError, KeyNotFound, RepositoryError, RevisionNotFound
from gitstate.keys import MISSING_KEY, get_in, parse_key
from gitstate.repo import Repository

ABSENT = object()


def _value(state: dict[str, Any], doc: str, key: str | None) -> Any:
    if doc not in state:
        return ABSENT
    if key is None:
        return state[doc]
    v = get_in(state[doc], parse_key(key))
    return ABSENT if v is MISSING_KEY else v


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return docdiff.same(a, b)


def _snapshot_state(store: gitstate.Store) -> dict[str, Any]:
    return {d: store.get(d) for d in store.docs()}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = make_store(tmp_path / "store")
    yield s
    s.close()


# ===================================================================== log
def test_log_newest_first_with_actor_docs_and_keys(store: gitstate.Store) -> None:
    store.set("state.json", "services", {"slack": False, "mail": True})
    c1 = store.flush()
    store.set("state.json", "services.slack", True)
    c2 = store.flush()
    store.set("notes.md", None, "hello\n")
    c3 = store.flush("write notes")
    commits = store.log()
    assert [c.id for c in commits] == [c3, c2, c1]
    assert all(isinstance(c, gitstate.Commit) for c in commits)
    assert [c.actor for c in commits] == ["library"] * 3
    assert commits[0].docs == ["notes.md"] and commits[0].subject == "write notes"
    assert commits[1].subject == "state.json: services.slack false -> true"
    assert commits[1].keys == (("state.json", ("services", "slack")),)
    assert commits[1].time.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - commits[1].time).total_seconds()) < 60
    assert commits[1].author.startswith("gitstate <")
    assert commits[1].parents == (c1,)
    assert [(c.key, c.old, c.new) for c in commits[1].changes()] == [(("services", "slack"), False, True)]
    assert [c.id for c in store.log(limit=2)] == [c3, c2]
    assert [c.id for c in store.log(doc="state.json")] == [c2, c1]
    # JSON-friendly form
    json.dumps(commits[0].to_dict())


def test_log_matches_git_log(store: gitstate.Store) -> None:
    for i in range(15):
        store.set(f"d{i % 3}.json", "n", i)
        store.flush()
    ours = [c.id for c in store.log()]
    theirs = git(store.path, "log", "--format=%H").split()
    assert ours == theirs


def _random_step(store: gitstate.Store, rng: random.Random, names: list[str]) -> None:
    """One random write (or none, when the chosen one has nothing to act on)."""
    op = rng.random()
    doc = rng.choice(["state.json", "state.json", "tasks/t1.yaml"])
    if op < 0.45:
        name = rng.choice(names)
        store.set(doc, ("services", name), rng.choice([True, False, 1, "x", None, {"deep": rng.randint(0, 2)}]))
    elif op < 0.55:
        if store.exists(doc, "services"):
            keys = list(store.get(doc, "services"))
            if keys:
                store.delete(doc, ("services", rng.choice(keys)))
    elif op < 0.7:
        store.append(doc, "tasks", {"s": rng.choice(["todo", "done"])})
    elif op < 0.78:
        tasks = store.get(doc, "tasks", default=[])
        if tasks:
            i = rng.randrange(len(tasks))
            if rng.random() < 0.5:
                store.delete(doc, ("tasks", i))
            else:
                store.set(doc, ("tasks", i, "s"), rng.choice(["todo", "done", "late"]))
    elif op < 0.82:
        if store.exists(doc):
            store.delete(doc)
    elif op < 0.86:
        store.set(doc, None, {"services": {"slack": rng.random() < 0.5}, "owner": "x"})
    elif op < 0.9:
        # a big change: more keys than the index keeps per commit
        with store.transaction():
            for i in range(80):
                store.set(doc, ("bulk", f"k{i}"), rng.randint(0, 3))
    else:
        store.set(doc, "owner", rng.choice(["alice", "bob"]))


def _random_history(store: gitstate.Store, rng: random.Random, steps: int) -> list[tuple[str, dict[str, Any]]]:
    """Random writes; returns [(commit, state after it)] oldest first (the first entry is the first commit)."""
    out: list[tuple[str, dict[str, Any]]] = []
    names = ["slack", "mail", "irc", "a.b"]
    for _ in range(steps):
        before = store.head
        _random_step(store, rng, names)
        store.flush()
        if store.head != before:  # a transaction commits by itself
            out.append((store.head, _snapshot_state(store)))
    return out


QUERIES = [
    ("state.json", "services"),
    ("state.json", "services.slack"),
    ("state.json", ("services", "a.b")),
    ("state.json", "services.mail"),
    ("state.json", "services.slack.deep"),
    ("state.json", "tasks"),
    ("state.json", "tasks.0.s"),
    ("state.json", "tasks.1.s"),
    ("state.json", "tasks.2"),
    ("state.json", "owner"),
    ("state.json", "bulk.k7"),
    ("state.json", "bulk"),
    ("tasks/t1.yaml", "services.irc"),
    ("tasks/t1.yaml", "tasks.0.s"),
    ("tasks/t1.yaml", "bulk.k79"),
    ("state.json", "never.set"),
]


def _expected(history_: list[tuple[str, dict[str, Any]]], doc: str, key: Any) -> list[str]:
    out = []
    prev: dict[str, Any] = {}
    for cid, state in history_:
        k = key if isinstance(key, str) else None
        if isinstance(key, tuple):
            a = get_in(prev.get(doc), key) if doc in prev else MISSING_KEY
            b = get_in(state.get(doc), key) if doc in state else MISSING_KEY
            a = ABSENT if a is MISSING_KEY else a
            b = ABSENT if b is MISSING_KEY else b
        else:
            a, b = _value(prev, doc, k), _value(state, doc, k)
        if not _same(a, b):
            out.append(cid)
        prev = state
    return out[::-1]


def _check_key_queries(store: gitstate.Store, hist: list[tuple[str, dict[str, Any]]]) -> None:
    for doc, key in QUERIES:
        expected = _expected(hist, doc, key)
        if not expected:
            with pytest.raises(KeyNotFound):
                store.log(doc=doc, key=key)
            continue
        got = [c.id for c in store.log(doc=doc, key=key)]
        assert got == expected, (doc, key)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_log_key_lists_exactly_the_commits_that_changed_it(store: gitstate.Store, seed: int) -> None:
    hist = _random_history(store, random.Random(seed), 70)
    assert len(hist) > 30
    _check_key_queries(store, hist)
    # The index is a cache: lost, it is rebuilt lazily with the same answers.
    (store._repo.meta_dir / history_index.INDEX_FILE).unlink()
    _check_key_queries(store, hist)
    assert (store._repo.meta_dir / history_index.INDEX_FILE).stat().st_size > 0


def test_log_key_under_a_directory_ignores_the_key_in_other_documents(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="immediate") as store:
        store.set("cfg/a.json", "x", 1)
        created = store.head
        store.set("cfg/a.json", "y", 1)
        store.set("other.json", "x", 5)
        with store.transaction() as t:  # one commit: key y under cfg/, key x in other.json
            t.set("cfg/a.json", "y", 2)
            t.set("other.json", "x", 6)
        assert [c.id for c in store.log(doc="cfg/", key="x")] == [created]
        assert len(store.log(key="x")) == 3


def test_log_key_reports_from_what_to_what(store: gitstate.Store) -> None:
    store.set("state.json", "services.slack", False)
    store.flush()
    store.set("state.json", "other", 1)
    store.flush()
    store.set("state.json", "services.slack", True)
    store.flush()
    store.set("state.json", None, {"services": {"slack": "gone"}})  # whole document replaced
    store.flush()
    commits = store.log(key="services.slack")
    assert len(commits) == 3
    olds_news = [[(c.key, c.old, c.new) for c in commit.changes(key="services.slack")] for commit in commits]
    assert olds_news == [
        [(("services", "slack"), True, "gone")],
        [(("services", "slack"), False, True)],
        [(("services", "slack"), docdiff.MISSING, False)],
    ]
    assert {c.actor for c in commits} == {"library"}


def test_index_bounds_huge_changes(store: gitstate.Store) -> None:
    big = {f"key{i}": "x" * 1000 for i in range(2000)}
    big["k" * 5000] = 1
    store.set("big.json", None, big)
    store.flush()
    store.set("big.json", "key5", "changed")
    store.flush()
    lines = (store._repo.meta_dir / history_index.INDEX_FILE).read_bytes().splitlines()
    assert max(len(line) for line in lines) < 20_000
    commits = store.log(key="key5")
    assert [c.subject.split(" ")[:2] for c in commits] == [["big.json:", "key5"], ["big.json:", "created"]]
    assert [(c.old[:3], c.new) for c in commits[0].changes(key="key5")] == [("xxx", "changed")]
    assert len(store.log(key="key6")) == 1


def test_index_tolerates_torn_and_garbage_lines(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("a.json", "x", 1)
        s.flush()
        index = s._repo.meta_dir / history_index.INDEX_FILE
        with open(index, "ab") as f:
            f.write(b'{"c": "garbage", "p": [\n{not json}\n{"c": "abc')  # torn last line, no newline
        s.set("a.json", "x", 2)
        c2 = s.flush()
        s.set("a.json", "y", 1)
        s.flush()
    # A new process (a fresh cache) reads it.
    history_index._INDEXES.clear()
    with make_store(path) as s:
        assert s.log(key="x")[0].id == c2
        assert len(s.log()) == 3
        assert len(s.log(key="y")) == 1
    fsck(path)


def test_index_file_reads_incrementally_through_partial_empty_and_damaged_lines(tmp_path: Path) -> None:
    """The index reader parses only complete lines, in one pass when it can, and picks up where it stopped."""
    path = tmp_path / "index.jsonl"
    idx = history_index._IndexFile(path)
    idx.refresh()
    assert idx.entries == {}

    def line(cid: str, **more: object) -> bytes:
        return json.dumps({"c": cid, "t": 1, **more}).encode() + b"\n"

    path.write_bytes(line("a") + line("b") + b'{"c": "c", "t"')  # the last line is still being written
    idx.refresh()
    assert idx.entries == {} and idx.low == idx.offset  # a first look reads nothing: lines are read on demand
    assert idx.find("b") is not None and idx.reads == 1  # from the newest end, in one block
    idx.load_all()
    assert sorted(idx.entries) == ["a", "b"] and idx.offset == len(line("a") + line("b"))
    with open(path, "ab") as f:
        f.write(b": 1}\n")
    idx.refresh()
    assert sorted(idx.entries) == ["a", "b", "c"]
    with open(path, "ab") as f:  # an empty line (a writer's guard after a tear), a damaged line, a supplement
        f.write(b"\n" + line("d") + b"{not json}\n" + line("a", k="[]") + b"\n")
    idx.refresh()
    assert sorted(idx.entries) == ["a", "b", "c", "d"] and idx.entries["a"]["k"] == "[]"
    assert idx.offset == path.stat().st_size
    fresh = history_index._IndexFile(path)  # a fresh reader of the whole file gets the same picture
    fresh.refresh()
    fresh.load_all()
    assert fresh.entries == idx.entries
    path.write_bytes(line("z"))  # rewritten shorter: read again from the start
    idx.refresh()
    idx.load_all()
    assert list(idx.entries) == ["z"]


def test_commits_made_by_plain_git_are_indexed_lazily(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("state.json", "services", {"slack": False})
        s.flush()
    cid = git_commit_at(path, {"state.json": '{"services": {"slack": true}}\n'}, time.time(), message="flip by hand")
    with make_store(path) as s:
        commits = s.log(key="services.slack")
        assert commits[0].id == cid
        assert commits[0].actor == "human"
        assert commits[0].author == "Test Human <human@example.com>"
        assert commits[0].changes(key="services.slack")[0].new is True
    index = (path / ".git" / "gitstate" / history_index.INDEX_FILE).read_text()
    assert cid in index


def test_merge_commits_compare_against_first_parent(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("a.json", "x", 1)
        s.set("b.json", "y", 1)
        s.flush()
    t = int(time.time()) + 10
    git(path, "checkout", "-q", "-b", "side")
    side = git_commit_at(path, {"b.json": '{\n  "y": 2\n}\n'}, t, message="side change")
    git(path, "checkout", "-q", "main")
    main_c = git_commit_at(path, {"a.json": '{\n  "x": 2\n}\n'}, t + 5, message="main change")
    stamp = f"@{t + 10} +0000"
    git(path, "merge", "-q", "--no-edit", "side", env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
    with make_store(path) as s:
        commits = s.log()
        assert len(commits) == 4
        merge = commits[0]
        assert len(merge.parents) == 2 and merge.parents[0] == main_c
        assert merge.docs == ["b.json"]
        assert {c.id for c in s.log(key="y")} == {merge.id, side, commits[-1].id}
        assert s.resolve("HEAD^2") == side
        assert s.resolve("HEAD^") == main_c


def test_log_doc_prefix_and_unknowns(store: gitstate.Store) -> None:
    store.set("tasks/t1.json", "s", 1)
    store.flush()
    store.set("tasks/t2.json", "s", 1)
    store.flush()
    store.set("state.json", "s", 1)
    store.flush()
    assert len(history.log(store._repo, store.head, doc="tasks/")) == 2  # Store.log validates a path, not a prefix
    with pytest.raises(KeyNotFound, match=r"nope\.json"):
        store.log(doc="nope.json")
    with pytest.raises(KeyNotFound, match="never"):
        store.log(doc="state.json", key="never")
    assert store.log(doc="nope.json", limit=0) == []


def test_empty_store(store: gitstate.Store) -> None:
    assert store.log() == []
    with pytest.raises(RevisionNotFound, match="no commits"):
        store.at("HEAD")
    with pytest.raises(GitStateError, match="nothing to undo"):
        store.undo()
    with pytest.raises(GitStateError, match="nothing to snapshot"):
        store.snapshot("v1")
    assert store.snapshots() == []


# ===================================================================== diff and at
def test_diff_between_any_two_revisions_matches_what_changed(store: gitstate.Store) -> None:
    hist = _random_history(store, random.Random(7), 40)
    rng = random.Random(8)
    pairs = [(rng.randrange(len(hist)), rng.randrange(len(hist))) for _ in range(25)] + [(0, len(hist) - 1)]
    for i, j in pairs:
        (ci, si), (cj, sj) = hist[i], hist[j]
        changes = store.diff(ci, cj)
        for doc in set(si) | set(sj):
            mine = [c for c in changes if c.doc == doc]
            start = si.get(doc, docdiff.MISSING)
            result = docdiff.apply_changes(start, mine)
            assert docdiff.same(result, sj.get(doc, docdiff.MISSING)), (i, j, doc)
        assert {c.doc for c in changes} <= set(si) | set(sj)
        assert store.diff(ci, cj, doc="state.json") == [c for c in changes if c.doc == "state.json"], (i, j)


def test_diff_text_documents_and_defaults(store: gitstate.Store) -> None:
    store.set("notes.md", None, "one\ntwo\n")
    store.flush()
    store.set("notes.md", None, "one\nthree\n")
    store.flush()
    (change,) = store.diff()
    assert change.key == () and change.op == "change" and change.new == "one\nthree\n"
    text = history.text_diff(store._repo, "HEAD~1", "HEAD")["notes.md"]
    assert "-two\n+three\n" in text
    with pytest.raises(KeyNotFound):
        store.diff("HEAD~1", "HEAD", doc="missing.json")
    with pytest.raises(RevisionNotFound, match="HEAD~5"):
        store.diff("HEAD~5", "HEAD")


def test_at_reads_the_state_of_a_revision(store: gitstate.Store) -> None:
    store.set("state.json", "a", 1)
    store.flush()
    store.set("state.json", "a", 2)
    store.set("other.json", None, {"b": [1, 2]})
    store.flush()
    view = store.at("HEAD~1")
    assert view.get("state.json") == {"a": 1}
    assert view.get("state.json", "a") == 1
    assert view.docs() == ["state.json"]
    assert view.get("other.json", default=None) is None
    assert not view.exists("other.json")
    with pytest.raises(KeyNotFound, match="HEAD~1"):
        view.get("other.json")
    with pytest.raises(KeyNotFound):
        view.get("state.json", "zzz")
    assert view.commit == store.log()[1].id
    assert view.time.tzinfo is not None
    v2 = store.at("HEAD")
    got = v2.get("other.json", "b")
    got.append(3)  # a copy: the view is read-only
    assert v2.get("other.json", "b") == [1, 2]


# ===================================================================== revisions
def test_revision_forms(store: gitstate.Store) -> None:
    ids = []
    for i in range(5):
        store.set("s.json", "n", i)
        ids.append(store.flush())
    head = ids[-1]
    assert store.resolve("HEAD") == head
    assert store.resolve("@") == head
    assert store.resolve("HEAD~1") == ids[-2]
    assert store.resolve("HEAD~4") == ids[0]
    assert store.resolve("HEAD^") == ids[-2]
    assert store.resolve("HEAD~2^") == ids[-4]
    assert store.resolve(head) == head
    assert store.resolve(head[:7]) == head
    assert store.resolve(head[:4].upper()) == head
    assert store.resolve(f"{ids[2]}~2") == ids[0]
    assert store.resolve("main") == head
    assert store.resolve("now") == head
    store.snapshot("v1")
    assert store.resolve("v1") == head
    assert store.resolve("v1~1") == ids[-2]
    for bad, words in [
        ("HEAD~5", "HEAD"),
        ("nosuchthing", "nosuchthing"),
        ("0" * 40, "no such commit"),
        ("deadbeef", "no commit"),
        ("2001-01-01", "before the first commit"),
        ("", "empty"),
        ("../../HEAD", "not a commit id"),  # ref names are paths under .git: never looked up outside refs/
        ("refs/../../config", "not a commit id"),
    ]:
        with pytest.raises(RevisionNotFound, match=words) as e:
            store.resolve(bad)
        assert "unknown revision" in str(e.value)


def test_ambiguous_prefix_is_a_clear_error(tmp_path: Path) -> None:
    # Commits straight through the repository layer (fast): a 4-digit clash comes after ~300 on average.
    repo = Repository.open(tmp_path / "r", create=True)
    seen: dict[str, str] = {}
    clash = None
    parent = None
    with repo.lock():
        for i in range(20000):
            parent = repo.commit_files(
                parent,
                {"s.json": b"%d" % i},
                "n\n\nGitstate-Actor: library\n",
                author="t <t@t>",
                when=1_700_000_000 + i,
                fsync=False,
            )
            if parent[:4] in seen:
                clash = (seen[parent[:4]], parent)
                break
            seen[parent[:4]] = parent
    assert clash is not None
    with pytest.raises(RevisionNotFound, match="ambiguous"):
        history.resolve(repo, clash[0][:4])
    n = next(i for i in range(4, 40) if clash[0][:i] != clash[1][:i])
    assert history.resolve(repo, clash[1][:n]) == clash[1]
    repo.close()


def test_times_name_the_state_as_of_that_moment(tmp_path: Path) -> None:
    path = tmp_path / "s"
    now = time.time()
    c1 = git_commit_at(path, {"s.json": '{"v": 1}\n'}, now - 50 * 3600, actor="library")
    c2 = git_commit_at(path, {"s.json": '{"v": 2}\n'}, now - 5 * 3600, actor="library")
    c3 = git_commit_at(path, {"s.json": '{"v": 3}\n'}, now - 3 * 3600, actor="library")
    c4 = git_commit_at(path, {"s.json": '{"v": 4}\n'}, now - 3600, actor="library")
    with make_store(path) as s:
        assert s.at("2h ago").get("s.json", "v") == 3
        assert s.at("2 hours ago").commit == c3
        assert s.at("90 minutes ago").commit == c3
        assert s.at("an hour ago").commit == c4
        assert s.at("1 day 2 hours ago").commit == c1
        assert s.at("4h ago").commit == c2
        assert s.at("6h ago").commit == c1
        assert s.at("yesterday").commit == c1
        assert s.at("now").commit == c4
        iso_utc = dt.datetime.fromtimestamp(now - 2 * 3600, dt.UTC).isoformat()
        assert s.at(iso_utc).commit == c3
        iso_z = dt.datetime.fromtimestamp(now - 4 * 3600, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert s.at(iso_z).commit == c2
        naive_local = dt.datetime.fromtimestamp(now - 2 * 3600).strftime("%Y-%m-%d %H:%M:%S")
        assert s.at(naive_local).commit == c3
        with pytest.raises(RevisionNotFound, match="before the first commit"):
            s.at("3 days ago")
        assert s.log()[0].actor == "library"
        assert [c.id for c in s.log()] == [c4, c3, c2, c1]


def test_parse_time_forms() -> None:
    now = 1_000_000.0
    assert history.parse_time("2h ago", now=now) == now - 7200
    assert history.parse_time("90 minutes ago", now=now) == now - 5400
    assert history.parse_time("3 days ago", now=now) == now - 3 * 86400
    assert history.parse_time("1w ago", now=now) == now - 604800
    assert history.parse_time("yesterday", now=now) == now - 86400
    assert history.parse_time("2 fortnights ago", now=now) is None
    assert history.parse_time("HEAD~1") is None
    assert history.parse_time("2024-13-45") is None
    assert history.parse_time("2024-05-01T00:00:00+00:00") == dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()


# ===================================================================== restore
def _tree_files(path: Path, rev: str) -> dict[str, bytes]:
    names = git(path, "ls-tree", "-r", "--name-only", rev).split("\n")
    out = {}
    for name in filter(None, names):
        out[name] = subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=path, env=GIT_ENV, capture_output=True, check=True
        ).stdout
    return out


def test_restore_makes_content_equal_to_rev_as_a_new_commit(store: gitstate.Store) -> None:
    hist = _random_history(store, random.Random(11), 30)
    path = store.path
    for idx in (3, len(hist) // 2, 0):
        target = hist[idx][0]
        before = store.head
        commit = store.restore(target)
        assert commit != before
        assert git(path, "rev-parse", "HEAD").strip() == commit
        assert git(path, "rev-parse", f"{commit}^").strip() == before  # appended, nothing rewritten
        assert _tree_files(path, "HEAD") == _tree_files(path, target)
        for doc, data in _tree_files(path, target).items():
            assert (path / doc).read_bytes() == data
        assert _snapshot_state(store) == hist[idx][1]
        latest = store.log(limit=1)[0]
        assert latest.actor == "restore"
        assert git(path, "status", "--porcelain") == ""
    # restoring again changes nothing and adds no commit
    head = store.head
    assert store.restore(hist[0][0]) == head
    assert len(store.log()) == len(hist) + 3
    fsck(path)


def test_restore_some_documents_and_removal(store: gitstate.Store) -> None:
    store.set("a.json", "x", 1)
    store.flush()
    first = store.head
    store.set("a.json", "x", 2)
    store.set("b.json", "y", 1)
    store.set("c.md", None, "text\n")
    store.flush()
    store.restore(first, docs=["a.json"])
    assert store.get("a.json") == {"x": 1}
    assert store.get("b.json") == {"y": 1}
    store.restore(first, docs=["b.json"], message="drop b")
    assert not (store.path / "b.json").exists()
    assert not store.exists("b.json")
    assert store.log(limit=1)[0].subject == "drop b"
    assert store.docs() == ["a.json", "c.md"]
    with pytest.raises(KeyNotFound, match=r"nope\.json"):
        store.restore(first, docs=["nope.json"])
    with pytest.raises(RevisionNotFound, match="no-such-rev"):
        store.restore("no-such-rev")
    with pytest.raises(gitstate.InvalidPath):
        store.restore(first, docs=["../x.json"])
    fsck(store.path)


def test_restore_keeps_pending_writes(store: gitstate.Store) -> None:
    store.set("a.json", "x", 1)
    store.flush()
    first = store.head
    store.set("a.json", "x", 2)
    store.flush()
    store.set("a.json", "y", 5)  # pending: committed first, then the restore reverts it too
    store.restore(first)
    assert store.get("a.json") == {"x": 1}
    assert store.pending == 0


# ===================================================================== undo
def test_undo_twice_returns_to_the_state_before_the_last_two_commits(store: gitstate.Store) -> None:
    store.set("a.json", "x", 1)
    store.flush()
    state0 = _snapshot_state(store)
    store.set("a.json", "x", 2)
    store.flush()
    state1 = _snapshot_state(store)
    store.set("b.json", "y", 1)
    store.flush()
    first_undo = store.undo()
    assert _snapshot_state(store) == state1
    assert store.log(limit=1)[0].actor == "restore"
    assert store.log(limit=1)[0].trailer("Gitstate-Undo") == store.log()[1].id
    store.undo()
    assert _snapshot_state(store) == state0
    assert len(store.log()) == 5  # nothing rewritten
    assert git(store.path, "rev-parse", "HEAD~1").strip() == first_undo
    # A new write, then undo: reverts the new write only.
    store.set("a.json", "z", 3)
    store.flush()
    store.undo()
    assert _snapshot_state(store) == state0
    # Undo the very first commit, then nothing is left to undo.
    store.undo()
    assert store.docs() == []
    with pytest.raises(GitStateError, match="nothing to undo"):
        store.undo()
    assert git(store.path, "status", "--porcelain") == ""
    fsck(store.path)


def test_undo_reverts_pending_writes_and_human_commits(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("a.json", "x", 1)
        s.flush()
    git_commit_at(path, {"a.json": '{\n  "x": 9\n}\n'}, time.time(), message="by hand")
    with make_store(path) as s:
        assert s.get("a.json", "x") == 9
        s.undo()
        assert s.get("a.json", "x") == 1
        s.set("a.json", "x", 5)
        s.undo()  # the pending write is committed, then reverted
        assert s.get("a.json", "x") == 1


# ===================================================================== snapshots
def test_snapshots_are_real_git_tags(store: gitstate.Store) -> None:
    store.set("a.json", "x", 1)
    c1 = store.flush()
    assert store.snapshot("before-upgrade") == c1
    store.set("a.json", "x", 2)
    store.flush()
    store.snapshot("release/v2", message="second")
    assert git(store.path, "tag").split() == ["before-upgrade", "release/v2"]
    assert git(store.path, "cat-file", "-t", "before-upgrade").strip() == "tag"
    assert git(store.path, "rev-parse", "before-upgrade^{commit}").strip() == c1
    snaps = store.snapshots()
    assert [s.name for s in snaps] == ["before-upgrade", "release/v2"]
    assert isinstance(snaps[0], gitstate.Snapshot) and snaps[0].commit == c1 and snaps[0].time.tzinfo
    assert snaps[1].message == "second"
    assert store.at("before-upgrade").get("a.json", "x") == 1
    store.restore("before-upgrade")
    assert store.get("a.json", "x") == 1
    with pytest.raises(GitStateError, match="already exists"):
        store.snapshot("before-upgrade")
    for bad in [
        "a b",
        "x..y",
        "-x",
        "v1.lock",
        "HEAD",
        "abcd1234",
        "a~1",
        "a^",
        "",
        "x/",
        ".hidden",
        "a:b",
        "2h ago",
        "yesterday",
    ]:
        with pytest.raises(GitStateError, match="invalid snapshot name"):
            store.snapshot(bad)
    # tags made with plain git count too
    git(store.path, "tag", "hand-made")
    assert "hand-made" in [s.name for s in store.snapshots()]
    fsck(store.path)


# ===================================================================== other processes
_READER = textwrap.dedent("""
    import json, sys
    import gitstate
    store = gitstate.open(sys.argv[1], durability="manual", fsync=False, handle_signals=False)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "get":
            out = store.get(cmd["doc"], cmd.get("key"), default=None)
        elif cmd["op"] == "set":
            store.set(cmd["doc"], cmd["key"], cmd["value"])
            out = None
        elif cmd["op"] == "flush":
            out = store.flush()
        else:
            break
        print(json.dumps(out), flush=True)
    store.close()
""")


class _Peer:
    """A store open in another process, driven line by line."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", _READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def call(self, **cmd: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        assert self.proc.returncode == 0


def test_another_process_sees_restored_content_and_never_writes_it_back(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("state.json", None, {"a": 1, "b": 1})
        first = s.flush()
        s.set("state.json", "a", 2)
        s.flush()
        peer = _Peer(path)
        try:
            assert peer.call(op="get", doc="state.json", key="a") == 2
            peer.call(op="set", doc="state.json", key="b", value=5)  # pending in the other process
            s.restore(first)
            wait_until(
                lambda: peer.call(op="get", doc="state.json", key="a") == 1,
                5,
                message="the other process to see the restore",
            )
            assert peer.call(op="flush") is not None
        finally:
            peer.close()
        assert s.get("state.json") == {"a": 1, "b": 5}
    fsck(path)


_WRITER = textwrap.dedent("""
    import sys
    import gitstate
    store = gitstate.open(sys.argv[1], durability="manual", fsync=False, handle_signals=False)
    for i in range(int(sys.argv[2])):
        store.set("state.json", "counter", i)
        print(store.flush(), flush=True)
    store.close()
""")


def test_restore_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("other.json", "v", "old")
        s.set("state.json", "counter", -1)
        old = s.flush()
        s.set("other.json", "v", "new")
        new = s.flush()
        n = 150
        proc = subprocess.Popen([PYTHON, "-c", _WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        restores = 0
        errors = 0
        try:
            while proc.poll() is None or restores < 2:
                target = old if restores % 2 == 0 else new
                try:
                    s.restore(target, docs=["other.json"])
                    restores += 1
                except RepositoryError as e:  # the branch moved under us: a clear error, nothing written
                    assert "try again" in str(e)
                    errors += 1
                if restores > 40:
                    break
        finally:
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        written = out.split()
        assert len(written) == n
        head = git(path, "rev-parse", "HEAD").strip()
        for cid in written:  # every commit the writer reported is in the history
            git(path, "merge-base", "--is-ancestor", cid, head)
        assert s.get("state.json", "counter") == n - 1
        expected = "old" if restores % 2 == 1 else "new"
        assert s.get("other.json", "v") == expected
        assert restores >= 2
        print(f"restores={restores} branch-moved errors={errors}")
    fsck(path)
    assert git(path, "status", "--porcelain") == ""
    assert json.loads((path / "state.json").read_text())["counter"] == n - 1


def test_index_written_by_concurrent_processes_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with make_store(path) as s:
        s.set("a.json", "x", 0)
        s.flush()
    script = textwrap.dedent("""
        import sys, gitstate
        s = gitstate.open(sys.argv[1], durability="manual", fsync=False, handle_signals=False)
        for i in range(40):
            s.set("a.json", sys.argv[2], i)
            s.flush()
            s.log(key=sys.argv[2], limit=3)
        s.close()
    """)
    procs = [subprocess.Popen([PYTHON, "-c", script, str(path), k]) for k in ("p", "q")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    history_index._INDEXES.clear()
    with make_store(path) as s:
        assert len(s.log(key="p")) == 40
        assert len(s.log(key="q")) == 40
        assert len(s.log()) == 81
    fsck(path)


def test_module_exports() -> None:
    assert gitstate.Commit is history.Commit
    assert gitstate.Snapshot is history.Snapshot
    assert set(history.__all__) <= set(dir(history))
    assert os.path.basename(history.__file__) == "history.py"
    assert sys.modules["gitstate.history"] is history
