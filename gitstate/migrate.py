"""Schema migrations: versioned steps that reshape the documents, each landing as one commit, all or nothing.

What belongs here: the schema version (its document, reading it, guarding flushes against another version),
migration plans and runs, migration files. What does not: the transaction view steps write to
(:mod:`gitstate.transactions`), committing (it goes through ``store.services``, never the Store's private
attributes), the message format (:mod:`gitstate.messages`).

The schema version lives in the store itself, in the document ``.gitstate/schema.json`` (``{"version": N}``;
hidden from ``docs()``), so it travels with clones and pushes and comes back with a restore. A store that never
migrated is at version 0.

:meth:`Store.migrate <gitstate.store.Store.migrate>` (and ``gitstate migrate FILE.py``) runs every step above
the current version, in order:

1. pending writes are flushed; then, holding the store's lock so no other process commits in between,
2. the snapshot ``pre-migration-v{cur}-to-v{target}`` tags the current head. A tag of that name that holds the
   same content (left by an attempt that failed, or by a migration rolled back by restoring it) is reused;
   otherwise the name gets a suffix, ``-2``, ``-3``..., so a snapshot never moves;
3. every step runs **in memory** against a :class:`TxView` (reads fall through to the committed documents, writes
   stay in the view), so a step that raises leaves nothing behind: the branch, the files and the index are
   exactly as before, no commit is added, the snapshot stays, and :class:`~gitstate.errors.MigrationError`
   names the step and chains its exception;
4. when every step succeeded, the steps land as one commit each (actor ``migration``, the message names the
   versions, ``.gitstate/schema.json`` updated in each), and the branch moves once.

A second run finds nothing above the current version and does nothing. Rolling back is one command:
``gitstate restore pre-migration-v1-to-v2`` (or ``store.restore("pre-migration-v1-to-v2")``), a new commit whose
content, schema version included, equals the snapshot.

Other processes that have the store open
-----------------------------------------
They see the migrated content at once (their next read picks up the new head) and receive an
``external_change`` event. What they must not do is write values shaped for the old schema back on top. So a
store remembers the schema version its program works with: the one passed as ``gitstate.open(...,
schema_version=N)``, else the version found at open (a migration run by the store itself, or a restore/undo it
makes, updates it). A flush that finds the store at another version commits nothing and raises
:class:`SchemaMismatch` (a :class:`~gitstate.errors.SaveError`, also delivered as a ``save_error`` event); the
pending writes stay in memory. The program then either

* exits and restarts with code for the new schema (what a deployment normally does), or
* drops its pending writes (``store.discard_pending()``) or checks they fit the new schema, and calls
  ``store.expect_schema(new_version)``; later flushes commit again.

A program that declares ``schema_version=N`` and finds the store at a *newer* version fails at open with
:class:`SchemaMismatch`: old code never writes into a newer store. A program that declares a version the store
has not reached yet calls ``store.migrate(steps)`` before it writes (its flushes refuse until then).

A step gets a :class:`TxView` and must use only it (not the store): steps run while the store's lock is held, and
the store sees their writes only once all of them succeeded.

Example:
    >>> import gitstate, tempfile
    >>> store = gitstate.open(tempfile.mkdtemp(), durability="manual")
    >>> store.set("tasks/t1.json", None, {"id": 1, "state": "open"}); _ = store.flush()
    >>> def rename_state(tx):
    ...     for doc in tx.docs("tasks/"):
    ...         tx.set(doc, "status", tx.get(doc, "state")); tx.delete(doc, "state")
    >>> _ = store.migrate({1: rename_state})
    >>> store.schema_version, store.get("tasks/t1.json")
    (1, {'id': 1, 'status': 'open'})
    >>> store.migrate({1: rename_state})  # a second run does nothing
    []
    >>> store.close()
"""

from __future__ import annotations

import logging
import runpy
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import docdiff, messages
from .codecs import Codecs, codec_for, copy_value, registry_for
from .errors import (
    DecodeError,
    GitStateError,
    MigrationError,
    SchemaMismatch,
)
from .keys import (
    ABSENT,
)

