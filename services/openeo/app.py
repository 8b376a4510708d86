"""The openEO API 1.2 service (FastAPI), one per ``create_app(settings)``.

Collections are core's t/y/x datacubes; process graphs run on openeo-pg-parser-networkx
and openeo-processes-dask (``twinmesh.openeo.graphs``) in a worker thread, on dask
threads or a dask.distributed scheduler (``openeo.dask_scheduler``); batch jobs are
core's jobs run by ``twinmesh worker`` (``twinmesh.openeo.batch``). Errors are openEO
error objects; the HTTP rules every service keeps come from ``twinmesh.gateways.http``.

Authentication: the identity gateway does not exist yet. ``/credentials/basic`` issues
a token for the development user of the settings (``openeo.dev_user``), sent back as
``Authorization: Bearer basic//<token>``; ``/credentials/oidc`` lists the providers of
the settings (none by default). Without a development user every request is anonymous.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp

from twinmesh.core.engine import Engine
from twinmesh.core.errors import TwinmeshError, UnknownJob
from twinmesh.core.jobs import JobStatus
from twinmesh.core.settings import Settings
from twinmesh.gateways.http import (
    ClientError,
    HttpRules,
    document_statuses,
    guard,
    limit_malloc_arenas,
    read_json,
    undeclared_query_parameters,
    uvicorn_options,
)
from twinmesh.openeo import batch
from twinmesh.openeo.collections import collection_document, cube_ref, cube_refs
from twinmesh.openeo.errors import OpenEOError, error_response, from_exception

__all__ = ["create_app", "serve_openeo", "API_VERSION"]

logger = logging.getLogger("twinmesh.openeo")

API_VERSION = "1.2.0"
_ANONYMOUS = "anonymous"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class _Auth:
    """Tokens of the development user: ``<user>.<hmac>``, stateless, so they survive a
    restart and work on any replica with the same settings."""

    def __init__(self, settings: Settings) -> None:
        self.user = settings.openeo.dev_user
        self.password = settings.openeo.dev_password or ""

    @property
    def enabled(self) -> bool:
        return bool(self.user)

    def _sign(self, user: str) -> str:
        key = hashlib.sha256(f"twinmesh-openeo:{self.password}".encode()).digest()
        return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()

    def token_for_basic(self, header: str | None) -> str:
        if not self.enabled:
            raise OpenEOError(
                400,
                "CredentialsInvalid" if header else "AuthenticationRequired",
                "basic authentication is off: no development user is configured "
                "(openeo.dev_user); requests need no token",
            )
        if not header or not header.lower().startswith("basic "):
            raise OpenEOError(401, "AuthenticationRequired", "send HTTP Basic credentials")
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OpenEOError(403, "CredentialsInvalid", "malformed Basic credentials") from None
        if not (
            hmac.compare_digest(user, self.user or "")
            and hmac.compare_digest(password, self.password)
        ):
            raise OpenEOError(403, "CredentialsInvalid", "wrong user name or password")
        return f"{user}.{self._sign(user)}"

    def user_of(self, request: Request) -> str:
        """The request's user (``anonymous`` when authentication is off)."""
        if not self.enabled:
            return _ANONYMOUS
        header = request.headers.get("authorization", "")
        if not header:
            raise OpenEOError(401, "AuthenticationRequired", "this endpoint needs a token")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.startswith("basic//"):
            raise OpenEOError(
                403,
                "TokenInvalid",
                "expected 'Authorization: Bearer basic//<token>' (GET /credentials/basic)",
            )
        user, _, signature = value[len("basic//") :].rpartition(".")
        if not user or not hmac.compare_digest(signature, self._sign(user)):
            raise OpenEOError(403, "TokenInvalid", "the token is invalid")
        return user


def _endpoints() -> list[dict[str, Any]]:
    table = [
        ("/", ["GET"]),
        ("/conformance", ["GET"]),
        ("/file_formats", ["GET"]),
        ("/credentials/basic", ["GET"]),
        ("/credentials/oidc", ["GET"]),
        ("/me", ["GET"]),
        ("/collections", ["GET"]),
        ("/collections/{collection_id}", ["GET"]),
        ("/processes", ["GET"]),
        ("/result", ["POST"]),
        ("/validation", ["POST"]),
        ("/jobs", ["GET", "POST"]),
        ("/jobs/{job_id}", ["GET", "PATCH", "DELETE"]),
        ("/jobs/{job_id}/results", ["GET", "POST", "DELETE"]),
        ("/jobs/{job_id}/logs", ["GET"]),
        ("/process_graphs", ["GET"]),
        ("/process_graphs/{process_graph_id}", ["GET", "PUT", "DELETE"]),
        ("/service_types", ["GET"]),
        ("/udf_runtimes", ["GET"]),
    ]
    return [{"path": p, "methods": m} for p, m in table]


