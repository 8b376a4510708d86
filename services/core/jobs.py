"""Jobs: capability requests that run later, in ``twinmesh worker`` processes.

A job is a row of the ``jobs`` table (SQLite or PostgreSQL), so any replica of any
service can answer its status and a restart loses nothing. Workers *claim* a job
with a lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the write lock of a
``BEGIN IMMEDIATE`` transaction), renew the lease while they work, and a job whose
worker died is claimed again by another worker once the lease has expired.

Every change of a job's state (submitted, claimed, a new progress report, finished,
dismissed, deleted) is also a ``job`` event in core's log, written in the same
transaction: subscribers (gRPC ``StreamState``) see jobs move without polling the table.

Statuses follow OGC API - Processes (accepted, running, successful, failed,
dismissed); :data:`OPENEO_STATUS` maps them onto openEO's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from twinmesh.core.db import Database, jobs, utcnow
from twinmesh.core.errors import InvalidParameter, JobNotFinished, UnknownJob
from twinmesh.core.events import append_events, job_event_row, wake_subscribers

__all__ = ["JobStatus", "OPENEO_STATUS", "Job", "JobStore", "Lease"]


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    DISMISSED = "dismissed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.DISMISSED)


#: openEO API 1.2 job statuses for ours (openEO's "created" = submitted, not started:
#: twinmesh queues a job the moment it is submitted).
OPENEO_STATUS: dict[JobStatus, str] = {
    JobStatus.ACCEPTED: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCESSFUL: "finished",
    JobStatus.FAILED: "error",
    JobStatus.DISMISSED: "canceled",
}


@dataclass(frozen=True)
class Job:
    """A job as stored: what was asked, by whom, and how far it got."""

    id: str
    twin: str
    capability: str
    inputs: dict[str, Any]
    owner: str | None
    status: JobStatus
    progress: float
    message: str | None
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    model_version: str | None
    worker: str | None
    lease_until: float | None
    attempts: int

    @property
    def openeo_status(self) -> str:
        return OPENEO_STATUS[self.status]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("created", "updated", "started", "finished"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        d["status"] = self.status.value
        return d


def _job(row: Any) -> Job:
    m = dict(row._mapping)
    m.pop("cancel_requested", None)
    m["status"] = JobStatus(m["status"])
    return Job(**m)


@dataclass(frozen=True)
class Lease:
    """What a worker's lease renewal found: keep going, or stop (cancelled, lost)."""

    held: bool
    cancelled: bool


