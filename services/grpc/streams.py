"""The twin's state over gRPC: the live stream, observation ingest, replay and export of
core's event log (:class:`twinmesh.core.events.EventLog`).

Each call is an ``async`` function ``(engine, request_or_iterator, context)``; the
server's ``TwinServicer`` delegates to them. Nothing here blocks the event loop: the
database and the store are read in worker threads, and the log is followed by one
thread per process (per engine), not one per subscriber.

Live state (``stream_state``): one *poller* thread per engine follows
``EventLog.subscribe`` (in-process wake-up, LISTEN/NOTIFY on PostgreSQL, polling on
SQLite) while at least one stream is open, and keeps the newest events, already
converted to messages, in a buffer. Every stream keeps its own cursor (the last
sequence number it has passed) and, at each tick of its rate, sends one frame with the
buffered events after its cursor that pass its filters. A stream whose cursor is older
than the buffer (a resume from an old sequence number, ``from_start``, a client too
slow for a burst) reads the log itself, a page at a time, until it reaches the buffer;
so a stream never misses an event, whatever its rate. Frames are sent on a fixed
schedule (frame ``n`` due at ``start + (n - 1) / rate_hz``); while a backlog is being
caught up they go out back to back, and a client so slow that its stream falls a second
behind gets its frames coalesced (the events are all still sent, in fewer frames).
A stream ends with its call (client gone, deadline), leaving no thread behind.

Ingest (``ingest_observations``): records are converted and checked one by one as they
arrive; valid ones are stored in batches (every ``INGEST_BATCH`` records, every
``INGEST_FLUSH_SECONDS`` while the client is slow, and at the end) through
``EventLog.ingest_observations``, one transaction each; the response, sent after the
last commit, counts them. A record core refuses (unknown location, wrong units, a value
contradicting a stored one) is found by splitting the batch and is reported by its
index with core's reason; the rest of its batch is stored. Committed observations go to
the engine's :class:`~twinmesh.core.triggers.WarningTrigger`, which re-issues warnings
when they change a region's flood state.

Replay and export read the same window of the log as ``EventLog.export`` (events whose
time is in ``[start, end)``, in sequence order): export sends core's file in chunks,
replay sends its events as frames, paced by the gaps between their ``recorded`` times
divided by ``speed``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import json
import logging
import math
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from google.protobuf import timestamp_pb2
from pydantic import ValidationError

from twinmesh.core.engine import Engine
from twinmesh.core.errors import InvalidInput, InvalidParameter, TwinmeshError
from twinmesh.core.events import (
    MAX_OBSERVATIONS_PER_BATCH,
    Event,
    EventLog,
    Observation,
    ObservationConflict,
)
from twinmesh.core.retraining import RetrainTrigger
from twinmesh.core.triggers import WarningTrigger
from twinmesh.core.twin import Twin
from twinmesh.grpc import convert
from twinmesh.grpc.errors import abort_for
from twinmesh.v1 import twin_pb2

type Context = grpc.aio.ServicerContext[Any, Any]

__all__ = [
    "DEFAULT_RATE_HZ",
    "MAX_RATE_HZ",
    "MAX_FRAME_EVENTS",
    "MAX_FRAME_BYTES",
    "INGEST_BATCH",
    "INGEST_FLUSH_SECONDS",
    "MAX_REJECTED",
    "DEFAULT_CHUNK_BYTES",
    "MAX_CHUNK_BYTES",
    "MEDIA_TYPES",
    "StateHub",
    "hub_for",
    "prepare",
    "close_hub",
    "event_message",
    "stream_state",
    "ingest_observations",
    "replay_state",
    "export_state",
]

logger = logging.getLogger("twinmesh.grpc")

DEFAULT_RATE_HZ = 1.0
MAX_RATE_HZ = 60.0
#: Events in one frame at most; more wait for the next frame (sent at once).
MAX_FRAME_EVENTS = 500
#: Encoded events in one frame at most (clients accept 4 MiB messages by default).
MAX_FRAME_BYTES = 1024 * 1024
#: A stream more than this far behind its schedule skips the missed ticks.
MAX_LAG_SECONDS = 1.0
#: Events the per-process buffer keeps; older ones are read from the log.
BUFFER_EVENTS = 20_000
#: Observations stored per transaction while a client streams.
INGEST_BATCH = min(1_000, MAX_OBSERVATIONS_PER_BATCH)
#: Pending observations of a slow stream are stored after this long.
INGEST_FLUSH_SECONDS = 0.25
#: A stream with more rejected records than this is ended (INVALID_ARGUMENT).
MAX_REJECTED = 10_000
_MAX_REASON = 1_000
DEFAULT_CHUNK_BYTES = 1024 * 1024
#: Largest export chunk: a default client accepts messages of 4 MiB.
MAX_CHUNK_BYTES = 4 * 1024 * 1024 - 64 * 1024
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
_KINDS = ("warning", "observation", "job")
_PROTO_NAMES = {"twin": "twin_id", "location": "location_id"}


# -- errors ----------------------------------------------------------------------------
def _translated_stream[M](
    func: Callable[[Engine, Any, Context], AsyncIterator[M]],
) -> Callable[[Engine, Any, Context], AsyncIterator[M]]:
    """Core errors of a server-streaming call become its status (abort_for)."""

    @functools.wraps(func)
    async def call(engine: Engine, request: Any, context: Context) -> AsyncIterator[M]:
        try:
            async for message in func(engine, request, context):
                yield message
        except TwinmeshError as exc:
            await abort_for(context, exc)

    return call


# -- messages --------------------------------------------------------------------------
def event_message(event: Event) -> twin_pb2.Event:
    """One log event as a ``twinmesh.v1.Event``."""
    return twin_pb2.Event(
        sequence=event.seq,
        kind=event.kind,
        twin_id=event.twin,
        location_id=event.region or "",
        variable=event.variable or "",
        time=convert.timestamp(event.time),
        payload=convert.to_struct(event.payload),
        recorded=convert.timestamp(event.recorded),
    )


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


def _time(ts: timestamp_pb2.Timestamp, name: str) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidParameter(
            f"{name} ({ts.seconds} s since 1970) is outside the years 1 to 9999"
        ) from None


def _kinds(kinds: Any) -> tuple[str, ...] | None:
    chosen = tuple(kinds)
    if not chosen:
        return None
    unknown = [k for k in chosen if k not in _KINDS]
    if unknown:
        raise InvalidParameter(
            f"kinds {unknown!r} unknown: each kind is one of {', '.join(_KINDS)} (none for all)"
        )
    return chosen


async def _twin_filter(engine: Engine, twin_id: str) -> str | None:
    """None for "every twin"; the id once the twin is known (NOT_FOUND otherwise)."""
    if not twin_id:
        return None
    await asyncio.to_thread(engine.twin, twin_id)
    return twin_id


# -- the per-process follower of the log -------------------------------------------------
class _Item(NamedTuple):
    seq: int
    twin: str
    kind: str
    message: twin_pb2.Event
    size: int


class _Poller:
    """One thread following the whole log; the newest events kept as messages."""

    def __init__(self, log: EventLog, after: int) -> None:
        self._log = log
        #: The buffer holds every event with seq > base up to head.
        self.base = after
        self.head = after
        self._seqs: list[int] = []
        self._items: list[_Item] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twinmesh-state-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it notices within 0.1 s); never waits."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        after = self.head
        while not self._stop.is_set():
            try:
                for ev in self._log.subscribe(after, stop=self._stop):
                    message = event_message(ev)
                    item = _Item(ev.seq, ev.twin, ev.kind, message, message.ByteSize())
                    with self._lock:
                        self._seqs.append(ev.seq)
                        self._items.append(item)
                        self.head = ev.seq
                        if len(self._items) > BUFFER_EVENTS:
                            drop = len(self._items) - BUFFER_EVENTS // 2
                            self.base = self._seqs[drop - 1]
                            del self._seqs[:drop]
                            del self._items[:drop]
                    after = ev.seq
            except Exception:  # noqa: BLE001 - a database hiccup: streams read the log meanwhile
                logger.exception("following the event log failed; retrying in 1 s")
                self._stop.wait(1.0)

    def read(
        self, cursor: int, twin: str | None, kinds: tuple[str, ...] | None
    ) -> tuple[list[twin_pb2.Event], int, bool] | None:
        """Buffered events after ``cursor`` for one stream: (events, new cursor, more
        waiting); None when the buffer no longer reaches back to ``cursor``."""
        with self._lock:
            if cursor < self.base:
                return None
            start = bisect.bisect_right(self._seqs, cursor)
            out: list[twin_pb2.Event] = []
            size = 0
            last = cursor
            for item in self._items[start:]:
                if (twin is None or item.twin == twin) and (kinds is None or item.kind in kinds):
                    if out and (len(out) >= MAX_FRAME_EVENTS or size + item.size > MAX_FRAME_BYTES):
                        return out, last, True
                    out.append(item.message)
                    size += item.size
                last = item.seq
            return out, max(last, self.head), False


class StateHub:
    """What the state calls of one engine share: the log follower (running while a
    stream is open) and the warning trigger."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.trigger = WarningTrigger(engine)
        self.trigger.prepare()
        #: Falling skill on new observations starts a federated retraining (issue 18).
        self.retrain = RetrainTrigger(engine)
        self._lock = threading.Lock()
        self._poller: _Poller | None = None
        self._streams = 0

    def attach(self, latest: int) -> _Poller:
        """Join the follower, starting it after ``latest`` if none runs (no I/O: the
        caller read ``latest`` from the log beforehand)."""
        with self._lock:
            if self._poller is None or not self._poller.alive:
                self._poller = _Poller(self.engine.log, latest)
            self._streams += 1
            return self._poller

    def detach(self) -> None:
        with self._lock:
            self._streams -= 1
            if self._streams <= 0 and self._poller is not None:
                self._streams = 0
                self._poller.stop()
                self._poller = None

    @property
    def open_streams(self) -> int:
        return self._streams

    def close(self) -> None:
        with self._lock:
            if self._poller is not None:
                self._poller.stop()
                self._poller = None
            self._streams = 0
        self.trigger.close()
        self.retrain.close()


