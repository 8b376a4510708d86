"""Process graphs: parsed by openeo-pg-parser-networkx, run by openeo-processes-dask on
lazy xarray/dask arrays over core's datacubes.

twinmesh's own processes: ``load_collection`` (a core datacube, cut by extent and
bands from metadata before any read, refused beyond ``openeo.max_load_bytes``),
``load_stac`` (a result of this service, by its STAC item URL or job id),
``save_result`` (netCDF, GTiff, ZARR, JSON), ``twin_regions`` (a twin's regions as
GeoJSON for ``aggregate_spatial``) and one ``twin_<capability>`` per core capability,
generated from its declaration.

``/processes`` lists exactly :data:`LIBRARY_PROCESSES` (each one tested on a small
cube in tests/integration/test_openeo_processes.py) plus these.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from twinmesh.core.capabilities import CAPABILITIES
from twinmesh.core.engine import Engine
from twinmesh.core.results import OutputKind
from twinmesh.openeo.collections import GRID_DIMS, bands_of, open_cube
from twinmesh.openeo.errors import OpenEOError

__all__ = [
    "LIBRARY_PROCESSES",
    "OUTPUT_FORMATS",
    "GraphContext",
    "Saved",
    "run_graph",
    "check_load_sizes",
    "process_specs",
    "twin_process_id",
    "scheduler",
]

#: The processes of openeo-processes-dask twinmesh offers: openEO profiles L1, L2 and
#: L2A where they make sense on t/y/x cubes (no ML, UDFs, vector or SAR processes).
#: Left out because the library's version fails (openeo-processes-dask 2026.9.1):
#: ``is_nodata`` (not vectorised: a cube is never "no data"), ``extrema`` (its two
#: values break apply_dimension), ``array_filter`` (returns an empty array),
#: ``array_apply`` (binds every element's parameter to the first element).
LIBRARY_PROCESSES: tuple[str, ...] = (
    # cubes
    "filter_bbox", "filter_temporal", "filter_bands", "filter_labels", "filter_spatial",
    "reduce_dimension", "apply", "apply_dimension", "aggregate_temporal",
    "aggregate_temporal_period", "aggregate_spatial", "merge_cubes", "rename_labels",
    "rename_dimension", "add_dimension", "drop_dimension", "dimension_labels", "mask",
    "resample_spatial", "resample_cube_spatial", "normalized_difference", "ndvi",
    "linear_scale_range", "trim_cube", "create_data_cube",
    # math
    "absolute", "add", "subtract", "multiply", "divide", "power", "sqrt", "exp", "ln",
    "log", "floor", "ceil", "int", "round", "sgn", "mod", "clip", "pi", "constant",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
    "arsinh", "arcosh", "artanh",
    # reducers
    "mean", "median", "min", "max", "sum", "product", "sd", "variance", "count",
    "first", "last", "quantiles",
    # logic and comparison
    "and", "or", "xor", "not", "if", "any", "all", "eq", "neq", "gt", "gte", "lt",
    "lte", "between", "is_nan", "is_valid", "is_infinite",
    # arrays
    "array_element", "array_create", "array_concat", "array_append", "array_contains",
    "array_find", "array_labels", "array_modify",
    "array_interpolate_linear", "sort", "order", "rearrange", "cumsum", "cumproduct",
    "cummin", "cummax",
    # text
    "text_begins", "text_ends", "text_contains", "text_concat",
)  # fmt: skip

#: ``save_result`` formats: name → (media type, file suffix, GIS data types).
OUTPUT_FORMATS: dict[str, tuple[str, str, str]] = {
    "netCDF": ("application/x-netcdf", ".nc", "raster"),
    "GTiff": ("image/tiff; application=geotiff", ".tif", "raster"),
    "ZARR": ("application/zip", ".zarr.zip", "raster"),
    "JSON": ("application/json", ".json", "vector"),
}
_FORMAT_NAMES = {name.lower(): name for name in OUTPUT_FORMATS}
_FORMAT_NAMES.update({"nc": "netCDF", "netcdf4": "netCDF", "geotiff": "GTiff", "tiff": "GTiff"})
_FORMAT_NAMES["zarr"] = "ZARR"


def twin_process_id(capability: str) -> str:
    return f"twin_{capability}"


def canonical_format(name: str) -> str:
    """The format's canonical name (``netcdf`` → ``netCDF``) or FormatUnsupported."""
    try:
        return _FORMAT_NAMES[str(name).lower()]
    except KeyError:
        raise OpenEOError(
            400,
            "FormatUnsupported",
            f"output format {name!r} is not supported; choose from {', '.join(OUTPUT_FORMATS)}",
        ) from None


