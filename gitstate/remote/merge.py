"""Merging pulled history key by key (integrate): documents both sides changed are merged against the merge base
with gitstate.docdiff; the merge commit message is built with gitstate.messages.

What belongs here: integrate (nothing, a fast-forward or a merge commit, written but not checked out), MergeOutcome,
DocConflict and MERGE_RULES. What does not: ancestry (gitstate.ancestry), fetching (sync.py), the key-level and
line-level merges themselves (gitstate.merging), moving the branch and the work tree to the result (the store's
ingest, gitstate.ingest).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .. import docdiff, messages
from ..ancestry import merge_bases
from ..codecs import codec_for
from ..errors import DecodeError, MergeConflict, RemoteError
from ..repo import EMPTY_TREE, Repository
from ..worktree import check_trees

if TYPE_CHECKING:
    pass


logger = logging.getLogger("gitstate.remote")


MERGE_RULES: Final = ("ours", "theirs", "fail")


# ===================================================================== merge
@dataclass(frozen=True)
class DocConflict:
    """A key both sides changed differently, in one document, and how the merge rule resolved it.

    Attributes:
        doc: the document path.
        key: where in the document (``()`` is the whole document).
        base: the merge base's value (:data:`gitstate.docdiff.MISSING` where absent).
        ours: the local value.
        theirs: the remote value.
        chosen: ``"ours"`` or ``"theirs"``: the side the merged value took.

    Example:
        >>> DocConflict("state.json", ("a",), 1, 2, 3, "ours").to_dict()["doc"]
        'state.json'
    """

    doc: str
    key: tuple[str | int, ...]
    base: Any
    ours: Any
    theirs: Any
    chosen: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (absent sides left out)."""
        out = docdiff.Conflict(self.key, self.base, self.ours, self.theirs, self.chosen).to_dict()
        return {"doc": self.doc, **out}

    def describe(self) -> str:
        """One line for a commit message or a terminal."""
        where = f"{self.doc}: {docdiff.format_key(self.key)}" if self.key else self.doc
        ours, theirs = docdiff.format_value(self.ours), docdiff.format_value(self.theirs)
        if self.chosen == "ours":
            return f"conflict {where}: kept local {ours}; remote value {theirs} not applied"
        return f"conflict {where}: took remote {theirs}; local value {ours} replaced"


@dataclass(frozen=True)
class MergeOutcome:
    """What :func:`integrate` did.

    Attributes:
        kind: ``"none"`` (nothing new), ``"fast-forward"`` or ``"merge"``.
        commit: the new head (the fetched commit for a fast-forward, the merge commit), or the unchanged head.
        changes: what the remote side brought, relative to the local head (:class:`gitstate.Change`).
        conflicts: keys both sides changed, resolved by the rule (:class:`DocConflict`).
        base: the merge base (``"merge"`` only).
    """

    kind: str
    commit: str | None
    changes: list[docdiff.Change] = field(default_factory=list)
    conflicts: list[DocConflict] = field(default_factory=list)
    base: str | None = None


def _decode(path: str, data: bytes | None) -> Any:
    if data is None:
        return docdiff.MISSING
    return codec_for(path).decode(data, path)


def _merge_document(
    path: str, base: bytes | None, ours: bytes | None, theirs: bytes | None, prefer: str
) -> tuple[bytes | None, list[DocConflict]]:
    """Merge one document changed on both sides. Returns the merged bytes (None: deleted) and conflicts."""
    codec = codec_for(path)
    side_bytes = {"ours": ours, "theirs": theirs}
    if codec.name != "bytes":
        try:
            b, o, t = _decode(path, base), _decode(path, ours), _decode(path, theirs)
        except (DecodeError, ValueError) as e:
            logger.info("%s does not parse on one side (%s); merged as a whole document", path, e)
        else:
            result = docdiff.merge3(b, o, t, prefer=prefer)
            value = result.value
            conflicts = [DocConflict(path, c.key, c.base, c.ours, c.theirs, c.chosen) for c in result.conflicts]
            if value is docdiff.MISSING:
                return None, conflicts
            if docdiff.same(value, o) and ours is not None:
                return ours, conflicts
            if docdiff.same(value, t) and theirs is not None:
                return theirs, conflicts
            return codec.encode(value), conflicts
    chosen = "theirs" if prefer == "theirs" else "ours"

    def shown(data: bytes | None) -> Any:
        if data is None:
            return docdiff.MISSING
        try:
            return _decode(path, data)
        except (DecodeError, ValueError):
            return data

    return side_bytes[chosen], [DocConflict(path, (), shown(base), shown(ours), shown(theirs), chosen)]


def _describe(repo: Repository, tree: str | None, files: Mapping[str, bytes | None]) -> list[docdiff.Change]:
    """Structured changes that ``files`` make to ``tree``."""
    changes: list[docdiff.Change] = []
    for path, data in sorted(files.items()):
        old_b = repo.read_at(tree, path) if tree else None
        try:
            old, new = _decode(path, old_b), _decode(path, data)
        except (DecodeError, ValueError):  # compared as raw bytes, which docdiff.diff takes whole
            old = docdiff.MISSING if old_b is None else old_b
            new = docdiff.MISSING if data is None else data
        changes.extend(docdiff.diff(old, new, doc=path))
    return changes


def _describe_trees(repo: Repository, old_tree: str | None, new_tree: str) -> list[docdiff.Change]:
    changed = repo.changed_paths(old_tree, new_tree)
    return _describe(repo, old_tree, {p: None if s is None else repo.read_blob(s) for p, (_, s) in changed.items()})


