"""The embedded STAC API backend: the static catalogue indexed in one SQLite file.

A laptop runs the mesh without a database server, so the catalogue search of
twinmesh defaults to this backend. :func:`load_catalog_embedded` reads the static
catalogue (``catalog.json`` → collections → items, relative links) and writes an
index: a table of collections, a table of items with sortable datetime and bbox
columns, and an R*Tree on the bboxes. :class:`EmbeddedIndex` answers item search
with the R*Tree as spatial prefilter, exact bbox columns for rectangles and shapely
for everything else, and keyset paging tokens. :class:`EmbeddedCoreClient` is the
stac-fastapi client over it, so routes, request models and conformance come from
stac-fastapi exactly as for the pgstac backend.

The normalised reading of the static catalogue (:func:`read_catalog`) and its
fingerprint (:func:`catalog_fingerprint`) are shared with the pgstac backend, so both
serve the same documents.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import attr
import orjson
import shapely
from brotli_asgi import BrotliMiddleware
from fastapi import FastAPI
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
    box,
    shape,
)
from shapely.geometry.base import BaseGeometry
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from stac_fastapi.api.models import (
    ItemCollectionUri,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (
    CollectionSearchExtension,
    FieldsExtension,
    FreeTextExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.extensions.free_text.free_text import FreeTextConformanceClasses
from stac_fastapi.extensions.sort import ItemCollectionSortExtension, SearchSortExtension
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import InvalidQueryParameter, NotFoundError
from stac_fastapi.types.requests import get_base_url
from stac_fastapi.types.rfc3339 import rfc3339_str_to_datetime
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request

from twinmesh.core.errors import DataNotReady
from twinmesh.stac.api.assets import publish_assets
from twinmesh.stac.api.big_intersects import GeometryError, parse_geometry

__all__ = [
    "INFERRED_LINK_RELS",
    "CatalogLoad",
    "EmbeddedCoreClient",
    "EmbeddedIndex",
    "SearchPage",
    "SearchQuery",
    "StaticCatalog",
    "bbox_geometry",
    "bbox_parts",
    "catalog_fingerprint",
    "create_embedded_api",
    "index_fingerprint",
    "item_time_range_us",
    "load_catalog_embedded",
    "make_search_query",
    "parse_bbox",
    "parse_datetime_interval",
    "parse_intersects",
    "parse_sortby",
    "read_catalog",
]

logger = logging.getLogger(__name__)

#: Link relations the API computes from its own URLs; stored copies are dropped.
INFERRED_LINK_RELS = frozenset({"self", "parent", "collection", "root", "item", "items", "child"})
#: Bump when the SQLite layout changes: an index of another version is rebuilt.
INDEX_SCHEMA_VERSION = "2"
#: The STAC API cap on a page (stac-fastapi crops ``limit`` to the same value).
MAX_LIMIT = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_GEO_JSON = "application/geo+json"
_JSON = "application/json"


# --------------------------------------------------------------------------------------
# Reading the static catalogue (shared with the pgstac backend)
# --------------------------------------------------------------------------------------
def _absolute_href(href: str, base_dir: str) -> str:
    if "://" in href or os.path.isabs(href):
        return href
    return os.path.normpath(os.path.join(base_dir, href))


def _normalise(doc: dict[str, Any], doc_path: str) -> dict[str, Any]:
    """Drop inferred links, make the remaining link and asset hrefs absolute."""
    base_dir = os.path.dirname(doc_path)
    doc["links"] = [
        {**link, "href": _absolute_href(link["href"], base_dir)}
        for link in doc.get("links", [])
        if link.get("rel") not in INFERRED_LINK_RELS and "href" in link
    ]
    assets = doc.get("assets")
    if isinstance(assets, dict):
        for asset in assets.values():
            if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                asset["href"] = _absolute_href(asset["href"], base_dir)
    return doc


def _read_json(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return orjson.loads(fh.read())


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One collection or item file of the static catalogue, as a load reads it (hrefs
    made absolute, inferred links dropped)."""
    real = os.path.realpath(path)
    return _normalise(_read_json(real), real)


def _links(doc: dict[str, Any], rel: str, doc_path: str) -> list[str]:
    base_dir = os.path.dirname(doc_path)
    return [
        _absolute_href(link["href"], base_dir)
        for link in doc.get("links", [])
        if link.get("rel") == rel and isinstance(link.get("href"), str)
    ]


@dataclass
class StaticCatalog:
    """A static STAC catalogue on disk, read into API-ready documents.

    ``collections`` are read eagerly (few); :meth:`items` streams the items so a
    large catalogue is never held in memory at once. Every document has its inferred
    links (self, parent, root, ...) removed, since the API writes its own, and every
    other relative href made absolute.
    """

    root: Path
    catalog: dict[str, Any]
    collections: list[dict[str, Any]]
    _documents: list[str] = field(default_factory=list, repr=False)
    _item_files: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def item_files(self) -> Iterator[tuple[str, str, bytes | None]]:
        """(collection id, path, bytes or None if the file is missing) of every linked
        item file, in catalogue order. A few threads open and read the files: that waits
        on the file system, not on the CPU, and a large catalogue has 100 000 of them."""
        paths = [(cid, path) for cid, paths in self._item_files.items() for path in paths]
        step = _READ_BATCH // _READ_THREADS
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            for start in range(0, len(paths), _READ_BATCH):
                batch = paths[start : start + _READ_BATCH]
                names = [path for _, path in batch]
                parts = pool.map(
                    _read_all, [names[i : i + step] for i in range(0, len(names), step)]
                )
                contents = [data for part in parts for data in part]
                yield from (
                    (cid, path, data) for (cid, path), data in zip(batch, contents, strict=True)
                )

    def item(self, collection_id: str, path: str, data: bytes) -> dict[str, Any]:
        """The item document of one item file, as served (see :meth:`item_files`)."""
        item = _normalise(orjson.loads(data), path)
        item.setdefault("collection", collection_id)
        if item["collection"] != collection_id:
            logger.warning(
                "item %s names collection %r but is linked from %r; using the latter",
                path,
                item["collection"],
                collection_id,
            )
            item["collection"] = collection_id
        return item

    def items(self) -> Iterator[dict[str, Any]]:
        for collection_id, path, data in self.item_files():
            if data is None:
                logger.warning("collection %r links a missing item %s", collection_id, path)
                continue
            yield self.item(collection_id, path, data)

    @property
    def item_count(self) -> int:
        return sum(len(paths) for paths in self._item_files.values())

    def relative(self, path: str) -> str:
        """``path`` relative to the catalogue's folder, as fingerprints name it."""
        return path.removeprefix(str(self.root) + os.sep)

    def documents_fingerprint(self) -> int:
        """The catalogue and collection documents' share of :meth:`fingerprint`."""
        return sum(fingerprint_term(self.relative(p), _read_bytes(p)) for p in self._documents)

    def fingerprint(self) -> str:
        """A hash of every document served (paths and bytes): changes when they do.

        Contents rather than modification times, so a rebuild that writes
        byte-identical files (the catalogue builder is idempotent) forces no re-index;
        only files reachable from ``catalog.json`` count, not whatever else the
        directory holds. It is a sum of one term per document
        (:func:`fingerprint_term`), so a change of a few documents updates it without
        reading the others (:func:`updated_fingerprint`).
        """
        total = self.documents_fingerprint()
        for _, path, data in self.item_files():
            total += fingerprint_term(self.relative(path), data)
        return _fingerprint_hex(total)


#: Threads reading item files, and how many files each round reads (bounds memory).
_READ_THREADS = 8
_READ_BATCH = 2048


def _read_all(paths: list[str]) -> list[bytes | None]:
    return [_read_bytes(path) for path in paths]


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def fingerprint_term(relative_path: str, data: bytes | None) -> int:
    """One document's share of a catalogue fingerprint (``data`` None: a linked file
    that is missing)."""
    content = hashlib.blake2b(data, digest_size=16).digest() if data is not None else b"missing"
    digest = hashlib.blake2b((relative_path + "\0").encode() + content, digest_size=16)
    return int.from_bytes(digest.digest(), "big")


def _fingerprint_hex(total: int) -> str:
    return format(total % (1 << 128), "032x")


