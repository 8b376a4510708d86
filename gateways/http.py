"""The HTTP rules every twinmesh service keeps, free of any one protocol.

- Every response carries a request id (``X-Request-ID``: the client's, when it sent a
  sane one, else a new one); the access log line and any error log line name it.
- A request body has a limit: a larger declared length, or more bytes as they arrive,
  is a 413 naming the limit.
- An exception that escapes the app is a 500 that says only "internal error" and the
  request id; the log has one line with the id and one traceback. The connection is
  kept (the exception never reaches the server, which would close it).
- Heavy JSON parsing runs off the event loop (:func:`read_json`).
- uvicorn runs with keep-alive and header-size limits (:func:`uvicorn_options`).

The body of every error is made by the service's own callback (``ErrorBody``), so each
protocol keeps its error shape (OGC exception JSON, openEO ``{id, code, message}``, ...).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ErrorBody",
    "HttpRules",
    "BodyTooLarge",
    "ClientError",
    "guard",
    "request_id",
    "read_json",
    "uvicorn_options",
    "document_statuses",
    "declared_query_parameters",
    "undeclared_query_parameters",
    "REQUEST_ID_HEADER",
]

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Bodies larger than this are parsed in a worker thread, not on the event loop.
_OFF_LOOP_BYTES = 64 * 1024

#: error_body(status, code, message, request_id) -> the protocol's error response.
ErrorBody = Callable[[int, str, str, str], Response]


class BodyTooLarge(Exception):
    """The request body is larger than the service's limit."""


class ClientError(Exception):
    """A client's mistake found while reading a request (bad JSON, wrong media type):
    the service answers ``status`` with its own error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class HttpRules:
    """What a service tells the guard: its body limit, its error shape, its logger."""

    max_body_bytes: int
    error_body: ErrorBody
    logger: logging.Logger
    #: The error code a 413, a 500 are given in the protocol's vocabulary.
    too_large_code: str = "PayloadTooLarge"
    internal_code: str = "InternalError"

    def too_large(self, rid: str) -> Response:
        return self.error_body(
            413,
            self.too_large_code,
            f"the request body is larger than the limit of {self.max_body_bytes} bytes",
            rid,
        )

    def internal(self, rid: str) -> Response:
        return self.error_body(500, self.internal_code, f"internal error (request id {rid})", rid)


def request_id(request: Request) -> str:
    """The id of the request being answered (set by :func:`guard`)."""
    return str(request.scope.get("twinmesh_request_id") or "-")


async def read_json(
    request: Request, *, media_types: tuple[str, ...] = ("application/json",)
) -> Any:
    """The request body as JSON: the media type checked (415), the bytes parsed off the
    event loop when large, a malformed document a 400 (ClientError)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in media_types:
        raise ClientError(
            415,
            "UnsupportedMediaType",
            f"the body must be {' or '.join(media_types)}, got {media or 'no content type'}",
        )
    body = await request.body()
    try:
        if len(body) > _OFF_LOOP_BYTES:
            return await asyncio.to_thread(orjson.loads, body)
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None


def declared_query_parameters(route: Any) -> frozenset[str]:
    """The query parameter names a FastAPI route declares (its own and its
    dependencies'), as a client spells them (aliases)."""
    names: set[str] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        names.update(str(p.alias) for p in dependant.query_params)
        stack.extend(dependant.dependencies)
    return frozenset(names)


def undeclared_query_parameters(request: Request) -> list[str]:
    """The query parameters of ``request`` its matched FastAPI route does not declare,
    sorted: the service answers them with a 400 naming them (a parameter it does not
    implement is never silently ignored). Empty before routing (no route matched)."""
    route = request.scope.get("route")
    if route is None:
        return []
    declared = declared_query_parameters(route)
    return sorted({name for name in request.query_params if name not in declared})


