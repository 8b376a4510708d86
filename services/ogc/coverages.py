"""EDR and Coverages over the twins' Zarr datacubes.

Two pygeoapi providers read a twin's datacube lazily from core's store (one opened
dataset per live version, shared by all requests; a request reads only the chunks its
selection touches):

- :class:`DatacubeEDRProvider` answers EDR ``position`` (WKT ``POINT`` → PointSeries,
  ``MULTIPOINT`` → a collection of them), ``area`` (``POLYGON``: a Grid with the cells
  outside the polygon null) and ``cube`` (``bbox``) queries;
- :class:`DatacubeCoverageProvider` answers OGC API - Coverages ``subset`` (``x``/``Lon``,
  ``y``/``Lat``, ``t``/``time``; an interval trims, a single value slices), ``bbox``,
  ``datetime`` and ``properties``.

pygeoapi's own request functions would dump the CoverageJSON with Python lists and
``json`` (seconds for a few million values), offer netCDF on Coverages only and answer
some bad input with a 500. :func:`get_collection_edr_query` and
:func:`get_collection_coverage` replace them for these collections (same signatures;
other collections go on to pygeoapi's): they check every query parameter (an unknown
or unsupported one is a 400 naming it), estimate the result's size before reading
(over ``max_result_bytes``: 413), and encode CoverageJSON straight from numpy
(:mod:`twinmesh.ogc.covjson`), netCDF-4 or a zipped Zarr v3 store (``f=json|netcdf|zarr``
or the ``Accept`` header).

Aggregation over time:

- Coverages: the draft's temporal scaling, ``resolution=time(P1M)`` (ISO 8601 period of
  days, weeks, months or years), aggregated by ``mean`` unless the request says
  ``Prefer: interpolation=time([ogc-interpolation:minimum])`` (``mean``, ``minimum``,
  ``maximum``, ``median``); the response names the method in ``Preference-Applied``.
- EDR has no such parameter: the vendor parameter ``x-twinmesh-time-aggregate=mean``
  (``mean``, ``minimum``, ``maximum``, ``median``) reduces the selected time steps to
  one whose CoverageJSON ``t`` axis carries their first and last time as bounds.

Selection rules (those of core's ``subset``): a grid cell is selected when its centre
lies in the bbox, interval or polygon (bounds included); a point picks the cell that
contains it; a date without a time means that whole day. A request entirely outside
the data is a 400 in EDR (whose responses have no 204) and a 204 in Coverages
(``/req/coverage-subset/definition`` C); one inside the data that selects no cell
centre is a 400 saying so.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any, Literal

import numpy as np
import orjson
import xarray as xr
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderGenericError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
    ProviderNoDataError,
    ProviderRequestEntityTooLargeError,
)
from pygeoapi.provider.base_edr import BaseEDRProvider
from shapely import intersects_xy
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from twinmesh.core.errors import TwinmeshError
from twinmesh.ogc import covjson
from twinmesh.ogc.context import engine_for

__all__ = [
    "DatacubeEDRProvider",
    "DatacubeCoverageProvider",
    "Datacube",
    "Query",
    "Selection",
    "InvalidParameterValue",
    "ResultTooLarge",
    "NoDataInRequest",
    "AGGREGATE_PARAMETER",
    "AGGREGATIONS",
    "FORMATS",
    "get_collection_edr_query",
    "get_collection_coverage",
    "document_openapi",
]

LOGGER = logging.getLogger(__name__)

#: EDR vendor parameter: reduce the selected time steps with one of AGGREGATIONS.
AGGREGATE_PARAMETER = "x-twinmesh-time-aggregate"
#: Aggregation methods, named as OGC's interpolation methods (ogc-interpolation:<name>).
AGGREGATIONS = {"mean": "mean", "minimum": "min", "maximum": "max", "median": "median"}
#: Output formats: name → media type.
FORMATS = {
    "json": covjson.MEDIA_TYPE,
    "netcdf": "application/x-netcdf",
    "zarr": "application/zip",
}
_F_ALIASES = {
    "json": "json",
    "covjson": "json",
    "coveragejson": "json",
    "netcdf": "netcdf",
    "nc": "netcdf",
    "zarr": "zarr",
    "html": "html",
}
_ACCEPT = {
    covjson.MEDIA_TYPE: "json",
    "application/prs.coverage+json": "json",
    "application/json": "json",
    "application/x-netcdf": "netcdf",
    "application/netcdf": "netcdf",
    "application/zip": "zarr",
    "application/vnd+zarr": "zarr",
    "text/html": "html",
}
_CRS_OK = {
    "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "https://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "http://www.opengis.net/def/crs/EPSG/0/4326",
    "https://www.opengis.net/def/crs/EPSG/0/4326",
    "[OGC:CRS84]",
    "CRS84",
    "EPSG:4326",
}
#: Bytes per value of each format, to estimate a result's size before reading it
#: (CoverageJSON: the longest float32 text plus a comma).
_JSON_BYTES_PER_VALUE = 12
_CACHE_SIZE = 32
#: Most points one EDR position query may name (each is a coverage of its own).
MAX_POSITIONS = 1000
#: Largest count of a temporal scaling period (P<n>D ...).
_MAX_PERIOD = 100_000

_AXIS_NAMES = {"x": "x", "lon": "x", "y": "y", "lat": "y", "t": "t", "time": "t"}


# -- errors: pygeoapi's provider errors with the right status and a message -------------
class InvalidParameterValue(ProviderInvalidQueryError):
    """A client mistake in a query parameter: 400 with a message saying what is right."""

    ogc_exception_code = "InvalidParameterValue"
    http_status_code = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class ResultTooLarge(ProviderRequestEntityTooLargeError):
    """The result would exceed ``max_result_bytes``: 413, refused before reading."""

    ogc_exception_code = "TooLarge"

    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class NoDataInRequest(ProviderNoDataError):
    """A Coverages request entirely outside the data: 204 No Content."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class _NotFound(ProviderItemNotFoundError):
    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


class _Unavailable(ProviderConnectionError):
    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message, user_msg=message)


def _provider_error(exc: TwinmeshError) -> ProviderGenericError:
    """Core's typed error as the pygeoapi error of the same status."""
    if exc.status == 413:
        return ResultTooLarge(exc.message)
    if exc.status == 404:
        return _NotFound(exc.message)
    if exc.status == 503:
        return _Unavailable(exc.message)
    if 400 <= exc.status < 500:
        return InvalidParameterValue(exc.message)
    return ProviderConnectionError(exc.message)


# -- the datacube --------------------------------------------------------------------
def _step(values: np.ndarray) -> float:
    if values.size < 2:
        return 0.0
    return float(np.median(np.abs(np.diff(values))))