#: The openEO error object, as the OpenAPI document names it.
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "links": {"type": "array", "items": {"type": "object"}},
    },
}


#: The paging parameters of the listing routes (openEO's ``limit``; ``offset`` is what
#: this service's ``next`` links carry).
_LIMIT = Query(None, ge=1, le=10_000, description="At most this many entries per page.")
_OFFSET = Query(None, ge=0, description="Skip this many entries (the `next` link sets it).")
_LOG_LEVELS = ("error", "warning", "info", "debug")


async def _known_query_parameters(request: Request) -> None:
    """Every route: a query parameter the route does not declare is a 400 naming it
    (the declared ones are in the OpenAPI document), never silently ignored."""
    unknown = undeclared_query_parameters(request)
    if unknown:
        route = request.scope.get("route")
        takes = sorted(
            p.alias for p in getattr(getattr(route, "dependant", None), "query_params", [])
        )
        raise OpenEOError(
            400,
            "ParameterUnsupported",
            f"query parameter {', '.join(repr(u) for u in unknown)} is not supported on "
            f"{request.method} {getattr(route, 'path', request.url.path)}; it takes "
            f"{', '.join(takes) if takes else 'no query parameters'}",
        )


def _page(
    items: list[Any], limit: int | None, offset: int | None, href: str
) -> tuple[list[Any], list[dict[str, Any]]]:
    """One page of ``items`` and its links (a ``next`` link when more follow)."""
    start = offset or 0
    end = len(items) if limit is None else start + limit
    links: list[dict[str, Any]] = []
    if end < len(items):
        next_href = f"{href}?limit={limit}&offset={end}"
        links.append({"rel": "next", "href": next_href, "type": "application/json"})
    return items[start:end], links


class _LargeFileResponse(FileResponse):
    """A result file sent in 1 MiB pieces (Starlette's default is 64 KiB)."""

    chunk_size = 1024 * 1024


def _openeo_statuses(path: str, method: str) -> list[str]:
    """What any openEO operation here can answer besides its success."""
    statuses = ["400", "401", "403", "404", "500"]
    if method in ("post", "put", "patch"):
        statuses += ["413", "415"]
    return statuses


