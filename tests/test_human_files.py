"""A program write to a document a human formatted keeps the human's file: only the lines of changed keys
change (issue 13). Files are edited the way editors save them, and checked byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import git, make_store, wait_until

import gitstate

HAND = """\
# Settings for the mail agent (edited by hand)
country: NO        # Norway, not "false"
version: 1.10

services:
    # the team chat
    slack: true
    mail:   false    # paused for the migration
"""


def _save_like_vim(path: Path, text: str) -> None:
    """Write a new file beside it, then rename it over (vim's default)."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_a_program_write_keeps_the_humans_comments_and_layout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with make_store(root, durability="immediate") as s:
        s.set("settings.yaml", "services", {"slack": False})
    _save_like_vim(root / "settings.yaml", HAND)
    with gitstate.open(root, durability="immediate") as s:  # the hand edit is committed on open
        assert s.get("settings.yaml", "country") == "NO" and s.get("settings.yaml", "version") == 1.1
        s.set("settings.yaml", "services.mail", True)
        s.set("settings.yaml", "owner", "ops")
    text = (root / "settings.yaml").read_text()
    expected = HAND.replace("mail:   false    # paused for the migration", "mail:   true    # paused for the migration")
    assert text.startswith(expected.splitlines()[0])
    for line in HAND.splitlines():
        if "mail:" not in line:
            assert line in text.splitlines(), line
    assert "mail:" in text and "true" in text.split("mail:")[1].splitlines()[0]
    assert "# paused for the migration" in text.split("mail:")[1].splitlines()[0]
    assert text.rstrip().endswith("owner: ops")
    assert git(root, "status", "--porcelain") == ""
    with gitstate.open(root, durability="manual") as s:
        assert s.get("settings.yaml") == {
            "country": "NO",
            "version": 1.1,
            "services": {"slack": True, "mail": True},
            "owner": "ops",
        }


def test_documents_the_store_wrote_stay_canonical(tmp_path: Path) -> None:
    with make_store(tmp_path / "s", durability="immediate") as s:
        s.set("state.json", "a", {"b": 1})
        s.set("state.json", "c", 2)
    assert (tmp_path / "s" / "state.json").read_text() == '{\n  "a": {\n    "b": 1\n  },\n  "c": 2\n}\n'


def test_json_keeps_the_humans_indentation_and_key_order(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with make_store(root, durability="immediate") as s:
        s.set("state.json", "a", 1)
    hand = '{\n    "zeta": 1,\n    "alpha": {\n        "x": 1\n    }\n}\n'
    (root / "state.json").write_text(hand)  # truncate and write, as VS Code saves
    with gitstate.open(root, durability="immediate") as s:
        s.set("state.json", "zeta", 2)
    assert (root / "state.json").read_text() == hand.replace('"zeta": 1', '"zeta": 2')


def test_a_comment_only_edit_is_committed_and_shown_as_such(tmp_path: Path) -> None:
    from helpers import invoke

    root = tmp_path / "s"
    with make_store(root, durability="immediate") as s:
        s.set("settings.yaml", "a", 1)
    with gitstate.open(root, durability="immediate", watch=True) as s:
        seen = []
        s.on("committed", seen.append)
        _save_like_vim(root / "settings.yaml", "# the answer, for now\na: 1   # keep it small\n")
        wait_until(lambda: seen, timeout_s=20, message="the watcher's commit")
        head = s.log(limit=1)[0]
        assert head.subject == "settings.yaml: comments and formatting" and head.actor == "human"
    # Found on open instead (no watcher ran): the recovery commit says the same in its body.
    (root / "settings.yaml").write_text("# the answer\na: 1\n")
    with gitstate.open(root, durability="immediate") as s:
        assert "settings.yaml: comments and formatting" in s.log(limit=1)[0].message
    shown = invoke(["-C", str(root), "show", "HEAD"])
    assert shown.exit_code == 0 and "settings.yaml: comments and formatting" in shown.output
    assert "(no changes)" not in shown.output


def test_diff_names_a_file_changed_only_in_comments(tmp_path: Path) -> None:
    from helpers import invoke

    root = tmp_path / "s"
    with make_store(root, durability="immediate") as s:
        s.set("a.yaml", "x", 1)
        s.set("b.json", "y", 1)
    _save_like_vim(root / "a.yaml", "# why x is 1\nx: 1\n")
    with gitstate.open(root, durability="immediate") as s:
        s.set("b.json", "y", 2)
    r = invoke(["-C", str(root), "diff", "HEAD~2", "HEAD"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "a.yaml: comments and formatting"
    assert "b.json" in r.output and "y: 1 -> 2" in r.output