_HUBS: weakref.WeakKeyDictionary[Engine, StateHub] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def hub_for(engine: Engine) -> StateHub:
    """The engine's hub (made on first use; it lives as long as the engine)."""
    with _HUBS_LOCK:
        hub = _HUBS.get(engine)
        if hub is None:
            hub = _HUBS[engine] = StateHub(engine)
        return hub


async def prepare(engine: Engine, timeout_s: float = 60.0) -> None:
    """Make the engine's hub and let its trigger read what it needs, off the event
    loop. A server awaits it before it reports SERVING: the first read imports the
    Zarr stack, which holds the GIL long enough to stall live streams if it happened
    on the first observation."""
    hub = hub_for(engine)
    await asyncio.to_thread(hub.trigger.wait_idle, timeout_s)


def close_hub(engine: Engine) -> None:
    """Stop the engine's follower and trigger threads (a server's shutdown)."""
    with _HUBS_LOCK:
        hub = _HUBS.pop(engine, None)
    if hub is not None:
        hub.close()


def _catch_up(
    log: EventLog, poller: _Poller, cursor: int, twin: str | None, kinds: tuple[str, ...] | None
) -> tuple[list[twin_pb2.Event], int, bool]:
    """One page of the log after ``cursor`` (a stream behind the buffer)."""
    upper = poller.head  # every event up to here was committed before the query
    page = log.replay(cursor, kinds=kinds, twin=twin, limit=MAX_FRAME_EVENTS)  # type: ignore[arg-type]
    messages = [event_message(e) for e in page]
    if len(page) == MAX_FRAME_EVENTS:
        return messages, page[-1].seq, True
    return messages, max([cursor, upper, *(e.seq for e in page)]), False


