"""Converting a store's YAML documents written for YAML 1.1 readers to the meaning they had there.

gitstate reads YAML with YAML 1.2 core-schema scalars: ``NO``, ``yes``, ``on`` are strings, ``0777`` is decimal
777. A store whose files were written for an older YAML 1.1 tool (PyYAML's default) may want the old meaning
kept: :func:`convert` rewrites only the scalars whose meaning differs (``NO`` becomes ``false``, ``0777``
becomes ``511``...), byte for byte everything else, as one commit by actor ``migration`` after a snapshot
(``pre-yaml12``), so ``gitstate restore pre-yaml12`` rolls it back.

What belongs here: choosing the YAML documents, the before/after values, the snapshot and the one commit
(``gitstate migrate --yaml11``, ``Store.services`` for the lock and the commit). What does not: the text
rewriting itself (:func:`gitstate.roundtrip.yaml11_to_yaml12`), schema-versioned migration steps
(:mod:`gitstate.migrate`), the CLI (``cli/migrate_cmd.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import docdiff, messages
from .errors import DecodeError

if TYPE_CHECKING:
    from .store import Store

__all__ = ["SNAPSHOT", "Yaml11Conversion", "convert"]

logger = logging.getLogger("gitstate.migrate")

#: Name of the snapshot taken before the conversion (``-2``, ``-3``... when taken already for another state).
SNAPSHOT = "pre-yaml12"


@dataclass(frozen=True)
class Yaml11Conversion:
    """What :func:`convert` did (or, with ``dry_run``, would do).

    Attributes:
        changes: the value changes, per key (``docdiff.Change``), of every converted document.
        files: document -> its converted bytes.
        skipped: document -> why it was left alone (it does not parse).
        snapshot: the snapshot taken first (None for a dry run or when nothing changed).
        commit: the commit (None for a dry run or when nothing changed).
    """

    changes: list[docdiff.Change] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    snapshot: str | None = None
    commit: str | None = None

    def lines(self) -> list[str]:
        """One line per changed key (``doc: key NO -> false``)."""
        return [messages.summary_line(c) for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``--json``)."""
        return {
            "docs": sorted(self.files),
            "changes": self.lines(),
            "skipped": self.skipped,
            "snapshot": self.snapshot,
            "commit": self.commit,
        }


def _plan(store: Store, tree: str | None) -> Yaml11Conversion:
    from .roundtrip import yaml11_to_yaml12

    repo = store.services.repo
    out = Yaml11Conversion()
    if tree is None:
        return out
    codecs = store.codecs
    for doc, sha in sorted(repo.list_blobs(tree).items()):
        if not doc.endswith((".yaml", ".yml")) or doc.startswith(".gitstate/"):
            continue
        data = repo.read_blob(sha)
        codec = codecs.for_doc(doc)
        try:
            new = yaml11_to_yaml12(data.decode("utf-8")).encode("utf-8")
        except (DecodeError, UnicodeDecodeError) as e:
            out.skipped[doc] = str(e)
            continue
        if new != data:
            out.files[doc] = new
            out.changes.extend(docdiff.diff(codec.decode(data, doc), codec.decode(new, doc), doc=doc))
    return out


def convert(store: Store, *, dry_run: bool = False) -> Yaml11Conversion:
    """Give the store's YAML documents the meaning a YAML 1.1 reader gave them (see the module docs): one
    commit after a snapshot; with ``dry_run`` only the plan. Pending writes are flushed first.

    Example:
        >>> import gitstate, tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "c.yaml").write_text("country: NO   # Norway\\n")
        >>> with gitstate.open(root, durability="manual") as store:
        ...     done = convert(store)
        ...     done.lines(), done.snapshot, store.get("c.yaml", "country")
        (['c.yaml: country "NO" -> false'], 'pre-yaml12', False)
        >>> (root / "c.yaml").read_text()
        'country: false   # Norway\\n'
    """
    store.services.check_open()
    store.flush()
    repo = store.services.repo
    with store.services.commit_lock():
        head = repo.head()
        tree = repo.commit_info(head).tree if head else None
        found = _plan(store, tree)
        if dry_run or not found.files:
            return found
        assert head is not None
        snapshot = _snapshot(store, head)
        subject = f"convert {len(found.files)} YAML document(s) to their YAML 1.1 meaning"
        msg = messages.change_message(subject, found.changes, "migration")
        commit = store.services.commit_external(
            [(found.files, msg)], actor="migration", expected_head=head, author=store.author
        )
    logger.info("%s: %s (snapshot %s)", store.path, subject, snapshot)
    return Yaml11Conversion(found.changes, found.files, found.skipped, snapshot, commit)


def _snapshot(store: Store, head: str) -> str:
    repo = store.services.repo
    existing = {t.name: t.commit for t in repo.tags()}
    name, n = SNAPSHOT, 1
    while name in existing:
        if existing[name] == head:
            return name
        n += 1
        name = f"{SNAPSHOT}-{n}"
    repo.create_tag(
        name, head, tagger=store.author, message="state before converting YAML documents to YAML 1.1 meaning"
    )
    return name
