"""Data access: a checked subset of a twin's datacube (what EDR, openEO and gRPC
adapters read through)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import pandas as pd
import xarray as xr
from pydantic import Field

from twinmesh.core.capabilities.declaration import Capability, CapabilityInputs, Coverage
from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.results import OutputKind, Result
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Twin
from twinmesh.core.validation import check_bbox, check_time_range, parse_day

if TYPE_CHECKING:
    from twinmesh.core.engine import Engine, Progress

__all__ = ["subset", "SubsetInputs", "SUBSET"]


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
    dims = ", ".join(map(str, ds.sizes)) or "none"
    if start is not None or end is not None:
        # The dataset's own time axis, not the twin's record: datasets of one twin
        # start and end on different days (an index needs months of lead-in).
        if "t" not in ds.dims or ds["t"].dtype.kind != "M":
            raise InvalidParameter(
                f"dataset {dataset_id!r} has no time axis t (its dims: {dims}); drop start and end"
            )
        if ds.sizes["t"] == 0:
            raise OutOfExtent(f"dataset {dataset_id!r} has no time steps yet")
        times = ds["t"].values
        first, last = parse_day(times.min(), "t"), parse_day(times.max(), "t")
        s = parse_day(start, "start") if start is not None else first
        e = parse_day(end, "end") if end is not None else last
        if s <= e and (s < first or e > last):
            raise OutOfExtent(
                f"time range {s}/{e} is outside the time axis of dataset {dataset_id!r}, "
                f"{first}/{last}; ask for days inside it"
            )
        check_time_range(s, e, (first, last))  # InvalidTimeRange when inverted
        ds = ds.sel(
            t=slice(pd.Timestamp(s), pd.Timestamp(e) + pd.Timedelta("1D") - pd.Timedelta("1ns"))
        )
    if bbox is not None:
        w, s_, e_, n = check_bbox(bbox, twin.bbox)
        if "x" not in ds.dims or "y" not in ds.dims:
            raise InvalidParameter(
                f"dataset {dataset_id!r} has no spatial grid (its dims: {dims}): a bbox "
                "needs dimensions x and y; drop bbox"
            )
        y = ds["y"].values
        ys = slice(n, s_) if y[0] > y[-1] else slice(s_, n)
        ds = ds.sel(x=slice(w, e_), y=ys)
        if ds.sizes["x"] == 0 or ds.sizes["y"] == 0:
            raise OutOfExtent(
                f"bbox {list(bbox)} holds no grid cell centre of {dataset_id!r}; widen it"
            )
    return ds


# -- the declaration -------------------------------------------------------------------
class SubsetInputs(CapabilityInputs):
    dataset: str = Field(
        description="Dataset id or role of the twin (e.g. forcing, spi-3).",
        examples=["forcing"],
        max_length=128,
    )
    bbox: list[float] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="West, south, east, north in WGS84 degrees (default: the whole grid).",
        examples=[[9.5, 50.5, 9.9, 50.9]],
    )
    start: date | None = Field(default=None, description="First day (ISO 8601).")
    end: date | None = Field(default=None, description="Last day (ISO 8601).")
    variables: list[str] | None = Field(
        default=None, max_length=100, description="Variables to keep (default: all)."
    )


def _dataset_id(twin: Twin, name: str) -> str:
    if any(d.id == name for d in twin.datasets):
        return name
    return twin.dataset_for(name).id


def _subset(engine: Engine, twin: Twin, inputs: SubsetInputs) -> xr.Dataset:
    return subset(
        engine.store,
        twin.id,
        _dataset_id(twin, inputs.dataset),
        bbox=inputs.bbox,
        start=inputs.start,
        end=inputs.end,
        variables=inputs.variables,
    )


def compute_subset(engine: Engine, twin: Twin, inputs: SubsetInputs, progress: Progress) -> Result:
    progress(0.0, "reading the subset")
    data = _subset(engine, twin, inputs).load()
    return Result(
        OutputKind.COVERAGE,
        "subset",
        twin.id,
        data,
        forcing_mode=None,
        inputs=inputs.model_dump(mode="json"),
    )


def _subset_bytes(engine: Engine, twin: Twin, inputs: SubsetInputs) -> int:
    """From the lazy (metadata-only) selection: nothing is read to answer."""
    return int(_subset(engine, twin, inputs).nbytes)


SUBSET = Capability(
    name="subset",
    title="Datacube subset",
    description="The part of a twin's datacube inside a bbox and a time range.",
    inputs=SubsetInputs,
    output=Coverage({}, ("t", "y", "x")),
    compute=compute_subset,
    estimate_bytes=_subset_bytes,
    keywords=("data access",),
)
