"""The event log: issued warnings, ingested observations and job changes in one ordered
sequence.

Why one log: a warning page, an OGC Features collection, a server-sent-events stream
and an audit export all want the same thing, "what happened to this twin, in order,
since sequence N". Every event gets a ``seq`` from the ``events`` table; readers
remember the last ``seq`` they saw and resume after it, so nothing is lost across
restarts and nothing is read twice.

Sequence order equals commit order. On PostgreSQL a sequence number is taken when a
row is inserted, not when its transaction commits, so two concurrent writers could
make seq 8 visible while seq 7 is still uncommitted, and a reader resuming after 8
would skip 7 for ever. Every writer here therefore takes one transaction-level
advisory lock (``pg_advisory_xact_lock``) before inserting: event writes are
serialised, the lock is released only after the commit is visible, and so once a
seq is visible every lower seq is either visible or rolled back for good. SQLite
gets the same from ``BEGIN IMMEDIATE`` (one writer at a time). Event writes are a
few rows per forecast or per gauge report, so the serialisation costs nothing.

Notification: writers wake the subscribers of their own process at once (a
condition per database URL); on SQLite other processes' writes are found by
polling every ``poll_seconds``; on PostgreSQL writers ``pg_notify`` inside their
transaction and subscribers ``LISTEN`` on a dedicated connection, falling back to
polling when that connection fails.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from twinmesh.core.db import Database, events, utcnow
from twinmesh.core.errors import InvalidInput, InvalidParameter, InvalidTimeRange
from twinmesh.core.twin import Twin

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "EventKind",
    "ExportFormat",
    "Observation",
    "Event",
    "IngestReport",
    "EventLog",
    "ObservationConflict",
    "UnknownLocation",
    "NOTIFY_CHANNEL",
    "MAX_OBSERVATIONS_PER_BATCH",
    "MAX_REPLAY_LIMIT",
    "read_export",
    "job_event_row",
    "append_events",
    "wake_subscribers",
]

logger = logging.getLogger(__name__)

EventKind = Literal["warning", "observation", "job"]
ExportFormat = Literal["parquet", "csv"]
_KINDS: tuple[str, ...] = get_args(EventKind)

#: PostgreSQL channel on which writers announce the highest seq they committed.
NOTIFY_CHANNEL = "twinmesh_events"
#: Advisory lock key serialising event writes (db.py's migration lock is 7416533).
_EVENTS_LOCK_KEY = 7416534
#: One ingest is one transaction; larger batches are split by the client.
MAX_OBSERVATIONS_PER_BATCH = 10_000
#: Largest page ``replay`` returns.
MAX_REPLAY_LIMIT = 10_000
#: Keys per ``IN (...)`` lookup, well under every database's bound-parameter limit.
_KEY_CHUNK = 500
#: Rows per page when subscribing and exporting.
_PAGE = 1_000
_EXPORT_PAGE = 10_000
#: How often a waiting subscriber looks at its ``stop`` event.
_STOP_CHECK_S = 0.1


class ObservationConflict(InvalidInput):
    """An observation contradicts one already stored under the same key."""

    code = "ObservationConflict"
    status = 409

    def __init__(self, message: str, conflicts: list[dict[str, Any]]) -> None:
        super().__init__(message)
        #: One dict per conflicting key: key, stored (value, units, seq), received (value, units).
        self.conflicts = conflicts


class UnknownLocation(InvalidInput):
    """An observation names a place that is neither a region nor a gauge of the twin."""

    code = "UnknownLocation"


class Observation(BaseModel):
    """One measured value of a variable at a region or gauge of a twin, at one time.

    Validated at the edge: the value is finite, the time is stored as UTC (a naive
    time is read as UTC), and lengths fit the event table's columns.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    twin: str = Field(min_length=1, max_length=128)
    variable: str = Field(min_length=1, max_length=128)
    #: A region id or a gauge id of the twin.
    location: str = Field(min_length=1, max_length=128)
    time: datetime
    value: float = Field(allow_inf_nan=False)
    units: str = Field(min_length=1, max_length=64)
    source: str = Field(default="", max_length=256)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @property
    def key(self) -> str:
        """Identity for idempotent ingestion: the same key is one observation."""
        return f"{self.variable}|{self.location}|{_iso(self.time)}"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the log, as stored; ``seq`` is its place in the order."""

    seq: int
    kind: EventKind
    twin: str
    #: The region id of a warning; the region or gauge id of an observation.
    region: str | None
    variable: str | None
    #: What the event is about: an observation's time, a warning's issue day (UTC).
    time: datetime
    key: str
    payload: dict[str, Any]
    recorded: datetime

    @property
    def location(self) -> str | None:
        """The region or gauge id (the same as ``region``, named for observations)."""
        return self.region

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO times), what adapters put on the wire."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "twin": self.twin,
            "region": self.region,
            "variable": self.variable,
            "time": _iso(self.time),
            "key": self.key,
            "payload": self.payload,
            "recorded": _iso(self.recorded),
        }


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest did: ``stored`` new observations (``events``), ``duplicates`` skipped."""

    stored: int
    duplicates: int
    events: list[Event] = field(default_factory=list)


