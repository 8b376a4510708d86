"""pygeoapi's job manager over core's job store.

Jobs live in core's ``jobs`` table (SQLite or PostgreSQL), nowhere in this process:
any replica answers a job's status and result, and a restart loses nothing.

- ``Prefer: respond-async``: the request is validated and stored as a job by
  ``engine.submit`` before the 201 and its ``Location`` are sent; a ``twinmesh worker``
  process runs it (pygeoapi's own managers would run it in a thread of the server,
  ``pygeoapi/process/manager/base.py`` ``_execute_handler_async``).
- Otherwise the capability is computed in the request (``engine.run``) and no job is
  stored.
- ``GET /jobs/{id}/results`` reads the stored result: JSON and GeoJSON as stored; a
  coverage, stored by the worker as Zarr (a folder), is sent as netCDF, the media type
  the process description promises (the same bytes a synchronous request gets). The
  Zarr itself stays published in the twin's STAC results collection.
- ``DELETE /jobs/{id}`` dismisses: core cancels the job (a running one stops at its next
  progress report) and removes its row. Its stored result, if any, stays: it is
  immutable and published in the twin's STAC results collection.

Two of pygeoapi's API functions answer some requests with a 500 that is a client's
mistake or a normal state; :func:`execute_process` and :func:`get_job_result` wrap
them (the app routes to these instead of ``pygeoapi.api.processes``'s).
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import xarray as xr
from pygeoapi.api import API, SYSTEM_LOCALE, APIRequest
from pygeoapi.api import processes as ogc_processes
from pygeoapi.process.base import (
    JobNotFoundError,
    JobResultNotFoundError,
    UnknownProcessError,
)
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.util import (
    DATETIME_FORMAT,
    JobStatus,
    RequestedProcessExecutionMode,
    RequestedResponse,
    Subscriber,
)

from twinmesh.core import errors as core_errors_module
from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.engine import Engine
from twinmesh.core.errors import UnknownJob
from twinmesh.core.jobs import Job
from twinmesh.core.jobs import JobStatus as CoreJobStatus
from twinmesh.ogc.context import engine_for
from twinmesh.ogc.processes import (
    JSON_MEDIA_TYPE,
    CapabilityProcessor,
    bad_request,
    core_errors,
    output_formats,
    results_document,
)

__all__ = ["CoreJobManager", "OGC_STATUS", "job_document", "execute_process", "get_job_result"]

logger = logging.getLogger(__name__)

#: Core's job statuses as OGC API - Processes ``statusInfo`` statuses (the same words:
#: core follows OGC; the map makes the dependency explicit and checked).
OGC_STATUS: dict[CoreJobStatus, JobStatus] = {
    CoreJobStatus.ACCEPTED: JobStatus.accepted,
    CoreJobStatus.RUNNING: JobStatus.running,
    CoreJobStatus.SUCCESSFUL: JobStatus.successful,
    CoreJobStatus.FAILED: JobStatus.failed,
    CoreJobStatus.DISMISSED: JobStatus.dismissed,
}

#: The media type of a stored result as it is sent (Zarr → netCDF, JSON pre-encoded).
_SENT_AS = {
    "zarr": "application/x-netcdf",
    "netcdf": "application/x-netcdf",
    "geojson": "application/geo+json",
    "json": JSON_MEDIA_TYPE,
}


def _stamp(value: datetime | None) -> str | None:
    """pygeoapi's timestamp form (UTC, microseconds, ``Z``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(DATETIME_FORMAT)


def _media_type(capability: str) -> str:
    cap = CAPABILITIES.get(capability)
    return output_formats(cap)[0].media_type if cap is not None else "application/json"


def job_document(job: Job) -> dict[str, Any]:
    """A core job as the job dict pygeoapi's API functions read.

    ``started`` is the creation time until a worker starts the job, as in pygeoapi's
    own managers: pygeoapi sorts the job list by it and a ``None`` among strings would
    fail the sort (``pygeoapi/api/processes.py`` ``get_jobs``).
    """
    status = OGC_STATUS[job.status]
    return {
        "type": "process",
        "identifier": job.id,
        "process_id": job.capability,
        "status": status.value,
        "message": job.message or status.value,
        "progress": round(job.progress * 100),
        "parameters": {"twin": job.twin, **job.inputs},
        "created": _stamp(job.created),
        "started": _stamp(job.started or job.created),
        "finished": _stamp(job.finished),
        "updated": _stamp(job.updated),
        "mimetype": _media_type(job.capability),
        "location": None,
    }


