"""The scale STAC API backend: stac-fastapi-pgstac on PostgreSQL + PostGIS + pgstac.

When one machine is not enough, the same static catalogue is loaded into pgstac
(:func:`load_catalog_pgstac`: migrations, then an idempotent upsert of collections
and items) and served by stac-fastapi-pgstac (:func:`create_pgstac_api`). Both take
the connection from one libpq DSN (``settings.stac.pgstac_dsn``) rather than from
stac-fastapi-pgstac's own ``PG*`` environment variables.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attr
import orjson
import psycopg
from fastapi import FastAPI
from geojson_pydantic.geometries import Geometry, parse_geometry_obj
from psycopg.conninfo import conninfo_to_dict
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pypgstac.migrate import Migrate
from shapely.geometry import mapping
from stac_fastapi.api.app import StacApi
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, Settings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.types.errors import InvalidQueryParameter
from stac_fastapi.types.requests import get_base_url
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from twinmesh.stac.api.assets import publish_assets
from twinmesh.stac.api.embedded import (
    BIG_INTERSECTS_KEY,
    CatalogLoad,
    bbox_geometry,
    parse_bbox,
    read_catalog,
    read_document,
    updated_fingerprint,
)

__all__ = [
    "TwinmeshPgstacClient",
    "create_pgstac_api",
    "load_catalog_pgstac",
    "postgres_settings_from_dsn",
]

logger = logging.getLogger(__name__)

_STATE_TABLE = "public.twinmesh_catalog_state"


def postgres_settings_from_dsn(dsn: str, **pool: Any) -> PostgresSettings:
    """stac-fastapi-pgstac's connection settings from a libpq URL or key=value DSN."""
    parts = conninfo_to_dict(dsn)
    missing = [k for k in ("host", "dbname") if not parts.get(k)]
    if missing:
        raise ValueError(
            f"pgstac DSN lacks {', '.join(missing)}; expected e.g. "
            "postgresql://user:password@127.0.0.1:5432/twinmesh"
        )
    return PostgresSettings(
        pguser=str(parts.get("user") or "postgres"),
        pgpassword=str(parts.get("password") or ""),
        pghost=str(parts["host"]),
        pgport=int(parts.get("port") or 5432),
        pgdatabase=str(parts["dbname"]),
        **pool,
    )


def _bbox_as_intersects(bbox: Any) -> Geometry | None:
    """A bbox pgstac would get wrong, as the ``intersects`` geometry it means; else None.

    pgstac turns every bbox into ``ST_MakeEnvelope``, which is wrong in two cases:

    - a zero-width or zero-height box is a collapsed, invalid polygon, and PostGIS
      3.3 / GEOS 3.11 then answer ``ST_Intersects`` false for every non-rectangular
      item, even one whose interior holds the point; sent as the point or line it
      is, the search is answered correctly;
    - a box whose west exceeds its east crosses the antimeridian, and the envelope
      silently swaps the two, searching the rest of the world instead; sent as the
      MultiPolygon of its two parts, it searches what the STAC API means.
    """
    if not bbox:
        return None
    west, south, east, north = parse_bbox(list(bbox))
    if west < east and south < north:
        return None
    return parse_geometry_obj(mapping(bbox_geometry((west, south, east, north))))


def _send_raw_intersects(search_request: Any, geojson: bytes) -> None:
    """Make pgstac get the request's real ``intersects`` (a big polygon parsed in a child
    process, see ``twinmesh.stac.api.big_intersects``) where the model holds its
    bounding box.

    stac-fastapi-pgstac sends the model to pgstac as ``model_dump_json()``; the GeoJSON
    goes into that JSON as the bytes the client sent (``orjson.Fragment``, unparsed)
    rather than into the model: validating a 100 000 vertex geometry with pydantic
    takes a second and holds the GIL (it would stall every other client, which is what
    the stand-in avoids).
    """
    dump = search_request.model_dump_json

    def model_dump_json(**kwargs: Any) -> str:
        data = orjson.loads(dump(**kwargs))
        data["intersects"] = orjson.Fragment(geojson)
        return orjson.dumps(data).decode()

    object.__setattr__(search_request, "model_dump_json", model_dump_json)


