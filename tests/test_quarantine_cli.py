"""``gitstate quarantine`` list/show/drop through the CLI, on a store whose hand edit did not parse."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import git, invoke, make_store, status_porcelain

from gitstate.errors import DecodeError
from gitstate.quarantine import Quarantine


def _store_with_bad_edit(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with make_store(path) as store:
        store.set("settings.json", "mode", "fast")
        store.flush()
    bad = b'{\n  "mode": "slow",\n  oops\n}\n'
    (path / "settings.json").write_bytes(bad)
    Quarantine(path / ".git" / "gitstate", fsync=False).put(
        "settings.json", bad, DecodeError("settings.json", "Expecting property name", line=3, column=3), None
    )
    return path


def test_list_show_drop(tmp_path: Path) -> None:
    path = _store_with_bad_edit(tmp_path)
    r = invoke(["-C", str(path), "quarantine"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("settings.json:3:3  since ") and "Expecting property name" in r.output
    data = json.loads(invoke(["-C", str(path), "quarantine", "--json"]).output)
    assert data[0]["doc"] == "settings.json" and data[0]["line"] == 3
    r = invoke(["-C", str(path), "quarantine", "show", "settings.json"])
    assert r.exit_code == 0 and "oops" in r.output
    commits = git(path, "rev-list", "--count", "HEAD")
    r = invoke(["-C", str(path), "quarantine", "drop", "settings.json"])
    assert r.exit_code == 0, r.output
    assert json.loads((path / "settings.json").read_text()) == {"mode": "fast"}
    assert status_porcelain(path) == ""
    assert invoke(["-C", str(path), "quarantine"]).output == "nothing in quarantine\n"
    assert git(path, "rev-list", "--count", "HEAD") == commits  # drop commits nothing: HEAD already has it


def test_unknown_document(tmp_path: Path) -> None:
    path = _store_with_bad_edit(tmp_path)
    for sub in ("show", "drop"):
        r = invoke(["-C", str(path), "quarantine", sub, "other.json"])
        assert r.exit_code == 1 and "other.json is not in quarantine" in r.output