class CoreJobManager(BaseManager):
    """pygeoapi's ``BaseManager`` over core's ``JobStore``.

    ``manager_def`` is what ``twinmesh.ogc.config`` generates (``name``,
    ``connection``, ``output_dir``, the settings) plus pygeoapi's ``processes``. The
    ``connection`` is informative: the database is the settings' (the same URL).
    """

    def __init__(self, manager_def: dict[str, Any]) -> None:
        super().__init__(manager_def)
        self.is_async = True
        #: Callbacks (``subscriber``) would need a delivery queue that outlives this
        #: process; a request asking for them is a 400, never silently ignored.
        self.supports_subscribing = False
        self._definition = manager_def

    @property
    def engine(self) -> Engine:
        return engine_for(self._definition)

    def get_processor(self, process_id: str) -> CapabilityProcessor:
        processor = super().get_processor(process_id)
        if not isinstance(processor, CapabilityProcessor):
            raise UnknownProcessError(f"process {process_id!r} is not a twinmesh capability")
        return processor

    # -- execution ---------------------------------------------------------------------
    def execute_process(
        self,
        process_id: str,
        data_dict: dict[str, Any],
        execution_mode: RequestedProcessExecutionMode | None = None,
        requested_outputs: dict[str, Any] | None = None,
        subscriber: Subscriber | None = None,
        requested_response: str | None = RequestedResponse.raw.value,
    ) -> tuple[str, str, Any, JobStatus, dict[str, str] | None]:
        """Submit (``respond-async``) or compute now; pygeoapi's base version stores a
        job of its own in ``add_job`` and runs it in a thread of this process."""
        processor = self.get_processor(process_id)
        if subscriber is not None:
            raise bad_request(
                "subscriber callbacks are not supported: poll the job's status at "
                "/jobs/{jobId} instead"
            )
        request = processor.parse(data_dict, requested_outputs, requested_response)
        if execution_mode == RequestedProcessExecutionMode.respond_async:
            default = output_formats(processor.capability)[0]
            if request.format != default:
                raise bad_request(
                    f"the result of an asynchronous {process_id} job is sent as "
                    f"{default.media_type}; ask for {request.format.media_type} "
                    "with a synchronous request"
                )
            job_id = processor.submit(request)
            if request.document:
                self._remember_document(request.twin, job_id)
            headers = {"Preference-Applied": RequestedProcessExecutionMode.respond_async.value}
            return job_id, "application/json", None, JobStatus.accepted, headers
        media_type, content = processor.run(request)
        applied = (
            {"Preference-Applied": RequestedProcessExecutionMode.wait.value}
            if execution_mode == RequestedProcessExecutionMode.wait
            else None
        )
        # No job was stored: the id is only what pygeoapi's API function needs.
        return str(uuid.uuid4()), media_type, content, JobStatus.successful, applied

    # The results form an asynchronous client asked for (``response``) is kept beside
    # the job's result folder in the store, so any replica serves it after a restart.
    _RESPONSE_FILE = "ogc-response"

    def _response_path(self, twin: str, job_id: str) -> str:
        return self.engine.store.result_path(twin, job_id, self._RESPONSE_FILE)

    def _remember_document(self, twin: str, job_id: str) -> None:
        path = self._response_path(twin, job_id)
        fs = self.engine.store.fs
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(b'{"response": "document"}')

    def wants_document(self, job: Job) -> bool:
        """Whether the job's client asked for a results document at execution."""
        return bool(self.engine.store.fs.exists(self._response_path(job.twin, job.id)))

    def add_job(self, job_metadata: dict[str, Any]) -> str:
        raise NotImplementedError("jobs are created by core (engine.submit), not by pygeoapi")

    def update_job(self, job_id: str, update_dict: dict[str, Any]) -> bool:
        raise NotImplementedError("jobs are updated by the twinmesh worker running them")

    # -- reading -------------------------------------------------------------------------
    def core_job(self, job_id: str) -> Job:
        """Core's job, or pygeoapi's JobNotFoundError (a 404)."""
        try:
            return self.engine.jobs.get(job_id)
        except UnknownJob as exc:
            raise JobNotFoundError(exc.message) from None

    def get_job(self, job_id: str) -> dict[str, Any]:
        return job_document(self.core_job(job_id))

    def get_jobs(
        self,
        status: JobStatus | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """A page of jobs, newest first, and how many there are in all."""
        jobs = self.engine.jobs
        wanted = CoreJobStatus(status.value) if status is not None else None
        with core_errors():
            page = jobs.list(status=wanted, limit=limit or 10, offset=offset or 0)
            counts = jobs.counts()
        matched = counts.get(wanted.value, 0) if wanted is not None else sum(counts.values())
        return {"jobs": [job_document(j) for j in page], "numberMatched": matched}

    def get_job_result(self, job_id: str) -> tuple[str, Any]:
        """The stored result's bytes and media type (a Zarr coverage as netCDF)."""
        job = self.core_job(job_id)
        if job.status is not CoreJobStatus.SUCCESSFUL or job.result is None:
            raise JobResultNotFoundError(f"job {job.id} is {job.status.value}")
        record = job.result
        fmt = str(record.get("format"))
        url = str(record.get("url"))
        store = self.engine.store
        try:
            if fmt == "zarr":
                content = _zarr_as_netcdf(url, store.storage_options)
            else:
                with store.fs.open(url, "rb") as fh:
                    content = fh.read()
        except (FileNotFoundError, KeyError, OSError) as exc:
            logger.error("job %s: its stored result %s cannot be read: %r", job.id, url, exc)
            raise JobResultNotFoundError(job.id) from None
        media = _SENT_AS.get(fmt, str(record.get("media_type")))
        if self.wants_document(job):
            return results_document(media, content)
        return media, content

    def delete_job(self, job_id: str) -> bool:
        """Dismiss: cancel the job and remove its row (the stored result stays, see the
        module docstring)."""
        try:
            self.engine.jobs.delete(job_id)
        except UnknownJob as exc:
            raise JobNotFoundError(exc.message) from None
        return True

    def __repr__(self) -> str:
        return f"<CoreJobManager> {self.engine.db}"


def _zarr_as_netcdf(url: str, storage_options: dict[str, Any]) -> bytes:
    with xr.open_zarr(url, consolidated=False, storage_options=storage_options or None) as ds:
        ds = ds.load()
    for var in ds.variables.values():
        var.encoding = {}
    buffer = io.BytesIO()
    ds.to_netcdf(buffer, engine="h5netcdf")
    return buffer.getvalue()


# -- where pygeoapi's API functions need help ---------------------------------------------
def execute_process(api: API, request: APIRequest, process_id: str) -> tuple[dict, int, Any]:
    """``POST /processes/{id}/execution``: pygeoapi's, with two fixes.

    - A body that is JSON but not an object (``[1]``, ``5``, ``"x"``), or a
      ``subscriber`` that is not an object, makes pygeoapi call ``.get`` / index on it:
      a 500 (``pygeoapi/api/processes.py`` ``execute_process``, ``data.get('inputs')``
      and ``subscriber_dict['successUri']``). Here it is a 400.
    - pygeoapi sends a ``Location`` to ``/jobs/{id}`` with every execution when the
      manager is asynchronous, also a synchronous 200 whose job does not exist (no job
      is stored for it). Here only a 201 carries it.
    """
    headers = request.get_response_headers(SYSTEM_LOCALE, **api.api_headers)
    if process_id in api.manager.processes and request.data:
        try:
            body = json.loads(request.data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            body = None  # pygeoapi answers non-JSON itself (400)
        problem = None
        if body is not None and not isinstance(body, dict):
            problem = (
                "the execute request is a JSON object with 'inputs' (and optionally "
                f"'outputs', 'response'), got {type(body).__name__}"
            )
        elif isinstance(body, dict) and "subscriber" in body:
            problem = (
                "subscriber callbacks are not supported: poll the job's status at "
                "/jobs/{jobId} instead"
            )
        if problem is not None:
            return api.get_exception(
                HTTPStatus.BAD_REQUEST, headers, request.format, "InvalidParameterValue", problem
            )
    out_headers, status, content = ogc_processes.execute_process(api, request, process_id)
    if status != HTTPStatus.CREATED:
        out_headers.pop("Location", None)
    return out_headers, status, content


def _error_status(code: str) -> int:
    """The HTTP status of a core error code (a failed job's), 500 for one core does not
    declare (``InternalError``, ``WorkerLost``)."""
    for name in core_errors_module.__all__:
        cls = getattr(core_errors_module, name)
        if getattr(cls, "code", None) == code:
            return int(cls.status)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)


def get_job_result(api: API, request: APIRequest, job_id: str) -> tuple[dict, int, Any]:
    """``GET /jobs/{id}/results``: pygeoapi's, except for two states.

    - A dismissed job: pygeoapi asks the manager for the result of any job that is not
      accepted, running or failed, and a missing result is a 500 there
      (``pygeoapi/api/processes.py`` ``get_job_result``). Here: 404, the job was
      dismissed.
    - A failed job: pygeoapi answers 400 "job failed" for every failure. Here: the
      job's own error (its code, message and the status core gives that code).
    """
    headers = request.get_response_headers(SYSTEM_LOCALE, **api.api_headers)
    manager = api.manager
    job = None
    if isinstance(manager, CoreJobManager):
        try:
            job = manager.core_job(job_id)
        except JobNotFoundError:
            job = None
    if job is not None and job.status is CoreJobStatus.DISMISSED:
        return api.get_exception(
            HTTPStatus.NOT_FOUND,
            headers,
            request.format,
            "NoSuchJob",
            f"job {job_id} was dismissed: it has no results",
        )
    if job is not None and job.status is CoreJobStatus.FAILED:
        error = job.error or {}
        code = str(error.get("code", "NoApplicableCode"))
        return api.get_exception(
            _error_status(code),
            headers,
            request.format,
            code,
            f"job {job_id} failed: {error.get('message', job.message or 'no reason given')}",
        )
    return ogc_processes.get_job_result(api, request, job_id)