# -- StreamState -----------------------------------------------------------------------------
@_translated_stream
async def stream_state(
    engine: Engine, request: twin_pb2.StreamStateRequest, context: Context
) -> AsyncIterator[twin_pb2.StreamStateResponse]:
    """Frames at ``rate_hz`` with the events recorded since the previous frame."""
    rate = request.rate_hz or DEFAULT_RATE_HZ
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE_HZ):
        raise InvalidParameter(
            f"rate_hz must be more than 0 and at most {MAX_RATE_HZ:g} frames per second "
            f"(0 or unset for {DEFAULT_RATE_HZ:g}), not {request.rate_hz!r}"
        )
    if request.after_sequence < 0:
        raise InvalidParameter(
            f"after_sequence must be 0 or a sequence number a frame gave, not "
            f"{request.after_sequence}"
        )
    kinds = _kinds(request.kinds)
    twin = await _twin_filter(engine, request.twin_id)

    hub = hub_for(engine)
    latest = await asyncio.to_thread(engine.log.latest_sequence)
    poller = hub.attach(latest)  # from here on, every way out detaches
    detached = False

    def detach(_context: Any = None) -> None:
        nonlocal detached
        if not detached:
            detached = True
            hub.detach()

    # The call's end releases the follower even if this generator is never closed.
    with contextlib.suppress(Exception):
        context.add_done_callback(detach)
    try:
        # after_sequence wins over from_start: a client resuming keeps its first request.
        if request.after_sequence > 0:
            cursor = request.after_sequence
        elif request.from_start:
            cursor = 0
        else:
            cursor = latest
        loop = asyncio.get_running_loop()
        period = 1.0 / rate
        due = loop.time()
        frame = 0
        while True:
            got = poller.read(cursor, twin, kinds)
            if got is None:
                got = await asyncio.to_thread(_catch_up, engine.log, poller, cursor, twin, kinds)
            events, cursor, more = got
            frame += 1
            yield twin_pb2.StreamStateResponse(
                frame=twin_pb2.StateFrame(
                    frame=frame, sent=_now(), last_sequence=cursor, events=events
                )
            )
            if more:  # a backlog: the next frame at once, the schedule from its end
                due = loop.time()
                continue
            due += period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_LAG_SECONDS:
                due = loop.time()
    finally:
        detach()