def updated_fingerprint(
    fingerprint: str, changes: Sequence[tuple[str, bytes | None, bytes | None]]
) -> str:
    """The fingerprint after documents changed, from the one before: ``changes`` holds
    (path relative to the catalogue, bytes before or None if it was not part of the
    catalogue, bytes after or None if it no longer is)."""
    total = int(fingerprint, 16)
    for path, before, after in changes:
        if before is not None:
            total -= fingerprint_term(path, before)
        if after is not None:
            total += fingerprint_term(path, after)
    return _fingerprint_hex(total)


def read_catalog(catalog_dir: str | os.PathLike[str]) -> StaticCatalog:
    """Read ``catalog_dir/catalog.json`` and every collection reachable from it.

    Nested catalogues are followed; items linked directly from a catalogue (not from
    a collection) cannot be served by a STAC API and are skipped with a warning.
    """
    root = Path(catalog_dir).resolve()
    catalog_path = str(root / "catalog.json")
    if not os.path.isfile(catalog_path):
        raise FileNotFoundError(
            f"No static STAC catalogue at {catalog_path}: build the catalogue first "
            "(it is written to settings.catalog_dir)."
        )
    catalog = _read_json(catalog_path)
    collections: list[dict[str, Any]] = []
    item_files: dict[str, list[str]] = {}
    documents = [catalog_path]
    pending: list[str] = _links(catalog, "child", catalog_path)
    if _links(catalog, "item", catalog_path):
        logger.warning("%s links items outside any collection; they are not served", catalog_path)
    while pending:
        path = os.path.realpath(pending.pop(0))
        if path in documents:
            continue
        documents.append(path)
        doc = _read_json(path)
        pending.extend(_links(doc, "child", path))
        if doc.get("type") != "Collection":
            if _links(doc, "item", path):
                logger.warning("%s links items outside any collection; not served", path)
            continue
        item_paths = _links(doc, "item", path)
        collection = _normalise(doc, path)
        if collection["id"] in item_files:
            logger.warning("collection %r appears twice; keeping the first", collection["id"])
            continue
        collections.append(collection)
        item_files[collection["id"]] = item_paths
    return StaticCatalog(
        root=root,
        catalog=catalog,
        collections=collections,
        _documents=documents,
        _item_files=item_files,
    )


def catalog_fingerprint(catalog_dir: str | os.PathLike[str]) -> str:
    """The fingerprint of the catalogue at ``catalog_dir``; ``"missing"`` if there is none.

    See :meth:`StaticCatalog.fingerprint`: the index records it, and start-up compares
    it to decide whether the catalogue must be loaded again.
    """
    if not (Path(catalog_dir) / "catalog.json").is_file():
        return "missing"
    return read_catalog(catalog_dir).fingerprint()


@dataclass(frozen=True)
class CatalogLoad:
    """What a load did: how many collections and items, from which catalogue state."""

    backend: str
    collections: int
    items: int
    fingerprint: str
    seconds: float
    skipped: bool = False


# --------------------------------------------------------------------------------------
# Parsing search parameters (shared with the request validation in app.py)
# --------------------------------------------------------------------------------------
def _to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _ONE_US


