"""Hydrological capabilities: run the twin's model over history (``simulate``) and
ahead of an issue date as an ensemble (``forecast``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import xarray as xr

from twinmesh.core.errors import InvalidParameter, OutOfExtent
from twinmesh.core.geo import region_means
from twinmesh.core.hydrology.gr4j import GR4JParams, mm_per_day_to_m3s, run_gr4j
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Region, Twin
from twinmesh.core.validation import check_factor, check_int, check_time_range, parse_day

__all__ = [
    "simulate",
    "forecast",
    "RegionForcing",
    "region_forcing",
    "MAX_MEMBERS",
    "MAX_LEAD_DAYS",
]

MAX_MEMBERS = 200
MAX_LEAD_DAYS = 30
#: Forecast days need a year of model spin-up before them.
SPIN_UP_DAYS = 365


@dataclass(frozen=True)
class RegionForcing:
    """Area-mean daily forcing of each region over the twin's whole record."""

    time: pd.DatetimeIndex
    regions: list[Region]
    precipitation_mm: np.ndarray  # (region, t)
    temperature_c: np.ndarray  # (region, t)
    pet_mm: np.ndarray  # (region, t)


def region_forcing(store: DatacubeStore, twin: Twin) -> RegionForcing:
    """Read the forcing cube once and reduce it to the twin's regions."""
    cube = store.open(twin.id, "forcing")
    time = pd.DatetimeIndex(cube["t"].values)
    precip = region_means(cube["precipitation"], twin.regions).astype("float64")
    temp = region_means(cube["temperature"], twin.regions).astype("float64")
    lat = float(twin.properties.get("latitude_deg", 0.5 * (twin.bbox[1] + twin.bbox[3])))
    doy = time.day_of_year.to_numpy()
    pet = np.stack([pet_oudin(temp[k], doy, lat) for k in range(len(twin.regions))])
    return RegionForcing(time, twin.regions, precip, temp, pet)


def _params(twin: Twin, region_id: str) -> GR4JParams:
    p = twin.model("gr4j").parameters_for(region_id)
    return GR4JParams(p["x1_mm"], p["x2_mm"], p["x3_mm"], p["x4_days"])


def _select_regions(twin: Twin, region_ids: list[str] | None) -> list[int]:
    if not region_ids:
        return list(range(len(twin.regions)))
    index = {r.id: k for k, r in enumerate(twin.regions)}
    for rid in region_ids:
        twin.region(rid)  # raises UnknownRegion with the known ids
    return [index[rid] for rid in region_ids]


def simulate(
    store: DatacubeStore,
    twin_id: str,
    start: date | str,
    end: date | str,
    *,
    precipitation_factor: float = 1.0,
    regions: list[str] | None = None,
) -> xr.Dataset:
    """Discharge of each region from ``start`` to ``end`` under a scenario.

    The scenario scales precipitation by ``precipitation_factor`` inside the period;
    the model spins up on the unscaled record before it.
    """
    twin = store.read_twin(twin_id)
    start_d, end_d = parse_day(start, "start"), parse_day(end, "end")
    check_time_range(start_d, end_d, twin.time_extent)
    factor = check_factor(precipitation_factor, "precipitation_factor")
    selected = _select_regions(twin, regions)
    forcing = region_forcing(store, twin)

    t = forcing.time
    in_period = (t >= pd.Timestamp(start_d)) & (t <= pd.Timestamp(end_d))
    last = int(np.flatnonzero(in_period)[-1]) + 1
    out = np.empty((int(in_period.sum()), len(selected)))
    for j, k in enumerate(selected):
        precip = forcing.precipitation_mm[k, :last].copy()
        precip[in_period[:last]] *= factor
        params = _params(twin, twin.regions[k].id)
        q_mm, _ = run_gr4j(precip, forcing.pet_mm[k, :last], params)
        out[:, j] = mm_per_day_to_m3s(q_mm[in_period[:last]], twin.regions[k].area_km2)

    return xr.Dataset(
        {"discharge_m3s": (("t", "region"), out, {"units": "m3 s-1"})},
        coords={
            "t": t[in_period].values,
            "region": [twin.regions[k].id for k in selected],
        },
        attrs={
            "twin": twin.id,
            "model": "gr4j",
            "precipitation_factor": factor,
            "generated": "yes: model simulation",
        },
    )