# -- IngestObservations ------------------------------------------------------------------------
@dataclass
class _Record:
    index: int
    observation: Observation


@dataclass
class _Ingest:
    """The state of one IngestObservations call."""

    engine: Engine
    trigger: WarningTrigger
    retrain: RetrainTrigger | None = None
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    last_sequence: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    pending: dict[str, list[_Record]] = field(default_factory=dict)
    pending_count: int = 0
    pending_since: float = 0.0
    twins: dict[str, Twin | str] = field(default_factory=dict)

    def reject(self, index: int, reason: str) -> None:
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 1] + "…"
        self.rejected.append((index, reason))

    def add(self, index: int, request: twin_pb2.IngestObservationsRequest) -> None:
        """Convert one record; a bad one is rejected here, a good one waits for a batch."""
        self.received += 1
        if not request.HasField("observation"):
            self.reject(index, "the message has no observation")
            return
        o = request.observation
        if not o.HasField("time"):
            self.reject(index, "time is required (when the value was observed)")
            return
        try:
            when = _time(o.time, "time")
            observation = Observation(
                twin=o.twin_id,
                variable=o.variable,
                location=o.location_id,
                time=when,
                value=o.value,
                units=o.units,
                source=o.source,
            )
        except InvalidParameter as exc:
            self.reject(index, exc.message)
            return
        except ValidationError as exc:
            self.reject(index, _validation_reason(exc))
            return
        if not self.pending_count:
            self.pending_since = time.monotonic()
        self.pending.setdefault(observation.twin, []).append(_Record(index, observation))
        self.pending_count += 1

    def take(self) -> dict[str, list[_Record]]:
        batch, self.pending, self.pending_count = self.pending, {}, 0
        return batch

    # -- in a worker thread --
    def store(self, batch: dict[str, list[_Record]]) -> None:
        for twin_id, records in batch.items():
            twin = self._twin(twin_id)
            if isinstance(twin, str):
                for r in records:
                    self.reject(r.index, twin)
                continue
            new: list[Event] = []
            refused = {r.index for r in self._conflicting_within(records)}
            self._store(twin, [r for r in records if r.index not in refused], new)
            if new:
                self.last_sequence = max(self.last_sequence, max(e.seq for e in new))
                self.trigger.offer(twin, new)
                if self.retrain is not None:
                    self.retrain.offer(twin, new)

    def _twin(self, twin_id: str) -> Twin | str:
        if twin_id not in self.twins:
            try:
                self.twins[twin_id] = self.engine.twin(twin_id)
            except TwinmeshError as exc:
                self.twins[twin_id] = exc.message
        return self.twins[twin_id]

    def _conflicting_within(self, records: list[_Record]) -> list[_Record]:
        """Reject records contradicting an earlier record of the same batch (same
        variable, location and time, another value or units); returns them."""
        refused: list[_Record] = []
        first: dict[str, _Record] = {}
        for r in records:
            key = r.observation.key
            earlier = first.get(key)
            if earlier is None:
                first[key] = r
            elif (earlier.observation.value, earlier.observation.units) != (
                r.observation.value,
                r.observation.units,
            ):
                self.reject(
                    r.index,
                    f"observation {key!r} has value {r.observation.value!r} "
                    f"{r.observation.units}, but record {earlier.index} of this stream has "
                    f"{earlier.observation.value!r} {earlier.observation.units}",
                )
                refused.append(r)
        return refused

    def _store(self, twin: Twin, records: list[_Record], new: list[Event]) -> None:
        """Store ``records`` in one transaction; on a refusal, find the records core
        refuses (by the conflict's keys, or by halving) and store the others."""
        if not records:
            return
        try:
            report = self.engine.log.ingest_observations(twin, [r.observation for r in records])
        except ObservationConflict as exc:
            stored = {c["key"]: c["stored"] for c in exc.conflicts if c["stored"]["seq"]}
            bad = [
                r
                for r in records
                if r.observation.key in stored
                and (r.observation.value, r.observation.units)
                != (stored[r.observation.key]["value"], stored[r.observation.key]["units"])
            ]
            if not bad:
                raise
            for r in bad:
                s = stored[r.observation.key]
                self.reject(
                    r.index,
                    f"observation {r.observation.key!r} has value {r.observation.value!r} "
                    f"{r.observation.units}, but {s['value']!r} {s['units']} is stored as "
                    f"event {s['seq']}; send corrected values under their own time, or the "
                    "stored value again",
                )
            refused = {r.index for r in bad}
            self._store(twin, [r for r in records if r.index not in refused], new)
            return
        except InvalidInput as exc:
            if len(records) == 1:
                self.reject(records[0].index, _single_reason(exc.message))
                return
            half = len(records) // 2
            self._store(twin, records[:half], new)
            self._store(twin, records[half:], new)
            return
        self.stored += report.stored
        self.duplicates += report.duplicates
        new.extend(report.events)

    def response(self) -> twin_pb2.IngestObservationsResponse:
        return twin_pb2.IngestObservationsResponse(
            received=self.received,
            stored=self.stored,
            duplicates=self.duplicates,
            rejected=[
                twin_pb2.RejectedObservation(index=i, reason=reason)
                for i, reason in sorted(self.rejected)
            ],
            last_sequence=self.last_sequence,
        )


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"])
        parts.append(f"{_PROTO_NAMES.get(name, name)}: {error['msg']}")
    return "; ".join(parts)