#: The document holding the schema version is defined with the journal (which must know it without importing
#: this module); this module owns its meaning.
from .paths import SCHEMA_DOC
from .transactions import TxView

if TYPE_CHECKING:
    from .journal import DocumentJournal
    from .repo import Repository
    from .store import Store

__all__ = [
    "SCHEMA_DOC",
    "MigrationPlan",
    "MigrationResult",
    "Migrations",
    "SchemaMismatch",
    "StepPlan",
    "TxView",
    "apply",
    "check_flush",
    "current_version",
    "expect",
    "load_steps",
    "on_open",
    "plan",
    "run",
    "snapshot_name",
    "version_at",
]

logger = logging.getLogger("gitstate.migrate")

#: The document holding the schema version (``{"version": N}``); under the metadata prefix, hidden from docs().
_META_PREFIX: Final = ".gitstate/"

Step = Callable[["TxView"], object]


# ===================================================================== the schema version
_version_cache: dict[str, int] = {}
_version_cache_lock = threading.Lock()


def _parse_version(data: bytes | None, *, where: str = SCHEMA_DOC) -> int:
    if data is None:
        return 0
    try:
        value = codec_for(SCHEMA_DOC).decode(data, SCHEMA_DOC)
    except DecodeError as e:
        raise MigrationError(f'{where} does not parse ({e.problem}); fix it to hold {{"version": N}}') from e
    version = value.get("version") if isinstance(value, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise MigrationError(f'{where} holds {value!r}; it must hold {{"version": N}} with N a whole number >= 0')
    return version


def version_at(repo: Repository, tree: str | None) -> int:
    """The schema version recorded in the commit tree ``tree`` (0 when none is recorded). Cached by blob id, so
    calling it on every flush costs one tree lookup.

    Raises:
        MigrationError: the schema document is malformed.
    """
    if tree is None:
        return 0
    blob = repo.blob_id_at(tree, SCHEMA_DOC)
    if blob is None:
        return 0
    with _version_cache_lock:
        cached = _version_cache.get(blob)
    if cached is not None:
        return cached
    version = _parse_version(repo.read_blob(blob))
    with _version_cache_lock:
        if len(_version_cache) > 1000:
            _version_cache.clear()
        _version_cache[blob] = version
    return version


def current_version(store: Store) -> int:
    """The schema version of the store's current state (what ``store.schema_version`` returns).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp()) as store:
        ...     current_version(store)
        0
    """
    services = store.services
    services.refresh()
    return version_at(services.repo, services.head_tree)


def _schema_bytes(version: int) -> bytes:
    return codec_for(SCHEMA_DOC).encode({"version": version})


def snapshot_name(current: int, target: int) -> str:
    """The name of the pre-migration snapshot (before a suffix is added to keep it unique).

    Example:
        >>> snapshot_name(1, 2)
        'pre-migration-v1-to-v2'
    """
    return f"pre-migration-v{current}-to-v{target}"


# ===================================================================== guarding other processes (wired in store.py)
def _version_or_none(store: DocumentJournal) -> int | None:
    """The version at the store's head, or None (logged) when the schema document is malformed: a broken
    ``.gitstate/schema.json`` (hand-committed) must not make the store unusable, only unguarded."""
    try:
        return version_at(store.services.repo, store.services.head_tree)
    except MigrationError as e:
        logger.warning("%s: %s; schema checks are off until it is fixed", store.path, e)
        return None


def on_open(store: Store, schema_version: int | None) -> None:
    """Set the schema version ``store`` writes: ``schema_version`` when the program declares one, else the
    version found at open. Called by :func:`gitstate.open`.

    Raises:
        SchemaMismatch: the program declares a version older than the store's (old code, newer store).
    """
    if schema_version is not None and (
        isinstance(schema_version, bool) or not isinstance(schema_version, int) or schema_version < 0
    ):
        raise ValueError(f"schema_version must be a whole number >= 0, not {schema_version!r}")
    found = _version_or_none(store)
    if schema_version is None:
        store.services.expected_schema = found
        return
    if found is not None and found > schema_version:
        raise SchemaMismatch(
            f"{store.path} is at schema version {found}, newer than the version {schema_version} this program "
            f"writes; run the program's newer release, or roll the store back with 'gitstate restore "
            f"pre-migration-v{schema_version}-to-v{found}' (see 'gitstate snapshots')",
            expected=schema_version,
            found=found,
        )
    store.services.expected_schema = schema_version


def expect(store: Store, version: int) -> None:
    """Declare that the program's writes fit schema ``version`` (``store.expect_schema(version)``): flushes
    refused with :class:`SchemaMismatch` commit again once ``version`` is the store's.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp()) as store:
        ...     expect(store, 0)
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a whole number >= 0, not {version!r}")
    store.services.expected_schema = version


def check_flush(store: DocumentJournal) -> None:
    """Refuse to commit writes made for another schema. Called by a flush with the store's lock held, after the
    store caught up with the branch head.

    Raises:
        SchemaMismatch: the store is at a schema version other than the one the program writes.
    """
    expected = store.services.expected_schema
    if expected is None:
        return
    found = _version_or_none(store)
    if found is None or found == expected:
        return
    pending = store.pending
    if found > expected:
        why = f"was migrated to schema version {found} (this program writes version {expected}) by another process"
    else:
        why = f"is at schema version {found}, older than the version {expected} this program writes (restored?)"
    raise SchemaMismatch(
        f"{store.path} {why}; {pending} pending write(s) were NOT committed and stay in memory: restart the "
        f"program with code for version {found}, or call store.discard_pending() (or check the writes fit) and "
        f"then store.expect_schema({found})",
        expected=expected,
        found=found,
        pending=pending,
    )


class _StepView(TxView):
    """The view migration steps get: remembers each document's value before the current step."""

    def __init__(
        self, read: Callable[[str], Any], list_docs: Callable[[], Iterable[str]], *, codecs: Codecs | None = None
    ) -> None:
        super().__init__(read, list_docs, codecs=codecs)
        self._step_before: dict[str, Any] = {}

    def _before_write(self, doc: str) -> None:
        if doc not in self._step_before:
            current = self._current(doc)
            self._step_before[doc] = current if current is ABSENT else copy_value(current)

    def begin(self, from_version: int, version: int) -> None:
        self._step_before = {}
        self.from_version, self.version = from_version, version

    def step_changes(self) -> tuple[dict[str, bytes | None], list[docdiff.Change]]:
        files: dict[str, bytes | None] = {}
        changes: list[docdiff.Change] = []
        for doc in sorted(self._step_before):
            old, new = self._step_before[doc], self._values[doc]
            codec = self._codecs.for_doc(doc)
            old_b = None if old is ABSENT else codec.encode(old)
            new_b = None if new is ABSENT else codec.encode(new)
            if old_b == new_b:
                continue
            files[doc] = new_b
            o = docdiff.MISSING if old is ABSENT else old
            n = docdiff.MISSING if new is ABSENT else new
            if codec.structured:
                changes.extend(docdiff.diff(o, n, doc=doc))
            else:
                op = "add" if old is ABSENT else "remove" if new is ABSENT else "change"
                changes.append(docdiff.Change(doc, (), op, o, n))
        return files, changes


# ===================================================================== plans and runs
@dataclass(frozen=True)
class StepPlan:
    """What one migration step changes.

    Attributes:
        version: the version the step migrates to.
        from_version: the version it migrates from.
        name: the step function's name.
        description: the first line of its docstring ("" without one).
        changes: the structured changes to the documents (the schema document left out).
        files: the new file contents, ``.gitstate/schema.json`` included (None: file deleted).
    """

    version: int
    from_version: int
    name: str
    description: str
    changes: list[docdiff.Change]
    files: dict[str, bytes | None] = field(repr=False)

    @property
    def subject(self) -> str:
        """The commit subject: ``migrate schema v1 -> v2: rename_state (rename 'state' to 'status')``."""
        what = self.name + (f" ({self.description})" if self.description else "")
        return f"migrate schema v{self.from_version} -> v{self.version}: {what}"

    def message(self) -> str:
        """The full commit message: subject, the changed keys, Git trailers."""
        return messages.build(
            self.subject,
            messages.summarize(self.changes, max_lines=50),
            [
                (messages.ACTOR_TRAILER, messages.MIGRATION),
                (messages.SCHEMA_FROM_TRAILER, self.from_version),
                (messages.SCHEMA_TO_TRAILER, self.version),
                (messages.MIGRATION_TRAILER, self.name),
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``gitstate migrate --dry-run --json``)."""
        return {
            "version": self.version,
            "from_version": self.from_version,
            "name": self.name,
            "description": self.description,
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclass(frozen=True)
class MigrationPlan:
    """The steps a migration would run and what each changes (computed in memory; nothing written).

    Attributes:
        current: the store's schema version.
        target: the version after the last step (``current`` when nothing is to do).
        head: the commit the plan was computed on.
        snapshot: the name the pre-migration snapshot takes (None when nothing is to do or the store is empty).
        steps: one :class:`StepPlan` per step to run, in order.
    """

    current: int
    target: int
    head: str | None
    snapshot: str | None
    steps: list[StepPlan]

    def lines(self) -> list[str]:
        """A human summary: one header line per step, then its changes indented."""
        if not self.steps:
            return []
        out: list[str] = []
        for st in self.steps:
            out.append(st.subject)
            out.extend(f"  {line}" for line in messages.summarize(st.changes, max_lines=200) or ["(no changes)"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "current": self.current,
            "target": self.target,
            "head": self.head,
            "snapshot": self.snapshot,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class MigrationResult:
    """What a migration did.

    Attributes:
        current: the version before.
        target: the version after.
        snapshot: the pre-migration snapshot's name (None: nothing to do, or an empty store).
        commits: one commit id per step, in order.
        plan: the plan that was applied.
    """

    current: int
    target: int
    snapshot: str | None
    commits: list[str]
    plan: MigrationPlan


def _validate_steps(steps: Mapping[int, Step]) -> list[tuple[int, Step]]:
    if not isinstance(steps, Mapping):
        raise TypeError(f"steps must be a mapping {{version: fn(tx)}}, not {type(steps).__name__}")
    out: list[tuple[int, Step]] = []
    for version, fn in steps.items():
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"migration versions must be whole numbers >= 1, not {version!r}")
        if not callable(fn):
            raise TypeError(f"migration step {version} must be a function fn(tx), not {type(fn).__name__}")
        out.append((version, fn))
    out.sort(key=lambda item: item[0])
    return out


def _step_name(fn: Step) -> tuple[str, str]:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return name, doc.splitlines()[0].strip() if doc else ""


def _compute(
    view: _StepView, todo: list[tuple[int, Step]], current: int, head: str | None, snapshot: str | None
) -> MigrationPlan:
    prev = current
    plans: list[StepPlan] = []
    for version, fn in todo:
        name, description = _step_name(fn)
        view.begin(prev, version)
        try:
            fn(view)
        except Exception as e:
            kept = (
                f"; the pre-migration snapshot {snapshot!r} was kept (restore it with 'gitstate restore {snapshot}')"
                if snapshot
                else "; no pre-migration snapshot was taken (nothing was committed yet, or a dry run)"
            )
            raise MigrationError(
                f"migration step {version} ({name}, v{prev} -> v{version}) failed: {type(e).__name__}: {e}. "
                f"Nothing was changed: the store is still at schema version {current}{kept}. Fix the step and "
                "run the migration again",
                version=version,
                snapshot=snapshot,
            ) from e
        try:
            files, changes = view.step_changes()
        except GitStateError as e:
            raise MigrationError(
                f"migration step {version} ({name}) produced a value that cannot be stored: {e}", version=version
            ) from e
        files[SCHEMA_DOC] = _schema_bytes(version)
        plans.append(StepPlan(version, prev, name, description, changes, files))
        prev = version
    return MigrationPlan(current, prev, head, snapshot, plans)


def _tree_view(repo: Repository, tree: str | None) -> _StepView:
    codecs = registry_for(repo)

    def read(doc: str) -> Any:
        data = repo.read_at(tree, doc) if tree else None
        return ABSENT if data is None else codecs.for_doc(doc).decode(data, doc)

    def list_docs() -> Iterable[str]:
        return repo.list_blobs(tree) if tree else ()

    return _StepView(read, list_docs, codecs=codecs)


def _store_view(store: Store) -> _StepView:
    """Reads through the store's current values (pending writes included): what a flush-then-migrate sees."""

    def read(doc: str) -> Any:
        return store.get(doc, default=ABSENT)

    return _StepView(read, store.docs, codecs=store.codecs)


def plan(store: Store, steps: Mapping[int, Step]) -> MigrationPlan:
    """Compute, in memory, what ``steps`` would change (a dry run): nothing is written, nothing is flushed.

    The steps see the store's current values, pending writes included (a real run flushes them first).

    Raises:
        MigrationError: a step raised (it names the step and chains the cause).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     store.set("s.json", "a", 1)
        ...     plan(store, {1: lambda tx: tx.set("s.json", "a", 2)}).lines()
        ['migrate schema v0 -> v1: <lambda>', '  s.json: a 1 -> 2']
    """
    todo_all = _validate_steps(steps)
    store.services.check_open()
    current = current_version(store)
    todo = [(v, fn) for v, fn in todo_all if v > current]
    head = store.head
    if not todo:
        return MigrationPlan(current, current, head, None, [])
    name = snapshot_name(current, todo[-1][0]) if head is not None else None
    return _compute(_store_view(store), todo, current, head, name)


def _take_snapshot(store: Store, head: str, current: int, target: int) -> str:
    repo = store.services.repo
    base = snapshot_name(current, target)
    existing = {t.name: t.commit for t in repo.tags()}
    head_tree = repo.commit_info(head).tree
    name, n = base, 1
    while name in existing:
        # Reuse a snapshot of the same content (a failed attempt, or a migration rolled back by restoring it):
        # restoring it gives exactly the current state. A snapshot never moves.
        if existing[name] == head or repo.commit_info(existing[name]).tree == head_tree:
            logger.info("reusing snapshot %s (it holds the current state)", name)
            return name
        n += 1
        name = f"{base}-{n}"
    repo.create_tag(name, head, tagger=store.author, message=f"state before migrating schema v{current} -> v{target}")
    return name


def apply(store: Store, steps: Mapping[int, Step]) -> MigrationResult:
    """Run every step above the store's schema version (see the module docs); return what it did.

    Raises:
        MigrationError: a step raised; nothing landed (the snapshot stays).
        SaveError: flushing the pending writes first failed.

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     store.set("s.json", "a", 1); _ = store.flush()
        ...     result = apply(store, {1: lambda tx: tx.set("s.json", "a", 2)})
        ...     result.snapshot, len(result.commits), store.get("s.json", "a")
        ('pre-migration-v0-to-v1', 1, 2)
    """
    todo_all = _validate_steps(steps)
    store.services.check_open()
    try:
        store.flush()
    except SchemaMismatch as e:
        raise MigrationError(
            f"cannot migrate {store.path}: {e.pending} write(s) are pending for schema version {e.expected} "
            f"while the store is at version {e.found}; migrate before writing, or drop them with "
            "store.discard_pending()"
        ) from e
    repo = store.services.repo
    # Hold the store's locks from reading the head to moving the branch: no flush of this process and no other
    # process commits in between, so the steps see exactly the state they replace.
    with store.services.commit_lock():
        head = repo.head()
        tree = repo.commit_info(head).tree if head else None
        current = version_at(repo, tree)
        todo = [(v, fn) for v, fn in todo_all if v > current]
        if not todo:
            logger.info("%s: already at schema version %d; nothing to migrate", store.path, current)
            empty = MigrationPlan(current, current, head, None, [])
            return MigrationResult(current, current, None, [], empty)
        target = todo[-1][0]
        snapshot = _take_snapshot(store, head, current, target) if head is not None else None
        the_plan = _compute(_tree_view(repo, tree), todo, current, head, snapshot)
        last = store.services.commit_external(
            [(st.files, st.message()) for st in the_plan.steps], actor="migration", expected_head=head
        )
        commits: list[str] = []
        cid = last
        for _ in the_plan.steps:
            assert cid is not None
            commits.append(cid)
            parents = repo.commit_info(cid).parents
            cid = parents[0] if parents else None
        commits.reverse()
        expect(store, target)
    logger.info(
        "%s: migrated schema v%d -> v%d in %d commit(s)%s",
        store.path,
        current,
        target,
        len(commits),
        f" (snapshot {snapshot})" if snapshot else "",
    )
    return MigrationResult(current, target, snapshot, commits, the_plan)


def run(store: Store, steps: Mapping[int, Step], *, dry_run: bool = False) -> list[str]:
    """What :meth:`Store.migrate <gitstate.store.Store.migrate>` does: the commit ids of the steps (``[]`` when
    nothing was to do) or, with ``dry_run``, the change lines the steps would make (nothing changes).

    Example:
        >>> import gitstate, tempfile
        >>> with gitstate.open(tempfile.mkdtemp(), durability="manual") as store:
        ...     store.set("s.json", "a", 1); _ = store.flush()
        ...     run(store, {1: lambda tx: tx.delete("s.json", "a")}, dry_run=True)
        ['migrate schema v0 -> v1: <lambda>', '  s.json: a removed (was 1)']
    """
    if dry_run:
        return plan(store, steps).lines()
    return apply(store, steps).commits


# ===================================================================== migration files and a registry
class Migrations(dict[int, Step]):
    """A ``{version: fn}`` mapping filled with a decorator (what ``gitstate migrate FILE.py`` reads).

    Example:
        >>> migrations = Migrations()
        >>> @migrations(1)
        ... def add_priority(tx):
        ...     '''Every task gets a priority.'''
        ...     for doc in tx.docs("tasks/"):
        ...         tx.set(doc, "priority", "normal")
        >>> sorted(migrations)
        [1]
    """

    def __call__(self, version: int) -> Callable[[Step], Step]:
        """Register the decorated function as the step to ``version``."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"migration versions must be whole numbers >= 1, not {version!r}")

        def register(fn: Step) -> Step:
            if version in self:
                raise ValueError(f"migration step {version} is defined twice")
            self[version] = fn
            return fn

        return register


def load_steps(path: str | Path) -> dict[int, Step]:
    """Load ``migrations = {version: fn}`` from a Python file, run in a fresh namespace (its
    ``if __name__ == "__main__":`` block does not run).

    Raises:
        MigrationError: the file is missing, raises, or defines no usable ``migrations``.

    Example:
        >>> # load_steps("migrations_v2.py")  -> {1: <function ...>, 2: <function ...>}
    """
    p = Path(path)
    if not p.is_file():
        raise MigrationError(f"{p}: no such migration file")
    try:
        namespace = runpy.run_path(str(p), run_name="gitstate_migrations")
    except Exception as e:
        raise MigrationError(f"{p}: loading the file raised {type(e).__name__}: {e}") from e
    found = namespace.get("migrations")
    if not isinstance(found, Mapping):
        raise MigrationError(f"{p} defines no 'migrations = {{version: fn}}' mapping")
    out: dict[int, Step] = {}
    for k, fn in found.items():
        version = int(k) if isinstance(k, str) and k.isdigit() else k
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise MigrationError(f"{p}: migration versions must be whole numbers >= 1, not {k!r}")
        if not callable(fn):
            raise MigrationError(f"{p}: migration step {k} is not a function")
        out[version] = fn
    if not out:
        raise MigrationError(f"{p}: 'migrations' is empty")
    return out
