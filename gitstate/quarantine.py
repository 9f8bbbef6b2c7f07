"""Quarantine: hand edits that did not pass the gate (do not parse, or fail validation), kept until a human acts.

What belongs here: where a quarantined edit is kept (``.git/gitstate/quarantine/``), what is recorded about it
(the document, since when, the parse error with line and column, the last good version it was made against),
listing, reading and clearing entries. What does not: deciding that an edit is bad (the codecs and the store's
gate), merging a fixed edit with what was committed meanwhile (the store's ingest), putting the last good
version back on disk (the store or :class:`gitstate.direct.StoreDirectory`, through the guarded writer).

Each document has at most one entry: two files named by the document (``%2F`` for ``/``, ``%25`` for ``%``),
``NAME.json`` (what is recorded) and ``NAME.saved`` (the bytes as the human saved them), each written by
write-to-temp, fsync, rename. A later bad save of the same document replaces the saved text and the error but
keeps ``since``. Entries of the older layout (``STAMP--DOC--DIGEST`` plus a ``.reason`` file) are read too, so
an upgraded store still shows them, and are removed when the document is cleared.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from .errors import DecodeError

__all__ = ["QUARANTINE_DIR", "Quarantine", "Quarantined"]

#: Directory under ``.git/gitstate/`` holding the entries.
QUARANTINE_DIR: Final = "quarantine"


@dataclass(frozen=True)
class Quarantined:
    """One document waiting for a human.

    Attributes:
        doc: the document path.
        since: when its first bad save (of this episode) was seen, seconds since the epoch.
        updated: when the latest bad save was seen.
        error: the parser's or the gate's description.
        line, column: where in the saved text (1-based), when known.
        base: blob id of the last good version the edit was made against (None when the document had none);
            a fixed save is merged against it.
        saved: path of the copy of the saved text.
        size: bytes of the saved text.
    """

    doc: str
    since: float
    updated: float
    error: str
    line: int | None
    column: int | None
    base: str | None
    saved: Path
    size: int

    @property
    def where(self) -> str:
        """``doc:line:column`` (as far as known)."""
        out = self.doc
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``--json`` output, the web view)."""
        return {
            "doc": self.doc,
            "since": self.since,
            "updated": self.updated,
            "error": self.error,
            "line": self.line,
            "column": self.column,
            "base": self.base,
            "saved": str(self.saved),
            "size": self.size,
        }


def _name(doc: str) -> str:
    return doc.replace("%", "%25").replace("/", "%2F")


def _doc(name: str) -> str:
    return name.replace("%2F", "/").replace("%25", "%")


def _write(path: Path, data: bytes, *, fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class Quarantine:
    """The quarantine of one repository (``meta_dir`` is ``.git/gitstate``).

    Example:
        >>> import tempfile
        >>> from gitstate.errors import DecodeError
        >>> box = Quarantine(tempfile.mkdtemp())
        >>> entry = box.put("a.json", b'{"x": ', DecodeError("a.json", "unexpected end", line=1, column=7), None)
        >>> entry.where, [e.doc for e in box.list()], box.text("a.json")
        ('a.json:1:7', ['a.json'], b'{"x": ')
        >>> box.clear("a.json"), box.list()
        (True, [])
    """

    def __init__(self, meta_dir: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.dir = Path(meta_dir) / QUARANTINE_DIR
        self.fsync = fsync

    def put(
        self, doc: str, data: bytes, error: DecodeError, base: str | None, *, now: float | None = None
    ) -> Quarantined:
        """Keep ``data`` (a bad save of ``doc``) with its error; returns the entry. ``since`` of an existing entry
        is kept, and so is its ``base`` (the edit is still against the version it first broke)."""
        now = time.time() if now is None else now
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        old = self.get(doc)
        name = _name(doc)
        saved = self.dir / f"{name}.saved"
        _write(saved, data, fsync=self.fsync)
        meta = {
            "doc": doc,
            "since": old.since if old else now,
            "updated": now,
            "error": error.problem,
            "line": error.line,
            "column": error.column,
            "base": old.base if old else base,
            "size": len(data),
        }
        _write(self.dir / f"{name}.json", orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n", fsync=self.fsync)
        if old is not None and old.saved != saved:  # an entry of the older layout: replaced by this one
            self._remove_legacy(doc)
        entry = self.get(doc)
        assert entry is not None
        return entry

    def get(self, doc: str) -> Quarantined | None:
        """The entry of ``doc``, or None when it is not quarantined."""
        meta_path = self.dir / f"{_name(doc)}.json"
        try:
            meta = orjson.loads(meta_path.read_bytes())
        except FileNotFoundError:
            return self._legacy().get(doc)
        except (OSError, orjson.JSONDecodeError):
            meta = {}
        saved = self.dir / f"{_name(doc)}.saved"
        return Quarantined(
            doc=doc,
            since=float(meta.get("since") or 0.0),
            updated=float(meta.get("updated") or meta.get("since") or 0.0),
            error=str(meta.get("error") or "unreadable quarantine record"),
            line=meta.get("line"),
            column=meta.get("column"),
            base=meta.get("base"),
            saved=saved,
            size=int(meta.get("size") or (saved.stat().st_size if saved.exists() else 0)),
        )

    def list(self) -> builtins.list[Quarantined]:
        """Every waiting document, oldest first."""
        found: dict[str, Quarantined] = dict(self._legacy())
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for p in self.dir.iterdir():
                if p.suffix == ".json" and not p.name.startswith("."):
                    entry = self.get(_doc(p.name[: -len(".json")]))
                    if entry is not None:
                        found[entry.doc] = entry
        return sorted(found.values(), key=lambda e: (e.since, e.doc))

    def docs(self) -> set[str]:
        """The quarantined documents (one directory listing when none waits: the flush asks before each commit)."""
        try:
            if not os.listdir(self.dir):
                return set()
        except (FileNotFoundError, NotADirectoryError):
            return set()
        return {e.doc for e in self.list()}

    def text(self, doc: str) -> bytes:
        """The bytes of ``doc``'s bad save.

        Raises:
            KeyError: ``doc`` is not quarantined.
        """
        entry = self.get(doc)
        if entry is None:
            raise KeyError(doc)
        return entry.saved.read_bytes()

    def clear(self, doc: str) -> bool:
        """Remove ``doc``'s entry (its saved copy too); True if there was one."""
        name = _name(doc)
        removed = False
        for path in (self.dir / f"{name}.json", self.dir / f"{name}.saved"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        return self._remove_legacy(doc) or removed

    # ----------------------------------------------------------------- the older layout
    def _legacy_files(self) -> builtins.list[Path]:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return sorted(p for p in self.dir.iterdir() if p.name.count("--") >= 2 and not p.name.endswith(".reason"))
        return []

    def _legacy(self) -> dict[str, Quarantined]:
        out: dict[str, Quarantined] = {}
        for p in self._legacy_files():
            import calendar  # here: only the older layout names files by time

            stamp, name, _ = p.name.split("--", 2)
            try:
                since = float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
            except ValueError:
                since = p.stat().st_mtime
            reason = p.with_name(p.name + ".reason")
            error = reason.read_text().strip() if reason.exists() else "did not parse"
            doc = _doc(name)
            out[doc] = Quarantined(doc, since, p.stat().st_mtime, error, None, None, None, p, p.stat().st_size)
        return out

    def _remove_legacy(self, doc: str) -> bool:
        removed = False
        for p in self._legacy_files():
            if _doc(p.name.split("--", 2)[1]) == doc:
                for path in (p, p.with_name(p.name + ".reason")):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed = True
        return removed
