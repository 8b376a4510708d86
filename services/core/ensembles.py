"""Ensemble forcing: the weather a forecast runs on, as a dataset of members x lead days.

Why: a forecast is only a forecast when its forcing was knowable on the issue day. The
forecast capability reads its members from the twin's *ensemble forcing dataset* (the
role ``forcing-ensemble``): a numerical weather prediction ensemble ingested by an
operator, or, for the demo twins, Ensemble Streamflow Prediction (ESP) traces built
from the historical record. The observed forcing of the lead window is never a member:
it is kept only as the explicitly named perfect-forecast reference.

What: the dataset holds ``precipitation`` (mm d-1) and ``temperature`` (degC) over
``(issued, member, lead, region)``: for issue day ``issued``, member ``m``, the region's
area-mean forcing on day ``issued + lead``. Members an issue day does not have are NaN;
``trace_start`` (issued, member) says which day of the record a historical trace starts
on (NaT for members that are not traces).

ESP (Day 1985, J. Water Resour. Plan. Manage. 111:157-170): for an issue day d, member k
is the forcing of the same calendar window in another year y of the record: the days
after (d's month and day in year y) — 29 February maps to 28 February — for every year
y != year(d) whose whole window lies inside the record. The verified year itself never
contributes a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import xarray as xr

from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Region, Twin

__all__ = [
    "ENSEMBLE_ROLE",
    "ESP_METHOD",
    "EnsembleForcing",
    "esp_trace_starts",
    "esp_dataset",
    "read_ensemble",
]

ENSEMBLE_ROLE = "forcing-ensemble"
ESP_METHOD = (
    "ESP (Ensemble Streamflow Prediction, historical traces): member k of issue day d is the "
    "region-mean forcing of the same calendar window in another year of the record "
    "(29 February read as 28 February); the verified year is never a member"
)


def _same_day_in(year: int, day: date) -> date:
    if day.month == 2 and day.day == 29:
        return date(year, 2, 28)
    return day.replace(year=year)


def esp_trace_starts(time: pd.DatetimeIndex, issued: date, lead_days: int) -> list[int]:
    """Index (into ``time``) of the first lead day of every ESP trace for ``issued``:
    one per other year whose ``lead_days``-day window lies inside the record, in year
    order."""
    first, last = time[0].date(), time[-1].date()
    starts = []
    for year in range(first.year, last.year + 1):
        if year == issued.year:
            continue
        day0 = _same_day_in(year, issued) + timedelta(days=1)
        day_end = day0 + timedelta(days=lead_days - 1)
        if day0 >= first and day_end <= last:
            starts.append((day0 - first).days)
    return starts


def esp_dataset(
    time: pd.DatetimeIndex,
    regions: list[Region],
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
    *,
    first_issue: date,
    lead_days: int,
) -> xr.Dataset:
    """The ESP ensemble forcing dataset of every issue day from ``first_issue`` to the
    last day of the record, ``lead_days`` ahead. ``precipitation_mm`` and
    ``temperature_c`` are (region, t) area means over the daily, gap-free ``time``."""
    if not (time[1:] - time[:-1] == pd.Timedelta(days=1)).all():
        raise ValueError("ESP needs a daily record without gaps")
    issued = pd.date_range(pd.Timestamp(first_issue), time[-1], freq="D")
    traces = [esp_trace_starts(time, d.date(), lead_days) for d in issued]
    n_members = max((len(t) for t in traces), default=0)
    if n_members == 0:
        raise ValueError("the record is too short for ESP: no other year holds a window")
    shape = (issued.size, n_members, lead_days, len(regions))
    precip = np.full(shape, np.nan, dtype="float32")
    temp = np.full(shape, np.nan, dtype="float32")
    start_day = np.full((issued.size, n_members), np.datetime64("NaT", "ns"))
    lead = np.arange(lead_days)
    for i, starts in enumerate(traces):
        for m, s in enumerate(starts):
            precip[i, m] = precipitation_mm[:, s + lead].T
            temp[i, m] = temperature_c[:, s + lead].T
            start_day[i, m] = time.values[s]
    attrs = {"cell_methods": "region: mean", "ensemble_method": ESP_METHOD}
    ds = xr.Dataset(
        {
            "precipitation": (
                ("issued", "member", "lead", "region"),
                precip,
                {**attrs, "standard_name": "lwe_thickness_of_precipitation_amount", "units": "mm"},
            ),
            "temperature": (
                ("issued", "member", "lead", "region"),
                temp,
                {**attrs, "standard_name": "air_temperature", "units": "degC"},
            ),
            "trace_start": (("issued", "member"), start_day, {"long_name": "first day of trace"}),
        },
        coords={
            "issued": ("issued", issued.values, {"standard_name": "forecast_reference_time"}),
            "member": ("member", np.arange(n_members)),
            "lead": ("lead", np.arange(1, lead_days + 1), {"units": "days", "long_name": "lead"}),
            "region": ("region", [r.id for r in regions]),
        },
        attrs={"ensemble_method": ESP_METHOD},
    )
    return ds.chunk({"issued": 366, "member": -1, "lead": -1, "region": -1})


@dataclass(frozen=True)
class EnsembleForcing:
    """The members of one issue day, for the regions asked for."""

    issued: date
    precipitation_mm: np.ndarray  # (member, lead, region)
    temperature_c: np.ndarray  # (member, lead, region)
    method: str
    #: First day of each member's historical trace (None where not a trace).
    trace_start: list[date | None]

    @property
    def members(self) -> int:
        return int(self.precipitation_mm.shape[0])


def ensemble_extent(store: DatacubeStore, twin: Twin) -> tuple[date, date, int, int]:
    """First and last issue day, longest lead (days) and member count of the twin's
    ensemble forcing dataset."""
    ds = store.open(twin.id, twin.dataset_for(ENSEMBLE_ROLE).id)
    issued = pd.DatetimeIndex(ds["issued"].values)
    return issued[0].date(), issued[-1].date(), int(ds.sizes["lead"]), int(ds.sizes["member"])


def read_ensemble(
    store: DatacubeStore,
    twin: Twin,
    issued: date,
    lead_days: int,
    region_ids: list[str],
    members: int | None = None,
    *,
    dataset: xr.Dataset | None = None,
) -> EnsembleForcing:
    """The members of the twin's ensemble forcing dataset for one issue day.

    ``members`` takes the first N members (all when None); asking for more than the
    issue day has is an error naming how many it has. ``dataset`` lets a caller that
    reads many issue days open the dataset once.
    """
    info = twin.dataset_for(ENSEMBLE_ROLE)
    ds = dataset if dataset is not None else store.open(twin.id, info.id)
    days = pd.DatetimeIndex(ds["issued"].values)
    if ds.sizes["lead"] < lead_days:
        raise InvalidParameter(
            f"the ensemble forcing of twin {twin.id!r} reaches {ds.sizes['lead']} days ahead; "
            f"lead_days={lead_days} is longer"
        )
    stamp = pd.Timestamp(issued)
    if stamp < days[0] or stamp > days[-1]:
        raise OutOfExtent(
            f"the ensemble forcing of twin {twin.id!r} has issue days {days[0].date()} to "
            f"{days[-1].date()}; got {issued}"
        )
    one = ds.sel(issued=stamp).isel(lead=slice(0, lead_days)).sel(region=region_ids)
    precip = np.asarray(one["precipitation"].transpose("member", "lead", "region").values)
    temp = np.asarray(one["temperature"].transpose("member", "lead", "region").values)
    present = np.isfinite(precip).all(axis=(1, 2)) & np.isfinite(temp).all(axis=(1, 2))
    if not present.any():
        raise OutOfExtent(f"the ensemble forcing of twin {twin.id!r} has no member on {issued}")
    available = int(present.sum())
    if members is not None and members > available:
        raise InvalidParameter(
            f"the ensemble forcing of twin {twin.id!r} has {available} members on {issued}; "
            f"members={members} is more"
        )
    keep = np.flatnonzero(present)[: members or available]
    starts: list[date | None] = []
    if "trace_start" in one:
        for value in np.asarray(one["trace_start"].values)[keep]:
            starts.append(None if np.isnat(value) else pd.Timestamp(value).date())
    else:
        starts = [None] * keep.size
    method = str(ds.attrs.get("ensemble_method") or info.provenance)
    return EnsembleForcing(
        issued, precip[keep].astype("float64"), temp[keep].astype("float64"), method, starts
    )