def _single_reason(message: str) -> str:
    """Core's message about ``observations[0]`` of a one-record batch, without the index
    (the response gives the record's index in the client's stream)."""
    return re.sub(r"^observations\[0\](?::\s*|\.)?", "", message)


async def ingest_observations(
    engine: Engine,
    request_iterator: AsyncIterator[twin_pb2.IngestObservationsRequest],
    context: Context,
) -> twin_pb2.IngestObservationsResponse:
    """Store a stream of observations; the response counts what was stored (committed),
    what was already there, and every record refused, by its index."""
    hub = hub_for(engine)
    state = _Ingest(engine, hub.trigger, hub.retrain)
    lock = asyncio.Lock()

    async def flush() -> None:
        async with lock:
            batch = state.take()
            if batch:
                await asyncio.to_thread(state.store, batch)

    async def flush_slow_streams() -> None:
        while True:
            await asyncio.sleep(INGEST_FLUSH_SECONDS / 2)
            if state.pending_count and time.monotonic() - state.pending_since >= (
                INGEST_FLUSH_SECONDS
            ):
                await flush()

    flusher = asyncio.create_task(flush_slow_streams())
    try:
        index = 0
        async for request in request_iterator:
            state.add(index, request)
            index += 1
            if state.pending_count >= INGEST_BATCH:
                await flush()
            if len(state.rejected) > MAX_REJECTED:
                await flush()
                raise InvalidInput(
                    f"more than {MAX_REJECTED} of {state.received} records rejected (the "
                    f"first, record {min(state.rejected)[0]}: {min(state.rejected)[1]}); "
                    f"{state.stored} observations were stored (up to sequence "
                    f"{state.last_sequence}); fix the records and send the stream again "
                    "(stored ones count as duplicates)"
                )
        await flush()
        return state.response()
    except TwinmeshError as exc:
        await abort_for(context, exc)
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher


