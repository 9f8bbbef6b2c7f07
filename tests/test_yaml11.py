"""``gitstate migrate --yaml11`` (issue 13): a store's YAML documents written for a YAML 1.1 reader get the
meaning that reader gave them; only the scalars whose meaning differs change, byte for byte the rest."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import fsck, git, invoke, make_store, status_porcelain

from gitstate import yaml11

OLD = """\
# written by an older tool (PyYAML defaults: YAML 1.1)
country: NO        # Norway
enabled: yes
mode: 0777
name: agent
"""


def _store(tmp_path: Path) -> Path:
    root = tmp_path / "s"
    root.mkdir()
    (root / "settings.yaml").write_text(OLD)
    (root / "plain.yaml").write_text("a: 1\nb: text\n")
    (root / "state.json").write_text('{"x": "NO"}\n')
    with make_store(root):
        pass
    return root


def test_convert_keeps_comments_and_changes_only_the_old_meanings(tmp_path: Path) -> None:
    root = _store(tmp_path)
    with make_store(root) as s:
        assert s.get("settings.yaml", "country") == "NO"  # YAML 1.2: a string
        plan = yaml11.convert(s, dry_run=True)
        assert sorted(plan.files) == ["settings.yaml"] and plan.commit is None
        assert (root / "settings.yaml").read_text() == OLD  # a dry run changes nothing
        done = yaml11.convert(s)
        assert done.snapshot == "pre-yaml12" and done.commit == s.head
        assert s.get("settings.yaml") == {"country": False, "enabled": True, "mode": 511, "name": "agent"}
        assert s.get("state.json", "x") == "NO"  # JSON documents are not YAML
        assert yaml11.convert(s).files == {}  # a second run finds nothing
    text = (root / "settings.yaml").read_text()
    assert text == OLD.replace(": NO", ": false").replace("yes", "true").replace("0777", "511")
    assert (root / "plain.yaml").read_text() == "a: 1\nb: text\n"
    body = git(root, "log", "-1", "--format=%B")
    assert "Gitstate-Actor: migration" in body and "country" in body
    assert status_porcelain(root) == ""
    fsck(root)


def test_cli_dry_run_apply_and_roll_back(tmp_path: Path) -> None:
    root = _store(tmp_path)
    r = invoke(["-C", str(root), "migrate", "--yaml11", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would convert 1 YAML document(s)" in r.output and 'settings.yaml: country "NO" -> false' in r.output
    r = invoke(["-C", str(root), "migrate", "--yaml11", "--json"])
    data = json.loads(r.output)
    assert data["docs"] == ["settings.yaml"] and data["snapshot"] == "pre-yaml12" and not data["dry_run"]
    r = invoke(["-C", str(root), "migrate", "--yaml11"])
    assert "nothing to convert" in r.output
    r = invoke(["-C", str(root), "restore", "pre-yaml12"])
    assert r.exit_code == 0, r.output
    assert (root / "settings.yaml").read_text() == OLD


def test_cli_needs_file_or_flag(tmp_path: Path) -> None:
    root = _store(tmp_path)
    r = invoke(["-C", str(root), "migrate"])
    assert r.exit_code == 2 and "--yaml11" in r.output
    r = invoke(["-C", str(root), "migrate", "steps.py", "--yaml11"])
    assert r.exit_code == 2 and "not both" in r.output


def test_a_yaml_document_that_does_not_parse_is_skipped(tmp_path: Path) -> None:
    root = _store(tmp_path)
    with make_store(root) as s:
        s.set("other.yaml", "k", "v")
        s.flush()
    # commit a broken YAML file the way plain git would
    (root / "broken.yaml").write_text("a: [1\n")
    git(root, "add", "broken.yaml")
    git(root, "commit", "-qm", "broken by hand")
    with make_store(root) as s:
        done = yaml11.convert(s)
        assert "broken.yaml" in done.skipped and sorted(done.files) == ["settings.yaml"]
