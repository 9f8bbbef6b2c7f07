"""A flush's trees made by patching: when every changed entry of a tree replaces one of the same name and mode
(documents updated, none added or removed), the new tree is the old one's raw bytes with the new ids written
over the old ones, at offsets found once per tree and carried to its successors (the same names sit at the same
places). A tree of 10,000 entries is then not copied and re-serialized by dulwich a Python step per entry.

What belongs here: that patch and its offsets. What does not: building trees path by path and every other
change to a tree (:meth:`gitstate.repo_objects.RepositoryObjects.build_tree`, dulwich's copy-and-edit).
The patched object is given dulwich's private attributes directly, as ``set_raw_string`` would set them without
parsing the bytes again (dulwich is pinned below 1.3; ``tests/test_repo_trees.py`` checks every patched tree
against dulwich's own serialization).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final, cast

from .repo_objects import sha1

if TYPE_CHECKING:
    from dulwich.objects import Tree

__all__ = ["OFFSET_CACHE_TREES", "TreePatcher", "entry_offsets"]

#: Trees whose entries' places are kept: the ones the last flushes made (one dict entry per name each).
OFFSET_CACHE_TREES: Final = 16


def entry_offsets(raw: bytes) -> dict[bytes, int]:
    """Where each entry's 20-byte id starts in a tree's raw bytes (``<mode> <name>\\0<id>``, one after another)."""
    offsets: dict[bytes, int] = {}
    find = raw.find
    pos, end = 0, len(raw)
    while pos < end:
        nul = find(b"\x00", pos)
        offsets[raw[find(b" ", pos) + 1 : nul]] = nul + 1
        pos = nul + 21
    return offsets


class TreePatcher:
    """The patch of :mod:`gitstate.repo_trees`, with the offsets of recent trees (one per repository handle)."""

    def __init__(self) -> None:
        self._offsets: OrderedDict[str, dict[bytes, int]] = OrderedDict()

    def patch(self, tree_sha: str, base: Tree, entries: dict[bytes, tuple[int, bytes] | None]) -> Tree | None:
        """``base`` (whose id is ``tree_sha``) with ``entries`` (name -> (mode, hex id)) put in, or None when
        they are not all replacements of an entry of the same name and mode (one is added, removed (None) or
        changes mode): the caller then edits a copy with dulwich."""
        if not entries:
            return None
        old = base._entries  # dulwich's name -> (mode, hex id); read only
        for bname, entry in entries.items():
            if entry is None or old.get(bname, (None,))[0] != entry[0]:
                return None
        raw = base.as_raw_string()
        offsets = self._offsets.get(tree_sha)
        if offsets is None:
            offsets = entry_offsets(raw)
        buf = bytearray(raw)
        new = dict(old)
        for bname, entry in entries.items():
            at = offsets[bname]
            buf[at : at + 20] = bytes.fromhex(entry[1].decode())  # type: ignore[index]
            new[bname] = cast(Any, entry)
        from dulwich.objects import FixedSha, Tree

        data = bytes(buf)
        tid = sha1(b"tree %d\x00" % len(data) + data).hexdigest()
        tree = Tree()
        tree._entries = new
        tree._chunked_text = [data]
        tree._sha = FixedSha(tid)
        tree._needs_serialization = False
        for key in (tree_sha, tid):
            self._offsets[key] = offsets
            self._offsets.move_to_end(key)
        while len(self._offsets) > OFFSET_CACHE_TREES:
            self._offsets.popitem(last=False)
        return tree
