"""The twinmesh STAC API service: one app factory over two interchangeable backends.

``settings.stac.backend`` picks the embedded backend (a SQLite index next to the
data, no server; the default on a laptop) or stac-fastapi-pgstac (PostgreSQL, at
scale). Either way the app loads the static catalogue from ``settings.catalog_dir``
at start-up, answers STAC API 1.0 (core, collections, ogcapi-features, item-search)
on GET and POST, validates search parameters at the edge with the same rules and
messages, and reports every error in the STAC API shape ``{"code", "description"}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

import orjson
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.errors import DEFAULT_STATUS_CODES
from stac_fastapi.types.errors import InvalidQueryParameter, StacApiError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinmesh.core.errors import TwinmeshError
from twinmesh.core.settings import Settings, load_settings
from twinmesh.stac.api.embedded import (
    CatalogLoad,
    catalog_fingerprint,
    create_embedded_api,
    expand_full_dates,
    index_fingerprint,
    load_catalog_embedded,
    parse_bbox,
    parse_datetime_interval,
    parse_intersects,
)

__all__ = [
    "API_DESCRIPTION",
    "API_TITLE",
    "create_app",
    "embedded_index_path",
    "install_stac_error_handlers",
    "load_catalog",
    "serve",
]

logger = logging.getLogger(__name__)

API_TITLE = "twinmesh STAC API"
API_DESCRIPTION = (
    "Datasets of the twinmesh digital twins — Zarr datacubes with the datacube "
    "extension — searchable by collection, space and time (STAC API 1.0)."
)

#: Routes whose search parameters are validated before either backend sees them.
_SEARCH_ROUTES: list[dict[str, str]] = [
    {"path": "/search", "method": "GET"},
    {"path": "/search", "method": "POST"},
    {"path": "/collections/{collection_id}/items", "method": "GET"},
]


def embedded_index_path(settings: Settings) -> Path:
    """Where the embedded backend keeps its SQLite index."""
    return settings.data_dir / "stac-index.sqlite"


def _require_dsn(settings: Settings) -> str:
    if not settings.stac.pgstac_dsn:
        raise ValueError(
            "settings.stac.backend is 'pgstac' but settings.stac.pgstac_dsn is not set; "
            "set TWINMESH_STAC__PGSTAC_DSN=postgresql://user:password@host:5432/db"
        )
    return settings.stac.pgstac_dsn


def load_catalog(settings: Settings) -> CatalogLoad:
    """Load ``settings.catalog_dir`` into the selected backend (always, unconditionally)."""
    if settings.stac.backend == "pgstac":
        from twinmesh.stac.api.pgstac import load_catalog_pgstac

        return load_catalog_pgstac(_require_dsn(settings), settings.catalog_dir)
    return load_catalog_embedded(embedded_index_path(settings), settings.catalog_dir)


def _sync_embedded_index(settings: Settings) -> CatalogLoad | None:
    """Rebuild the embedded index only when the catalogue changed since it was built."""
    index_path = embedded_index_path(settings)
    fingerprint = catalog_fingerprint(settings.catalog_dir)
    if fingerprint == "missing":
        logger.warning(
            "no static catalogue at %s yet; the STAC API answers 503 for collections "
            "and items until it is built",
            settings.catalog_dir,
        )
        return None
    if index_fingerprint(index_path) == fingerprint:
        logger.info("embedded STAC index %s is up to date", index_path)
        return None
    return load_catalog_embedded(index_path, settings.catalog_dir)


def _sync_pgstac(settings: Settings) -> CatalogLoad | None:
    from twinmesh.stac.api.pgstac import load_catalog_pgstac

    if not (settings.catalog_dir / "catalog.json").is_file():
        logger.warning("no static catalogue at %s yet; pgstac is not loaded", settings.catalog_dir)
        return None
    return load_catalog_pgstac(_require_dsn(settings), settings.catalog_dir, skip_if_unchanged=True)


# --------------------------------------------------------------------------------------
# Edge validation and errors, identical for both backends
# --------------------------------------------------------------------------------------
async def _validate_search_parameters(request: Request) -> None:
    """Reject bad bbox / datetime / intersects with a 400 before any backend runs.

    stac-fastapi's GET model checks only the number of bbox values and its range, and
    stac-fastapi and pgstac each word their errors differently. One check here gives
    both backends the same answers and messages. (A bbox with minx > maxx is valid:
    it crosses the antimeridian, and each backend searches its two parts.)
    """
    if request.method == "POST":
        raw = await request.body()
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return  # FastAPI reports malformed JSON itself
        if not isinstance(data, dict):
            return
        bbox, datetime, intersects = data.get("bbox"), data.get("datetime"), data.get("intersects")
    else:
        params = request.query_params
        bbox, datetime = params.get("bbox") or None, params.get("datetime")
        intersects = params.get("intersects") or None
    if bbox is not None and intersects is not None:
        raise InvalidQueryParameter("bbox and intersects are mutually exclusive; give one")
    if bbox is not None:
        parse_bbox(bbox)
    if datetime is not None:
        if not isinstance(datetime, str):
            raise InvalidQueryParameter(
                "datetime must be a string (an RFC 3339 instant or interval, or plain dates)"
            )
        parse_datetime_interval(datetime)
    if intersects is not None:
        parse_intersects(intersects)


def _error(status: int, code: str, description: str, headers: Any = None) -> JSONResponse:
    return JSONResponse(
        {"code": code, "description": description}, status_code=status, headers=headers
    )


def install_stac_error_handlers(app: FastAPI) -> None:
    """Answer HTTP, validation and core errors as STAC API errors (``code``/``description``).

    stac-fastapi maps its own exceptions to that shape already (but logs each client
    error at ERROR level with a traceback; here they are logged at INFO). FastAPI's
    404/405, stac-fastapi's HTTPExceptions (bad datetime, wrong bbox length) and
    request validation errors come out as ``{"detail": ...}``; pgstac's, too.
    """

    def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTPStatus(exc.status_code).phrase.title().replace(" ", "").replace("-", "")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(400, "InvalidParameterValue", "; ".join(problems) or "invalid request")

    def core_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TwinmeshError)
        return _error(exc.status, exc.code, exc.message)

    def stac_error(status: int) -> Callable[[Request, Exception], JSONResponse]:
        def handler(request: Request, exc: Exception) -> JSONResponse:
            code = exc.__class__.__name__
            logger.info("%s %s -> %d %s: %s", request.method, request.url, status, code, exc)
            return _error(status, code, str(exc) or code)

        return handler

    def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in the STAC API", exc_info=exc)
        return _error(500, "InternalServerError", f"{type(exc).__name__}: {exc}")

    for exc_class, status in DEFAULT_STATUS_CODES.items():
        if issubclass(exc_class, StacApiError):
            app.add_exception_handler(exc_class, stac_error(status))
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(TwinmeshError, core_error)
    app.add_exception_handler(Exception, internal_error)


def _normalised_datetime(value: Any) -> Any:
    """``value`` with plain dates expanded, if it is a valid ``datetime``; else unchanged.

    An invalid value is left as the user wrote it, so the 400 of
    :func:`_validate_search_parameters` quotes their text, not its expansion.
    """
    if not isinstance(value, str):
        return value
    expanded = expand_full_dates(value)
    if expanded == value:
        return value
    try:
        parse_datetime_interval(value)
    except InvalidQueryParameter:
        return value
    return expanded


def _normalised_query_string(query_string: bytes) -> bytes:
    """The query string with its ``datetime`` values normalised, other bytes untouched."""
    pairs = query_string.split(b"&")
    changed = False
    for n, pair in enumerate(pairs):
        name, sep, raw = pair.partition(b"=")
        if unquote_plus(name.decode("latin-1")) != "datetime" or not sep:
            continue
        value = unquote_plus(raw.decode("latin-1"), encoding="utf-8", errors="replace")
        normalised = _normalised_datetime(value)
        if normalised != value:
            pairs[n] = name + b"=" + quote(normalised, safe=":/").encode("ascii")
            changed = True
    return b"&".join(pairs) if changed else query_string


def _normalised_search_body(body: bytes) -> bytes:
    """A POST /search JSON body with its ``datetime`` normalised; else ``body`` itself."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # FastAPI reports malformed JSON itself
    if not isinstance(data, dict) or "datetime" not in data:
        return body
    normalised = _normalised_datetime(data["datetime"])
    if normalised == data["datetime"]:
        return body
    return orjson.dumps({**data, "datetime": normalised})


