"""Plain git merges and diffs documents key by key once `gitstate setup-git` ran (issue 13).

Real `git merge`/`git pull` between two clones, with the venv's `gitstate` on git's PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitstate.codecs import YAML
from gitstate.gitmerge import merge_driver, setup_git, textconv_text
from tests.helpers import GIT_ENV, git, invoke

BIN = str(Path(sys.executable).parent)
ENV = {"PATH": BIN + os.pathsep + os.environ.get("PATH", "")}

SETTINGS = b"""\
# Deployment settings (edited by hand)
name: demo      # shown in the UI
port: 80
country: NO

limits:
  cpu: 2   # cores
  mem: 512
"""


def _repo_pair(tmp_path: Path, doc: str = "settings.yaml", content: bytes = SETTINGS) -> tuple[Path, Path]:
    """Origin ``a`` with ``doc`` committed and the driver set up, and a clone ``b`` set up too."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    git(a, "init", "-q", "-b", "main")
    (a / doc).write_bytes(content)
    setup_git(a)
    git(a, "add", "-A")
    git(a, "commit", "-qm", "start")
    git(tmp_path, "clone", "-q", str(a), str(b))
    assert not setup_git(b).attributes_changed  # the clone has the committed .gitattributes already
    return a, b


def _commit(repo: Path, doc: str, data: bytes, message: str) -> None:
    (repo / doc).write_bytes(data)
    git(repo, "commit", "-qam", message, env=ENV)


def test_setup_git_writes_attributes_and_local_config(tmp_path: Path) -> None:
    a, _ = _repo_pair(tmp_path)
    attributes = (a / ".gitattributes").read_text()
    for pattern in ("*.json", "*.yaml", "*.yml"):
        assert f"{pattern} merge=gitstate diff=gitstate\n" in attributes
    assert git(a, "config", "--local", "merge.gitstate.driver").strip() == "gitstate merge-driver %O %A %B %P"
    assert git(a, "config", "--local", "diff.gitstate.textconv").strip() == "gitstate textconv"
    before = (a / ".gitattributes").read_bytes()
    again = setup_git(a)
    assert not again.attributes_changed and (a / ".gitattributes").read_bytes() == before


