"""What every twinmesh STAC API backend must answer, written once for both backends.

A small real catalogue (pystac, self-contained layout, tiny Zarr v3 stores as assets)
is built per backend; :class:`StacApiContract` holds the tests, and each backend's
test module subclasses it with a ``stac_url`` fixture that serves that catalogue from
a real server on 127.0.0.1. Expectations are written out by hand in
:data:`SEARCH_CASES` and cross-checked against a brute-force filter
(:func:`brute_force_ids`), which the property-based tests use on random searches.
"""

from __future__ import annotations

import base64
import contextlib
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cql2
import httpx
import numpy as np
import orjson
import pystac
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pystac_client import Client
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry

from tests.helpers.stac_server import running_stac_server as stac_server_process

__all__ = [
    "ALL_IDS",
    "COLLECTIONS",
    "ITEMS",
    "SEARCH_CASES",
    "ItemSpec",
    "SearchCase",
    "StacApiContract",
    "brute_force_ids",
    "build_test_catalog",
    "random_bboxes",
    "random_searches",
    "running_stac_server",
    "search_params",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ZARR_MEDIA_TYPE = "application/vnd+zarr"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ItemSpec:
    """One test item: where, when, and in which collection."""

    id: str
    collection: str
    geometry: BaseGeometry
    datetime: datetime | None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def range(self) -> tuple[datetime, datetime]:
        if self.start is not None and self.end is not None:
            return self.start, self.end
        assert self.datetime is not None
        return self.datetime, self.datetime


def _items() -> list[ItemSpec]:
    items = []
    for i in range(10):  # one a month in 2020, a 1°x1° tile each, west to east
        start = datetime(2020, i + 1, 1, tzinfo=UTC)
        items.append(
            ItemSpec(
                f"discharge-2020-{i + 1:02d}",
                "discharge",
                box(4 + i, 45, 5 + i, 46),
                start,
                start,
                start + timedelta(days=8, hours=23, minutes=59, seconds=59),
            )
        )
    for j in range(8):  # one day a month in 2021, further north
        start = datetime(2021, j + 1, 15, tzinfo=UTC)
        items.append(
            ItemSpec(
                f"soil-moisture-2021-{j + 1:02d}",
                "soil-moisture",
                box(4 + j, 47, 5 + j, 48.5),
                start,
                start,
                start + timedelta(hours=23, minutes=59, seconds=59),
            )
        )
    items += [
        # A triangle: its bbox is [10, 44, 14, 48] but most of that box is empty.
        ItemSpec(
            "soil-moisture-triangle",
            "soil-moisture",
            Polygon([(10, 44), (14, 44), (10, 48)]),
            _t("2020-06-15T12:00:00Z"),
        ),
        # A long-running product over the Alps.
        ItemSpec(
            "soil-moisture-alps",
            "soil-moisture",
            box(6, 45.5, 11, 47.5),
            _t("2019-12-31T00:00:00Z"),
            _t("2019-12-31T00:00:00Z"),
            _t("2021-12-31T00:00:00Z"),
        ),
        # A season described by start/end only: datetime is null.
        ItemSpec(
            "soil-moisture-season",
            "soil-moisture",
            box(14, 47, 15, 48.5),
            None,
            _t("2021-09-01T00:00:00Z"),
            _t("2021-11-30T23:59:59Z"),
        ),
        # Near the antimeridian: Chukotka west of it and east of it ...
        ItemSpec(
            "discharge-chukotka-west",
            "discharge",
            box(176, 64, 179, 65.5),
            _t("2020-11-15T00:00:00Z"),
        ),
        ItemSpec(
            "discharge-chukotka-east",
            "discharge",
            box(-179, 64, -176, 65.5),
            _t("2020-12-15T00:00:00Z"),
        ),
        # ... and Fiji across it, split at ±180 as RFC 7946 asks.
        ItemSpec(
            "soil-moisture-fiji",
            "soil-moisture",
            MultiPolygon([box(177, -19, 180, -16), box(-180, -19, -179, -16)]),
            _t("2021-03-20T06:00:00Z"),
        ),
    ]
    return items


ITEMS: list[ItemSpec] = _items()
ALL_IDS: frozenset[str] = frozenset(item.id for item in ITEMS)
#: Properties to filter on with CQL2: an integer, a number and a string per item.
FILTER_PROPERTIES: dict[str, dict[str, Any]] = {
    item.id: {
        "rank": n,
        "score": round((n * 37 % 17) / 4, 2),
        "kind": ("monthly", "daily", "special")[n % 3],
    }
    for n, item in enumerate(ITEMS)
}
COLLECTIONS: dict[str, str] = {
    "discharge": "River discharge, twinmesh test twin",
    "soil-moisture": "Soil moisture, twinmesh test twin",
}


@dataclass(frozen=True)
class SearchCase:
    """A search in POST-body form and the item ids it must return, written by hand."""

    name: str
    params: dict[str, Any]
    expected: frozenset[str]


def _ids(*names: str) -> frozenset[str]:
    return frozenset(names)


SEARCH_CASES: list[SearchCase] = [
    SearchCase(
        "bbox",
        {"bbox": [7.5, 44.5, 9.5, 45.2]},
        _ids("discharge-2020-04", "discharge-2020-05", "discharge-2020-06"),
    ),
    SearchCase(
        "bbox-misses-triangle-inside-its-bbox",
        {"bbox": [11.5, 47.0, 13.5, 47.5]},
        _ids("soil-moisture-2021-08"),
    ),
    SearchCase(
        "bbox-touching-a-corner",
        {"bbox": [3.0, 44.0, 4.0, 45.0]},
        _ids("discharge-2020-01"),
    ),
    SearchCase(
        "bbox-point-inside-a-polygon",
        {"bbox": [10.5, 44.5, 10.5, 44.5]},
        _ids("soil-moisture-triangle"),
    ),
    SearchCase(
        "bbox-line-across-items",
        {"bbox": [9.0, 45.5, 11.0, 45.5]},
        _ids(
            "discharge-2020-05",
            "discharge-2020-06",
            "discharge-2020-07",
            "discharge-2020-08",
            "soil-moisture-triangle",
            "soil-moisture-alps",
        ),
    ),
    SearchCase("bbox-empty", {"bbox": [-10.0, 30.0, -5.0, 35.0]}, _ids()),
    SearchCase(
        "bbox-across-the-antimeridian",
        {"bbox": [170.0, 60.0, -170.0, 70.0]},
        _ids("discharge-chukotka-west", "discharge-chukotka-east"),
    ),
    SearchCase(
        "bbox-across-the-antimeridian-east-part-only",
        {"bbox": [179.5, 63.0, -178.5, 66.0]},
        _ids("discharge-chukotka-east"),
    ),
    SearchCase(
        "bbox-across-the-antimeridian-touching-the-west-part",
        {"bbox": [179.0, 63.0, -179.5, 64.0]},
        _ids("discharge-chukotka-west"),
    ),
    SearchCase(
        "bbox-across-the-antimeridian-item-crossing-too",
        {"bbox": [179.5, -20.0, -179.5, -18.0]},
        _ids("soil-moisture-fiji"),
    ),
    SearchCase(
        "bbox-across-the-antimeridian-is-not-its-complement",
        {"bbox": [170.0, 40.0, -170.0, 50.0]},
        _ids(),
    ),
    SearchCase(
        "bbox-complement-of-an-antimeridian-box",
        {"bbox": [-170.0, 60.0, 170.0, 70.0]},
        _ids(),
    ),
    SearchCase(
        "bbox-ending-at-180-across-the-antimeridian",
        {"bbox": [180.0, -17.0, -180.0, -15.0]},
        _ids("soil-moisture-fiji"),
    ),
    SearchCase(
        "bbox-around-the-world-but-europe",
        {"bbox": [12.5, 44.0, 7.5, 45.5]},
        _ids(
            "discharge-2020-01",
            "discharge-2020-02",
            "discharge-2020-03",
            "discharge-2020-04",
            "discharge-2020-09",
            "discharge-2020-10",
            "soil-moisture-triangle",
            "soil-moisture-alps",
        ),
    ),
    SearchCase(
        "intersects-polygon",
        {
            "intersects": {
                "type": "Polygon",
                "coordinates": [[[10.2, 44.2], [10.8, 44.2], [10.2, 44.8], [10.2, 44.2]]],
            }
        },
        _ids("soil-moisture-triangle"),
    ),
    SearchCase(
        "datetime-instant",
        {"datetime": "2020-06-15T12:00:00Z"},
        _ids("soil-moisture-triangle", "soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-closed-interval",
        {"datetime": "2020-03-05T00:00:00Z/2020-05-01T00:00:00Z"},
        _ids("discharge-2020-03", "discharge-2020-04", "discharge-2020-05", "soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-open-start",
        {"datetime": "../2020-02-05T00:00:00Z"},
        _ids("discharge-2020-01", "discharge-2020-02", "soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-open-end",
        {"datetime": "2021-06-01T00:00:00Z/.."},
        _ids(
            "soil-moisture-2021-06",
            "soil-moisture-2021-07",
            "soil-moisture-2021-08",
            "soil-moisture-alps",
            "soil-moisture-season",
        ),
    ),
    SearchCase(
        "datetime-whole-day",
        {"datetime": "2020-06-15T00:00:00Z/2020-06-15T23:59:59.999999Z"},
        _ids("soil-moisture-triangle", "soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-days",
        {"datetime": "2020-06-10T00:00:00Z/2020-06-15T23:59:59Z"},
        _ids("soil-moisture-triangle", "soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-open-start",
        {"datetime": "../2019-12-31T23:59:59Z"},
        _ids("soil-moisture-alps"),
    ),
    SearchCase(
        "datetime-open-end",
        {"datetime": "2021-08-16T00:00:00Z/.."},
        _ids("soil-moisture-alps", "soil-moisture-season"),
    ),
    SearchCase(
        "datetime-offset-and-z",
        {"datetime": "2020-01-09T01:00:00+01:00/2020-02-01T00:00:00Z"},
        _ids("discharge-2020-01", "discharge-2020-02", "soil-moisture-alps"),
    ),
    SearchCase(
        "collection",
        {"collections": ["discharge"]},
        frozenset(i.id for i in ITEMS if i.collection == "discharge"),
    ),
    SearchCase(
        "collection-bbox-datetime",
        {
            "collections": ["soil-moisture"],
            "bbox": [5.5, 46.0, 8.5, 48.0],
            "datetime": "2021-02-01T00:00:00Z/2021-04-30T00:00:00Z",
        },
        _ids(
            "soil-moisture-2021-02",
            "soil-moisture-2021-03",
            "soil-moisture-2021-04",
            "soil-moisture-alps",
        ),
    ),
    SearchCase(
        "collection-bbox-across-the-antimeridian-date",
        {
            "collections": ["discharge"],
            "bbox": [175.0, 60.0, -175.0, 70.0],
            "datetime": "2020-12-01T00:00:00Z/2020-12-31T23:59:59Z",
        },
        _ids("discharge-chukotka-east"),
    ),
    SearchCase(
        "ids",
        {"ids": ["discharge-2020-01", "soil-moisture-triangle", "no-such-item"]},
        _ids("discharge-2020-01", "soil-moisture-triangle"),
    ),
    SearchCase("unknown-collection", {"collections": ["no-such-collection"]}, _ids()),
]


def _bound(text: str, *, end: bool) -> datetime | None:
    """One side of a datetime interval; a plain date is the whole day (UTC)."""
    if text in ("", ".."):
        return None
    if len(text) == len("2020-01-01"):
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
    return _t(text)


def _parse_interval(value: str) -> tuple[datetime | None, datetime | None]:
    parts = value.split("/")
    return _bound(parts[0], end=False), _bound(parts[-1], end=True)


def _bbox_boxes(bbox: list[float]) -> list[BaseGeometry]:
    """A bbox as plain boxes: two when west > east (it crosses the antimeridian)."""
    west, south, east, north = bbox if len(bbox) == 4 else [bbox[i] for i in (0, 1, 3, 4)]
    if west <= east:
        return [box(west, south, east, north)]
    return [box(west, south, 180, north), box(-180, south, east, north)]


def brute_force_ids(
    collections: list[str] | None = None,
    ids: list[str] | None = None,
    bbox: list[float] | None = None,
    intersects: dict[str, Any] | None = None,
    datetime: str | None = None,
    **_: Any,
) -> frozenset[str]:
    """The ids a STAC search must return, by checking every item in plain Python.

    Spatial: the item geometry intersects the search geometry (boundaries touch
    count); a bbox with west > east crosses the antimeridian and is the union of
    [west, 180] and [-180, east]. Temporal: the item's [start, end] (or its instant)
    meets the interval; a plain date is the whole day.
    """
    geometries = _bbox_boxes(bbox) if bbox else [shape(intersects)] if intersects else None
    interval = _parse_interval(datetime) if datetime else None
    found = set()
    for item in ITEMS:
        if collections is not None and item.collection not in collections:
            continue
        if ids is not None and item.id not in ids:
            continue
        if geometries is not None and not any(item.geometry.intersects(g) for g in geometries):
            continue
        if interval is not None:
            start, end = item.range
            if interval[1] is not None and start > interval[1]:
                continue
            if interval[0] is not None and end < interval[0]:
                continue
        found.add(item.id)
    return frozenset(found)


def search_params(params: dict[str, Any]) -> dict[str, str]:
    """A POST-body search as GET query parameters."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if key in ("collections", "ids", "bbox"):
            out[key] = ",".join(str(v) for v in value)
        elif key == "intersects":
            out[key] = orjson.dumps(value).decode()
        else:
            out[key] = str(value)
    return out


# --------------------------------------------------------------------------------------
# Building the catalogue
# --------------------------------------------------------------------------------------
def _write_zarr(path: Path, collection: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {"value": (("t", "y", "x"), rng.random((3, 4, 5)).astype("float32"))},
        coords={"t": t, "y": np.linspace(45, 48, 4), "x": np.linspace(4, 14, 5)},
        attrs={"title": f"{collection} test cube", "source": "generated by the twinmesh tests"},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False, mode="w")


def build_test_catalog(data_dir: Path) -> Path:
    """Write the test catalogue to ``data_dir/catalog`` and its cubes to ``data_dir/store``.

    Same layout as the project's catalogue builder: pystac self-contained, one folder
    per collection and per item, Zarr assets with absolute local hrefs.
    """
    catalog_dir = data_dir / "catalog"
    store = data_dir / "store"
    store.mkdir(parents=True, exist_ok=True)
    catalog = pystac.Catalog(
        id="twinmesh", title="twinmesh test catalogue", description="Generated for the tests."
    )
    for n, (collection_id, title) in enumerate(COLLECTIONS.items()):
        cube = store / f"{collection_id}.zarr"
        _write_zarr(cube, collection_id, seed=n)
        specs = [i for i in ITEMS if i.collection == collection_id]
        starts = [i.range[0] for i in specs]
        ends = [i.range[1] for i in specs]
        bounds = [i.geometry.bounds for i in specs]
        collection = pystac.Collection(
            id=collection_id,
            title=title,
            description=f"{title} (generated test data).",
            license="CC-BY-4.0",
            extent=pystac.Extent(
                pystac.SpatialExtent(
                    [
                        [
                            min(b[0] for b in bounds),
                            min(b[1] for b in bounds),
                            max(b[2] for b in bounds),
                            max(b[3] for b in bounds),
                        ]
                    ]
                ),
                pystac.TemporalExtent([[min(starts), max(ends)]]),
            ),
        )
        for spec in specs:
            properties: dict[str, Any] = {"title": spec.id, **FILTER_PROPERTIES[spec.id]}
            if spec.start is not None:
                properties["start_datetime"] = spec.start.isoformat().replace("+00:00", "Z")
                properties["end_datetime"] = spec.end.isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
            item = pystac.Item(
                id=spec.id,
                geometry=mapping(spec.geometry),
                bbox=list(spec.geometry.bounds),
                datetime=spec.datetime,
                properties=properties,
                collection=collection_id,
            )
            item.add_asset(
                "zarr",
                pystac.Asset(
                    href=str(cube.resolve()),
                    media_type=ZARR_MEDIA_TYPE,
                    roles=["data", "zarr"],
                    title=f"{collection_id} cube (Zarr v3)",
                ),
            )
            collection.add_item(item)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(catalog_dir))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return catalog_dir


# --------------------------------------------------------------------------------------
# Running a real server
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_stac_server(
    data_dir: Path, backend: str, *, dsn: str | None = None, timeout_s: float = 120
) -> Iterator[str]:
    """``python -m twinmesh.stac.api.app`` on 127.0.0.1 for the tests; yields its URL (with '/')."""
    with stac_server_process(data_dir, backend, dsn=dsn, timeout_s=timeout_s) as server:
        yield server.url + "/"


# --------------------------------------------------------------------------------------
# Random searches for the property tests
# --------------------------------------------------------------------------------------
_DAY0 = datetime(2019, 12, 25, tzinfo=UTC)
_PLUS_2 = timezone(timedelta(hours=2))


#: Longitudes within 8° of the antimeridian, on both sides of it, in half degrees.
_NEAR_180 = [172 + k / 2 for k in range(17)] + [-180 + k / 2 for k in range(17)]


@st.composite
def random_bboxes(draw: st.DrawFn) -> list[float]:
    """Boxes over Europe or near the antimeridian; west > east (crossing) is frequent."""
    if draw(st.booleans()):
        xs = [x / 2 for x in draw(st.lists(st.integers(4, 32), min_size=2, max_size=2))]
        ys = sorted(draw(st.lists(st.integers(86, 100), min_size=2, max_size=2)))
        if draw(st.booleans()):  # mostly plain boxes; otherwise around the world
            xs.sort()
    else:
        xs = draw(st.lists(st.sampled_from(_NEAR_180), min_size=2, max_size=2))
        band = draw(st.sampled_from([(-44, -28), (124, 136)]))  # Fiji, Chukotka
        ys = sorted(draw(st.lists(st.integers(*band), min_size=2, max_size=2)))
    return [xs[0], ys[0] / 2, xs[1], ys[1] / 2]


@st.composite
def random_searches(draw: st.DrawFn) -> dict[str, Any]:
    """Searches over the test catalogue's regions and years, often hitting boundaries."""
    params: dict[str, Any] = {}
    if draw(st.booleans()):
        params["bbox"] = draw(random_bboxes())
    if draw(st.booleans()):

        def moment() -> str:
            offset = timedelta(days=draw(st.integers(0, 740)), hours=draw(st.sampled_from([0, 12])))
            if draw(st.booleans()):  # the same moment with a UTC offset
                return (_DAY0 + offset).astimezone(_PLUS_2).isoformat()
            return (_DAY0 + offset).isoformat().replace("+00:00", "Z")

        kind = draw(st.sampled_from(["instant", "closed", "open-start", "open-end"]))
        if kind == "instant":
            params["datetime"] = moment()
        elif kind == "closed":
            a, b = sorted([moment(), moment()])
            params["datetime"] = f"{a}/{b}"
        elif kind == "open-start":
            params["datetime"] = f"../{moment()}"
        else:
            params["datetime"] = f"{moment()}/.."
    collections = draw(
        st.sampled_from([None, ["discharge"], ["soil-moisture"], ["discharge", "soil-moisture"]])
    )
    if collections is not None:
        params["collections"] = collections
    return params


# --------------------------------------------------------------------------------------
# CQL2 filters and their brute-force evaluation (plain Python, not the cql2 library)
# --------------------------------------------------------------------------------------
_COMPARE = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _value_of(spec: ItemSpec, name: str) -> Any:
    if name == "id":
        return spec.id
    if name == "collection":
        return spec.collection
    return FILTER_PROPERTIES[spec.id].get(name)


def _like(value: str, pattern: str) -> bool:
    import re

    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def filter_matches_brute_force(spec: ItemSpec, expr: dict[str, Any]) -> bool:
    """Whether a test item satisfies a CQL2-JSON filter of the forms
    :func:`random_filters` makes, evaluated in plain Python (shapely for geometry)."""
    op, args = expr["op"], expr["args"]
    if op == "and":
        return all(filter_matches_brute_force(spec, a) for a in args)
    if op == "or":
        return any(filter_matches_brute_force(spec, a) for a in args)
    if op == "not":
        return not filter_matches_brute_force(spec, args[0])
    if op == "s_intersects":
        return spec.geometry.intersects(shape(args[1]))
    value = _value_of(spec, args[0]["property"])
    if value is None:
        return False
    if op in _COMPARE:
        return bool(_COMPARE[op](value, args[1]))
    if op == "in":
        return value in args[1]
    if op == "between":
        return bool(args[1] <= value <= args[2])
    if op == "like":
        return _like(value, args[1])
    raise ValueError(f"no brute force for {op}")


def brute_force_filter_ids(expr: dict[str, Any]) -> frozenset[str]:
    return frozenset(i.id for i in ITEMS if filter_matches_brute_force(i, expr))


@st.composite
def random_filters(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """Random CQL2-JSON: comparisons on an integer, a number and a string, IN,
    BETWEEN, LIKE, S_INTERSECTS with a box, combined with AND / OR / NOT."""
    kinds = ["compare", "in", "between", "like", "spatial"]
    if depth < 2:
        kinds += ["and", "or", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("and", "or"):
        return {"op": kind, "args": [draw(random_filters(depth + 1)) for _ in range(2)]}
    if kind == "not":
        return {"op": "not", "args": [draw(random_filters(depth + 1))]}
    if kind == "compare":
        name = draw(st.sampled_from(["rank", "score", "kind", "collection"]))
        op = draw(st.sampled_from(sorted(_COMPARE)))
        value: Any = {
            "rank": draw(st.integers(-1, len(ITEMS))),
            "score": draw(st.sampled_from([0, 1.25, 2.5, 3.75, 4.0])),
            "kind": draw(st.sampled_from(["monthly", "daily", "special", "none"])),
            "collection": draw(st.sampled_from(sorted(COLLECTIONS))),
        }[name]
        if name in ("kind", "collection"):
            op = draw(st.sampled_from(["=", "<>"]))
        return {"op": op, "args": [{"property": name}, value]}
    if kind == "in":
        values = draw(st.lists(st.sampled_from(["monthly", "daily", "special"]), max_size=3))
        return {"op": "in", "args": [{"property": "kind"}, values or ["none"]]}
    if kind == "between":
        low = draw(st.integers(0, len(ITEMS)))
        return {"op": "between", "args": [{"property": "rank"}, low, low + draw(st.integers(0, 8))]}
    if kind == "like":
        pattern = draw(st.sampled_from(["discharge%", "%2021%", "soil-moisture-_lps", "%-0_"]))
        return {"op": "like", "args": [{"property": "id"}, pattern]}
    west = draw(st.floats(-20, 20).map(lambda v: round(v, 1)))
    south = draw(st.floats(40, 50).map(lambda v: round(v, 1)))
    polygon = mapping(box(west, south, west + draw(st.sampled_from([0.5, 3.0, 40.0])), south + 2))
    return {"op": "s_intersects", "args": [{"property": "geometry"}, dict(polygon)]}


@dataclass(frozen=True, order=False)
class _Desc:
    """A value that sorts in reverse (for expected descending orders of strings)."""

    value: Any

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.value > other.value)


def _page_ids(features: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for f in features]


# --------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------
def _ellipse(n: int) -> list[list[float]]:
    """A closed ring of ``n`` vertices around (8, 46): 6 degrees wide, 2 high."""
    ring = [
        [
            round(8 + 6 * math.cos(2 * math.pi * k / n), 6),
            round(46 + 2 * math.sin(2 * math.pi * k / n), 6),
        ]
        for k in range(n)
    ]
    return [*ring, ring[0]]


class StacApiContract:
    """STAC API 1.0 behaviour both backends must show; subclasses provide ``stac_url``."""

    @pytest.fixture(scope="class")
    @classmethod
    def data_dir(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        data_dir = tmp_path_factory.mktemp("stac-data")
        build_test_catalog(data_dir)
        return data_dir

    @pytest.fixture(scope="class")
    @classmethod
    def http(cls, stac_url: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=stac_url, timeout=30) as client:
            yield client

    # -- the expectations themselves ----------------------------------------------
    @pytest.mark.parametrize("case", SEARCH_CASES, ids=lambda c: c.name)
    def test_expectations_agree_with_brute_force(self, case: SearchCase) -> None:
        assert brute_force_ids(**case.params) == case.expected

    # -- landing page, conformance, catalogue walk ----------------------------------
    def test_landing_page_and_conformance(self, stac_url: str, http: httpx.Client) -> None:
        client = Client.open(stac_url)
        assert "twinmesh" in (client.title or "").lower()
        assert "twinmesh" in client.description.lower()
        conforms = set(http.get("/conformance").json()["conformsTo"])
        for cls in ("core", "collections", "ogcapi-features", "item-search"):
            assert f"https://api.stacspec.org/v1.0.0/{cls}" in conforms
        assert http.get("/").headers["content-type"].startswith("application/json")

    def test_cors_is_open(self, http: httpx.Client) -> None:
        response = http.options(
            "/search",
            headers={
                "Origin": "https://radiantearth.github.io",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] in (
            "*",
            "https://radiantearth.github.io",
        )
        plain = http.get("/collections", headers={"Origin": "https://example.org"})
        assert plain.headers["access-control-allow-origin"] in ("*", "https://example.org")

    def test_walk_the_catalogue(self, stac_url: str) -> None:
        client = Client.open(stac_url)
        collections = {c.id: c for c in client.get_collections()}
        assert set(collections) == set(COLLECTIONS)
        for collection_id, collection in collections.items():
            assert collection.title == COLLECTIONS[collection_id]
            ids = {item.id for item in collection.get_items()}
            assert ids == {i.id for i in ITEMS if i.collection == collection_id}
        assert {item.id for item in client.get_items()} == ALL_IDS
        item = client.get_collection("discharge").get_item("discharge-2020-04")
        assert item is not None and item.bbox == [7.0, 45.0, 8.0, 46.0]

    def test_links_point_at_the_api(self, stac_url: str, http: httpx.Client) -> None:
        item = http.get("/collections/discharge/items/discharge-2020-01").json()
        links = {link["rel"]: link["href"] for link in item["links"]}
        base = stac_url.rstrip("/")
        assert links["self"] == f"{base}/collections/discharge/items/discharge-2020-01"
        assert links["parent"] == f"{base}/collections/discharge"
        assert links["collection"] == f"{base}/collections/discharge"
        assert links["root"].rstrip("/") == base
        collection = http.get("/collections/discharge").json()
        links = {link["rel"]: link["href"] for link in collection["links"]}
        assert links["self"] == f"{base}/collections/discharge"
        assert links["items"] == f"{base}/collections/discharge/items"
        assert "item" not in links and "child" not in links

    def test_items_keep_datetime_and_assets(self, http: httpx.Client) -> None:
        season = http.get("/collections/soil-moisture/items/soil-moisture-season").json()
        assert "datetime" in season["properties"] and season["properties"]["datetime"] is None
        assert season["properties"]["start_datetime"] == "2021-09-01T00:00:00Z"
        item = http.get("/collections/discharge/items/discharge-2020-03").json()
        assert item["properties"]["datetime"] == "2020-03-01T00:00:00Z"
        assert item["assets"]["zarr"]["href"].endswith("/data/discharge.zarr")

    def test_zarr_asset_of_a_searched_item_opens_over_http(
        self, stac_url: str, data_dir: Path
    ) -> None:
        """The href is a URL of the API: xarray on another machine opens it (HTTP range
        reads of the Zarr's files), with the asset's own open_kwargs."""
        client = Client.open(stac_url)
        items = list(
            client.search(collections=["soil-moisture"], ids=["soil-moisture-alps"]).items()
        )
        assert [i.id for i in items] == ["soil-moisture-alps"]
        asset = items[0].assets["zarr"]
        assert asset.media_type == ZARR_MEDIA_TYPE
        assert asset.href == f"{stac_url.rstrip('/')}/data/soil-moisture.zarr", asset.href
        local = data_dir / "store" / "soil-moisture.zarr"
        with (
            xr.open_zarr(asset.href, consolidated=False) as remote,
            xr.open_zarr(local, consolidated=False) as on_disk,
        ):
            assert remote["value"].dims == ("t", "y", "x")
            assert remote.attrs["title"] == "soil-moisture test cube"
            xr.testing.assert_identical(remote.load(), on_disk.load())

    def test_store_files_are_served_read_only_with_ranges(
        self, stac_url: str, http: httpx.Client
    ) -> None:
        meta = http.get("/data/soil-moisture.zarr/zarr.json", headers={"Origin": "https://x.org"})
        assert meta.status_code == 200 and meta.json()["node_type"] == "group"
        assert meta.headers["access-control-allow-origin"] in ("*", "https://x.org")
        part = http.get("/data/soil-moisture.zarr/zarr.json", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == meta.content[:10]
        assert http.head("/data/soil-moisture.zarr/zarr.json").status_code == 200
        for path in ("/data/../catalog/catalog.json", "/data/%2e%2e/catalog/catalog.json",
                     "/data/nope.zarr/zarr.json"):  # fmt: skip
            assert http.get(path).status_code == 404, path
        listing = http.get("/data/soil-moisture.zarr")
        assert listing.status_code == 200 and "value/" in listing.text
        assert http.post("/data/soil-moisture.zarr/zarr.json").status_code == 405

    def test_no_served_document_holds_a_local_path(
        self, stac_url: str, http: httpx.Client, data_dir: Path
    ) -> None:
        paths = ["/", "/collections", "/conformance", "/queryables"]
        for collection_id in COLLECTIONS:
            paths += [
                f"/collections/{collection_id}",
                f"/collections/{collection_id}/items?limit=100",
                f"/collections/{collection_id}/queryables",
            ]
        paths += [f"/collections/{i.collection}/items/{i.id}" for i in ITEMS[:3]]
        paths.append("/search?limit=100")
        local = str(data_dir.resolve())
        for path in paths:
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
            assert local not in response.text and "file://" not in response.text, path

    # -- searches --------------------------------------------------------------------
    @pytest.mark.parametrize("method", ["POST", "GET"])
    @pytest.mark.parametrize("case", SEARCH_CASES, ids=lambda c: c.name)
    def test_pystac_client_search(self, stac_url: str, case: SearchCase, method: str) -> None:
        client = Client.open(stac_url)
        search = client.search(method=method, limit=7, **case.params)
        ids = [item.id for item in search.items()]
        assert len(ids) == len(set(ids)), "an item came back twice while paging"
        assert set(ids) == case.expected

    @pytest.mark.parametrize("case", SEARCH_CASES, ids=lambda c: c.name)
    def test_httpx_get_search(self, http: httpx.Client, case: SearchCase) -> None:
        response = http.get("/search", params={**search_params(case.params), "limit": 100})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/geo+json")
        body = response.json()
        assert body["type"] == "FeatureCollection"
        assert set(_page_ids(body["features"])) == case.expected

    def test_item_collection_filters(self, http: httpx.Client) -> None:
        response = http.get(
            "/collections/discharge/items",
            params={
                "bbox": "7.5,44.5,9.5,45.2",
                "datetime": "2020-05-01T00:00:00Z/..",
                "limit": 50,
            },
        )
        assert response.status_code == 200, response.text
        assert set(_page_ids(response.json()["features"])) == {
            "discharge-2020-05",
            "discharge-2020-06",
        }

    def _follow_get(self, http: httpx.Client, url: str, params: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        response = http.get(url, params=params)
        for _ in range(50):
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["features"]) <= params["limit"]
            ids += _page_ids(body["features"])
            nxt = [link for link in body["links"] if link["rel"] == "next"]
            if not nxt:
                return ids
            assert nxt[0].get("method", "GET") == "GET"
            response = http.get(nxt[0]["href"])
        raise AssertionError("paging did not end")

    def test_paging_get_search(self, http: httpx.Client) -> None:
        ids = self._follow_get(http, "/search", {"limit": 5})
        assert len(ids) == len(ALL_IDS) and set(ids) == ALL_IDS

    def test_paging_get_search_with_filters(self, http: httpx.Client) -> None:
        params = {**search_params({"collections": ["soil-moisture"]}), "limit": 3}
        ids = self._follow_get(http, "/search", params)
        assert sorted(ids) == sorted(i.id for i in ITEMS if i.collection == "soil-moisture")

    def test_paging_item_collection(self, http: httpx.Client) -> None:
        ids = self._follow_get(http, "/collections/discharge/items", {"limit": 4})
        assert sorted(ids) == sorted(i.id for i in ITEMS if i.collection == "discharge")

    def _follow_post(self, http: httpx.Client, body: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        response = http.post("/search", json=body)
        for _ in range(50):
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["features"]) <= body["limit"]
            ids += _page_ids(page["features"])
            nxt = [link for link in page["links"] if link["rel"] == "next"]
            if not nxt:
                return ids
            assert nxt[0]["method"] == "POST"
            response = http.post(nxt[0]["href"], json=nxt[0]["body"])
        raise AssertionError("paging did not end")

    def test_paging_post_search(self, http: httpx.Client) -> None:
        ids = self._follow_post(http, {"limit": 5})
        assert len(ids) == len(ALL_IDS) and set(ids) == ALL_IDS

    @pytest.mark.parametrize("direction", ["asc", "desc"])
    def test_sortby_datetime(self, http: httpx.Client, direction: str) -> None:
        sign = "+" if direction == "asc" else "-"
        params = {"collections": "discharge", "sortby": f"{sign}datetime", "limit": 100}
        got = _page_ids(http.get("/search", params=params).json()["features"])
        expected = sorted(
            (i for i in ITEMS if i.collection == "discharge"), key=lambda i: i.range[0]
        )
        if direction == "desc":
            expected.reverse()
        assert got == [i.id for i in expected]
        body = {
            "collections": ["discharge"],
            "sortby": [{"field": "datetime", "direction": direction}],
        }
        got_post = _page_ids(http.post("/search", json={**body, "limit": 100}).json()["features"])
        assert got_post == got

    # -- strict RFC 3339 and the antimeridian on every search route ------------------
    @pytest.mark.parametrize(
        "value", ["2020-06-15", "2020-06-10/2020-06-15", "../2019-12-31", "2020-06-15T00:00:00"]
    )
    def test_plain_dates_are_a_400_on_every_search_route(
        self, http: httpx.Client, value: str
    ) -> None:
        """The STAC API wants RFC 3339 date-times (as pgstac and the validators do): a
        plain date or a time without offset is a 400 that shows the accepted forms."""
        responses = {
            "GET /search": http.get("/search", params={"datetime": value}),
            "POST /search": http.post("/search", json={"datetime": value}),
            **{
                f"GET /collections/{c}/items": http.get(
                    f"/collections/{c}/items", params={"datetime": value}
                )
                for c in COLLECTIONS
            },
        }
        for route, response in responses.items():
            assert response.status_code == 400, (route, response.text)
            text = response.json()["description"]
            assert "RFC 3339" in text and "2020-01-01T00:00:00Z/" in text, (route, text)

    def test_paging_with_a_datetime_interval_and_an_antimeridian_bbox(
        self, http: httpx.Client
    ) -> None:
        params = {
            "datetime": "2020-01-01T00:00:00Z/2020-12-31T23:59:59Z",
            "bbox": [12.5, 44.0, -170.0, 70.0],
        }
        expected = brute_force_ids(**params)
        assert {"discharge-2020-10", "discharge-chukotka-west"} <= expected
        got = self._follow_get(http, "/search", {**search_params(params), "limit": 1})
        assert len(got) == len(set(got)) and set(got) == expected
        got = self._follow_post(http, {**params, "limit": 1})
        assert len(got) == len(set(got)) and set(got) == expected

    def test_item_collection_across_the_antimeridian(self, http: httpx.Client) -> None:
        answers = {
            "discharge": http.get(
                "/collections/discharge/items", params={"bbox": "170,60,-170,70"}
            ),
            "soil-moisture": http.get(
                "/collections/soil-moisture/items", params={"bbox": "179.5,-20,-179.5,-15"}
            ),
        }
        assert answers["discharge"].status_code == 200, answers["discharge"].text
        assert set(_page_ids(answers["discharge"].json()["features"])) == {
            "discharge-chukotka-west",
            "discharge-chukotka-east",
        }
        assert answers["soil-moisture"].status_code == 200, answers["soil-moisture"].text
        assert _page_ids(answers["soil-moisture"].json()["features"]) == ["soil-moisture-fiji"]

    def test_a_3d_bbox_across_the_antimeridian(self, http: httpx.Client) -> None:
        bbox = [170.0, 60.0, -100.0, -170.0, 70.0, 5000.0]
        expected = {"discharge-chukotka-west", "discharge-chukotka-east"}
        assert brute_force_ids(bbox=bbox) == expected
        post = http.post("/search", json={"bbox": bbox, "limit": 100})
        get = http.get("/search", params={"bbox": ",".join(map(str, bbox)), "limit": 100})
        for response in (post, get):
            assert response.status_code == 200, response.text
            assert set(_page_ids(response.json()["features"])) == expected

    # -- errors ------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("method", "path", "payload", "status"),
        [
            ("GET", "/search", {"bbox": "1,2,3"}, 400),
            ("GET", "/search", {"bbox": "10,50,5,40"}, 400),
            ("GET", "/search", {"bbox": "0,50,5,40"}, 400),
            ("GET", "/search", {"bbox": "-200,0,0,10"}, 400),
            ("GET", "/search", {"bbox": "0,-95,10,10"}, 400),
            ("GET", "/search", {"bbox": "a,b,c,d"}, 400),
            ("GET", "/search", {"datetime": "not-a-date"}, 400),
            ("GET", "/search", {"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"}, 400),
            ("GET", "/search", {"datetime": "../.."}, 400),
            ("GET", "/search", {"datetime": "2020-13-01"}, 400),
            ("GET", "/search", {"datetime": "2020-1-1"}, 400),
            ("GET", "/search", {"datetime": "20200101"}, 400),
            ("GET", "/search", {"datetime": "2021-01-01/2020-12-31"}, 400),
            ("GET", "/search", {"datetime": "2020-01-01/2020-02-01/2020-03-01"}, 400),
            ("GET", "/search", {"bbox": "170,10,-170,-10"}, 400),
            ("GET", "/search", {"bbox": "170,-10,190,10"}, 400),
            ("GET", "/search", {"limit": "0"}, 400),
            ("GET", "/collections/discharge/items", {"bbox": "9,46,8,45"}, 400),
            ("GET", "/collections/discharge/items", {"datetime": "yesterday"}, 400),
            ("GET", "/collections/discharge/items", {"datetime": "2020-02-30"}, 400),
            ("GET", "/collections/discharge/items", {"bbox": "170,10,-170,-10"}, 400),
            ("POST", "/search", {"bbox": [1, 2, 3]}, 400),
            ("POST", "/search", {"bbox": [10, 50, 5, 40]}, 400),
            ("POST", "/search", {"bbox": [0, 50, 5, 40]}, 400),
            ("POST", "/search", {"bbox": [-200, 0, 0, 10]}, 400),
            ("POST", "/search", {"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"}, 400),
            ("POST", "/search", {"datetime": "not-a-date"}, 400),
            ("POST", "/search", {"datetime": "2020-13-01"}, 400),
            ("POST", "/search", {"datetime": "2021-01-01/2020-12-31"}, 400),
            ("POST", "/search", {"bbox": [170, 10, -170, -10]}, 400),
            ("POST", "/search", {"bbox": [170, -10, -181, 10]}, 400),
            (
                "POST",
                "/search",
                {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
                400,
            ),
            ("GET", "/collections/no-such-collection", {}, 404),
            ("GET", "/collections/no-such-collection/items", {}, 404),
            ("GET", "/collections/discharge/items/no-such-item", {}, 404),
            ("GET", "/collections/no-such-collection/items/discharge-2020-01", {}, 404),
        ],
        ids=lambda v: str(v) if not isinstance(v, dict) else orjson.dumps(v).decode(),
    )
    def test_errors_have_the_stac_shape(
        self, http: httpx.Client, method: str, path: str, payload: dict[str, Any], status: int
    ) -> None:
        if method == "GET":
            response = http.get(path, params=payload)
        else:
            response = http.post(path, json=payload)
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) >= {"code", "description"}, body
        assert isinstance(body["code"], str) and body["code"]
        assert isinstance(body["description"], str) and body["description"]

    @pytest.mark.parametrize("method", ["GET", "POST"])
    def test_bad_datetime_messages_quote_the_value_and_mention_dates(
        self, http: httpx.Client, method: str
    ) -> None:
        def description(value: str) -> str:
            if method == "GET":
                response = http.get("/search", params={"datetime": value})
            else:
                response = http.post("/search", json={"datetime": value})
            assert response.status_code == 400, response.text
            return str(response.json()["description"])

        for value in ("not-a-date", "2020-13-01"):
            text = description(value)
            assert repr(value) in text and "RFC 3339" in text, text
            assert "2020-01-01T00:00:00Z" in text, text
        backwards = "2021-01-01T00:00:00Z/2020-12-31T00:00:00Z"
        text = description(backwards)
        assert repr(backwards) in text and "starts after it ends" in text, text

    def test_bad_bbox_message_explains_the_antimeridian(self, http: httpx.Client) -> None:
        response = http.get("/search", params={"bbox": "170,10,-170,-10"})
        assert response.status_code == 400, response.text
        assert "antimeridian" in response.json()["description"]

    # -- random searches through the real server ----------------------------------------
    @settings(
        max_examples=60,
        deadline=None,
        # The same contract runs once per backend subclass; the property is the same.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(params=random_searches())
    def test_random_searches_match_brute_force(
        self, http: httpx.Client, params: dict[str, Any]
    ) -> None:
        """Random bbox/datetime/collection searches return what brute force returns."""
        response = http.post("/search", json={**params, "limit": 100})
        assert response.status_code == 200, response.text
        assert frozenset(_page_ids(response.json()["features"])) == brute_force_ids(**params)

    # -- client mistakes are 4xx, never a 500; nothing is silently ignored -------------
    @pytest.mark.parametrize(
        ("body", "content_type", "status", "words"),
        [
            (b'{"bbox": 5}', "application/json", 400, "bbox must be an array"),
            (b"[]", "application/json", 400, "must be a JSON object"),
            (b"5", "application/json", 400, "must be a JSON object"),
            (b'{"limit": 1', "application/json", 400, "not valid JSON"),
            (b'{"limit": 1}', "text/plain", 415, "application/json"),
            (
                b'{"datetime": "9999-12-31T23:59:59-23:59/.."}',
                "application/json",
                400,
                "out of range",
            ),
            (b'{"ids": {"a": 1}}', "application/json", 400, "ids must be an array"),
            (b'{"collections": [1]}', "application/json", 400, "collections must be an array"),
            (b'{"limit": "ten"}', "application/json", 400, "limit"),
            (b'{"token": {"k": [{}]}}', "application/json", 400, "token"),
            (b'{"query": {"x": {"gt": 10}}}', "application/json", 400, "'query'"),
            (b'{"limit": 1, "cloud": 3}', "application/json", 400, "'cloud'"),
        ],
    )
    def test_post_search_mistakes_are_4xx_with_a_clear_message(
        self, http: httpx.Client, body: bytes, content_type: str, status: int, words: str
    ) -> None:
        response = http.post("/search", content=body, headers={"content-type": content_type})
        assert response.status_code == status, response.text
        assert words in response.json()["description"], response.text

    @pytest.mark.parametrize(
        ("path", "params"),
        [
            ("/search", {"foo": "1"}),
            ("/search", {"query": "{}"}),
            ("/collections/discharge/items", {"foo": "1"}),
            ("/collections/discharge/items", {"ids": "a"}),
            ("/collections/discharge/items", {"collections": "soil-moisture"}),
        ],
    )
    def test_an_unknown_parameter_is_a_400_naming_it(
        self, http: httpx.Client, path: str, params: dict[str, str]
    ) -> None:
        response = http.get(path, params=params)
        assert response.status_code == 400, response.text
        (name,) = params
        assert name in response.json()["description"], response.text

    def test_a_tampered_paging_token_is_a_400(self, http: httpx.Client) -> None:
        token = "next:" + base64.urlsafe_b64encode(b'{"k": [{}]}').decode().rstrip("=")
        for response in (
            http.get("/search", params={"token": token}),
            http.post("/search", json={"token": token}),
        ):
            assert response.status_code == 400, response.text

    def test_ids_of_any_length(self, http: httpx.Client) -> None:
        ids = [f"i{n}" for n in range(300_000)] + ["discharge-2020-01"]  # a 3.2 MB body
        response = http.post("/search", json={"ids": ids, "limit": 10})
        assert response.status_code == 200, response.text
        assert _page_ids(response.json()["features"]) == ["discharge-2020-01"]

    def test_a_body_over_the_limit_is_a_413_naming_it(self, http: httpx.Client) -> None:
        body = b'{"ids": ["' + b"x" * 25_000_000 + b'"]}'
        response = http.post("/search", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413, response.text
        assert "4000000 bytes" in response.json()["description"]

    def test_mistakes_keep_the_connection_and_every_answer_has_a_request_id(
        self, http: httpx.Client
    ) -> None:
        """A client alternating bad and good requests on one keep-alive connection gets
        every good answer (an error never closes the connection)."""
        with httpx.Client(base_url=str(http.base_url), timeout=30) as one:
            for _ in range(20):
                bad = one.post("/search", json=[])
                good = one.get("/search", params={"limit": 1})
                assert bad.status_code == 400 and good.status_code == 200
                assert bad.headers["x-request-id"] and good.headers["x-request-id"]

    # -- CQL2 filter and fields --------------------------------------------------------
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(expr=random_filters())
    def test_random_cql2_filters_match_brute_force(
        self, http: httpx.Client, expr: dict[str, Any]
    ) -> None:
        expected = brute_force_filter_ids(expr)
        response = http.post("/search", json={"filter": expr, "limit": 100})
        assert response.status_code == 200, response.text
        assert frozenset(_page_ids(response.json()["features"])) == expected, expr
        text = cql2.parse_json(orjson.dumps(expr).decode()).to_text()
        response = http.get("/search", params={"filter": text, "limit": 100})
        assert response.status_code == 200, (text, response.text)
        assert frozenset(_page_ids(response.json()["features"])) == expected, text

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "rank < 3 AND collection = 'discharge'",
                _ids("discharge-2020-01", "discharge-2020-02", "discharge-2020-03"),
            ),
            ("kind IN ('special') AND score >= 2", None),
            ("id LIKE 'soil-moisture-2021-0%' AND NOT rank BETWEEN 12 AND 14", None),
            (
                "S_INTERSECTS(geometry, POLYGON((179 -20, 180 -20, 180 -15, 179 -15, 179 -20)))",
                _ids("soil-moisture-fiji"),
            ),
            ("NOT (rank >= 0)", frozenset()),
        ],
    )
    def test_cql2_text_filters_on_get_post_and_items(
        self, http: httpx.Client, text: str, expected: frozenset[str] | None
    ) -> None:
        as_json = cql2.parse_text(text).to_json()
        if expected is None:
            expected = brute_force_filter_ids(as_json)
        responses = [http.get("/search", params={"filter": text, "limit": 100})]
        if isinstance(as_json, dict):  # a POST filter is a JSON object
            responses.append(http.post("/search", json={"filter": as_json, "limit": 100}))
        for response in responses:
            assert response.status_code == 200, response.text
            assert frozenset(_page_ids(response.json()["features"])) == expected
        for collection_id in COLLECTIONS:
            items = http.get(
                f"/collections/{collection_id}/items", params={"filter": text, "limit": 100}
            )
            assert items.status_code == 200, items.text
            in_collection = {i.id for i in ITEMS if i.collection == collection_id}
            assert frozenset(_page_ids(items.json()["features"])) == expected & in_collection

    def test_filtered_paging_returns_each_match_once(self, http: httpx.Client) -> None:
        text = "rank >= 3 AND kind <> 'daily'"
        expected = brute_force_filter_ids(cql2.parse_text(text).to_json())
        got = self._follow_get(http, "/search", {"filter": text, "limit": 2})
        assert len(got) == len(set(got)) and set(got) == expected

    @pytest.mark.parametrize(
        "params",
        [
            {"filter": "rank >"},
            {"filter": "{not json", "filter-lang": "cql2-json"},
            {"filter": "rank > 1", "filter-lang": "sql"},
            {"filter": "rank > 1", "filter-crs": "EPSG:3857"},
        ],
    )
    def test_a_bad_filter_is_a_400_saying_why(
        self, http: httpx.Client, params: dict[str, str]
    ) -> None:
        response = http.get("/search", params=params)
        assert response.status_code == 400, response.text
        assert "filter" in response.json()["description"], response.text

    def test_fields_id_returns_ids_only(self, http: httpx.Client) -> None:
        for response in (
            http.get("/search", params={"fields": "id", "limit": 100}),
            http.post("/search", json={"fields": {"include": ["id"]}, "limit": 100}),
        ):
            assert response.status_code == 200, response.text
            features = response.json()["features"]
            assert {f["id"] for f in features} == set(ALL_IDS)
            # Each stays a GeoJSON Feature ("type"); id and collection are always kept.
            assert all(set(f) <= {"type", "id", "collection", "links"} for f in features), features[
                0
            ]
        response = http.get(
            "/collections/discharge/items", params={"fields": "-assets,-geometry", "limit": 3}
        )
        feature = response.json()["features"][0]
        assert "assets" not in feature and "geometry" not in feature and "properties" in feature

    @pytest.mark.parametrize(
        ("fields", "present", "absent"),
        [
            # nothing asked: the extension's default set
            ({}, {"type", "id", "geometry", "bbox", "assets", "properties"}, {"rank"}),
            ({"include": None, "exclude": None}, {"geometry", "properties"}, {"rank"}),
            # only exclude: everything else
            ({"exclude": ["geometry"]}, {"assets", "properties", "rank"}, {"geometry"}),
            # exclude with an explicitly empty include: the default set without it
            ({"include": [], "exclude": ["geometry"]}, {"assets", "properties"}, {"rank"}),
            # include wins over exclude, also over an excluded parent
            ({"include": ["geometry"], "exclude": ["geometry"]}, {"geometry"}, {"assets"}),
            (
                {"include": ["properties.rank"], "exclude": ["properties"]},
                {"type", "properties", "rank"},
                {"geometry", "score"},
            ),
        ],
        ids=lambda v: ",".join(sorted(v)) if isinstance(v, set) else str(v),  # no set order
    )
    def test_fields_follow_the_extensions_rules(
        self, http: httpx.Client, fields: dict, present: set[str], absent: set[str]
    ) -> None:
        body = {"fields": fields, "collections": ["discharge"], "limit": 3}
        response = http.post("/search", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/geo+json")
        for feature in response.json()["features"]:
            keys = set(feature) | set(feature.get("properties", {}))
            assert present <= keys and not (absent & keys), (fields, feature)

    def test_get_fields_mean_the_same_as_post(self, http: httpx.Client) -> None:
        for get, post in [
            ("", {}),
            ("-geometry", {"exclude": ["geometry"]}),
            (
                "-properties,+properties.rank",
                {"include": ["properties.rank"], "exclude": ["properties"]},
            ),
        ]:
            by_get = http.get("/search", params={"fields": get, "collections": "discharge"})
            by_post = http.post("/search", json={"fields": post, "collections": ["discharge"]})
            assert by_get.status_code == by_post.status_code == 200, (by_get.text, by_post.text)
            features = [r.json()["features"] for r in (by_get, by_post)]
            assert features[0] == features[1], get

    def test_a_search_without_fields_returns_whole_items(self, http: httpx.Client) -> None:
        for response in (
            http.get("/search", params={"collections": "discharge"}),
            http.post("/search", json={"collections": ["discharge"]}),
            http.get("/collections/discharge/items"),
        ):
            assert response.status_code == 200, response.text
            for feature in response.json()["features"]:
                assert {"rank", "score", "kind", "title"} <= set(feature["properties"])
                assert {"geometry", "assets", "links", "stac_version"} <= set(feature)

    def test_a_big_intersects_does_not_stall_other_clients(
        self, stac_url: str, http: httpx.Client
    ) -> None:
        """A 2.5 MB intersects polygon is parsed in a child process: a client polling the
        landing page meanwhile is held up neither by the parse nor by the GIL it needs.
        The poller's p99 is printed (issue target 100 ms; 1152 ms with the parse on the
        event loop, 140-270 ms with it in a thread, 7-18 ms in the child) and compared
        with its p99 during searches with a small polygon in the same run, so that load
        from other tests cannot fail it. The answer is the polygon's, not its stand-in
        box's, page after page. (stac-fastapi-pgstac alone validates such a body with
        pydantic on the event loop, ~1 s here.)"""
        import threading
        import time

        ring = _ellipse(100_000)
        body = orjson.dumps({"intersects": {"type": "Polygon", "coordinates": [ring]}, "limit": 5})
        assert 2_000_000 < len(body) < 4_000_000
        small = orjson.dumps(
            {
                "intersects": {"type": "Polygon", "coordinates": [ring[::5000] + [ring[0]]]},
                "limit": 5,
            }
        )

        def poller_p99_during(search_body: bytes) -> tuple[float, float]:
            """The poller's p99 while three searches with this body run; a search's time."""
            latencies: list[float] = []
            stop = threading.Event()

            def poll() -> None:
                with httpx.Client(base_url=stac_url, timeout=30) as poller:
                    while not stop.is_set():
                        started = time.perf_counter()
                        assert poller.get("/").status_code == 200
                        latencies.append(time.perf_counter() - started)
                        time.sleep(0.01)

            thread = threading.Thread(target=poll)
            thread.start()
            durations = []
            try:
                time.sleep(0.3)
                for _ in range(3):
                    started = time.perf_counter()
                    response = http.post(
                        "/search", content=search_body, headers={"content-type": "application/json"}
                    )
                    durations.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text[:300]
                time.sleep(0.3)
            finally:
                stop.set()
                thread.join()
            latencies.sort()
            return latencies[int(0.99 * (len(latencies) - 1))], sorted(durations)[1]

        base_p99, _ = poller_p99_during(small)
        p99, search = poller_p99_during(body)
        print(
            f"GET / p99 during 3 searches with a 2.5 MB intersects ({search * 1000:.0f} ms "
            f"each): {p99 * 1000:.1f} ms (target 100 ms); with a small one: "
            f"{base_p99 * 1000:.1f} ms"
        )
        # The target, or (on a machine loaded by other tests) three times the poller's
        # p99 with a small polygon. A parse back in a thread of the server fails it on
        # an idle machine (GIL contention: 140-270 ms against 100 ms).
        assert p99 < max(0.1, 3 * base_p99), (p99, base_p99, search)

        # The polygon (an ellipse) decides, not its bounding box: page by page with the
        # next links' bodies merged into the request, as STAC clients page.
        request = orjson.loads(body)
        found: list[str] = []
        page = http.post("/search", json=request).json()
        for _ in range(50):
            found += [f["id"] for f in page["features"]]
            nxt = [link for link in page["links"] if link["rel"] == "next"]
            if not nxt:
                break
            (link,) = nxt
            next_body = {**request, **link["body"]} if link.get("merge") else link["body"]
            page = http.post(link["href"], json=next_body).json()
        assert len(found) == len(set(found))
        assert frozenset(found) == brute_force_ids(intersects=request["intersects"])
        assert frozenset(found) != brute_force_ids(bbox=list(shape(request["intersects"]).bounds))

    def test_a_big_intersects_is_checked_and_answered_like_a_small_one(
        self, http: httpx.Client
    ) -> None:
        """A body above 256 KB takes the child-process parse: a bad geometry there is
        the same 400 as a small one's, the other parameters are still checked, and
        fields applies to the answer."""
        ring = _ellipse(20_000)
        assert len(orjson.dumps(ring)) > 256 * 1024
        polygon = {"type": "Polygon", "coordinates": [ring]}
        outside = {"type": "Polygon", "coordinates": [[[x, y + 50] for x, y in ring]]}
        for body in ({"intersects": outside}, {"intersects": outside, "limit": 1}):
            response = http.post("/search", json=body)
            assert response.status_code == 400, response.text
            assert "outside (-180, -90, 180, 90)" in response.json()["description"]
        response = http.post("/search", json={"intersects": polygon, "color": "red"})
        assert response.status_code == 400, response.text
        assert "'color'" in response.json()["description"]
        response = http.post(
            "/search", json={"intersects": polygon, "fields": {"include": ["id"]}, "limit": 100}
        )
        assert response.status_code == 200, response.text
        features = response.json()["features"]
        assert {f["id"] for f in features} == brute_force_ids(intersects=polygon)
        assert features and all(
            set(f) <= {"type", "id", "collection", "links"} for f in features
        ), features[:1]

    def test_null_fields_are_a_400(self, http: httpx.Client) -> None:
        response = http.post("/search", json={"fields": None})
        assert response.status_code == 400, response.text
        assert "fields" in response.json()["description"]

    def test_collections_and_ids_given_as_a_string_are_lists(self, http: httpx.Client) -> None:
        """stac-api-validator posts ``"collections": "discharge"`` (the GET form)."""
        as_string = http.post("/search", json={"collections": "discharge", "limit": 100})
        as_list = http.post("/search", json={"collections": ["discharge"], "limit": 100})
        assert as_string.status_code == 200, as_string.text
        ids = {f["id"] for f in as_string.json()["features"]}
        assert ids == {f["id"] for f in as_list.json()["features"]}
        assert ids == {i.id for i in ITEMS if i.collection == "discharge"}
        two = sorted(ids)[:2]
        by_ids = http.post("/search", json={"ids": ",".join(two), "limit": 100})
        assert sorted(f["id"] for f in by_ids.json()["features"]) == two

    def test_stac_api_validator_reports_no_errors(self, stac_url: str) -> None:
        """The public conformance tool (stac-api-validator), with paging, on every
        conformance class the API claims that the tool can check."""
        classes = [
            "core",
            "collections",
            "features",
            "item-search",
            "filter",
            "item-search#fields",
            "item-search#sort",
            "features#fields",
            "features#sort",
        ]
        whole_world = {
            "type": "Polygon",
            "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]],
        }
        command = [
            sys.executable,
            "-m",
            "tests.helpers.stac_api_validator",
            "--root-url",
            stac_url,
            "--collection",
            "discharge",
            "--geometry",
            orjson.dumps(whole_world).decode(),
            "--fields-nested-property",
            "properties.rank",
            "--validate-pagination",
            *(arg for cls in classes for arg in ("--conformance", cls)),
        ]
        run = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        report = run.stdout + run.stderr
        assert "Errors: none" in report and run.returncode == 0, report[-6000:]
        assert "Validating STAC API - Item Search - Filter Extension" in report, report[-3000:]

    def test_queryables_name_the_items_properties(self, http: httpx.Client) -> None:
        for path in ("/queryables", "/collections/discharge/queryables"):
            response = http.get(path)
            assert response.status_code == 200, response.text
            properties = response.json()["properties"]
            assert {"id", "geometry", "rank", "score", "kind"} <= set(properties), properties
            assert properties["rank"]["type"] in ("number", "integer"), properties["rank"]
            assert properties["kind"]["type"] == "string", properties["kind"]

    # -- collection search --------------------------------------------------------------
    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({}, {"discharge", "soil-moisture"}),
            ({"bbox": "170,60,-170,70"}, {"discharge"}),
            ({"bbox": "-30,-60,-20,-50"}, set()),
            ({"datetime": "2021-06-01T00:00:00Z/.."}, {"soil-moisture"}),
            ({"datetime": "../2019-06-01T00:00:00Z"}, set()),
            ({"q": "soil"}, {"soil-moisture"}),
            ({"q": "discharge,soil"}, {"discharge", "soil-moisture"}),
        ],
        # Sets print in hash order, which differs between xdist workers: sorted ids.
        ids=lambda v: str(sorted(v)) if isinstance(v, set) else str(v),
    )
    def test_collection_search(
        self, http: httpx.Client, params: dict[str, str], expected: set[str]
    ) -> None:
        response = http.get("/collections", params=params)
        assert response.status_code == 200, response.text
        assert {c["id"] for c in response.json()["collections"]} == expected

    def test_collection_search_pages_and_refuses_what_it_does_not_take(
        self, http: httpx.Client
    ) -> None:
        first = http.get("/collections", params={"limit": 1}).json()
        assert len(first["collections"]) == 1
        (nxt,) = [link["href"] for link in first["links"] if link["rel"] == "next"]
        second = http.get(nxt).json()
        ids = {first["collections"][0]["id"], second["collections"][0]["id"]}
        assert ids == {"discharge", "soil-moisture"}
        for params in (
            {"foo": "1"},
            {"datetime": "2021-06-01"},
            {"bbox": "1,2,3"},
            {"offset": str(10**33)},  # pgstac answered a 500 (integer out of range)
            {"limit": str(10**20)},
        ):
            response = http.get("/collections", params=params)
            assert response.status_code == 400, (params, response.text)
        conformance = http.get("/conformance").json()["conformsTo"]
        assert any(c.endswith("/collection-search") for c in conformance)

    # -- sort on any property ------------------------------------------------------------
    @pytest.mark.parametrize(
        "sortby",
        ["rank", "-rank", "kind,-rank", "-kind,rank", "properties.score,rank"],
    )
    def test_sort_on_an_item_property_pages_in_order(self, http: httpx.Client, sortby: str) -> None:
        def key(item_id: str) -> tuple[Any, ...]:
            props = FILTER_PROPERTIES[item_id]
            out: list[Any] = []
            for field in sortby.split(","):
                name = field.lstrip("-").removeprefix("properties.")
                value = props[name]
                if field.startswith("-"):
                    value = -value if isinstance(value, int | float) else _Desc(value)
                out.append(value)
            return tuple(out)

        expected = sorted(ALL_IDS, key=key)
        got_get = self._follow_get(http, "/search", {"sortby": sortby, "limit": 4})
        assert got_get == expected, (sortby, got_get, expected)
        body = {
            "sortby": [
                {"field": f.lstrip("-"), "direction": "desc" if f.startswith("-") else "asc"}
                for f in sortby.split(",")
            ],
            "limit": 4,
        }
        assert self._follow_post(http, body) == expected, sortby