@dataclass
class Saved:
    """What ``save_result`` chose: the data and its format."""

    data: Any
    format: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphContext:
    """What a graph's own processes need: the engine, the limits, where results live."""

    engine: Engine
    max_load_bytes: int
    #: load_stac(url) → (twin, job id) of one of this service's results, or None.
    resolve_result: Callable[[str], tuple[str, str] | None] = lambda _url: None
    #: How many bytes the graph's loads would read (checked against max_load_bytes).
    loaded_bytes: int = 0


_local = threading.local()


def _context() -> GraphContext:
    ctx = getattr(_local, "context", None)
    if ctx is None:
        raise RuntimeError("a graph runs inside run_graph")
    return ctx  # type: ignore[no-any-return]


# -- twinmesh's own processes --------------------------------------------------------
def _as_cube(ds: xr.Dataset, bands: list[str]) -> xr.DataArray:
    """A Dataset's bands as one DataArray with a ``bands`` dimension (openEO's model)."""
    if len(bands) == 1:
        # One band: a new axis is a view (to_dataarray would stack, a copy per chunk).
        da = ds[bands[0]].expand_dims(bands=list(bands)).rename(None)
        da.encoding = {}
    else:
        da = ds[bands].to_dataarray(dim="bands")
    da = da.transpose("bands", *GRID_DIMS)
    da = da.drop_vars([c for c in da.coords if c not in ("bands", *GRID_DIMS)])
    da.attrs = {}
    return da.rio.write_crs("EPSG:4326").rio.set_spatial_dims(x_dim="x", y_dim="y")


def _count(ctx: GraphContext, nbytes: int, what: str) -> None:
    ctx.loaded_bytes += int(nbytes)
    if ctx.loaded_bytes > ctx.max_load_bytes:
        raise OpenEOError(
            400,
            "ProcessGraphComplexity",
            f"{what} would read {ctx.loaded_bytes / 1024**2:,.1f} MiB and the limit is "
            f"{ctx.max_load_bytes / 1024**2:,.1f} MiB (setting openeo.max_load_bytes): ask "
            "for a smaller spatial or temporal extent or fewer bands",
        )