def test_setup_git_keeps_existing_attributes(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitattributes").write_bytes(b"*.png binary")
    setup_git(tmp_path)
    text = (tmp_path / ".gitattributes").read_text()
    assert text.startswith("*.png binary\n# gitstate:") and text.endswith("*.yml merge=gitstate diff=gitstate\n")


def test_setup_git_command(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    result = invoke(["-C", str(tmp_path), "setup-git"])
    assert result.exit_code == 0, result.stderr
    assert ".gitattributes: updated" in result.stdout
    assert "merge.gitstate.driver = gitstate merge-driver %O %A %B %P" in result.stdout
    assert invoke(["-C", str(tmp_path), "setup-git"]).stdout.splitlines()[0].endswith("already set up")


def test_setup_git_needs_a_repository(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        setup_git(tmp_path)
    assert invoke(["-C", str(tmp_path), "setup-git"]).exit_code == 1


def test_git_pull_merges_adjacent_keys_byte_for_byte(tmp_path: Path) -> None:
    a, b = _repo_pair(tmp_path)
    _commit(a, "settings.yaml", SETTINGS.replace(b"name: demo  ", b"name: prod  "), "rename")
    _commit(b, "settings.yaml", SETTINGS.replace(b"port: 80", b"port: 8080"), "port")  # the next line
    git(b, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", env=ENV)
    assert (b / "settings.yaml").read_bytes() == SETTINGS.replace(b"name: demo  ", b"name: prod  ").replace(
        b"port: 80", b"port: 8080"
    )
    assert git(b, "status", "--porcelain") == ""


def test_without_the_driver_git_conflicts_on_the_same_edits(tmp_path: Path) -> None:
    a, b = _repo_pair(tmp_path)
    _commit(a, "settings.yaml", SETTINGS.replace(b"name: demo  ", b"name: prod  "), "rename")
    _commit(b, "settings.yaml", SETTINGS.replace(b"port: 80", b"port: 8080"), "port")
    git(b, "config", "--local", "--unset", "merge.gitstate.driver")
    git(b, "fetch", "-q", "origin")
    proc = subprocess.run(
        ["git", "-C", str(b), "merge", "--no-edit", "origin/main"],
        capture_output=True,
        env={**GIT_ENV, **ENV},
        check=False,
    )
    assert proc.returncode != 0  # the baseline the driver fixes: a line-level conflict


def test_git_merge_of_nested_and_new_keys_keeps_both_sides(tmp_path: Path) -> None:
    a, b = _repo_pair(tmp_path)
    _commit(a, "settings.yaml", SETTINGS.replace(b"cpu: 2 ", b"cpu: 4 "), "cpu")
    _commit(b, "settings.yaml", SETTINGS.replace(b"  mem: 512\n", b"  mem: 1024\n  disk: 10\n"), "mem")
    git(b, "fetch", "-q", "origin")
    git(b, "merge", "-q", "--no-edit", "origin/main", env=ENV)
    assert (b / "settings.yaml").read_bytes() == SETTINGS.replace(b"cpu: 2 ", b"cpu: 4 ").replace(
        b"  mem: 512\n", b"  mem: 1024\n  disk: 10\n"
    )


def test_git_merge_of_json_keeps_its_layout(tmp_path: Path) -> None:
    doc = b'{\n    "a": 1,\n    "b": 2,\n    "c": 3\n}\n'
    a, b = _repo_pair(tmp_path, "state.json", doc)
    _commit(a, "state.json", doc.replace(b'"a": 1', b'"a": 10'), "a")
    _commit(b, "state.json", doc.replace(b'"b": 2', b'"b": 20'), "b")
    git(b, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", env=ENV)
    assert (b / "state.json").read_bytes() == b'{\n    "a": 10,\n    "b": 20,\n    "c": 3\n}\n'


def test_real_conflict_is_a_git_conflict_with_both_values(tmp_path: Path) -> None:
    a, b = _repo_pair(tmp_path)
    _commit(a, "settings.yaml", SETTINGS.replace(b"port: 80", b"port: 9090").replace(b"cpu: 2", b"cpu: 8"), "a")
    _commit(b, "settings.yaml", SETTINGS.replace(b"port: 80", b"port: 8080"), "b")
    git(b, "fetch", "-q", "origin")
    proc = subprocess.run(
        ["git", "-C", str(b), "merge", "--no-edit", "origin/main"],
        capture_output=True,
        env={**GIT_ENV, **ENV},
        check=False,
    )
    assert proc.returncode != 0
    assert "CONFLICT" in proc.stdout.decode()
    assert git(b, "status", "--porcelain").startswith("UU settings.yaml")
    text = (b / "settings.yaml").read_bytes()
    expected = SETTINGS.replace(b"cpu: 2", b"cpu: 8").replace(
        b"port: 80\n", b"<<<<<<< ours\nport: 8080\n=======\nport: 9090\n>>>>>>> theirs\n"
    )
    assert text == expected


def test_git_diff_and_log_show_key_level_changes(tmp_path: Path) -> None:
    a, _ = _repo_pair(tmp_path)
    (a / "settings.yaml").write_bytes(SETTINGS.replace(b"mem: 512", b"mem: 1024").replace(b"# cores", b"# CPUs"))
    diff = git(a, "diff", env=ENV)
    assert "-limits.mem: 512\n+limits.mem: 1024\n" in diff
    assert "cores" not in diff  # a comment is not a key-level change
    git(a, "commit", "-qam", "more memory", env=ENV)
    log = git(a, "log", "-p", "-1", env=ENV)
    assert "-limits.mem: 512\n+limits.mem: 1024\n" in log


# ------------------------------------------------------------------------------------- the driver itself


def _files(tmp_path: Path, base: bytes, ours: bytes, theirs: bytes) -> tuple[Path, Path, Path]:
    paths = tmp_path / "O", tmp_path / "A", tmp_path / "B"
    for p, data in zip(paths, (base, ours, theirs), strict=True):
        p.write_bytes(data)
    return paths


def test_driver_clean_merge_through_the_format_preserving_writer(tmp_path: Path) -> None:
    base = b"a: 1  # one\nb: 2\nc: 3\n"
    ours = b"a: 1  # one\nb: 20\nc: 3\n"
    theirs = b"c: 30\nb: 2\na: 1\n"  # reordered and changed by a tool: only c's value counts
    o, a, t = _files(tmp_path, base, ours, theirs)
    assert merge_driver(o, a, t, "s.yaml") == 0
    assert a.read_bytes() == b"a: 1  # one\nb: 20\nc: 30\n"


def test_driver_with_an_empty_base_merges_two_additions(tmp_path: Path) -> None:
    o, a, t = _files(tmp_path, b"", b"x: 1\n", b"y: 2\n")
    assert merge_driver(o, a, t, "s.yaml") == 0
    assert YAML.decode(a.read_bytes()) == {"x": 1, "y": 2}


def test_driver_leaves_an_undecodable_side_to_git_line_merge(tmp_path: Path) -> None:
    o, a, t = _files(tmp_path, b"a: 1\n", b"a: [\n", b"a: 2\n")
    assert merge_driver(o, a, t, "s.yaml") == 1
    assert b"<<<<<<< ours" in a.read_bytes()


def test_textconv_text_lists_leaves() -> None:
    assert textconv_text(SETTINGS, "settings.yaml") == (
        'name: "demo"\nport: 80\ncountry: "NO"\nlimits.cpu: 2\nlimits.mem: 512\n'
    )
    assert textconv_text(b"not: [valid", "x.yaml") == "not: [valid"
    assert textconv_text(b"plain text", "notes.txt") == "plain text"


def test_gitattributes_is_a_git_file_not_a_document() -> None:
    from gitstate.paths import is_git_file

    assert is_git_file(".gitattributes") and is_git_file("sub/.gitattributes") and is_git_file(".GITATTRIBUTES")
    assert not is_git_file("settings.yaml") and not is_git_file(".gitattributes.yaml")


def test_init_and_clone_set_up_git_when_asked(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "settings.yaml").write_bytes(SETTINGS)
    r = invoke(["-C", str(origin), "init", "--setup-git"])
    assert r.exit_code == 0, r.output
    assert "merge.gitstate.driver" in r.output
    assert git(origin, "config", "--local", "merge.gitstate.driver").strip() == "gitstate merge-driver %O %A %B %P"
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    clones = []
    for name in ("m1", "m2"):
        r = invoke(["clone", "--setup-git", str(bare), str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        assert "diff.gitstate.textconv" in r.output
        clones.append(tmp_path / name)
    m1, m2 = clones
    assert git(m2, "config", "--local", "diff.gitstate.textconv").strip() == "gitstate textconv"
    # two machines change different keys of one document; plain git pull merges them key by key
    _commit(m1, "settings.yaml", SETTINGS.replace(b"name: demo  ", b"name: prod  "), "rename")
    git(m1, "push", "-q", "origin", "main", env=ENV)
    _commit(m2, "settings.yaml", SETTINGS.replace(b"port: 80", b"port: 8080"), "port")
    git(m2, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", env=ENV)
    assert (m2 / "settings.yaml").read_bytes() == SETTINGS.replace(b"name: demo  ", b"name: prod  ").replace(
        b"port: 80", b"port: 8080"
    )
    r = invoke(["clone", "--setup-git", "--json", str(bare), str(tmp_path / "m3")])
    assert r.exit_code == 0 and r.output.lstrip().startswith("{"), r.output
    assert git(tmp_path / "m3", "config", "--local", "merge.gitstate.name").strip()
