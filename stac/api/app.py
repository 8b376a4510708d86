"""The twinmesh STAC API service: one app factory over two interchangeable backends.

``settings.stac.backend`` picks the embedded backend (a SQLite index next to the
data, no server; the default on a laptop) or stac-fastapi-pgstac (PostgreSQL, at
scale). Either way the app loads the static catalogue from ``settings.catalog_dir``
at start-up, answers STAC API 1.0 (core, collections, ogcapi-features, item-search)
on GET and POST, validates search parameters at the edge with the same rules and
messages, and reports every error in the STAC API shape ``{"code", "description"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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
from twinmesh.gateways.http import (
    HttpRules,
    document_statuses,
    guard,
    limit_malloc_arenas,
    uvicorn_options,
)
from twinmesh.stac.api.assets import data_routes, local_root
from twinmesh.stac.api.big_intersects import GeometryError, IntersectsParser
from twinmesh.stac.api.embedded import (
    BIG_INTERSECTS_KEY,
    CatalogLoad,
    catalog_fingerprint,
    create_embedded_api,
    fields_as_body,
    fields_as_query,
    index_fingerprint,
    load_catalog_embedded,
    parse_bbox,
    parse_datetime_interval,
    parse_fields,
    parse_filter,
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
#: The parameters each search route implements; any other is a 400 naming it (a
#: parameter the API ignored would be wrong data with a 200).
_FILTER_AND_FIELDS = frozenset({"filter", "filter-lang", "filter-crs", "fields"})
_GET_SEARCH_PARAMETERS = frozenset(
    {"bbox", "datetime", "intersects", "ids", "collections", "limit", "token", "sortby"}
    | _FILTER_AND_FIELDS
)
_ITEMS_PARAMETERS = frozenset({"bbox", "datetime", "limit", "token", "sortby"} | _FILTER_AND_FIELDS)
_POST_SEARCH_FIELDS = _GET_SEARCH_PARAMETERS
_JSON_MEDIA_TYPES = ("application/json", "application/geo+json")


def _unknown(given: Any, known: frozenset[str], where: str) -> None:
    unknown = sorted(str(name) for name in given if name not in known)
    if unknown:
        raise InvalidQueryParameter(
            f"{where} does not implement {', '.join(repr(u) for u in unknown)}; "
            f"it takes {', '.join(sorted(known))}"
        )


def _strings(value: Any, name: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidQueryParameter(f"{name} must be an array of strings")


async def _search_body(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"POST /search takes application/json, got {media or 'no content type'}"
        )
    raw = await request.body()
    try:
        # A large body (a detailed intersects polygon) is parsed off the event loop.
        data = await asyncio.to_thread(orjson.loads, raw) if len(raw) > 65536 else orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidQueryParameter(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidQueryParameter(
            f"the body must be a JSON object of search parameters, not {type(data).__name__}"
        )
    return data


async def _validate_search_parameters(request: Request) -> None:
    """Reject unknown parameters and bad values with a 400 before any backend runs.

    stac-fastapi's models check little (the number of bbox values, its range) and
    stac-fastapi and pgstac each word their errors differently. One check here gives
    both backends the same answers and messages. (A bbox with minx > maxx is valid:
    it crosses the antimeridian, and each backend searches its two parts.)
    """
    if request.method == "POST":
        data = await _search_body(request)
        _unknown(data, _POST_SEARCH_FIELDS, "POST /search")
        bbox, datetime, intersects = data.get("bbox"), data.get("datetime"), data.get("intersects")
        for name in ("ids", "collections"):
            if data.get(name) is not None and not isinstance(data[name], str):
                _strings(data[name], name)
        if bbox is not None and not (
            isinstance(bbox, list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        ):
            raise InvalidQueryParameter("bbox must be an array of 4 or 6 numbers")
        limit = data.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidQueryParameter("limit must be an integer")
        if data.get("token") is not None and not isinstance(data["token"], str):
            raise InvalidQueryParameter("token must be a string (the next link's token)")
    else:
        params = request.query_params
        on_items = "collection_id" in request.path_params
        if on_items and "collections" in params:
            # pystac-client repeats the collection of the path; anything else would be
            # a search of other collections that this route cannot answer.
            collection = request.path_params["collection_id"]
            if params.get("collections") != collection:
                raise InvalidQueryParameter(
                    f"collections on /collections/{collection}/items can only be "
                    f"{collection!r}; search other collections with /search"
                )
            params = params.__class__(
                [(k, v) for k, v in params.multi_items() if k != "collections"]
            )
        _unknown(
            params.keys(),
            _ITEMS_PARAMETERS if on_items else _GET_SEARCH_PARAMETERS,
            "/collections/{id}/items" if on_items else "GET /search",
        )
        bbox, datetime = params.get("bbox") or None, params.get("datetime")
        intersects = params.get("intersects") or None
        data = {k: params.get(k) for k in _FILTER_AND_FIELDS if k in params}
    if bbox is not None and intersects is not None:
        raise InvalidQueryParameter("bbox and intersects are mutually exclusive; give one")
    if bbox is not None:
        parse_bbox(bbox)
    if datetime is not None:
        if not isinstance(datetime, str):
            raise InvalidQueryParameter(
                "datetime must be a string (an RFC 3339 instant or interval)"
            )
        parse_datetime_interval(datetime)
    if intersects is not None:
        # Shapely's parsing and validity check of a big polygon take seconds: not on
        # the event loop, where they would stall every other client.
        await asyncio.to_thread(parse_intersects, intersects)
    if data.get("filter") not in (None, ""):
        # The same parser (cql2) and messages for both backends.
        await asyncio.to_thread(
            parse_filter, data["filter"], data.get("filter-lang"), data.get("filter-crs")
        )
    if "fields" in data:
        parse_fields(data["fields"])  # null is a 400, as the fields extension says


#: The largest limit or offset (PostgreSQL's integer; pgstac fails beyond it).
_MAX_INT = 2**31 - 1

_COLLECTIONS_PARAMETERS = frozenset({"bbox", "datetime", "limit", "offset", "q"})


async def _validate_collection_search(request: Request) -> None:
    """GET /collections (collection search): the parameters both backends implement,
    checked like the item search's."""
    params = request.query_params
    _unknown(params.keys(), _COLLECTIONS_PARAMETERS, "GET /collections")
    if params.get("bbox"):
        parse_bbox(params["bbox"])
    if params.get("datetime") is not None:
        parse_datetime_interval(params["datetime"])
    for name in ("limit", "offset"):
        value = params.get(name)
        if value is not None and not (
            value.isdigit() and (name == "offset" or int(value) >= 1) and int(value) <= _MAX_INT
        ):
            kind = "positive" if name == "limit" else "non-negative"
            raise InvalidQueryParameter(
                f"{name} must be a {kind} integer up to {_MAX_INT}, not {value!r}"
            )