_ITEMS_ROUTE = re.compile(r"/collections/[^/]+/items")


class _DateOnlyDatetimeMiddleware:
    """Expand plain dates in ``datetime`` to RFC 3339 date-times before any route runs.

    stac-fastapi parses ``datetime`` itself (GET request models, stac-pydantic for
    POST) before either backend sees it, and accepts date-times only; rewriting the
    query string of GET /search and /collections/{id}/items and the JSON body of
    POST /search here lets both backends answer ``datetime=1985-01-01/1985-12-31``.
    The expansion is :func:`twinmesh.stac.api.embedded.expand_full_dates`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path + "/"):
            path = path[len(root_path) :]
        method = scope["method"]
        if method == "GET" and (path == "/search" or _ITEMS_ROUTE.fullmatch(path)):
            query_string = _normalised_query_string(scope.get("query_string", b""))
            if query_string != scope.get("query_string", b""):
                scope = {**scope, "query_string": query_string}
        elif method == "POST" and path == "/search":
            scope, receive = await self._normalise_body(scope, receive)
        await self.app(scope, receive, send)

    @staticmethod
    async def _normalise_body(scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Read the whole body, rewrite it, and replay it to the app as one message."""
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client left; replay what came and let the app notice
            body += message.get("body", b"")
            if not message.get("more_body", False):
                new_body = _normalised_search_body(body)
                if new_body is not body:
                    messages = [{"type": "http.request", "body": new_body, "more_body": False}]
                    headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                    headers.append((b"content-length", str(len(new_body)).encode("ascii")))
                    scope = {**scope, "headers": headers}
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        return scope, replay


