"""Retraining trigger: a twin whose model no longer fits the recent observations gets a
new federated training run.

What is measured: the skill of the twin's current model on recent observations, the
Nash-Sutcliffe efficiency of its simulated discharge against the observation log's
discharge (``discharge_m3s``) at the gauged regions (an observation at a region, or at
the gauge that is a region's ``outlet_gauge``), over the last
``federation.retrain_window_days`` days before the twin's newest discharge observation.
Observations are averaged per day (the model is daily); only days the model can simulate
(inside the twin's forcing record) count. NSE is computed per location and combined as
the mean weighted by each location's number of days; fewer than
``federation.retrain_min_observations`` days in all decide nothing.

Which twins: those whose current model is of a kind federated training produces
(``federation.retrain_model_kinds``, by default ``federated-mlp``) and those an operator
opted in (``federation.retrain_twins``). Others are never retrained by it: a calibrated
GR4J is recalibrated, not replaced by a network.

What a decision does: when the skill is below ``federation.retrain_below_nse`` and a
SuperLink is configured (``federation.superlink``), it submits one job of the kind
:data:`JOB_KIND` (``federated_training``) through :meth:`Engine.submit`, owner
:data:`TRIGGER_OWNER`. That kind is an adapter's, registered under the
``twinmesh.job_kinds`` entry point by ``twinmesh.federation`` (core imports no
federation code); a ``twinmesh worker`` runs it like any job, and the model version it
registers records the trigger (skill, threshold, window) in its provenance. The job's
inputs carry the same, and the job's first progress message (a ``job`` event in the log)
says why it runs.

No duplicates, debounced: no job is submitted while one of the twin's ``federated_training``
jobs is queued or running (any replica's: the check reads the job store), nor within
``federation.retrain_debounce_seconds`` of the creation of the twin's last one (a
retraining that failed is not retried at every ingest).

Where it runs: like :class:`~twinmesh.core.triggers.WarningTrigger`, after an ingest
commits, from the :class:`~twinmesh.core.events.IngestReport` events, on the trigger's
own thread (``offer``) or in the caller's (``after_ingest``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from twinmesh.core.db import events as events_table
from twinmesh.core.db import jobs as jobs_table
from twinmesh.core.db import utcnow
from twinmesh.core.events import Event
from twinmesh.core.jobs import Job, JobStatus
from twinmesh.core.twin import Twin

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine
    from twinmesh.core.settings import FederationSettings

__all__ = [
    "JOB_KIND",
    "TRIGGER_OWNER",
    "DISCHARGE_VARIABLE",
    "LocationSkill",
    "RecentSkill",
    "RetrainDecision",
    "recent_nse",
    "skill_verdict",
    "eligible",
    "recent_skill",
    "RetrainTrigger",
]

logger = logging.getLogger(__name__)

#: The adapter job kind a retraining submits (``twinmesh.federation`` registers it).
JOB_KIND = "federated_training"
#: Owner of the jobs the trigger submits.
TRIGGER_OWNER = "twinmesh:retraining-trigger"
DISCHARGE_VARIABLE = "discharge_m3s"
#: The trigger's thread ends after this long with nothing to do (a new offer restarts it).
IDLE_SECONDS = 2.0
_ACTIVE = (JobStatus.ACCEPTED, JobStatus.RUNNING)


@dataclass(frozen=True)
class LocationSkill:
    """The model's skill at one observed location over the window."""

    location: str
    region: str
    days: int
    #: None when undefined (fewer than 2 days, or constant observations).
    nse: float | None


@dataclass(frozen=True)
class RecentSkill:
    """The current model's skill on the recent observations of a twin."""

    twin: str
    model_version: int
    model_kind: str
    #: The window (None: the twin has no discharge observation).
    window_start: date | None
    window_end: date | None
    #: Days with an observation at a location, summed over the locations that score.
    observations: int
    #: Mean NSE over the locations, weighted by their days (None: nothing scores).
    nse: float | None
    locations: tuple[LocationSkill, ...] = ()

    @property
    def window(self) -> str:
        return f"{self.window_start}/{self.window_end}" if self.window_start else "none"


@dataclass(frozen=True)
class RetrainDecision:
    """What the trigger did about a twin: ``submitted``; or why not: ``skill-ok``,
    ``undecided`` (too few observations), ``not-eligible``, ``no-superlink``, ``busy``
    (a retraining is queued or running), ``debounced`` (one was made recently),
    ``failed`` (the submission was refused)."""

    twin: str
    action: str
    message: str
    threshold_nse: float
    skill: RecentSkill | None = None
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.skill is not None:
            out["skill"]["window"] = self.skill.window
        return _jsonable(out)