def _item_time_us(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    return _to_us(datetime.fromisoformat(value))


def item_time_range_us(properties: dict[str, Any]) -> tuple[int, int, int] | None:
    """(datetime, start, end) of an item in µs since the epoch; None without any time.

    The range an item covers is ``start_datetime``..``end_datetime`` when both are
    given, else its instant ``datetime`` — the semantics pgstac uses, so both
    backends answer temporal searches alike.
    """
    instant = _item_time_us(properties.get("datetime"))
    start = _item_time_us(properties.get("start_datetime"))
    end = _item_time_us(properties.get("end_datetime"))
    if start is None or end is None:
        start = end = instant
    if start is None or end is None:
        return None
    if instant is None:
        instant = start
    return instant, start, end


def parse_bbox(values: Sequence[Any] | str) -> tuple[float, float, float, float]:
    """A search bbox as (west, south, east, north) in WGS84, or InvalidQueryParameter.

    Accepts 4 or 6 numbers (a 3D bbox's heights are ignored). Longitudes must lie in
    [-180, 180], latitudes in [-90, 90], and south must not exceed north. West greater
    than east is a box that crosses the antimeridian (STAC API, OGC API Features):
    :func:`bbox_parts` splits it into the two boxes it covers.
    """
    if isinstance(values, str):
        try:
            values = [float(v) for v in values.split(",")]
        except ValueError:
            raise InvalidQueryParameter(
                f"bbox {values!r} is not a comma-separated list of numbers; expected "
                "minx,miny,maxx,maxy, e.g. bbox=5.9,45.8,10.5,47.8"
            ) from None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidQueryParameter(f"bbox {list(values)!r} must contain only numbers") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    elif len(numbers) != 4:
        raise InvalidQueryParameter(
            f"bbox has {len(numbers)} values; expected 4 (minx,miny,maxx,maxy) or 6 "
            "(minx,miny,minz,maxx,maxy,maxz)"
        )
    minx, miny, maxx, maxy = numbers
    if not all(map(_finite, numbers)):
        raise InvalidQueryParameter(f"bbox {numbers} contains a value that is not finite")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InvalidQueryParameter(f"bbox longitudes {minx}, {maxx} must lie in [-180, 180]")
    if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidQueryParameter(f"bbox latitudes {miny}, {maxy} must lie in [-90, 90]")
    if miny > maxy:
        raise InvalidQueryParameter(
            f"bbox {numbers} has its south latitude {miny} above its north latitude {maxy}; "
            "expected minx,miny,maxx,maxy with miny <= maxy (minx > maxx is allowed: "
            "such a box crosses the antimeridian)"
        )
    return minx, miny, maxx, maxy


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def bbox_parts(
    bbox: tuple[float, float, float, float],
) -> list[tuple[float, float, float, float]]:
    """The plain boxes (minx <= maxx) a validated bbox covers: one, or two across ±180.

    A bbox whose west exceeds its east crosses the antimeridian: it covers
    [west, 180] and [-180, east].
    """
    west, south, east, north = bbox
    if west <= east:
        return [(west, south, east, north)]
    return [(west, south, 180.0, north), (-180.0, south, east, north)]


def _box_geometry(minx: float, miny: float, maxx: float, maxy: float) -> BaseGeometry:
    """A plain box as the valid geometry it is: a polygon, or a line or point if collapsed."""
    if minx == maxx and miny == maxy:
        return Point(minx, miny)
    if minx == maxx or miny == maxy:
        return LineString([(minx, miny), (maxx, maxy)])
    return box(minx, miny, maxx, maxy)


def bbox_geometry(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    """A validated bbox as one valid geometry, for exact intersection tests.

    A zero-width or zero-height box becomes the point or line it is, rather than a
    collapsed polygon, which GEOS and PostGIS do not treat as valid. A box crossing
    the antimeridian becomes a MultiPolygon of its two parts (a MultiLineString,
    MultiPoint or GeometryCollection if a part has collapsed, e.g. ``west == 180``).
    """
    parts = [_box_geometry(*part) for part in bbox_parts(bbox)]
    if len(parts) == 1:
        return parts[0]
    kinds = {type(part) for part in parts}
    if kinds == {Polygon}:
        return MultiPolygon(parts)
    if kinds == {LineString}:
        return MultiLineString(parts)
    if kinds == {Point}:
        return MultiPoint(parts)
    return GeometryCollection(parts)


_DATETIME_EXAMPLES = (
    "expected an RFC 3339 date-time or interval: 2020-01-01T00:00:00Z, "
    "2020-01-01T00:00:00Z/2020-12-31T23:59:59Z, ../2020-12-31T23:59:59Z or "
    "2020-01-01T00:00:00+01:00/.. (a plain date such as 2020-01-01 is not a date-time: "
    "write 2020-01-01T00:00:00Z/2020-01-01T23:59:59Z for a whole day)"
)


def parse_datetime_interval(value: str) -> tuple[int | None, int | None]:
    """An RFC 3339 instant or interval as (start_us, end_us); None for an open end.

    Accepts ``T``, ``T1/T2``, ``../T2``, ``T1/..`` (an empty side is open too), each
    side an RFC 3339 date-time as the STAC API requires (plain dates are refused, as
    stac-fastapi-pgstac and the conformance validators refuse them). Raises
    InvalidQueryParameter for anything else, for ``../..``, for times outside the
    years 1-9999 in UTC and for intervals whose start is after their end; messages
    quote ``value`` as given and show the accepted forms.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidQueryParameter(f"datetime is empty; {_DATETIME_EXAMPLES}")
    parts = value.split("/")
    if len(parts) > 2:
        raise InvalidQueryParameter(
            f"datetime {value!r} has more than one '/'; expected an instant or start/end"
        )
    bounds: list[int | None] = []
    for part in parts:
        if part in ("", "..") and len(parts) == 2:
            bounds.append(None)
            continue
        try:
            moment = rfc3339_str_to_datetime(part)
        except (ValueError, OverflowError):
            raise InvalidQueryParameter(
                f"datetime {part!r} is not an RFC 3339 date-time; {_DATETIME_EXAMPLES}"
            ) from None
        try:
            bounds.append(_to_us(moment.astimezone(UTC) if moment.tzinfo else moment))
        except OverflowError:
            raise InvalidQueryParameter(
                f"datetime {part!r} is out of range: in UTC it must lie within the years 1 to 9999"
            ) from None
    if len(bounds) == 1:
        return bounds[0], bounds[0]
    start, end = bounds
    if start is None and end is None:
        raise InvalidQueryParameter("datetime '../..' is open at both ends; give one bound")
    if start is not None and end is not None and start > end:
        raise InvalidQueryParameter(
            f"datetime interval {value!r} starts after it ends; expected start <= end"
        )
    return start, end


#: Where the request scope carries a big intersects parsed in a child process
#: (a :class:`twinmesh.stac.api.big_intersects.BigIntersects`).
BIG_INTERSECTS_KEY = "twinmesh.big_intersects"


def parse_intersects(value: Any) -> BaseGeometry:
    """A GeoJSON geometry (dict, Feature or JSON text) as a valid shapely geometry."""
    try:
        return parse_geometry(value)
    except GeometryError as exc:
        raise InvalidQueryParameter(str(exc)) from None


_SORT_COLUMNS = {
    "datetime": "dt_us",
    "properties.datetime": "dt_us",
    "start_datetime": "start_us",
    "properties.start_datetime": "start_us",
    "end_datetime": "end_us",
    "properties.end_datetime": "end_us",
    "id": "id",
    "collection": "collection",
}


#: A property name to sort on (embedded in a JSON path, so only these characters).
_PROPERTY_NAME = re.compile(r"[A-Za-z0-9_:\-]{1,128}")
_PROPERTY_PREFIX = "p:"


def _sort_sql(column: str) -> str:
    """The SQL of a sort column: an index column, or an item property from the JSON."""
    if column.startswith(_PROPERTY_PREFIX):
        return f"json_extract(i.doc, '$.properties.\"{column[len(_PROPERTY_PREFIX) :]}\"')"
    return f"i.{column}"


def _order_sql(column: str, direction: str) -> str:
    # PostgreSQL's (and so pgstac's) order: missing values last ascending, first descending.
    nulls = "NULLS FIRST" if direction == "desc" else "NULLS LAST"
    return f"{_sort_sql(column)} {direction.upper()} {nulls}"


def parse_sortby(sortby: Any) -> list[tuple[str, str]]:
    """``sortby`` (GET strings ``-datetime`` or POST objects) as (column, asc|desc)."""
    if not sortby:
        return []
    if isinstance(sortby, str):
        sortby = sortby.split(",")
    result: list[tuple[str, str]] = []
    for entry in sortby:
        if isinstance(entry, str):
            entry = entry.strip()
            direction = "desc" if entry.startswith("-") else "asc"
            name = entry.lstrip("+-").strip()
        else:
            if hasattr(entry, "model_dump"):
                entry = entry.model_dump()
            name = str(entry.get("field", ""))
            direction = str(getattr(entry.get("direction"), "value", entry.get("direction")))
            direction = (direction or "asc").lower()
        column = _SORT_COLUMNS.get(name)
        if column is None:
            prop = name.removeprefix("properties.")
            if not _PROPERTY_NAME.fullmatch(prop):
                raise InvalidQueryParameter(
                    f"cannot sort by {name!r}; sort by datetime, start_datetime, "
                    "end_datetime, id, collection or an item property (see /queryables)"
                )
            column = f"{_PROPERTY_PREFIX}{prop}"
        if direction not in ("asc", "desc"):
            raise InvalidQueryParameter(f"sort direction {direction!r} must be asc or desc")
        if column not in (c for c, _ in result):
            result.append((column, direction))
    return result


# --------------------------------------------------------------------------------------
# The SQLite index
# --------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE collections (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE items (
    rowid INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    dt_us INTEGER NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    minx REAL, miny REAL, maxx REAL, maxy REAL,
    is_box INTEGER NOT NULL DEFAULT 0,
    geom BLOB,
    doc BLOB NOT NULL,
    UNIQUE (collection, id)
);
CREATE VIRTUAL TABLE items_rtree USING rtree(id, minx, maxx, miny, maxy);
"""

_INDEXES = """
CREATE INDEX items_dt ON items (dt_us, id, collection);
CREATE INDEX items_collection_dt ON items (collection, dt_us, id);
CREATE INDEX items_start ON items (start_us);
CREATE INDEX items_collection_start ON items (collection, start_us);
CREATE INDEX items_end ON items (end_us);
CREATE INDEX items_id ON items (id);
ANALYZE;
"""


def _rectangle_bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """Bounds of a GeoJSON polygon that is an axis-aligned rectangle, else None.

    Most catalogue footprints are such boxes; recognising them from the coordinates
    spares building a shapely geometry per item, and their bbox test is exact.
    """
    if geometry.get("type") != "Polygon":
        return None
    rings = geometry.get("coordinates") or []
    if len(rings) != 1 or len(rings[0]) != 5:
        return None
    ring = rings[0]
    try:
        points = [(float(p[0]), float(p[1])) for p in ring]
    except (TypeError, ValueError, IndexError):
        return None
    if points[0] != points[4] or len(set(points[:4])) != 4:
        return None
    xs = {x for x, _ in points}
    ys = {y for _, y in points}
    if len(xs) != 2 or len(ys) != 2:
        return None
    if any(a[0] != b[0] and a[1] != b[1] for a, b in zip(points, points[1:], strict=False)):
        return None
    return min(xs), min(ys), max(xs), max(ys)


def _item_row(item: dict[str, Any]) -> tuple[Any, ...] | None:
    times = item_time_range_us(item.get("properties") or {})
    if times is None:
        logger.warning(
            "item %s/%s has neither datetime nor start/end_datetime; not indexed",
            item.get("collection"),
            item.get("id"),
        )
        return None
    bounds: tuple[float, float, float, float] | tuple[None, None, None, None]
    bounds = (None, None, None, None)
    is_box = 0
    geom_wkb = None
    geometry = item.get("geometry")
    if geometry:
        rectangle = _rectangle_bounds(geometry)
        if rectangle is not None:
            bounds, is_box = rectangle, 1
        else:
            geom = shape(geometry)
            if not geom.is_empty:
                bounds = geom.bounds
                geom_wkb = shapely.to_wkb(geom)
    return (
        item["collection"],
        item["id"],
        *times,
        *bounds,
        is_box,
        geom_wkb,
        orjson.dumps(item),
    )


#: An item row in, replacing one of the same collection and id (a catalogue may link
#: an item twice).
_UPSERT_ITEM = (
    "INSERT INTO items (collection, id, dt_us, start_us, end_us, minx, miny,"
    " maxx, maxy, is_box, geom, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (collection, id) DO UPDATE SET dt_us=excluded.dt_us,"
    " start_us=excluded.start_us, end_us=excluded.end_us,"
    " minx=excluded.minx, miny=excluded.miny, maxx=excluded.maxx,"
    " maxy=excluded.maxy, is_box=excluded.is_box, geom=excluded.geom,"
    " doc=excluded.doc"
)


def _upsert_item(conn: sqlite3.Connection, item: dict[str, Any]) -> int:
    """Insert or replace one item in the index; 1 if it was indexed, 0 if it cannot be."""
    row = _item_row(item)
    if row is None:
        return 0
    rowid = conn.execute(_UPSERT_ITEM + " RETURNING rowid", row).fetchone()[0]
    conn.execute("DELETE FROM items_rtree WHERE id = ?", (rowid,))
    if row[5] is not None:
        conn.execute(
            "INSERT INTO items_rtree (id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
            (rowid, row[5], row[7], row[6], row[8]),
        )
    return 1


def load_catalog_embedded(
    db_path: str | os.PathLike[str], catalog_dir: str | os.PathLike[str]
) -> CatalogLoad:
    """(Re)build the SQLite index at ``db_path`` from the static catalogue.

    The index is built in a temporary file next to ``db_path`` and moved over it with
    ``os.replace``: readers see the old index or the new one, never half of one, and a
    crash during the build leaves the old index in place. Servers holding the old file
    open notice the replacement on their next request.
    """
    started = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_dir)
    total = catalog.documents_fingerprint()

    def rows() -> Iterator[tuple[Any, ...]]:
        # The fingerprint is summed from the bytes read for the index: one read a file.
        nonlocal total
        for collection_id, path, data in catalog.item_files():
            total += fingerprint_term(catalog.relative(path), data)
            if data is None:
                logger.warning("collection %r links a missing item %s", collection_id, path)
                continue
            row = _item_row(catalog.item(collection_id, path, data))
            if row is not None:
                yield row

    with _replacing(db_path) as tmp_path:
        conn = sqlite3.connect(tmp_path)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(_SCHEMA)
            with conn:
                conn.executemany(
                    "INSERT INTO collections (id, position, doc) VALUES (?, ?, ?)",
                    [(c["id"], i, orjson.dumps(c)) for i, c in enumerate(catalog.collections)],
                )
                conn.executemany(_UPSERT_ITEM, rows())
                conn.execute(
                    "INSERT INTO items_rtree (id, minx, maxx, miny, maxy)"
                    " SELECT rowid, minx, maxx, miny, maxy FROM items WHERE minx IS NOT NULL"
                )
                fingerprint = _fingerprint_hex(total)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", INDEX_SCHEMA_VERSION),
                        ("catalog_dir", str(catalog.root)),
                        ("catalog_fingerprint", fingerprint),
                        ("built_at", datetime.now(UTC).isoformat()),
                        ("catalog_id", str(catalog.catalog.get("id", ""))),
                        ("catalog_title", str(catalog.catalog.get("title", ""))),
                        ("catalog_description", str(catalog.catalog.get("description", ""))),
                    ],
                )
            with conn:
                conn.execute(
                    "INSERT INTO meta (key, value)"
                    " SELECT 'max_duration_us', coalesce(max(end_us - start_us), 0) FROM items"
                )
            conn.executescript(_INDEXES)
            n_rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        finally:
            conn.close()
    seconds = time.perf_counter() - started
    logger.info(
        "embedded STAC index %s: %d collections, %d items in %.2fs",
        db_path,
        len(catalog.collections),
        n_rows,
        seconds,
    )
    return CatalogLoad("embedded", len(catalog.collections), n_rows, fingerprint, seconds)


