"""Recent answers of the read calls (``GetTwin``, ``GetJob``, ``ListTwins``), kept for a
short time so that clients polling hard are answered from memory.

Why: a read call costs a thread hop and a database or file read (a job row, the twin
document: ~0.3-1.5 ms), an echo of the same bytes a few tens of microseconds; clients that
poll a job or a twin at high rates (dashboards, workflow engines) would otherwise make
the server do the same read thousands of times a second. An answer is served from
memory while it is younger than ``grpc.read_cache_seconds`` (default 0.5 s): that is how
old a ``GetJob`` or ``GetTwin`` answer can be, like an HTTP ``max-age``. Writes through
this server (``SubmitJob``, ``CancelJob``) replace the entry at once, so a client sees
its own changes; changes made elsewhere (a worker, another replica) appear within that
age. Concurrent misses of one key share one read (single flight). Errors are never kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

__all__ = ["ReadCache"]


class ReadCache[V]:
    """Answers by key, each served while younger than ``max_age_s`` (0 turns it off).

    Used from the server's event loop only (no locks): ``read`` awaits the loader on a
    miss, and callers that miss the same key meanwhile await the same future."""

    def __init__(self, max_age_s: float, max_entries: int = 10_000) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[V]] = {}
        self.hits = 0
        self.misses = 0

    def fresh(self, key: Hashable) -> V | None:
        """The answer for ``key`` if it is young enough, else None."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= self.max_age_s:
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, value: V) -> None:
        if self.max_age_s <= 0:
            return
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    async def read(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The fresh answer for ``key``, or the result of ``load()``: one load per key at
        a time, in a task of its own, so a caller that goes away (deadline, cancel) does
        not take the answer away from the others waiting for it."""
        value = self.fresh(key)
        if value is not None:
            return value
        task = self._loading.get(key)
        if task is None:
            self.misses += 1
            started = time.monotonic()
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done, started))
        return await asyncio.shield(task)

    def _loaded(self, key: Hashable, task: asyncio.Future[V], started: float) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if task.cancelled() or task.exception() is not None:
            return  # an error is the waiters' to see, never kept
        entry = self._entries.get(key)
        if entry is None or entry[0] < started:  # a write put since the read began wins
            self.put(key, task.result())
