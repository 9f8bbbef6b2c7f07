"""The history commands of the CLI: log, show, diff, restore, undo, snapshot, snapshots, status."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from helpers import fsck, git, git_commit_at, make_store, run_cli

import gitstate
from gitstate.cli import main

HISTORY_COMMANDS = ["log", "show", "diff", "restore", "undo", "snapshot", "snapshots", "status"]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store with four commits: state.json created, slack flipped, notes.md created, owner set."""
    p = tmp_path / "store"
    with make_store(p) as s:
        s.set("state.json", "services", {"slack": False, "mail": True})
        s.flush()
        s.set("state.json", "services.slack", True)
        s.flush()
        s.set("notes.md", None, "one\ntwo\n")
        s.flush("write notes")
        s.set("state.json", "owner", "alice")
        s.flush()
    return p


def cli(path: Path | None, *args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    argv = (["-C", str(path)] if path is not None else []) + list(args)
    return runner.invoke(main, argv, env=env, catch_exceptions=False)


def ok(path: Path | None, *args: str, env: dict[str, str] | None = None) -> str:
    result = cli(path, *args, env=env)
    assert result.exit_code == 0, (args, result.output)
    assert "\x1b[" not in result.output  # colour only on a terminal
    return result.stdout


def fails(path: Path | None, *args: str, code: int = 1) -> str:
    result = cli(path, *args)
    assert result.exit_code == code, (args, result.output)
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gitstate: error: "), result.stderr
        assert "Traceback" not in result.output
    return result.stderr


def ids(path: Path) -> list[str]:
    return git(path, "log", "--format=%H").split()


# ===================================================================== help
def test_command_table_matches_the_modules() -> None:
    """The root group's name -> module table (lazy loading) names exactly the commands the modules define."""
    import importlib

    from gitstate.cli._common import COMMAND_MODULES

    for name, module in COMMAND_MODULES.items():
        mod = importlib.import_module(f"gitstate.cli.{module}")
        assert name in main.commands, name
        assert main.commands[name].callback.__module__ == mod.__name__, name  # groups included
    assert set(main.commands) == set(COMMAND_MODULES)


def test_a_command_loads_only_its_own_module() -> None:
    """`gitstate log` must not pay for importing the watcher, remotes or maintenance (start-up time)."""
    code = (
        "import sys; from gitstate.cli import main\n"
        "try: main(['log', '--help'])\n"
        "except SystemExit: pass\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('gitstate'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "gitstate.cli.history" in loaded
    assert not loaded & {"gitstate.cli.watch", "gitstate.cli.remote", "gitstate.watcher", "gitstate.remote"}, loaded


def test_every_command_has_help() -> None:
    assert set(HISTORY_COMMANDS) <= set(main.list_commands(click.Context(main)))
    for name in main.list_commands(click.Context(main)):
        result = cli(None, name, "--help")
        assert result.exit_code == 0, name
        assert "Usage: " in result.output
        if name in HISTORY_COMMANDS:
            assert "Example" in result.output, name
    assert cli(None, "--help").exit_code == 0


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True, "é ✓"], "b": {}, "c": [], "d": {"nested": {"x": -3}}},
        {"big": 2**70, "neg": -(2**65)},  # beyond orjson's 64-bit integers: the standard library writes them
        {"nan": float("nan"), "inf": float("inf"), "none": None},  # NaN is kept, not turned into null
        [{"when": __import__("datetime").date(2024, 5, 1)}, b"bytes", (1, 2)],
    ],
)
def test_emit_json_writes_what_the_standard_library_would(value: object, capsys: pytest.CaptureFixture[str]) -> None:
    from gitstate.cli._common import emit_json, to_jsonable

    emit_json(value)
    out = capsys.readouterr().out
    expected = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n"
    assert out == expected
    assert out.count("NaN") == expected.count("NaN") and out.count("Infinity") == expected.count("Infinity")