def add_to_embedded_index(
    db_path: str | os.PathLike[str],
    catalog_dir: str | os.PathLike[str],
    collection_path: str | os.PathLike[str],
    item_paths: Sequence[str | os.PathLike[str]],
    fingerprint: str,
) -> CatalogLoad:
    """Index new or changed items of one collection without reading the rest of the
    catalogue: what a worker does when it publishes a result.

    The collection document and the items are read from their files in the static
    catalogue (already written there) and upserted into a copy of the index, which
    then replaces it as a rebuild would (readers see the old index or the new one; a
    crash leaves the old one). ``fingerprint`` is the catalogue's fingerprint after the
    change (:func:`updated_fingerprint`), recorded so that a restart does not rebuild.
    Without a current index the whole catalogue is loaded instead.
    """
    started = time.perf_counter()
    db_path = Path(db_path)
    if index_fingerprint(db_path) is None:
        return load_catalog_embedded(db_path, catalog_dir)
    collection = read_document(collection_path)
    items = [{**read_document(path), "collection": collection["id"]} for path in item_paths]
    with _replacing(db_path) as tmp_path:
        shutil.copyfile(db_path, tmp_path)
        conn = sqlite3.connect(tmp_path)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            with conn:
                position = conn.execute(
                    "SELECT coalesce((SELECT position FROM collections WHERE id = ?),"
                    " (SELECT coalesce(max(position), -1) + 1 FROM collections))",
                    (collection["id"],),
                ).fetchone()[0]
                conn.execute(
                    "INSERT OR REPLACE INTO collections (id, position, doc) VALUES (?, ?, ?)",
                    (collection["id"], position, orjson.dumps(collection)),
                )
                indexed = sum(_upsert_item(conn, item) for item in items)
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("catalog_fingerprint", fingerprint),
                        ("built_at", datetime.now(UTC).isoformat()),
                    ],
                )
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value)"
                    " SELECT 'max_duration_us', coalesce(max(end_us - start_us), 0) FROM items"
                )
            n_collections, n_rows = conn.execute(
                "SELECT (SELECT count(*) FROM collections), (SELECT count(*) FROM items)"
            ).fetchone()
        finally:
            conn.close()
    seconds = time.perf_counter() - started
    logger.info(
        "embedded STAC index %s: %d item(s) of %s added in %.3fs (%d items in all)",
        db_path,
        indexed,
        collection["id"],
        seconds,
        n_rows,
    )
    return CatalogLoad("embedded", n_collections, n_rows, fingerprint, seconds)


@contextmanager
def _replacing(db_path: Path) -> Iterator[Path]:
    """A temporary file next to ``db_path`` to write the new index into; on success it
    is synced and moved over ``db_path`` (readers see the old index or the new one,
    never half of one), on any error removed (the old index stays)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{db_path.name}.", suffix=".tmp", dir=db_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, db_path)
        _fsync_dir(db_path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def index_fingerprint(db_path: str | os.PathLike[str]) -> str | None:
    """The catalogue fingerprint an index was built from; None if absent or outdated."""
    path = Path(db_path)
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if meta.get("schema_version") != INDEX_SCHEMA_VERSION:
        return None
    return meta.get("catalog_fingerprint")


@dataclass(frozen=True)
class SearchQuery:
    """A validated item search; every field is optional and the fields are ANDed."""

    collections: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: BaseGeometry | None = None
    interval: tuple[int | None, int | None] | None = None
    limit: int = 10
    sortby: tuple[tuple[str, str], ...] = ()
    token: str | None = None
    #: A CQL2 filter (cql2.Expr), tested on each item the other conditions let through.
    filter: Any = None


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the token of the next page (None on the last)."""

    items: list[dict[str, Any]]
    next_token: str | None


def make_search_query(
    *,
    collections: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    bbox: Any = None,
    intersects: Any = None,
    datetime: str | None = None,
    limit: int | None = None,
    sortby: Any = None,
    token: str | None = None,
    filter_expr: Any = None,
    filter_lang: str | None = None,
    filter_crs: str | None = None,
) -> SearchQuery:
    """A validated :class:`SearchQuery` from STAC API search parameters (GET or POST form).

    Raises InvalidQueryParameter (a 400 in the API) for anything malformed.
    """
    if bbox is not None and intersects is not None:
        raise InvalidQueryParameter("bbox and intersects are mutually exclusive; give one")
    limit = 10 if limit is None else int(limit)
    if limit < 1:
        raise InvalidQueryParameter(f"limit {limit} must be a positive integer")
    return SearchQuery(
        collections=tuple(collections) if collections else None,
        ids=tuple(ids) if ids else None,
        bbox=parse_bbox(bbox) if bbox is not None else None,
        intersects=parse_intersects(intersects) if intersects is not None else None,
        interval=parse_datetime_interval(datetime) if datetime else None,
        limit=min(limit, MAX_LIMIT),
        sortby=tuple(parse_sortby(sortby)),
        token=token or None,
        filter=parse_filter(filter_expr, filter_lang, filter_crs),
    )


