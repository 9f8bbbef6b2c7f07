"""Keeping the repository small: history packed with deltas, debris pruned — without the ``git`` binary.

Every flush writes loose objects: a 100 KB document changed 10,000 times is hundreds of megabytes of them, and
dulwich's own ``repack`` stores no deltas. This package writes Git packs itself (standard library only):

* **Packs with deltas.** Objects are grouped by type and path (git's name hash), newest first; each one is stored
  as a delta against a recent version of the same path when that saves at least half (``OFS_DELTA``, bases
  always earlier in the same pack, chains at most :data:`MAX_DELTA_DEPTH` long). The pack and its version-2 index
  are written under temp names, fsynced, then renamed ``.pack`` first and ``.idx`` last: git and dulwich only
  use a pack whose index exists.
* **Incremental, geometric.** :class:`BackgroundPacker` packs the loose objects reachable from refs into a new
  pack once there are enough of them, rolling the smallest existing packs into it while they are not more than
  twice as big, so there are few packs and each object is rewritten a logarithmic number of times.
  :func:`collect` (``gitstate gc``) repacks everything reachable into one pack.
* **Nothing reachable is ever deleted.** Roots are every ref (branches, tags = snapshots, remote-tracking refs,
  ``refs/gitstate/*``), the ``*HEAD`` files, reflogs and the index. A loose object is deleted only once it is in
  an installed pack, or when it is unreachable *and* older than the grace period (writers write objects before
  they move a ref). Pruning runs under the store's lock, after re-reading the refs, so no flush can start using
  an object between the check and the deletion.
* **Out of the way of writers.** :class:`BackgroundPacker` does the work in a separate Python process, so it
  never competes with the application's threads for the interpreter: flushes keep their latency even when they
  run back to back. Writing a pack needs no lock (objects are immutable); deleting the loose copies of packed
  objects needs none either (readers look in the packs again when a loose object is gone), nor does removing
  rolled-up packs whose every object is in the new one. The store lock is taken only to prune (and, in
  :func:`collect`, to replace the old packs), a few file operations.

The package, by job (imports point down the list): :mod:`.background` (the worker process) and
:mod:`.verify` (what ``gitstate doctor`` asks) → :mod:`.maintenance` (the operations) → :mod:`.packwrite`
(pack/idx writer, delta choice) → :mod:`.reach` (roots, walk) → :mod:`.objects` (reading) → :mod:`.delta`.
This ``__init__`` only re-exports; nothing outside the package imports a submodule's ``_private`` name.

What belongs here: the package's public names, re-exported (:func:`collect`, :func:`pack_loose`,
:func:`prune_loose`, :func:`count_objects`, :class:`BackgroundPacker`, what doctor reads from :mod:`.verify`), and
this map. What does not: any code of its own (each job is in its submodule above; :mod:`.retain`, the stored
retention policy the background packer applies, sits beside :mod:`.background`), the retention rules and cut
(:mod:`gitstate.retention`), the doctor's findings (:mod:`gitstate.doctor`), the ``gc`` command
(:mod:`gitstate.cli.maintenance`).

Reading uses the same stdlib code (loose objects, pack index v1/v2, ``OFS``/``REF`` deltas), so packing never
contends for the :class:`~gitstate.repo.Repository`'s object mutex, and needs neither dulwich nor ``git``.
"""

from __future__ import annotations

from .background import BackgroundPacker
from .maintenance import collect, count_objects, pack_loose, prune_loose
from .objects import DEFAULT_PRUNE_GRACE_S, MAX_DELTA_DEPTH
from .verify import ObjectCheck, check_objects, read_object, ref_roots, stale_temp_files

__all__ = [
    "DEFAULT_PRUNE_GRACE_S",
    "MAX_DELTA_DEPTH",
    "BackgroundPacker",
    "ObjectCheck",
    "check_objects",
    "collect",
    "count_objects",
    "pack_loose",
    "prune_loose",
    "read_object",
    "ref_roots",
    "stale_temp_files",
]