@dataclass(frozen=True, eq=False)
class Datacube:
    """A twin's lazily opened datacube with its coordinates in memory."""

    name: str
    ds: xr.Dataset
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray | None
    variables: tuple[str, ...]
    dx: float = field(init=False)
    dy: float = field(init=False)
    t_us: np.ndarray | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dx", _step(self.x))
        object.__setattr__(self, "dy", _step(self.y))
        t_us = None if self.t is None else self.t.astype("datetime64[us]")
        object.__setattr__(self, "t_us", t_us)

    @classmethod
    def from_dataset(cls, name: str, ds: xr.Dataset) -> Datacube:
        for dim in ("x", "y"):
            if dim not in ds.dims:
                raise ValueError(f"datacube {name} has no dimension {dim!r}")
        grid_vars = tuple(
            str(k)
            for k, v in ds.data_vars.items()
            if {"x", "y"} <= set(map(str, v.dims))
            and set(map(str, v.dims)) <= {"t", "y", "x"}
            and v.dtype.kind in "fiu"
        )
        t = ds["t"].values if "t" in ds.dims else None
        if t is not None and t.dtype.kind != "M":
            raise ValueError(f"datacube {name} has a t axis that is not datetime64")
        return cls(
            name=name,
            ds=ds[list(grid_vars)],
            x=np.asarray(ds["x"].values, dtype="float64"),
            y=np.asarray(ds["y"].values, dtype="float64"),
            t=t,
            variables=grid_vars,
        )

    # -- descriptions ------------------------------------------------------------------
    def extent(self) -> tuple[float, float, float, float]:
        """West, south, east, north of the cells (centres ± half a cell)."""
        hx, hy = self.dx / 2, self.dy / 2
        return (
            float(self.x.min() - hx),
            float(self.y.min() - hy),
            float(self.x.max() + hx),
            float(self.y.max() + hy),
        )

    def time_range(self) -> tuple[str, str] | None:
        if self.t is None or self.t.size == 0:
            return None
        first, last = covjson.time_strings(np.array([self.t.min(), self.t.max()]))
        return first, last

    def time_resolution(self) -> str | None:
        """ISO 8601 duration of the median time step (P1D, P1M, ...)."""
        if self.t is None or self.t.size < 2:
            return None
        seconds = float(np.median(np.diff(self.t).astype("timedelta64[s]").astype("float64")))
        days = seconds / 86400
        if 28 <= days <= 31:
            return "P1M"
        if 365 <= days <= 366:
            return "P1Y"
        if days >= 1 and days == int(days):
            return f"P{int(days)}D"
        return f"PT{int(seconds)}S"

    def fields(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.variables:
            attrs = self.ds[name].attrs
            entry: dict[str, Any] = {
                "type": "number" if self.ds[name].dtype.kind == "f" else "integer",
                "title": str(attrs.get("long_name") or name),
                "x-ogc-unit": str(attrs.get("units", "1")),
            }
            if attrs.get("standard_name"):
                entry["description"] = f"CF standard name: {attrs['standard_name']}"
            out[name] = entry
        return out

    def parameters(self) -> dict[str, covjson.Parameter]:
        return {n: covjson.Parameter.from_attrs(n, self.ds[n].attrs) for n in self.variables}

    def coverage_properties(self) -> dict[str, Any]:
        """What pygeoapi's collection description reads of a coverage provider."""
        west, south, east, north = self.extent()
        props: dict[str, Any] = {
            "bbox": [west, south, east, north],
            "bbox_crs": covjson.CRS84,
            "crs_type": "GeographicCRS",
            "bbox_units": "degrees",
            "x_axis_label": "x",
            "y_axis_label": "y",
            "width": int(self.x.size),
            "height": int(self.y.size),
            "resx": self.dx,
            "resy": self.dy,
            "axes": ["x", "y"],
        }
        time_range = self.time_range()
        if time_range is not None:
            props.update(
                time_axis_label="t",
                time_range=list(time_range),
                time=int(self.t.size) if self.t is not None else 0,
                restime=self.time_resolution(),
            )
            props["axes"].append("t")
        return props


_cubes: OrderedDict[tuple[str, str, str, str], Datacube] = OrderedDict()
_cubes_lock = threading.Lock()


def open_datacube(definition: Mapping[str, Any]) -> Datacube:
    """The datacube a provider definition names (``twin``, ``dataset``), opened once per
    live version and kept for the next requests."""
    try:
        twin, dataset = str(definition["twin"]), str(definition["dataset"])
    except KeyError as exc:
        raise ProviderConnectionError(
            f"a datacube provider needs {exc.args[0]!r} (generated by twinmesh.ogc.config)"
        ) from None
    store = engine_for(definition).store
    try:
        version = store.live_version(twin, dataset)
    except TwinmeshError as exc:
        raise _provider_error(exc) from None
    key = (store.url, twin, dataset, version)
    with _cubes_lock:
        cube = _cubes.get(key)
        if cube is not None:
            _cubes.move_to_end(key)
            return cube
    try:
        cube = Datacube.from_dataset(f"{twin}-{dataset}", store.open(twin, dataset))
    except TwinmeshError as exc:
        raise _provider_error(exc) from None
    except ValueError as exc:
        raise ProviderConnectionError(str(exc)) from None
    with _cubes_lock:
        _cubes[key] = cube
        while len(_cubes) > _CACHE_SIZE:
            _cubes.popitem(last=False)
    return cube


# -- parsing the request -------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """``lo <= v <= hi`` along a spatial axis (``None``: open); ``source`` names the
    request parameter in messages."""

    lo: float | None
    hi: float | None
    source: str = ""


@dataclass(frozen=True)
class TimeInterval:
    """``start <= t <= end`` (datetime64[us]; ``None``: open); ``slice`` drops the axis
    when it selects one step (a Coverages slicing subset)."""

    start: np.datetime64 | None
    end: np.datetime64 | None
    text: str
    slice: bool = False


@dataclass(frozen=True)
class Query:
    """A parsed, well-formed request over one datacube."""

    variables: tuple[str, ...] | None = None
    x: Interval | float | None = None
    y: Interval | float | None = None
    t: TimeInterval | None = None
    points: tuple[tuple[float, float], ...] | None = None
    polygon: BaseGeometry | None = None
    aggregate: str | None = None
    #: pandas frequency of a Coverages temporal scaling (``resolution=time(P1M)``).
    resample: str | None = None
    #: How a request entirely outside the data is answered: 400 (EDR) or 204 (Coverages).
    outside: Literal[400, 204] = 400


@dataclass(frozen=True)
class Selection:
    """Which part of a datacube a query reads: positional indexers and what to do."""

    variables: tuple[str, ...]
    t: slice | int | None
    y: slice | int | np.ndarray
    x: slice | int | np.ndarray
    pointwise: bool = False
    mask: np.ndarray | None = None
    aggregate: str | None = None
    resample: str | None = None
    n_out_t: int = 1

    def n_values(self, cube: Datacube) -> int:
        def size(index: slice | int | np.ndarray | None, length: int) -> int:
            if index is None or isinstance(index, int | np.integer):
                return 1
            if isinstance(index, slice):
                return len(range(*index.indices(length)))
            return int(np.size(index))

        nt = self.n_out_t
        ny = size(self.y, cube.y.size)
        nx = 1 if self.pointwise else size(self.x, cube.x.size)
        return len(self.variables) * nt * ny * nx


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameterValue(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidParameterValue(f"{name}: {text!r} is not a finite number")
    return value


def parse_bbox(text: str, name: str = "bbox") -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` in WGS84 degrees, well formed (4 finite numbers, not
    inverted, in range)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 6:
        raise InvalidParameterValue(
            f"{name} has 6 numbers but the datacube has no vertical axis: give 4 "
            "(minx,miny,maxx,maxy)"
        )
    if len(parts) != 4:
        raise InvalidParameterValue(
            f"{name} needs 4 comma-separated numbers (minx,miny,maxx,maxy), got {len(parts)}"
        )
    w, s, e, n = (_number(p, name) for p in parts)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise InvalidParameterValue(
            f"{name} {text} is not in WGS84 degrees (longitude -180..180, latitude -90..90)"
        )
    if w > e or s > n:
        raise InvalidParameterValue(
            f"{name} {text} is inverted: minx must not exceed maxx nor miny maxy "
            "(a bbox across the antimeridian is not supported)"
        )
    return (w, s, e, n)


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _instant(text: str, name: str, *, end: bool) -> np.datetime64:
    """An RFC 3339 date or date-time as UTC datetime64[us]; a bare date is the start
    of that day, or its last microsecond when it closes an interval (``end``)."""
    text = text.strip()
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            value = np.datetime64(day.isoformat(), "us")
            if end:
                value = value + np.timedelta64(86_400_000_000 - 1, "us")
            return value
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise InvalidParameterValue(
            f"{name}: {text!r} is not an RFC 3339 date or date-time "
            "(e.g. 1985-06-01 or 1985-06-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise InvalidParameterValue(f"{name}: {text!r} is out of range") from None
    return np.datetime64(moment.isoformat(), "us")


def parse_datetime(text: str, name: str = "datetime") -> TimeInterval:
    """An instant (``1985-06-01``: that day; a date-time: that instant) or an interval
    ``start/end`` whose ends may be open (``..`` or empty)."""
    text = str(text).strip()
    if not text:
        raise InvalidParameterValue(f"{name} is empty: give a date, a date-time or start/end")
    if "/" in text:
        parts = text.split("/")
        if len(parts) != 2:
            raise InvalidParameterValue(f"{name} {text!r} has more than one '/'")
        a, b = (p.strip() for p in parts)
        start = None if a in ("", "..") else _instant(a, name, end=False)
        stop = None if b in ("", "..") else _instant(b, name, end=True)
        if start is None and stop is None:
            raise InvalidParameterValue(f"{name} {text!r} is open at both ends: drop it")
        if start is not None and stop is not None and start > stop:
            raise InvalidParameterValue(f"{name} {text!r} is inverted: start is after end")
        return TimeInterval(start, stop, text)
    start = _instant(text, name, end=False)
    stop = _instant(text, name, end=True) if _DATE_ONLY.match(text) else start
    return TimeInterval(start, stop, text)


def parse_coords(text: str, query_type: str) -> BaseGeometry:
    """The WKT of an EDR ``coords``: POINT/MULTIPOINT (position), POLYGON/MULTIPOLYGON
    (area), in WGS84 longitude/latitude without z."""
    from shapely import wkt

    kinds = {"position": ("Point", "MultiPoint"), "area": ("Polygon", "MultiPolygon")}[query_type]
    try:
        geometry = wkt.loads(str(text))
    except (ShapelyError, ValueError, TypeError, AttributeError):
        raise InvalidParameterValue(
            f"coords is not well-known text: give e.g. {_EXAMPLE_COORDS[query_type]}"
        ) from None
    if geometry.geom_type not in kinds:
        raise InvalidParameterValue(
            f"coords of a {query_type} query must be {' or '.join(k.upper() for k in kinds)}, "
            f"got {geometry.geom_type.upper()}"
        )
    if geometry.is_empty:
        raise InvalidParameterValue("coords is an empty geometry")
    if geometry.has_z:
        raise InvalidParameterValue(
            "coords has z values but the datacube has no vertical axis: give x y only"
        )
    w, s, e, n = geometry.bounds
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise InvalidParameterValue("coords must have finite coordinates")
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidParameterValue(
            "coords is not in WGS84 longitude/latitude (x -180..180, y -90..90)"
        )
    if query_type == "area" and not geometry.is_valid:
        raise InvalidParameterValue("coords is not a valid polygon (it crosses itself)")
    return geometry


_EXAMPLE_COORDS = {
    "position": "POINT(9.7 50.8)",
    "area": "POLYGON((9.5 50.5,9.9 50.5,9.9 50.9,9.5 50.5))",
}


def parse_variables(values: Sequence[str], cube: Datacube, name: str) -> tuple[str, ...]:
    wanted = [v.strip() for v in values if v.strip()]
    if not wanted:
        raise InvalidParameterValue(f"{name} is empty: give one of {', '.join(cube.variables)}")
    unknown = [v for v in wanted if v not in cube.variables]
    if unknown:
        raise InvalidParameterValue(
            f"{name}: unknown parameter {', '.join(unknown)}; {cube.name} has "
            f"{', '.join(cube.variables)}"
        )
    return tuple(dict.fromkeys(wanted))


def parse_aggregate(text: str, name: str) -> str:
    method = str(text).strip()
    if method.startswith("[ogc-interpolation:") and method.endswith("]"):
        method = method[len("[ogc-interpolation:") : -1]
    if method not in AGGREGATIONS:
        raise InvalidParameterValue(
            f"{name}={text!r} is not offered: use one of {', '.join(AGGREGATIONS)}"
        )
    return method


_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def parse_period(text: str, name: str) -> str:
    """An ISO 8601 period of whole years, months, weeks or days as a pandas frequency."""
    match = _PERIOD.match(text.strip())
    if not match or not any(match.groups()):
        raise InvalidParameterValue(
            f"{name}: {text!r} is not an ISO 8601 period of days, weeks, months or years "
            "(e.g. P1D, P7D, P1M, P1Y)"
        )
    parts = [(int(v), unit) for v, unit in zip(match.groups(), "YMWD", strict=True) if v]
    if len(parts) != 1 or parts[0][0] == 0:
        raise InvalidParameterValue(
            f"{name}: {text!r} mixes units or is zero; give one, e.g. P3M or P10D"
        )
    n, unit = parts[0]
    if n > _MAX_PERIOD:
        raise InvalidParameterValue(f"{name}: {text!r} is longer than the data could be")
    return {"Y": f"{n}YS", "M": f"{n}MS", "W": f"{7 * n}D", "D": f"{n}D"}[unit]


# -- selecting -----------------------------------------------------------------------
def _tolerance(step: float) -> float:
    return max(step, 1e-12) * 1e-6


def _index_range(coords: np.ndarray, lo: float | None, hi: float | None, tol: float):
    inside = np.ones(coords.shape, dtype=bool)
    if lo is not None:
        inside &= coords >= lo - tol
    if hi is not None:
        inside &= coords <= hi + tol
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        return None
    return slice(int(hits[0]), int(hits[-1]) + 1)


def _nearest(coords: np.ndarray, value: float, step: float) -> int | None:
    distance = np.abs(coords - value)
    i = int(np.argmin(distance))
    half = step / 2 if step > 0 else 0.0
    if distance[i] > half + _tolerance(step):
        return None
    return i


def _outside(query: Query, message: str) -> ProviderGenericError:
    if query.outside == 204:
        return NoDataInRequest(message)
    return InvalidParameterValue(message)


def _axis_index(cube: Datacube, axis: str, request: Interval | float | None, query: Query):
    coords, step = (cube.x, cube.dx) if axis == "x" else (cube.y, cube.dy)
    lo_edge, hi_edge = float(coords.min() - step / 2), float(coords.max() + step / 2)
    label = "longitude (x)" if axis == "x" else "latitude (y)"
    if request is None:
        return slice(None)
    if isinstance(request, Interval):
        lo, hi = request.lo, request.hi
        what = request.source or f"{lo}..{hi}"
        if (hi is not None and hi < lo_edge) or (lo is not None and lo > hi_edge):
            raise _outside(
                query,
                f"{what} is outside the {label} of {cube.name}, {lo_edge:g}..{hi_edge:g}",
            )
        index = _index_range(coords, lo, hi, 0.0)
        if index is None:
            raise InvalidParameterValue(
                f"{what} holds no grid cell centre of {cube.name} along {label} "
                f"(cells are {step:g} apart): widen it"
            )
        return index
    found = _nearest(coords, float(request), step)
    if found is None:
        raise _outside(
            query,
            f"{axis}={request} is outside the {label} of {cube.name}, {lo_edge:g}..{hi_edge:g}",
        )
    return found


def _time_index(cube: Datacube, request: TimeInterval | None, query: Query):
    if cube.t_us is None:
        if request is not None:
            raise InvalidParameterValue(f"{cube.name} has no time axis: drop datetime")
        return None
    if request is None:
        return slice(None)
    t = cube.t_us
    first, last = covjson.time_strings(np.array([t.min(), t.max()]))
    if (request.end is not None and request.end < t.min()) or (
        request.start is not None and request.start > t.max()
    ):
        raise _outside(
            query, f"{request.text} is outside the time axis of {cube.name}, {first}/{last}"
        )
    inside = np.ones(t.shape, dtype=bool)
    if request.start is not None:
        inside &= t >= request.start
    if request.end is not None:
        inside &= t <= request.end
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        resolution = cube.time_resolution() or "irregular"
        raise InvalidParameterValue(
            f"{request.text} holds no time step of {cube.name} (steps: {resolution}, "
            f"{first}/{last}): widen it"
        )
    if request.slice and hits.size == 1:
        return int(hits[0])
    if hits[-1] - hits[0] + 1 == hits.size:
        return slice(int(hits[0]), int(hits[-1]) + 1)
    return hits


def select(cube: Datacube, query: Query) -> Selection:
    """The part of ``cube`` a query reads; 400 (or 204) when it reads nothing."""
    variables = query.variables or cube.variables
    t_index = _time_index(cube, query.t, query)
    if query.points is not None:
        ys, xs = [], []
        for px, py in query.points:
            ix, iy = _nearest(cube.x, px, cube.dx), _nearest(cube.y, py, cube.dy)
            if ix is None or iy is None:
                w, s, e, n = cube.extent()
                raise _outside(
                    query,
                    f"POINT({px} {py}) is outside the grid of {cube.name}, "
                    f"x {w:g}..{e:g}, y {s:g}..{n:g}",
                )
            xs.append(ix)
            ys.append(iy)
        if len(xs) == 1:
            y_index: slice | int | np.ndarray = ys[0]
            x_index: slice | int | np.ndarray = xs[0]
            pointwise = False
        else:
            y_index, x_index, pointwise = np.array(ys), np.array(xs), True
        mask = None
    else:
        x_request, y_request = query.x, query.y
        if query.polygon is not None:
            w, s, e, n = query.polygon.bounds
            x_request, y_request = Interval(w, e, "coords"), Interval(s, n, "coords")
        x_index = _axis_index(cube, "x", x_request, query)
        y_index = _axis_index(cube, "y", y_request, query)
        pointwise = False
        mask = None
        if query.polygon is not None:
            assert isinstance(x_index, slice) and isinstance(y_index, slice)
            xx, yy = np.meshgrid(cube.x[x_index], cube.y[y_index])
            mask = intersects_xy(query.polygon, xx, yy)
            if not mask.any():
                raise InvalidParameterValue(
                    f"the polygon holds no grid cell centre of {cube.name} "
                    f"(cells are {cube.dx:g} x {cube.dy:g} degrees): enlarge it"
                )
    n_out_t = _n_time(cube, t_index, query)
    return Selection(
        variables=tuple(variables),
        t=t_index,
        y=y_index,
        x=x_index,
        pointwise=pointwise,
        mask=mask,
        aggregate=query.aggregate,
        resample=query.resample,
        n_out_t=n_out_t,
    )


def _n_time(cube: Datacube, t_index: Any, query: Query) -> int:
    if cube.t_us is None or t_index is None or isinstance(t_index, int | np.integer):
        return 1
    times = cube.t_us[t_index]
    if query.resample is not None:
        import pandas as pd

        try:
            bins = pd.Series(0, index=pd.DatetimeIndex(times)).resample(query.resample).size()
        except (ValueError, OverflowError):
            raise InvalidParameterValue(
                f"resolution: the period {query.resample} cannot bin this time axis"
            ) from None
        return int(bins.size)
    if query.aggregate is not None:
        return 1
    return int(times.size)


def check_size(cube: Datacube, selection: Selection, fmt: str, limit: int) -> int:
    """The result's estimated size in bytes; 413 when it is over ``limit``."""
    itemsize = max(cube.ds[v].dtype.itemsize for v in selection.variables)
    per_value = _JSON_BYTES_PER_VALUE if fmt == "json" else itemsize
    size = selection.n_values(cube) * per_value
    if size > limit:
        raise ResultTooLarge(
            f"the result would be {size / 1024**2:,.1f} MiB and the limit is "
            f"{limit / 1024**2:,.1f} MiB (setting max_result_bytes): ask for a smaller "
            "area, fewer time steps or fewer parameters, or aggregate over time"
        )
    return size


def read(cube: Datacube, selection: Selection) -> xr.Dataset:
    """Read the selection (only the chunks it touches) and aggregate it; loaded."""
    ds = cube.ds[list(selection.variables)]
    indexers: dict[str, Any] = {}
    if selection.t is not None and "t" in ds.dims:
        indexers["t"] = selection.t
    if selection.pointwise:
        indexers["y"] = xr.DataArray(selection.y, dims="point")
        indexers["x"] = xr.DataArray(selection.x, dims="point")
    else:
        indexers["y"] = selection.y
        indexers["x"] = selection.x
    ds = ds.isel(indexers)
    if selection.mask is not None:
        ds = ds.where(xr.DataArray(selection.mask, dims=("y", "x")))
    method = selection.aggregate
    if selection.resample is not None:
        how = selection.aggregate or "mean"
        ds = getattr(ds.resample(t=selection.resample), AGGREGATIONS[how])(keep_attrs=True)
        ds = ds.compute()
        for v in ds.data_vars.values():
            v.attrs["cell_methods"] = f"t: {how}"
        return ds
    if method is not None and "t" in ds.dims:
        times = ds["t"].values
        reduced = getattr(ds, AGGREGATIONS[method])("t", keep_attrs=True)
        reduced = reduced.expand_dims(t=[times[0]])
        reduced = reduced.assign_coords(
            t_bounds=(("t", "bounds"), np.array([[times[0], times[-1]]], dtype=times.dtype))
        )
        reduced["t"].attrs["bounds"] = "t_bounds"
        for v in reduced.data_vars.values():
            v.attrs["cell_methods"] = f"t: {method}"
        ds = reduced
    return ds.compute()


# -- encoding ------------------------------------------------------------------------
def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, str | int | float | np.number):
            out[k] = v
        elif isinstance(v, list | tuple | np.ndarray) and all(
            isinstance(i, int | float | np.number) and not isinstance(i, bool) for i in v
        ):
            out[k] = np.asarray(v)
    return out