#: The only CRS of spatial literals in a filter (``filter-crs``): WGS84 longitude/latitude.
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def parse_filter(expr: Any, lang: str | None = None, crs: str | None = None) -> Any:
    """A CQL2 filter (text or JSON) as a validated ``cql2.Expr``; None without one.

    ``lang`` is ``cql2-text`` or ``cql2-json`` (default: JSON for an object, text for a
    string). Parsed by the ``cql2`` library (cql2-rs); any error is an
    InvalidQueryParameter quoting the parser.
    """
    if expr is None or expr == "":
        return None
    import cql2

    if crs not in (None, "", CRS84):
        raise InvalidQueryParameter(f"filter-crs {crs!r} is not supported; use {CRS84}")
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidQueryParameter(f"filter-lang {lang!r}: use cql2-text or cql2-json")
    try:
        if isinstance(expr, dict):
            if lang == "cql2-text":
                raise InvalidQueryParameter("filter-lang is cql2-text but the filter is JSON")
            parsed = cql2.parse_json(orjson.dumps(_between_as_three_args(expr)).decode())
        elif isinstance(expr, str):
            text = expr.strip()
            if lang == "cql2-json" or (lang is None and text.startswith("{")):
                parsed = cql2.parse_json(
                    orjson.dumps(_between_as_three_args(orjson.loads(text))).decode()
                )
            else:
                parsed = cql2.parse_text(text)
        else:
            raise InvalidQueryParameter("filter must be CQL2 text or a CQL2 JSON object")
        parsed.validate()
    except InvalidQueryParameter:
        raise
    except Exception as exc:  # cql2 raises ParseError, ValidationError, ValueError
        detail = " ".join(str(exc).split())
        raise InvalidQueryParameter(f"filter is not valid CQL2: {detail[:500]}") from None
    return parsed


