"""The HTTP rules every twinmesh service keeps, free of any one protocol.

- Every response carries a request id (``X-Request-ID``: the client's, when it sent a
  sane one, else a new one); the access log line and any error log line name it.
- A request body has a limit: a larger declared length, or more bytes as they arrive,
  is a 413 naming the limit.
- An exception that escapes the app is a 500 that says only "internal error" and the
  request id; the log has one line with the id and one traceback. The connection is
  kept (the exception never reaches the server, which would close it).
- Heavy JSON parsing runs off the event loop (:func:`read_json`).
- uvicorn runs with a keep-alive time-out and :class:`HttpProtocol`: a header block
  has a size limit (431) and a time limit (408, then the connection closes; an idle
  or half-sent connection is never kept), and responses leave without Nagle's delay.

The body of every error is made by the service's own callback (``ErrorBody``), so each
protocol keeps its error shape (OGC exception JSON, openEO ``{id, code, message}``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "ErrorBody",
    "HttpRules",
    "BodyTooLarge",
    "HttpProtocol",
    "ClientError",
    "guard",
    "request_id",
    "read_json",
    "uvicorn_options",
    "limit_malloc_arenas",
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


#: The largest request line plus header block a service reads (a larger one is a 431).
MAX_HEADER_BYTES = 64 * 1024
#: Seconds a client has to send a whole header block, from connecting or from the end
#: of the previous response (else a 408 if it began one, and the connection closes).
HEADER_TIMEOUT_S = 10.0


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits a public service needs.

    uvicorn (0.54) with httptools has none of these: it reads a header block of any
    size (a 10 MB header was answered 200), keeps a connection that sends nothing or
    half a request forever (its keep-alive timer runs only after a response), and with
    ``workers`` > 1 it shares a listening socket made without ``IPPROTO_TCP``, so
    asyncio does not set ``TCP_NODELAY`` and every response waits ~40 ms for the
    client's delayed ACK (Nagle): 44 ms for ``GET /`` against 1.6 ms with one worker.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # a closed socket: the read fails anyway
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._reading_headers = True
        self._header_bytes = 0  # of the header block being read (request line included)
        self._boundary_in_feed = False  # a header block or a message ended in this read
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._boundary_in_feed = False
        super().data_received(data)
        if self._boundary_in_feed or not self._reading_headers or self.transport.is_closing():
            return
        # A read wholly inside a header block: httptools holds a header's bytes until it
        # is whole, so the raw bytes count too, not just the headers parsed so far. (A
        # read that ended a body or a header block is not counted: it is not all header.)
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse_large_headers()

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._boundary_in_feed = True
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True  # what comes next is the next request's headers
        self._boundary_in_feed = True

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not after a 431 or 408 of our own
            super().send_400_response(msg)

    def _count_header_bytes(self, size: int) -> None:
        """Exact count for a block that arrived whole (one read of up to 256 KB)."""
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse_large_headers()
            raise BodyTooLarge("header block too large")  # stops the parser

    def _refuse_large_headers(self) -> None:
        self.logger.warning("Request header block above %d bytes refused.", MAX_HEADER_BYTES)
        self._refuse(
            431,
            b"Request Header Fields Too Large",
            f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes",
        )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if not self._reading_headers or busy or self.transport.is_closing():
            return
        if self._header_bytes:
            self._refuse(
                408,
                b"Request Timeout",
                f"the request's headers did not arrive within {HEADER_TIMEOUT_S:g} s",
            )
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


#: glibc's ``M_ARENA_MAX`` (mallopt parameter -8).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (call before the server's threads
    start); True when set.

    glibc gives each new thread its own arena, up to 8 per core, and memory freed in
    one is not returned to the others: the STAC server's peak RSS after a load of 64
    concurrent clients was 557 MB with the default and 288 MB with 2 arenas, at the
    same requests per second (``MALLOC_ARENA_MAX`` does the same from the environment,
    which a service cannot set for itself). No effect, and False, on other C libraries.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def uvicorn_options() -> dict[str, Any]:
    """What every service runs uvicorn with: :class:`HttpProtocol` (header size and time
    limits, no Nagle delay) and a 5 s keep-alive time-out."""
    return {
        "http": "twinmesh.gateways.http:HttpProtocol",
        "timeout_keep_alive": 5,
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
