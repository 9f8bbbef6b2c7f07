"""The async API: aopen/AsyncStore under a real event loop. Nothing may block the loop: I/O runs in threads."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import git, status_porcelain

import gitstate
from gitstate import aio
from gitstate.aio import AsyncStateView, AsyncStore


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


@pytest.fixture
def fast_switch() -> Iterator[None]:
    """A 1 ms GIL switch interval: the loop thread gets its turn often while a worker thread runs Python code."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    yield
    sys.setswitchinterval(old)


def test_aopen_is_an_async_context_manager_and_awaitable(tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            assert isinstance(store, AsyncStore)
            store.set("state.json", "services.slack", True)
            commit = await store.flush("toggle slack")
            first = (store.get("state.json", "services.slack"), store.pending, commit == store.head)
        closed_after_with = store.closed
        again = await gitstate.aopen(tmp_path / "s", durability="manual", fsync=False)
        value = again.get("state.json")
        await again.close()
        await again.close()  # idempotent
        return first, closed_after_with, value, again.closed

    first, closed, value, closed_again = run(main)
    assert first == (True, 0, True)
    assert closed and closed_again
    assert value == {"services": {"slack": True}}
    assert git(tmp_path / "s", "log", "--format=%s").splitlines() == ["toggle slack"]


def test_immediate_durability_is_no_longer_refused() -> None:
    # It used to raise ValueError; tests/test_aio_immediate.py covers the write-through behaviour.
    opening = gitstate.aopen("/nonexistent", durability="immediate")
    assert hasattr(opening, "__aenter__")


def test_in_memory_calls_are_plain_and_io_calls_are_coroutines(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            for call in (
                lambda: store.set("a.json", "x", 1),
                lambda: store.get("a.json"),
                lambda: store.update("a.json", {"y": 2}),
                lambda: store.append("a.json", "l", 1),
                lambda: store.delete("a.json", "l"),
                lambda: store.docs(),
                lambda: store.exists("a.json"),
                lambda: store.pending,
                lambda: store.on("committed", print)(),
            ):
                assert not asyncio.iscoroutine(call())
            flush = store.flush()
            assert asyncio.iscoroutine(flush)
            await flush
            for name in (
                "flush",
                "close",
                "log",
                "diff",
                "at",
                "resolve",
                "restore",
                "undo",
                "snapshot",
                "snapshots",
                "migrate",
                "remote_add",
                "push",
                "pull",
                "sync",
                "gc",
                "watch",
                "stats",
            ):
                assert inspect.iscoroutinefunction(getattr(AsyncStore, name)), name

    run(main)


def test_every_io_call_runs_off_the_event_loop_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each coroutine hands its Store call to a worker thread; opening the store too."""
    calls: dict[str, int] = {}
    real_open = aio._open_store

    def recording_open(*args: Any, **kwargs: Any) -> gitstate.Store:
        calls["open"] = threading.get_ident()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(aio, "_open_store", recording_open)

    async def main() -> int:
        loop_thread = threading.get_ident()
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            sync_store = store.store
            for name in (
                "flush",
                "log",
                "diff",
                "at",
                "resolve",
                "restore",
                "undo",
                "snapshot",
                "snapshots",
                "migrate",
                "remote_add",
                "push",
                "pull",
                "sync",
                "gc",
                "watch",
                "stats",
            ):

                def recorder(*args: Any, _name: str = name, **kwargs: Any) -> Any:
                    calls[_name] = threading.get_ident()
                    return None

                monkeypatch.setattr(sync_store, name, recorder)
            await store.flush()
            await store.log()
            await store.diff()
            await store.at("HEAD")
            await store.resolve("HEAD")
            await store.restore("HEAD")
            await store.undo()
            await store.snapshot("s1")
            await store.snapshots()
            await store.migrate({})
            await store.remote_add("origin", "/x")
            await store.push()
            await store.pull()
            await store.sync()
            await store.gc()
            await store.watch()
            await store.stats()
            monkeypatch.undo()
        return loop_thread

    loop_thread = run(main)
    assert len(calls) == 18
    assert all(ident != loop_thread for ident in calls.values()), calls


def _make_history(path: Path, commits: int) -> gitstate.Store:
    """A store with ``commits`` commits, made quickly at the repository layer (no work-tree writes, no fsync)."""
    store = gitstate.open(path, durability="manual", fsync=False)
    store.set("state.json", "n", -1)
    store.flush()
    repo = store._repo
    head = repo.head()
    start = head
    for i in range(commits):
        data = json.dumps({"n": i}, indent=2).encode() + b"\n"
        head = repo.commit_files(
            head,
            {"state.json": data},
            f"state.json: n {i - 1} -> {i}\n\nGitstate-Actor: library\n",
            author=store.author,
            fsync=False,
            move_branch=False,
        )
    repo.update_ref(repo.branch_ref, head, start, fsync=False)
    store.close()
    (path / "state.json").write_bytes(data)  # the work tree matches the new head: nothing to recover on open
    return store


def test_a_long_log_does_not_block_the_event_loop(tmp_path: Path, fast_switch: None) -> None:
    n = 1000
    _make_history(tmp_path / "s", n)

    async def main() -> tuple[int, int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.0005)

        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            beat = asyncio.create_task(heartbeat())
            await asyncio.sleep(0.01)  # the heartbeat is running
            before = ticks
            t0 = time.perf_counter()
            log = await store.log()
            elapsed = time.perf_counter() - t0
            during = ticks - before
            stop.set()
            await beat
        return len(log), during, elapsed

    count, during, elapsed = run(main)
    assert count == n + 1
    # A log that blocked the loop would let the heartbeat tick at most once while it ran.
    assert during >= 5, f"heartbeat ticked {during} times during a {elapsed * 1000:.0f} ms log"


def test_a_slow_flush_does_not_block_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush held up on the disk (simulated: the worker waits on an event) leaves the loop free."""
    release = threading.Event()

    async def main() -> tuple[int, str | None]:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            real_flush = store.store.flush

            def slow_flush(*args: Any, **kwargs: Any) -> str | None:
                assert release.wait(30)
                return real_flush(*args, **kwargs)

            monkeypatch.setattr(store.store, "flush", slow_flush)
            store.set("state.json", "a", 1)
            task = asyncio.create_task(store.flush())
            ticks = 0
            while ticks < 20:  # the loop runs while the flush waits in its thread
                await asyncio.sleep(0)
                ticks += 1
                assert store.get("state.json", "a") == 1
            assert not task.done()
            release.set()
            commit = await task
            monkeypatch.undo()
            return ticks, commit

    ticks, commit = run(main)
    assert ticks == 20 and commit is not None


def test_history_calls(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            store.set("state.json", "services", {"slack": False})
            await store.flush()
            await store.snapshot("before")
            store.set("state.json", "services.slack", True)
            await store.flush()
            changes = await store.diff()
            assert [(c.key, c.old, c.new) for c in changes] == [(("services", "slack"), False, True)]
            view = await store.at("before")
            assert isinstance(view, AsyncStateView)
            assert await view.get("state.json", "services.slack") is False
            assert await view.get("state.json", "nope", default=7) == 7
            assert await view.docs() == ["state.json"]
            assert [s.name for s in await store.snapshots()] == ["before"]
            assert await store.resolve("before") == (await store.log())[1].id
            await store.undo()
            assert store.get("state.json", "services.slack") is False
            await store.restore("HEAD~1")
            assert store.get("state.json", "services.slack") is True
            assert [c.actor for c in await store.log(limit=2)] == ["restore", "restore"]
            lines = await store.migrate({1: lambda tx: tx.set("state.json", "v", 1)}, dry_run=True)
            assert lines == ["migrate schema v0 -> v1: <lambda>", "  state.json: v = 1"]
            assert len(await store.migrate({1: lambda tx: tx.set("state.json", "v", 1)})) == 1
            assert store.schema_version == 1
            stats = await store.stats()
            assert stats["pending"] == 0

    run(main)
    assert status_porcelain(tmp_path / "s") == ""


def test_sync_with_a_local_remote(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "-q", "-b", "main", str(remote))

    async def main() -> str | None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            await store.remote_add("origin", str(remote))
            store.set("state.json", "a", 1)
            await store.flush()
            return await store.sync()

    pushed = run(main)
    assert pushed is not None
    assert git(remote, "rev-parse", "main").strip() == pushed


# --------------------------------------------------------------------------------------------- transactions
def test_transaction_commits_once_and_reads_its_own_writes(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            store.set("state.json", "done", [])
            store.set("tasks/t3.json", None, {"status": "open"})
            async with store.transaction("move task 3 to done") as tx:
                tx.set("tasks/t3.json", "status", "done")
                tx.append("state.json", "done", 3)
                tx.update("state.json", {"counts": {"done": 1}})
                assert tx.get("tasks/t3.json", "status") == "done"
                assert store.get("tasks/t3.json", "status") == "open"  # buffered until the block ends
                await asyncio.sleep(0)
            assert tx.commit is not None and tx.commit == store.head
            log = await store.log()
            assert [c.subject for c in log] == ["move task 3 to done", "state.json: created (+1 more)"]
            assert log[0].docs == ["state.json", "tasks/t3.json"]
            assert store.get("state.json") == {"done": [3], "counts": {"done": 1}}

            head = store.head
            with pytest.raises(RuntimeError):
                async with store.transaction() as tx:
                    tx.set("tasks/t3.json", "status", "lost")
                    raise RuntimeError("abandon")
            assert store.head == head and store.get("tasks/t3.json", "status") == "done"
            assert store.pending == 0

            with pytest.raises(gitstate.KeyNotFound):
                async with store.transaction() as tx:
                    tx.delete("tasks/t3.json", "nope")  # invalid writes raise at the write
            async with store.transaction() as tx:
                pass
            assert tx.commit is None and store.head == head

    run(main)


def test_transaction_does_not_hold_the_store_while_the_block_runs(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            store.set("state.json", "a", 1)
            async with store.transaction("tx") as tx:
                tx.set("state.json", "b", 2)
                # Another writer goes on meanwhile (a thread, as a callback or executor would).
                await asyncio.to_thread(store.set, "state.json", "c", 3)
            assert store.get("state.json") == {"a": 1, "c": 3, "b": 2}
            assert store.pending == 0

    run(main)


# --------------------------------------------------------------------------------------------- events
def test_callbacks_run_on_the_loop_thread_and_may_be_coroutines(tmp_path: Path) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        seen: list[tuple[str, int]] = []
        done = asyncio.Event()

        async def on_commit(event: Any) -> None:
            await asyncio.sleep(0)
            seen.append(("async", threading.get_ident()))
            done.set()

        async with gitstate.aopen(
            tmp_path / "s",
            durability="debounced",
            debounce_ms=10,
            fsync=False,
            on={"loaded": lambda e: seen.append(("loaded", threading.get_ident()))},
        ) as store:
            store.on("committed", lambda e: seen.append(("sync", threading.get_ident())))
            store.on("committed", on_commit)
            store.set("state.json", "a", 1)  # the background flusher commits it, on its own thread
            await asyncio.wait_for(done.wait(), 10)
        assert [name for name, _ in seen] == ["loaded", "sync", "async"]
        assert all(ident == loop_thread for _, ident in seen)

    run(main)


def test_event_stream_delivers_external_changes(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="manual", fsync=False) as store:
            store.set("state.json", "a", 1)
            await store.flush()
            async with store.events("external_change") as stream:
                other = await asyncio.to_thread(gitstate.open, tmp_path / "s", durability="manual", fsync=False)
                other.set("state.json", "a", 2)
                await asyncio.to_thread(other.flush)
                await asyncio.to_thread(other.close)
                assert store.get("state.json", "a") == 2  # the read notices the new head
                event = await stream.get(timeout_s=10)
                assert (event.source, event.docs) == ("process", ["state.json"])
            assert [e async for e in stream] == []  # closed: iteration ends

    run(main)
