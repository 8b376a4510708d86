"""CoverageJSON from numpy arrays, fast.

A coverage document is built around the arrays themselves (never Python lists) and
encoded with orjson's numpy support: a 4 M-value grid encodes in well under a tenth of
a second, where pygeoapi's list-and-``json`` path takes seconds. NaN becomes ``null``.

Axis order follows the data: each axis lists its coordinates in the order the values
run, so a grid whose latitude ascends and one whose latitude descends are both stated
correctly (pygeoapi writes y from north to south whatever the data do).

Domain types: ``Grid`` (x, y and optionally t; a time aggregate keeps one t with its
bounds), ``PointSeries`` (one x, one y, a t axis: an EDR position query) and ``Point``;
several point series make a ``CoverageCollection``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import xarray as xr

__all__ = [
    "MEDIA_TYPE",
    "CRS84",
    "Parameter",
    "parameters_of",
    "grid",
    "point_series",
    "point",
    "coverage_collection",
    "from_dataset",
    "encode",
    "jsonable",
    "time_strings",
]

#: The CoverageJSON media type (EDR's; pygeoapi's Coverages says application/prs.coverage+json).
MEDIA_TYPE = "application/vnd.cov+json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_UCUM = "http://www.opengis.net/def/uom/UCUM/"
#: CF/UDUNITS unit strings of the twins' cubes and their UCUM codes.
_UCUM_CODES = {
    "mm": "mm",
    "m": "m",
    "K": "K",
    "degC": "Cel",
    "1": "1",
    "m3 s-1": "m3/s",
    "mm day-1": "mm/d",
}
_SPATIAL_REFERENCING = {
    "coordinates": ["x", "y"],
    "system": {"type": "GeographicCRS", "id": CRS84},
}
_TIME_REFERENCING = {
    "coordinates": ["t"],
    "system": {"type": "TemporalRS", "calendar": "Gregorian"},
}


@dataclass(frozen=True)
class Parameter:
    """What a range is: CoverageJSON's parameter object, from CF attributes."""

    id: str
    label: str
    unit: str | None = None
    description: str | None = None
    standard_name: str | None = None

    @classmethod
    def from_attrs(cls, name: str, attrs: Mapping[str, Any]) -> Parameter:
        return cls(
            id=name,
            label=str(attrs.get("long_name") or name),
            unit=str(attrs["units"]) if attrs.get("units") is not None else None,
            description=str(attrs["description"]) if attrs.get("description") else None,
            standard_name=str(attrs["standard_name"]) if attrs.get("standard_name") else None,
        )

    def document(self) -> dict[str, Any]:
        observed: dict[str, Any] = {"label": {"en": self.label}}
        if self.standard_name:
            observed["id"] = f"http://vocab.nerc.ac.uk/standard_name/{self.standard_name}/"
        doc: dict[str, Any] = {"type": "Parameter", "observedProperty": observed}
        if self.description:
            doc["description"] = {"en": self.description}
        if self.unit is not None:
            code = _UCUM_CODES.get(self.unit)
            symbol: Any = {"value": code, "type": _UCUM} if code else self.unit
            doc["unit"] = {"label": {"en": self.unit}, "symbol": symbol}
        return doc


def parameters_of(ds: xr.Dataset) -> dict[str, Parameter]:
    return {str(k): Parameter.from_attrs(str(k), v.attrs) for k, v in ds.data_vars.items()}


def time_strings(t: np.ndarray) -> list[str]:
    """RFC 3339 UTC strings of datetime64 values (``1980-01-01T00:00:00Z``)."""
    values = np.asarray(t).astype("datetime64[s]")
    return [f"{s}Z" for s in np.datetime_as_string(values.ravel(), unit="s")]