class _Guard:
    def __init__(self, app: ASGIApp, rules: HttpRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        rid = given if _SANE_ID.match(given) else secrets.token_hex(8)
        scope["twinmesh_request_id"] = rid
        started_at = time.perf_counter()
        status = {"code": 0}
        limit = self.rules.max_body_bytes
        declared = headers.get(b"content-length")
        log = self.rules.logger

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
                    ],
                }
            await send(message)

        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self.rules.too_large(rid)(scope, receive, tracking_send)
            self._access(scope, status["code"], started_at, rid)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not status["code"]:
                await self.rules.too_large(rid)(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the client gets an id, the log the traceback
            if not getattr(exc, "twinmesh_logged", False):
                log.error(
                    "internal error %s on %s %s", rid, scope["method"], scope["path"], exc_info=exc
                )
            if not status["code"]:
                await self.rules.internal(rid)(scope, receive, tracking_send)
        self._access(scope, status["code"], started_at, rid)

    def _access(self, scope: Scope, code: int, started_at: float, rid: str) -> None:
        self.rules.logger.info(
            '%s "%s %s" %d %.1fms rid=%s',
            (scope.get("client") or ("-",))[0],
            scope["method"],
            scope["path"],
            code,
            (time.perf_counter() - started_at) * 1000,
            rid,
        )


def guard(app: Starlette, rules: HttpRules) -> ASGIApp:
    """``app`` behind the rules. Inside Starlette (whose error middleware answers before
    the guard sees an exception) the same rules run as the app's exception handler."""

    async def on_error(request: Request, exc: Exception) -> Response:
        rid = request_id(request)
        if isinstance(exc, BodyTooLarge):
            exc.twinmesh_logged = True  # type: ignore[attr-defined]
            return rules.too_large(rid)
        if isinstance(exc, ClientError):
            exc.twinmesh_logged = True  # type: ignore[attr-defined]
            return rules.error_body(exc.status, exc.code, exc.message, rid)
        rules.logger.error(
            "internal error %s on %s %s", rid, request.method, request.url.path, exc_info=exc
        )
        exc.twinmesh_logged = True  # type: ignore[attr-defined]
        return rules.internal(rid)

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(ClientError, on_error)
    return _Guard(app, rules)


def uvicorn_options() -> dict[str, Any]:
    """Keep-alive time-out and the largest header block every service runs with."""
    return {
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 64 * 1024,
        "log_level": "warning",
        "access_log": False,
    }


#: What each error status means, for the OpenAPI documents of every service.
STATUS_DESCRIPTIONS = {
    "400": "A parameter or the body is malformed, out of range or not one this route takes.",
    "401": "Authentication is required.",
    "403": "The credentials are not valid or not enough.",
    "404": "No such resource.",
    "413": "The request body is larger than the service's limit (named in the message).",
    "415": "The body is not in a media type this route takes.",
    "500": "Internal error: the body names only a request id (in the log).",
    "503": "Not ready yet (e.g. the catalogue is not loaded).",
}


def document_statuses(
    app: Any,
    error_schema_name: str,
    error_schema: dict[str, Any],
    statuses: Callable[[str, str], list[str]],
    *,
    drop: tuple[str, ...] = ("422",),
) -> None:
    """Make a FastAPI app's OpenAPI document list every error status it answers (in the
    service's own error shape, ``error_schema``) and none it never answers (``drop``:
    FastAPI's 422, which the services answer as 400). ``statuses(path, method)`` says
    which statuses an operation can answer."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})[error_schema_name] = (
            error_schema
        )
        ref = {"$ref": f"#/components/schemas/{error_schema_name}"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                for status in drop:
                    responses.pop(status, None)
                for status in statuses(path, method):
                    responses.setdefault(
                        status,
                        {
                            "description": STATUS_DESCRIPTIONS[status],
                            "content": {"application/json": {"schema": ref}},
                        },
                    )
        app.openapi_schema = schema
        return schema  # type: ignore[no-any-return]

    app.openapi = openapi
