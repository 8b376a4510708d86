"""Results in the ``save_result`` formats: netCDF, GTiff, ZARR (a zipped Zarr v3 store)
and JSON, written to a file (results can be large: they are streamed from it)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import xarray as xr

from twinmesh.core.results import jsonable
from twinmesh.openeo.errors import OpenEOError
from twinmesh.openeo.graphs import OUTPUT_FORMATS, Saved

__all__ = [
    "encode_to_file",
    "encode_result",
    "Encoded",
    "as_dataset",
    "media_type",
    "band_order",
    "BANDS_ATTR",
]

#: Dataset attribute keeping a cube's band order through Zarr and netCDF.
BANDS_ATTR = "openeo_bands"


def band_order(ds: xr.Dataset) -> list[str]:
    """The Dataset's variables in the band order it was saved with (then by name)."""
    saved = [b for b in str(ds.attrs.get(BANDS_ATTR, "")).split(",") if b in ds.data_vars]
    return saved + sorted(str(v) for v in ds.data_vars if v not in saved)


def media_type(fmt: str) -> str:
    return OUTPUT_FORMATS[fmt][0]


def _clean_attrs(attrs: dict[Any, Any]) -> dict[str, Any]:
    """Attributes netCDF and Zarr can store (the process library leaves others, e.g.
    a reducer's callable or a dict, after reduce_dimension)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, str | int | float | np.integer | np.floating) and not (
            isinstance(v, float) and not math.isfinite(v)
        ):
            out[str(k)] = v
    return out


def as_dataset(data: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """A result as a CF-style Dataset: one variable per band (or ``data``)."""
    if isinstance(data, xr.Dataset):
        ds = data
    elif "bands" in data.dims:
        names = [str(b) for b in data["bands"].values]
        ds = data.assign_coords(bands=names).to_dataset(dim="bands")
        # The band order (a Zarr group lists its arrays in no fixed order).
        ds.attrs[BANDS_ATTR] = ",".join(names)
    else:
        ds = data.to_dataset(name=str(data.name or "data"))
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims and c != "spatial_ref"])
    for name in list(ds.coords):
        values = ds[name].values
        if values.dtype == object and values.size and hasattr(values.flat[0], "wkt"):
            # A vector cube's geometries (aggregate_spatial) as WKT text.
            ds = ds.drop_indexes(name).assign_coords({name: [g.wkt for g in values.ravel()]})
    ds.attrs = _clean_attrs(ds.attrs)
    for var in ds.variables.values():
        var.attrs = _clean_attrs(var.attrs)
        var.encoding = {}
    return ds


def _tmp(suffix: str) -> str:
    fd, path = tempfile.mkstemp(prefix="twinmesh-openeo-", suffix=suffix)
    os.close(fd)
    return path


@dataclass(frozen=True)
class Encoded:
    """An encoded result: in memory (``body``) or in a temporary file (``path``, which
    the caller removes)."""

    body: bytes | memoryview | None = None
    path: str | None = None


def encode_result(saved: Saved, *, in_memory_bytes: int) -> Encoded:
    """``saved`` (lazy or computed) in its format. A netCDF result of at most
    ``in_memory_bytes`` is computed and encoded in memory (h5netcdf, as
    ``xarray.Dataset.to_netcdf()`` to bytes); a larger netCDF or Zarr result is written
    to a temporary file chunk by chunk by dask, so it is never in memory at once. Call
    it inside run_graph's ``finish`` (the graph's scheduler)."""
    data = saved.data
    cube = isinstance(data, xr.DataArray | xr.Dataset)
    if cube and saved.format in ("netCDF", "ZARR") and data.nbytes > in_memory_bytes:
        return Encoded(path=encode_to_file(saved))
    if hasattr(data, "compute"):
        data = data.compute()
    if cube and saved.format == "netCDF":
        return Encoded(body=as_dataset(data).to_netcdf(engine="h5netcdf"))
    return Encoded(path=encode_to_file(Saved(data, saved.format, saved.options)))


def _uniform_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Zarr wants equal chunks along a dimension (a shorter last one allowed); a lazy
    selection may start with a short chunk."""
    if not ds.chunks:
        return ds
    ds = ds.unify_chunks()
    return ds.chunk({dim: max(sizes) for dim, sizes in ds.chunks.items()})


def encode_to_file(saved: Saved) -> str:
    """Write ``saved`` in its format to a new temporary file; returns its path (the
    caller removes it). A result the format cannot hold is FormatUnsuitable. A lazy
    netCDF or Zarr result is written chunk by chunk; other formats are computed first."""
    fmt, data = saved.format, saved.data
    suffix = OUTPUT_FORMATS[fmt][1]
    cube = isinstance(data, xr.DataArray | xr.Dataset)
    if fmt not in ("netCDF", "ZARR") and hasattr(data, "compute"):
        data = data.compute()
    if fmt == "JSON":
        path = _tmp(suffix)
        doc = as_dataset(data).to_dict(data="list") if cube else data
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(jsonable(doc), option=orjson.OPT_SERIALIZE_NUMPY))
        return path
    if not cube:
        raise OpenEOError(
            400,
            "FormatUnsuitable",
            f"{fmt} holds a datacube; this graph's result is a {type(data).__name__}: "
            "save it as JSON",
        )
    if fmt == "netCDF":
        path = _tmp(suffix)
        try:
            as_dataset(data).to_netcdf(path, engine="h5netcdf")
        except BaseException:
            os.unlink(path)
            raise
        return path
    if fmt == "ZARR":
        # Written as a folder, then zipped (a ZipStore written in place gets duplicate
        # entries when xarray rewrites metadata); open with zarr.storage.ZipStore.
        folder = tempfile.mkdtemp(prefix="twinmesh-openeo-")
        try:
            _uniform_chunks(as_dataset(data)).to_zarr(
                folder, zarr_format=3, consolidated=False, mode="w"
            )
            path = _tmp(suffix)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for root, _dirs, files in os.walk(folder):
                    for name in files:
                        full = os.path.join(root, name)
                        zf.write(full, os.path.relpath(full, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return path
    # GTiff: one 2-D grid per band, at most one time step.
    da = (
        data if isinstance(data, xr.DataArray) else data[band_order(data)].to_dataarray(dim="bands")
    )
    extra = [d for d in da.dims if d not in ("bands", "y", "x")]
    if extra and any(da.sizes[d] > 1 for d in extra):
        raise OpenEOError(
            400,
            "FormatUnsuitable",
            f"GTiff holds bands on y/x; the result also has {', '.join(map(str, extra))} "
            "(reduce it first, e.g. reduce_dimension over t, or save as netCDF or ZARR)",
        )
    if "x" not in da.dims or "y" not in da.dims:
        raise OpenEOError(400, "FormatUnsuitable", "GTiff needs the spatial dimensions x and y")
    da = da.squeeze([d for d in extra], drop=True)
    da = da.transpose(*[d for d in ("bands", "y", "x") if d in da.dims])
    da = da.drop_vars([c for c in da.coords if c not in da.dims])
    da.attrs = {}
    da = da.rio.set_spatial_dims(x_dim="x", y_dim="y").rio.write_crs("EPSG:4326")
    if "bands" in da.dims:
        da = da.assign_coords(bands=np.arange(1, da.sizes["bands"] + 1))
        da = da.rename(bands="band")
    path = _tmp(suffix)
    da.astype("float32").rio.to_raster(path)
    return path
