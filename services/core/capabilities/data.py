"""Data access: a checked subset of a twin's datacube (what EDR, openEO and gRPC
adapters read through)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import xarray as xr

from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.store import DatacubeStore
from twinmesh.core.validation import check_bbox, check_time_range, parse_day

__all__ = ["subset"]


def subset(
    store: DatacubeStore,
    twin_id: str,
    dataset_id: str,
    *,
    bbox: tuple[float, float, float, float] | list[float] | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    variables: list[str] | None = None,
) -> xr.Dataset:
    """The part of a datacube inside ``bbox`` and ``[start, end]`` (lazy, dask-backed)."""
    twin = store.read_twin(twin_id)
    twin.dataset(dataset_id)  # UnknownDataset with the known ids
    ds = store.open(twin_id, dataset_id)
    if variables:
        unknown = sorted(set(variables) - set(ds.data_vars))
        if unknown:
            raise InvalidParameter(
                f"dataset {dataset_id!r} has no variable {', '.join(unknown)}; "
                f"it has: {', '.join(map(str, ds.data_vars))}"
            )
        ds = ds[variables]
    if start is not None or end is not None:
        s = parse_day(start, "start") if start is not None else twin.time_extent[0]
        e = parse_day(end, "end") if end is not None else twin.time_extent[1]
        check_time_range(s, e, twin.time_extent)
        if "t" in ds.dims:
            ds = ds.sel(
                t=slice(pd.Timestamp(s), pd.Timestamp(e) + pd.Timedelta("1D") - pd.Timedelta("1ns"))
            )
    if bbox is not None:
        w, s_, e_, n = check_bbox(bbox, twin.bbox)
        if "x" in ds.dims and "y" in ds.dims:
            y = ds["y"].values
            ys = slice(n, s_) if y[0] > y[-1] else slice(s_, n)
            ds = ds.sel(x=slice(w, e_), y=ys)
            if ds.sizes["x"] == 0 or ds.sizes["y"] == 0:
                raise OutOfExtent(
                    f"bbox {list(bbox)} holds no grid cell centre of {dataset_id!r}; widen it"
                )
    return ds