class UnsupportedMediaType(StacApiError):
    """A POST body in another media type than JSON (415)."""


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
            if err.get("type") == "json_invalid":
                at = err.get("loc", ("", "?"))[-1]
                problems.append(f"the body is not valid JSON (error at character {at})")
                continue
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

    for exc_class, status in DEFAULT_STATUS_CODES.items():
        if issubclass(exc_class, StacApiError):
            app.add_exception_handler(exc_class, stac_error(status))
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(TwinmeshError, core_error)
    app.add_exception_handler(UnsupportedMediaType, stac_error(415))


#: POST /search bodies above this are parsed before the app sees them (see below).
_BIG_BODY_BYTES = 256 * 1024


class _BigIntersectsMiddleware:
    """Parse a big POST /search ``intersects`` in a child process.

    stac-fastapi validates the POST body with pydantic on the event loop, ~1 s for a
    100 000-vertex polygon with the GIL held throughout; in a thread, the JSON and
    geometry parse still hold the GIL ~200 ms in all. The child process
    (:class:`~twinmesh.stac.api.big_intersects.IntersectsParser`) parses the body and
    the geometry; the app then sees the geometry's bounding box in its place (cheap to
    validate) and each backend's client takes the real geometry from the request scope
    (the embedded index searches it, pgstac gets its GeoJSON as sent). The child stops
    with the app (lifespan shutdown) or when the server process ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.parser = IntersectsParser()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_send(send))
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/search")
        ):
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        if len(body) > _BIG_BODY_BYTES:
            try:
                replaced = await self.parser.parse(body)
            except GeometryError as exc:
                await _error(400, "InvalidQueryParameter", str(exc))(scope, receive, send)
                return
            if replaced is not None:
                body, parsed = replaced
                scope = {**scope, BIG_INTERSECTS_KEY: parsed}
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                scope["headers"] = [*headers, (b"content-length", str(len(body)).encode())]
                messages = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, _replay(messages, receive), send)

    def _closing_send(self, send: Send) -> Send:
        async def closing_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await asyncio.to_thread(self.parser.close)
            await send(message)

        return closing_send


class _SearchRequestMiddleware:
    """Give both backends the same, explicit search request.

    - ``fields`` is resolved by the fields extension's rules (:func:`parse_fields`: the
      default set, include-only, exclude-only, include winning over exclude) into
      include and exclude paths that stac-fastapi-pgstac and the embedded backend apply
      alike; pgstac on its own would, e.g., return every property for
      ``{"include": [], "exclude": ["geometry"]}`` (the extension: the default set
      without the geometry) and drop ``properties.rank`` for
      ``-properties,+properties.rank``.
    - POST ``collections`` and ``ids`` given as a string (``"a,b"``, what GET takes)
      become arrays instead of a 400; stac-api-validator sends them so.
    - search answers are ``application/geo+json`` also when pgstac answers a ``fields``
      request with ``application/json``.

    A request this cannot read passes unchanged: the edge validation then names what is
    wrong.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        searching = scope["type"] == "http" and (
            path.endswith("/search") or (path.endswith("/items") and "/collections/" in path)
        )
        if not searching:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            query = scope.get("query_string", b"").decode("latin-1")
            if "fields=" in query:
                scope = {**scope, "query_string": _explicit_fields_query(query).encode()}
        elif scope["method"] == "POST":
            scope, receive = await _explicit_search_body(scope, receive)

        async def geojson_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [
                    (k, _GEOJSON if k == b"content-type" and v == b"application/json" else v)
                    for k, v in message.get("headers", [])
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, geojson_send)