def _for_file(ds: xr.Dataset) -> xr.Dataset:
    """The result ready for netCDF / Zarr: store encodings dropped (chunks, codecs),
    attributes a file can hold."""
    out = ds.copy()
    out.attrs = _clean_attrs(ds.attrs)
    for name in out.variables:
        var = out.variables[name]
        var.encoding = {}
        var.attrs = _clean_attrs(var.attrs)
    return out


def to_netcdf(ds: xr.Dataset) -> bytes:
    return bytes(_for_file(ds).to_netcdf(engine="h5netcdf"))


def to_zarr_zip(ds: xr.Dataset) -> bytes:
    """A zipped Zarr v3 store (the store's files at the root of the archive)."""
    with tempfile.TemporaryDirectory(prefix="twinmesh-ogc-") as tmp:
        root = os.path.join(tmp, "result.zarr")
        _for_file(ds).to_zarr(root, mode="w-", zarr_format=3, consolidated=False)
        archive = os.path.join(tmp, "result.zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for folder, _dirs, files in os.walk(root):
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    zf.write(path, os.path.relpath(path, root))
        with open(archive, "rb") as fh:
            return fh.read()


def to_covjson(cube: Datacube, result: xr.Dataset) -> dict[str, Any]:
    """The CoverageJSON document of a read result (arrays still numpy)."""
    parameters = cube.parameters()
    t_bounds = None
    if "t_bounds" in result.coords:
        first, last = result["t_bounds"].values[0]
        t_bounds = (first, last)
        result = result.drop_vars("t_bounds")
    if "point" in result.dims:
        members = [
            covjson.from_dataset(result.isel(point=i), parameters, t_bounds=t_bounds)
            for i in range(result.sizes["point"])
        ]
        return covjson.coverage_collection(members, parameters)
    return covjson.from_dataset(result, parameters, t_bounds=t_bounds)


def answer(cube: Datacube, query: Query, fmt: str, limit: int) -> tuple[Any, str]:
    """Select, check the size, read and encode: (content, media type). JSON content is
    the CoverageJSON document (numpy arrays); netCDF and Zarr are bytes."""
    selection = select(cube, query)
    check_size(cube, selection, fmt, limit)
    result = read(cube, selection)
    if fmt == "netcdf":
        return to_netcdf(result), FORMATS["netcdf"]
    if fmt == "zarr":
        return to_zarr_zip(result), FORMATS["zarr"]
    return to_covjson(cube, result), FORMATS["json"]


# -- the pygeoapi providers ----------------------------------------------------------
def _max_result_bytes(definition: Mapping[str, Any]) -> int:
    return int(engine_for(definition).settings.max_result_bytes)


class DatacubeEDRProvider(BaseEDRProvider):
    """EDR position, area and cube queries over a twin's datacube (pygeoapi plugin).

    Called through pygeoapi's own EDR function the result is a CoverageJSON dict of
    lists (what it dumps with ``json``); :func:`get_collection_edr_query` is the fast,
    strict path.
    """

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.definition = provider_def
        self.datacube = open_datacube(provider_def)
        self._fields = self.datacube.fields()
        self.axes = list(self.datacube.coverage_properties()["axes"])

    def get_fields(self) -> dict[str, dict[str, Any]]:
        return self._fields

    def instances(self) -> list[str]:
        return []

    def instance(self, instance: str) -> bool:
        return False

    def position(self, **kwargs: Any) -> dict[str, Any]:
        return self._query("position", kwargs)

    def area(self, **kwargs: Any) -> dict[str, Any]:
        return self._query("area", kwargs)

    def cube(self, **kwargs: Any) -> dict[str, Any]:
        return self._query("cube", kwargs)

    def edr_query(self, query_type: str, params: Mapping[str, str]) -> Query:
        """The query of EDR request parameters (already checked for unknown names)."""
        cube = self.datacube
        if params.get("z") is not None:
            raise InvalidParameterValue(f"z: {cube.name} has no vertical axis; drop z")
        query = Query(outside=400)
        if "parameter-name" in params:
            query = replace(
                query,
                variables=parse_variables(
                    str(params["parameter-name"]).split(","), cube, "parameter-name"
                ),
            )
        if "datetime" in params:
            query = replace(query, t=parse_datetime(str(params["datetime"])))
        if AGGREGATE_PARAMETER in params:
            if cube.t is None:
                raise InvalidParameterValue(f"{AGGREGATE_PARAMETER}: {cube.name} has no time axis")
            method = parse_aggregate(str(params[AGGREGATE_PARAMETER]), AGGREGATE_PARAMETER)
            query = replace(query, aggregate=method)
        if query_type == "cube":
            if not params.get("bbox"):
                raise InvalidParameterValue("a cube query needs bbox=minx,miny,maxx,maxy")
            text = str(params["bbox"])
            w, s, e, n = parse_bbox(text)
            return replace(
                query, x=Interval(w, e, f"bbox {text}"), y=Interval(s, n, f"bbox {text}")
            )
        if not params.get("coords"):
            raise InvalidParameterValue(
                f"a {query_type} query needs coords, e.g. {_EXAMPLE_COORDS[query_type]}"
            )
        geometry = parse_coords(str(params["coords"]), query_type)
        if query_type == "position":
            pts = [geometry] if geometry.geom_type == "Point" else list(geometry.geoms)
            if any(p.is_empty for p in pts):
                raise InvalidParameterValue("coords has an empty point")
            if len(pts) > MAX_POSITIONS:
                raise InvalidParameterValue(
                    f"coords has {len(pts)} points; ask for at most {MAX_POSITIONS} at once"
                )
            return replace(query, points=tuple((p.x, p.y) for p in pts))
        return replace(query, polygon=geometry)

    def _query(self, query_type: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """pygeoapi's call: its keyword arguments back to request parameters."""
        if kwargs.get("crs_transform_spec") is not None:
            raise InvalidParameterValue("crs: only CRS84 (EPSG:4326) is offered")
        if kwargs.get("instance") is not None:
            raise InvalidParameterValue("this collection has no instances")
        params: dict[str, str] = {}
        if kwargs.get("z") is not None:
            params["z"] = str(kwargs["z"])
        if kwargs.get("select_properties"):
            params["parameter-name"] = ",".join(kwargs["select_properties"])
        if kwargs.get("datetime_"):
            params["datetime"] = str(kwargs["datetime_"])
        if kwargs.get("bbox"):
            params["bbox"] = ",".join(str(v) for v in kwargs["bbox"])
        if kwargs.get("wkt") is not None:
            params["coords"] = kwargs["wkt"].wkt
        query = self.edr_query(query_type, params)
        doc, _ = answer(self.datacube, query, "json", _max_result_bytes(self.definition))
        return covjson.jsonable(doc)


class DatacubeCoverageProvider(BaseProvider):
    """OGC API - Coverages over a twin's datacube (pygeoapi plugin): ``subset``,
    ``bbox``, ``datetime``, ``properties``; CoverageJSON or netCDF."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.definition = provider_def
        self.datacube = open_datacube(provider_def)
        self._fields = self.datacube.fields()
        self._coverage_properties = self.datacube.coverage_properties()
        self.axes = list(self._coverage_properties["axes"])
        self.crs = covjson.CRS84
        self.num_bands = len(self.datacube.variables)

    def get_fields(self) -> dict[str, dict[str, Any]]:
        return self._fields

    def coverage_query(
        self,
        *,
        properties: Sequence[str] | None = None,
        subsets: Mapping[str, Sequence[str]] | None = None,
        bbox: str | None = None,
        datetime_: str | None = None,
        resolution: str | None = None,
        method: str | None = None,
    ) -> Query:
        """The query of Coverages request parameters (``subsets``: axis → the raw text
        of its one or two values)."""
        cube = self.datacube
        query = Query(outside=204)
        if properties:
            query = replace(query, variables=parse_variables(properties, cube, "properties"))
        axes: dict[str, Any] = {}
        for axis_name, values in (subsets or {}).items():
            axis = _AXIS_NAMES.get(axis_name.lower()) if axis_name != "T" else None
            if axis is None or (axis == "t" and cube.t is None):
                offered = "x (Lon), y (Lat)" + (", t (time)" if cube.t is not None else "")
                raise InvalidParameterValue(
                    f"subset: {cube.name} has no axis {axis_name!r}; its axes: {offered}"
                )
            if axis in axes:
                raise InvalidParameterValue(f"subset names the {axis} axis twice")
            axes[axis] = _subset_request(axis, axis_name, values)
        if bbox is not None:
            if "x" in axes or "y" in axes:
                raise InvalidParameterValue("bbox and a subset of x or y exclude each other")
            w, s, e, n = parse_bbox(bbox)
            axes["x"], axes["y"] = Interval(w, e, f"bbox {bbox}"), Interval(s, n, f"bbox {bbox}")
        if datetime_ is not None:
            if "t" in axes:
                raise InvalidParameterValue("datetime and a subset of t exclude each other")
            if cube.t is None:
                raise InvalidParameterValue(f"{cube.name} has no time axis: drop datetime")
            axes["t"] = parse_datetime(datetime_)
        query = replace(query, x=axes.get("x"), y=axes.get("y"), t=axes.get("t"))
        if resolution is not None:
            if cube.t is None:
                raise InvalidParameterValue(f"resolution: {cube.name} has no time axis")
            query = replace(query, resample=resolution, aggregate=method or "mean")
        return query

    def query(
        self,
        properties: Sequence[str] | None = None,
        subsets: Mapping[str, Sequence[Any]] | None = None,
        bbox: Sequence[float] | None = None,
        bbox_crs: Any = 4326,
        datetime_: str | None = None,
        format_: str = "json",
        **kwargs: Any,
    ) -> Any:
        """pygeoapi's call (its own Coverages function): CoverageJSON as a dict of
        lists, or netCDF bytes for the provider's native format."""
        fmt = _format_name(format_)
        native = str(self.definition.get("format", {}).get("name", "netcdf")).lower()
        if fmt not in ("json", "netcdf", "zarr") or (fmt != "json" and fmt != native):
            raise InvalidParameterValue(f"f={format_} is not offered: use json or {native}")
        if str(bbox_crs) not in ("4326", *_CRS_OK):
            raise InvalidParameterValue("bbox-crs: only CRS84 (EPSG:4326) is offered")
        raw = {k: [_subset_text(v) for v in vals] for k, vals in (subsets or {}).items()}
        query = self.coverage_query(
            properties=properties,
            subsets=raw,
            bbox=",".join(str(v) for v in bbox) if bbox else None,
            datetime_=datetime_,
        )
        content, _ = answer(self.datacube, query, fmt, _max_result_bytes(self.definition))
        return covjson.jsonable(content) if fmt == "json" else content


def _subset_text(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _unquote(text: str) -> tuple[str, bool]:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1], True
    return text, False


def _subset_request(axis: str, name: str, values: Sequence[str]) -> Interval | float | TimeInterval:
    label = f"subset {name}"
    if len(values) == 1:
        text, _ = _unquote(values[0])
        if text == "*":
            raise InvalidParameterValue(f"{label}(*) is not a value: give a value or low:high")
        if axis == "t":
            return replace(parse_datetime(text, label), slice=True)
        return _number(text, label)
    lo_text, _ = _unquote(values[0])
    hi_text, _ = _unquote(values[1])
    if axis == "t":
        start = None if lo_text == "*" else _instant(lo_text, label, end=False)
        end = None if hi_text == "*" else _instant(hi_text, label, end=True)
        if start is not None and end is not None and start > end:
            raise InvalidParameterValue(f"{label}: low {lo_text} is after high {hi_text}")
        if start is None and end is None:
            raise InvalidParameterValue(f"{label}(*:*) selects nothing: drop it")
        return TimeInterval(start, end, f"{lo_text}/{hi_text}")
    lo = None if lo_text == "*" else _number(lo_text, label)
    hi = None if hi_text == "*" else _number(hi_text, label)
    if lo is not None and hi is not None and lo > hi:
        raise InvalidParameterValue(f"{label}: low {lo_text} is greater than high {hi_text}")
    return Interval(lo, hi, f"{label}({values[0]}:{values[1]})")


_SUBSET_ITEM = re.compile(r'\s*([A-Za-z_][\w.-]*)\s*\(((?:[^()"]|"[^"]*")*)\)\s*')


def parse_subset(values: Sequence[str]) -> dict[str, list[str]]:
    """``subset=x(9.5:9.9),t("1980-01-01":"1980-12-31")`` (one or more parameters) as
    axis → the raw text of its value or low and high."""
    out: dict[str, list[str]] = {}
    for text in values:
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _SUBSET_ITEM.match(text, pos)
            if match is None:
                raise InvalidParameterValue(
                    f"subset {text!r} is not axis(value) or axis(low:high) items separated "
                    'by commas, e.g. subset=x(9.5:9.9),t("1980-01-01":"1980-12-31")'
                )
            name, inner = match.group(1), match.group(2)
            if name in out:
                raise InvalidParameterValue(f"subset names the axis {name} twice")
            parts = _split_interval(inner)
            if len(parts) not in (1, 2) or any(not p.strip() for p in parts):
                raise InvalidParameterValue(f"subset {name}({inner}) needs a value or low:high")
            out[name] = parts
            pos = match.end()
            if pos < len(text):
                if text[pos] != ",":
                    raise InvalidParameterValue(f"subset {text!r}: expected ',' at {pos}")
                pos += 1
    return out


def _split_interval(inner: str) -> list[str]:
    """Split ``low:high`` on the colon outside quotes (date-times have colons)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in inner:
        if ch == '"':
            quoted = not quoted
        if ch == ":" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    if len(parts) > 2:
        # an unquoted date-time (1980-01-01T00:00:00Z): rejoin and ask for quotes
        raise InvalidParameterValue(
            f"subset value {inner!r} is ambiguous: quote date-times, e.g. "
            't("1980-01-01T00:00:00Z":"1980-12-31T00:00:00Z")'
        )
    return parts


# -- the request functions (replacing pygeoapi's for these collections) ---------------
_EDR_COMMON = {"f", "lang", "datetime", "parameter-name", "z", "crs", AGGREGATE_PARAMETER}
_EDR_PARAMETERS = {
    "position": _EDR_COMMON | {"coords"},
    "area": _EDR_COMMON | {"coords"},
    "cube": _EDR_COMMON | {"bbox"},
}
_COVERAGE_PARAMETERS = {
    "f",
    "lang",
    "bbox",
    "bbox-crs",
    "subset",
    "subset-crs",
    "datetime",
    "properties",
    "resolution",
}
_MULTI_VALUED = {"subset"}


def _format_name(text: str | None) -> str:
    if text is None:
        return "json"
    return _F_ALIASES.get(str(text).strip().lower(), str(text))


def _negotiate(request: Any) -> str:
    """``f`` first, then the ``Accept`` header (first offered type wins), else JSON."""
    f = request.params.get("f")
    if f is not None:
        name = _format_name(f)
        if name not in (*FORMATS, "html"):
            raise InvalidParameterValue(
                f"f={f} is not offered: use json (CoverageJSON), netcdf, zarr or html"
            )
        return name
    accept = _header(request, "accept") or ""
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return "json"


def _header(request: Any, name: str) -> str | None:
    for key, value in (request.headers or {}).items():
        if str(key).lower() == name:
            return str(value)
    return None


def _parameters(request: Any, allowed: set[str]) -> dict[str, str]:
    """The request's query parameters, each given once (``subset`` may repeat);
    a parameter not in ``allowed`` is a 400 naming it."""
    params = request.params
    names = list(params.keys())
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        raise InvalidParameterValue(
            f"unknown or unsupported query parameter {', '.join(unknown)}; this request "
            f"takes {', '.join(sorted(allowed))}"
        )
    out: dict[str, str] = {}
    getlist = getattr(params, "getlist", None)
    for name in names:
        values = getlist(name) if getlist is not None else [params.get(name)]
        if len(values) > 1 and name not in _MULTI_VALUED:
            raise InvalidParameterValue(f"{name} is given {len(values)} times: give it once")
        out[name] = values[-1]
    return out


def _check_crs(params: Mapping[str, str], *names: str) -> None:
    for name in names:
        value = params.get(name)
        if value is not None and value.strip() not in _CRS_OK:
            raise InvalidParameterValue(
                f"{name}={value} is not offered: use {covjson.CRS84} (longitude, latitude)"
            )


def _error(
    api: Any, headers: dict[str, Any], fmt: str, err: ProviderGenericError
) -> tuple[dict[str, Any], int, Any]:
    """The OGC exception of ``err`` (called outside the ``except`` block, so nothing
    logs a traceback for a client's mistake)."""
    headers = dict(headers)
    for name in ("Content-Disposition", "Preference-Applied"):
        headers.pop(name, None)
    status = int(err.http_status_code)
    if status == HTTPStatus.NO_CONTENT:
        headers.pop("Content-Type", None)
        return headers, status, b""
    if fmt == "html":
        headers["Content-Type"] = "text/html"
        return api.get_exception(status, headers, fmt, err.ogc_exception_code, err.message)
    headers["Content-Type"] = "application/json"
    code = err.ogc_exception_code
    body = orjson.dumps({"code": code, "type": code, "description": err.message})
    return headers, status, body


def _provider(api: Any, dataset: str, kind: str) -> tuple[dict[str, Any] | None, Any]:
    """The provider definition of ``kind`` of a collection and its plugin, or (None,
    None) when the collection's provider of that kind is not twinmesh's."""
    from pygeoapi.plugin import load_plugin
    from pygeoapi.provider import get_provider_by_type
    from pygeoapi.util import filter_dict_by_key_value

    collections = filter_dict_by_key_value(api.config["resources"], "type", "collection")
    if dataset not in collections:
        raise _NotFound(f"collection {dataset!r} not found")
    try:
        definition = get_provider_by_type(collections[dataset]["providers"], kind)
    except ProviderGenericError:
        what = "EDR queries" if kind == "edr" else "coverage"
        raise _NotFound(f"collection {dataset!r} has no {what}") from None
    expected = DatacubeEDRProvider if kind == "edr" else DatacubeCoverageProvider
    if definition.get("name") != f"{__name__}.{expected.__name__}":
        return None, None
    return definition, load_plugin("provider", definition)


def _respond(
    headers: dict[str, Any], content: Any, media: str, dataset: str, fmt: str
) -> tuple[dict[str, Any], int, Any]:
    headers["Content-Type"] = media
    if fmt == "json":
        body = covjson.encode(content)
    else:
        body = content
        ext = "nc" if fmt == "netcdf" else "zarr.zip"
        headers["Content-Disposition"] = f'attachment; filename="{dataset}.{ext}"'
    return headers, HTTPStatus.OK, body


def get_collection_edr_query(
    api: Any,
    request: Any,
    dataset: str,
    instance: str | None,
    query_type: str,
    location_id: str | None = None,
) -> tuple[dict[str, Any], int, Any]:
    """pygeoapi's ``get_collection_edr_query`` for twinmesh's datacubes: strict
    parameters, 413 before reading, CoverageJSON from numpy, netCDF and Zarr."""
    from pygeoapi.api import environmental_data_retrieval as edr_api

    headers = request.get_response_headers(api.default_locale, **api.api_headers)
    fmt = "json"
    try:
        fmt = _negotiate(request)
        definition, provider = _provider(api, dataset, "edr")
        if definition is None or fmt == "html":
            return edr_api.get_collection_edr_query(
                api, request, dataset, instance, query_type, location_id
            )
        if instance is not None or location_id is not None:
            raise _NotFound(f"collection {dataset!r} has no instances or locations")
        if query_type not in _EDR_PARAMETERS:
            raise InvalidParameterValue(
                f"{dataset} answers position, area and cube queries, not {query_type}"
            )
        params = _parameters(request, _EDR_PARAMETERS[query_type])
        _check_crs(params, "crs")
        query = provider.edr_query(query_type, params)
        content, media = answer(provider.datacube, query, fmt, _max_result_bytes(definition))
    except ProviderGenericError as err:
        failure = err
    else:
        return _respond(headers, content, media, dataset, fmt)
    return _error(api, headers, fmt, failure)


def get_collection_coverage(
    api: Any, request: Any, dataset: str
) -> tuple[dict[str, Any], int, Any]:
    """pygeoapi's ``get_collection_coverage`` for twinmesh's datacubes: strict
    parameters, subsets with quoted or bare values, 204 outside the data, 413 before
    reading, temporal scaling, CoverageJSON from numpy, netCDF and Zarr."""
    from pygeoapi.api import coverages as coverages_api

    headers = request.get_response_headers(api.default_locale, **api.api_headers)
    fmt = "json"
    try:
        fmt = _negotiate(request)
        definition, provider = _provider(api, dataset, "coverage")
        if definition is None or fmt == "html":
            return coverages_api.get_collection_coverage(api, request, dataset)
        params = _parameters(request, _COVERAGE_PARAMETERS)
        _check_crs(params, "bbox-crs", "subset-crs")
        getlist = getattr(request.params, "getlist", None)
        subset_texts = (
            (getlist("subset") if getlist is not None else [params["subset"]])
            if "subset" in params
            else []
        )
        resolution, method = None, None
        if "resolution" in params:
            resolution, method = _temporal_scaling(params["resolution"], request)
            headers["Preference-Applied"] = f"interpolation=time([ogc-interpolation:{method}])"
        properties = params["properties"].split(",") if "properties" in params else None
        query = provider.coverage_query(
            properties=properties,
            subsets=parse_subset(subset_texts),
            bbox=params.get("bbox"),
            datetime_=params.get("datetime"),
            resolution=resolution,
            method=method,
        )
        content, media = answer(provider.datacube, query, fmt, _max_result_bytes(definition))
    except ProviderGenericError as err:
        failure = err
    else:
        return _respond(headers, content, media, dataset, fmt)
    return _error(api, headers, fmt, failure)


_RESOLUTION = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(\s*([^()]*?)\s*\)\s*$")
_PREFER_TIME = re.compile(
    r"interpolation\s*=\s*\"?time\(\s*\[?(?:ogc-interpolation:)?(\w+)\]?\s*\)"
)


def _temporal_scaling(text: str, request: Any) -> tuple[str, str]:
    """``resolution=time(P1M)`` → (pandas frequency, aggregation method); the method
    comes from ``Prefer: interpolation=time([ogc-interpolation:<method>])``, default
    mean (RFC 7240: an unknown preference is ignored)."""
    match = _RESOLUTION.match(text)
    if match is None or _AXIS_NAMES.get(match.group(1).lower()) != "t":
        raise InvalidParameterValue(
            f"resolution={text}: only temporal scaling is offered, as time(<ISO 8601 "
            "period>), e.g. resolution=time(P1M)"
        )
    freq = parse_period(match.group(2).strip('"'), "resolution")
    method = "mean"
    prefer = _header(request, "prefer") or ""
    found = _PREFER_TIME.search(prefer)
    if found and found.group(1) in AGGREGATIONS:
        method = found.group(1)
    return freq, method


# -- the OpenAPI document --------------------------------------------------------------
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_EXCEPTION = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "code": {"type": "string"},
        "type": {"type": "string"},
        "description": {"type": "string"},
    },
}


def _query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        "style": "form",
        "explode": False,
    }


