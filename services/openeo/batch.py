"""openEO batch jobs over core's jobs.

An openEO job is created before it is started, which core's jobs (queued the moment
they are submitted) have no state for: its document (title, process graph, owner, and
once started the core job running it) is a small JSON file in the datacube store,
``openeo/jobs/<id>.json``, written atomically; any replica reads it, a restart loses
nothing. Starting it submits a core job of the kind :data:`OPENEO_GRAPH` (registered
under the ``twinmesh.job_kinds`` entry point), which ``twinmesh worker`` runs like any
capability: the result is written once to the store as Zarr and published as a STAC
item in the twin's results collection. Beside the Zarr, the worker writes the result in
the format ``save_result`` asked for (:func:`write_requested_format`), a second asset of
that item and the file ``/jobs/{id}/results`` serves (:func:`stored_asset`); only jobs
finished before the worker wrote it have theirs encoded on first request.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xarray as xr
from pydantic import Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Coverage
from twinmesh.core.engine import Engine, Progress
from twinmesh.core.errors import TwinmeshError, UnknownJob
from twinmesh.core.jobs import Job
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.twin import Twin
from twinmesh.core.worker import StoredResult
from twinmesh.openeo.errors import OpenEOError

__all__ = [
    "OPENEO_GRAPH",
    "JOB_KIND",
    "JobDocuments",
    "graph_twin",
    "job_status",
    "asset_name",
    "write_requested_format",
    "stored_asset",
]

JOB_KIND = "openeo_graph"


class GraphInputs(CapabilityInputs):
    process: dict[str, Any] = Field(description="The openEO process (its process_graph).")
    format: str | None = Field(default=None, description="The save_result format asked for.")
    openeo_job: str | None = Field(default=None, description="The openEO job id.")
    max_load_bytes: int = Field(default=4 * 1024**3, gt=0)
    base_url: str = Field(default="", description="The service's URL (load_stac of results).")
    dask_scheduler: str | None = None


class GraphFailed(TwinmeshError):
    """A graph's openEO error inside a worker: the job's error keeps the openEO code."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _compute(engine: Engine, twin: Twin, inputs: GraphInputs, progress: Progress) -> Result:
    from twinmesh.openeo.encode import as_dataset
    from twinmesh.openeo.graphs import GraphContext, run_graph

    progress(0.0, "running the process graph")
    ctx = GraphContext(
        engine,
        inputs.max_load_bytes,
        resolve_result=lambda url: resolve_result_url(engine, url, inputs.base_url),
    )
    try:
        saved = run_graph(inputs.process, ctx, scheduler_address=inputs.dask_scheduler)
    except Exception as exc:
        from twinmesh.openeo.errors import from_exception

        known = from_exception(exc)
        if known is None:
            raise
        raise GraphFailed(known.code, known.message) from None
    data = saved.data
    if isinstance(data, xr.DataArray | xr.Dataset):
        return Result(OutputKind.COVERAGE, JOB_KIND, twin.id, as_dataset(data), inputs={})
    from twinmesh.core.results import jsonable

    return Result(OutputKind.RECORD, JOB_KIND, twin.id, {"result": jsonable(data)}, inputs={})


def asset_name(fmt: str) -> str:
    """The file name of a result in an openEO format (``result.nc``, ``result.tif``, …)."""
    from twinmesh.openeo.graphs import OUTPUT_FORMATS

    return f"result{OUTPUT_FORMATS[fmt][1]}"


def write_requested_format(
    engine: Engine, job: Job, result: Result, stored: StoredResult
) -> dict[str, dict[str, Any]]:
    """Write a graph's result in the format its ``save_result`` asked for beside the
    stored Zarr (the result is in memory: run_graph computed it); returns it as a STAC
    asset. A record (stored as JSON, its only format) gets nothing more. A format that
    cannot hold the result (GTiff of a cube with time steps) fails the job."""
    from twinmesh.openeo.encode import encode_to_file, media_type
    from twinmesh.openeo.graphs import Saved, canonical_format

    if result.kind is not OutputKind.COVERAGE:
        return {}
    fmt = canonical_format(str(job.inputs.get("format") or "netCDF"))
    try:
        path = encode_to_file(Saved(result.cf_dataset(), fmt))
    except OpenEOError as exc:
        raise GraphFailed(exc.code, exc.message) from None
    name = asset_name(fmt)
    target = f"{stored.url.rsplit('/', 1)[0]}/{name}"
    fs = engine.store.fs
    tmp = f"{target}.tmp-{secrets.token_hex(4)}"
    try:
        fs.put_file(path, tmp)
        fs.mv(tmp, target)
    finally:
        os.unlink(path)
    return {
        name: {
            "href": target,
            "type": media_type(fmt),
            "title": f"openEO result ({fmt})",
            "roles": ["data"],
        }
    }


def stored_asset(engine: Engine, stored_url: str, name: str, cache: Path) -> Path | None:
    """The file ``name`` the worker wrote beside a job's stored result (its
    ``stored_url``) as a local file: in place on a local store, else copied once into
    ``cache``. None when the worker wrote none (a job finished before it did)."""
    target = f"{stored_url.rsplit('/', 1)[0]}/{name}"
    if "://" not in target:  # the store is on this file system
        path = Path(target)
        return path if path.is_file() else None
    local = cache / name
    if local.is_file():
        return local
    fs = engine.store.fs
    if not fs.exists(target):
        return None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{name}.tmp-{secrets.token_hex(4)}"
    fs.get_file(target, str(tmp))
    os.replace(tmp, local)
    return local