def _bbox_of(extent: Any) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) in WGS84 of a spatial_extent argument."""
    if extent is None:
        return None
    from openeo_pg_parser_networkx.pg_schema import BoundingBox
    from pyproj import CRS

    if isinstance(extent, BoundingBox):
        if extent.crs is not None and not CRS.from_user_input(extent.crs).equals(
            CRS.from_epsg(4326)
        ):
            from openeo_processes_dask.process_implementations.cubes._filter import (
                _reproject_bbox,
            )

            extent = _reproject_bbox(extent, "EPSG:4326")
        return (extent.west, extent.south, extent.east, extent.north)
    if isinstance(extent, dict) and extent.get("type") in (
        "Polygon",
        "MultiPolygon",
        "Feature",
        "FeatureCollection",
    ):
        from shapely.geometry import shape

        geoms = (
            [f["geometry"] for f in extent["features"]]
            if extent["type"] == "FeatureCollection"
            else [extent.get("geometry", extent)]
        )
        bounds = np.array([shape(g).bounds for g in geoms])
        return (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
    raise OpenEOError(
        400,
        "ProcessParameterInvalid",
        "spatial_extent must be a bounding box {west, south, east, north, crs} or GeoJSON",
    )


def _time_bounds(extent: Any) -> tuple[Any, Any]:
    if extent is None:
        return None, None
    from openeo_pg_parser_networkx.pg_schema import TemporalInterval

    if isinstance(extent, TemporalInterval):
        start, end = extent.start, extent.end
    else:
        start, end = list(extent)[0], list(extent)[1]

    def stamp(v: Any) -> Any:
        if v is None:
            return None
        if hasattr(v, "to_numpy"):
            v = v.to_numpy()
        elif hasattr(v, "root"):
            v = v.root
        ts = pd.Timestamp(v)
        return ts.tz_convert(None) if ts.tzinfo is not None else ts

    return stamp(start), stamp(end)


def _select(ds: xr.Dataset, spatial_extent: Any, temporal_extent: Any) -> xr.Dataset:
    bbox = _bbox_of(spatial_extent)
    if bbox is not None:
        w, s, e, n = bbox
        y = ds["y"].values
        ds = ds.sel(x=slice(w, e), y=slice(n, s) if y.size > 1 and y[0] > y[-1] else slice(s, n))
    start, end = _time_bounds(temporal_extent)
    if start is not None or end is not None:
        # openEO: the end of a temporal interval is excluded.
        stop = end - pd.Timedelta("1ms") if end is not None else None
        ds = ds.sel(t=slice(start, stop))
    return ds


def load_collection(
    id: str,  # noqa: A002 - openEO's parameter name
    spatial_extent: Any = None,
    temporal_extent: Any = None,
    bands: list[str] | None = None,
    properties: Any = None,
    **_kwargs: Any,
) -> xr.DataArray:
    ctx = _context()
    if properties:
        raise OpenEOError(
            400,
            "ProcessParameterUnsupported",
            "load_collection: filtering by metadata properties is not supported here",
        )
    ref, ds = open_cube(ctx.engine, str(id))
    available = bands_of(ds, ref.dataset)
    chosen = list(bands) if bands else available
    unknown = [b for b in chosen if b not in available]
    if unknown:
        raise OpenEOError(
            400,
            "BandNotAvailable" if len(unknown) == 1 else "ProcessParameterInvalid",
            f"collection {id} has no band {', '.join(unknown)}; its bands: {', '.join(available)}",
        )
    ds = _select(ds[chosen], spatial_extent, temporal_extent)
    if any(ds.sizes[d] == 0 for d in GRID_DIMS):
        raise OpenEOError(
            400,
            "NoDataAvailable",
            f"collection {id} has no data in the requested extent; its extent: bbox "
            f"{list(ref.twin.bbox)}, time {str(ds['t'].values[:1])}…",
        )
    _count(ctx, ds.nbytes, f"load_collection({id})")
    return _as_cube(ds, chosen)


def load_stac(
    url: str,
    spatial_extent: Any = None,
    temporal_extent: Any = None,
    bands: list[str] | None = None,
    properties: Any = None,
    **_kwargs: Any,
) -> xr.DataArray:
    """A result of this service (its batch job results URL or STAC item), lazily."""
    ctx = _context()
    found = ctx.resolve_result(str(url))
    if found is None:
        raise OpenEOError(
            400,
            "ProcessParameterInvalid",
            f"load_stac reads the results of this service's batch jobs "
            f"(…/jobs/{{id}}/results or their STAC items), not {url!r}",
        )
    twin_id, job_id = found
    job = ctx.engine.jobs.get(job_id)
    if job.result is None or job.result.get("format") != "zarr":
        raise OpenEOError(400, "JobNotFinished", f"job {job_id} has no stored datacube result")
    ds = xr.open_zarr(
        str(job.result["url"]),
        consolidated=False,
        zarr_format=3,
        storage_options=ctx.engine.store.storage_options or None,
    )
    from twinmesh.openeo.encode import band_order

    available = band_order(ds)
    chosen = list(bands) if bands else available
    ds = _select(ds[chosen], spatial_extent, temporal_extent) if "t" in ds.dims else ds[chosen]
    _count(ctx, ds.nbytes, f"load_stac({url})")
    da = ds.to_dataarray(dim="bands")
    da = da.drop_vars([c for c in da.coords if c not in da.dims])
    da.attrs = {}
    if "x" in da.dims and "y" in da.dims:
        da = da.rio.write_crs("EPSG:4326").rio.set_spatial_dims(x_dim="x", y_dim="y")
    return da


def save_result(
    data: Any,
    format: str,
    options: dict[str, Any] | None = None,
    **_kwargs: Any,  # noqa: A002
) -> Saved:
    return Saved(data, canonical_format(format), dict(options or {}))


def twin_regions(twin: str, **_kwargs: Any) -> dict[str, Any]:
    """The twin's regions as a GeoJSON FeatureCollection (for aggregate_spatial)."""
    t = _context().engine.twin(str(twin))
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": r.id, "geometry": r.geometry, "properties": {"region": r.id}}
            for r in t.regions
        ],
    }