def create_app(settings: Settings, engine: Engine | None = None) -> ASGIApp:
    """The openEO API over ``settings``' store and job database."""
    from twinmesh.openeo.graphs import OUTPUT_FORMATS, GraphContext, process_specs

    engine = engine or Engine(settings)
    base = settings.openeo.base_url()
    auth = _Auth(settings)
    docs = batch.JobDocuments(engine)
    assets_dir = settings.data_dir / "openeo-assets"
    app = FastAPI(
        title="twinmesh openEO API",
        version=API_VERSION,
        description="openEO API 1.2 over the digital twins' datacubes.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(_known_query_parameters)],
    )

    async def off_loop(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def context() -> GraphContext:
        return GraphContext(
            engine,
            settings.openeo.max_load_bytes,
            resolve_result=lambda url: batch.resolve_result_url(engine, url, base),
        )

    @app.exception_handler(OpenEOError)
    async def _openeo_error(request: Request, exc: OpenEOError) -> Response:
        from twinmesh.gateways.http import request_id

        return error_response(exc.status, exc.code, exc.message, request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
        from twinmesh.gateways.http import request_id

        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ())[1:]) or 'request'}: "
            f"{e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return error_response(
            400, "ParameterInvalid", f"invalid parameter: {problems}", request_id(request)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        from twinmesh.gateways.http import request_id

        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        message = (
            f"no such endpoint: {request.url.path}"
            if exc.status_code == 404
            else f"{request.method} is not allowed on {request.url.path}"
            if exc.status_code == 405
            else str(exc.detail)
        )
        return error_response(exc.status_code, code, message, request_id(request))

    # -- discovery -----------------------------------------------------------------------
    @app.get("/.well-known/openeo")
    async def well_known() -> Response:
        return _json(
            {"versions": [{"url": f"{base}/", "api_version": API_VERSION, "production": False}]}
        )

    @app.get("/")
    async def capabilities() -> Response:
        return _json(
            {
                "api_version": API_VERSION,
                "backend_version": "0.1.0",
                "stac_version": "1.0.0",
                "type": "Catalog",
                "id": "twinmesh",
                "title": "twinmesh openEO API",
                "description": "openEO over the datacubes of twinmesh's digital twins.",
                "production": False,
                "endpoints": _endpoints(),
                "billing": None,
                "links": [
                    {"rel": "self", "href": f"{base}/", "type": "application/json"},
                    {"rel": "conformance", "href": f"{base}/conformance"},
                    {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                    {"rel": "version-history", "href": f"{base}/.well-known/openeo"},
                ],
            }
        )

    @app.get("/conformance")
    async def conformance() -> Response:
        return _json(
            {
                "conformsTo": [
                    "https://api.openeo.org/1.2.0",
                    "https://api.stacspec.org/v1.0.0/collections",
                    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
                ]
            }
        )

    @app.get("/file_formats")
    async def file_formats() -> Response:
        output = {
            name: {"title": name, "gis_data_types": [gis], "parameters": {}}
            for name, (_media, _suffix, gis) in OUTPUT_FORMATS.items()
        }
        return _json({"input": {}, "output": output})

    @app.get("/credentials/basic")
    async def credentials_basic(request: Request) -> Response:
        token = auth.token_for_basic(request.headers.get("authorization"))
        return _json({"access_token": token})

    @app.get("/credentials/oidc")
    async def credentials_oidc() -> Response:
        return _json({"providers": list(settings.openeo.oidc_providers)})

    @app.get("/me")
    async def me(request: Request) -> Response:
        user = auth.user_of(request)
        return _json({"user_id": user, "name": user, "links": []})

    @app.get("/service_types")
    async def service_types() -> Response:
        return _json({})

    @app.get("/udf_runtimes")
    async def udf_runtimes() -> Response:
        return _json({})

    # -- data and processes ---------------------------------------------------------------
    @app.get("/collections")
    async def collections(limit: int | None = _LIMIT, offset: int | None = _OFFSET) -> Response:
        def build() -> dict[str, Any]:
            refs, links = _page(cube_refs(engine), limit, offset, f"{base}/collections")
            return {
                "collections": [collection_document(engine, r, base, full=False) for r in refs],
                "links": [{"rel": "self", "href": f"{base}/collections"}, *links],
            }

        return _json(await off_loop(build))

    @app.get("/collections/{collection_id}")
    async def collection(collection_id: str) -> Response:
        def build() -> dict[str, Any]:
            return collection_document(engine, cube_ref(engine, collection_id), base, full=True)

        return _json(await off_loop(build))

    @app.get("/processes")
    async def processes(limit: int | None = _LIMIT, offset: int | None = _OFFSET) -> Response:
        specs = await off_loop(process_specs)
        page, links = _page(list(specs.values()), limit, offset, f"{base}/processes")
        return _json({"processes": page, "links": links})

    def _process_of(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise OpenEOError(
                400,
                "BadRequest",
                f"the body is a JSON object with 'process', got {type(body).__name__}",
            )
        process = body.get("process")
        if not isinstance(process, dict):
            raise OpenEOError(
                400, "ProcessGraphMissing", "the body needs 'process' with a 'process_graph'"
            )
        return process

    def _unsupported(body: dict[str, Any], allowed: set[str]) -> None:
        extra = sorted(k for k in body if k not in allowed and body[k] is not None)
        if extra:
            raise OpenEOError(
                400,
                "ParameterUnsupported",
                f"not supported here: {', '.join(extra)}; this endpoint takes "
                f"{', '.join(sorted(allowed))}",
            )

    @app.post("/result")
    async def result(request: Request) -> Response:
        auth.user_of(request)
        body = await read_json(request)
        process = _process_of(body)
        _unsupported(body, {"process", "budget", "plan", "log_level", "title", "description"})

        def compute() -> tuple[Any, str]:
            from twinmesh.openeo.encode import encode_result, media_type
            from twinmesh.openeo.graphs import Saved, run_graph

            def finish(saved: Saved) -> tuple[Any, str]:
                encoded = encode_result(
                    saved, in_memory_bytes=settings.openeo.result_in_memory_bytes
                )
                return encoded, media_type(saved.format)

            return run_graph(  # type: ignore[no-any-return]
                process,
                context(),
                scheduler_address=settings.openeo.dask_scheduler,
                finish=finish,
            )

        encoded, media = await off_loop(compute)
        if encoded.body is not None:
            return Response(encoded.body, media_type=media)
        return _LargeFileResponse(
            encoded.path, media_type=media, background=BackgroundTask(os.unlink, encoded.path)
        )

    @app.post("/validation")
    async def validation(request: Request) -> Response:
        body = await read_json(request)
        from twinmesh.openeo.graphs import check_graph

        errors = []
        try:
            process = body.get("process_graph") if isinstance(body, dict) else None
            await off_loop(check_graph, {"process_graph": process})
        except OpenEOError as exc:
            errors.append({"code": exc.code, "message": exc.message})
        return _json({"errors": errors})

    # -- batch jobs ------------------------------------------------------------------------
    def _core(doc: dict[str, Any]) -> Any:
        if not doc.get("core_job"):
            return None
        try:
            return engine.jobs.get(doc["core_job"])
        except UnknownJob:
            return None

    def _job_json(doc: dict[str, Any], *, full: bool) -> dict[str, Any]:
        core = _core(doc)
        out: dict[str, Any] = {
            "id": doc["id"],
            "title": doc.get("title"),
            "description": doc.get("description"),
            "status": batch.job_status(doc, core),
            "created": doc["created"],
            "updated": doc["updated"],
        }
        if core is not None:
            out["progress"] = round(core.progress * 100, 1)
        if full:
            out["process"] = doc["process"]
            out["plan"] = doc.get("plan")
            out["budget"] = doc.get("budget")
        return out

    @app.get("/jobs")
    async def list_jobs(
        request: Request, limit: int | None = _LIMIT, offset: int | None = _OFFSET
    ) -> Response:
        user = auth.user_of(request)

        def build() -> dict[str, Any]:
            page, links = _page(docs.list(user), limit, offset, f"{base}/jobs")
            return {"jobs": [_job_json(d, full=False) for d in page], "links": links}

        return _json(await off_loop(build))

    @app.post("/jobs")
    async def create_job(request: Request) -> Response:
        user = auth.user_of(request)
        body = await read_json(request)
        process = _process_of(body)
        _unsupported(body, {"process", "title", "description", "plan", "budget", "log_level"})

        def create() -> dict[str, Any]:
            from twinmesh.openeo.graphs import check_load_sizes

            check_load_sizes(process, context())
            twin = batch.graph_twin(process, engine, base)
            return docs.create(user, body, twin)

        doc = await off_loop(create)
        return Response(
            status_code=201,
            headers={"Location": f"{base}/jobs/{doc['id']}", "OpenEO-Identifier": doc["id"]},
        )

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> Response:
        user = auth.user_of(request)
        return _json(await off_loop(lambda: _job_json(docs.get(job_id, user), full=True)))

    @app.patch("/jobs/{job_id}")
    async def update_job(job_id: str, request: Request) -> Response:
        user = auth.user_of(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise OpenEOError(400, "BadRequest", "the body is a JSON object")
        _unsupported(body, {"process", "title", "description", "plan", "budget", "log_level"})

        def update() -> None:
            doc = docs.get(job_id, user)
            if _core(doc) is not None and batch.job_status(doc, _core(doc)) in (
                "queued",
                "running",
            ):
                raise OpenEOError(400, "JobLocked", f"job {job_id} is queued or running")
            if "process" in body:
                from twinmesh.openeo.graphs import check_load_sizes

                check_load_sizes(_process_of(body), context())
                doc["twin"] = batch.graph_twin(body["process"], engine, base)
            for key in ("process", "title", "description", "plan", "budget"):
                if key in body:
                    doc[key] = body[key]
            docs.save(doc)

        await off_loop(update)
        return Response(status_code=204)

    @app.delete("/jobs/{job_id}")
    async def delete_job(job_id: str, request: Request) -> Response:
        user = auth.user_of(request)

        def delete() -> None:
            doc = docs.get(job_id, user)
            core = _core(doc)
            if core is not None and not core.status.finished:
                engine.jobs.cancel(core.id)
            docs.delete(job_id)

        await off_loop(delete)
        return Response(status_code=204)

    @app.post("/jobs/{job_id}/results")
    async def start_job(job_id: str, request: Request) -> Response:
        user = auth.user_of(request)

        def start() -> None:
            doc = docs.get(job_id, user)
            core = _core(doc)
            if core is not None and core.status in (JobStatus.ACCEPTED, JobStatus.RUNNING):
                return  # already queued or running: nothing to do (openEO: 202)
            from twinmesh.openeo.graphs import check_load_sizes

            # The limit may have changed since the job was created.
            check_load_sizes(doc["process"], context())
            fmt = _save_format(doc["process"])
            job = engine.submit(
                doc["twin"],
                batch.JOB_KIND,
                {
                    "process": doc["process"],
                    "format": fmt,
                    "openeo_job": doc["id"],
                    "max_load_bytes": settings.openeo.max_load_bytes,
                    "base_url": base,
                    "dask_scheduler": settings.openeo.dask_scheduler,
                },
                owner=user,
            )
            doc["core_job"] = job.id
            doc["format"] = fmt
            docs.save(doc)

        await off_loop(start)
        return Response(status_code=202)

    @app.delete("/jobs/{job_id}/results")
    async def cancel_job(job_id: str, request: Request) -> Response:
        user = auth.user_of(request)

        def cancel() -> None:
            doc = docs.get(job_id, user)
            core = _core(doc)
            if core is not None and not core.status.finished:
                engine.jobs.cancel(core.id)

        await off_loop(cancel)
        return Response(status_code=204)

    @app.get("/jobs/{job_id}/logs")
    async def job_logs(
        job_id: str,
        request: Request,
        offset: str | None = Query(
            None, description="The id of the last log entry received: only later ones."
        ),
        level: Literal["error", "warning", "info", "debug"] | None = Query(
            None, description="The lowest level of the entries returned (default: all)."
        ),
        limit: int | None = _LIMIT,
    ) -> Response:
        user = auth.user_of(request)

        def build() -> dict[str, Any]:
            doc = docs.get(job_id, user)
            core = _core(doc)
            logs = []
            if core is not None and core.error:
                logs.append(
                    {
                        "id": "error",
                        "level": "error",
                        "code": core.error.get("code"),
                        "message": core.error.get("message", ""),
                    }
                )
            elif core is not None and core.message:
                logs.append({"id": "status", "level": "info", "message": core.message})
            if offset is not None:
                ids = [entry["id"] for entry in logs]
                if offset not in ids:
                    raise OpenEOError(
                        400,
                        "ParameterInvalid",
                        f"offset {offset!r} names no log entry of job {job_id}",
                    )
                logs = logs[ids.index(offset) + 1 :]
            lowest = level or "debug"
            logs = [e for e in logs if _LOG_LEVELS.index(e["level"]) <= _LOG_LEVELS.index(lowest)]
            links: list[dict[str, Any]] = []
            if limit is not None and len(logs) > limit:
                logs = logs[:limit]
                query = f"offset={logs[-1]['id']}&limit={limit}" + (
                    f"&level={level}" if level else ""
                )
                links.append({"rel": "next", "href": f"{base}/jobs/{job_id}/logs?{query}"})
            return {"level": lowest, "logs": logs, "links": links}

        return _json(await off_loop(build))

    def _finished(doc: dict[str, Any]) -> Any:
        core = _core(doc)
        status = batch.job_status(doc, core)
        if status == "error":
            error = core.error or {}
            raise OpenEOError(
                424,
                "JobFailed" if not error.get("code") else str(error["code"]),
                f"job {doc['id']} failed: {error.get('message', 'no reason given')}",
            )
        if status != "finished" or core.result is None:
            raise OpenEOError(400, "JobNotFinished", f"job {doc['id']} is {status}, not finished")
        return core

    def _asset_names(doc: dict[str, Any], core: Any) -> dict[str, str]:
        """Asset name → format: the Zarr the worker stored (zipped), and the format
        save_result asked for."""
        if core.result.get("format") != "zarr":
            return {"result.json": "JSON"}
        names = {"result.zarr.zip": "ZARR"}
        fmt = doc.get("format") or "netCDF"
        if fmt != "ZARR":
            names[f"result{OUTPUT_FORMATS[fmt][1]}"] = fmt
        return names

    @app.get("/jobs/{job_id}/results")
    async def job_results(
        job_id: str,
        request: Request,
        partial: bool = Query(
            False,
            description="Answer also for a job that has not finished (no assets yet), "
            "with its status in openeo:status.",
        ),
    ) -> Response:
        user = auth.user_of(request)

        def build() -> dict[str, Any]:
            doc = docs.get(job_id, user)
            if partial:
                status = batch.job_status(doc, _core(doc))
                if status != "finished":
                    return {
                        "stac_version": "1.0.0",
                        "type": "Feature",
                        "id": job_id,
                        "geometry": None,
                        "properties": {"datetime": None, "title": doc.get("title")},
                        "openeo:status": status,
                        "assets": {},
                        "links": [{"rel": "self", "href": f"{base}/jobs/{job_id}/results"}],
                    }
            core = _finished(doc)
            twin = engine.twin(doc["twin"])
            w, s, e, n = twin.bbox
            assets = {
                name: {
                    "href": f"{base}/jobs/{job_id}/results/assets/{name}",
                    "type": OUTPUT_FORMATS[fmt][0],
                    "title": f"result ({fmt})",
                    "roles": ["data"],
                }
                for name, fmt in _asset_names(doc, core).items()
            }
            stac_item = (
                f"{settings.stac.base_url()}/collections/{core.result.get('stac_collection')}"
                f"/items/{core.id}"
            )
            return {
                "stac_version": "1.0.0",
                "type": "Feature",
                "id": job_id,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
                },
                "bbox": [w, s, e, n],
                "properties": {
                    "datetime": core.finished.strftime("%Y-%m-%dT%H:%M:%SZ")
                    if core.finished
                    else None,
                    "title": doc.get("title"),
                    "description": doc.get("description"),
                    "twinmesh:core_job": core.id,
                },
                "openeo:status": "finished",
                "assets": assets,
                "links": [
                    {
                        "rel": "self",
                        "href": f"{base}/jobs/{job_id}/results",
                        "type": "application/json",
                    },
                    {
                        "rel": "canonical",
                        "href": f"{base}/jobs/{job_id}/results",
                        "type": "application/json",
                    },
                    {
                        "rel": "alternate",
                        "href": stac_item,
                        "type": "application/geo+json",
                        "title": "the result's STAC item in the twin's results collection",
                    },
                ],
            }

        return _json(await off_loop(build))

    def _asset_file(doc: dict[str, Any], core: Any, name: str) -> Path:
        """The asset the worker wrote beside the stored result; for a job finished
        before it did, encoded from the stored Zarr once, kept beside the service's data."""
        fmt = _asset_names(doc, core).get(name)
        if fmt is None:
            raise OpenEOError(404, "AssetNotFound", f"job {doc['id']} has no asset {name!r}")
        stored = batch.stored_asset(engine, str(core.result["url"]), name, assets_dir / core.id)
        if stored is not None:
            return stored
        target = assets_dir / core.id / name
        if target.is_file():
            return target
        import xarray as xr

        from twinmesh.openeo.encode import encode_to_file
        from twinmesh.openeo.graphs import Saved

        url = str(core.result["url"])
        store = engine.store
        if core.result.get("format") == "zarr":
            with xr.open_zarr(
                url,
                consolidated=False,
                zarr_format=3,
                storage_options=store.storage_options or None,
            ) as ds:
                data: Any = ds.load()
        else:
            with store.fs.open(url, "rb") as fh:
                data = orjson.loads(fh.read())
        path = encode_to_file(Saved(data, fmt))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target

    @app.api_route("/jobs/{job_id}/results/assets/{name}", methods=["GET", "HEAD"])
    async def job_asset(job_id: str, name: str, request: Request) -> Response:
        user = auth.user_of(request)

        def locate() -> tuple[Path, str]:
            doc = docs.get(job_id, user)
            core = _finished(doc)
            fmt = _asset_names(doc, core).get(name, "JSON")
            return _asset_file(doc, core, name), OUTPUT_FORMATS[fmt][0]

        path, media = await off_loop(locate)
        return FileResponse(path, media_type=media)

    # -- stored process graphs -------------------------------------------------------------
    def _pg_path(user: str, pg_id: str) -> str:
        import re

        if not re.fullmatch(r"\w{1,64}", pg_id):
            raise OpenEOError(
                400, "ProcessGraphIdInvalid", "a process graph id is 1-64 of [A-Za-z0-9_]"
            )
        if pg_id in process_specs():
            raise OpenEOError(400, "ProcessGraphIdExists", f"{pg_id} is a predefined process")
        user_key = hashlib.sha256(user.encode()).hexdigest()[:16]
        return f"{engine.store.root}/openeo/process_graphs/{user_key}/{pg_id}.json"

    @app.get("/process_graphs")
    async def list_process_graphs(
        request: Request, limit: int | None = _LIMIT, offset: int | None = _OFFSET
    ) -> Response:
        user = auth.user_of(request)

        def build() -> dict[str, Any]:
            folder = _pg_path(user, "x").rsplit("/", 1)[0]
            try:
                names = engine.store.fs.ls(folder, detail=False, refresh=True)
            except FileNotFoundError:
                names = []
            out = []
            for name in sorted(names):
                with engine.store.fs.open(name, "rb") as fh:
                    doc = orjson.loads(fh.read())
                out.append({k: v for k, v in doc.items() if k != "process_graph"})
            page, links = _page(out, limit, offset, f"{base}/process_graphs")
            return {"processes": page, "links": links}

        return _json(await off_loop(build))

    @app.put("/process_graphs/{pg_id}")
    async def put_process_graph(pg_id: str, request: Request) -> Response:
        user = auth.user_of(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("process_graph"), dict):
            raise OpenEOError(
                400, "ProcessGraphMissing", "the body is a process with a process_graph"
            )

        def store() -> None:
            from twinmesh.openeo.graphs import check_graph

            check_graph(body)
            path = _pg_path(user, pg_id)
            fs = engine.store.fs
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "wb") as fh:
                fh.write(orjson.dumps({**body, "id": pg_id}))

        await off_loop(store)
        return Response(status_code=200)

    @app.get("/process_graphs/{pg_id}")
    async def get_process_graph(pg_id: str, request: Request) -> Response:
        user = auth.user_of(request)

        def read() -> Any:
            try:
                with engine.store.fs.open(_pg_path(user, pg_id), "rb") as fh:
                    return orjson.loads(fh.read())
            except FileNotFoundError:
                raise OpenEOError(
                    404, "ProcessGraphNotFound", f"no process graph {pg_id!r}"
                ) from None

        return _json(await off_loop(read))

    @app.delete("/process_graphs/{pg_id}")
    async def delete_process_graph(pg_id: str, request: Request) -> Response:
        user = auth.user_of(request)

        def delete() -> None:
            try:
                engine.store.fs.rm(_pg_path(user, pg_id))
            except FileNotFoundError:
                raise OpenEOError(
                    404, "ProcessGraphNotFound", f"no process graph {pg_id!r}"
                ) from None

        await off_loop(delete)
        return Response(status_code=204)

    def error_body(status: int, code: str, message: str, rid: str) -> Response:
        return error_response(status, code, message, rid)

    rules = HttpRules(
        max_body_bytes=settings.openeo.max_body_bytes,
        error_body=error_body,
        logger=logger,
        too_large_code="PayloadTooLarge",
        internal_code="Internal",
    )
    guarded = guard(app, rules)
    document_statuses(app, "OpenEOError", _ERROR_SCHEMA, _openeo_statuses)

    # Known errors raised by core or the process library inside a request: openEO errors.
    async def known(request: Request, exc: Exception) -> Response:
        from twinmesh.gateways.http import request_id

        mapped = from_exception(exc)
        if mapped is None:
            raise exc
        return error_response(mapped.status, mapped.code, mapped.message, request_id(request))

    app.add_exception_handler(TwinmeshError, known)
    _library_errors(app, known)
    app.state.engine = engine
    _ = ClientError  # read_json raises it; the guard answers it in the openEO shape
    return guarded


def _library_errors(app: FastAPI, handler: Any) -> None:
    from openeo_processes_dask.process_implementations.exceptions import OpenEOException

    app.add_exception_handler(OpenEOException, handler)


def _save_format(process: dict[str, Any]) -> str:
    """The format a graph's save_result asks for (netCDF when it has none)."""
    from twinmesh.openeo.graphs import canonical_format

    for node in (process.get("process_graph") or {}).values():
        if isinstance(node, dict) and node.get("process_id") == "save_result":
            return canonical_format(str((node.get("arguments") or {}).get("format", "netCDF")))
    return "netCDF"


def serve_openeo(settings: Settings) -> None:
    """Run the openEO API with uvicorn until interrupted."""
    import uvicorn

    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.openeo.host,
        port=settings.openeo.port,
        **uvicorn_options(),
    )


if __name__ == "__main__":
    from twinmesh.core.settings import load_settings

    serve_openeo(load_settings())