def recent_nse(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[float | None, int, dict[str, tuple[float | None, int]]]:
    """NSE per location of (simulated, observed) daily series (NaN observations are
    gaps), and their mean weighted by days: (mean or None, days that scored, per
    location (nse or None, days)). A location with fewer than 2 days or constant
    observations has no NSE and does not count."""
    per: dict[str, tuple[float | None, int]] = {}
    total = 0.0
    days = 0
    for location, (sim, obs) in pairs.items():
        s = np.asarray(sim, dtype=np.float64)
        o = np.asarray(obs, dtype=np.float64)
        valid = ~np.isnan(o) & ~np.isnan(s)
        s, o = s[valid], o[valid]
        n = int(o.size)
        denom = float(np.sum((o - o.mean()) ** 2)) if n else 0.0
        if n < 2 or denom == 0.0:
            per[location] = (None, n)
            continue
        value = 1.0 - float(np.sum((s - o) ** 2)) / denom
        per[location] = (value, n)
        total += value * n
        days += n
    return (total / days if days else None), days, per


def skill_verdict(
    nse: float | None, observations: int, *, threshold: float, min_observations: int
) -> tuple[bool | None, str]:
    """Retrain? True below the threshold, False at or above it, None when too few
    observations (or no defined skill) decide; with the reason in words."""
    if nse is None or observations < min_observations:
        return None, (
            f"{observations} observation day(s) on days the model simulates, fewer than "
            f"the {min_observations} a decision needs"
            if observations < min_observations
            else "the skill is undefined (constant observations)"
        )
    if nse < threshold:
        return True, f"NSE {nse:.3f} on {observations} day(s) is below {threshold:g}"
    return False, f"NSE {nse:.3f} on {observations} day(s) is at or above {threshold:g}"


def eligible(twin: Twin, model_kind: str, fed: FederationSettings) -> tuple[bool, str]:
    """Whether federated training retrains this twin, and why (not)."""
    if twin.id in fed.retrain_twins:
        return True, f"twin {twin.id} opted in (federation.retrain_twins)"
    if model_kind.lower() in {k.lower() for k in fed.retrain_model_kinds}:
        return True, f"its current model is of kind {model_kind} (federation.retrain_model_kinds)"
    return False, (
        f"its current model is of kind {model_kind}, which federated training does not "
        f"produce ({', '.join(fed.retrain_model_kinds) or 'none'}), and it did not opt in "
        "(federation.retrain_twins)"
    )


def _regions_by_location(twin: Twin) -> dict[str, str]:
    """Observed location -> the region whose discharge it measures."""
    out = {r.outlet_gauge: r.id for r in twin.regions if r.outlet_gauge}
    out.update({r.id: r.id for r in twin.regions})
    return out


def _observations(engine: Engine, twin: Twin, window_days: int) -> tuple[pd.DataFrame, date | None]:
    """The twin's discharge observations of the window before its newest one: a frame of
    (location, day, value), and the window's last day (None: no observation)."""
    cond = (
        events_table.c.kind == "observation",
        events_table.c.twin == twin.id,
        events_table.c.variable == DISCHARGE_VARIABLE,
    )
    with engine.db.read() as conn:
        newest = conn.execute(select(func.max(events_table.c.time)).where(*cond)).scalar()
        if newest is None:
            return pd.DataFrame(columns=["location", "day", "value"]), None
        newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        end = newest.date()
        since = datetime.combine(end - timedelta(days=window_days - 1), datetime.min.time(), UTC)
        rows = conn.execute(
            select(events_table.c.region, events_table.c.time, events_table.c.payload).where(
                *cond, events_table.c.time >= since
            )
        ).all()
    records = []
    for region, when, payload in rows:
        if isinstance(payload, str):
            import json

            payload = json.loads(payload)
        value = payload.get("value") if isinstance(payload, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            records.append((region, when.date(), float(value)))
    return pd.DataFrame(records, columns=["location", "day", "value"]), end


def recent_skill(engine: Engine, twin: Twin, window_days: int) -> RecentSkill:
    """The current model's NSE on the twin's recent discharge observations (reads the
    log, runs the model from the start of the record to the window's end)."""
    from twinmesh.core.capabilities.hydrology import SimulateInputs, compute_simulate
    from twinmesh.core.engine import no_progress

    model = engine.model(twin)
    frame, end = _observations(engine, twin, window_days)
    regions = _regions_by_location(twin)
    frame = frame[frame["location"].isin(list(regions))] if len(frame) else frame
    if end is None:
        return RecentSkill(twin.id, model.version, model.kind, None, None, 0, None)
    start = end - timedelta(days=window_days - 1)
    first, last = max(start, twin.time_extent[0]), min(end, twin.time_extent[1])
    if len(frame):
        frame = frame[(frame["day"] >= first) & (frame["day"] <= last)]
    if not len(frame):
        return RecentSkill(twin.id, model.version, model.kind, start, end, 0, None)
    daily = frame.groupby(["location", "day"])["value"].mean()
    wanted = sorted({regions[loc] for loc in daily.index.get_level_values("location")})
    sim = compute_simulate(
        engine,
        twin,
        SimulateInputs(start=first, end=last, regions=wanted),
        no_progress,
    ).data["discharge_m3s"]
    sim_days = pd.DatetimeIndex(sim["t"].values).date
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for location in sorted(set(daily.index.get_level_values("location"))):
        obs = daily.loc[location]
        series = pd.Series(sim.sel(region=regions[location]).values, index=sim_days)
        pairs[location] = (series.reindex(obs.index).to_numpy(), obs.to_numpy())
    mean, days, per = recent_nse(pairs)
    locations = tuple(LocationSkill(loc, regions[loc], n, value) for loc, (value, n) in per.items())
    return RecentSkill(twin.id, model.version, model.kind, start, end, days, mean, locations)


class RetrainTrigger:
    """Turns a twin's falling skill on new observations into a ``federated_training`` job.

    One per process (per engine); ``offer`` returns at once (the check runs on the
    trigger's thread), ``after_ingest`` and ``decide`` run in the caller's thread.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        skill: Callable[[Engine, Twin, int], RecentSkill] = recent_skill,
        idle_seconds: float = IDLE_SECONDS,
        threaded: bool = True,
    ) -> None:
        self.engine = engine
        self.threaded = threaded
        self.idle_seconds = idle_seconds
        self._skill = skill
        self._cond = threading.Condition()
        self._pending: dict[str, Twin] = {}
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        #: The last decisions (newest last), for logs and tests.
        self.decisions: list[RetrainDecision] = []

    @property
    def fed(self) -> FederationSettings:
        return self.engine.settings.federation

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, twin: Twin) -> RetrainDecision:
        """The skill and what it calls for, without submitting anything (for operators:
        ``twinmesh federation retrain-check``)."""
        fed = self.fed
        model = self.engine.model(twin)
        ok, why = eligible(twin, model.kind, fed)
        if not ok:
            return RetrainDecision(
                twin.id,
                "not-eligible",
                f"not retrained by federation: {why}",
                fed.retrain_below_nse,
            )
        skill = self._skill(self.engine, twin, fed.retrain_window_days)
        verdict, reason = skill_verdict(
            skill.nse,
            skill.observations,
            threshold=fed.retrain_below_nse,
            min_observations=fed.retrain_min_observations,
        )
        where = f"model v{skill.model_version} ({skill.model_kind}), window {skill.window}"
        if verdict is None:
            return RetrainDecision(
                twin.id, "undecided", f"{where}: {reason}", fed.retrain_below_nse, skill
            )
        if not verdict:
            return RetrainDecision(
                twin.id, "skill-ok", f"{where}: {reason}", fed.retrain_below_nse, skill
            )
        if not fed.superlink:
            return RetrainDecision(
                twin.id,
                "no-superlink",
                f"{where}: {reason}, but no SuperLink is configured (federation.superlink)",
                fed.retrain_below_nse,
                skill,
            )
        return RetrainDecision(
            twin.id, "retrain", f"{where}: {reason}", fed.retrain_below_nse, skill
        )

    def decide(self, twin: Twin) -> RetrainDecision:
        """Evaluate, and submit a retraining when it is called for and none is queued,
        running or recent."""
        decision = self.evaluate(twin)
        if decision.action != "retrain":
            logger.info("retraining of %s: %s (%s)", twin.id, decision.action, decision.message)
            return self._keep(decision)
        skill = decision.skill
        assert skill is not None
        fed = self.fed
        for job in self._retrainings(twin.id):
            if job.status in _ACTIVE:
                return self._keep(
                    _replace(decision, "busy", f"job {job.id} ({job.status.value}) retrains it")
                )
            if _age_seconds(job) < fed.retrain_debounce_seconds:
                return self._keep(
                    _replace(
                        decision,
                        "debounced",
                        f"job {job.id} ({job.status.value}) was made "
                        f"{_age_seconds(job):.0f} s ago (federation.retrain_debounce_seconds "
                        f"{fed.retrain_debounce_seconds:g})",
                    )
                )
        inputs = {
            "superlink": fed.superlink,
            "rounds": fed.retrain_rounds,
            "min_nodes": fed.retrain_min_nodes,
            "trigger": {
                "reason": decision.message,
                "skill_nse": skill.nse,
                "threshold_nse": fed.retrain_below_nse,
                "window": skill.window,
                "observations": skill.observations,
                "model_version": skill.model_version,
            },
        }
        try:
            job = self.engine.submit(twin.id, JOB_KIND, inputs, owner=TRIGGER_OWNER)
        except Exception as exc:  # noqa: BLE001 - a refused submission must not end the trigger
            logger.warning("retraining of %s not submitted: %s", twin.id, exc)
            return self._keep(_replace(decision, "failed", f"{decision.message}; {exc}"))
        logger.warning(
            "retraining of %s triggered: %s; %s job %s submitted",
            twin.id,
            decision.message,
            JOB_KIND,
            job.id,
        )
        return self._keep(
            RetrainDecision(
                twin.id, "submitted", decision.message, decision.threshold_nse, skill, job.id
            )
        )

    def _retrainings(self, twin_id: str) -> list[Job]:
        """The twin's newest ``federated_training`` jobs, queued or running first."""
        query = (
            select(jobs_table.c.id)
            .where(jobs_table.c.twin == twin_id, jobs_table.c.capability == JOB_KIND)
            .order_by(jobs_table.c.created.desc())
            .limit(20)
        )
        with self.engine.db.read() as conn:
            ids = [row.id for row in conn.execute(query)]
        found = [self.engine.jobs.get(i) for i in ids]
        return sorted(found, key=lambda j: j.status not in _ACTIVE)

    def _keep(self, decision: RetrainDecision) -> RetrainDecision:
        with self._cond:
            self.decisions.append(decision)
            del self.decisions[:-100]
        return decision

    # -- after an ingest ----------------------------------------------------------------
    def after_ingest(self, twin: Twin, new_events: Sequence[Event]) -> RetrainDecision | None:
        """Decide now (in the caller's thread) when the events hold discharge
        observations of the twin; None otherwise."""
        if not _observes_discharge(twin, new_events):
            return None
        return self.decide(twin)

    def offer(self, twin: Twin, new_events: Sequence[Event]) -> None:
        """Hand over newly committed events; returns at once."""
        if not _observes_discharge(twin, new_events):
            return
        if not self.threaded:
            self.decide(twin)
            return
        with self._cond:
            if self._closed:
                return
            self._pending[twin.id] = twin  # several ingests of a twin: one check
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="twinmesh-retrain-trigger", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while not self._pending:
                    left = self.idle_seconds - (time.monotonic() - idle_since)
                    if self._closed or left <= 0:
                        self._thread = None
                        self._cond.notify_all()
                        return
                    self._cond.wait(timeout=left)
                twin_id, twin = next(iter(self._pending.items()))
                del self._pending[twin_id]
                self._busy = True
            try:
                self.decide(twin)
            except Exception:  # noqa: BLE001 - log, keep the thread for the next offer
                logger.exception("the retraining check of %s failed; continuing", twin_id)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until nothing is waiting to be checked (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.05))
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.clear()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def _observes_discharge(twin: Twin, new_events: Sequence[Event]) -> bool:
    return any(
        e.kind == "observation" and e.twin == twin.id and e.variable == DISCHARGE_VARIABLE
        for e in new_events
    )


def _replace(decision: RetrainDecision, action: str, why: str) -> RetrainDecision:
    return RetrainDecision(
        decision.twin,
        action,
        f"{decision.message}; not submitted: {why}" if action != "failed" else why,
        decision.threshold_nse,
        decision.skill,
    )


def _age_seconds(job: Job) -> float:
    created = job.created if job.created.tzinfo else job.created.replace(tzinfo=UTC)
    return (utcnow() - created).total_seconds()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value