def _f_parameter() -> dict[str, Any]:
    return _query_parameter(
        "f",
        "Output format: CoverageJSON (json, the default), netCDF-4 (netcdf), a zipped "
        "Zarr v3 store (zarr) or html; the Accept header works too.",
        {"type": "string", "enum": ["json", "netcdf", "zarr", "html"], "default": "json"},
    )


def _responses(json_media: str, *, no_content: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The selected data.",
            "content": {
                json_media: {"schema": {"type": "object"}},
                FORMATS["netcdf"]: _BINARY,
                FORMATS["zarr"]: _BINARY,
                "text/html": {"schema": {"type": "string"}},
            },
        },
        "400": {
            "description": "A query parameter is unknown, malformed or selects nothing.",
            "content": {"application/json": {"schema": _EXCEPTION}},
        },
        "404": {
            "description": "No such collection.",
            "content": {"application/json": {"schema": _EXCEPTION}},
        },
        "413": {
            "description": "The result would exceed max_result_bytes; nothing was read.",
            "content": {"application/json": {"schema": _EXCEPTION}},
        },
    }
    if no_content:
        responses["204"] = {"description": "The request lies entirely outside the data."}
    return responses


def document_openapi(openapi: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """pygeoapi's generated OpenAPI document with what these request functions accept
    and answer on twinmesh's datacube collections: the output formats, EDR's
    ``x-twinmesh-time-aggregate``, Coverages' ``datetime`` (pygeoapi leaves it out),
    ``resolution`` and ``Prefer``, and the 204 and 413 statuses. Returns a copy."""
    import copy

    doc = copy.deepcopy(openapi)
    paths = doc.get("paths", {})
    for cid, resource in config.get("resources", {}).items():
        names = {p.get("type"): p.get("name") for p in resource.get("providers", [])}
        if names.get("edr") == f"{__name__}.DatacubeEDRProvider":
            for query in _EDR_PARAMETERS:
                op = paths.get(f"/collections/{cid}/{query}", {}).get("get")
                if op is None:
                    continue
                params = [p for p in op.get("parameters", []) if p.get("name") != "f"]
                params.append(_f_parameter())
                params.append(
                    _query_parameter(
                        AGGREGATE_PARAMETER,
                        "twinmesh vendor parameter: reduce the selected time steps to one "
                        "(its bounds: the first and last step) with this method.",
                        {"type": "string", "enum": list(AGGREGATIONS)},
                    )
                )
                op["parameters"] = params
                op.setdefault("responses", {}).update(
                    _responses(covjson.MEDIA_TYPE, no_content=False)
                )
        if names.get("coverage") == f"{__name__}.DatacubeCoverageProvider":
            op = paths.get(f"/collections/{cid}/coverage", {}).get("get")
            if op is None:
                continue
            params = [
                p
                for p in op.get("parameters", [])
                if p.get("name") != "f" and not str(p.get("$ref", "")).endswith("/f")
            ]
            params += [
                _f_parameter(),
                _query_parameter(
                    "datetime",
                    "A date, a date-time or start/end (either end may be '..'); a bare "
                    "date means that whole day.",
                    {"type": "string"},
                ),
                _query_parameter(
                    "resolution",
                    "Temporal scaling: time(<ISO 8601 period>), e.g. time(P1M) for monthly "
                    "values, aggregated by the Prefer header's method (default mean).",
                    {"type": "string", "pattern": r"^time\(P\d+[YMWD]\)$"},
                ),
                {
                    "name": "Prefer",
                    "in": "header",
                    "required": False,
                    "description": "interpolation=time([ogc-interpolation:mean|minimum|"
                    "maximum|median]) for resolution=time(...).",
                    "schema": {"type": "string"},
                },
            ]
            op["parameters"] = params
            op.setdefault("responses", {}).update(
                _responses("application/prs.coverage+json", no_content=True)
            )
    return doc