def _remote_label(repo: Repository, fetched: str) -> str:
    for ref, sha in sorted(repo.list_refs("refs/remotes/").items()):
        if sha == fetched:
            return ref[len("refs/remotes/") :]
    return fetched[:8]


def integrate(
    repo: Repository,
    head: str | None,
    fetched: str | None,
    *,
    rule: str = "ours",
    author: str,
    remote: str | None = None,
) -> MergeOutcome:
    """Bring commit ``fetched`` into the branch at ``head``: nothing, a fast-forward, or a merge commit.

    Call with the repository lock held. A merge commit (parents ``head`` then ``fetched``, trailer
    ``Gitstate-Actor: merge``) is written to the object store but the branch is NOT moved: the caller checks it
    out (``Store._checkout``). Documents both sides changed are merged key by key against the merge base; keys
    both changed differently follow ``rule``.

    Raises:
        UnsafeTree: the fetched tree holds an entry gitstate will not write (see :mod:`gitstate.worktree`);
            nothing is written.
        MergeConflict: ``rule="fail"`` and at least one key conflicts (nothing is written).
        ValueError: an unknown rule.

    Example:
        >>> import tempfile
        >>> repo = Repository.open(tempfile.mkdtemp())
        >>> with repo.lock():
        ...     base = repo.commit_files(None, {"s.json": b'{"a": 1, "b": 1}'}, "base", author="t <t@x>")
        ...     theirs = repo.commit_files(base, {"s.json": b'{"a": 1, "b": 2}'}, "remote", author="t <t@x>",
        ...                                move_branch=False)
        ...     ours = repo.commit_files(base, {"s.json": b'{"a": 3, "b": 1}'}, "local", author="t <t@x>")
        ...     out = integrate(repo, ours, theirs, author="t <t@x>")
        >>> out.kind, [c.key for c in out.changes]
        ('merge', [('b',)])
        >>> repo.close()
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"the merge rule must be one of {', '.join(MERGE_RULES)}, not {rule!r}")
    if fetched is None or fetched == head:
        return MergeOutcome("none", head)
    if not repo.has_object(fetched):
        raise RemoteError(f"commit {fetched[:8]} has not been fetched; pull again")
    fetched_tree = repo.commit_info(fetched).tree
    what = f"to bring in commit {fetched[:8]}"
    if head is None:
        check_trees(repo, None, fetched_tree, what=what)
        return MergeOutcome("fast-forward", fetched, _describe_trees(repo, None, fetched_tree))
    bases = merge_bases(repo, head, fetched)
    if bases == [fetched]:
        return MergeOutcome("none", head)
    head_tree = repo.commit_info(head).tree
    # Everything the fetched tree holds that ours does not is what a fast-forward or a merge could write:
    # check it all before anything is merged, written or moved.
    check_trees(repo, head_tree, fetched_tree, what=what)
    if bases == [head]:
        return MergeOutcome("fast-forward", fetched, _describe_trees(repo, head_tree, fetched_tree), base=head)
    base = bases[0] if bases else None
    if base is None:
        logger.warning("%s and %s share no history; merging them as if from an empty store", head[:8], fetched[:8])
    base_tree = repo.commit_info(base).tree if base else EMPTY_TREE
    ours_changed = repo.changed_paths(base_tree, head_tree)
    theirs_changed = repo.changed_paths(base_tree, fetched_tree)
    prefer = "theirs" if rule == "theirs" else "ours"
    files: dict[str, bytes | None] = {}
    conflicts: list[DocConflict] = []
    for path, (b_sha, t_sha) in sorted(theirs_changed.items()):
        if path not in ours_changed:
            files[path] = None if t_sha is None else repo.read_blob(t_sha)
            continue
        o_sha = ours_changed[path][1]
        if o_sha == t_sha:
            continue

        def read(sha: str | None) -> bytes | None:
            return None if sha is None else repo.read_blob(sha)

        ours_b = read(o_sha)
        merged, doc_conflicts = _merge_document(path, read(b_sha), ours_b, read(t_sha), prefer)
        conflicts.extend(doc_conflicts)
        if merged != ours_b:
            files[path] = merged
    if rule == "fail" and conflicts:
        keys = ", ".join(f"{c.doc}: {docdiff.format_key(c.key)}" if c.key else c.doc for c in conflicts[:10])
        more = f" (+{len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
        raise MergeConflict(
            f"{len(conflicts)} key(s) changed on both sides: {keys}{more}. Nothing was merged; "
            "pull again with on_conflict='ours' (keep local values) or 'theirs' (take the remote "
            "ones), or change one side first",
            conflicts,
        )
    changes = _describe(repo, head_tree, files)
    label = remote or _remote_label(repo, fetched)
    docs = sorted({c.doc for c in changes})
    subject = f"merge {label} into {repo.branch}" + (
        f": {len(changes)} change(s) in {len(docs)} document(s)" if changes else ""
    )
    body = messages.summarize(changes, max_lines=50) if changes else []
    if conflicts:
        body = [*body, f"{len(conflicts)} conflict(s), rule {rule}:"] + [c.describe() for c in conflicts[:100]]
    message = messages.build(subject, body, [(messages.ACTOR_TRAILER, messages.MERGE)])
    commit = repo.commit_files(
        head, files, message, author=author, extra_parents=(fetched,), move_branch=False, base_tree=head_tree
    )
    logger.info(
        "merged %s into %s as %s (%d change(s), %d conflict(s))",
        fetched[:8],
        head[:8],
        commit[:8],
        len(changes),
        len(conflicts),
    )
    return MergeOutcome("merge", commit, changes, conflicts, base)
