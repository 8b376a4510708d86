"""The OGC API service: pygeoapi's API served as an ASGI (Starlette) app, one per
``create_app(settings)``.

pygeoapi's own ``starlette_app`` reads its configuration from files named by
environment variables when it is imported, one per process. Here every app builds its
own ``pygeoapi.api.API`` from the configuration generated from core
(:func:`twinmesh.ogc.config.ogc_config`) and its OpenAPI document at start-up, and
routes requests to pygeoapi's API functions the way ``starlette_app`` does, for the
standards twinmesh serves: OGC API - Common, Features, Coverages, EDR and Processes.

Around pygeoapi, the HTTP rules every twinmesh service keeps: a request body limit
(413), client mistakes as 4xx in the OGC exception JSON (``code``, ``type``,
``description``), an unexpected error as a 500 saying only "internal error" and a
request id that is in the log with its traceback, pygeoapi's work off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from copy import deepcopy
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from twinmesh.core.settings import Settings
from twinmesh.gateways.http import HttpRules, limit_malloc_arenas, uvicorn_options
from twinmesh.gateways.http import guard as http_guard
from twinmesh.ogc.config import ogc_config
from twinmesh.ogc.openapi import self_contained

__all__ = ["create_app", "guard", "ogc_exception", "serve_ogc"]

logger = logging.getLogger("twinmesh.ogc")

#: The EDR query types twinmesh's datacube provider answers.
EDR_QUERIES = ("position", "area", "cube")


def ogc_exception(status: int, code: str, description: str) -> JSONResponse:
    """An OGC API exception document (pygeoapi's shape) with its status."""
    return JSONResponse(
        {"code": code, "type": code, "description": description}, status_code=status
    )


def _to_response(headers: dict[str, Any], status: int, content: Any) -> Response:
    media = str(headers.get("Content-Type", ""))
    if isinstance(content, dict):
        response: Response = Response(orjson.dumps(content), status_code=status)
    elif media.startswith("text/html"):
        response = HTMLResponse(content=content, status_code=status)
    else:
        response = Response(content, status_code=status)
    response.headers.update({k: str(v) for k, v in headers.items()})
    return response


Handler = Callable[[Request], Awaitable[Response]]

#: OGC exception codes that name a client's mistake: pygeoapi answers some of them with
#: a 500 (e.g. a malformed bbox on /coverage); they are a 400 here.
CLIENT_ERROR_CODES = frozenset(
    {"InvalidParameterValue", "MissingParameterValue", "InvalidQuery", "OperationParsingFailed"}
)


def _server_error(request: Request, status: int, content: Any) -> Response:
    """pygeoapi's 5xx: a client mistake it misfiled becomes a 400 with its message; any
    other keeps its status but says only "internal error" and a request id (the log has
    pygeoapi's text)."""
    try:
        body = orjson.loads(content) if isinstance(content, str | bytes) else dict(content)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        body = {}
    code = str(body.get("code") or body.get("type") or "")
    if code in CLIENT_ERROR_CODES:
        return ogc_exception(400, code, str(body.get("description") or code))
    ref = secrets.token_hex(4)
    logger.error(
        "internal error %s on %s %s: %s",
        ref,
        request.method,
        request.url.path,
        str(body.get("description") or content)[:2000],
    )
    return ogc_exception(status, "InternalError", f"internal error (request id {ref})")


def _routes(api: Any) -> list[Route]:
    import pygeoapi.api as core_api
    import pygeoapi.api.itemtypes as itemtypes_api
    import pygeoapi.api.processes as processes_api
    from pygeoapi.api import APIRequest, apply_gzip

    from twinmesh.ogc import coverages as ogc_coverages
    from twinmesh.ogc import manager as ogc_manager

    async def call(function: Callable[..., Any], request: Request, *args: Any, check=True):
        api_request = await APIRequest.from_starlette(request, api.locales)
        if check and not api_request.is_valid():
            headers, status, content = api.get_format_exception(api_request)
        else:
            loop = asyncio.get_running_loop()

            def run() -> Any:
                asyncio.set_event_loop(loop)  # pygeoapi's calls expect a loop to exist
                return function(api, api_request, *args)

            headers, status, content = await loop.run_in_executor(None, run)
            if status == 500:
                return _server_error(request, status, content)
            if status != HTTPStatus.NO_CONTENT:
                content = apply_gzip(headers, content)
        return _to_response(headers, status, content)

    def path(request: Request, name: str) -> str | None:
        return request.path_params.get(name)

    async def landing(request: Request) -> Response:
        return await call(core_api.landing_page, request)

    async def openapi(request: Request) -> Response:
        return await call(core_api.openapi_, request)

    async def conformance(request: Request) -> Response:
        return await call(core_api.conformance, request)

    async def collections(request: Request) -> Response:
        return await call(core_api.describe_collections, request, path(request, "cid"))

    async def queryables(request: Request) -> Response:
        return await call(itemtypes_api.get_collection_queryables, request, path(request, "cid"))

    async def schema(request: Request) -> Response:
        return await call(core_api.get_collection_schema, request, path(request, "cid"))

    async def items(request: Request) -> Response:
        cid, item = path(request, "cid"), path(request, "item")
        if item is not None:
            return await call(itemtypes_api.get_collection_item, request, cid, item)
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
            "application/geo+json"
        ):  # a transaction (creating an item): not offered
            return ogc_exception(
                405, "MethodNotAllowed", "the collections are read-only: items cannot be added"
            )
        # POST with a CQL2-JSON body is a search, as in pygeoapi's own routes.
        if request.method == "POST" and (
            refused := not_json(request, ("application/json", "application/query-cql-json"))
        ):
            return refused
        return await call(itemtypes_api.get_collection_items, request, cid)

    async def coverage(request: Request) -> Response:
        # twinmesh.ogc.coverages: CoverageJSON from numpy, netCDF/Zarr, aggregation, and
        # 4xx for what pygeoapi answers with 500 (other collections go on to pygeoapi).
        return await call(
            ogc_coverages.get_collection_coverage, request, path(request, "cid"), check=False
        )

    async def edr(request: Request) -> Response:
        query = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        return await call(
            ogc_coverages.get_collection_edr_query,
            request,
            path(request, "cid"),
            None,
            query,
            None,
            check=False,
        )

    async def processes(request: Request) -> Response:
        return await call(processes_api.describe_processes, request, path(request, "pid"))

    def not_json(request: Request, accepted: tuple[str, ...]) -> Response | None:
        """A body in another media type than the operation takes is a 415, not read."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in accepted:
            return None
        return ogc_exception(
            415,
            "UnsupportedMediaType",
            f"the body must be {' or '.join(accepted)}, got {media or 'no content type'}",
        )

    async def execute(request: Request) -> Response:
        if (refused := not_json(request, ("application/json",))) is not None:
            return refused
        # twinmesh's versions of pygeoapi's functions (see twinmesh.ogc.manager): a body
        # that is not a JSON object is a 400, Location only on a 201, core's own errors.
        return await call(ogc_manager.execute_process, request, path(request, "pid"))

    def unknown_job(job: str) -> Response | None:
        """pygeoapi answers an unknown job with a 404 typed InvalidParameterValue whose
        description is only the id; core says what is missing."""
        from twinmesh.core.errors import UnknownJob
        from twinmesh.ogc.context import engine_for

        try:
            engine_for(api.config["server"]["manager"]).jobs.get(job)
        except UnknownJob as exc:
            return ogc_exception(404, "NotFound", exc.message)
        return None

    async def jobs(request: Request) -> Response:
        job = path(request, "job")
        loop = asyncio.get_running_loop()
        if job is not None and (missing := await loop.run_in_executor(None, unknown_job, job)):
            return missing
        if job is not None and request.method == "DELETE":
            return await call(processes_api.delete_job, request, job)
        return await call(processes_api.get_jobs, request, job)

    async def results(request: Request) -> Response:
        job = str(path(request, "job"))
        loop = asyncio.get_running_loop()
        if (missing := await loop.run_in_executor(None, unknown_job, job)) is not None:
            return missing
        return await call(ogc_manager.get_job_result, request, job)

    cid = "/collections/{cid}"
    return [
        Route("/", landing),
        Route("/openapi", openapi),
        Route("/conformance", conformance),
        Route("/collections", collections),
        Route(cid, collections),
        Route(cid + "/queryables", queryables),
        Route(cid + "/schema", schema),
        Route(cid + "/items", items, methods=["GET", "POST"]),
        Route(cid + "/items/{item}", items),
        Route(cid + "/coverage", coverage),
        *(Route(f"{cid}/{q}", edr) for q in EDR_QUERIES),
        Route("/processes", processes),
        Route("/processes/{pid}", processes),
        Route("/processes/{pid}/execution", execute, methods=["POST"]),
        Route("/jobs", jobs),
        Route("/jobs/{job}", jobs, methods=["GET", "DELETE"]),
        Route("/jobs/{job}/results", results),
    ]


def _ogc_error_body(status: int, code: str, message: str, _request_id: str) -> Response:
    return ogc_exception(status, code, message)


def guard(app: Starlette, max_body_bytes: int) -> ASGIApp:
    """``app`` behind the HTTP rules every twinmesh service keeps (twinmesh.gateways.http:
    body limit with a 413, request ids, a 500 naming only the request id), in the OGC
    exception shape."""
    rules = HttpRules(
        max_body_bytes=max_body_bytes,
        error_body=_ogc_error_body,
        logger=logger,
        too_large_code="PayloadTooLarge",
        internal_code="InternalError",
    )
    return http_guard(app, rules)


async def _not_found(request: Request, exc: Exception) -> Response:
    return ogc_exception(404, "NotFound", f"no such resource: {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return ogc_exception(
        405, "MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}"
    )


def _strip_slash(app: ASGIApp) -> ASGIApp:
    """``/collections/`` answers like ``/collections`` (a redirect), as pygeoapi's
    non-strict slashes do."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/" and scope["path"].endswith("/"):
            target = scope["path"].rstrip("/")
            query = scope.get("query_string", b"").decode()
            response = RedirectResponse(target + (f"?{query}" if query else ""), 308)
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