#: Conformance classes of stac-fastapi-pgstac's extensions that twinmesh does not offer.
_REFUSED_CONFORMANCE = re.compile(r"#query$|collection-search#(fields|filter|query|sort)$")


@attr.s
class TwinmeshPgstacClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with two pgstac defects worked around.

    - pgstac drops ``properties.datetime`` when it is null (items described by
      ``start_datetime``/``end_datetime``), which breaks the STAC item schema (pgstac
      issues #158, #425): the key is restored as ``null`` on the way out.
    - a degenerate bbox (a point or a line, ``minx == maxx`` or ``miny == maxy``)
      misses non-rectangular items in pgstac, and a bbox crossing the antimeridian
      (``minx > maxx``) is searched as its complement; both are sent as
      ``intersects`` instead (:func:`_bbox_as_intersects`).
    """

    landing_page_id: str = attr.ib(default="twinmesh")
    #: The local store's directory: asset hrefs in it are answered as /data URLs.
    data_root: Path | None = attr.ib(default=None)

    def conformance_classes(self) -> list[str]:
        """What the edge lets through, not all stac-fastapi-pgstac could do: the query
        extension and collection search's fields, filter, query and sort are answered
        with a 400 naming the parameter (as on the embedded backend), so they are not
        claimed either."""
        return [c for c in super().conformance_classes() if not _REFUSED_CONFORMANCE.search(c)]

    async def all_collections(self, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        collections = await super().all_collections(request=request, **kwargs)
        for collection in collections.get("collections", []):
            publish_assets(collection, str(get_base_url(request)), self.data_root)
        return collections

    async def get_collection(  # type: ignore[override]
        self, collection_id: str, request: Request, **kwargs: Any
    ) -> Any:
        collection = await super().get_collection(collection_id, request=request, **kwargs)
        return publish_assets(collection, str(get_base_url(request)), self.data_root)

    async def _search_base(self, search_request: Any, request: Request) -> Any:  # type: ignore[override]
        geometry = _bbox_as_intersects(getattr(search_request, "bbox", None))
        if geometry is not None:
            search_request = search_request.model_copy(
                update={"bbox": None, "intersects": geometry}
            )
        big = request.scope.get(BIG_INTERSECTS_KEY)
        if big is not None:
            _send_raw_intersects(search_request, big.geojson)
        try:
            item_collection = await super()._search_base(search_request, request=request)
        except Exception as exc:
            # pgstac raises a plain exception for a token naming no item (asyncpg's
            # RaiseError): a client's mistake, not a server error.
            text = str(exc)
            if "Invalid paging token" not in text and "Could not find item using token" not in text:
                raise
            token = getattr(search_request, "token", None)
            raise InvalidQueryParameter(
                f"token {token!r} is not a paging token of this API; follow the next link"
            ) from None
        if big is not None:
            # The next page's body would repeat the stand-in box: the client merges the
            # token into its own request instead (STAC API paging), as on the embedded.
            for link in item_collection.get("links", []):
                if link.get("method") == "POST" and isinstance(link.get("body"), dict):
                    link["body"] = {"token": link["body"].get("token")}
                    link["merge"] = True
        base = str(get_base_url(request))
        for feature in item_collection.get("features", []):
            properties = feature.get("properties")
            if isinstance(properties, dict):
                properties.setdefault("datetime", None)
            publish_assets(feature, base, self.data_root)
        return item_collection


def create_pgstac_api(
    dsn: str,
    *,
    title: str,
    description: str,
    version: str = "0.1.0",
    on_startup: Callable[[], object] | None = None,
    data_root: Path | None = None,
) -> StacApi:
    """The stac-fastapi-pgstac application on the database at ``dsn``.

    ``on_startup`` runs in a worker thread before the connection pool opens (the
    catalogue is loaded there). All of stac-fastapi-pgstac's read extensions are on;
    transactions are off, since the static catalogue is the source of truth.
    """
    postgres = postgres_settings_from_dsn(dsn)
    settings = Settings(
        stac_fastapi_title=title,
        stac_fastapi_description=description,
        stac_fastapi_version=version,
        stac_fastapi_landing_id="twinmesh",
        enable_transactions_extensions=False,
        cors_origins=("*",),
        cors_methods=("GET", "POST", "OPTIONS"),
        cors_headers=("*",),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await run_in_threadpool(on_startup)
        await connect_to_db(app, postgres_settings=postgres)
        try:
            yield
        finally:
            await close_db_connection(app)

    return instantiate_api(
        # The client class, made with the store's directory for asset hrefs.
        client=functools.partial(TwinmeshPgstacClient, data_root=data_root),  # type: ignore[arg-type]
        extensions=Extensions(settings=settings),
        lifespan=lifespan,
        settings=settings,
    )


def _stored_fingerprint(dsn: str, catalog_root: str) -> str | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_STATE_TABLE,)).fetchone()
        if not (exists and exists[0]):
            return None
        row = conn.execute(
            f"SELECT fingerprint FROM {_STATE_TABLE} WHERE catalog_dir = %s", (catalog_root,)
        ).fetchone()
    return row[0] if row else None


def _store_fingerprint(dsn: str, catalog_root: str, fingerprint: str) -> None:
    """Remember what was loaded, as the DSN's own user (the loader may have switched role).

    Without the privilege to create the table the load still counts; only
    ``skip_if_unchanged`` then never skips.
    """
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_STATE_TABLE} ("
                " catalog_dir text PRIMARY KEY, fingerprint text NOT NULL,"
                " loaded_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                f"INSERT INTO {_STATE_TABLE} (catalog_dir, fingerprint) VALUES (%s, %s)"
                " ON CONFLICT (catalog_dir) DO UPDATE"
                " SET fingerprint = EXCLUDED.fingerprint, loaded_at = now()",
                (catalog_root, fingerprint),
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        logger.warning("pgstac: cannot record the loaded catalogue's fingerprint: %s", exc)


def _count_items(db: PgstacDB, collection_ids: list[str]) -> int:
    row = (
        db.connect()
        .execute("SELECT count(*) FROM pgstac.items WHERE collection = ANY(%s)", (collection_ids,))
        .fetchone()
    )
    return int(row[0]) if row else 0


#: Marks the queryables twinmesh registered (replaced at each load).
_QUERYABLE_MARK = "x-twinmesh-generated"
#: pgstac's own queryables (its migrations register them).
_PGSTAC_QUERYABLES = {"id", "geometry", "datetime", "start_datetime", "end_datetime"}


def _json_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _register_queryables(db: PgstacDB, kinds: dict[str, dict[str, set[str]]]) -> None:
    """Register the items' scalar properties as pgstac queryables with their types, so
    that filters and sorts compare numbers as numbers (pgstac compares a property it
    does not know as text: 10 < 9), as the embedded backend does, and /queryables
    lists them."""
    conn = db.connect()
    conn.execute(
        "DELETE FROM pgstac.queryables WHERE definition ->> %s = 'true'", (_QUERYABLE_MARK,)
    )
    for name, by_kind in sorted(kinds.items()):
        if name in _PGSTAC_QUERYABLES or len(by_kind) != 1:
            continue  # mixed types: left to pgstac's text comparison
        ((kind, collections),) = by_kind.items()
        definition = {"title": name, "type": kind, _QUERYABLE_MARK: True}
        conn.execute(
            "INSERT INTO pgstac.queryables (name, collection_ids, definition, property_wrapper)"
            " VALUES (%s, %s, %s::jsonb, %s)",
            (
                name,
                sorted(collections),
                orjson.dumps(definition).decode(),
                "to_float" if kind == "number" else "to_text",
            ),
        )


def load_catalog_pgstac(
    dsn: str,
    catalog_dir: str | Path,
    *,
    skip_if_unchanged: bool = False,
    prune: bool = True,
) -> CatalogLoad:
    """Load the static catalogue into pgstac; safe to run any number of times.

    Runs the pgstac migrations (installing pgstac on first use), then upserts the
    collections and items, so a reload changes what changed and duplicates nothing.
    With ``prune`` the items of the catalogue's collections that the catalogue no
    longer has are deleted, so pgstac serves what the embedded backend would. With
    ``skip_if_unchanged`` nothing is written when the catalogue's fingerprint equals
    the one recorded by the last load into this database.
    """
    started = time.perf_counter()
    catalog = read_catalog(catalog_dir)
    fingerprint = catalog.fingerprint()
    collection_ids = [c["id"] for c in catalog.collections]
    root = str(catalog.root)
    db = PgstacDB(dsn)
    try:
        Migrate(db).run_migration()
        if skip_if_unchanged and _stored_fingerprint(dsn, root) == fingerprint:
            return CatalogLoad(
                "pgstac",
                len(collection_ids),
                _count_items(db, collection_ids),
                fingerprint,
                time.perf_counter() - started,
                skipped=True,
            )
        loader = Loader(db)
        loader.load_collections(iter(catalog.collections), insert_mode=Methods.upsert)
        seen: dict[str, list[str]] = {cid: [] for cid in collection_ids}
        kinds: dict[str, dict[str, set[str]]] = {}

        def items() -> Iterator[dict[str, Any]]:
            for item in catalog.items():
                seen[item["collection"]].append(item["id"])
                for name, value in (item.get("properties") or {}).items():
                    kind = _json_kind(value)
                    if kind is not None:
                        kinds.setdefault(name, {}).setdefault(kind, set()).add(item["collection"])
                yield item

        loader.load_items(items(), insert_mode=Methods.upsert)
        _register_queryables(db, kinds)
        if prune:
            conn = db.connect()
            for collection_id, ids in seen.items():
                deleted = conn.execute(
                    "DELETE FROM pgstac.items WHERE collection = %s AND NOT (id = ANY(%s))",
                    (collection_id, ids),
                ).rowcount
                if deleted:
                    logger.info(
                        "pgstac: removed %d items of %s no longer in the catalogue",
                        deleted,
                        collection_id,
                    )
        _store_fingerprint(dsn, root, fingerprint)
        n_items = _count_items(db, collection_ids)
    finally:
        pool = db.pool
        db.disconnect()
        if pool is not None:
            pool.close()
    seconds = time.perf_counter() - started
    logger.info(
        "pgstac: loaded %d collections, %d items from %s in %.2fs",
        len(collection_ids),
        n_items,
        root,
        seconds,
    )
    return CatalogLoad("pgstac", len(collection_ids), n_items, fingerprint, seconds)


def upsert_from_catalog(
    dsn: str,
    catalog_dir: str | Path,
    collection_path: str | Path,
    item_paths: Sequence[str | Path],
    changes: Sequence[tuple[str, bytes | None, bytes | None]],
) -> int:
    """Upsert one collection document and some of its items, read from their files in
    the static catalogue, into pgstac (what a newly published result needs), without
    reading the rest of the catalogue. The recorded fingerprint is moved on by
    ``changes`` (see :func:`updated_fingerprint`), so the next start-up does not reload
    it all; when none was recorded, none is. Returns the number of items upserted."""
    root = str(Path(catalog_dir).resolve())
    collection = read_document(collection_path)
    items = [{**read_document(path), "collection": collection["id"]} for path in item_paths]
    before = _stored_fingerprint(dsn, root)
    db = PgstacDB(dsn)
    try:
        Migrate(db).run_migration()
        loader = Loader(db)
        loader.load_collections(iter([collection]), insert_mode=Methods.upsert)
        loader.load_items(iter(items), insert_mode=Methods.upsert)
    finally:
        pool = db.pool
        db.disconnect()
        if pool is not None:
            pool.close()
    if before is not None:
        _store_fingerprint(dsn, root, updated_fingerprint(before, changes))
    return len(items)