# -- ReplayState and ExportState ---------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    twin: str | None
    start: datetime | None
    end: datetime | None
    kinds: tuple[str, ...] | None


async def _window(engine: Engine, request: Any) -> _Window:
    start = _time(request.start, "start") if request.HasField("start") else None
    end = _time(request.end, "end") if request.HasField("end") else None
    return _Window(await _twin_filter(engine, request.twin_id), start, end, _kinds(request.kinds))


def _export(log: EventLog, window: _Window, fmt: str, path: Path) -> None:
    log.export(
        path,
        start=window.start,
        end=window.end,
        kinds=window.kinds,  # type: ignore[arg-type]
        twin=window.twin,
        format=fmt,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def _exported(engine: Engine, window: _Window, fmt: str) -> AsyncIterator[Path]:
    """Core's export of the window, written by a worker thread into a private temporary
    folder, which is removed once the call is done with it — or, when the call ends
    while core is still writing, once core is done."""
    folder = Path(tempfile.mkdtemp(prefix="twinmesh-export-"))
    path = folder / f"events.{fmt}"
    writing = asyncio.ensure_future(asyncio.to_thread(_export, engine.log, window, fmt, path))

    def remove(done: asyncio.Future[None]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the call reported it, or is gone
        shutil.rmtree(folder, ignore_errors=True)

    try:
        await asyncio.shield(writing)  # a cancelled call does not orphan the writer
        yield path
    finally:
        writing.add_done_callback(remove)


@_translated_stream
async def export_state(
    engine: Engine, request: twin_pb2.ExportStateRequest, context: Context
) -> AsyncIterator[twin_pb2.ExportStateResponse]:
    """The window as core's Parquet (default) or CSV export, in chunks."""
    fmt = request.format or "parquet"
    if fmt not in MEDIA_TYPES:
        raise InvalidParameter(f"format must be 'parquet' (the default) or 'csv', not {fmt!r}")
    chunk = request.chunk_bytes or DEFAULT_CHUNK_BYTES
    if not 0 < chunk <= MAX_CHUNK_BYTES:
        raise InvalidParameter(
            f"chunk_bytes must be from 1 to {MAX_CHUNK_BYTES} (0 for {DEFAULT_CHUNK_BYTES}), "
            f"not {request.chunk_bytes}"
        )
    window = await _window(engine, request)
    async with _exported(engine, window, fmt) as path:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            offset = 0
            while True:
                data = await asyncio.to_thread(fh.read, chunk)
                last = offset + len(data) >= size
                yield twin_pb2.ExportStateResponse(
                    data=data, offset=offset, last=last, media_type=MEDIA_TYPES[fmt]
                )
                offset += len(data)
                if last:
                    break


def _read_page(reader: Iterator[Any]) -> list[tuple[float, twin_pb2.Event]] | None:
    """The next batch of an export as (recorded epoch seconds, message); None at the end."""
    batch = next(reader, None)
    if batch is None:
        return None
    page = []
    for row in batch.to_pylist():
        event = Event(
            seq=row["seq"],
            kind=row["kind"],
            twin=row["twin"],
            region=row["region"],
            variable=row["variable"],
            time=row["time"],
            key=row["key"],
            payload=json.loads(row["payload"]),
            recorded=row["recorded"],
        )
        page.append((event.recorded.timestamp(), event_message(event)))
    return page


@_translated_stream
async def replay_state(
    engine: Engine, request: twin_pb2.ReplayStateRequest, context: Context
) -> AsyncIterator[twin_pb2.ReplayStateResponse]:
    """The window's events in sequence order, as frames, at ``speed`` times the pace
    they were recorded at (0: as fast as the client reads)."""
    speed = request.speed
    if not (math.isfinite(speed) and speed >= 0):
        raise InvalidParameter(
            f"speed must be 0 (as fast as possible) or a positive factor, not {speed!r}"
        )
    window = await _window(engine, request)
    async with _exported(engine, window, "parquet") as path:
        import pyarrow.parquet as pq

        parquet = await asyncio.to_thread(pq.ParquetFile, path)
        try:
            reader = iter(parquet.iter_batches(batch_size=MAX_FRAME_EVENTS))
            loop = asyncio.get_running_loop()
            frame = 0
            started: float | None = None  # loop time of the first event
            first_recorded = 0.0
            latest_due = 0.0
            waiting: list[tuple[float, twin_pb2.Event]] = []
            done = False
            while waiting or not done:
                if not waiting and not done:
                    page = await asyncio.to_thread(_read_page, reader)
                    if page is None:
                        done = True
                        continue
                    waiting = page
                events: list[twin_pb2.Event] = []
                if speed == 0:
                    size = 0
                    while waiting and (
                        not events or size + waiting[0][1].ByteSize() <= MAX_FRAME_BYTES
                    ):
                        size += waiting[0][1].ByteSize()
                        events.append(waiting.pop(0)[1])
                else:
                    if started is None:
                        started, first_recorded = loop.time(), waiting[0][0]
                    now = loop.time()
                    while waiting and len(events) < MAX_FRAME_EVENTS:
                        # Never earlier than the event before it: order is the log's.
                        due = max(latest_due, started + (waiting[0][0] - first_recorded) / speed)
                        if due > now:
                            break
                        latest_due = due
                        events.append(waiting.pop(0)[1])
                    if not events:
                        nxt = max(latest_due, started + (waiting[0][0] - first_recorded) / speed)
                        await asyncio.sleep(nxt - now)
                        continue
                frame += 1
                yield twin_pb2.ReplayStateResponse(
                    frame=twin_pb2.StateFrame(
                        frame=frame,
                        sent=_now(),
                        last_sequence=events[-1].sequence,
                        events=events,
                    )
                )
        finally:
            parquet.close()