class JobStore:
    """The job table and the operations on it; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- clients ---------------------------------------------------------------------------
    def submit(
        self, twin: str, capability: str, inputs: dict[str, Any], *, owner: str | None = None
    ) -> Job:
        """Queue validated inputs as a new job (status ``accepted``)."""
        now = utcnow()
        job_id = str(uuid.uuid4())
        with self.db.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    twin=twin,
                    capability=capability,
                    inputs=inputs,
                    owner=owner,
                    status=JobStatus.ACCEPTED.value,
                    progress=0.0,
                    created=now,
                    updated=now,
                    attempts=0,
                    cancel_requested=False,
                )
            )
            self._log(conn, [job_id])
        wake_subscribers(self.db)
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        try:
            uuid.UUID(str(job_id))
        except ValueError:
            raise UnknownJob(f"no job {job_id!r}: job ids are UUIDs") from None
        with self.db.read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == str(job_id))).first()
        if row is None:
            raise UnknownJob(f"no job {job_id!r}")
        return _job(row)

    def list(
        self,
        *,
        owner: str | None = None,
        twin: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Newest first."""
        if not 1 <= limit <= 10_000:
            raise InvalidParameter(f"limit must be between 1 and 10000, got {limit}")
        query = select(jobs).order_by(jobs.c.created.desc(), jobs.c.id).limit(limit).offset(offset)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if twin is not None:
            query = query.where(jobs.c.twin == twin)
        if status is not None:
            query = query.where(jobs.c.status == JobStatus(status).value)
        with self.db.read() as conn:
            return [_job(r) for r in conn.execute(query)]

    def cancel(self, job_id: str) -> Job:
        """Dismiss a job: a queued one never runs; a running one stops at its next
        progress report and its result is not kept. Finished jobs stay as they are."""
        job = self.get(job_id)
        if job.status.finished:
            return job
        with self.db.begin() as conn:
            conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job.id,
                    jobs.c.status.in_([JobStatus.ACCEPTED.value, JobStatus.RUNNING.value]),
                )
                .values(
                    status=JobStatus.DISMISSED.value,
                    cancel_requested=True,
                    message="dismissed by request",
                    updated=utcnow(),
                    finished=utcnow(),
                )
            )
            self._log(conn, [job.id])
        wake_subscribers(self.db)
        return self.get(job_id)

    def delete(self, job_id: str) -> Job:
        """Remove a job's row (after :meth:`cancel`); returns what it was. Its stored
        result is the caller's to remove (results are immutable while referenced)."""
        job = self.cancel(job_id)
        with self.db.begin() as conn:
            if conn.execute(delete(jobs).where(jobs.c.id == job.id)).rowcount:
                gone = {**job.to_dict(), "status": "deleted", "message": "deleted"}
                gone["updated"] = utcnow().isoformat()
                append_events(self.db, conn, [job_event_row(gone)])
        wake_subscribers(self.db)
        return job

    def result(self, job_id: str) -> dict[str, Any]:
        """Where a successful job's result is; JobNotFinished otherwise."""
        job = self.get(job_id)
        if job.status is not JobStatus.SUCCESSFUL or job.result is None:
            detail = f": {job.error['message']}" if job.error else ""
            raise JobNotFinished(f"job {job.id} is {job.status.value}, it has no result{detail}")
        return job.result

    # -- workers ---------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        lease_seconds: float,
        *,
        max_attempts: int = 3,
        job_id: str | None = None,
    ) -> Job | None:
        """Take the oldest queued job, or one whose lease expired, for ``worker``
        (only the job ``job_id`` when given: a client running its own job in place).

        A job whose lease expired ``max_attempts`` times (its workers died each time,
        e.g. killed for memory) is failed instead: handing it on would kill the next
        worker too."""
        now = time.time()
        claimable = or_(
            jobs.c.status == JobStatus.ACCEPTED.value,
            and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_until < now),
        )
        pick = (
            select(jobs.c.id, jobs.c.status, jobs.c.attempts)
            .where(claimable)
            .order_by(jobs.c.created, jobs.c.id)
            .limit(1)
        )
        if job_id is not None:
            pick = pick.where(jobs.c.id == job_id)
        if self.db.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        failed: list[str] = []
        claimed = None
        with self.db.begin() as conn:
            while True:
                row = conn.execute(pick).first()
                if row is None:
                    break
                job_id, status, attempts = row
                if status != JobStatus.RUNNING.value or attempts < max_attempts:
                    break
                stamp = utcnow()
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        status=JobStatus.FAILED.value,
                        message=f"its worker stopped answering {attempts} times",
                        error={
                            "code": "WorkerLost",
                            "message": f"the job's worker stopped answering {attempts} times "
                            "(killed, out of memory?); not retried again",
                        },
                        lease_until=None,
                        updated=stamp,
                        finished=stamp,
                    )
                )
                failed.append(job_id)
            if row is not None:
                stamp = utcnow()
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        status=JobStatus.RUNNING.value,
                        worker=worker,
                        lease_until=now + lease_seconds,
                        attempts=jobs.c.attempts + 1,
                        started=stamp,
                        updated=stamp,
                        message="running",
                    )
                )
                claimed = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            self._log(conn, failed, rows=[claimed] if claimed is not None else None)
        if failed or claimed is not None:
            wake_subscribers(self.db)
        return _job(claimed) if claimed is not None else None

    def renew(
        self,
        job_id: str,
        worker: str,
        lease_seconds: float,
        *,
        progress: float | None = None,
        message: str | None = None,
    ) -> Lease:
        """Extend ``worker``'s lease and record progress; say whether to go on."""
        values: dict[str, Any] = {"lease_until": time.time() + lease_seconds, "updated": utcnow()}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, float(progress)))
        if message is not None:
            values["message"] = message[:1000]
        changed = False
        with self.db.begin() as conn:
            before = conn.execute(
                select(jobs.c.progress, jobs.c.message).where(jobs.c.id == job_id)
            ).first()
            held = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.worker == worker,
                    jobs.c.status == JobStatus.RUNNING.value,
                )
                .values(**values)
            ).rowcount
            if held:
                # A heartbeat that reports nothing new is not an event.
                changed = before is not None and (
                    ("progress" in values and values["progress"] != before.progress)
                    or ("message" in values and values["message"] != before.message)
                )
                if changed:
                    self._log(conn, [job_id])
            else:
                status = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
        if changed:
            wake_subscribers(self.db)
        if held:
            return Lease(held=True, cancelled=False)
        return Lease(held=False, cancelled=status == JobStatus.DISMISSED.value)

    def _finish(self, job_id: str, worker: str, **values: Any) -> bool:
        stamp = utcnow()
        with self.db.begin() as conn:
            done = bool(
                conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.worker == worker,
                        jobs.c.status == JobStatus.RUNNING.value,
                    )
                    .values(updated=stamp, finished=stamp, lease_until=None, **values)
                ).rowcount
            )
            if done:
                self._log(conn, [job_id])
        if done:
            wake_subscribers(self.db)
        return done

    def complete(
        self, job_id: str, worker: str, result: dict[str, Any], *, model_version: str | None
    ) -> bool:
        """Mark the job successful with its result's location; False if the worker no
        longer holds it (cancelled, or taken over after its lease expired)."""
        return self._finish(
            job_id,
            worker,
            status=JobStatus.SUCCESSFUL.value,
            progress=1.0,
            message="successful",
            result=result,
            model_version=model_version,
        )

    def fail(self, job_id: str, worker: str, error: dict[str, Any]) -> bool:
        return self._finish(
            job_id,
            worker,
            status=JobStatus.FAILED.value,
            message=str(error.get("message", "failed"))[:1000],
            error=error,
        )

    def _log(self, conn: Any, job_ids: Sequence[str], rows: Sequence[Any] | None = None) -> None:
        """Append a ``job`` event for each job's state as it is now in ``conn``'s
        transaction (after every row change of that transaction: on PostgreSQL the
        event lock is taken last, so it never waits while holding it)."""
        found = list(rows or [])
        for job_id in job_ids:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is not None:
                found.append(row)
        append_events(self.db, conn, [job_event_row(_job(r).to_dict()) for r in found])

    def counts(self) -> dict[str, int]:
        """Jobs per status (for ``twinmesh jobs`` and health pages)."""
        from sqlalchemy import func

        with self.db.read() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
            return {str(s): int(n) for s, n in rows}