_GEOJSON = b"application/geo+json"


def _explicit_fields_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    out = []
    for key, value in pairs:
        if key == "fields":
            with contextlib.suppress(InvalidQueryParameter):  # the edge names what is wrong
                value = fields_as_query(*parse_fields(value))
        out.append((key, value))
    return urlencode(out)


async def _explicit_search_body(scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
    messages, body = await _read_body(receive, up_to=_BIG_BODY_BYTES)
    complete = not messages[-1].get("more_body", False) and len(body) <= _BIG_BODY_BYTES
    changed = _explicit_search(body) if complete else None
    if changed is not None:
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(changed)).encode())]}
        messages = [{"type": "http.request", "body": changed, "more_body": False}]
    return scope, _replay(messages, receive)


async def _read_body(receive: Receive, up_to: int | None = None) -> tuple[list[Message], bytes]:
    """The request's messages and body as received, all of it or until more than
    ``up_to`` bytes have come (the rest is left for :func:`_replay`'s caller)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False) or (up_to is not None and size > up_to):
            break
    return messages, b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives ``messages`` again, then what ``receive`` still has."""
    pending = iter(messages)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay


def _explicit_search(body: bytes) -> bytes | None:
    """The POST /search body with ``fields``, ``collections`` and ``ids`` made explicit,
    or None when nothing changes (or the body is not a JSON object)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    changed = False
    for name in ("collections", "ids"):
        if isinstance(data.get(name), str):
            data[name] = [v.strip() for v in data[name].split(",") if v.strip()]
            changed = True
    if data.get("fields") is not None:
        try:
            explicit = fields_as_body(*parse_fields(data["fields"]))
        except InvalidQueryParameter:
            explicit = data["fields"]
        if explicit != data["fields"]:
            data["fields"] = explicit
            changed = True
    return orjson.dumps(data) if changed else None


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


def _stac_statuses(path: str, method: str) -> list[str]:
    wanted = ["400", "500", "503"]
    if "{" in path:
        wanted.append("404")
    if method == "post":
        wanted += ["413", "415"]
    return wanted


def _document_statuses(app: FastAPI) -> None:
    """The OpenAPI document lists every status the API answers, in the STAC error
    shape, and none it never answers (422: validation errors are 400 here); its own
    examples are requests the API accepts."""
    document_statuses(
        app,
        "StacApiError",
        {
            "type": "object",
            "required": ["code", "description"],
            "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
        },
        _stac_statuses,
    )
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for parameter in (
                    operation.get("parameters", []) if isinstance(operation, dict) else []
                ):
                    if parameter.get("name") == "sortby":  # stac-fastapi's "-gsd" is no field here
                        parameter.pop("examples", None)
                        parameter["example"] = "-datetime"
        _drop_unusable_examples(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_unusable_examples(node: Any) -> None:
    """Remove request-body examples naming sort fields the API cannot sort on."""
    if isinstance(node, dict):
        for key in ("examples", "example"):
            value = node.get(key)
            if value is not None and "gsd" in orjson.dumps(value).decode():
                node.pop(key)
        for value in node.values():
            _drop_unusable_examples(value)
    elif isinstance(node, list):
        for value in node:
            _drop_unusable_examples(value)


def _stac_error_body(status: int, code: str, message: str, _request_id: str) -> JSONResponse:
    return _error(status, code, message)


def _harden(api: StacApi, settings: Settings) -> ASGIApp:
    """The HTTP rules of every twinmesh service (twinmesh.gateways.http: body limit,
    request ids, a 500 that says only "internal error", one access line) around the
    STAC API's own edge validation and error shape."""
    app = api.app
    # The local store's files (Zarr chunks, result files) for the asset hrefs.
    for route in data_routes(local_root(settings.resolved_store_url)):
        app.router.routes.append(route)
    api.add_route_dependencies(
        scopes=_SEARCH_ROUTES,  # type: ignore[arg-type]
        dependencies=[Depends(_validate_search_parameters)],
    )
    api.add_route_dependencies(
        scopes=[{"path": "/collections", "method": "GET"}],  # type: ignore[list-item]
        dependencies=[Depends(_validate_collection_search)],
    )
    install_stac_error_handlers(app)
    _document_statuses(app)
    if settings.stac.public_url:
        app.add_middleware(_PublicUrlMiddleware, public_url=settings.stac.public_url)
    app.state.twinmesh_settings = settings
    # Outermost first: the fields rules then apply to a big body's stand-in too.
    app.add_middleware(_SearchRequestMiddleware)
    app.add_middleware(_BigIntersectsMiddleware)
    rules = HttpRules(
        max_body_bytes=settings.stac.max_body_bytes,
        error_body=_stac_error_body,
        logger=logger,
        too_large_code="PayloadTooLarge",
        internal_code="InternalServerError",
    )
    return guard(app, rules)