def test_version_is_the_package_version() -> None:
    from importlib.metadata import version

    result = cli(None, "--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"gitstate, version {gitstate.__version__}"
    assert version("gitstate-store") == gitstate.__version__  # pyproject.toml reads it from the package


def test_every_data_command_takes_json() -> None:
    for name in HISTORY_COMMANDS:
        assert "--json" in cli(None, name, "--help").output, name


# ===================================================================== log
def test_log_newest_first_with_actor_and_changed_keys(path: Path) -> None:
    out = ok(path, "log")
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == [i[:8] for i in ids(path)]
    assert all("library" in ln for ln in lines)
    assert 'state.json: owner = "alice"' in lines[0]
    assert "write notes" in lines[1] and "[notes.md: (document)]" in lines[1]  # custom subject: keys shown
    assert "services.slack false -> true" in lines[2]
    assert all("just now" in ln or "seconds ago" in ln for ln in lines)


def test_log_json_limit_and_doc(path: Path) -> None:
    items = json.loads(ok(path, "log", "--json"))
    assert [i["id"] for i in items] == ids(path)
    assert items[0]["actor"] == "library" and items[0]["docs"] == ["state.json"]
    assert items[0]["keys"] == [{"doc": "state.json", "key": ["owner"]}]
    # ISO 8601 with the author's UTC offset, the same instant and offset git records for each commit.
    authored = git(path, "log", "--format=%aI").split()
    for item, git_time in zip(items, authored, strict=True):
        when, expected = dt.datetime.fromisoformat(item["time"]), dt.datetime.fromisoformat(git_time)
        assert when == expected and when.utcoffset() == expected.utcoffset(), (item["time"], git_time)
    assert len(json.loads(ok(path, "log", "-n", "2", "--json"))) == 2
    assert [i["docs"] for i in json.loads(ok(path, "log", "notes.md", "--json"))] == [["notes.md"]]
    assert fails(path, "log", "-n", "0", code=2)


def test_log_key_lists_exactly_the_commits_that_changed_it(path: Path) -> None:
    items = json.loads(ok(path, "log", "state.json", "--key", "services.slack", "--json"))
    assert [i["id"] for i in items] == [ids(path)[2], ids(path)[3]]
    assert items[0]["changes"] == [
        {"doc": "state.json", "key": ["services", "slack"], "op": "change", "old": False, "new": True}
    ]
    assert items[1]["changes"][0]["op"] == "add"
    human = ok(path, "log", "--key", "services.slack")
    assert "~ services.slack: false -> true" in human
    assert "+ services.slack: false" in human
    assert "gitstate" in human  # who
    err = fails(path, "log", "state.json", "--key", "services.nope")
    assert "services.nope" in err
    err = fails(path, "log", "nope.json")
    assert "nope.json" in err
    assert "empty part" in fails(path, "log", "--key", "a..b", code=2)


def test_a_malformed_key_is_a_usage_error_on_every_command(path: Path) -> None:
    for args in (("get", "state.json", "a.."), ("set", "state.json", "a..", "1"), ("delete", "state.json", "")):
        err = fails(path, *args, code=2)
        assert "Invalid value for" in err and "has an empty part" in err and "Traceback" not in err, (args, err)


def test_every_command_names_the_missing_store_the_same_way(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (("log",), ("status",), ("get", "state.json"), ("gc",), ("remote", "list"), ("watch",)):
        err = fails(missing, *args)
        assert f"no gitstate store at {missing}; create one with 'gitstate -C {missing} init'" in err, (args, err)


# ===================================================================== show
def test_show_rev_doc_prints_the_document_as_of_rev(path: Path) -> None:
    for rev in ("HEAD", "HEAD~1", "HEAD~3", ids(path)[2][:7]):
        expected = json.loads(git(path, "show", f"{rev}:state.json"))
        assert json.loads(ok(path, "show", rev, "state.json")) == expected
    assert json.loads(ok(path, "show", "HEAD~3", "state.json", "--key", "services.slack")) is False
    assert ok(path, "show", "HEAD", "notes.md") == git(path, "show", "HEAD:notes.md")
    assert json.loads(ok(path, "show", "HEAD", "notes.md", "--json")) == "one\ntwo\n"
    assert "notes.md" in fails(path, "show", "HEAD~3", "notes.md")
    assert "nope" in fails(path, "show", "HEAD", "state.json", "--key", "nope")


def test_show_commit(path: Path) -> None:
    out = ok(path, "show", "HEAD~2")
    assert f"commit {ids(path)[2]}" in out
    assert "Actor:  library" in out
    assert "~ services.slack: false -> true" in out
    item = json.loads(ok(path, "show", "HEAD~2", "--json"))
    assert item["id"] == ids(path)[2]
    assert item["changes"] == [
        {"doc": "state.json", "key": ["services", "slack"], "op": "change", "old": False, "new": True}
    ]
    text = ok(path, "show", "HEAD~1")
    assert "+one" in text and "+two" in text  # text documents as unified diffs
    err = fails(path, "show", "nosuchrev")
    assert "nosuchrev" in err and "unknown revision" in err


# ===================================================================== diff
def test_diff_between_revisions(path: Path) -> None:
    out = ok(path, "diff")
    assert out.splitlines() == ["state.json", '  + owner: "alice"']
    changes = json.loads(ok(path, "diff", "HEAD~3", "HEAD", "--json"))
    assert {(c["doc"], tuple(c["key"]), c["op"]) for c in changes} == {
        ("notes.md", (), "add"),
        ("state.json", ("services", "slack"), "change"),
        ("state.json", ("owner",), "add"),
    }
    assert json.loads(ok(path, "diff", "HEAD~3", "--doc", "notes.md", "--json"))[0]["new"] == "one\ntwo\n"
    text = ok(path, "diff", "HEAD~3", "HEAD", "--text")
    assert "--- a/state.json" in text and '+  "owner": "alice"' in text and "+++ b/notes.md" in text
    texts = json.loads(ok(path, "diff", "HEAD~3", "HEAD", "--text", "--json"))
    assert set(texts) == {"notes.md", "state.json"}
    assert ok(path, "diff", "HEAD", "HEAD") == ""
    assert "HEAD~9" in fails(path, "diff", "HEAD~9")
    assert "zzz.json" in fails(path, "diff", "HEAD~1", "--doc", "zzz.json")


# ===================================================================== restore and undo
def test_restore_dry_run_then_restore(path: Path) -> None:
    head = ids(path)[0]
    out = ok(path, "restore", "HEAD~3", "--dry-run")
    assert "would change" in out and "- owner" in out and "~ services.slack: true -> false" in out
    assert ids(path)[0] == head  # nothing changed
    dry = json.loads(ok(path, "restore", "HEAD~3", "state.json", "--dry-run", "--json"))
    assert dry["dry_run"] and {tuple(c["key"]) for c in dry["changes"]} == {("services", "slack"), ("owner",)}
    target = ids(path)[3]
    out = ok(path, "restore", "HEAD~3", "state.json")
    assert out.startswith("restored state.json to HEAD~3")
    assert git(path, "show", "HEAD:state.json") == git(path, "show", f"{target}:state.json")
    assert (path / "notes.md").exists()
    assert (
        json.loads(ok(path, "log", "-n", "1", "--json"))[0]["actor"] == "human"
    )  # typed at the command line (SPEC: CLI writes are the human's)
    result = json.loads(ok(path, "restore", ids(path)[1], "--json"))  # back to before the restore
    assert result["changed"] and result["commit"] == ids(path)[0]
    assert git(path, "diff", ids(path)[2], "HEAD") == ""
    assert "nothing to restore" in ok(path, "restore", "HEAD", "state.json")
    assert "nope.json" in fails(path, "restore", "HEAD~1", "nope.json")
    assert "nope-rev" in fails(path, "restore", "nope-rev")
    assert git(path, "status", "--porcelain") == ""
    fsck(path)


def test_undo_twice(path: Path) -> None:
    before = git(path, "show", "HEAD~2:state.json")
    out = ok(path, "undo")
    assert out.startswith(f"undid {ids(path)[1][:8]}")
    data = json.loads(ok(path, "undo", "--json"))
    assert data["undone"] == ids(path)[3] and data["changed"]
    assert git(path, "show", "HEAD:state.json") == before
    assert not (path / "notes.md").exists()
    assert len(ids(path)) == 6
    fsck(path)


# ===================================================================== snapshots
def test_snapshot_and_snapshots(path: Path) -> None:
    assert ok(path, "snapshots") == ""
    assert ok(path, "snapshot", "before-upgrade", "-m", "safe point").startswith("snapshot before-upgrade -> ")
    assert git(path, "tag").split() == ["before-upgrade"]
    listing = json.loads(ok(path, "snapshots", "--json"))
    assert listing[0]["name"] == "before-upgrade" and listing[0]["commit"] == ids(path)[0]
    assert listing[0]["message"] == "safe point"
    assert "before-upgrade" in ok(path, "snapshots")
    assert "already exists" in fails(path, "snapshot", "before-upgrade")
    assert "invalid snapshot name" in fails(path, "snapshot", "bad name")
    data = json.loads(ok(path, "snapshot", "v2", "--json"))
    assert data == {"name": "v2", "commit": ids(path)[0]}
    ok(path, "set", "state.json", "owner", "bob")
    assert json.loads(ok(path, "show", "before-upgrade", "state.json", "--key", "owner")) == "alice"


# ===================================================================== status
def test_status_shows_head_edits_and_snapshots(path: Path) -> None:
    ok(path, "snapshot", "v1")
    (path / "state.json").write_text('{"edited": true}\n')
    (path / "new.md").write_text("hi\n")
    (path / "notes.md").unlink()
    out = ok(path, "status")
    assert f"HEAD       {ids(path)[0][:8]}" in out and "library" in out
    assert "modified:" in out and "state.json" in out and "new.md" in out and "deleted:" in out
    assert "snapshots  1 (latest: v1" in out
    assert "remote     none" in out
    data = json.loads(ok(path, "status", "--json"))
    assert data["head"]["id"] == ids(path)[0]
    assert {(u["doc"], u["state"]) for u in data["uncommitted"]} == {
        ("state.json", "modified"),
        ("new.md", "new"),
        ("notes.md", "deleted"),
    }
    assert [s["name"] for s in data["snapshots"]] == ["v1"]
    # status commits nothing
    assert len(ids(path)) == 4
    assert git(path, "status", "--porcelain") != ""


def test_status_remote_ahead_behind(path: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(path, "remote", "add", "origin", str(remote))
    assert "origin: not fetched yet" in ok(path, "status")
    git(path, "push", "-q", "origin", "main")
    git(path, "fetch", "-q", "origin")
    ok(path, "set", "state.json", "owner", "bob")
    data = json.loads(ok(path, "status", "--json"))
    assert data["remotes"]["origin"]["ahead"] == 1 and data["remotes"]["origin"]["behind"] == 0
    assert "origin: 1 ahead, 0 behind" in ok(path, "status")


def test_status_of_an_empty_store(tmp_path: Path) -> None:
    ok(tmp_path / "s", "init")
    assert "(no commits yet)" in ok(tmp_path / "s", "status")
    assert ok(tmp_path / "s", "log") == ""


# ===================================================================== where the store is
def test_directory_from_option_env_and_cwd(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    expected = ids(path)[0][:8]
    assert ok(None, "log", "-n", "1", env={"GITSTATE_DIR": str(path)}).startswith(expected)
    monkeypatch.chdir(path)
    monkeypatch.delenv("GITSTATE_DIR", raising=False)
    assert ok(None, "log", "-n", "1").startswith(expected)
    monkeypatch.chdir(tmp_path)
    err = fails(tmp_path / "nowhere", "log")
    assert "no gitstate store" in err
    assert "no gitstate store" in fails(None, "status")


def test_times_are_human_readable(tmp_path: Path) -> None:
    import time

    p = tmp_path / "s"
    git_commit_at(p, {"a.json": '{"x": 1}\n'}, time.time() - 3 * 3600, actor="library")
    git_commit_at(p, {"a.json": '{"x": 2}\n'}, time.time() - 90, message="by hand")
    lines = ok(p, "log").splitlines()
    assert "minute ago" in lines[0] and "human" in lines[0]
    assert "3 hours ago" in lines[1]
    assert json.loads(ok(p, "show", "2h ago", "a.json")) == {"x": 1}
    assert "before the first commit" in fails(p, "show", "5h ago", "a.json")


# ===================================================================== real subprocesses
def test_subprocess_log_json_status_and_errors(path: Path) -> None:
    proc = run_cli("-C", str(path), "log", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [i["id"] for i in json.loads(proc.stdout)] == ids(path)
    proc = run_cli("-C", str(path), "status")
    assert proc.returncode == 0 and "HEAD" in proc.stdout and "\x1b[" not in proc.stdout
    proc = run_cli("-C", str(path), "show", "HEAD~42")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "HEAD~42" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("-C", str(path), "log", "--bogus")
    assert proc.returncode == 2


def test_subprocess_log_into_a_closed_pipe(tmp_path: Path) -> None:
    from gitstate.repo import Repository

    repo = Repository.open(tmp_path / "big", create=True)  # 2000 commits, fast: more output than a pipe holds
    parent = None
    with repo.lock():
        for i in range(2000):
            parent = repo.commit_files(
                parent,
                {"s.json": b'{"n": %d}\n' % i},
                f"s.json: n {i - 1} -> {i}\n\nGitstate-Actor: library\n",
                author="t <t@t>",
                when=1_700_000_000 + i,
                fsync=False,
            )
    repo.close()
    code = "from gitstate.cli import run; run()"
    proc = subprocess.run(
        f"{sys.executable} -c '{code}' -C {tmp_path / 'big'} log | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        executable="/bin/bash",
    )
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith(parent[:8] if parent else "")
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
