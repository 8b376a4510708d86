"""Event-driven warnings: an observation that changes a region's flood state re-issues
the twin's warnings.

What counts as a change: a discharge observation (``discharge_m3s``) at a region, or at
the gauge that is a region's ``outlet_gauge``, puts that region in the flood level of the
highest return level it reaches (none, medium 2-year, high 5-year, severe 20-year). The
levels are the region's ``thresholds_m3s`` of its latest warning in the log (the ones
the twin warns against); before any warning was issued, the return levels stored with
the twin's reanalysis dataset (what :func:`model_thresholds` falls back to; for the
demo twins the same levels), and only for a twin without those, the current model's
levels computed as the warnings capability computes them. The state changes when the
newest observation of the location (by observed time) lands in another level than the
newest one stored before the batch; a backfilled older observation never changes the
current state, and the first observation of a location is compared with "none".

What a change does: it submits one ``warnings`` job for the twin through
:meth:`Engine.submit` (owner :data:`TRIGGER_OWNER`), so a ``twinmesh worker`` runs it
and its warnings land in the event log, where every ``subscribe`` of every replica sees
them. The job is issued on the observation's day, clipped to the issue days the twin's
forcing allows (:func:`issue_days`; a real-time observation of a historical twin gets
the last day its ensemble forcing has). The warning is the model's forecast from that
day: the models do not assimilate observations, so the observation decides *when* the
warnings are re-issued, not what they say.

Debounce: the first change of a twin submits at once (leading edge, lowest latency);
changes in the next ``debounce_seconds`` are held and become at most one more job when
the window ends (for the newest issue day among them). While a ``warnings`` job of the
twin is queued or running (any replica's: the check reads the job store) no other is
submitted: a held change waits until it is done (at most ``max_wait_seconds``), unless
that job computes the same warnings (same inputs), which covers it; so does a finished
job of the same inputs made within the window before the first held change.

Where it runs: in the process that committed the observations, right after the commit
(``WarningTrigger.offer`` with the ``IngestReport.events``), on the trigger's own
thread, so the ingest acknowledgement never waits for it. It has the new events in
hand (no cursor to keep, no extra process, no leader election among replicas); the
price is that a crash between the commit and the submission loses that re-issue (the
observations themselves are stored), and that every ingest path must call it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from twinmesh.core.capabilities.early_warning import FLOOD_LEVELS, model_thresholds
from twinmesh.core.db import events as events_table
from twinmesh.core.db import utcnow
from twinmesh.core.errors import NotFoundError, TwinmeshError
from twinmesh.core.events import Event
from twinmesh.core.jobs import Job, JobStatus
from twinmesh.core.twin import Region, Twin

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine

__all__ = [
    "DISCHARGE_VARIABLE",
    "TRIGGER_OWNER",
    "DEBOUNCE_SECONDS",
    "StateChange",
    "Decision",
    "Debouncer",
    "observed_flood_level",
    "issue_days",
    "issue_day_for",
    "WarningTrigger",
]

logger = logging.getLogger(__name__)

#: The observed variable whose level decides a region's flood state.
DISCHARGE_VARIABLE = "discharge_m3s"
#: Owner of the jobs the trigger submits (how a job list tells them from requested ones).
TRIGGER_OWNER = "twinmesh:observation-trigger"
#: Changes of one twin within this many seconds of its last triggered job make at most
#: one more job.
DEBOUNCE_SECONDS = 5.0
#: How often a held change looks again whether the twin's running warnings job is done.
RECHECK_SECONDS = 0.5
#: A held change waits at most this long for another warnings job of the twin.
MAX_WAIT_SECONDS = 120.0
#: The trigger's thread ends after this long with nothing to do (a new offer restarts it).
IDLE_SECONDS = 2.0
_ACTIVE = (JobStatus.ACCEPTED, JobStatus.RUNNING)


@dataclass(frozen=True)
class StateChange:
    """A region whose observed flood level an observation changed."""

    twin: str
    region: str
    #: Where it was observed: the region itself or its outlet gauge.
    location: str
    observed: datetime
    value_m3s: float
    before: str
    after: str
    thresholds_m3s: dict[int, float]
    threshold_source: str
    seq: int


@dataclass(frozen=True)
class Decision:
    """What the trigger did about a twin's held changes: ``submitted``, ``covered`` (an
    identical job is queued, running or just done) or ``failed`` (the submission was
    refused; the message says why)."""

    twin: str
    issued: date
    action: str
    job_id: str | None
    message: str
    changes: tuple[StateChange, ...] = ()


def observed_flood_level(value_m3s: float, thresholds_m3s: Mapping[int, float]) -> str:
    """The flood level of one discharge value: the longest return period whose level it
    reaches (as the warnings judge a member's peak), "none" below every level."""
    level = "none"
    for period in sorted(thresholds_m3s):
        if value_m3s >= thresholds_m3s[period]:
            level = FLOOD_LEVELS.get(period, f"{period}-year")
    return level


def issue_days(engine: Engine, twin: Twin) -> tuple[date, date]:
    """The first and last day a forecast of the twin can be issued on: its ensemble
    forcing's issue days, after a year of model spin-up, within the record."""
    from twinmesh.core.capabilities.hydrology import SPIN_UP_DAYS
    from twinmesh.core.ensembles import ensemble_extent

    first_issue, last_issue, _lead, _members = ensemble_extent(engine.store, twin)
    first = max(first_issue, twin.time_extent[0] + timedelta(days=SPIN_UP_DAYS))
    return first, min(last_issue, twin.time_extent[1])


def issue_day_for(
    engine: Engine, twin: Twin, observed: datetime, days: tuple[date, date] | None = None
) -> date:
    """The issue day of the warnings an observation at ``observed`` re-issues: its day,
    clipped to :func:`issue_days` (a real-time observation of a twin whose forcing ends
    earlier gets the last day the forcing allows)."""
    first, last = days or issue_days(engine, twin)
    return min(max(observed.date(), first), last)


@dataclass
class _Held:
    issued: date
    due: float
    since: float
    changes: list[StateChange] = field(default_factory=list)


class Debouncer:
    """Which twin's changes are due for a job, and when (no I/O: the caller's clock).

    The first change of a twin is due at once; one arriving within ``window_s`` of the
    twin's last submission is due when that window ends. Changes held together become
    one job for the newest issue day among them.
    """

    def __init__(self, window_s: float = DEBOUNCE_SECONDS) -> None:
        self.window_s = window_s
        self._held: dict[str, _Held] = {}
        self._last_submit: dict[str, float] = {}

    def offer(self, twin: str, issued: date, now: float, changes: Sequence[StateChange]) -> None:
        held = self._held.get(twin)
        if held is None:
            last = self._last_submit.get(twin)
            due = now if last is None else max(now, last + self.window_s)
            self._held[twin] = _Held(issued, due, now, list(changes))
        else:
            held.issued = max(held.issued, issued)
            held.changes.extend(changes)

    def due(self, now: float) -> list[tuple[str, date, float, list[StateChange]]]:
        """Held twins whose time has come: (twin, issue day, held since, changes)."""
        return [
            (t, h.issued, h.since, list(h.changes)) for t, h in self._held.items() if h.due <= now
        ]

    def next_due(self) -> float | None:
        return min((h.due for h in self._held.values()), default=None)

    def postpone(self, twin: str, until: float) -> None:
        if twin in self._held:
            self._held[twin].due = until

    def submitted(self, twin: str, now: float) -> None:
        self._held.pop(twin, None)
        self._last_submit[twin] = now

    def drop(self, twin: str) -> None:
        self._held.pop(twin, None)

    def holding(self) -> bool:
        return bool(self._held)


class WarningTrigger:
    """Turns observations that change a region's flood state into ``warnings`` jobs.

    Make one per process (per engine) and share it: the debounce state lives here.
    ``offer`` is non-blocking (evaluation and submission run on the trigger's thread,
    which ends when idle); ``state_changes`` and ``run_due`` are the same steps called
    directly.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        recheck_seconds: float = RECHECK_SECONDS,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        threaded: bool = True,
    ) -> None:
        self.engine = engine
        #: False: ``offer`` evaluates in the caller's thread and held changes are
        #: submitted only by ``run_due`` calls (a short-lived process, tests).
        self.threaded = threaded
        self.recheck_seconds = recheck_seconds
        self.idle_seconds = idle_seconds
        self.max_wait_seconds = max_wait_seconds
        self._clock = clock
        self._debouncer = Debouncer(debounce_seconds)
        self._cond = threading.Condition()
        self._deciding = threading.Lock()
        self._inbox: deque[tuple[Twin, list[Event]]] = deque()
        self._busy = False
        self._prepare_asked = False
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The last decisions (newest last), for logs and tests.
        self.decisions: deque[Decision] = deque(maxlen=100)
        #: (twin, model version) -> region id -> (thresholds, source)
        self._model_levels: dict[tuple[str, int], dict[str, tuple[dict[int, float], str]]] = {}
        #: (twin, dataset version) -> (region id -> thresholds, source)
        self._stored_levels: dict[tuple[str, str], tuple[dict[str, dict[int, float]], str]] = {}
        #: (twin, dataset version) -> first and last issue day of the ensemble forcing
        self._issue_days: dict[tuple[str, str], tuple[date, date]] = {}

    def __repr__(self) -> str:
        return f"WarningTrigger({self.engine.db!r}, debounce {self._debouncer.window_s}s)"

    # -- evaluation ---------------------------------------------------------------------
    def state_changes(self, twin: Twin, new_events: Sequence[Event]) -> list[StateChange]:
        """The regions whose observed flood level these newly stored events changed."""
        observed = [
            e
            for e in new_events
            if e.kind == "observation" and e.twin == twin.id and e.variable == DISCHARGE_VARIABLE
        ]
        if not observed:
            return []
        by_location: dict[str, list[Event]] = {}
        for e in observed:
            if e.region is not None:
                by_location.setdefault(e.region, []).append(e)
        changes: list[StateChange] = []
        for location, found in by_location.items():
            regions = _regions_observed_at(twin, location)
            if not regions:
                continue
            newest = max(found, key=lambda e: (e.time, e.seq))
            value = _value(newest)
            if value is None:
                continue
            superseded, before = self._current_before(
                twin.id, location, newest, min(e.seq for e in found)
            )
            if superseded:
                continue
            for region in regions:
                thresholds, source = self.thresholds(twin, region)
                old = "none" if before is None else observed_flood_level(before, thresholds)
                new = observed_flood_level(value, thresholds)
                if old != new:
                    changes.append(
                        StateChange(
                            twin=twin.id,
                            region=region.id,
                            location=location,
                            observed=newest.time,
                            value_m3s=value,
                            before=old,
                            after=new,
                            thresholds_m3s=thresholds,
                            threshold_source=source,
                            seq=newest.seq,
                        )
                    )
        return changes

    def thresholds(self, twin: Twin, region: Region) -> tuple[dict[int, float], str]:
        """The region's flood levels (period -> m3/s) and where they come from.

        The levels of the region's latest warning (what the twin warns against now);
        before any warning, the return levels stored with the twin's reanalysis dataset
        (what ``model_thresholds`` falls back to, and for the demo twins the same
        levels); only a twin without them has its model's levels computed here. That
        computation runs the model over the climate period and holds the GIL for tens
        of milliseconds at a time: in a server process it would stall every live stream.
        """
        latest = self.engine.log.warnings(twin.id, region=region.id, limit=1)
        if latest:
            stored = latest[0].payload.get("thresholds_m3s") or {}
            levels = {int(k): float(v) for k, v in stored.items() if v is not None}
            if levels:
                return levels, f"thresholds of the region's latest warning (event {latest[0].seq})"
        reanalysis = self.stored_levels(twin)
        if reanalysis is not None and region.id in reanalysis[0]:
            return reanalysis[0][region.id], reanalysis[1]
        return self.model_levels(twin)[region.id]

    def stored_levels(self, twin: Twin) -> tuple[dict[str, dict[int, float]], str] | None:
        """Return levels stored with the twin's reanalysis dataset, per region (cached per
        dataset version); None when the twin has none."""
        try:
            info = twin.dataset_for("discharge-reanalysis")
            version = self.engine.store.live_version(twin.id, info.id)
        except NotFoundError:
            return None
        key = (twin.id, version)
        if key not in self._stored_levels:
            ds = self.engine.store.open(twin.id, info.id)
            if "return_level_m3s" not in ds:
                return None
            levels = ds["return_level_m3s"].transpose("region", "return_period")
            values = np.asarray(levels.values, dtype="float64")
            periods = [int(p) for p in levels["return_period"].values]
            self._stored_levels[key] = (
                {
                    str(r): {p: float(values[k, i]) for i, p in enumerate(periods)}
                    for k, r in enumerate(levels["region"].values)
                },
                f"return levels stored with the reanalysis dataset {info.id!r} (no warning "
                "issued for the region yet)",
            )
        return self._stored_levels[key]

    def _issue_range(self, twin: Twin) -> tuple[date, date]:
        """:func:`issue_days`, cached per version of the ensemble forcing."""
        from twinmesh.core.ensembles import ENSEMBLE_ROLE

        info = twin.dataset_for(ENSEMBLE_ROLE)
        key = (twin.id, self.engine.store.live_version(twin.id, info.id))
        if key not in self._issue_days:
            self._issue_days[key] = issue_days(self.engine, twin)
        return self._issue_days[key]

    def model_levels(self, twin: Twin) -> dict[str, tuple[dict[int, float], str]]:
        """The current model's levels per region, computed as the warnings capability
        computes them (cached per model version)."""
        model = self.engine.model(twin)
        key = (twin.id, model.version)
        if key not in self._model_levels:
            from twinmesh.core.capabilities.hydrology import region_forcing

            forcing = region_forcing(self.engine.store, twin)
            found = model_thresholds(
                self.engine, twin, model, forcing, list(range(len(twin.regions)))
            )
            self._model_levels[key] = {
                r.id: (
                    {p: float(found.levels_m3s[k, i]) for i, p in enumerate(found.periods)},
                    found.source,
                )
                for k, r in enumerate(twin.regions)
            }
        return self._model_levels[key]

    def _current_before(
        self, twin_id: str, location: str, newest: Event, first_seq: int
    ) -> tuple[bool, float | None]:
        """Whether a stored observation of the location is newer than ``newest`` (then
        the batch does not move its state), and the value of the newest one stored
        before the batch (None when there is none)."""
        query = (
            select(events_table.c.seq, events_table.c.time, events_table.c.payload)
            .where(
                events_table.c.kind == "observation",
                events_table.c.twin == twin_id,
                events_table.c.region == location,
                events_table.c.variable == DISCHARGE_VARIABLE,
            )
            .order_by(events_table.c.time.desc(), events_table.c.seq.desc())
            .limit(1)
        )
        db = self.engine.db
        with db.read() as conn:
            latest = conn.execute(query).first()
            if latest is not None and latest.seq != newest.seq:
                return True, None
            before = conn.execute(query.where(events_table.c.seq < first_seq)).first()
        if before is None:
            return False, None
        payload = before.payload
        if isinstance(payload, str):  # a JSON column read back as text
            payload = json.loads(payload)
        return False, _value_of(payload)

    def prepare(self) -> None:
        """Read what evaluating a twin's observations needs (its stored levels, its
        issue days; the first read also imports the Zarr stack) for every twin, on the
        trigger's thread: a server calls it at start, so that the first observation
        does not hold the GIL for a few hundred milliseconds while streams are live."""
        if not self.threaded:
            self._prepare()
            return
        with self._cond:
            if self._closed:
                return
            self._prepare_asked = True
            self._ensure_thread()
            self._cond.notify_all()

    def _prepare(self) -> None:
        store = self.engine.store
        for twin_id in store.twin_ids():
            try:
                twin = store.read_twin(twin_id)
                if "warnings" in twin.capabilities:
                    self.stored_levels(twin)
                    self._issue_range(twin)
            except Exception as exc:  # noqa: BLE001 - evaluation will say it again
                logger.info("warning trigger: twin %s not prepared (%s)", twin_id, exc)

    # -- scheduling ---------------------------------------------------------------------
    def offer(self, twin: Twin, new_events: Sequence[Event]) -> None:
        """Hand over newly committed events; returns at once."""
        if not any(e.kind == "observation" for e in new_events):
            return
        if not self.threaded:
            self.after_ingest(twin, new_events)
            return
        with self._cond:
            if self._closed:
                return
            self._inbox.append((twin, list(new_events)))
            self._ensure_thread()
            self._cond.notify_all()

    def after_ingest(self, twin: Twin, new_events: Sequence[Event]) -> list[StateChange]:
        """Evaluate now (in the caller's thread), hold what changed, and submit what is due."""
        changes = self.state_changes(twin, new_events)
        self._hold(twin, changes)
        self.run_due()
        return changes

    def _hold(self, twin: Twin, changes: list[StateChange]) -> None:
        if not changes:
            return
        if "warnings" not in twin.capabilities:
            logger.info("twin %s offers no warnings: state changes noted, nothing issued", twin.id)
            return
        try:
            issued = issue_day_for(
                self.engine, twin, max(c.observed for c in changes), self._issue_range(twin)
            )
        except TwinmeshError as exc:
            logger.warning("twin %s: no issue day for its warnings (%s)", twin.id, exc.message)
            self.decisions.append(
                Decision(twin.id, changes[0].observed.date(), "failed", None, exc.message)
            )
            return
        for c in changes:
            logger.info(
                "observation of %s at %s (%.2f m3/s, event %d) moves region %s from %s to %s",
                c.twin,
                c.location,
                c.value_m3s,
                c.seq,
                c.region,
                c.before,
                c.after,
            )
        with self._cond:
            self._debouncer.offer(twin.id, issued, self._clock(), changes)
            self._ensure_thread()
            self._cond.notify_all()

    def run_due(self) -> list[Decision]:
        """Submit (or find covered) every held twin whose time has come."""
        made = []
        with self._deciding:  # the thread and a direct caller never decide twice
            with self._cond:
                due = self._debouncer.due(self._clock())
            for twin_id, issued, since, changes in due:
                decision = self._decide(twin_id, issued, since, changes)
                if decision is not None:
                    made.append(decision)
                    self.decisions.append(decision)
        return made

    def _decide(
        self, twin_id: str, issued: date, since: float, changes: list[StateChange]
    ) -> Decision | None:
        from twinmesh.core.capabilities import CAPABILITIES

        inputs = {"issued": issued.isoformat()}
        canonical = CAPABILITIES["warnings"].validate(inputs).model_dump(mode="json")
        now = self._clock()
        jobs = self.engine.jobs
        # Queued and running ones by status (however many other jobs the twin has), and
        # the newest finished ones for "just made".
        recent = [
            j
            for status in (*_ACTIVE, JobStatus.SUCCESSFUL)
            for j in jobs.list(twin=twin_id, status=status, limit=100)
            if _is_warnings(j)
        ]
        same = [j for j in recent if j.inputs == canonical]
        for job in same:
            # A job made within the window before the first held change covers it.
            just_made = (
                job.status is JobStatus.SUCCESSFUL
                and _age_seconds(job) - (now - since) < self._debouncer.window_s
            )
            if job.status in _ACTIVE or just_made:
                with self._cond:
                    self._debouncer.drop(twin_id)
                return Decision(
                    twin_id,
                    issued,
                    "covered",
                    job.id,
                    f"job {job.id} ({job.status.value}) issues the same warnings",
                    tuple(changes),
                )
        busy = [j for j in recent if j.status in _ACTIVE]
        if busy and now - since < self.max_wait_seconds:
            with self._cond:
                self._debouncer.postpone(twin_id, now + self.recheck_seconds)
            return None
        try:
            job = self.engine.submit(twin_id, "warnings", inputs, owner=TRIGGER_OWNER)
        except Exception as exc:  # noqa: BLE001 - a refused submission must not end the trigger
            logger.warning("warnings of %s on %s not submitted: %s", twin_id, issued, exc)
            with self._cond:
                self._debouncer.submitted(twin_id, now)
            return Decision(twin_id, issued, "failed", None, str(exc), tuple(changes))
        with self._cond:
            self._debouncer.submitted(twin_id, now)
        logger.info(
            "warnings job %s of %s issued %s (observations changed)", job.id, twin_id, issued
        )
        return Decision(
            twin_id,
            issued,
            "submitted",
            job.id,
            f"{len(changes)} region state change(s)",
            tuple(changes),
        )

    # -- the trigger's thread -----------------------------------------------------------
    def _ensure_thread(self) -> None:
        """Start the thread if it is not running (called with the condition held)."""
        if self.threaded and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(
                target=self._run, name="twinmesh-warning-trigger", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        idle_since = self._clock()
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        self._thread = None
                        return
                    now = self._clock()
                    next_due = self._debouncer.next_due()
                    ready = next_due is not None and next_due <= now
                    if self._inbox or self._prepare_asked or ready:
                        break
                    if next_due is None and now - idle_since >= self.idle_seconds:
                        self._thread = None
                        self._cond.notify_all()
                        return
                    wait = self.idle_seconds if next_due is None else next_due - now
                    self._cond.wait(timeout=max(0.01, min(wait, self.idle_seconds)))
                batch = list(self._inbox)
                self._inbox.clear()
                prepare, self._prepare_asked = self._prepare_asked, False
                self._busy = True
            try:
                if prepare:
                    self._prepare()
                for twin, new_events in batch:
                    self._hold(twin, self.state_changes(twin, new_events))
                self.run_due()
            except Exception:  # noqa: BLE001 - log, keep the thread for the next offer
                logger.exception("the warning trigger failed on an ingest; continuing")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                idle_since = self._clock()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is waiting to be evaluated or submitted (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._inbox or self._prepare_asked or self._busy or self._debouncer.holding():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.05))
            return True

    def close(self) -> None:
        """Stop the thread; held changes are dropped (nothing is submitted after close)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def _regions_observed_at(twin: Twin, location: str) -> list[Region]:
    """The regions whose state an observation at ``location`` speaks for."""
    regions = [r for r in twin.regions if r.id == location]
    return regions or [r for r in twin.regions if r.outlet_gauge == location]


def _value(event: Event) -> float | None:
    return _value_of(event.payload)


def _value_of(payload: Mapping[str, Any]) -> float | None:
    value = payload.get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_warnings(job: Job) -> bool:
    return job.capability == "warnings"


def _age_seconds(job: Job) -> float:
    """Seconds since the job was created (SQLite gives naive UTC times back)."""
    created = job.created if job.created.tzinfo else job.created.replace(tzinfo=UTC)
    return (utcnow() - created).total_seconds()