def create_app(settings: Settings) -> ASGIApp:
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
            dsn,
            title=API_TITLE,
            description=description,
            on_startup=on_startup,
            data_root=local_root(settings.resolved_store_url),
        )
    elif backend == "embedded":

        def on_startup() -> object:
            return _sync_embedded_index(settings)

        api = create_embedded_api(
            embedded_index_path(settings),
            title=API_TITLE,
            description=description,
            on_startup=on_startup,
            data_root=local_root(settings.resolved_store_url),
        )
    else:  # pragma: no cover - settings validate the literal
        raise ValueError(f"unknown STAC backend {backend!r}; expected embedded or pgstac")
    return _harden(api, settings)


#: How ``serve`` hands its settings to its worker processes (JSON).
_SETTINGS_ENV = "TWINMESH_STAC_SERVE_SETTINGS"


def create_app_from_environment() -> ASGIApp:
    """The app of one worker process of :func:`serve` (uvicorn's factory)."""
    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(Settings.model_validate_json(os.environ[_SETTINGS_ENV]))


def serve(settings: Settings) -> None:
    """Run the STAC API with uvicorn on ``settings.stac.host:port`` until stopped, in
    ``settings.stac.workers`` processes (the catalogue is loaded once, before they start;
    each then finds it unchanged)."""
    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = {**uvicorn_options(), "log_level": "info"}
    workers, host, port = settings.stac.workers, settings.stac.host, settings.stac.port
    if workers <= 1:
        uvicorn.run(create_app(settings), host=host, port=port, **options)
        return
    if settings.stac.backend == "pgstac":
        _sync_pgstac(settings)
    else:
        _sync_embedded_index(settings)
    os.environ[_SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run(
        "twinmesh.stac.api.app:create_app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        **options,
    )


if __name__ == "__main__":
    serve(load_settings())