def _estimate(_engine: Engine, _twin: Twin, _inputs: GraphInputs) -> int:
    # The graph's loads are checked against openeo.max_load_bytes from metadata before
    # any read when it runs (load_collection / load_stac); nothing to read here.
    return 0


OPENEO_GRAPH = Capability(
    name=JOB_KIND,
    title="openEO process graph",
    description="An openEO batch job: a process graph over the twins' datacubes.",
    inputs=GraphInputs,
    output=Coverage({}, ("t", "y", "x")),
    compute=_compute,  # type: ignore[arg-type]
    estimate_bytes=_estimate,  # type: ignore[arg-type]
    keywords=("openEO",),
    result_assets=write_requested_format,
)


def graph_twin(process: dict[str, Any], engine: Engine, base_url: str) -> str:
    """The twin a graph works on: the first collection it loads (or result it reads)."""
    from twinmesh.openeo.collections import cube_ref

    def walk(graph: dict[str, Any]) -> str | None:
        for node in graph.values():
            if not isinstance(node, dict):
                continue
            args = node.get("arguments") or {}
            if node.get("process_id") == "load_collection" and isinstance(args.get("id"), str):
                return cube_ref(engine, args["id"]).twin.id
            if node.get("process_id") == "load_stac" and isinstance(args.get("url"), str):
                found = resolve_result_url(engine, args["url"], base_url)
                if found:
                    return found[0]
            for arg in args.values():
                if (
                    isinstance(arg, dict)
                    and isinstance(arg.get("process_graph"), dict)
                    and (twin := walk(arg["process_graph"])) is not None
                ):
                    return twin
        return None

    twin = walk(process.get("process_graph") or {})
    if twin is None:
        raise OpenEOError(
            400,
            "ProcessGraphInvalid",
            "a batch job's graph loads a collection (load_collection) or a result of this "
            "service (load_stac)",
        )
    return twin


def resolve_result_url(engine: Engine, url: str, base_url: str) -> tuple[str, str] | None:
    """(twin, core job id) of a result URL: ``<base>/jobs/<id>/results`` of this service,
    or a STAC item ``…/collections/<twin>-results/items/<core job id>``."""
    text = url.rstrip("/")
    docs = JobDocuments(engine)
    if base_url and text.startswith(f"{base_url}/jobs/") and text.endswith("/results"):
        job_id = text[len(f"{base_url}/jobs/") : -len("/results")]
        doc = docs.find(job_id)
        if doc and doc.get("core_job"):
            return str(doc["twin"]), str(doc["core_job"])
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "items" and parts[-3].endswith("-results"):
        try:
            job = engine.jobs.get(parts[-1])
        except UnknownJob:
            return None
        return job.twin, job.id
    return None


def job_status(doc: dict[str, Any], core: Job | None) -> str:
    """openEO's status of a job: ``created`` until started, then core's job's."""
    if core is None:
        return "created"
    return core.openeo_status


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobDocuments:
    """The openEO job documents in the store (``openeo/jobs/<id>.json``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fs = engine.store.fs
        self.folder = f"{engine.store.root}/openeo/jobs"

    def _path(self, job_id: str) -> str:
        return f"{self.folder}/{job_id}.json"

    def find(self, job_id: str) -> dict[str, Any] | None:
        try:
            uuid.UUID(job_id)
        except ValueError:
            return None
        try:
            with self.fs.open(self._path(job_id), "rb") as fh:
                return dict(json.loads(fh.read()))
        except FileNotFoundError:
            return None

    def get(self, job_id: str, owner: str) -> dict[str, Any]:
        doc = self.find(job_id)
        if doc is None or doc.get("owner") != owner:
            raise OpenEOError(404, "JobNotFound", f"no batch job {job_id!r}")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        doc["updated"] = _now()
        self.fs.makedirs(self.folder, exist_ok=True)
        tmp = f"{self._path(doc['id'])}.tmp-{secrets.token_hex(4)}"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(json.dumps(doc, indent=1).encode())
        self.fs.mv(tmp, self._path(doc["id"]))

    def create(self, owner: str, body: dict[str, Any], twin: str) -> dict[str, Any]:
        now = _now()
        doc = {
            "id": str(uuid.uuid4()),
            "owner": owner,
            "twin": twin,
            "title": body.get("title"),
            "description": body.get("description"),
            "process": body["process"],
            "plan": body.get("plan"),
            "budget": body.get("budget"),
            "created": now,
            "updated": now,
            "core_job": None,
        }
        self.save(doc)
        return doc

    def delete(self, job_id: str) -> None:
        self.fs.rm(self._path(job_id))

    def list(self, owner: str) -> list[dict[str, Any]]:
        try:
            names = self.fs.ls(self.folder, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        docs = []
        for name in names:
            base = str(name).rstrip("/").rsplit("/", 1)[-1]
            if not base.endswith(".json"):
                continue
            doc = self.find(base[: -len(".json")])
            if doc is not None and doc.get("owner") == owner:
                docs.append(doc)
        return sorted(docs, key=lambda d: d["created"], reverse=True)
