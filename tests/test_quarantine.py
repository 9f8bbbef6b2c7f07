"""The quarantine box (gitstate/quarantine.py): entries, replacement of a later bad save, the older layout."""

from __future__ import annotations

import calendar
import os
import time
from pathlib import Path

import pytest

from gitstate.errors import DecodeError
from gitstate.quarantine import Quarantine


def _err(doc: str, line: int | None = 3, column: int | None = 9) -> DecodeError:
    return DecodeError(doc, "expected ',' or '}'", line=line, column=column)


def test_put_get_list_text_clear(tmp_path: Path) -> None:
    box = Quarantine(tmp_path, fsync=False)
    assert box.list() == [] and box.get("a.json") is None
    a = box.put("a.json", b'{"x": 1\n  "y"', _err("a.json"), "b" * 40, now=100.0)
    b = box.put("dir/b.yaml", b"key: [1, 2\n", _err("dir/b.yaml", 1, None), None, now=50.0)
    assert (a.where, b.where) == ("a.json:3:9", "dir/b.yaml:1")
    assert [e.doc for e in box.list()] == ["dir/b.yaml", "a.json"]  # oldest first
    assert box.text("dir/b.yaml") == b"key: [1, 2\n"
    assert box.get("a.json") == a and a.base == "b" * 40 and a.size == len(b'{"x": 1\n  "y"')
    assert a.to_dict()["error"] == "expected ',' or '}'" and a.to_dict()["line"] == 3
    assert oct(os.stat(a.saved).st_mode & 0o777) == "0o600"
    assert box.clear("a.json") and not box.clear("a.json")
    assert box.docs() == {"dir/b.yaml"}
    with pytest.raises(KeyError):
        box.text("a.json")


def test_a_later_bad_save_replaces_text_and_keeps_since_and_base(tmp_path: Path) -> None:
    box = Quarantine(tmp_path, fsync=False)
    box.put("s.json", b"{", _err("s.json", 1, 2), "1" * 40, now=10.0)
    later = box.put("s.json", b'{"a": }', _err("s.json", 1, 7), "2" * 40, now=20.0)
    assert (later.since, later.updated, later.base, later.column) == (10.0, 20.0, "1" * 40, 7)
    assert box.text("s.json") == b'{"a": }' and len(box.list()) == 1


def test_names_that_need_escaping(tmp_path: Path) -> None:
    box = Quarantine(tmp_path, fsync=False)
    for doc in ("a%2Fb.json", "a/b.json", "100%.json"):
        box.put(doc, doc.encode(), _err(doc), None)
    assert sorted(box.docs()) == ["100%.json", "a%2Fb.json", "a/b.json"]
    assert box.text("a/b.json") == b"a/b.json" and box.text("a%2Fb.json") == b"a%2Fb.json"


def test_entries_of_the_older_layout_are_read_and_cleared(tmp_path: Path) -> None:
    qdir = tmp_path / "quarantine"
    qdir.mkdir()
    old = qdir / "20261101T120000Z--tasks%2Ft1.json--abcdef012345"
    old.write_bytes(b'{"broken"')
    (qdir / f"{old.name}.reason").write_text("tasks/t1.json:1:10: Expecting ':' delimiter\n")
    box = Quarantine(tmp_path, fsync=False)
    [entry] = box.list()
    assert entry.doc == "tasks/t1.json" and "Expecting ':'" in entry.error
    assert entry.since == calendar.timegm(time.strptime("20261101T120000Z", "%Y%m%dT%H%M%SZ"))
    assert box.text("tasks/t1.json") == b'{"broken"'
    # A new bad save moves it to the current layout (keeping since); clearing removes every file.
    box.put("tasks/t1.json", b"{", _err("tasks/t1.json"), None)
    assert box.get("tasks/t1.json").since == entry.since  # type: ignore[union-attr]
    assert not old.exists()
    assert box.clear("tasks/t1.json") and list(qdir.iterdir()) == []
