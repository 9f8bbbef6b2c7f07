"""Remotes over local bare repositories (real ``git init --bare``): push, clone, pull/sync with the key-by-key
merge and its rules, rejected pushes, credentials kept out of ``.git/config``, push status, auto-push, and the
``remote``/``push``/``pull``/``sync``/``clone`` commands. Network servers are in test_remote_servers.py."""

from __future__ import annotations

import json
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import fsck, git, invoke, wait_until

import gitstate
from gitstate import ancestry, docdiff
from gitstate import remote as gremote
from gitstate.repo import Repository

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


# ============================================================================ helpers


def make_bare(path: Path) -> Path:
    git(".", "init", "-q", "--bare", "--initial-branch=main", str(path))
    return path


def bare_head(bare: Path, branch: str = "main") -> str | None:
    return git(bare, "rev-parse", "--verify", "-q", branch, check=False).strip() or None


def status_clean(path: Path) -> None:
    assert git(path, "status", "--porcelain") == ""


def worktree(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in Path(path).rglob("*")
        if p.is_file() and ".git" not in p.relative_to(path).parts
    }


def show(bare: Path, doc: str) -> Any:
    return json.loads(git(bare, "show", f"main:{doc}"))


def open_store(path: Path, **kw: Any) -> gitstate.Store:
    kw.setdefault("durability", "manual")
    return gitstate.open(path, fsync=False, **kw)


def clone(url: str | Path, path: Path, **kw: Any) -> gitstate.Store:
    kw.setdefault("durability", "manual")
    return gitstate.clone(str(url), path, fsync=False, **kw)


def commit_message(path: Path, rev: str = "HEAD") -> str:
    return git(path, "log", "-1", "--format=%B", rev)


def parents(path: Path, rev: str = "HEAD") -> list[str]:
    return git(path, "log", "-1", "--format=%P", rev).split()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare(tmp_path / "remote.git")


@pytest.fixture
def pair(tmp_path: Path, bare: Path) -> Any:
    """Two stores cloned from one remote that holds a seeded state."""
    with open_store(tmp_path / "seed") as seed:
        seed.remote_add("origin", str(bare))
        seed.set("state.json", None, {"services": {"slack": False, "mail": True}, "owner": "seed"})
        seed.set("memory/work.yaml", None, {"follow_ups": ["a"], "mood": "ok"})
        seed.set("notes.md", None, "one\ntwo\nthree\nfour\nfive\n")
        seed.set("blob.bin", None, b"\x00\x01seed")
        seed.flush()
        seed.push()
    a = clone(bare, tmp_path / "a")
    b = clone(bare, tmp_path / "b")
    yield a, b
    a.close()
    b.close()


# ============================================================================ push and clone
def test_push_to_bare_then_real_git_clone_matches(tmp_path: Path, bare: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", str(bare))
        assert store.push() is None  # nothing committed yet
        store.set("state.json", "services", {"slack": True})
        store.set("memory/current_work.yaml", "follow_ups", ["check coverage"])
        store.set("notes.md", None, "# notes\n")
        store.set("data.bin", None, b"\x00\xffraw")
        store.flush()
        head = store.push()
        assert head == store.head == bare_head(bare)
        assert store.push() is None
        assert store._repo.read_ref("refs/remotes/origin/main") == head
        files = worktree(Path(store.path))
    fsck(bare)
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "gitclone"))
    fsck(tmp_path / "gitclone")
    assert worktree(tmp_path / "gitclone") == files