class _PublicUrlMiddleware:
    """Make the request look as if it arrived at ``public_url`` (links are built from it).

    Used when ``settings.stac.public_url`` is set, e.g. behind the gateway at
    ``https://mesh.example.org/stac``: scheme, host and path prefix come from it.
    """

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        parts = urlsplit(public_url)
        self.scheme = parts.scheme or "http"
        self.host = parts.netloc.encode("latin-1")
        self.prefix = parts.path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["scheme"] = self.scheme
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
                (b"host", self.host)
            ]
            if self.prefix:
                path = scope["path"]
                if path != self.prefix and not path.startswith(self.prefix + "/"):
                    scope["path"] = self.prefix + path
                scope["root_path"] = self.prefix
        await self.app(scope, receive, send)


def _harden(api: StacApi, settings: Settings) -> FastAPI:
    app = api.app
    api.add_route_dependencies(
        scopes=_SEARCH_ROUTES,  # type: ignore[arg-type]
        dependencies=[Depends(_validate_search_parameters)],
    )
    install_stac_error_handlers(app)
    app.add_middleware(_DateOnlyDatetimeMiddleware)
    if settings.stac.public_url:
        app.add_middleware(_PublicUrlMiddleware, public_url=settings.stac.public_url)
    app.state.twinmesh_settings = settings
    return app


def create_app(settings: Settings) -> FastAPI:
    """The STAC API app for ``settings.stac.backend``; loads the catalogue at start-up.

    embedded: the index lives at ``<data_dir>/stac-index.sqlite`` and is rebuilt at
    start-up when the catalogue's fingerprint differs from the one it was built from.
    pgstac: the catalogue is upserted into ``settings.stac.pgstac_dsn`` at start-up
    (skipped when unchanged since the last load). CORS is open to any origin, so
    catalogue browsers served from elsewhere (STAC Browser) can use the API.
    """
    backend = settings.stac.backend
    description = f"{API_DESCRIPTION} Backend: {backend}."
    on_startup: Callable[[], object]
    if backend == "pgstac":
        from twinmesh.stac.api.pgstac import create_pgstac_api

        dsn = _require_dsn(settings)

        def on_startup() -> object:
            return _sync_pgstac(settings)

        api = create_pgstac_api(
            dsn, title=API_TITLE, description=description, on_startup=on_startup
        )
    elif backend == "embedded":

        def on_startup() -> object:
            return _sync_embedded_index(settings)

        api = create_embedded_api(
            embedded_index_path(settings),
            title=API_TITLE,
            description=description,
            on_startup=on_startup,
        )
    else:  # pragma: no cover - settings validate the literal
        raise ValueError(f"unknown STAC backend {backend!r}; expected embedded or pgstac")
    return _harden(api, settings)


def serve(settings: Settings) -> None:
    """Run the STAC API with uvicorn on ``settings.stac.host:port`` until stopped."""
    uvicorn.run(
        create_app(settings),
        host=settings.stac.host,
        port=settings.stac.port,
        log_level="info",
    )


if __name__ == "__main__":
    serve(load_settings())
