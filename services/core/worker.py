"""``twinmesh worker``: claims jobs from the job store and runs them.

A worker holds a lease on its job and renews it from a heartbeat thread while the
job computes; when the lease cannot be renewed (the job was dismissed, or another
worker took it over after this one stalled) the job's next progress report raises
:class:`JobCancelled` and the work stops without writing a result.

A finished result is written once, immutable, to the datacube store under
``<twin>/results/<job id>/<attempt>/`` (Zarr for coverages, GeoJSON for features,
JSON for records), then handed to the ``publishers`` (the STAC results collection),
and only then is the job marked successful.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinmesh.core.engine import Engine
from twinmesh.core.errors import TwinmeshError
from twinmesh.core.jobs import Job
from twinmesh.core.results import Result

__all__ = ["Worker", "JobCancelled", "StoredResult", "Publisher", "write_result"]

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job's computation when it must stop (dismissed or lease lost)."""


@dataclass(frozen=True)
class StoredResult:
    """Where a job's result lives in the store and how to read it."""

    twin: str
    job_id: str
    url: str
    format: str
    media_type: str
    kind: str
    model_version: int | None
    forcing_mode: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: publish(engine, job, result, stored) -> extra fields for the job's result record
Publisher = Callable[[Engine, Job, Result, StoredResult], dict[str, Any]]


def write_result(engine: Engine, job: Job, result: Result) -> StoredResult:
    """Write ``result`` into the store once; a retried job writes a new attempt folder,
    so nothing a reader may hold is ever overwritten."""
    store = engine.store
    fmt = result.format()
    folder = store.result_path(job.twin, job.id, f"attempt-{job.attempts}-{secrets.token_hex(3)}")
    target = f"{folder}/result{fmt.suffix}"
    if fmt.directory:
        store.write_zarr_at(target, result.cf_dataset())
    else:
        store.fs.makedirs(folder, exist_ok=True)
        with store.fs.open(target, "wb") as fh:
            fh.write(result.encode(fmt.name).content)
    return StoredResult(
        twin=job.twin,
        job_id=job.id,
        url=store.url_of(target),
        format=fmt.name,
        media_type=fmt.media_type,
        kind=result.kind.value,
        model_version=result.model_version,
        forcing_mode=result.forcing_mode,
    )


class Worker:
    """Runs jobs until stopped; several workers (processes, machines) may share a store."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker_id: str | None = None,
        publishers: list[Publisher] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_progress = on_progress
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.publishers = list(publishers or [])
        self.lease_seconds = engine.settings.jobs.lease_seconds
        self.poll_seconds = engine.settings.jobs.poll_seconds

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        logger.info("worker %s polling %s", self.worker_id, self.engine.db)
        while not stop.is_set():
            if not self.run_once():
                stop.wait(self.poll_seconds)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        job = self.engine.jobs.claim(
            self.worker_id,
            self.lease_seconds,
            max_attempts=self.engine.settings.jobs.max_attempts,
        )
        if job is None:
            return False
        self._run(job)
        return True

    def run_job(self, job_id: str) -> bool:
        """Claim and run the job ``job_id`` here (a client running its own job in place);
        False when it is not claimable (another worker has it, or it is finished)."""
        job = self.engine.jobs.claim(
            self.worker_id,
            self.lease_seconds,
            max_attempts=self.engine.settings.jobs.max_attempts,
            job_id=job_id,
        )
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        jobs = self.engine.jobs
        logger.info("job %s: %s on %s (attempt %d)", job.id, job.capability, job.twin, job.attempts)
        stop = threading.Event()
        lost = threading.Event()
        state: dict[str, Any] = {"progress": 0.0, "message": "running"}

        def heartbeat() -> None:
            while not stop.wait(self.lease_seconds / 3):
                lease = jobs.renew(
                    job.id,
                    self.worker_id,
                    self.lease_seconds,
                    progress=state["progress"],
                    message=state["message"],
                )
                if not lease.held:
                    lost.set()
                    return

        def progress(fraction: float, message: str) -> None:
            if lost.is_set():
                raise JobCancelled(job.id)
            state["progress"], state["message"] = fraction, message
            if self.on_progress is not None:
                self.on_progress(fraction, message)

        beat = threading.Thread(target=heartbeat, name=f"lease-{job.id[:8]}", daemon=True)
        beat.start()
        try:
            result = self.engine.run(
                job.twin, job.capability, job.inputs, progress=progress, job_id=job.id
            )
            progress(1.0, "writing the result")
            stored = write_result(self.engine, job, result)
            record = stored.to_dict()
            for publish in self.publishers:
                record.update(publish(self.engine, job, result, stored))
            model = str(result.model_version) if result.model_version is not None else None
            if not jobs.complete(job.id, self.worker_id, record, model_version=model):
                logger.warning("job %s: finished, but no longer ours; result dropped", job.id)
        except JobCancelled:
            logger.info("job %s: stopped (dismissed or taken over)", job.id)
        except TwinmeshError as exc:
            jobs.fail(job.id, self.worker_id, {"code": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - a job's failure must not end the worker
            ref = secrets.token_hex(4)
            logger.error("job %s failed (ref %s):\n%s", job.id, ref, traceback.format_exc())
            jobs.fail(
                job.id,
                self.worker_id,
                {
                    "code": "InternalError",
                    "message": f"internal error (ref {ref}): {type(exc).__name__}",
                },
            )
        finally:
            stop.set()
            beat.join(timeout=5)