def _twin_capability(name: str) -> Callable[..., Any]:
    def run(twin: str, **kwargs: Any) -> Any:
        ctx = _context()
        inputs = {
            k: (v.root if hasattr(v, "root") else v)
            for k, v in kwargs.items()
            if k in CAPABILITIES[name].inputs.model_fields and v is not None
        }
        result = ctx.engine.run(str(twin), name, inputs)
        if result.kind is OutputKind.COVERAGE:
            ds: xr.Dataset = result.data
            return ds.to_dataarray(dim="bands")
        return result.to_json()

    run.__name__ = twin_process_id(name)
    return run


def _safe_aggregate_spatial(impl: Callable[..., Any]) -> Callable[..., Any]:
    """The library's aggregate_spatial fetches a URL given as geometries: refused here
    (a server must not fetch what a graph names)."""

    @functools.wraps(impl)
    def aggregate_spatial(data: Any, geometries: Any, reducer: Any, **kwargs: Any) -> Any:
        if not isinstance(geometries, dict):
            raise OpenEOError(
                400,
                "ProcessParameterInvalid",
                "aggregate_spatial: geometries must be GeoJSON (e.g. twin_regions), not a URL",
            )
        return impl(data, copy.deepcopy(geometries), reducer, **kwargs)

    return aggregate_spatial


def aggregate_temporal(
    data: xr.DataArray,
    intervals: Any,
    reducer: Callable[..., Any],
    labels: list[Any] | None = None,
    dimension: str | None = None,
    context: Any = None,
    **_kwargs: Any,
) -> xr.DataArray:
    """openEO's aggregate_temporal: each interval includes its start and excludes its
    end. (openeo-processes-dask 2026.9.1 bins with ``groupby_bins``, whose bins are
    closed on the right, and reduces group by group, which the parser's result cache
    answers with the first group's result.)"""
    t = dimension or (data.openeo.temporal_dims or ["t"])[0]
    if t not in data.dims:
        raise OpenEOError(400, "DimensionNotAvailable", f"the cube has no dimension {t!r}")
    bounds = [_time_bounds(interval) for interval in intervals]
    if labels is not None and len(labels) != len(bounds):
        raise OpenEOError(
            400, "DistinctDimensionLabelsRequired", "labels must name every interval once"
        )
    parts = []
    for start, end in bounds:
        stop = end - pd.Timedelta("1ms") if end is not None else None
        parts.append(data.sel({t: slice(start, stop)}).drop_vars(t))
    # One call of the reducer over all intervals (NaN-padded to one length): the graph
    # parser caches a callback's result by node, so a second call would get the first's.
    longest = max(p.sizes[t] for p in parts)
    padded = [p.pad({t: (0, longest - p.sizes[t])}, constant_values=np.nan) for p in parts]
    stacked = xr.concat(padded, dim="__interval")
    out = stacked.reduce(reducer, dim=t, keep_attrs=True, positional_parameters={"data": 0})
    names = labels if labels is not None else [str(np.datetime64(s, "s")) for s, _ in bounds]
    out = out.rename({"__interval": t}).assign_coords({t: [str(n) for n in names]})
    return out.transpose(*[d for d in data.dims if d in out.dims])


