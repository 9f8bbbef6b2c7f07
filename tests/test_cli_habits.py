"""The CLI's git habits (issue 16): ranges, ``-N``, ``--oneline``/``--stat``/``--name-only``/``--graph``, ``diff A B
-- DOC``, ``show REV DOC`` in the document's own format, the empty state before the first commit, ``NO_COLOR``,
the pager, shell completion, ``set --json/--string`` and negative numbers; and the library calls under them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import git, git_commit_at, invoke, make_store

import gitstate
from gitstate import history
from gitstate.direct import open_directory
from gitstate.errors import RevisionNotFound


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Four commits: state.json created, slack flipped, notes.md created, owner set; plus a YAML document."""
    p = tmp_path / "store"
    with make_store(p) as s:
        s.set("state.json", "services", {"slack": False, "mail": True})
        s.flush()
        s.set("state.json", "services.slack", True)
        s.flush()
        s.set("notes.md", None, "one\ntwo\n")
        s.flush("write notes")
        s.set("state.json", "owner", "alice")
        s.set("config.yaml", "level", 3)
        s.flush()
    return p


def ok(path: Path | None, *args: str, env: dict[str, str] | None = None) -> str:
    result = invoke((["-C", str(path)] if path else []) + list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def ids(path: Path) -> list[str]:
    return git(path, "rev-list", "HEAD").split()


# ===================================================================== log
def test_log_minus_n_and_dash_number(path: Path) -> None:
    assert len(ok(path, "log", "-n", "2").splitlines()) == 2
    assert len(ok(path, "log", "-2").splitlines()) == 2
    assert len(ok(path, "log", "-1", "--oneline").splitlines()) == 1


def test_log_oneline_is_id_and_subject(path: Path) -> None:
    lines = ok(path, "log", "--oneline").splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == [c[:8] for c in ids(path)]
    assert lines[1] == f"{ids(path)[1][:8]} write notes"


def test_log_range_is_commits_since_a(path: Path) -> None:
    lines = ok(path, "log", "--oneline", "HEAD~2..HEAD").splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == [c[:8] for c in ids(path)[:2]]
    assert ok(path, "log", "--oneline", "HEAD~1..").splitlines()[0].startswith(ids(path)[0][:8])
    assert ok(path, "log", "HEAD..HEAD") == ""


def test_log_rev_and_doc_after_double_dash(path: Path) -> None:
    lines = ok(path, "log", "--oneline", "HEAD~1", "--", "state.json").splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == [ids(path)[2][:8], ids(path)[3][:8]]
    assert ok(path, "log", "--oneline", "state.json").count("\n") == 3  # a lone DOC still works


def test_log_name_only_and_stat(path: Path) -> None:
    out = ok(path, "log", "-1", "--name-only")
    assert out.splitlines()[1:] == ["config.yaml", "state.json"]
    stat = ok(path, "log", "-1", "--stat")
    assert " config.yaml | 1 key" in stat and " state.json  | 1 key" in stat
    assert "2 documents changed" in stat


def test_log_graph_shows_merges(tmp_path: Path) -> None:
    p = tmp_path / "s"
    t0 = time.time() - 3600
    base = git_commit_at(p, {"a.json": '{"x": 1}\n'}, t0, message="base", actor="library")
    git(p, "checkout", "-q", "-b", "side")
    git_commit_at(p, {"b.json": '{"y": 1}\n'}, t0 + 60, message="side work", actor="library")
    git(p, "checkout", "-q", "main")
    git_commit_at(p, {"a.json": '{"x": 2}\n'}, t0 + 120, message="main work", actor="library")
    git(p, "merge", "-q", "--no-edit", "side")
    out = ok(p, "log", "--graph", "--oneline")
    lines = out.splitlines()
    assert lines[0].startswith("*   ") and "Merge" in lines[0]
    assert lines[1] == "|\\"
    assert any(ln.startswith("| * ") and "side work" in ln for ln in lines)
    assert any(ln.startswith("* | ") and "main work" in ln for ln in lines)
    assert "|/" in lines
    assert lines[-1].startswith("* ") and base[:8] in lines[-1]
    linear = ok(tmp_path / "s", "log", "--graph", "--oneline", "HEAD~1..HEAD~1")
    assert linear == ""


# ===================================================================== diff
def test_diff_range_and_docs_after_double_dash(path: Path) -> None:
    both = ok(path, "diff", "HEAD~2", "HEAD")
    assert "state.json" in both and "notes.md" in both and "config.yaml" in both
    assert ok(path, "diff", "HEAD~2..HEAD") == both
    only = ok(path, "diff", "HEAD~2", "HEAD", "--", "state.json", "notes.md")
    assert "owner" in only and "notes.md" in only and "config.yaml" not in only
    assert ok(path, "diff", "HEAD~2..HEAD", "--", "config.yaml").splitlines()[0] == "config.yaml"


def test_diff_name_only_and_stat(path: Path) -> None:
    assert ok(path, "diff", "--name-only", "HEAD~2").splitlines() == ["config.yaml", "notes.md", "state.json"]
    assert "3 documents changed" in ok(path, "diff", "--stat", "HEAD~2")


def test_diff_before_the_first_commit_is_the_empty_state(tmp_path: Path) -> None:
    p = tmp_path / "young"
    with make_store(p) as s:
        s.set("state.json", "a", 1)
        s.flush()
    assert '+ (document): {"a":1}' in ok(p, "diff")  # one commit: diff shows it
    assert '+ (document): {"a":1}' in ok(p, "diff", "yesterday", "now")
    assert '+ (document): {"a":1}' in ok(p, "diff", "yesterday..now")
    assert ok(p, "log", "--oneline", "yesterday..").count("\n") == 1


def test_library_takes_the_same_revisions(path: Path, tmp_path: Path) -> None:
    with open_directory(path) as d:
        assert [c.id for c in d.log(rev="HEAD~2..HEAD")] == ids(path)[:2]
        assert d.diff("HEAD~2..HEAD") == d.diff("HEAD~2", "HEAD")
        assert "notes.md" in d.text_diff("HEAD~2..")
    with gitstate.open(path) as store:
        assert store.diff("HEAD~1..HEAD") == store.diff("HEAD~1", "HEAD")
        young = [c.new for c in store.diff("yesterday", "now") if c.doc == "notes.md"]
        assert young == ["one\ntwo\n"]
    with pytest.raises(RevisionNotFound, match=r"A\.\.\.B"):
        history.split_range("HEAD~1...HEAD")
    with pytest.raises(history.BeforeHistory), gitstate.open(path) as store:
        store.resolve("HEAD~4")


# ===================================================================== show
def test_show_prints_a_document_in_its_own_format(path: Path) -> None:
    assert ok(path, "show", "HEAD", "config.yaml") == "level: 3\n"
    assert json.loads(ok(path, "show", "HEAD", "state.json"))["owner"] == "alice"
    assert ok(path, "show", "HEAD", "state.json") == (path / "state.json").read_text()
    assert json.loads(ok(path, "show", "HEAD", "config.yaml", "--json")) == {"level": 3}


# ===================================================================== colour and pager
def test_no_color_and_no_pager(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitstate.cli import _common

    monkeypatch.setattr(_common, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("GITSTATE_PAGER", f"{sys.executable} -c \"import sys; print('PAGED', len(sys.stdin.read()))\"")
    coloured = invoke(["-C", str(path), "--no-pager", "log"])
    assert "\x1b[" in coloured.stdout and "PAGED" not in coloured.stdout
    plain = invoke(["-C", str(path), "--no-pager", "log"], env={"NO_COLOR": "1"})
    assert plain.exit_code == 0 and "\x1b[" not in plain.stdout


def test_pager_choice() -> None:
    from gitstate.cli._common import pager_command

    assert pager_command({}, terminal=False, no_pager=False) is None
    assert pager_command({}, terminal=True, no_pager=True) is None
    assert pager_command({}, terminal=True, no_pager=False) == "less -FRX"
    assert pager_command({"PAGER": "more"}, terminal=True, no_pager=False) == "more"
    assert pager_command({"PAGER": "more", "GITSTATE_PAGER": "most"}, terminal=True, no_pager=False) == "most"
    assert pager_command({"GITSTATE_PAGER": "cat"}, terminal=True, no_pager=False) is None
    assert pager_command({"GITSTATE_PAGER": ""}, terminal=True, no_pager=False) is None


def test_pager_runs_on_a_terminal(path: Path, tmp_path: Path) -> None:
    """A real terminal (a pty): the pager gets the output; with --no-pager it does not."""
    pytest.importorskip("pty")
    out_file = tmp_path / "paged.txt"
    pager = f"{sys.executable} -c \"import sys; open({str(out_file)!r}, 'w').write(sys.stdin.read())\""
    env = {**os.environ, "GITSTATE_PAGER": pager}
    for extra, expect in (([], True), (["--no-pager"], False)):
        out_file.unlink(missing_ok=True)
        code = ["import pty, sys; sys.exit(pty.spawn([sys.executable, '-m', 'gitstate', *sys.argv[1:]]) >> 8)"]
        proc = subprocess.run(
            [sys.executable, "-c", *code, "-C", str(path), *extra, "log", "--oneline"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc
        assert out_file.exists() is expect, proc.stdout
        if expect:
            assert "write notes" in out_file.read_text()


# ===================================================================== completion
def test_shell_completion_the_click_way(path: Path) -> None:
    exe = Path(sys.executable).parent / "gitstate"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gitstate"]
    env = {**os.environ, "_GITSTATE_COMPLETE": "bash_source"}
    script = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "_gitstate_completion" in script.stdout and "complete " in script.stdout
    env = {**os.environ, "_GITSTATE_COMPLETE": "bash_complete", "COMP_WORDS": "gitstate lo", "COMP_CWORD": "1"}
    words = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "plain,log" in words.stdout.splitlines()
    assert "_GITSTATE_COMPLETE=bash_source gitstate" in ok(None, "--help")


# ===================================================================== set
def test_set_negative_numbers_without_double_dash(path: Path) -> None:
    ok(path, "set", "state.json", "count", "-5")
    ok(path, "set", "state.json", "ratio", "-1.5", "-m", "negative")
    data = json.loads((path / "state.json").read_text())
    assert data["count"] == -5 and data["ratio"] == -1.5
    assert git(path, "log", "-1", "--format=%s").strip() == "negative"


def test_set_json_and_string(path: Path) -> None:
    ok(path, "set", "--string", "state.json", "version", "42")
    ok(path, "set", "--json", "state.json", "limits", '{"a": [1, 2]}')
    data = json.loads((path / "state.json").read_text())
    assert data["version"] == "42" and data["limits"] == {"a": [1, 2]}
    bad = invoke(["-C", str(path), "set", "--json", "state.json", "limits", "{a: 1}"])
    assert bad.exit_code == 2 and "not valid JSON" in bad.stderr
    both = invoke(["-C", str(path), "set", "--json", "--string", "state.json", "x", "1"])
    assert both.exit_code == 2


def test_set_says_when_a_json_looking_value_did_not_parse(path: Path) -> None:
    result = invoke(["-C", str(path), "set", "state.json", "limits", "{'a': 1}"])
    assert result.exit_code == 0
    assert "looks like JSON" in result.stderr and "--json" in result.stderr
    assert json.loads((path / "state.json").read_text())["limits"] == "{'a': 1}"
    # A value cut short (an unclosed brace or bracket) is told about too.
    for cut in ('{"a": 1', "[1, 2", '"unclosed'):
        result = invoke(["-C", str(path), "set", "state.json", "limits", cut])
        assert result.exit_code == 0 and "looks like JSON" in result.stderr, cut
    for plain in ("bob", "a [draft]", "x}"):
        quiet = invoke(["-C", str(path), "set", "state.json", "owner", plain])
        assert "looks like JSON" not in quiet.stderr, plain


# ===================================================================== the distribution name
def test_distribution_name_is_gitstate_store() -> None:
    """`pip install gitstate` fetches an unrelated 2018 package: gitstate is published as gitstate-store."""
    import tomllib
    from importlib.metadata import version

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "gitstate-store"
    assert pyproject["project"]["scripts"]["gitstate"] == "gitstate.cli:run"
    assert version("gitstate-store") == gitstate.__version__
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "pip install gitstate-store" in readme
