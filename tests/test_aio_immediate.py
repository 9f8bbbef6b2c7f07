"""``gitstate.aopen(durability="immediate")``: write-through for async programs, without blocking the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gitstate
from gitstate.direct import open_directory


def _committed(path: Path, doc: str) -> Any:
    """The document as committed at HEAD, read by another handle (not the store's memory)."""
    with open_directory(path) as d:
        return d.at("HEAD").get(doc)


def test_an_awaited_immediate_write_is_committed_when_it_returns(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="immediate", fsync=False) as store:
            assert store.durability == "immediate"
            await store.set("state.json", "services.slack", True)
            assert store.pending == 0
            assert _committed(tmp_path / "s", "state.json") == {"services": {"slack": True}}
            await store.update("state.json", {"services": {"gmail": False}})
            await store.append("state.json", "log", "a")
            await store.delete("state.json", "log")
            assert _committed(tmp_path / "s", "state.json") == {"services": {"slack": True, "gmail": False}}
            assert [c.actor for c in await store.log()] == ["library"] * 4

    asyncio.run(main())


def test_immediate_writes_not_awaited_are_committed_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="immediate", fsync=False) as store:
            written = [store.set("state.json", "n", i) for i in range(20)]
            assert store.get("state.json", "n") == 19  # in memory at the call
            await asyncio.gather(*written)
            assert store.pending == 0
            assert _committed(tmp_path / "s", "state.json") == {"n": 19}

    asyncio.run(main())


def test_the_immediate_commit_runs_off_the_loop_and_the_loop_keeps_running(tmp_path: Path) -> None:
    """The commit waits until a ticker task on the loop has ticked: if the commit ran on the loop thread, the
    ticker could never run and the wait would time out."""
    ticked = threading.Event()
    commit_threads: list[threading.Thread] = []

    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="immediate", fsync=False) as store:
            loop_thread = threading.current_thread()
            real_flush = store.store.flush
            waited: list[bool] = []

            def slow_flush(*args: Any, **kwargs: Any) -> Any:
                commit_threads.append(threading.current_thread())
                waited.append(ticked.wait(timeout=30))
                return real_flush(*args, **kwargs)

            store.store.flush = slow_flush  # type: ignore[method-assign]
            ticks = 0
            stop = False

            async def ticker() -> None:
                nonlocal ticks
                while not stop:
                    ticks += 1
                    if ticks >= 5:
                        ticked.set()
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            start = time.monotonic()
            await store.set("state.json", "a", 1)
            assert waited == [True], "the ticker did not run while the commit was waiting for it"
            assert ticks >= 5
            assert all(t is not loop_thread for t in commit_threads)
            assert _committed(tmp_path / "s", "state.json") == {"a": 1}
            store.store.flush = real_flush  # type: ignore[method-assign]

            # With real commits: the ticker runs during every awaited write; the longest gap between two ticks
            # stays well below the time the writes took (each commit is a few ms of I/O off the loop).
            gaps: list[float] = []
            last = time.perf_counter()

            async def timed_ticker() -> None:
                nonlocal last
                while not stop:
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now
                    await asyncio.sleep(0)

            timed = asyncio.create_task(timed_ticker())
            before = time.perf_counter()
            for i in range(20):
                n = len(gaps)
                await store.set("state.json", "b", i)
                assert len(gaps) > n, "no tick while an immediate write was committed"
            elapsed = time.perf_counter() - before
            stop = True
            await task
            await timed
            assert store.pending == 0 and _committed(tmp_path / "s", "state.json") == {"a": 1, "b": 19}
            print(f"20 immediate writes: {elapsed * 1000:.1f} ms, longest loop gap {max(gaps) * 1000:.2f} ms")
            assert time.monotonic() - start < 60

    asyncio.run(main())


def test_a_failed_immediate_commit_raises_at_the_await_and_the_write_stays_pending(tmp_path: Path) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability="immediate", fsync=False) as store:
            real_flush = store.store.flush

            def failing_flush(*args: Any, **kwargs: Any) -> Any:
                raise gitstate.SaveError("disk full")

            store.store.flush = failing_flush  # type: ignore[method-assign]
            with pytest.raises(gitstate.SaveError, match="disk full"):
                await store.set("state.json", "a", 1)
            assert store.pending == 1
            store.store.flush = real_flush  # type: ignore[method-assign]
            await store.set("state.json", "b", 2)
            assert _committed(tmp_path / "s", "state.json") == {"a": 1, "b": 2}

    asyncio.run(main())


@pytest.mark.parametrize("durability", ["debounced", "manual"])
def test_writes_are_awaitable_in_every_mode(tmp_path: Path, durability: str) -> None:
    async def main() -> None:
        async with gitstate.aopen(tmp_path / "s", durability=durability, fsync=False) as store:
            written = store.set("state.json", "a", 1)
            assert written.done()
            await written
            assert store.get("state.json", "a") == 1
            await store.flush()
            assert _committed(tmp_path / "s", "state.json") == {"a": 1}

    asyncio.run(main())