def _period_start(t: pd.DatetimeIndex, period: str) -> pd.DatetimeIndex:
    if period == "hour":
        return t.floor("h")
    if period == "day":
        return t.floor("D")
    if period == "week":
        return (t.floor("D") - pd.to_timedelta(t.dayofweek, unit="D")).floor("D")
    if period == "dekad":
        day = np.minimum((t.day - 1) // 10, 2) * 10 + 1
        return pd.to_datetime({"year": t.year, "month": t.month, "day": day})
    if period == "month":
        return t.to_period("M").to_timestamp()
    if period == "season":  # DJF, MAM, JJA, SON
        shifted = t + pd.DateOffset(months=1)
        month = (shifted.month - 1) // 3 * 3 + 1
        start = pd.to_datetime({"year": shifted.year, "month": month, "day": 1})
        return pd.DatetimeIndex(start) - pd.DateOffset(months=1)
    if period == "year":
        return t.to_period("Y").to_timestamp()
    raise OpenEOError(
        400,
        "ProcessParameterInvalid",
        f"period {period!r} is not supported; choose hour, day, week, dekad, month, season or year",
    )


def aggregate_temporal_period(
    data: xr.DataArray,
    period: str,
    reducer: Callable[..., Any],
    dimension: str | None = None,
    context: Any = None,
    **_kwargs: Any,
) -> xr.DataArray:
    """openEO's aggregate_temporal_period as intervals of :func:`aggregate_temporal`
    (the library's version reduces group by group; see there)."""
    t = dimension or (data.openeo.temporal_dims or ["t"])[0]
    if t not in data.dims:
        raise OpenEOError(400, "DimensionNotAvailable", f"the cube has no dimension {t!r}")
    starts = pd.DatetimeIndex(
        np.unique(_period_start(pd.DatetimeIndex(data[t].values), str(period)))
    )
    ends = [*starts[1:], pd.Timestamp(data[t].values.max()) + pd.Timedelta("1D")]
    intervals = [[s, e] for s, e in zip(starts, ends, strict=True)]
    return aggregate_temporal(data, intervals, reducer, dimension=t)


# -- the registry --------------------------------------------------------------------
def _own_specs() -> dict[str, dict[str, Any]]:
    from openeo_processes_dask import specs

    own: dict[str, dict[str, Any]] = {
        name: copy.deepcopy(_library_member(specs, name))
        for name in ("load_collection", "load_stac", "save_result")
    }
    own |= {
        "twin_regions": {
            "id": "twin_regions",
            "summary": "The regions of a digital twin",
            "description": "The twin's regions (sub-basins) as a GeoJSON FeatureCollection, "
            "e.g. the geometries of aggregate_spatial.",
            "categories": ["digital twins", "vector"],
            "parameters": [
                {
                    "name": "twin",
                    "description": "Id of the digital twin.",
                    "schema": {"type": "string", "subtype": "twin-id"},
                }
            ],
            "returns": {
                "description": "GeoJSON FeatureCollection",
                "schema": {"type": "object", "subtype": "geojson"},
            },
        },
    }
    for name, cap in CAPABILITIES.items():
        spec = cap.openeo_process()
        spec["id"] = twin_process_id(name)
        own[spec["id"]] = spec
    return own


def _library_member(module: Any, pid: str) -> Any:
    """The library names a process that is a Python builtin or keyword ``_<id>``."""
    member = getattr(module, f"_{pid}", None)
    return member if member is not None else getattr(module, pid)


@functools.cache
def process_specs() -> dict[str, dict[str, Any]]:
    """Every process /processes lists, by id: the library's official specifications of
    :data:`LIBRARY_PROCESSES`, then twinmesh's own."""
    from openeo_processes_dask import specs

    out = {}
    for pid in LIBRARY_PROCESSES:
        out[pid] = copy.deepcopy(_library_member(specs, pid))
    out.update(_own_specs())
    return out


@functools.cache
def _registry() -> Any:
    import openeo_processes_dask.process_implementations as impl
    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process

    registry = ProcessRegistry(wrap_funcs=[process])
    specs = process_specs()
    for pid in LIBRARY_PROCESSES:
        implementation = _library_member(impl, pid)
        if pid == "aggregate_spatial":
            implementation = _safe_aggregate_spatial(implementation)
        if pid == "aggregate_temporal":
            implementation = aggregate_temporal
        if pid == "aggregate_temporal_period":
            implementation = aggregate_temporal_period
        registry[pid] = Process(spec=specs[pid], implementation=implementation)
    own: dict[str, Callable[..., Any]] = {
        "load_collection": load_collection,
        "load_stac": load_stac,
        "save_result": save_result,
        "twin_regions": twin_regions,
    }
    for name in CAPABILITIES:
        own[twin_process_id(name)] = _twin_capability(name)
    for pid, fn in own.items():
        registry[pid] = Process(spec=specs[pid], implementation=fn)
    return registry


def check_graph(process: Any) -> Any:
    """A process graph parsed (ProcessGraphInvalid / ProcessUnsupported as openEO errors)."""
    from openeo_pg_parser_networkx import OpenEOProcessGraph
    from pydantic import ValidationError

    if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
        raise OpenEOError(
            400,
            "ProcessGraphMissing",
            'the request needs a process: {"process_graph": {node id: node, ...}}',
        )
    specs = process_specs()
    for node_id, node in process["process_graph"].items():
        if not isinstance(node, dict) or not isinstance(node.get("process_id"), str):
            raise OpenEOError(
                400, "ProcessGraphInvalid", f"node {node_id!r} is not an object with a process_id"
            )
    _check_ids(process["process_graph"], specs)
    try:
        return OpenEOProcessGraph(copy.deepcopy(process))
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise OpenEOError(
            400, "ProcessGraphInvalid", f"the process graph is invalid: {exc}"[:2000]
        ) from None


def _check_ids(graph: dict[str, Any], specs: dict[str, Any]) -> None:
    results = 0
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        pid = node.get("process_id")
        if pid not in specs:
            raise OpenEOError(
                400,
                "ProcessUnsupported",
                f"process {pid!r} is not available; GET /processes lists those that are",
            )
        results += bool(node.get("result"))
        for arg in (node.get("arguments") or {}).values():
            if isinstance(arg, dict) and isinstance(arg.get("process_graph"), dict):
                _check_ids(arg["process_graph"], specs)
    if results != 1:
        raise OpenEOError(
            400,
            "ProcessGraphInvalid",
            f"a process graph has exactly one result node, got {results}",
        )


_POOL: Any = None
_POOL_LOCK = threading.Lock()


def _thread_pool() -> Any:
    """One pool of as many threads as there are cores for every graph of the process.

    dask's threaded scheduler, called from a thread other than the main one (a request's
    worker thread), makes a pool per calling thread with Python's default size (cores +
    4): 6 threads on 2 cores, and more with every thread calling. Each holds a chunk and
    its temporaries in memory, so the peak grows with them; one shared pool bounds the
    chunks in flight to the cores, for concurrent requests too."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from dask.system import CPU_COUNT
            from dask.threaded import ContextAwareThreadPoolExecutor

            _POOL = ContextAwareThreadPoolExecutor(CPU_COUNT, thread_name_prefix="openeo-dask")
        return _POOL


@contextlib.contextmanager
def scheduler(address: str | None) -> Iterator[Any]:
    """Where dask computes: a dask.distributed scheduler at ``address``, else threads
    (one pool per process, see :func:`_thread_pool`)."""
    if not address:
        with dask.config.set(scheduler="threads", pool=_thread_pool()):
            yield None
        return
    from distributed import Client

    client = Client(address, set_as_default=False, timeout="10s")
    try:
        with dask.config.set(scheduler=client.get):
            yield client
    finally:
        client.close()


#: Filters folded into the load_collection they read from (the client sends them as
#: nodes of their own): the size check and the read then see only the selection.
_PUSHED_DOWN = {
    "filter_bbox": "spatial_extent",
    "filter_temporal": "temporal_extent",
    "filter_bands": "bands",
}
_FILTER_ARGUMENT = {"filter_bbox": "extent", "filter_temporal": "extent", "filter_bands": "bands"}


def push_down_filters(process: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``process`` whose filters that directly follow a load_collection (its
    only reader, the load not given that extent yet) are arguments of the load. The
    result is the same: load_collection selects as the filters would."""
    graph = copy.deepcopy(process.get("process_graph") or {})
    changed = True
    while changed:
        changed = False
        for node_id, node in list(graph.items()):
            if not isinstance(node, dict) or node.get("process_id") not in _PUSHED_DOWN:
                continue
            args = node.get("arguments") or {}
            source = args.get("data")
            if not isinstance(source, dict) or set(source) != {"from_node"}:
                continue
            load_id = source["from_node"]
            load = graph.get(load_id)
            if not isinstance(load, dict) or load.get("process_id") != "load_collection":
                continue
            target = _PUSHED_DOWN[node["process_id"]]
            value = args.get(_FILTER_ARGUMENT[node["process_id"]])
            load_args = load.setdefault("arguments", {})
            if load_args.get(target) is not None or set(args) - {"data", "extent", "bands"}:
                continue
            if _references(value) or _readers(graph, load_id) != [node_id]:
                continue
            load_args[target] = value
            # The filter node becomes the load (its id is what later nodes read).
            graph[node_id] = {**load, "result": node.get("result", False)}
            del graph[load_id]
            changed = True
            break
    return {**process, "process_graph": graph}


def _references(value: Any) -> bool:
    if isinstance(value, dict):
        if {"from_node", "from_parameter"} & set(value):
            return True
        return any(_references(v) for v in value.values())
    if isinstance(value, list):
        return any(_references(v) for v in value)
    return False


def _readers(graph: dict[str, Any], node_id: str) -> list[str]:
    """Ids of the nodes whose arguments read ``node_id`` (anywhere, callbacks too)."""

    def reads(value: Any) -> bool:
        if isinstance(value, dict):
            if value.get("from_node") == node_id:
                return True
            return any(reads(v) for v in value.values())
        if isinstance(value, list):
            return any(reads(v) for v in value)
        return False

    return [nid for nid, n in graph.items() if isinstance(n, dict) and reads(n.get("arguments"))]


#: The processes that read data: their size is known before anything is read.
_LOADS = ("load_collection", "load_stac")


def check_load_sizes(process: dict[str, Any], ctx: GraphContext) -> None:
    """Refuse (400 ProcessGraphComplexity) a graph whose loads would read more than
    ``ctx.max_load_bytes``, from metadata only: each load of the graph (filters that
    follow it folded in) is run alone, lazily, which opens its cube and counts the
    selection's bytes without reading them. For a batch job at submit and at start, so
    the client hears it then and not from the worker. A load whose arguments come from
    a parameter is checked when the graph runs."""
    check_graph(process)
    graph = push_down_filters(process)["process_graph"]
    for node_id, node in graph.items():
        if not isinstance(node, dict) or node.get("process_id") not in _LOADS:
            continue
        if _references(node.get("arguments") or {}):
            continue
        alone = check_graph({"process_graph": {node_id: {**node, "result": True}}})
        _local.context = ctx
        try:
            alone.to_callable(process_registry=_registry())()
        finally:
            _local.context = None


def run_graph(
    process: dict[str, Any],
    ctx: GraphContext,
    *,
    scheduler_address: str | None = None,
    finish: Callable[[Saved], Any] | None = None,
) -> Any:
    """Run a process graph to its result (computed), with the format ``save_result``
    chose (netCDF for a datacube, JSON otherwise, when the graph has none).

    With ``finish``, the result stays lazy and ``finish(saved)`` materializes it on the
    same scheduler (e.g. writes it chunk by chunk to a file, so a result larger than
    memory never is in memory at once); run_graph returns what ``finish`` returns."""
    check_graph(process)
    graph = check_graph(push_down_filters(process))
    _local.context = ctx
    try:
        with scheduler(scheduler_address):
            value = graph.to_callable(process_registry=_registry())()
            saved = value if isinstance(value, Saved) else Saved(value, "")
            if not saved.format:
                cube = isinstance(saved.data, xr.DataArray | xr.Dataset)
                saved.format = "netCDF" if cube else "JSON"
            if finish is not None:
                return finish(saved)
            if hasattr(saved.data, "compute"):
                saved.data = saved.data.compute()
        return saved
    finally:
        _local.context = None