def test_file_url_and_relative_path(tmp_path: Path, bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store(tmp_path / "s") as store:
        store.remote_add("rel", "remote.git")
        store.remote_add("url", f"file://{bare}")
        assert gremote.list_remotes(store._repo) == {"rel": str(bare), "url": f"file://{bare}"}
        store.set("a.json", "x", 1)
        store.flush()
        assert store.push("url") == store.head
        assert store.push("rel") is None


def test_clone_gives_a_clean_store_with_origin(tmp_path: Path, bare: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", str(bare))
        store.set("state.json", "a", {"b": [1, 2]})
        store.set("deep/nested/doc.yaml", "k", "v")
        store.flush()
        store.snapshot("v1")
        store.push()
        files = worktree(Path(store.path))
    with clone(bare, tmp_path / "c") as c:
        assert c.get("state.json") == {"a": {"b": [1, 2]}}
        assert c.docs() == ["deep/nested/doc.yaml", "state.json"]
        assert c.pending == 0
        status = c.push_status()["origin"]
        assert status["commits_waiting"] == 0 and status["behind"] == 0 and status["url"] == str(bare)
    status_clean(tmp_path / "c")
    fsck(tmp_path / "c")
    assert worktree(tmp_path / "c") == files
    assert git(tmp_path / "c", "status", "-sb").startswith("## main...origin/main")
    assert "v1" in git(tmp_path / "c", "tag")  # snapshots travel with the history
    assert "v1" in git(bare, "tag")


def test_clone_of_an_empty_remote_then_push(tmp_path: Path, bare: Path) -> None:
    # An empty remote is refused unless asked for (tests/test_trust_tree.py checks the refusal).
    with clone(bare, tmp_path / "c", allow_empty=True) as c:
        assert c.head is None and c.docs() == []
        c.set("state.json", "x", 1)
        c.flush()
        assert c.push() == bare_head(bare)


def test_clone_errors_leave_nothing_behind(tmp_path: Path, bare: Path) -> None:
    with pytest.raises(gitstate.RemoteError, match="no Git repository"):
        gitstate.clone(str(tmp_path / "missing.git"), tmp_path / "c1")
    assert not (tmp_path / "c1").exists()
    (tmp_path / "c2").mkdir()
    with pytest.raises(gitstate.RemoteError):
        gitstate.clone(str(tmp_path / "missing.git"), tmp_path / "c2")
    assert list((tmp_path / "c2").iterdir()) == []
    (tmp_path / "c3").mkdir()
    (tmp_path / "c3" / "x").write_text("x")
    with pytest.raises(gitstate.RepositoryError, match="not an empty directory"):
        gitstate.clone(str(bare), tmp_path / "c3")
    with pytest.raises(gitstate.RemoteError, match="unsupported remote URL scheme"):
        gitstate.clone("ftp://example.com/x.git", tmp_path / "c4")


def test_clone_follows_the_remote_default_branch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    git(tmp_path, "init", "-q", "--initial-branch=trunk", str(src))
    (src / "state.json").write_text('{"a": 1}\n')
    git(src, "add", "-A")
    git(src, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "init")
    with clone(src, tmp_path / "c") as c:
        assert c._repo.branch == "trunk"
        assert c.get("state.json", "a") == 1
        c.set("state.json", "b", 2)
        c.flush()
    status_clean(tmp_path / "c")


def test_push_refuses_the_checked_out_branch_of_a_non_bare_repository(tmp_path: Path) -> None:
    with open_store(tmp_path / "other") as other:
        other.set("a.json", "x", 1)
        other.flush()
    with clone(tmp_path / "other", tmp_path / "c") as c:
        c.set("a.json", "x", 2)
        c.flush()
        with pytest.raises(gitstate.RemoteError, match="checked-out branch"):
            c.push()
    with open_store(tmp_path / "other") as other:
        assert other.get("a.json", "x") == 1


# ============================================================================ pull and sync
def test_two_stores_writing_different_keys_converge(pair: Any, bare: Path, tmp_path: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", True)
    a.append("memory/work.yaml", "follow_ups", "from-a")
    a.set("tasks/a.json", "status", "open")
    a.flush()
    b.set("state.json", "services.teams", True)
    b.set("memory/work.yaml", "mood", "great")
    b.delete("state.json", "owner")
    b.flush()
    assert a.sync() == bare_head(bare)
    b.sync()
    a.sync()
    expected = {"services": {"slack": True, "mail": True, "teams": True}}
    for s in (a, b):
        assert s.get("state.json") == expected
        assert s.get("memory/work.yaml") == {"follow_ups": ["a", "from-a"], "mood": "great"}
        assert s.get("tasks/a.json") == {"status": "open"}
    assert a.head == b.head == bare_head(bare)
    assert show(bare, "state.json") == expected
    merge = b.head
    assert len(parents(tmp_path / "b", merge)) == 2
    msg = commit_message(tmp_path / "b", merge)
    assert msg.startswith("merge origin/main into main") and "Gitstate-Actor: merge" in msg
    assert "conflict" not in msg
    assert worktree(tmp_path / "a") == worktree(tmp_path / "b")
    for p in (tmp_path / "a", tmp_path / "b"):
        status_clean(p)
        fsck(p)
    fsck(bare)


def test_fast_forward_pull(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", True)
    a.flush()
    a.push()
    events: list[Any] = []
    b.on("external_change", events.append)
    assert b.pull() == a.head
    assert len(parents(tmp_path / "b")) == 1
    assert b.get("state.json", "services.slack") is True
    assert events and events[-1].source == "merge" and "state.json" in events[-1].docs
    status_clean(tmp_path / "b")
    assert b.pull() == a.head  # nothing new


def test_same_key_rule_ours_keeps_local_and_records_remote(pair: Any, bare: Path, tmp_path: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", "from-a")
    a.flush()
    a.push()
    b.set("state.json", "services.slack", "from-b")
    b.set("state.json", "services.mail", False)
    b.flush()
    events: list[Any] = []
    b.on("external_change", events.append)
    b.sync()
    assert b.get("state.json", "services") == {"slack": "from-b", "mail": False}
    msg = commit_message(tmp_path / "b")
    assert 'conflict state.json: services.slack: kept local "from-b"; remote value "from-a" not applied' in msg
    conflicts = [c for e in events for c in e.overwritten]
    assert len(conflicts) == 1
    c = conflicts[0]
    assert (c.doc, c.key, c.ours, c.theirs, c.chosen) == (
        "state.json",
        ("services", "slack"),
        "from-b",
        "from-a",
        "ours",
    )
    assert c.to_dict()["doc"] == "state.json"
    a.pull()
    assert a.get("state.json", "services.slack") == "from-b"
    assert show(bare, "state.json")["services"]["slack"] == "from-b"


def test_same_key_rule_theirs_takes_remote(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", "from-a")
    a.set("memory/work.yaml", "mood", "a-mood")
    a.flush()
    a.push()
    b.set("state.json", "services.slack", "from-b")
    b.set("memory/work.yaml", "follow_ups", ["b"])
    b.flush()
    b.sync(on_conflict="theirs")
    assert b.get("state.json", "services.slack") == "from-a"
    assert b.get("memory/work.yaml") == {"follow_ups": ["b"], "mood": "a-mood"}
    assert 'took remote "from-a"; local value "from-b" replaced' in commit_message(tmp_path / "b")
    a.pull()
    assert a.get("state.json") == b.get("state.json")


def test_same_key_rule_fail_changes_nothing(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", "from-a")
    a.set("state.json", "owner", "a")
    a.flush()
    a.push()
    b.set("state.json", "services.slack", "from-b")
    b.set("state.json", "owner", "b")
    b.flush()
    head, files = b.head, worktree(tmp_path / "b")
    with pytest.raises(gitstate.MergeConflict, match=r"services\.slack") as info:
        b.pull(on_conflict="fail")
    assert "owner" in str(info.value) and len(info.value.conflicts) == 2
    assert {c.doc for c in info.value.conflicts} == {"state.json"}
    assert b.head == head and worktree(tmp_path / "b") == files
    status_clean(tmp_path / "b")
    b.set("state.json", "extra", 1)  # still writable
    b.flush()
    with pytest.raises(gitstate.PushRejected):
        b.push()
    b.sync()  # rule ours
    assert b.get("state.json", "owner") == "b"


def test_text_documents_merge_line_by_line(pair: Any) -> None:
    a, b = pair
    a.set("notes.md", None, "ONE\ntwo\nthree\nfour\nfive\n")
    a.flush()
    a.push()
    b.set("notes.md", None, "one\ntwo\nthree\nfour\nFIVE\n")
    b.flush()
    b.sync()
    assert b.get("notes.md") == "ONE\ntwo\nthree\nfour\nFIVE\n"
    a.pull()
    assert a.get("notes.md") == b.get("notes.md")


@pytest.mark.parametrize("rule, expected", [("ours", "b"), ("theirs", "a")])
def test_text_conflict_follows_the_rule(pair: Any, rule: str, expected: str) -> None:
    a, b = pair
    a.set("notes.md", None, "one\nTWO-a\nthree\nfour\nfive\n")
    a.flush()
    a.push()
    b.set("notes.md", None, "one\nTWO-b\nthree\nfour\nfive\n")
    b.flush()
    b.sync(on_conflict=rule)
    assert b.get("notes.md") == f"one\nTWO-{expected}\nthree\nfour\nfive\n"


@pytest.mark.parametrize("rule, expected", [("ours", b"b-bytes"), ("theirs", b"a-bytes")])
def test_bytes_documents_follow_the_rule_as_a_whole(pair: Any, rule: str, expected: bytes) -> None:
    a, b = pair
    a.set("blob.bin", None, b"a-bytes")
    a.flush()
    a.push()
    b.set("blob.bin", None, b"b-bytes")
    b.flush()
    b.sync(on_conflict=rule)
    assert b.get("blob.bin") == expected
    b.set("blob.bin", None, b"b3")
    b.flush()
    b.push()
    a.set("blob.bin", None, b"a3")
    a.flush()
    with pytest.raises(gitstate.MergeConflict, match=r"blob\.bin"):
        a.pull(on_conflict="fail")
    assert a.get("blob.bin") == b"a3"


def test_delete_on_one_side_modify_on_the_other(pair: Any) -> None:
    a, b = pair
    a.delete("memory/work.yaml")
    a.flush()
    a.push()
    b.set("memory/work.yaml", "mood", "changed")
    b.flush()
    b.sync()  # ours: keep the modified document
    assert b.get("memory/work.yaml", "mood") == "changed"
    a.set("state.json", "services.slack", True)
    a.flush()
    a.sync()
    assert a.get("memory/work.yaml", "mood") == "changed"
    b.delete("notes.md")
    b.flush()
    b.sync()
    a.set("state.json", "owner", "a")
    a.flush()
    a.sync()
    assert not a.exists("notes.md")  # deleted on one side, untouched on the other


def test_unparsable_document_on_one_side_merges_as_a_whole(tmp_path: Path, pair: Any) -> None:
    a, b = pair
    with a._repo.lock():  # a hand-made commit holding invalid JSON, pushed to the remote
        bad = a._repo.commit_files(a.head, {"state.json": b"{not json"}, "broken", author="t <t@x>", move_branch=False)
        a._repo.update_ref("refs/heads/main", bad, a.head)
        gremote.push(a._repo, "origin")
    b.set("state.json", "owner", "b")
    b.flush()
    b.sync()  # ours wins for the whole document
    assert b.get("state.json", "owner") == "b"
    conflict_line = [x for x in commit_message(tmp_path / "b").splitlines() if x.startswith("conflict")]
    assert conflict_line and "state.json" in conflict_line[0]


def test_pending_writes_are_reapplied_on_top_of_a_pull(pair: Any, bare: Path) -> None:
    a, b = pair
    a.set("state.json", "services.slack", True)
    a.flush()
    a.push()
    b.set("state.json", "services.teams", True)  # pending, not flushed
    assert b.pending == 1
    b.pull()
    assert b.get("state.json", "services") == {"slack": True, "mail": True, "teams": True}
    assert b.pending == 1
    b.flush()
    b.push()
    assert show(bare, "state.json")["services"] == {"slack": True, "mail": True, "teams": True}


def test_rejected_push_suggests_sync_and_loses_nothing(pair: Any, bare: Path) -> None:
    a, b = pair
    a.set("state.json", "services.a", 1)
    a.flush()
    a.push()
    remote_before = bare_head(bare)
    b.set("state.json", "services.b", 2)
    b.flush()
    local_before = b.head
    with pytest.raises(gitstate.PushRejected, match="gitstate sync origin") as info:
        b.push()
    assert "origin" in str(info.value)
    assert bare_head(bare) == remote_before and b.head == local_before
    status = b.push_status("origin")["origin"]
    assert status["commits_waiting"] == 1 and "rejected" in status["last_error"]
    b.sync()
    assert b.get("state.json", "services") == {"slack": False, "mail": True, "a": 1, "b": 2}
    assert b._repo.is_ancestor(remote_before, b.head) and b._repo.is_ancestor(local_before, b.head)
    assert bare_head(bare) == b.head
    assert b.push_status()["origin"]["last_error"] is None
    fsck(bare)


def test_unrelated_histories_merge_key_by_key(tmp_path: Path, bare: Path) -> None:
    with open_store(tmp_path / "a") as a:
        a.remote_add("origin", str(bare))
        a.set("state.json", None, {"a": 1, "same": "x", "both": "a"})
        a.flush()
        a.push()
    with open_store(tmp_path / "b") as b:
        b.remote_add("origin", str(bare))
        b.set("state.json", None, {"b": 2, "same": "x", "both": "b"})
        b.set("other.json", "k", True)
        b.flush()
        b.sync()
        assert b.get("state.json") == {"a": 1, "b": 2, "same": "x", "both": "b"}
        assert b.get("other.json") == {"k": True}


def test_integrate_outcomes_directly(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r")
    author = "t <t@x>"
    with repo.lock():
        base = repo.commit_files(None, {"s.json": b'{"a": 1, "b": 1}\n'}, "base", author=author)
        ahead = repo.commit_files(base, {"s.json": b'{"a": 2, "b": 1}\n'}, "a", author=author, move_branch=False)
        assert gremote.integrate(repo, base, None, author=author).kind == "none"
        assert gremote.integrate(repo, base, base, author=author).kind == "none"
        ff = gremote.integrate(repo, base, ahead, author=author)
        assert (ff.kind, ff.commit, [c.key for c in ff.changes]) == ("fast-forward", ahead, [("a",)])
        assert gremote.integrate(repo, ahead, base, author=author).kind == "none"
        assert gremote.integrate(repo, None, ahead, author=author).kind == "fast-forward"
        other = repo.commit_files(base, {"s.json": b'{"a": 3, "b": 2}\n'}, "o", author=author, move_branch=False)
        out = gremote.integrate(repo, ahead, other, author=author, remote="origin/main")
        assert out.kind == "merge" and out.base == base
        info = repo.commit_info(out.commit)
        assert info.parents == (ahead, other)
        assert json.loads(repo.read_at(info.tree, "s.json")) == {"a": 2, "b": 2}
        assert [(c.doc, c.key, c.ours, c.theirs, c.chosen) for c in out.conflicts] == [("s.json", ("a",), 2, 3, "ours")]
        assert repo.head() == base  # the branch is not moved by integrate
        with pytest.raises(ValueError, match="merge rule"):
            gremote.integrate(repo, ahead, other, author=author, rule="mine")
    repo.close()


def test_ahead_behind_counts(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "r")
    with repo.lock():
        c = repo.commit_files(None, {"a.txt": b"0"}, "0", author="t <t@x>")
        base = c
        for i in range(5):
            c = repo.commit_files(c, {"a.txt": str(i).encode()}, str(i), author="t <t@x>")
        side = base
        for i in range(3):
            side = repo.commit_files(side, {"b.txt": str(i).encode()}, f"s{i}", author="t <t@x>", move_branch=False)
    assert ancestry.ahead_behind(repo, c, side) == (5, 3)
    assert ancestry.ahead_behind(repo, c, None) == (6, 0)
    assert ancestry.ahead_behind(repo, c, c) == (0, 0)
    assert ancestry.merge_base(repo, c, side) == base
    assert ancestry.is_ancestor(repo, base, c) and not ancestry.is_ancestor(repo, side, c)
    repo.close()


# ============================================================================ remotes, credentials, errors
def test_credentials_in_url_are_split_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "p4ss/w:rd@x"
    url = f"https://bob:{secret.replace('/', '%2F').replace(':', '%3A').replace('@', '%40')}@git.example.com/s.git"
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", url)
        repo = store._repo
        config = (repo.git_dir / "config").read_text()
        assert "bob" not in config and "p4ss" not in config
        assert "url = https://git.example.com/s.git" in config
        assert "fetch = +refs/heads/*:refs/remotes/origin/*" in config
        creds = repo.meta_dir / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert json.loads(creds.read_text()) == {"origin": {"username": "bob", "password": secret}}
        ep = gremote._endpoint(repo, "origin")
        assert (ep.username, ep.password) == ("bob", secret)
        assert secret not in repr(ep)
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_TOKEN", "tok")
        ep = gremote._endpoint(repo, "origin")
        assert (ep.username, ep.password) == ("bob", "tok")  # each field: environment, stored, URL
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_USERNAME", "carol")
        monkeypatch.setenv("GITSTATE_REMOTE_ORIGIN_PASSWORD", "pw")
        ep = gremote._endpoint(repo, "origin")
        assert (ep.username, ep.password) == ("carol", "pw")
        store.remote_add("origin", "https://git.example.com/s.git")  # re-adding without credentials clears them
        assert not creds.exists()
        monkeypatch.delenv("GITSTATE_REMOTE_ORIGIN_USERNAME")
        monkeypatch.delenv("GITSTATE_REMOTE_ORIGIN_PASSWORD")
        ep = gremote._endpoint(repo, "origin")
        assert (ep.username, ep.password) == ("x-access-token", "tok")
        monkeypatch.delenv("GITSTATE_REMOTE_ORIGIN_TOKEN")
        assert (gremote._endpoint(repo, "origin").username, gremote._endpoint(repo, "origin").password) == (
            None,
            None,
        )


def test_remote_names_and_urls_are_validated(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        for name in ("", "-x", "a b", "../x", "x.lock", "a/b"):
            with pytest.raises(gitstate.RemoteError, match="invalid remote name"):
                store.remote_add(name, "/srv/x.git")
        with pytest.raises(gitstate.RemoteError, match="password"):
            store.remote_add("o", "ssh://u:pw@host/x.git")
        with pytest.raises(gitstate.RemoteError, match="credentials"):
            store.remote_add("o", "git://u:pw@host/x.git")
        with pytest.raises(gitstate.RemoteError, match="unsupported"):
            store.remote_add("o", "rsync://host/x")
        store.remote_add("o", "git@host.example:me/state.git")
        store.remote_add("o", "git@host.example:me/state.git")  # idempotent
        assert gremote.list_remotes(store._repo) == {"o": "git@host.example:me/state.git"}
        with pytest.raises(gitstate.RemoteError, match="no remote named 'nope'"):
            store.push("nope")
        with pytest.raises(gitstate.RemoteError, match="no remote named"):
            store.pull("nope")


def test_redact_url() -> None:
    # http(s): no user info (a user name can be a token) and no query (all of it counts as a credential)
    assert gremote.redact_url("https://u:p@h:8443/x?y=1") == "https://h:8443/x"
    assert gremote.redact_url("https://h/x") == "https://h/x"
    assert gremote.redact_url("u:p@h:x") == "u@h:x"


def test_missing_remote_is_a_clear_error_and_recovers(tmp_path: Path) -> None:
    target = tmp_path / "later.git"
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", str(target))
        store.set("state.json", "a", 1)
        store.flush()
        with pytest.raises(gitstate.RemoteError, match="no Git repository at origin"):
            store.push()
        with pytest.raises(gitstate.RemoteError, match="no Git repository"):
            store.sync()
        store.set("state.json", "b", 2)
        assert store.flush()
        make_bare(target)
        assert store.push() == store.head == bare_head(target)


def test_remove_remote(tmp_path: Path, bare: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", "https://u:pw@example.com/x.git")
        store.remote_add("backup", str(bare))
        store.set("a.json", "x", 1)
        store.flush()
        store.push("backup")
        gremote.remove_remote(store._repo, "backup")
        gremote.remove_remote(store._repo, "origin")
        assert gremote.list_remotes(store._repo) == {}
        assert store._repo.list_refs("refs/remotes/") == {}
        assert not (store._repo.meta_dir / "credentials.json").exists()
        with pytest.raises(gitstate.RemoteError, match="no remote named"):
            gremote.remove_remote(store._repo, "backup")


def test_push_status_survives_restart(tmp_path: Path, bare: Path) -> None:
    missing = tmp_path / "gone.git"
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", str(bare))
        store.remote_add("gone", str(missing))
        store.set("a.json", "x", 1)
        store.flush()
        store.push()
        store.set("a.json", "x", 2)
        store.flush()
        with pytest.raises(gitstate.RemoteError):
            store.push("gone")
    with open_store(tmp_path / "s") as store:
        st = store.push_status()
        assert set(st) == {"gone", "origin"}
        assert st["origin"]["commits_waiting"] == 1 and st["origin"]["last_error"] is None
        assert st["origin"]["last_success"] is not None and st["origin"]["behind"] == 0
        assert st["gone"]["commits_waiting"] == 2 and "no Git repository" in st["gone"]["last_error"]
        assert st["gone"]["last_success"] is None and st["gone"]["auto_push"] is False
        with pytest.raises(gitstate.RemoteError):
            store.push_status("nope")


# ============================================================================ auto-push
def test_auto_push_after_commits(tmp_path: Path, bare: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.remote_add("origin", str(bare))
    events: list[Any] = []
    store = open_store(
        tmp_path / "s",
        durability="immediate",
        auto_push="origin",
        on={"pushed": events.append, "push_error": events.append},
    )
    try:
        assert isinstance(store._push_queue, gremote.AutoPusher)
        assert store.push_status()["origin"]["auto_push"] is True
        for i in range(20):
            store.set("state.json", f"k{i}", i)
        wait_until(lambda: sum(e.count for e in events) == 20, 10, "auto-push to catch up")
        assert bare_head(bare) == store.head
        assert all(e.name == "pushed" for e in events)  # each commit counted once, batched into fewer pushes
        assert store.push_status()["origin"]["commits_waiting"] == 0
    finally:
        store.close()
    assert gremote.push_status(Repository.open(tmp_path / "s"))["origin"]["auto_push"] is False
    fsck(bare)


def test_auto_push_backs_off_then_recovers(tmp_path: Path, bare: Path) -> None:
    hidden = tmp_path / "hidden.git"
    store = open_store(tmp_path / "s")
    events: list[Any] = []
    store.on("pushed", events.append)
    store.on("push_error", events.append)
    try:
        store.remote_add("origin", str(bare))
        bare.rename(hidden)  # the remote goes away
        pusher = gremote.start_auto_push(
            store, "origin", batch_ms=10, min_interval_ms=0, initial_backoff_s=0.02, max_backoff_s=0.1
        )
        store.set("state.json", "a", 1)
        t0 = time.perf_counter()
        store.flush()  # never waits on the pusher
        assert time.perf_counter() - t0 < 1.0
        wait_until(lambda: sum(e.name == "push_error" for e in events) >= 3, 10, "retries")
        errors = [e for e in events if e.name == "push_error"]
        assert [e.attempts for e in errors[:3]] == [1, 2, 3]
        assert all(e.retry_in_s is not None and e.retry_in_s <= 0.1 for e in errors)
        assert "no Git repository" in errors[0].error
        st = store.push_status()["origin"]
        assert st["attempts"] >= 1 and "no Git repository" in st["last_error"]
        hidden.rename(bare)  # back
        wait_until(lambda: events[-1].name == "pushed", 10, "push once the remote is back")
        assert pusher.wait_idle(5)
        assert bare_head(bare) == store.head and events[-1].count == 1
        st = store.push_status()["origin"]
        assert st["last_error"] is None and st["attempts"] == 0
    finally:
        store.close()


def test_auto_push_never_forces_a_rejected_push(pair: Any, bare: Path) -> None:
    a, b = pair
    a.set("state.json", "owner", "a")
    a.flush()
    a.push()
    remote_head = bare_head(bare)
    events: list[Any] = []
    b.on("push_error", events.append)
    b.on("pushed", events.append)
    gremote.start_auto_push(b, "origin", batch_ms=10, min_interval_ms=0, initial_backoff_s=0.02, max_backoff_s=0.05)
    b.set("state.json", "services.b", 1)
    b.flush()
    wait_until(lambda: sum(e.name == "push_error" for e in events) >= 2, 10, "rejections")
    assert bare_head(bare) == remote_head
    assert "gitstate sync origin" in events[0].error
    b.sync()  # the merge moves the branch: the pusher pushes it
    wait_until(lambda: bare_head(bare) == b.head, 10, "auto-push after sync")
    assert b.get("state.json", "owner") == "a"


def test_auto_push_waits_for_the_remote_to_be_added_and_pushes_on_close(tmp_path: Path, bare: Path) -> None:
    events: list[Any] = []
    store = open_store(tmp_path / "s", auto_push="origin", on={"pushed": events.append, "push_error": events.append})
    try:
        store.set("state.json", "a", 1)
        store.flush()
        wait_until(lambda: any(e.name == "push_error" for e in events), 10, "missing-remote error")
        assert "no remote named 'origin'" in events[0].error
        store.remote_add("origin", str(bare))  # wakes the pusher at once
        wait_until(lambda: bare_head(bare) == store.head, 10, "push after remote_add")
        store.set("state.json", "b", 2)
    finally:
        store.close()  # final flush, then one last bounded push
    with open_store(tmp_path / "s") as again:
        assert bare_head(bare) == again.head


def test_close_does_not_hang_on_an_unreachable_remote(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    store.remote_add("origin", str(tmp_path / "nowhere.git"))
    pusher = gremote.start_auto_push(store, "origin", batch_ms=0, initial_backoff_s=30, final_timeout_s=1)
    store.set("a.json", "x", 1)
    store.flush()
    t0 = time.monotonic()
    store.close()
    assert time.monotonic() - t0 < 5
    assert not pusher.running


# ============================================================================ CLI
def run(args: list[str], *, input: str | None = None) -> Any:
    return invoke(args, input=input)


def test_cli_remote_push_pull_sync_clone(tmp_path: Path, bare: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert run(["-C", a, "init"]).exit_code == 0
    res = run(["-C", a, "remote", "add", "origin", str(bare)])
    assert res.exit_code == 0 and f"remote origin -> {bare}" in res.output
    res = run(["-C", a, "remote", "list"])
    assert res.output.strip() == f"origin\t{bare}"
    assert json.loads(run(["-C", a, "remote", "list", "--json"]).output) == {"origin": str(bare)}
    res = run(["-C", a, "push"])
    assert res.exit_code == 0 and "up to date (nothing to push)" in res.output
    run(["-C", a, "set", "state.json", "services.slack", "true"])
    res = run(["-C", a, "push"])
    assert res.exit_code == 0 and res.output.startswith("pushed ") and "to origin" in res.output
    res = run(["clone", str(bare), b])
    assert res.exit_code == 0 and f"cloned {bare} into {b}" in res.output and "1 document(s)" in res.output
    run(["-C", a, "set", "state.json", "services.a", "1"])
    run(["-C", b, "set", "state.json", "services.b", "2"])
    res = run(["-C", a, "sync"])
    assert res.exit_code == 0 and "pushed" in res.output
    res = run(["-C", b, "pull", "--json"])
    out = json.loads(res.output)
    assert out["kind"] == "merge" and out["conflicts"] == []
    res = run(["-C", b, "sync"])
    assert res.exit_code == 0 and "already up to date" in res.output and "pushed" in res.output
    res = run(["-C", a, "pull"])
    assert res.exit_code == 0 and "fast-forward" in res.output
    assert (
        run(["-C", a, "get", "state.json", "services"]).output == run(["-C", b, "get", "state.json", "services"]).output
    )
    res = run(["-C", a, "remote", "remove", "origin"])
    assert res.exit_code == 0 and run(["-C", a, "remote", "list"]).output == ""


def test_cli_conflicts_and_errors(tmp_path: Path, pair: Any, bare: Path) -> None:
    a, b = pair
    a.set("state.json", "owner", "a")
    a.flush()
    a.push()
    b.set("state.json", "owner", "b")
    b.flush()
    bdir = str(tmp_path / "b")
    res = run(["-C", bdir, "push"])
    assert res.exit_code == 1 and "rejected" in res.output and "gitstate sync origin" in res.output
    assert "Traceback" not in res.output
    res = run(["-C", bdir, "pull", "--on-conflict", "fail"])
    assert res.exit_code == 1 and "owner" in res.output and len(res.output.strip().splitlines()) == 1
    res = run(["-C", bdir, "pull", "--on-conflict", "bogus"])
    assert res.exit_code == 2
    res = run(["-C", bdir, "sync", "--on-conflict", "theirs"])
    assert res.exit_code == 0, res.output
    assert "1 conflict(s) resolved by rule 'theirs'" in res.output
    assert 'conflict state.json: owner: took remote "a"' in res.output
    res = run(["-C", bdir, "push", "nope"])
    assert res.exit_code == 1 and "no remote named 'nope'" in res.output
    res = run(["clone", str(tmp_path / "missing.git"), str(tmp_path / "x")])
    assert res.exit_code == 1 and "no Git repository" in res.output


def test_cli_remote_add_reads_password_from_stdin(tmp_path: Path) -> None:
    d = str(tmp_path / "s")
    run(["-C", d, "init"])
    res = run(
        ["-C", d, "remote", "add", "origin", "https://git.example.com/s.git", "--username", "bob", "--password-stdin"],
        input="t0k3n-secret\n",
    )
    assert res.exit_code == 0 and "t0k3n-secret" not in res.output
    assert "remote origin -> https://git.example.com/s.git" in res.output
    creds = json.loads((tmp_path / "s" / ".git" / "gitstate" / "credentials.json").read_text())
    assert creds == {"origin": {"username": "bob", "password": "t0k3n-secret"}}
    assert "t0k3n" not in (tmp_path / "s" / ".git" / "config").read_text()
    res = run(["-C", d, "remote", "add", "o2", "git://h/x.git", "--username", "bob"])
    assert res.exit_code == 2


def test_merge_conflict_describe_and_dict() -> None:
    c = gremote.DocConflict("s.json", ("a", 0), docdiff.MISSING, 1, 2, "theirs")
    assert c.describe() == "conflict s.json: a.0: took remote 2; local value 1 replaced"
    assert c.to_dict() == {"doc": "s.json", "key": ["a", 0], "ours": 1, "theirs": 2, "chosen": "theirs"}


def test_cli_merge_rules_match_the_library() -> None:
    """The CLI lists the rules without importing gitstate.remote at start-up; they must stay the same."""
    from gitstate.cli import remote as cli_remote

    assert list(cli_remote._RULES.choices) == list(gremote.MERGE_RULES)
