"""The gRPC server's read cache: an answer is served while young, one load per key at a
time, errors are never kept, a write made meanwhile wins over an older read."""

from __future__ import annotations

import asyncio

import pytest

from twinmesh.grpc.cache import ReadCache


def test_an_answer_is_served_while_young_and_read_again_when_old() -> None:
    async def scenario() -> list[int]:
        cache: ReadCache[int] = ReadCache(0.2)
        loads = 0

        async def load() -> int:
            nonlocal loads
            loads += 1
            return loads

        got = [await cache.read("k", load), await cache.read("k", load)]
        await asyncio.sleep(0.25)
        got.append(await cache.read("k", load))
        return got

    assert asyncio.run(scenario()) == [1, 1, 2]


def test_concurrent_misses_share_one_load_and_a_leaving_caller_does_not_cancel_it() -> None:
    async def scenario() -> tuple[list[str], int]:
        cache: ReadCache[str] = ReadCache(5)
        loads = 0
        release = asyncio.Event()

        async def load() -> str:
            nonlocal loads
            loads += 1
            await release.wait()
            return "answer"

        impatient = asyncio.create_task(cache.read("k", load))
        waiting = [asyncio.create_task(cache.read("k", load)) for _ in range(15)]
        await asyncio.sleep(0.01)
        impatient.cancel()  # e.g. its deadline passed
        release.set()
        answers = await asyncio.gather(*waiting)
        return answers, loads

    answers, loads = asyncio.run(scenario())
    assert answers == ["answer"] * 15 and loads == 1


def test_errors_reach_every_waiter_and_are_not_kept() -> None:
    async def scenario() -> int:
        cache: ReadCache[str] = ReadCache(5)
        calls = 0

        async def failing() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            raise LookupError("no job")

        results = await asyncio.gather(
            cache.read("k", failing), cache.read("k", failing), return_exceptions=True
        )
        assert all(isinstance(r, LookupError) for r in results)
        with pytest.raises(LookupError):
            await cache.read("k", failing)  # not kept: read again
        return calls

    assert asyncio.run(scenario()) == 2


def test_a_write_made_while_a_read_is_in_flight_wins() -> None:
    async def scenario() -> str:
        cache: ReadCache[str] = ReadCache(5)
        release = asyncio.Event()

        async def slow_old_read() -> str:
            await release.wait()
            return "accepted"

        reading = asyncio.create_task(cache.read("job", slow_old_read))
        await asyncio.sleep(0.01)
        cache.put("job", "dismissed")  # CancelJob through this server
        release.set()
        assert await reading == "accepted"  # the caller that asked before gets its read
        return await cache.read("job", slow_old_read)

    assert asyncio.run(scenario()) == "dismissed"


def test_max_age_zero_keeps_nothing_and_the_size_is_bounded() -> None:
    async def scenario() -> tuple[int, int]:
        off: ReadCache[int] = ReadCache(0)
        n = 0

        async def load() -> int:
            nonlocal n
            n += 1
            return n

        await off.read("k", load)
        await off.read("k", load)
        small: ReadCache[int] = ReadCache(60, max_entries=3)
        for key in range(10):
            small.put(key, key)
        return n, len([k for k in range(10) if small.fresh(k) is not None])

    assert asyncio.run(scenario()) == (2, 3)