def _between_as_three_args(node: Any) -> Any:
    """CQL2 JSON with the drafts' ``between`` (``[property, [low, high]]``, still sent
    by stac-api-validator and older clients, and taken by pgstac) in the standard's
    form ``[property, low, high]``; everything else unchanged."""
    if isinstance(node, list):
        return [_between_as_three_args(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _between_as_three_args(v) for k, v in node.items()}
    args = node.get("args")
    if (
        node.get("op") == "between"
        and isinstance(args, list)
        and len(args) == 2
        and isinstance(args[1], list)
        and len(args[1]) == 2
    ):
        node["args"] = [args[0], *args[1]]
    return node


def filter_matches(expr: Any, item: dict[str, Any]) -> bool:
    """Whether ``item`` satisfies the CQL2 filter. A comparison with a property the item
    lacks is not true (CQL2's unknown), as in pgstac."""
    try:
        return bool(expr.matches(item))
    except Exception:  # noqa: BLE001 - cql2 cannot reduce a missing property: no match
        return False


def select_fields(item: dict[str, Any], include: Sequence[str], exclude: Sequence[str]) -> dict:
    """The item reduced as the fields extension asks, as pgstac does it: with ``include``
    only those (dotted) paths plus ``id`` and ``collection``; ``exclude`` removes paths
    (never ``id`` or ``collection``)."""
    if include:
        out: dict[str, Any] = {k: item[k] for k in ("id", "collection") if k in item}
        for path in include:
            source: Any = item
            parts = path.split(".")
            for part in parts:
                if not isinstance(source, dict) or part not in source:
                    break
                source = source[part]
            else:
                target = out
                for part in parts[:-1]:
                    target = target.setdefault(part, {})
                    if not isinstance(target, dict):
                        break
                else:
                    target[parts[-1]] = source
    else:
        out = item
    for path in exclude:
        if path in ("id", "collection"):
            continue
        parts = path.split(".")
        holder: Any = out
        for part in parts[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(parts[-1], None)
    return out


#: The fields extension's default set: what ``fields`` with nothing to include or
#: exclude returns (``properties.datetime``, or the start and end of a range).
DEFAULT_FIELDS = (
    "type",
    "stac_version",
    "id",
    "geometry",
    "bbox",
    "links",
    "assets",
    "properties.datetime",
    "properties.start_datetime",
    "properties.end_datetime",
)


def _covers(outer: str, inner: str) -> bool:
    """Whether the path ``outer`` is ``inner`` or one of its parents."""
    return inner == outer or inner.startswith(outer + ".")


def parse_fields(fields: Any) -> tuple[list[str], list[str]]:
    """(include, exclude) from GET ``fields=a,-b`` (a string or its list of names) or
    POST ``{"include": [...], "exclude": [...]}``, resolved by the rules of the fields
    extension (v1.0.0) into paths both backends apply the same way:

    - nothing to include or exclude (``""``, ``{}``, both null or empty): the default
      set (:data:`DEFAULT_FIELDS`);
    - only ``exclude``: every field but those (GET ``-a``, or POST without ``include``);
      POST ``exclude`` with ``include`` given as null or ``[]``: the default set but those;
    - a field that is included is never excluded, nor are its parents
      (``-properties,+properties.rank`` keeps the rank);
    - an item keeps ``type`` whenever ``include`` picks fields, so it stays a GeoJSON
      Feature; ``id`` and ``collection`` are always kept.

    A result with an ``include`` is only those paths (plus the above); one with only
    ``exclude`` is the whole item without them. Applying this to its own output gives
    the same output.
    """
    if fields is None:
        raise InvalidQueryParameter(
            'fields must be "a,-b" (GET) or {"include": [...], "exclude": [...]} (POST), not null'
        )
    include_given = False
    if isinstance(fields, str):
        fields = fields.split(",")
    if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
        names = [f.strip() for f in fields if f.strip()]
        include = [n.lstrip("+") for n in names if not n.startswith("-")]
        exclude = [n[1:] for n in names if n.startswith("-")]
    else:
        if not isinstance(fields, dict):  # stac-fastapi's model: sets, empty when not given
            fields = {
                name: sorted(value)
                for name in ("include", "exclude")
                if (value := getattr(fields, name, None))
            }
        unknown = sorted(set(fields) - {"include", "exclude"})
        if unknown:
            raise InvalidQueryParameter(
                f"fields takes include and exclude, not {', '.join(map(repr, unknown))}"
            )
        parts = [fields.get(name) or [] for name in ("include", "exclude")]
        if not all(isinstance(p, list) and all(isinstance(x, str) for x in p) for p in parts):
            raise InvalidQueryParameter(
                'fields must be "a,-b" (GET) or {"include": [...], "exclude": [...]} (POST)'
            )
        include, exclude = parts
        include_given = "include" in fields
    if not include and (not exclude or include_given):
        include = [f for f in DEFAULT_FIELDS if not any(_covers(e, f) for e in exclude)]
    if include and "type" not in include:
        include = ["type", *include]
    exclude = [e for e in exclude if not any(_covers(e, i) for i in include)]
    return sorted(set(include)), sorted(set(exclude))


def _fields(fields: Any) -> tuple[list[str], list[str]]:
    """:func:`parse_fields`, or the whole item when the request names no fields.

    stac-fastapi's POST model holds empty sets when the body has no ``fields``; an
    explicit empty ``fields`` never gets here as such (the app's edge has made it the
    default set's paths)."""
    if fields is None or (
        not isinstance(fields, str | list | dict)
        and not getattr(fields, "include", None)
        and not getattr(fields, "exclude", None)
    ):
        return [], []
    return parse_fields(fields)


def fields_as_body(include: Sequence[str], exclude: Sequence[str]) -> dict[str, list[str]]:
    """:func:`parse_fields`' answer as a POST ``fields`` object that means the same."""
    return (
        {"include": list(include), "exclude": list(exclude)}
        if include
        else {"exclude": list(exclude)}
    )


def fields_as_query(include: Sequence[str], exclude: Sequence[str]) -> str:
    """:func:`parse_fields`' answer as a GET ``fields`` value that means the same."""
    return ",".join([*(f"+{i}" for i in include), *(f"-{e}" for e in exclude)])


#: A bbox that overlaps at least this many items is searched in sort order rather than
#: through the R*Tree (see :meth:`EmbeddedIndex.search`).
_WIDE_MATCHES = 2000
_WIDE_PAGES = 50

_DEFAULT_SORT = (("dt_us", "desc"), ("id", "desc"), ("collection", "desc"))


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None
    stat: tuple[int, int, int] | None = None
    max_duration_us: int | None = None
    geometries: dict[int, BaseGeometry]

    def __init__(self) -> None:
        self.geometries = {}


class EmbeddedIndex:
    """Read access to an index built by :func:`load_catalog_embedded`.

    One read-only SQLite connection per thread (stac-fastapi runs sync clients in a
    thread pool). Each call checks whether the file was replaced by a rebuild and, if
    so, reopens it, so a running server serves a reloaded catalogue at once.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path).resolve()
        self._local = _ThreadState()

    # -- connections --------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        state = self._local
        try:
            st = os.stat(self.db_path)
        except FileNotFoundError:
            raise DataNotReady(
                f"The embedded STAC index {self.db_path} does not exist; load the catalogue "
                "(twinmesh.stac.api.app.load_catalog) or restart the STAC API to build it."
            ) from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if state.conn is None or state.stat != key:
            if state.conn is not None:
                state.conn.close()
            # immutable=1: the file is never changed in place, only replaced, so
            # SQLite may skip locking and change detection.
            conn = sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro&immutable=1", uri=True)
            geometries = state.geometries

            def tm_intersects(
                key: int, wkb: bytes | None, minx: float, miny: float, maxx: float, maxy: float
            ) -> int:
                # Rectangular items are stored without a geometry: their bounds say it all.
                item = shapely.from_wkb(wkb) if wkb is not None else box(minx, miny, maxx, maxy)
                return int(geometries[key].intersects(item))

            conn.create_function("tm_intersects", 6, tm_intersects)
            state.conn, state.stat, state.max_duration_us = conn, key, None
        return state.conn

    def _max_duration_us(self) -> int:
        """The longest item time range, read once per opened index file."""
        self._connection()
        state = self._local
        if state.max_duration_us is None:
            conn = state.conn
            assert conn is not None
            row = conn.execute("SELECT value FROM meta WHERE key = 'max_duration_us'").fetchone()
            if row is None:
                row = conn.execute("SELECT max(end_us - start_us) FROM items").fetchone()
            state.max_duration_us = int(row[0] or 0)
        return state.max_duration_us

    def meta(self) -> dict[str, str]:
        return dict(self._connection().execute("SELECT key, value FROM meta").fetchall())

    # -- collections and items ----------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        rows = self._connection().execute("SELECT doc FROM collections ORDER BY position")
        return [orjson.loads(doc) for (doc,) in rows]

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        row = (
            self._connection()
            .execute("SELECT doc FROM collections WHERE id = ?", (collection_id,))
            .fetchone()
        )
        return orjson.loads(row[0]) if row else None

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        row = (
            self._connection()
            .execute(
                "SELECT doc FROM items WHERE collection = ? AND id = ?", (collection_id, item_id)
            )
            .fetchone()
        )
        return orjson.loads(row[0]) if row else None

    def property_types(self, collection_id: str | None = None) -> dict[str, set[str]]:
        """Each item property (of one collection, or of all) with its JSON types, read
        by SQLite's JSON functions over every item (the queryables)."""
        sql = "SELECT DISTINCT p.key, p.type FROM items i, json_each(i.doc, '$.properties') p" + (
            " WHERE i.collection = ?" if collection_id is not None else ""
        )
        found: dict[str, set[str]] = {}
        args = (collection_id,) if collection_id is not None else ()
        for key, kind in self._connection().execute(sql, args):
            found.setdefault(key, set()).add(kind)
        return found

    # -- search -------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchPage:
        """Items matching ``query``, one page, in sort order (default: newest first)."""
        order = list(query.sortby) or list(_DEFAULT_SORT)
        for column, _ in _DEFAULT_SORT[1:]:
            if column not in (c for c, _ in order):
                order.append((column, "desc"))
        signature = ",".join(f"{c}:{d}" for c, d in order)

        where: list[str] = []
        params: list[Any] = []
        join = ""
        geom_key: int | None = None
        state = self._local
        conn = self._connection()

        # Lists go in as one JSON parameter: any length (SQLite binds at most 32766
        # variables, and a search may name 300 000 ids).
        if query.collections is not None:
            where.append("i.collection IN (SELECT value FROM json_each(?))")
            params.append(orjson.dumps(list(query.collections)).decode())
        if query.ids is not None:
            where.append("i.id IN (SELECT value FROM json_each(?))")
            params.append(orjson.dumps(list(query.ids)).decode())
        if query.interval is not None:
            start, end = query.interval
            if end is not None:
                where.append("i.start_us <= ?")
                params.append(end)
            if start is not None:
                where.append("i.end_us >= ?")
                params.append(start)
                # Implied by end_us >= start and the longest item range: bounds the
                # start_us index from below, so a short window reads few rows.
                where.append("i.start_us >= ?")
                params.append(start - self._max_duration_us())

        spatial = query.intersects
        # The plain boxes to prefilter with: the geometry's bounds, or the bbox's one
        # or two parts (two when it crosses the antimeridian).
        prefilter: list[tuple[float, float, float, float]] = []
        if spatial is not None:
            prefilter = [spatial.bounds]
        elif query.bbox is not None:
            spatial = bbox_geometry(query.bbox)
            prefilter = bbox_parts(query.bbox)
        if spatial is not None:
            overlaps = "{0}minx <= ? AND {0}maxx >= ? AND {0}miny <= ? AND {0}maxy >= ?"
            if len(prefilter) == 1 and self._is_wide(conn, prefilter[0], query.limit):
                # So many items overlap that walking the sort order and testing each
                # row's box (below) reaches a page sooner than sorting every match.
                pass
            else:
                if len(prefilter) == 1:
                    join = "JOIN items_rtree r ON r.id = i.rowid"
                    where.append(overlaps.format("r."))
                else:
                    # The R*Tree answers ANDed ranges only: one subquery per part.
                    where.append(
                        "i.rowid IN ("
                        + " UNION ".join(
                            f"SELECT id FROM items_rtree WHERE {overlaps.format('')}"
                            for _ in prefilter
                        )
                        + ")"
                    )
                for minx, miny, maxx, maxy in prefilter:
                    params.extend([maxx, minx, maxy, miny])
            # Exact for rectangular items (is_box = 1) when the query is a bbox.
            where.append("(" + " OR ".join(f"({overlaps.format('i.')})" for _ in prefilter) + ")")
            for minx, miny, maxx, maxy in prefilter:
                params.extend([maxx, minx, maxy, miny])
            query_is_box = query.intersects is None or box(*spatial.bounds).equals(spatial)
            shapely.prepare(spatial)
            geom_key = id(spatial)
            state.geometries[geom_key] = spatial
            if query_is_box:
                where.append(
                    "(i.is_box = 1 OR tm_intersects(?, i.geom, i.minx, i.miny, i.maxx, i.maxy))"
                )
            else:
                where.append("tm_intersects(?, i.geom, i.minx, i.miny, i.maxx, i.maxy)")
            params.append(geom_key)

        if query.token:
            where.append(self._keyset_condition(query.token, order, signature, params))

        sql = (
            f"SELECT i.doc, {', '.join(_sort_sql(c) for c, _ in order)} FROM items i {join}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {', '.join(_order_sql(c, d) for c, d in order)}"
        )
        try:
            if query.filter is None:
                rows = conn.execute(sql + " LIMIT ?", [*params, query.limit + 1]).fetchall()
                items = [orjson.loads(row[0]) for row in rows]
            else:
                # The filter is tested on the rows the indexed conditions let through,
                # in order, until one more than a page has matched.
                rows, items = [], []
                for row in conn.execute(sql, params):
                    item = orjson.loads(row[0])
                    if filter_matches(query.filter, item):
                        rows.append(row)
                        items.append(item)
                        if len(rows) > query.limit:
                            break
        finally:
            if geom_key is not None:
                state.geometries.pop(geom_key, None)
        next_token = None
        if len(rows) > query.limit:
            rows, items = rows[: query.limit], items[: query.limit]
            next_token = _encode_token(signature, list(rows[-1][1:]))
        return SearchPage(items, next_token)

    @staticmethod
    def _is_wide(
        conn: sqlite3.Connection, bounds: tuple[float, float, float, float], limit: int
    ) -> bool:
        """Whether at least :data:`_WIDE_MATCHES` (or 50 pages of) items overlap
        ``bounds``, counted in the R*Tree up to that number."""
        threshold = max(_WIDE_MATCHES, _WIDE_PAGES * limit)
        minx, miny, maxx, maxy = bounds
        count = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM items_rtree WHERE minx <= ? AND maxx >= ?"
            " AND miny <= ? AND maxy >= ? LIMIT ?)",
            (maxx, minx, maxy, miny, threshold),
        ).fetchone()[0]
        return bool(count >= threshold)

    @staticmethod
    def _keyset_condition(
        token: str, order: list[tuple[str, str]], signature: str, params: list[Any]
    ) -> str:
        """Rows strictly after the token's key in ``order`` (mixed directions allowed)."""
        token_signature, key = _decode_token(token)
        if token_signature != signature or len(key) != len(order):
            raise InvalidQueryParameter(
                "token belongs to a search with another sort order; restart paging without it"
            )
        if not all(v is None or isinstance(v, str | int | float) for v in key):
            raise InvalidQueryParameter(
                "token is not a paging token of this API; follow the next link"
            )
        clauses = []
        for i, (column, direction) in enumerate(order):
            parts = []
            for (c, _), value in zip(order[:i], key[:i], strict=True):
                if value is None:
                    parts.append(f"{_sort_sql(c)} IS NULL")
                else:
                    parts.append(f"{_sort_sql(c)} = ?")
                    params.append(value)
            value, sql = key[i], _sort_sql(column)
            # After ``value`` in this column's order (missing values last ascending,
            # first descending, as in _order_sql).
            if direction == "asc":
                if value is None:
                    continue  # nothing comes after a missing value ascending
                parts.append(f"({sql} > ? OR {sql} IS NULL)")
                params.append(value)
            elif value is None:
                parts.append(f"{sql} IS NOT NULL")
            else:
                parts.append(f"{sql} < ?")
                params.append(value)
            clauses.append("(" + " AND ".join(parts) + ")")
        return "(" + " OR ".join(clauses) + ")" if clauses else "0"


def _encode_token(signature: str, key: list[Any]) -> str:
    raw = orjson.dumps({"s": signature, "k": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, list[Any]]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        return str(data["s"]), list(data["k"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidQueryParameter(
            f"token {token!r} is not a paging token of this API; follow the next link"
        ) from None


# --------------------------------------------------------------------------------------
# The stac-fastapi client
# --------------------------------------------------------------------------------------
def _collection_matches(
    collection: dict[str, Any], bbox: Any, datetime: str | None, q: list[str] | str | None
) -> bool:
    extent = collection.get("extent") or {}
    if bbox:
        parts = [box(*p) for p in bbox_parts(parse_bbox(bbox))]
        boxes = (extent.get("spatial") or {}).get("bbox") or []
        if not any(
            box(*b[:2], *b[2:4]).intersects(part) if len(b) == 4 else False
            for b in boxes
            for part in parts
        ):
            return False
    if datetime:
        start, end = parse_datetime_interval(datetime)
        intervals = (extent.get("temporal") or {}).get("interval") or []

        def meets(interval: list[Any]) -> bool:
            first = _item_time_us(interval[0]) if interval and interval[0] else None
            last = _item_time_us(interval[1]) if len(interval) > 1 and interval[1] else None
            return (end is None or first is None or first <= end) and (
                start is None or last is None or last >= start
            )

        if not any(meets(i) for i in intervals):
            return False
    if q:
        terms = [
            t.strip().lower()
            for term in ([q] if isinstance(q, str) else q)
            for t in term.split(",")
        ]
        text = " ".join(
            str(v)
            for v in (
                collection.get("id"),
                collection.get("title"),
                collection.get("description"),
                *(collection.get("keywords") or []),
            )
            if v
        ).lower()
        if not any(t and t in text for t in terms):
            return False
    return True


def _with_query_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


@attr.s(kw_only=True)
class EmbeddedCoreClient(BaseCoreClient):
    """stac-fastapi core client over an :class:`EmbeddedIndex`.

    Links (self, parent, collection, root, items, next) are written from the request's
    base URL, so the same index serves correctly behind any host name or proxy.
    """

    index: EmbeddedIndex = attr.ib()
    landing_page_id: str = attr.ib(default="twinmesh")
    #: The local store's directory: asset hrefs in it are answered as /data URLs.
    data_root: Path | None = attr.ib(default=None)

    # -- links --------------------------------------------------------------------
    @staticmethod
    def _base(request: Request) -> str:
        base = get_base_url(request)
        return base if base.endswith("/") else base + "/"

    def _collection_links(self, base: str, collection_id: str) -> list[dict[str, Any]]:
        href = urljoin(base, f"collections/{quote(collection_id, safe='')}")
        return [
            {"rel": "self", "type": _JSON, "href": href},
            {"rel": "parent", "type": _JSON, "href": base},
            {"rel": "root", "type": _JSON, "href": base},
            {"rel": "items", "type": _GEO_JSON, "href": f"{href}/items"},
        ]

    def _item_links(self, base: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        collection_href = urljoin(base, f"collections/{quote(item['collection'], safe='')}")
        return [
            {
                "rel": "self",
                "type": _GEO_JSON,
                "href": f"{collection_href}/items/{quote(item['id'], safe='')}",
            },
            {"rel": "parent", "type": _JSON, "href": collection_href},
            {"rel": "collection", "type": _JSON, "href": collection_href},
            {"rel": "root", "type": _JSON, "href": base},
        ]

    def _present_collection(self, base: str, collection: dict[str, Any]) -> dict[str, Any]:
        collection["links"] = self._collection_links(base, collection["id"]) + list(
            collection.get("links", [])
        )
        return publish_assets(collection, base, self.data_root)

    def _present_item(self, base: str, item: dict[str, Any]) -> dict[str, Any]:
        item["links"] = self._item_links(base, item) + list(item.get("links", []))
        return publish_assets(item, base, self.data_root)

    def _next_link(self, request: Request, token: str, body: dict[str, Any] | None) -> dict:
        if body is None:
            return {
                "rel": "next",
                "type": _GEO_JSON,
                "method": "GET",
                "href": _with_query_param(str(request.url), "token", token),
            }
        if request.scope.get(BIG_INTERSECTS_KEY):
            # Repeating a 2.5 MB polygon in every page would cost more than the search:
            # the client merges the token into its own request (STAC API paging).
            return {
                "rel": "next",
                "type": _GEO_JSON,
                "method": "POST",
                "href": str(request.url),
                "body": {"token": token},
                "merge": True,
            }
        return {
            "rel": "next",
            "type": _GEO_JSON,
            "method": "POST",
            "href": str(request.url),
            "body": {**body, "token": token},
            "merge": False,
        }

    def _item_collection(
        self,
        request: Request,
        query: SearchQuery,
        body: dict[str, Any] | None,
        links: list[dict[str, Any]],
        fields: tuple[list[str], list[str]] = ([], []),
    ) -> dict[str, Any]:
        base = self._base(request)
        page = self.index.search(query)
        include, exclude = fields
        features = [
            self._present_item(
                base, select_fields(item, include, exclude) if include or exclude else item
            )
            for item in page.items
        ]
        if page.next_token:
            links.append(self._next_link(request, page.next_token, body))
        return {
            "type": "FeatureCollection",
            "features": features,
            "links": links,
            "numberReturned": len(features),
        }

    # -- BaseCoreClient -----------------------------------------------------------
    def all_collections(  # type: ignore[override]
        self,
        request: Request,
        bbox: Any = None,
        datetime: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        q: list[str] | str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The collections, searched (collection-search extension): ``bbox`` meets a
        spatial extent, ``datetime`` meets a temporal extent, ``q`` finds any of its
        terms in id, title, description or keywords; paged by ``limit``/``offset``."""
        base = self._base(request)
        found = [c for c in self.index.collections() if _collection_matches(c, bbox, datetime, q)]
        size = len(found) if limit is None else max(1, min(int(limit), MAX_LIMIT))
        start = max(0, int(offset or 0))
        page = found[start : start + size]
        self_href = str(request.url)
        links = [
            {"rel": "self", "type": _JSON, "href": self_href},
            {"rel": "parent", "type": _JSON, "href": base},
            {"rel": "root", "type": _JSON, "href": base},
        ]
        if start + size < len(found):
            links.append(
                {
                    "rel": "next",
                    "type": _JSON,
                    "href": _with_query_param(self_href, "offset", str(start + size)),
                }
            )
        if start > 0:
            links.append(
                {
                    "rel": "previous",
                    "type": _JSON,
                    "href": _with_query_param(self_href, "offset", str(max(0, start - size))),
                }
            )
        return {
            "collections": [self._present_collection(base, c) for c in page],
            "links": links,
            "numberMatched": len(found),
            "numberReturned": len(page),
        }

    def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> dict:  # type: ignore[override]
        collection = self.index.collection(collection_id)
        if collection is None:
            raise NotFoundError(f"Collection {collection_id!r} does not exist.")
        return self._present_collection(self._base(request), collection)

    def get_item(self, item_id: str, collection_id: str, request: Request, **kwargs: Any) -> dict:  # type: ignore[override]
        if self.index.collection(collection_id) is None:
            raise NotFoundError(f"Collection {collection_id!r} does not exist.")
        item = self.index.item(collection_id, item_id)
        if item is None:
            raise NotFoundError(f"Item {item_id!r} does not exist in collection {collection_id!r}.")
        return self._present_item(self._base(request), item)

    def item_collection(  # type: ignore[override]
        self,
        collection_id: str,
        request: Request,
        bbox: Any = None,
        datetime: str | None = None,
        limit: int | None = 10,
        token: str | None = None,
        sortby: Any = None,
        filter_expr: Any = None,
        filter_lang: str | None = None,
        filter_crs: str | None = None,
        fields: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if self.index.collection(collection_id) is None:
            raise NotFoundError(f"Collection {collection_id!r} does not exist.")
        query = make_search_query(
            collections=[collection_id],
            bbox=bbox,
            datetime=datetime,
            limit=limit,
            sortby=sortby,
            token=token,
            filter_expr=filter_expr,
            filter_lang=filter_lang,
            filter_crs=filter_crs,
        )
        base = self._base(request)
        collection_links = self._collection_links(base, collection_id)
        links = [
            {"rel": "self", "type": _GEO_JSON, "href": str(request.url)},
            {**collection_links[0], "rel": "parent"},
            {**collection_links[0], "rel": "collection"},
            {"rel": "root", "type": _JSON, "href": base},
        ]
        return self._item_collection(request, query, None, links, _fields(fields))

    def get_search(  # type: ignore[override]
        self,
        request: Request,
        collections: list[str] | None = None,
        ids: list[str] | None = None,
        bbox: Any = None,
        intersects: str | None = None,
        datetime: str | None = None,
        limit: int | None = 10,
        token: str | None = None,
        sortby: Any = None,
        filter_expr: Any = None,
        filter_lang: str | None = None,
        filter_crs: str | None = None,
        fields: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        query = make_search_query(
            collections=collections,
            ids=ids,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            limit=limit,
            sortby=sortby,
            token=token,
            filter_expr=filter_expr,
            filter_lang=filter_lang,
            filter_crs=filter_crs,
        )
        return self._item_collection(
            request, query, None, self._search_links(request), _fields(fields)
        )

    def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> dict:  # type: ignore[override]
        # A big intersects was parsed off the event loop and stands in the request as
        # its bounding box (twinmesh.stac.api.app): the real geometry is here.
        big = request.scope.get(BIG_INTERSECTS_KEY)
        query = make_search_query(
            collections=search_request.collections,
            ids=search_request.ids,
            bbox=search_request.bbox,
            intersects=big.geometry if big else search_request.intersects,
            datetime=search_request.datetime,
            limit=search_request.limit,
            sortby=getattr(search_request, "sortby", None),
            token=getattr(search_request, "token", None),
            filter_expr=getattr(search_request, "filter_expr", None),
            filter_lang=getattr(search_request, "filter_lang", None),
            filter_crs=getattr(search_request, "filter_crs", None),
        )
        body = search_request.model_dump(mode="json", exclude_none=True, by_alias=True)
        body.pop("token", None)  # (with a big intersects, the next link holds only the token)
        return self._item_collection(
            request,
            query,
            body,
            self._search_links(request),
            _fields(getattr(search_request, "fields", None)),
        )

    def _search_links(self, request: Request) -> list[dict[str, Any]]:
        base = self._base(request)
        return [
            {"rel": "self", "type": _GEO_JSON, "href": urljoin(base, "search")},
            {"rel": "root", "type": _JSON, "href": base},
        ]


_MORE_CQL2 = [
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
]

_JSON_SCHEMA_TYPES = {
    "integer": "integer",
    "real": "number",
    "text": "string",
    "true": "boolean",
    "false": "boolean",
    "object": "object",
    "array": "array",
}


@attr.s(kw_only=True)
class EmbeddedFiltersClient(BaseFiltersClient):
    """``/queryables`` and ``/collections/{id}/queryables``: the item fields a CQL2
    filter can name, generated from the items' properties (JSON Schema)."""

    index: EmbeddedIndex = attr.ib()

    def get_queryables(  # type: ignore[override]
        self, collection_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        request: Request | None = kwargs.get("request")
        if collection_id is not None and self.index.collection(collection_id) is None:
            raise NotFoundError(f"Collection {collection_id!r} does not exist.")
        properties: dict[str, Any] = {
            "id": {"type": "string", "title": "Item ID"},
            "collection": {"type": "string", "title": "Collection ID"},
            "geometry": {
                "$ref": "https://geojson.org/schema/Geometry.json",
                "title": "Item geometry",
            },
        }
        for name, kinds in sorted(self.index.property_types(collection_id).items()):
            types = sorted({_JSON_SCHEMA_TYPES[k] for k in kinds if k in _JSON_SCHEMA_TYPES})
            schema: dict[str, Any] = {"title": name}
            if types:
                schema["type"] = types[0] if len(types) == 1 else types
            if name.endswith("datetime") and types == ["string"]:
                schema["format"] = "date-time"
            properties[name] = schema
        base = str(request.base_url) if request is not None else "/"
        path = f"collections/{collection_id}/queryables" if collection_id else "queryables"
        return {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "$id": urljoin(base, path),
            "type": "object",
            "title": f"Queryables of {collection_id}" if collection_id else "Queryables",
            "properties": properties,
            "additionalProperties": True,
        }


def create_embedded_api(
    db_path: str | os.PathLike[str],
    *,
    title: str,
    description: str,
    version: str = "0.1.0",
    on_startup: Callable[[], object] | None = None,
    data_root: Path | None = None,
) -> StacApi:
    """The stac-fastapi application over the index at ``db_path``.

    ``on_startup`` runs in a worker thread before the first request (the index is
    built or refreshed there). Search supports ``sortby`` (datetime, id, collection)
    and token paging on ``/search`` and ``/collections/{id}/items``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await run_in_threadpool(on_startup)
        yield

    settings = ApiSettings(
        stac_fastapi_title=title,
        stac_fastapi_description=description,
        stac_fastapi_version=version,
        stac_fastapi_landing_id="twinmesh",
        enable_direct_response=True,
    )
    index = EmbeddedIndex(db_path)
    filters = EmbeddedFiltersClient(index=index)
    search_filter = SearchFilterExtension(client=filters)
    items_filter = ItemCollectionFilterExtension(client=filters)
    collection_search = CollectionSearchExtension.from_extensions(
        [
            FreeTextExtension(conformance_classes=[FreeTextConformanceClasses.COLLECTIONS]),
            OffsetPaginationExtension(),
        ]
    )
    for extension in (search_filter, items_filter):
        # Tested against a brute-force evaluation on both backends (LIKE, BETWEEN, IN,
        # S_INTERSECTS besides the basic operators).
        extension.conformance_classes = [*extension.conformance_classes, *_MORE_CQL2]
    search_extensions = [
        SearchSortExtension(),
        TokenPaginationExtension(),
        search_filter,
        FieldsExtension(),
    ]
    items_extensions = [
        ItemCollectionSortExtension(),
        TokenPaginationExtension(),
        items_filter,
        FieldsExtension(),
    ]
    app = FastAPI(
        openapi_url=settings.openapi_url,
        docs_url=settings.docs_url,
        redoc_url=None,
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
    )
    return StacApi(
        settings=settings,
        client=EmbeddedCoreClient(index=index, data_root=data_root),
        extensions=[
            *search_extensions,
            items_extensions[0],
            items_extensions[2],
            collection_search,
        ],
        collections_get_request_model=collection_search.GET,
        app=app,
        title=title,
        description=description,
        api_version=version,
        search_get_request_model=create_get_request_model(search_extensions),
        search_post_request_model=create_post_request_model(search_extensions),
        items_get_request_model=create_request_model(  # type: ignore[arg-type]
            "ItemCollectionUri",
            base_model=ItemCollectionUri,
            extensions=items_extensions,
            request_type="GET",
        ),
        middlewares=[
            Middleware(BrotliMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["*"],
                max_age=600,
            ),
            Middleware(ProxyHeaderMiddleware),
        ],
    )