class EventLog:
    """Warnings and observations of every twin in one database, in commit order.

    Make one per process (or per app) and share it: it holds a read pool on SQLite.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._read_engine: Engine | None = None
        self._read_engine_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EventLog({self._db!r})"

    def close(self) -> None:
        """Release the SQLite read pool (the Database is the caller's to dispose)."""
        with self._read_engine_lock:
            if self._read_engine is not None:
                self._read_engine.dispose()
                self._read_engine = None

    # -- writing --------------------------------------------------------------------
    def record_warnings(
        self,
        twin_id: str,
        warnings: Sequence[dict[str, Any]],
        *,
        model_version: str | None,
        job_id: str | None,
    ) -> list[Event]:
        """Store one ``warning`` event per region of an issue, in one transaction.

        ``warnings`` are ``RegionWarning.to_dict()`` results. The payload keeps every
        field except the geometry (the twin has it) and adds ``model_version`` and
        ``job_id``. The key is ``"{job_id}:{region_id}"``: a job that is retried after
        recording does not publish its warnings twice (the first record is returned);
        without a job id every call is a new issue.
        """
        _check_name(twin_id, "twin_id")
        if model_version is not None and not isinstance(model_version, str):
            raise InvalidParameter("model_version must be a string or null")
        if job_id is not None and (not isinstance(job_id, str) or not 0 < len(job_id) <= 64):
            raise InvalidParameter("job_id must be a string of 1 to 64 characters or null")
        issue = job_id or uuid.uuid4().hex
        recorded = utcnow()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, warning in enumerate(warnings):
            if not isinstance(warning, dict):
                raise InvalidInput(f"warnings[{i}] must be an object (RegionWarning.to_dict())")
            region_id = warning.get("region_id")
            if not isinstance(region_id, str) or not 0 < len(region_id) <= 128:
                raise InvalidInput(f"warnings[{i}].region_id must be a region id (a string)")
            if warning.get("twin_id", twin_id) != twin_id:
                raise InvalidInput(
                    f"warnings[{i}] is for twin {warning.get('twin_id')!r}, "
                    f"not {twin_id!r}; record each twin's warnings under its own id"
                )
            if region_id in seen:
                raise InvalidInput(
                    f"warnings[{i}] repeats region {region_id!r}; one issue has one "
                    "warning per region"
                )
            seen.add(region_id)
            payload = {k: v for k, v in warning.items() if k != "geometry"}
            payload["model_version"] = model_version
            payload["job_id"] = job_id
            rows.append(
                {
                    "kind": "warning",
                    "twin": twin_id,
                    "region": region_id,
                    "variable": None,
                    "time": _issue_time(warning.get("issued"), f"warnings[{i}].issued"),
                    "key": f"{issue}:{region_id}",
                    "payload": _json_safe(payload),
                    "recorded": recorded,
                }
            )
        if not rows:
            return []
        with self._writing() as conn:
            max_before = _max_seq(conn)
            conn.execute(self._db.insert_ignoring_duplicates(events, ["kind", "twin", "key"]), rows)
            stored = self._by_key(conn, "warning", twin_id, [r["key"] for r in rows])
            self._announce(conn, max_before, stored.values())
        self._wake()
        return sorted(stored.values(), key=lambda e: e.seq)

    def ingest_observations(self, twin: Twin, observations: Sequence[Observation]) -> IngestReport:
        """Validate and store a batch of observations durably, exactly once each.

        Returns after the commit, so what is reported stored is stored. The same
        (variable, location, time) with the same value and units is a duplicate and
        is stored once; with a different value (or units) the whole batch is refused
        with :class:`ObservationConflict` and nothing of it is stored.
        """
        if len(observations) > MAX_OBSERVATIONS_PER_BATCH:
            raise InvalidInput(
                f"{len(observations)} observations in one batch; send at most "
                f"{MAX_OBSERVATIONS_PER_BATCH} per request"
            )
        locations = {r.id: "region" for r in twin.regions} | {g.id: "gauge" for g in twin.gauges}
        declared_units = {n: u for ds in twin.datasets for n, u in ds.variables.items()}
        recorded = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        duplicates = 0
        conflicts: list[dict[str, Any]] = []
        for i, obs in enumerate(observations):
            if not isinstance(obs, Observation):
                raise InvalidInput(f"observations[{i}] must be an Observation")
            if obs.twin != twin.id:
                raise InvalidInput(
                    f"observations[{i}] is for twin {obs.twin!r}, but this batch is for "
                    f"twin {twin.id!r}"
                )
            if obs.location not in locations:
                raise UnknownLocation(
                    f"observations[{i}]: twin {twin.id!r} has no region or gauge "
                    f"{obs.location!r}; its regions are: "
                    f"{', '.join(r.id for r in twin.regions) or '(none)'}; its gauges are: "
                    f"{', '.join(g.id for g in twin.gauges) or '(none)'}"
                )
            expected = declared_units.get(obs.variable)
            if expected is not None and obs.units != expected:
                raise InvalidInput(
                    f"observations[{i}]: twin {twin.id!r} declares {obs.variable!r} in "
                    f"{expected!r}, not {obs.units!r}; convert the value to {expected!r}"
                )
            if not math.isfinite(obs.value):  # model_construct skips the field check
                raise InvalidInput(f"observations[{i}].value must be a finite number")
            key = obs.key
            payload = {
                "value": obs.value,
                "units": obs.units,
                "source": obs.source,
                "location_type": locations[obs.location],
            }
            earlier = rows.get(key)
            if earlier is not None:
                if _same_reading(earlier["payload"], payload):
                    duplicates += 1
                else:
                    conflicts.append(_conflict(key, earlier["payload"], None, payload))
                continue
            rows[key] = {
                "kind": "observation",
                "twin": twin.id,
                "region": obs.location,
                "variable": obs.variable,
                "time": obs.time,
                "key": key,
                "payload": payload,
                "recorded": recorded,
            }
        if conflicts:
            raise _conflict_error(conflicts, within_batch=True)
        if not rows:
            return IngestReport(stored=0, duplicates=duplicates, events=[])
        with self._writing() as conn:
            max_before = _max_seq(conn)
            conn.execute(
                self._db.insert_ignoring_duplicates(events, ["kind", "twin", "key"]),
                list(rows.values()),
            )
            found = self._by_key(conn, "observation", twin.id, list(rows))
            new: list[Event] = []
            for key, row in rows.items():
                ev = found[key]
                if ev.seq > max_before:
                    new.append(ev)
                elif _same_reading(ev.payload, row["payload"]):
                    duplicates += 1
                else:
                    conflicts.append(_conflict(key, ev.payload, ev.seq, row["payload"]))
            if conflicts:
                # Raising inside the transaction rolls the whole batch back.
                raise _conflict_error(conflicts, within_batch=False)
            self._announce(conn, max_before, new)
        self._wake()
        new.sort(key=lambda e: e.seq)
        return IngestReport(stored=len(new), duplicates=duplicates, events=new)

    # -- reading --------------------------------------------------------------------
    def latest_sequence(self) -> int:
        """The highest committed seq (0 when the log is empty)."""
        with self._reading() as conn:
            return _max_seq(conn)

    def replay(
        self,
        after_sequence: int = 0,
        *,
        kinds: Iterable[EventKind] | str | None = None,
        twin: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Events with seq > ``after_sequence``, in seq order, at most ``limit``."""
        after = _check_sequence(after_sequence)
        limit = _check_limit(limit, MAX_REPLAY_LIMIT)
        query = select(events).where(events.c.seq > after)
        query = _filtered(query, _check_kinds(kinds), twin)
        query = query.order_by(events.c.seq).limit(limit)
        with self._reading() as conn:
            return [_event(row) for row in conn.execute(query).mappings()]

    def warnings(
        self,
        twin_id: str,
        *,
        region: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        latest_per_region: bool = False,
    ) -> list[Event]:
        """The newest warning events of a twin first.

        ``since`` keeps issues on or after that time; ``latest_per_region`` keeps only
        each region's newest warning (the current state, e.g. one feature per region).
        """
        limit = _check_limit(limit, MAX_REPLAY_LIMIT)
        query = select(events).where(events.c.kind == "warning", events.c.twin == twin_id)
        if region is not None:
            query = query.where(events.c.region == region)
        if since is not None:
            query = query.where(events.c.time >= _as_utc(_check_datetime(since, "since")))
        if latest_per_region:
            newest = query.with_only_columns(func.max(events.c.seq)).group_by(events.c.region)
            query = select(events).where(events.c.seq.in_(newest))
        query = query.order_by(events.c.seq.desc()).limit(limit)
        with self._reading() as conn:
            return [_event(row) for row in conn.execute(query).mappings()]

    def subscribe(
        self,
        after_sequence: int = 0,
        *,
        kinds: Iterable[EventKind] | str | None = None,
        twin: str | None = None,
        stop: threading.Event | None = None,
        poll_seconds: float = 0.2,
    ) -> Iterator[Event]:
        """Yield every event after ``after_sequence`` in order, then wait for new ones.

        Ends when ``stop`` is set (noticed within 0.1 s) or when the
        generator is closed. Writers of this process wake it at once; other
        processes' writes arrive through LISTEN/NOTIFY (PostgreSQL) or the next poll.
        """
        after = _check_sequence(after_sequence)
        kinds_t = _check_kinds(kinds)
        if isinstance(poll_seconds, bool) or not (
            isinstance(poll_seconds, int | float) and 0 < poll_seconds <= 60
        ):
            raise InvalidParameter(f"poll_seconds must be in (0, 60], not {poll_seconds!r}")
        # Validated here, not at the first next(): a bad argument fails where it is passed.
        return self._follow(after, kinds_t, twin, stop, float(poll_seconds))

    def _follow(
        self,
        after: int,
        kinds: tuple[EventKind, ...] | None,
        twin: str | None,
        stop: threading.Event | None,
        poll_seconds: float,
    ) -> Iterator[Event]:
        signal = _signal_for(self._db.url)
        # LISTEN before the first read: a commit after it is announced, one before it is read.
        listener = self._listen() if self._db.is_postgres else None
        try:
            while True:
                seen = signal.generation()
                batch = self.replay(after, kinds=kinds, twin=twin, limit=_PAGE)
                for ev in batch:
                    yield ev
                    after = ev.seq
                if len(batch) == _PAGE:
                    continue
                if stop is not None and stop.is_set():
                    return
                # Wait in short slices so that ``stop`` is noticed soon even with a long poll.
                deadline = time.monotonic() + poll_seconds
                while (remaining := deadline - time.monotonic()) > 0:
                    if stop is not None and stop.is_set():
                        return
                    slice_s = min(remaining, _STOP_CHECK_S)
                    if listener is not None:
                        try:
                            if listener.wait(slice_s):
                                break
                        except Exception as exc:  # a lost connection: keep going by polling
                            logger.warning("event LISTEN connection lost (%s); polling", exc)
                            listener.close()
                            listener = None
                    elif signal.wait(seen, slice_s):
                        break
        finally:
            if listener is not None:
                listener.close()

    # -- export ---------------------------------------------------------------------
    def export(
        self,
        path: str | os.PathLike[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        kinds: Iterable[EventKind] | str | None = None,
        twin: str | None = None,
        format: ExportFormat | None = None,
    ) -> int:
        """Write events with ``start <= time < end`` to Parquet or CSV; return the row count.

        Columns: seq, kind, twin, region, variable, key, time, recorded (UTC) and the
        payload as a JSON string. The format comes from the suffix (``.parquet``,
        ``.pq``, ``.csv``) unless given. The file appears whole or not at all (written
        to a temporary file beside it, then renamed). Events committed while exporting
        are left for the next export, so the file is one consistent cut of the log.
        """
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        target = Path(path)
        fmt = _export_format(target, format)
        start_utc = _as_utc(_check_datetime(start, "start")) if start is not None else None
        end_utc = _as_utc(_check_datetime(end, "end")) if end is not None else None
        if start_utc is not None and end_utc is not None and start_utc >= end_utc:
            raise InvalidTimeRange(
                f"export start {_iso(start_utc)} is not before end {_iso(end_utc)}"
            )
        kinds_t = _check_kinds(kinds)
        if not target.parent.is_dir():
            raise InvalidParameter(f"export directory {str(target.parent)!r} does not exist")
        schema = _export_schema()
        upper = self.latest_sequence()
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        rows = 0
        try:
            writer: Any = (
                pq.ParquetWriter(tmp, schema)
                if fmt == "parquet"
                else pa_csv.CSVWriter(str(tmp), schema)
            )
            try:
                last = 0
                while True:
                    query = select(events).where(events.c.seq > last, events.c.seq <= upper)
                    query = _filtered(query, kinds_t, twin)
                    if start_utc is not None:
                        query = query.where(events.c.time >= start_utc)
                    if end_utc is not None:
                        query = query.where(events.c.time < end_utc)
                    query = query.order_by(events.c.seq).limit(_EXPORT_PAGE)
                    with self._reading() as conn:
                        page = [_event(row) for row in conn.execute(query).mappings()]
                    if not page:
                        break
                    writer.write_batch(_record_batch(pa, schema, page))
                    rows += len(page)
                    last = page[-1].seq
            finally:
                writer.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except BaseException:
            with suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return rows

    # -- internals ------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction that holds the event lock, so seq order is commit order."""
        with self._db.begin() as conn:
            if self._db.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EVENTS_LOCK_KEY})
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read connection. On SQLite not ``db.begin()``: its BEGIN IMMEDIATE would
        take the write lock for every read, and pollers would queue up the writers."""
        self._db.migrate()
        engine = self._sqlite_reader() if not self._db.is_postgres else None
        with (engine or self._db.engine).connect() as conn:
            yield conn

    def _sqlite_reader(self) -> Engine | None:
        with self._read_engine_lock:
            if self._read_engine is None:
                self._read_engine = _sqlite_read_engine(self._db.url)
            return self._read_engine

    def _by_key(
        self, conn: Connection, kind: str, twin_id: str, keys: list[str]
    ) -> dict[str, Event]:
        found: dict[str, Event] = {}
        for i in range(0, len(keys), _KEY_CHUNK):
            chunk = keys[i : i + _KEY_CHUNK]
            query = select(events).where(
                events.c.kind == kind, events.c.twin == twin_id, events.c.key.in_(chunk)
            )
            for row in conn.execute(query).mappings():
                ev = _event(row)
                found[ev.key] = ev
        return found

    def _announce(self, conn: Connection, max_before: int, new: Iterable[Event]) -> None:
        """On PostgreSQL, NOTIFY listeners (delivered when the transaction commits)."""
        top = max((e.seq for e in new), default=0)
        if self._db.is_postgres and top > max_before:
            conn.execute(
                text("SELECT pg_notify(:channel, :seq)"),
                {"channel": NOTIFY_CHANNEL, "seq": str(top)},
            )

    def _wake(self) -> None:
        _signal_for(self._db.url).notify()

    def _listen(self) -> _PgListener | None:
        try:
            return _PgListener(_libpq_url(self._db.url))
        except Exception as exc:  # no LISTEN: subscribers still work, by polling
            logger.warning("cannot LISTEN for events (%s); polling instead", exc)
            return None


#: What a job event's payload keeps of the job: no owner, worker, lease or inputs (the
#: log is readable by every subscriber; the job itself is behind its own access rules).
_JOB_EVENT_FIELDS = (
    "id",
    "capability",
    "status",
    "progress",
    "message",
    "error",
    "result",
    "model_version",
    "attempts",
    "created",
    "started",
    "finished",
    "updated",
)


def job_event_row(job: dict[str, Any]) -> dict[str, Any]:
    """The ``job`` event row for a job's new state (``Job.to_dict()``): one per status
    change or progress report, keyed uniquely (a job's history is every change)."""
    payload = {k: job.get(k) for k in _JOB_EVENT_FIELDS}
    return {
        "kind": "job",
        "twin": job["twin"],
        "region": None,
        "variable": job["capability"],
        "time": _as_utc(datetime.fromisoformat(job["updated"])),
        "key": f"{job['id']}:{uuid.uuid4().hex}",
        "payload": _json_safe(payload),
        "recorded": utcnow(),
    }


def append_events(db: Database, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append event rows inside the caller's write transaction ``conn`` of ``db``
    (the job store's): takes the event lock (PostgreSQL), so seq order stays commit
    order, and announces them at commit. Call :func:`wake_subscribers` after the commit."""
    if not rows:
        return
    if db.is_postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _EVENTS_LOCK_KEY})
    conn.execute(events.insert(), list(rows))
    if db.is_postgres:
        top = _max_seq(conn)
        conn.execute(
            text("SELECT pg_notify(:channel, :seq)"), {"channel": NOTIFY_CHANNEL, "seq": str(top)}
        )


def wake_subscribers(db: Database) -> None:
    """Wake this process's subscribers of ``db``'s log (after a commit of events)."""
    _signal_for(db.url).notify()


def read_export(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a file written by :meth:`EventLog.export` back into a DataFrame.

    Parquet is recognised by its magic bytes, anything else is read as CSV with the
    export's column types, so both formats give the same frame.
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    target = Path(path)
    with open(target, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        table = pq.read_table(target)
    else:
        schema = _export_schema()
        table = pa_csv.read_csv(
            target,
            convert_options=pa_csv.ConvertOptions(
                column_types=schema,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                include_columns=schema.names,
            ),
        )
    return table.to_pandas()


# -- notification ---------------------------------------------------------------------
class _Signal:
    """A generation counter with a condition: waiters wake when it moves."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != seen, timeout)


#: One signal per database URL, shared by every EventLog of this process.
_SIGNALS: dict[str, _Signal] = {}
_SIGNALS_LOCK = threading.Lock()


def _signal_for(url: str) -> _Signal:
    with _SIGNALS_LOCK:
        signal = _SIGNALS.get(url)
        if signal is None:
            signal = _SIGNALS[url] = _Signal()
        return signal


class _PgListener:
    """A dedicated autocommit psycopg connection LISTENing on the event channel."""

    def __init__(self, libpq_url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(libpq_url, autocommit=True, connect_timeout=10)
        self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """True when a notification arrived within ``timeout`` seconds."""
        return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))

    def close(self) -> None:
        with suppress(Exception):
            self._conn.close()


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no ``+psycopg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_read_engine(url: str) -> Engine | None:
    """A pool of plain SQLite connections: under WAL a SELECT takes no lock, so
    readers never wait for writers nor make them wait. None for in-memory databases
    (a second engine would see a different database)."""
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in url:
        return None
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    return engine


# -- helpers --------------------------------------------------------------------------
def _as_utc(value: datetime) -> datetime:
    """Naive means UTC; aware is converted to UTC."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _as_utc(value).isoformat().replace("+00:00", "Z")


def _check_datetime(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidParameter(f"{name} must be a datetime, not {type(value).__name__}")
    return value


def _issue_time(issued: Any, name: str) -> datetime:
    """Midnight UTC of the issue day, from a date, a datetime or an ISO string."""
    if isinstance(issued, datetime):
        day = issued.date()
    elif isinstance(issued, date):
        day = issued
    elif isinstance(issued, str):
        try:
            day = date.fromisoformat(issued[:10])
        except ValueError:
            raise InvalidInput(f"{name} must be an ISO date (YYYY-MM-DD), not {issued!r}") from None
    else:
        raise InvalidInput(f"{name} must be an ISO date (YYYY-MM-DD)")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _check_name(value: Any, name: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise InvalidParameter(f"{name} must be a string of 1 to 128 characters")


def _check_sequence(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameter(f"after_sequence must be an integer >= 0, not {value!r}")
    return value


def _check_limit(value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidParameter(f"limit must be an integer from 1 to {maximum}, not {value!r}")
    return value


def _check_kinds(kinds: Iterable[str] | str | None) -> tuple[EventKind, ...] | None:
    if kinds is None:
        return None
    chosen = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in chosen if k not in _KINDS]
    if unknown or not chosen:
        raise InvalidParameter(
            f"kinds {list(chosen)!r}: each kind must be one of {', '.join(_KINDS)}"
        )
    return cast(tuple[EventKind, ...], chosen)


def _filtered(query: Any, kinds: tuple[str, ...] | None, twin: str | None) -> Any:
    if kinds is not None:
        query = query.where(events.c.kind.in_(kinds))
    if twin is not None:
        query = query.where(events.c.twin == twin)
    return query


def _max_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.max(events.c.seq))).scalar() or 0)


def _event(row: Any) -> Event:
    payload = row["payload"]
    if isinstance(payload, str):  # a JSON column read back as text
        payload = json.loads(payload)
    return Event(
        seq=int(row["seq"]),
        kind=row["kind"],
        twin=row["twin"],
        region=row["region"],
        variable=row["variable"],
        time=_as_utc(row["time"]),
        key=row["key"],
        payload=payload,
        recorded=_as_utc(row["recorded"]),
    )


def _json_safe(value: Any) -> Any:
    """JSON-storable: dates as ISO strings, numpy scalars as Python numbers, NaN and
    infinities as null (PostgreSQL's JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise InvalidInput(f"cannot store a {type(value).__name__} in an event payload")


def _same_reading(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("value") == b.get("value") and a.get("units") == b.get("units"))


def _conflict(
    key: str, stored: dict[str, Any], seq: int | None, received: dict[str, Any]
) -> dict[str, Any]:
    return {
        "key": key,
        "stored": {"value": stored.get("value"), "units": stored.get("units"), "seq": seq},
        "received": {"value": received.get("value"), "units": received.get("units")},
    }


def _conflict_error(conflicts: list[dict[str, Any]], *, within_batch: bool) -> ObservationConflict:
    first = conflicts[0]
    where = "earlier in this batch" if within_batch else f"as event {first['stored']['seq']}"
    more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    return ObservationConflict(
        f"observation {first['key']!r} has value {first['received']['value']!r} "
        f"{first['received']['units']}, but {first['stored']['value']!r} "
        f"{first['stored']['units']} is stored {where}{more}; nothing of this batch was "
        "stored. Send corrected values under their own time, or the stored value again.",
        conflicts,
    )


def _export_format(target: Path, format: str | None) -> ExportFormat:
    if format is None:
        suffix = target.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return "parquet"
        if suffix == ".csv":
            return "csv"
        raise InvalidParameter(
            f"cannot tell the export format from {target.name!r}; name it *.parquet or "
            "*.csv, or pass format='parquet' or 'csv'"
        )
    if format not in get_args(ExportFormat):
        raise InvalidParameter(f"format must be 'parquet' or 'csv', not {format!r}")
    return format  # type: ignore[return-value]


def _export_schema() -> pa.Schema:
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("seq", pa.int64()),
            ("kind", pa.string()),
            ("twin", pa.string()),
            ("region", pa.string()),
            ("variable", pa.string()),
            ("key", pa.string()),
            ("time", utc),
            ("recorded", utc),
            ("payload", pa.string()),
        ]
    )


def _record_batch(pa: Any, schema: pa.Schema, page: list[Event]) -> pa.RecordBatch:
    columns = {
        "seq": [e.seq for e in page],
        "kind": [e.kind for e in page],
        "twin": [e.twin for e in page],
        "region": [e.region for e in page],
        "variable": [e.variable for e in page],
        "key": [e.key for e in page],
        "time": [e.time for e in page],
        "recorded": [e.recorded for e in page],
        "payload": [json.dumps(e.payload, sort_keys=True, allow_nan=False) for e in page],
    }
    return pa.record_batch([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