def _values(a: np.ndarray) -> np.ndarray:
    """A flat, C-contiguous array orjson serialises natively (NaN becomes null)."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype.itemsize < 4:
        a = a.astype("float32")
    elif a.dtype.kind == "b":
        a = a.astype("uint8")
    elif a.dtype.kind not in "fiu":
        raise TypeError(f"CoverageJSON ranges need numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a).reshape(-1)


def _data_type(a: np.ndarray) -> str:
    return "float" if np.asarray(a).dtype.kind == "f" else "integer"


def _ndarray(values: np.ndarray, axis_names: Sequence[str]) -> dict[str, Any]:
    values = np.asarray(values)
    if values.ndim != len(axis_names):
        raise ValueError(f"a range with axes {list(axis_names)} needs {len(axis_names)} dims")
    doc: dict[str, Any] = {"type": "NdArray", "dataType": _data_type(values)}
    if axis_names:
        doc["axisNames"] = list(axis_names)
        doc["shape"] = list(values.shape)
    doc["values"] = _values(values)
    return doc


def _coordinate_axis(values: np.ndarray) -> dict[str, Any]:
    return {"values": np.ascontiguousarray(np.asarray(values, dtype="float64")).reshape(-1)}


def _time_axis(t: np.ndarray, bounds: tuple[Any, Any] | None) -> dict[str, Any]:
    axis: dict[str, Any] = {"values": time_strings(np.atleast_1d(t))}
    if bounds is not None:
        if len(axis["values"]) != 1:
            raise ValueError("time bounds go with a single aggregated time step")
        axis["bounds"] = time_strings(np.array(bounds, dtype="datetime64[ns]"))
    return axis


def _coverage(
    domain_type: str,
    axes: dict[str, Any],
    ranges: Mapping[str, dict[str, Any]],
    parameters: Mapping[str, Parameter],
    with_time: bool,
) -> dict[str, Any]:
    referencing = [_SPATIAL_REFERENCING] + ([_TIME_REFERENCING] if with_time else [])
    return {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "domainType": domain_type,
            "axes": axes,
            "referencing": referencing,
        },
        "parameters": {name: parameters[name].document() for name in ranges},
        "ranges": dict(ranges),
    }


def _check_parameters(ranges: Mapping[str, Any], parameters: Mapping[str, Parameter]) -> None:
    missing = sorted(set(ranges) - set(parameters))
    if missing:
        raise ValueError(f"no parameter description for range(s) {', '.join(missing)}")


def grid(
    x: np.ndarray,
    y: np.ndarray,
    ranges: Mapping[str, np.ndarray],
    parameters: Mapping[str, Parameter],
    *,
    t: np.ndarray | None = None,
    t_bounds: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """A ``Grid`` coverage. Each range is shaped (t, y, x) when ``t`` is given, else
    (y, x); ``x``, ``y`` and ``t`` list the coordinates in the order the values run.
    ``t_bounds`` marks a single aggregated time step (its first and last time)."""
    _check_parameters(ranges, parameters)
    x, y = np.atleast_1d(x), np.atleast_1d(y)
    names = ("t", "y", "x") if t is not None else ("y", "x")
    shape = ((np.atleast_1d(t).size,) if t is not None else ()) + (y.size, x.size)
    out = {}
    for name, values in ranges.items():
        if np.shape(values) != shape:
            raise ValueError(f"range {name!r} has shape {np.shape(values)}, the domain {shape}")
        out[name] = _ndarray(values, names)
    axes: dict[str, Any] = {"x": _coordinate_axis(x), "y": _coordinate_axis(y)}
    if t is not None:
        axes["t"] = _time_axis(t, t_bounds)
    return _coverage("Grid", axes, out, parameters, t is not None)


def point_series(
    x: float,
    y: float,
    t: np.ndarray,
    ranges: Mapping[str, np.ndarray],
    parameters: Mapping[str, Parameter],
) -> dict[str, Any]:
    """A ``PointSeries`` coverage: one position, each range a series along ``t``."""
    _check_parameters(ranges, parameters)
    t = np.atleast_1d(t)
    out = {}
    for name, values in ranges.items():
        if np.shape(values) != t.shape:
            raise ValueError(f"range {name!r} has shape {np.shape(values)}, the series {t.shape}")
        out[name] = _ndarray(values, ("t",))
    axes = {
        "x": _coordinate_axis(np.array([x])),
        "y": _coordinate_axis(np.array([y])),
        "t": _time_axis(t, None),
    }
    return _coverage("PointSeries", axes, out, parameters, True)


def point(
    x: float,
    y: float,
    ranges: Mapping[str, np.ndarray],
    parameters: Mapping[str, Parameter],
    *,
    t: Any = None,
    t_bounds: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """A ``Point`` coverage: one value per range at one position (and time)."""
    _check_parameters(ranges, parameters)
    out = {name: _ndarray(np.asarray(v).reshape(()), ()) for name, v in ranges.items()}
    axes: dict[str, Any] = {
        "x": _coordinate_axis(np.array([x])),
        "y": _coordinate_axis(np.array([y])),
    }
    if t is not None:
        axes["t"] = _time_axis(np.array([t], dtype="datetime64[ns]"), t_bounds)
    return _coverage("Point", axes, out, parameters, t is not None)


def coverage_collection(
    coverages: Sequence[dict[str, Any]], parameters: Mapping[str, Parameter]
) -> dict[str, Any]:
    """Several coverages of one domain type sharing their parameters and referencing."""
    if not coverages:
        raise ValueError("a coverage collection needs at least one coverage")
    domain_type = coverages[0]["domain"]["domainType"]
    names: list[str] = []
    members = []
    for cov in coverages:
        if cov["domain"]["domainType"] != domain_type:
            raise ValueError("the coverages of a collection share one domain type")
        names.extend(n for n in cov["ranges"] if n not in names)
        domain = {k: v for k, v in cov["domain"].items() if k not in ("referencing", "domainType")}
        members.append({"type": "Coverage", "domain": domain, "ranges": cov["ranges"]})
    return {
        "type": "CoverageCollection",
        "domainType": domain_type,
        "parameters": {n: parameters[n].document() for n in names},
        "referencing": coverages[0]["domain"]["referencing"],
        "coverages": members,
    }


def from_dataset(
    ds: xr.Dataset,
    parameters: Mapping[str, Parameter] | None = None,
    *,
    t_bounds: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The coverage of a loaded (t, y, x) dataset, its domain type read off its shape:
    ``x``/``y`` as dimensions make a Grid (with ``t`` when it is a dimension or a
    scalar coordinate), ``x``/``y`` as scalar coordinates a PointSeries along ``t``
    (or a Point when ``t`` is scalar or absent)."""
    parameters = parameters or parameters_of(ds)
    has_t = "t" in ds.coords
    t_is_dim = "t" in ds.dims
    if "x" in ds.dims and "y" in ds.dims:
        order = ("t", "y", "x") if t_is_dim else ("y", "x")
        ranges = {str(k): v.transpose(*order).values for k, v in ds.data_vars.items()}
        if has_t and not t_is_dim:
            ranges = {k: v[np.newaxis] for k, v in ranges.items()}
        t = ds["t"].values if has_t else None
        return grid(ds["x"].values, ds["y"].values, ranges, parameters, t=t, t_bounds=t_bounds)
    if "x" in ds.dims or "y" in ds.dims:
        raise ValueError("a coverage needs both x and y as dimensions, or both as scalars")
    x, y = float(ds["x"].values), float(ds["y"].values)
    if t_is_dim:
        ranges = {str(k): v.transpose("t").values for k, v in ds.data_vars.items()}
        return point_series(x, y, ds["t"].values, ranges, parameters)
    ranges = {str(k): v.values for k, v in ds.data_vars.items()}
    t_value = ds["t"].values if has_t else None
    return point(x, y, ranges, parameters, t=t_value, t_bounds=t_bounds)


def encode(doc: Mapping[str, Any]) -> bytes:
    """The document as JSON bytes, arrays written straight from numpy (NaN → null)."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def jsonable(doc: Mapping[str, Any]) -> Any:
    """The same document as plain Python (lists, floats, ``None`` for NaN), for
    pygeoapi's own code paths, which dump with ``json.dumps``."""
    return orjson.loads(encode(doc))
