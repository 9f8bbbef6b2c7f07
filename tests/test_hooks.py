"""The shipped git hooks (hooks/) and ``gitstate hooks install``: real ``git commit`` runs them."""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers import GIT_ENV, invoke, make_store

from gitstate.cli.watch import hook_sources, install_hooks

pytestmark = pytest.mark.skipif(shutil.which("python3") is None, reason="the hooks run with python3")


def run_git(root: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Real git in ``root`` (with :data:`helpers.GIT_ENV`); never raises: the hook tests check returncodes."""
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**GIT_ENV, **(env or {})},
    )


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with make_store(root) as s:
        s.set("state.json", None, {"services": {"gmail": False}})
        s.flush()
    return root


@pytest.fixture
def hooked(store_root: Path) -> Path:
    install_hooks(store_root)
    return store_root


def commit(
    root: Path,
    files: Mapping[str, str | bytes],
    message: str = "edit by hand",
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert run_git(root, "add", "-f", "--", name).returncode == 0
    return run_git(root, "commit", "-q", "-m", message, *extra, env=env)


# ===================================================================== install
def test_hook_sources_are_found() -> None:
    sources = hook_sources()
    assert {"pre-commit", "commit-msg"} <= set(sources)
    assert all(b"gitstate" in data[:2048] for data in sources.values())
    assert "README.md" not in sources


def test_hooks_install_copies_executable_hooks(store_root: Path) -> None:
    result = invoke(["-C", str(store_root), "hooks", "install"])
    assert result.exit_code == 0, result.output
    assert "installed pre-commit" in result.output and "installed commit-msg" in result.output
    for name in ("pre-commit", "commit-msg"):
        path = store_root / ".git" / "hooks" / name
        assert path.read_bytes() == hook_sources()[name]
        assert path.stat().st_mode & stat.S_IXUSR
    again = invoke(["-C", str(store_root), "hooks", "install"])
    assert again.exit_code == 0 and "unchanged pre-commit" in again.output


def test_hooks_install_keeps_a_foreign_hook_unless_forced(store_root: Path) -> None:
    hooks = store_root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\necho mine\n")
    result = invoke(["-C", str(store_root), "hooks", "install"])
    assert result.exit_code == 1
    assert "skipped pre-commit" in result.output and "--force" in result.output
    assert (hooks / "pre-commit").read_text() == "#!/bin/sh\necho mine\n"
    assert (hooks / "commit-msg").exists()
    forced = invoke(["-C", str(store_root), "hooks", "install", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (hooks / "pre-commit.before-gitstate").read_text() == "#!/bin/sh\necho mine\n"
    assert (hooks / "pre-commit").read_bytes() == hook_sources()["pre-commit"]


def test_hooks_install_updates_an_older_gitstate_hook(store_root: Path) -> None:
    hooks = store_root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\n# gitstate pre-commit hook (old)\n")
    results = {r.name: r.action for r in install_hooks(store_root)}
    assert results["pre-commit"] == "updated"


def test_hooks_install_honours_core_hooks_path(store_root: Path) -> None:
    assert run_git(store_root, "config", "core.hooksPath", ".githooks").returncode == 0
    results = install_hooks(store_root)
    assert {r.path.parent for r in results} == {store_root / ".githooks"}


def test_hooks_install_without_a_store(tmp_path: Path) -> None:
    result = invoke(["-C", str(tmp_path), "hooks", "install"])
    assert result.exit_code == 1 and "no gitstate store" in result.output


# ===================================================================== pre-commit
def test_valid_files_commit(hooked: Path) -> None:
    proc = commit(
        hooked,
        {
            "state.json": '{"services": {"gmail": true}}\n',
            "memory/work.yaml": "a: [1, 2]\n",
            "notes.md": "# notes\n",
            "data.bin": b"\xff\x00",
        },
    )
    assert proc.returncode == 0, proc.stderr


def test_invalid_json_is_refused_with_file_line_and_column(hooked: Path) -> None:
    proc = commit(hooked, {"state.json": '{\n  "a": 1\n  "b": 2\n}\n'})
    assert proc.returncode == 1
    assert "state.json:3:3: invalid JSON: Expecting ',' delimiter" in proc.stderr
    assert "commit refused" in proc.stderr
    assert run_git(hooked, "log", "-1", "--format=%s").stdout.strip() != "edit by hand"


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', "", "[1,"])
def test_json_gitstate_cannot_read_is_refused(hooked: Path, text: str) -> None:
    proc = commit(hooked, {"state.json": text})
    assert proc.returncode == 1 and "state.json" in proc.stderr


def test_invalid_yaml_is_refused(hooked: Path) -> None:
    proc = commit(hooked, {"memory/work.yaml": "a: [1, 2\nb: 3\n"})
    assert proc.returncode == 1
    assert "memory/work.yaml:" in proc.stderr and "invalid YAML" in proc.stderr


def test_yaml_alias_bomb_is_refused(hooked: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i, name in enumerate("bcdefghi"):
        prev = "a" if i == 0 else "bcdefghi"[i - 1]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    proc = commit(hooked, {"bomb.yaml": "\n".join(lines) + "\n"})
    assert proc.returncode == 1 and "alias" in proc.stderr


def test_text_must_be_utf8_and_free_of_conflict_markers(hooked: Path) -> None:
    proc = commit(hooked, {"notes.txt": b"caf\xe9\n"})
    assert proc.returncode == 1 and "notes.txt: not valid UTF-8" in proc.stderr
    run_git(hooked, "reset", "-q")
    proc = commit(hooked, {"notes.md": "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> theirs\n"})
    assert proc.returncode == 1 and "notes.md:2: unresolved merge conflict marker" in proc.stderr


def test_editor_scratch_files_are_refused(hooked: Path) -> None:
    proc = commit(hooked, {".state.json.swp": b"b0VIM", "state.json~": "{}"})
    assert proc.returncode == 1
    assert ".state.json.swp: an editor swap/backup/temp file is staged" in proc.stderr
    assert "state.json~" in proc.stderr


def test_the_staged_content_is_checked_not_the_work_tree(hooked: Path) -> None:
    (hooked / "state.json").write_text("{broken")
    run_git(hooked, "add", "state.json")
    (hooked / "state.json").write_text('{"fixed": true}')  # fixed, but not staged
    proc = run_git(hooked, "commit", "-q", "-m", "x")
    assert proc.returncode == 1 and "state.json:1:2" in proc.stderr
    run_git(hooked, "add", "state.json")
    (hooked / "state.json").write_text("{broken again")  # broken, but not staged
    assert run_git(hooked, "commit", "-q", "-m", "x").returncode == 0


def test_odd_names_and_deletions(hooked: Path) -> None:
    proc = commit(hooked, {"dir with space/é tâche.json": '{"ok": 1}', "t.json": "{}"})
    assert proc.returncode == 0, proc.stderr
    (hooked / "t.json").unlink()
    run_git(hooked, "add", "-A")
    assert run_git(hooked, "commit", "-q", "-m", "rm").returncode == 0
    proc = commit(hooked, {"dir with space/é tâche.json": "{bad"})
    assert proc.returncode == 1 and "é tâche.json" in proc.stderr


def test_no_verify_and_the_skip_variable_bypass_the_hooks(hooked: Path) -> None:
    assert commit(hooked, {"a.json": "{bad"}, "x", "--no-verify").returncode == 0
    assert commit(hooked, {"b.json": "{bad"}, env={"GITSTATE_SKIP_HOOKS": "1"}).returncode == 0


def test_without_pyyaml_json_is_still_checked(hooked: Path, tmp_path: Path) -> None:
    fake = tmp_path / "noyaml"
    fake.mkdir()
    (fake / "yaml.py").write_text("raise ImportError('no yaml here')\n")
    env = {"PYTHONPATH": str(fake)}
    proc = commit(hooked, {"m.yaml": "a: [1,\n"}, env=env)
    assert proc.returncode == 0
    assert "PyYAML is not installed" in proc.stderr
    proc = commit(hooked, {"m.json": "{bad"}, env=env)
    assert proc.returncode == 1 and "m.json:1:2" in proc.stderr


# ===================================================================== commit-msg
def test_commit_msg_adds_the_human_actor_trailer(hooked: Path) -> None:
    assert commit(hooked, {"state.json": '{"x": 1}'}, "set x by hand").returncode == 0
    body = run_git(hooked, "log", "-1", "--format=%B").stdout
    assert body.startswith("set x by hand\n") and "Gitstate-Actor: human" in body
    assert commit(hooked, {"state.json": '{"x": 2}'}, "keep mine\n\nGitstate-Actor: migration").returncode == 0
    body = run_git(hooked, "log", "-1", "--format=%B").stdout
    assert "Gitstate-Actor: migration" in body and "human" not in body


def test_commit_msg_leaves_an_empty_message_alone(hooked: Path) -> None:
    (hooked / "state.json").write_text('{"x": 3}')
    run_git(hooked, "add", "state.json")
    proc = run_git(hooked, "commit", "-q", "-m", "")
    assert proc.returncode != 0 and "empty" in (proc.stderr + proc.stdout).lower()


# ===================================================================== the library never runs hooks
def test_the_library_never_runs_repository_hooks(store_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hooks = store_root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-commit", "commit-msg", "post-commit", "reference-transaction", "post-index-change"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name} >> '{marker}'\nexit 1\n")
        (hooks / name).chmod(0o755)
    with make_store(store_root) as s:
        s.set("state.json", "services.gmail", True)
        assert s.flush() is not None
        w = s.watch(settle_ms=50)
        (store_root / "state.json").write_text('{"services": {"gmail": "by hand"}}')
        deadline_ok = w.wait_idle(timeout_s=20)
        assert deadline_ok
        assert s.get("state.json", "services.gmail") == "by hand"
    assert not marker.exists()