def default_issue_date(twin: Twin, lead_days: int) -> date:
    """The latest day a forecast of ``lead_days`` can be issued on (record end - lead)."""
    return twin.time_extent[1] - timedelta(days=lead_days)


def forecast(
    store: DatacubeStore,
    twin_id: str,
    *,
    issued: date | str | None = None,
    members: int = 20,
    lead_days: int = 10,
    precipitation_factor: float = 1.0,
    seed: int = 0,
    regions: list[str] | None = None,
) -> xr.Dataset:
    """Ensemble discharge forecast of each region for ``lead_days`` after ``issued``.

    Each member starts from the model state reached on the issue day with the
    observed forcing, then runs on the forcing of the lead window perturbed
    multiplicatively for precipitation (log-normal, spread growing with lead time)
    and additively for temperature: the hindcast setting of ensemble verification,
    where the "forecast" forcing is the truth with realistic forecast errors. The
    scenario factor scales the whole window's precipitation.
    """
    twin = store.read_twin(twin_id)
    members = check_int(members, "members", 1, MAX_MEMBERS)
    lead_days = check_int(lead_days, "lead_days", 1, MAX_LEAD_DAYS)
    factor = check_factor(precipitation_factor, "precipitation_factor")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidParameter(f"seed must be a non-negative integer, got {seed!r}")
    issued_d = (
        default_issue_date(twin, lead_days) if issued is None else parse_day(issued, "issued")
    )
    first = twin.time_extent[0] + timedelta(days=SPIN_UP_DAYS)
    latest = default_issue_date(twin, lead_days)
    if not first <= issued_d <= latest:
        raise OutOfExtent(
            f"a {lead_days}-day forecast can be issued from {first} (after a year of model "
            f"spin-up) to {latest} (the record ends {twin.time_extent[1]}); got {issued_d}"
        )
    selected = _select_regions(twin, regions)
    forcing = region_forcing(store, twin)

    i0 = int(forcing.time.get_loc(pd.Timestamp(issued_d))) + 1  # first lead day
    window = slice(i0, i0 + lead_days)
    rng = np.random.default_rng(seed)
    lead = np.arange(1, lead_days + 1)
    sigma_p = 0.25 + 0.05 * lead
    sigma_t = 0.5 + 0.1 * lead
    # One weather error per member and day, shared by the regions (the same storm
    # is misplaced for all of them), plus a smaller independent regional part.
    shared = rng.standard_normal((members, lead_days))
    t_err = rng.standard_normal((members, lead_days)) * sigma_t
    out = np.empty((members, lead_days, len(selected)))
    for j, k in enumerate(selected):
        params = _params(twin, twin.regions[k].id)
        _, state = run_gr4j(forcing.precipitation_mm[k, :i0], forcing.pet_mm[k, :i0], params)
        local = rng.standard_normal((members, lead_days))
        z = 0.8 * shared + 0.6 * local
        precip = (
            forcing.precipitation_mm[k, window][None, :]
            * factor
            * np.exp(sigma_p * z - sigma_p**2 / 2)
        )
        temp = forcing.temperature_c[k, window][None, :] + t_err
        doy = forcing.time[window].day_of_year.to_numpy()
        lat = float(twin.properties.get("latitude_deg", 50.0))
        pet = np.stack([pet_oudin(temp[m], doy, lat) for m in range(members)])
        q_mm, _ = run_gr4j(precip, pet, params, state=state)
        out[:, :, j] = mm_per_day_to_m3s(q_mm, twin.regions[k].area_km2)

    valid = forcing.time[window]
    return xr.Dataset(
        {"discharge_m3s": (("member", "t", "region"), out, {"units": "m3 s-1"})},
        coords={
            "member": np.arange(members),
            "t": valid.values,
            "region": [twin.regions[k].id for k in selected],
        },
        attrs={
            "twin": twin.id,
            "model": "gr4j",
            "issued": issued_d.isoformat(),
            "lead_days": lead_days,
            "members": members,
            "precipitation_factor": factor,
            "seed": seed,
            "generated": "yes: ensemble model forecast (hindcast setting)",
        },
    )