def _api_class() -> type:
    """pygeoapi's ``API`` with its exceptions made honest: a client's mistake pygeoapi
    files as a 500 (a malformed bbox or subset on /coverage, …) is a 400, and a real 500
    says only "internal error" and a request id, in every output format."""
    from pygeoapi.api import API

    class TwinmeshAPI(API):  # type: ignore[misc]
        def get_exception(
            self, status: int, headers: dict, format_: str | None, code: str, description: str
        ) -> tuple[dict, int, str]:
            if status >= 500 and code in CLIENT_ERROR_CODES:
                status = 400
            elif status == 500:
                ref = secrets.token_hex(4)
                logger.error(
                    "internal error %s: %s: %s", ref, code, description, exc_info=sys.exc_info()[1]
                )
                code, description = "InternalError", f"internal error (request id {ref})"
            return super().get_exception(status, headers, format_, code, description)  # type: ignore[no-any-return]

    return TwinmeshAPI


def create_app(settings: Settings, config: dict[str, Any] | None = None) -> Starlette:
    """The OGC API app of ``settings`` (configuration generated from core unless given)."""
    from pygeoapi.openapi import get_oas

    API = _api_class()
    config = config if config is not None else ogc_config(settings)
    from twinmesh.ogc.coverages import document_openapi

    generated = get_oas(deepcopy(config), fail_on_invalid_collection=False)
    openapi = self_contained(document_openapi(generated, config))
    api = API(config, openapi)
    # pygeoapi logs every client mistake with a traceback at ERROR; the service logs
    # its real errors itself (once, with a request id), so pygeoapi's own log is muted.
    logging.getLogger("pygeoapi").setLevel(logging.CRITICAL)
    app = Starlette(
        routes=_routes(api),
        middleware=[
            Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"]),
        ],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.api = api
    app.state.config = config
    return _strip_slash(guard(app, settings.ogc.max_body_bytes))  # type: ignore[return-value]


def serve_ogc(settings: Settings) -> None:
    """Run the OGC API with uvicorn until interrupted."""
    import uvicorn

    limit_malloc_arenas()
    uvicorn.run(
        create_app(settings), host=settings.ogc.host, port=settings.ogc.port, **uvicorn_options()
    )


if __name__ == "__main__":
    from twinmesh.core.settings import load_settings

    serve_ogc(load_settings())
